//! `appscope-operator copy-lib`: copy `libscope.so` into a shared volume atomically.
//!
//! Used by the webhook's injected init container (no shell in the image): the library
//! is written under a temporary name in the destination directory, fsynced, given mode
//! 0755, renamed to `libscope.so`, and the directory is fsynced. A reader never sees a
//! partial library.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Default source of the library inside the operator image.
pub const DEFAULT_SOURCE: &str = "/usr/lib/appscope/libscope.so";
/// Env var that overrides `--from`.
pub const SOURCE_ENV: &str = "APPSCOPE_LIB_SOURCE";
/// File name written in the destination directory.
pub const LIB_NAME: &str = "libscope.so";

#[derive(Debug, thiserror::Error)]
pub enum CopyLibError {
    #[error("library source {path} does not exist (set --from or {SOURCE_ENV})")]
    SourceMissing { path: PathBuf },
    #[error("library source {path} is not a regular file")]
    SourceNotFile { path: PathBuf },
    #[error("destination {path} is not a directory and cannot be created: {source}")]
    Destination { path: PathBuf, source: io::Error },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyLibError + use<> {
    let path = path.to_path_buf();
    move |source| CopyLibError::Io { op, path, source }
}

/// Copies `from` to `<to_dir>/libscope.so` atomically with mode 0755 and returns the
/// destination path.
pub fn copy_lib(from: &Path, to_dir: &Path) -> Result<PathBuf, CopyLibError> {
    let meta = match fs::metadata(from) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CopyLibError::SourceMissing {
                path: from.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err("reading", from)(e)),
    };
    if !meta.is_file() {
        return Err(CopyLibError::SourceNotFile {
            path: from.to_path_buf(),
        });
    }
    fs::create_dir_all(to_dir).map_err(|source| CopyLibError::Destination {
        path: to_dir.to_path_buf(),
        source,
    })?;
    let dest = to_dir.join(LIB_NAME);
    let tmp = to_dir.join(format!(".{LIB_NAME}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut src = File::open(from).map_err(io_err("opening", from))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        io::copy(&mut src, &mut out).map_err(io_err("writing", &tmp))?;
        out.flush().map_err(io_err("writing", &tmp))?;
        // The umask may have narrowed the mode given at creation.
        out.set_permissions(fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &tmp))?;
        out.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(out);
        fs::rename(&tmp, &dest).map_err(io_err("renaming into", &dest))?;
        if let Ok(d) = File::open(to_dir) {
            let _ = d.sync_all();
        }
        Ok(dest.clone())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Source path from the flag, then `APPSCOPE_LIB_SOURCE`, then the default.
pub fn resolve_source(flag: Option<PathBuf>, env: Option<std::ffi::OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOURCE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_with_mode_and_replaces_existing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.so");
        fs::write(&src, b"\x7fELF-fake-library").unwrap();
        let to = dir.path().join("out/lib");
        let dest = copy_lib(&src, &to).unwrap();
        assert_eq!(dest, to.join("libscope.so"));
        assert_eq!(fs::read(&dest).unwrap(), b"\x7fELF-fake-library");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
        fs::write(&src, b"v2").unwrap();
        copy_lib(&src, &to).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"v2");
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("libscope.so")]);
    }

    #[test]
    fn missing_source_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = copy_lib(&dir.path().join("nope.so"), dir.path()).unwrap_err();
        assert!(matches!(err, CopyLibError::SourceMissing { .. }));
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!dir.path().join("libscope.so").exists());
    }

    #[test]
    fn source_resolution_order() {
        assert_eq!(
            resolve_source(Some("/a".into()), Some("/b".into())),
            PathBuf::from("/a")
        );
        assert_eq!(resolve_source(None, Some("/b".into())), PathBuf::from("/b"));
        assert_eq!(
            resolve_source(None, Some("".into())),
            PathBuf::from(DEFAULT_SOURCE)
        );
        assert_eq!(resolve_source(None, None), PathBuf::from(DEFAULT_SOURCE));
    }
}
