//! Core files of live processes, driven from outside by ptrace and `/proc/<pid>/mem`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::snapshot::Progress;

/// Write a gdb-loadable ELF core of live process `pid` to `path`.
pub fn write_live_core(pid: i32, path: &Path, progress: &mut dyn Progress) -> Result<()> {
    let _ = (pid, path, progress);
    Err(Error::Other(
        "core writer not available in this build".into(),
    ))
}
