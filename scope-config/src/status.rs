//! The status file `<SCOPE_STATUS_DIR>/<pid>.json` (design §3).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the status-file format written in `"schema"`.
pub const SCHEMA_VERSION: u32 = 1;

/// Largest status file [`read`] accepts (4 MiB).
pub const MAX_STATUS_BYTES: u64 = 4 << 20;

/// The status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub schema: u32,
    pub pid: i64,
    pub ppid: i64,
    pub procname: String,
    pub cmd: String,
    pub libscopever: String,
    /// RFC 3339 UTC (see [`rfc3339_utc`]).
    pub started: String,
    /// RFC 3339 UTC.
    pub updated: String,
    pub scoped: bool,
    /// AppScope's config-in-effect object, `{"current": {...}}`.
    pub config: serde_json::Value,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<LastCommand>,
    /// What was wrong in the config at start (`scope.yml` and `SCOPE_*` env): unknown
    /// keys, bad values, unreadable files. Each was ignored (the default or the previous
    /// source's value applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_problems: Vec<String>,
}

/// One transport's state (AppScope's `interfaces` entry plus counters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// `log`, `metric`, `event`, `cribl`, `payload`.
    pub name: String,
    /// Destination URL (`Transport::url`).
    pub config: String,
    pub connected: bool,
    #[serde(default)]
    pub attempts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_details: Option<String>,
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub dropped: u64,
    /// Times the application closed (or closed and reused) this transport's descriptor
    /// behind the library's back, with raw system calls; each time the library reopened
    /// it. Left out while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_descriptors: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The last command file processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCommand {
    pub file: String,
    pub applied: Vec<String>,
    pub rejected: Vec<Rejected>,
    /// RFC 3339 UTC.
    pub at: String,
}

/// A rejected command-file line (values are not repeated, they may be secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
}

impl From<&crate::cmdfile::Rejected> for Rejected {
    fn from(r: &crate::cmdfile::Rejected) -> Self {
        Rejected {
            line: r.line,
            reason: r.reason.clone(),
        }
    }
}

impl LastCommand {
    /// Build from an apply result.
    pub fn from_applied(file: &Path, a: &crate::cmdfile::Applied, at: String) -> Self {
        LastCommand {
            file: file.display().to_string(),
            applied: a.applied.clone(),
            rejected: a.rejected.iter().map(Rejected::from).collect(),
            at,
        }
    }
}

/// `<dir>/<pid>.json`.
pub fn path_for(dir: &Path, pid: i64) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Write `<dir>/<s.pid>.json` atomically: a temp file in `dir`, mode 0644, then rename.
/// Readers never see a partial file.
pub fn write_atomic(dir: &Path, s: &StatusFile) -> std::io::Result<()> {
    let body = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    let dest = path_for(dir, s.pid);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.json.tmp.{seq}", s.pid));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The mode above is filtered by umask; make it exactly 0644.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        std::fs::rename(&tmp, &dest)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Why a status file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read status file: {0}")]
    Io(#[from] std::io::Error),
    #[error("status file larger than {MAX_STATUS_BYTES} bytes")]
    TooLarge,
    #[error("invalid status file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("status file schema {0} is newer than supported ({SCHEMA_VERSION})")]
    Schema(u32),
}

/// Read and check a status file.
pub fn read(path: &Path) -> Result<StatusFile, StatusError> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(MAX_STATUS_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STATUS_BYTES {
        return Err(StatusError::TooLarge);
    }
    let s: StatusFile = serde_json::from_slice(&buf)?;
    if s.schema > SCHEMA_VERSION {
        return Err(StatusError::Schema(s.schema));
    }
    Ok(s)
}

/// Format a Unix time as RFC 3339 UTC with milliseconds: `2026-11-26T07:13:40.123Z`.
pub fn rfc3339_utc(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        nanos.min(999_999_999) / 1_000_000
    )
}

/// The current time as [`rfc3339_utc`].
pub fn now_rfc3339() -> String {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => rfc3339_utc(d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => rfc3339_utc(0, 0),
    }
}
