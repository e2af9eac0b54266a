//! `appscope-operator copy-lib` as the init container runs it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_appscope-operator"))
}

#[test]
fn copy_lib_from_env_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("libscope.so");
    std::fs::write(&src, b"library bytes").unwrap();
    let to = dir.path().join("appscope/lib");
    let out = Command::new(bin())
        .args(["copy-lib", "--to"])
        .arg(&to)
        .env("APPSCOPE_LIB_SOURCE", &src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dest = to.join("libscope.so");
    assert_eq!(std::fs::read(&dest).unwrap(), b"library bytes");
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn copy_lib_missing_source_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["copy-lib", "--from"])
        .arg(dir.path().join("missing.so"))
        .arg("--to")
        .arg(dir.path())
        .env_remove("APPSCOPE_LIB_SOURCE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.so") && err.contains("does not exist"),
        "{err}"
    );
}
