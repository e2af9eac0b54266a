//! Reading the library's status file (design §3) `<SCOPE_STATUS_DIR>/<nspid>.json`:
//! config in effect, transport status per interface, and the last command-file result.
//! Parsing is tolerant: unknown fields are kept in `raw`, missing ones default.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cmdfile::Setting;
use crate::error::{Error, Result};
use crate::procs::{ProcessInfo, ScopeEnv};

/// Transport status of one interface (events, metrics, logs, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct InterfaceStatus {
    pub name: String,
    pub config: Value,
    pub connected: bool,
    pub attempts: u64,
    pub failure_details: Option<String>,
    pub sent: u64,
    pub dropped: u64,
}

/// A rejected command-file line, as the library reports it: the 1-based line number
/// (0 when the whole file was refused) and why. Values are not repeated: they may be
/// secrets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Rejected {
    #[serde(deserialize_with = "line_number")]
    pub line: usize,
    pub reason: String,
}

/// Accepts the line as a JSON number (what the library writes) or a numeric string;
/// anything else reads as 0 rather than failing the whole status file.
fn line_number<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().map_or(0, |n| n as usize),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

/// Result of the last command file the library processed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LastCommand {
    pub file: String,
    pub applied: Vec<String>,
    pub rejected: Vec<Rejected>,
    pub at: Value,
}

/// The status document (reader's view).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StatusDoc {
    pub schema: u32,
    pub pid: i64,
    pub ppid: i64,
    pub procname: String,
    pub cmd: String,
    pub libscopever: String,
    pub started: Value,
    pub updated: Value,
    pub scoped: bool,
    pub config: Value,
    pub interfaces: Vec<InterfaceStatus>,
    pub last_command: Option<LastCommand>,
    pub config_problems: Vec<String>,
}

/// A status file as read, with its age.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Host path of the file.
    pub path: PathBuf,
    /// Seconds since the file was last replaced.
    pub age_secs: f64,
    /// True when older than two summary periods (plus slack): the library is not
    /// updating it (process hung, or status disabled at runtime).
    pub stale: bool,
    pub doc: StatusDoc,
    /// The whole document as written.
    pub raw: Value,
    #[serde(skip)]
    pub modified: Option<SystemTime>,
}

/// Staleness rule (pure): older than two periods plus 2 s of slack.
pub fn is_stale(age: Duration, period: Duration) -> bool {
    age > period * 2 + Duration::from_secs(2)
}

/// Host path of the status file of a process, when `SCOPE_STATUS_DIR` is set.
pub fn status_path(proc_: &ProcessInfo, env: &ScopeEnv) -> Option<PathBuf> {
    let dir = env.status_dir.as_ref()?;
    Some(proc_.host_path(&dir.join(format!("{}.json", proc_.nspid))))
}

/// Read the status file of a scoped process.
pub fn read_status(proc_: &ProcessInfo, env: &ScopeEnv) -> Result<StatusReport> {
    let path = status_path(proc_, env).ok_or_else(|| Error::NoStatus {
        pid: proc_.pid,
        reason: "SCOPE_STATUS_DIR is not set in its environment (start it with `scope run`, \
                 or set SCOPE_STATUS_DIR)"
            .into(),
    })?;
    let text = fs::read(&path).map_err(|e| Error::NoStatus {
        pid: proc_.pid,
        reason: format!("{}: {e}", path.display()),
    })?;
    let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
    let raw: Value = serde_json::from_slice(&text).map_err(|e| Error::NoStatus {
        pid: proc_.pid,
        reason: format!("{}: not valid JSON: {e}", path.display()),
    })?;
    let doc: StatusDoc = serde_json::from_value(raw.clone()).unwrap_or_default();
    let age = modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    Ok(StatusReport {
        path,
        age_secs: age.as_secs_f64(),
        stale: is_stale(age, env.summary_period),
        doc,
        raw,
        modified,
    })
}

/// What happened to a sent command file, from the status file's `last_command` (pure).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateOutcome {
    pub applied: Vec<String>,
    pub rejected: Vec<Rejected>,
    /// Names sent that the library reported neither applied nor rejected.
    pub unreported: Vec<String>,
}

impl UpdateOutcome {
    pub fn all_applied(&self) -> bool {
        self.rejected.is_empty() && self.unreported.is_empty()
    }
}

/// Match what we sent against the library's report (pure).
pub fn outcome(sent: &[Setting], last: &LastCommand) -> UpdateOutcome {
    // `render_command_file` writes setting i on line i + 1.
    let mut out = UpdateOutcome::default();
    for (i, s) in sent.iter().enumerate() {
        if let Some(r) = last.rejected.iter().find(|r| r.line == i + 1) {
            out.rejected.push(r.clone());
        } else if last.applied.iter().any(|a| a == &s.name) {
            out.applied.push(s.name.clone());
        } else {
            out.unreported.push(s.name.clone());
        }
    }
    // Rejections of other lines, or of the whole file (line 0), still matter to the user.
    for r in &last.rejected {
        if r.line == 0 || r.line > sent.len() {
            out.rejected.push(r.clone());
        }
    }
    out
}

