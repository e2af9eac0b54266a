//! Test helpers shared by the workspace's integration tests.
//!
//! - [`libscope_path`]: the built `libscope.so` (debug profile), building it if missing.
//! - [`bin_path`]: a workspace binary (`scope`, `appscope-operator`, `appscope-webhook`),
//!   building its package if missing.
//! - [`workspace_root`], [`target_dir`].
//!
//! Tests call these instead of hard-coding paths, so `cargo test -p X` works on a fresh
//! checkout where the other packages have not been built yet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() { d } else { workspace_root().join(d) }
        }
        None => workspace_root().join("target"),
    }
}

fn cargo_build(package: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package])
        .status()
        .unwrap_or_else(|e| panic!("running cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed: {status}");
}

fn built_artifact(package: &str, file: &str) -> PathBuf {
    let path = target_dir().join("debug").join(file);
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Always ask cargo: it is a no-op when up to date, and it rebuilds a stale artifact.
    if std::env::var_os("TESTKIT_NO_BUILD").is_none() || !path.exists() {
        cargo_build(package);
    }
    assert!(path.exists(), "{} not found after building {package}", path.display());
    path
}

/// Path to the debug build of `libscope.so`, built on demand.
pub fn libscope_path() -> PathBuf {
    built_artifact("preload-lib", "libscope.so")
}

/// Path to a workspace binary, built on demand. `package` is the cargo package that
/// owns it: `bin_path("appscope-cli", "scope")`.
pub fn bin_path(package: &str, bin: &str) -> PathBuf {
    built_artifact(package, bin)
}

/// Path to a file under `/work/shared`-style compat data shipped in the repo (`compat/`).
pub fn compat_dir() -> PathBuf {
    workspace_root().join("compat").join("appscope")
}
