//! Error type of the node-agent core.

use std::path::PathBuf;

/// Everything that can go wrong in the agent core. Messages are meant for users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such process: {0}")]
    NoSuchProcess(i32),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("process {0} is not scoped (libscope.so is not mapped into it)")]
    NotScoped(i32),
    #[error("process {pid} has no status file: {reason}")]
    NoStatus { pid: i32, reason: String },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("{op} on thread {tid}: {source}")]
    Ptrace {
        op: &'static str,
        tid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("crash report not found: {0}")]
    ReportNotFound(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Helper: attach a path to an io::Error.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
