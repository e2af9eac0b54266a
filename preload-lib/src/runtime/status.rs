//! Builds and writes `<SCOPE_STATUS_DIR>/<pid>.json` (design §3).

use scope_config::Config;
use scope_config::status::{Interface, LastCommand, SCHEMA_VERSION, StatusFile, rfc3339_utc};

use super::LIBSCOPE_VERSION;
use super::procinfo::ProcInfo;
use crate::transport::LinkStatus;

/// RFC 3339 UTC of a fractional unix time.
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor();
    rfc3339_utc(secs as i64, ((t - secs) * 1e9) as u32)
}

/// The status file for this process. Pure.
pub fn build(
    pi: &ProcInfo,
    cfg: &Config,
    links: &[LinkStatus],
    last_command: Option<&LastCommand>,
    config_problems: &[String],
    now: f64,
) -> StatusFile {
    StatusFile {
        schema: SCHEMA_VERSION,
        pid: pi.pid as i64,
        ppid: pi.ppid as i64,
        procname: pi.procname.clone(),
        cmd: pi.cmd.clone(),
        libscopever: LIBSCOPE_VERSION.to_string(),
        started: rfc3339(pi.started),
        updated: rfc3339(now),
        scoped: true,
        config: cfg.config_in_effect(),
        interfaces: links
            .iter()
            .map(|l| Interface {
                name: l.name.to_string(),
                config: l.config.clone(),
                connected: l.connected,
                attempts: l.attempts,
                failure_details: (!l.failure_details.is_empty()).then(|| l.failure_details.clone()),
                sent: l.sent,
                dropped: l.dropped,
                lost_descriptors: l.lost_descriptors,
            })
            .collect(),
        last_command: last_command.cloned(),
        config_problems: config_problems.to_vec(),
    }
}

/// Writes the status file when `SCOPE_STATUS_DIR` is set. Errors are returned for the
/// library log; they never affect the application. `exiting`: the last write, at process
/// exit (the document is not freed).
pub fn write(
    pi: &ProcInfo,
    cfg: &Config,
    links: &[LinkStatus],
    last_command: Option<&LastCommand>,
    config_problems: &[String],
    now: f64,
    exiting: bool,
) -> std::io::Result<()> {
    let Some(dir) = cfg.status_dir.as_ref() else {
        return Ok(());
    };
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    let s = build(pi, cfg, links, last_command, config_problems, now);
    let r = scope_config::status::write_atomic(dir, &s);
    if exiting {
        // The process is ending: freeing the document's tree of JSON values would cost
        // it about a fifth of the library's whole start-and-exit work.
        std::mem::forget(s);
    }
    r
}
