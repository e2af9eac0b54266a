//! Test helpers shared by the workspace's integration tests.
//!
//! - [`libscope_path`]: the built `libscope.so` (debug profile).
//! - [`libscope_musl_path`]: its musl build, `libscope-musl.so`; [`Libc`] pairs each C
//!   library with its compiler and library build.
//! - [`bin_path`]: a workspace binary (`scope`, `appscope-operator`, `appscope-webhook`).
//!
//! Both first run `cargo build --workspace` once per test process (a no-op in CI, which
//! builds the workspace before testing).
//! - [`workspace_root`], [`target_dir`].
//!
//! Tests call these instead of hard-coding paths, so `cargo test -p X` works on a fresh
//! checkout where the other packages have not been built yet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Outcome of the one workspace build a test process does (`Err` holds the message).
static WORKSPACE_BUILT: OnceLock<Result<(), String>> = OnceLock::new();

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
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Builds the whole workspace once per test process. `cargo build --workspace` is what CI
/// runs before the tests, so there it is a quick no-op; a `-p` build would resolve features
/// differently and recompile dependencies. Set `TESTKIT_NO_BUILD=1` to skip it when the
/// artifacts are known to be current.
fn ensure_workspace_built() {
    let r = WORKSPACE_BUILT.get_or_init(|| {
        if std::env::var_os("TESTKIT_NO_BUILD").is_some() {
            return Ok(());
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--workspace"])
            .status()
            .map_err(|e| format!("running cargo build --workspace: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build --workspace failed: {status}"))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn built_artifact(file: &str) -> PathBuf {
    ensure_workspace_built();
    let path = target_dir().join("debug").join(file);
    assert!(
        path.exists(),
        "{} not found after building the workspace",
        path.display()
    );
    path
}

/// Path to the debug build of `libscope.so`, built on demand.
pub fn libscope_path() -> PathBuf {
    built_artifact("libscope.so")
}

/// Outcome of the one musl build a test process does (`Err` holds the message).
static MUSL_BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Path to the musl build of the library (debug profile), `target/debug/libscope-musl.so`,
/// built on demand once per test process with `preload-lib/build-musl.sh` (a quick no-op
/// in CI, which builds it before testing). `TESTKIT_NO_BUILD=1` skips the build.
pub fn libscope_musl_path() -> PathBuf {
    let r = MUSL_BUILT.get_or_init(|| {
        let path = target_dir().join("debug").join("libscope-musl.so");
        if std::env::var_os("TESTKIT_NO_BUILD").is_none() {
            let out = Command::new("bash")
                .arg(workspace_root().join("preload-lib/build-musl.sh"))
                .arg("--quiet")
                .current_dir(workspace_root())
                .output()
                .map_err(|e| format!("running preload-lib/build-musl.sh: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "preload-lib/build-musl.sh failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        if path.exists() {
            Ok(path)
        } else {
            Err(format!("{} not found after the musl build", path.display()))
        }
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// The C library a test program is built against, with the matching library build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libc {
    /// The host's glibc: `cc`, and `libscope.so`.
    Glibc,
    /// musl: `musl-gcc` (Debian `musl-tools`), and `libscope-musl.so`.
    Musl,
}

impl Libc {
    /// The library build for programs of this libc (built on demand).
    pub fn libscope(self) -> PathBuf {
        match self {
            Libc::Glibc => libscope_path(),
            Libc::Musl => libscope_musl_path(),
        }
    }

    /// The C compiler driver that links against this libc.
    pub fn cc(self) -> &'static str {
        match self {
            Libc::Glibc => "cc",
            Libc::Musl => "musl-gcc",
        }
    }
}

/// Path to a workspace binary, built on demand. `package` is the cargo package that
/// owns it: `bin_path("appscope-cli", "scope")`.
pub fn bin_path(package: &str, bin: &str) -> PathBuf {
    let _ = package; // kept for call-site clarity: the workspace build covers every package
    built_artifact(bin)
}

/// Path to a file under `/work/shared`-style compat data shipped in the repo (`compat/`).
pub fn compat_dir() -> PathBuf {
    workspace_root().join("compat").join("appscope")
}
