//! The command directory: `<SCOPE_CMD_DIR>/scope.<pid>`, applied once per period.
//!
//! The file is checked in place (symlink, owner, size: a refused file is left alone),
//! then renamed to a private name before it is read and applied, and the private copy is
//! deleted. A second file written while the first is being applied therefore lands under
//! the original name and is picked up next period instead of being deleted unread.

use std::path::{Path, PathBuf};

use scope_config::cmdfile::{self, Refused, Rejected, Reload};
use scope_config::{Config, Loaded};

/// Result of one command file.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command file's path (as written by the sender).
    pub file: PathBuf,
    /// Names applied, in order.
    pub applied: Vec<String>,
    /// Rejected lines (line 0 for a refusal of the whole file or a reload problem).
    pub rejected: Vec<Rejected>,
    /// The config after applying, when the file was read (may equal the current one).
    pub config: Option<Config>,
    /// `SCOPE_CMD_SNAPSHOT=true` was given.
    pub snapshot: bool,
    /// The file was refused and left in place.
    pub refused: bool,
}

fn private_name(path: &Path, pid: u32) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = path.parent().unwrap_or(Path::new("/"));
    dir.join(format!(".scope.{pid}.{nanos}.applying"))
}

/// Looks for this process's command file and applies it to a copy of `current`.
/// `reload` loads the config again (`None` = the search order, `Some(path)` = that file),
/// for `SCOPE_CONF_RELOAD`. Returns `None` when there is no file.
pub fn poll(
    dir: &Path,
    pid: u32,
    uid: u32,
    current: &Config,
    reload: &dyn Fn(Option<PathBuf>) -> Loaded,
) -> Option<Outcome> {
    let path = cmdfile::path_for(dir, pid);
    let refused = |path: PathBuf, r: Refused| Outcome {
        file: path,
        applied: Vec::new(),
        rejected: vec![Rejected {
            line: 0,
            text: String::new(),
            reason: r.to_string(),
        }],
        config: None,
        snapshot: false,
        refused: true,
    };
    match cmdfile::read_checked(&path, uid) {
        Err(Refused::NotFound) => return None,
        Err(r) => return Some(refused(path, r)),
        Ok(_) => {}
    }
    // Take the file: later writers create a new one under the original name.
    let private = private_name(&path, pid);
    let (taken, bytes) = match std::fs::rename(&path, &private) {
        Ok(()) => match cmdfile::read_checked(&private, uid) {
            Ok(b) => (private, b),
            Err(r) => {
                let _ = std::fs::remove_file(&private);
                return Some(refused(path, r));
            }
        },
        // Directory not writable by us: read in place (and fail to delete below).
        Err(_) => match cmdfile::read_checked(&path, uid) {
            Ok(b) => (path.clone(), b),
            Err(Refused::NotFound) => return None,
            Err(r) => return Some(refused(path, r)),
        },
    };
    let parsed = cmdfile::parse(&bytes);
    let mut cfg = current.clone();
    let mut applied = parsed.apply(&mut cfg);
    let mut extra = Vec::new();
    if let Some(r) = applied.reload.clone() {
        let loaded = reload(match r {
            Reload::SearchOrder => None,
            Reload::Path(p) => Some(p),
        });
        for d in &loaded.diagnostics {
            extra.push(Rejected {
                line: 0,
                text: "SCOPE_CONF_RELOAD".into(),
                reason: d.to_string(),
            });
        }
        cfg = loaded.config;
        // This file's settings win over the reloaded file.
        applied = parsed.apply(&mut cfg);
    }
    let mut rejected = applied.rejected;
    rejected.extend(extra);
    if let Err(e) = std::fs::remove_file(&taken) {
        rejected.push(Rejected {
            line: 0,
            text: String::new(),
            reason: format!("applied but could not delete {}: {e}", taken.display()),
        });
    }
    Some(Outcome {
        file: path,
        applied: applied.applied,
        rejected,
        config: Some(cfg),
        snapshot: applied.snapshot,
        refused: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn no_reload(_: Option<PathBuf>) -> Loaded {
        scope_config::load(&|_| None)
    }

    fn uid() -> u32 {
        unsafe { libc::getuid() }
    }

    #[test]
    fn applies_and_deletes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("scope.4242");
        std::fs::write(
            &f,
            "  SCOPE_METRIC_VERBOSITY=9 \n# c\n\nSCOPE_EVENT_HTTP=false\nBOGUS\n",
        )
        .unwrap();
        let cur = Config::default();
        let o = poll(d.path(), 4242, uid(), &cur, &no_reload).unwrap();
        assert!(!o.refused);
        assert_eq!(
            o.applied,
            vec!["SCOPE_METRIC_VERBOSITY", "SCOPE_EVENT_HTTP"]
        );
        assert_eq!(o.rejected.len(), 1, "{:?}", o.rejected);
        assert_eq!(o.rejected[0].line, 5);
        let c = o.config.unwrap();
        assert_eq!(c.metric.format.verbosity, 9);
        assert!(!c.event.watch.http.enable);
        assert!(!f.exists());
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "private copy removed"
        );
        assert!(poll(d.path(), 4242, uid(), &cur, &no_reload).is_none());
    }

    #[test]
    fn symlink_is_refused_and_left() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("real");
        std::fs::write(&target, "SCOPE_METRIC_VERBOSITY=9\n").unwrap();
        let f = d.path().join("scope.7");
        std::os::unix::fs::symlink(&target, &f).unwrap();
        let o = poll(d.path(), 7, uid(), &Config::default(), &no_reload).unwrap();
        assert!(o.refused);
        assert!(o.config.is_none());
        assert!(
            o.rejected[0].reason.contains("symbolic link"),
            "{:?}",
            o.rejected
        );
        assert!(f.symlink_metadata().is_ok(), "left in place");
    }

    #[test]
    fn oversize_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("scope.8");
        std::fs::write(&f, vec![b'#'; 70 * 1024]).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = poll(d.path(), 8, uid(), &Config::default(), &no_reload).unwrap();
        assert!(o.refused);
        assert!(o.rejected[0].reason.contains("64 KiB"), "{:?}", o.rejected);
        assert!(f.exists());
    }
}