/// Wait until the status file is replaced after `since` and reports the command file
/// processed (`last_command` present). Times out after `timeout`.
pub fn wait_for_command_result(
    proc_: &ProcessInfo,
    env: &ScopeEnv,
    since: SystemTime,
    timeout: Duration,
) -> Result<StatusReport> {
    let deadline = Instant::now() + timeout;
    let cmd = crate::cmdfile::command_file_location(proc_, env).host;
    loop {
        if let Ok(st) = read_status(proc_, env) {
            let newer = st.modified.is_some_and(|m| m > since);
            // The library deletes the command file once it has applied it.
            if newer && st.doc.last_command.is_some() && !cmd.exists() {
                return Ok(st);
            }
        }
        if Instant::now() >= deadline {
            let still = if cmd.exists() {
                " (the command file is still there: the library has not read it)"
            } else {
                ""
            };
            return Err(Error::Timeout(format!(
                "no new status from pid {} within {:.0}s{still}",
                proc_.pid,
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything `scope inspect` shows about one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspection {
    pub process: ProcessInfo,
    /// AppScope settings from its environment (None when not scoped).
    pub env: Option<ScopeEnv>,
    pub status: Option<StatusReport>,
    /// Why there is no status (not scoped, no SCOPE_STATUS_DIR, unreadable...).
    pub status_error: Option<String>,
}

/// Inspect a process: details always; status file when scoped.
pub fn inspect(pid: i32) -> Result<Inspection> {
    let process = crate::procs::read_process(pid)?;
    if !process.scoped {
        return Ok(Inspection {
            status_error: Some(match &process.unscoped_reason {
                Some(why) => format!(
                    "process {pid} is not scoped ({why}: no build of libscope.so can load into it)"
                ),
                None => format!("process {pid} is not scoped (libscope.so is not mapped into it)"),
            }),
            process,
            env: None,
            status: None,
        });
    }
    let env = crate::procs::scope_env(pid)?;
    let (status, status_error) = match read_status(&process, &env) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Inspection {
        process,
        env: Some(env),
        status,
        status_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, value: &str) -> Setting {
        Setting {
            name: name.into(),
            value: value.into(),
        }
    }

    /// A status file written by libscope.so after `scope update --set
    /// SCOPE_METRIC_VERBOSITY=9 --set SCOPE_EVENT_HTTP=false --set SCOPE_BOGUS=1`.
    #[test]
    fn parses_the_librarys_status_file_and_matches_rejections_by_line() {
        let d: StatusDoc =
            serde_json::from_str(include_str!("../tests/fixtures/status/rejected-line.json"))
                .unwrap();
        assert_eq!(d.schema, 1);
        assert!(d.interfaces.iter().any(|i| i.name == "events"));
        let last = d.last_command.as_ref().unwrap();
        assert_eq!(last.rejected[0].line, 3);
        let sent = vec![
            setting("SCOPE_METRIC_VERBOSITY", "9"),
            setting("SCOPE_EVENT_HTTP", "false"),
            setting("SCOPE_BOGUS", "1"),
        ];
        let o = outcome(&sent, last);
        assert_eq!(
            o.applied,
            vec!["SCOPE_METRIC_VERBOSITY", "SCOPE_EVENT_HTTP"]
        );
        assert_eq!(o.rejected.len(), 1);
        assert!(
            o.rejected[0].reason.contains("SCOPE_BOGUS"),
            "{:?}",
            o.rejected
        );
        assert!(o.unreported.is_empty());
        assert!(!o.all_applied());
    }

    #[test]
    fn unreported_and_whole_file_refusals() {
        let v: Value = serde_json::json!({"schema":1,"pid":7,"interfaces":[{"name":"events","connected":true,"extra":1}],
            "last_command":{"file":"/tmp/scope.7","applied":["SCOPE_METRIC_VERBOSITY"],
                "rejected":[{"line":0,"reason":"refused: not owned by the process's user or root"}]}});
        let d: StatusDoc = serde_json::from_value(v).unwrap();
        assert_eq!(d.pid, 7);
        assert!(d.interfaces[0].connected);
        let sent = vec![
            setting("SCOPE_METRIC_VERBOSITY", "9"),
            setting("SCOPE_LOST", "1"),
        ];
        let o = outcome(&sent, d.last_command.as_ref().unwrap());
        assert_eq!(o.applied, vec!["SCOPE_METRIC_VERBOSITY"]);
        assert_eq!(o.unreported, vec!["SCOPE_LOST"]);
        assert_eq!(o.rejected.len(), 1, "the file-level refusal is reported");
        assert!(!o.all_applied());
    }

    #[test]
    fn staleness() {
        let p = Duration::from_secs(10);
        assert!(!is_stale(Duration::from_secs(21), p));
        assert!(is_stale(Duration::from_secs(23), p));
    }
}
