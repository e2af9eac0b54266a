//! Human-readable output shared by local and cluster mode (tables and detail views).
//! JSON output is the serde form of the same structs.

use crate::procs::ProcessInfo;
use crate::snapshot::SnapshotResult;
use crate::status::{Inspection, UpdateOutcome};
use crate::store::{CrashReport, StoredReport};

/// Left-aligned table with a header row; the last column is not padded (pure).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
    }
    out
}

/// Host pid, with the namespaced pid when different: `4242 (ns 7)` (pure).
pub fn pid_label(p: &ProcessInfo) -> String {
    if p.nspid != p.pid {
        format!("{} (ns {})", p.pid, p.nspid)
    } else {
        p.pid.to_string()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// `scope ps` table: ID, PID, USER, SCOPED, COMMAND (pure).
pub fn ps_table(procs: &[ProcessInfo]) -> String {
    let rows: Vec<Vec<String>> = procs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                (i + 1).to_string(),
                pid_label(p),
                p.user.clone(),
                match (&p.scoped, &p.unscoped_reason) {
                    (true, _) => "true".into(),
                    (false, Some(why)) => format!("false ({why})"),
                    (false, None) => "false".into(),
                },
                truncate(&p.command(), 120),
            ]
        })
        .collect();
    table(&["ID", "PID", "USER", "SCOPED", "COMMAND"], &rows)
}

/// Short ID of a stored report (its directory name).
pub fn short_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// `scope crashes list` table, newest first (pure).
pub fn crashes_table(reports: &[StoredReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let rep = &r.report;
            let proc_ = if rep.procname.is_empty() {
                rep.container.clone()
            } else {
                rep.procname.clone()
            };
            vec![
                short_id(&r.id).to_string(),
                rep.time.clone(),
                proc_,
                rep.pid.to_string(),
                rep.signal_name.clone(),
                rep.top_frame(),
            ]
        })
        .collect();
    table(
        &["ID", "TIME", "PROCESS", "PID", "SIGNAL", "TOP FRAME"],
        &rows,
    )
}

/// `scope crashes show` (pure).
pub fn crash_detail(r: &CrashReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("Crash report {}\n", r.id));
    s.push_str(&format!("  time:      {}\n", r.time));
    s.push_str(&format!("  process:   {} (pid {}", r.procname, r.pid));
    if let Some(h) = r.host_pid.filter(|h| *h != r.pid) {
        s.push_str(&format!(", host pid {h}"));
    }
    s.push_str(")\n");
    if !r.cmdline.is_empty() {
        s.push_str(&format!("  command:   {}\n", r.cmdline.join(" ")));
    }
    let reason = r
        .crash
        .get("signal")
        .and_then(|v| v.get("reason"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let fault = r
        .crash
        .get("signal")
        .and_then(|v| v.get("fault_addr"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    s.push_str(&format!("  signal:    {}", r.signal_name));
    if !reason.is_empty() {
        s.push_str(&format!(" ({reason})"));
    }
    if !fault.is_empty() {
        s.push_str(&format!(" at {fault}"));
    }
    s.push('\n');
    if r.namespace != "local" {
        s.push_str(&format!(
            "  pod:       {}/{} container {}\n",
            r.namespace, r.pod, r.container
        ));
    }
    s.push_str(&format!("  node:      {}\n", r.node));
    s.push_str(&format!("  directory: {}\n", r.path));
    s.push_str("\nBacktrace:\n");
    if r.backtrace.is_empty() {
        s.push_str("  (none recorded: run with -b / SCOPE_SNAPSHOT_BACKTRACE=true)\n");
    }
    for f in &r.backtrace {
        let addr = f.address.map(|a| format!("{a:#018x} ")).unwrap_or_default();
        s.push_str(&format!("  #{:<2} {addr}{}\n", f.index, f.describe()));
    }
    s.push_str("\nFiles:\n");
    let width = r.files.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &r.files {
        s.push_str(&format!(
            "  {:<width$} {:>10}  sha256:{}\n",
            f.name,
            f.size,
            &f.sha256[..f.sha256.len().min(16)]
        ));
    }
    s
}

/// `scope inspect` (pure).
pub fn inspect_text(i: &Inspection) -> String {
    let p = &i.process;
    let mut s = String::new();
    s.push_str(&format!("Process {}\n", pid_label(p)));
    s.push_str(&format!("  command:  {}\n", p.command()));
    s.push_str(&format!("  user:     {} (uid {})\n", p.user, p.uid));
    match &p.unscoped_reason {
        Some(why) if !p.scoped => s.push_str(&format!("  scoped:   false ({why})\n")),
        _ => s.push_str(&format!("  scoped:   {}\n", p.scoped)),
    }
    if let Some(l) = &p.libscope {
        s.push_str(&format!("  library:  {l}\n"));
    }
    if p.foreign_mntns || p.foreign_pidns {
        s.push_str(&format!(
            "  container: other mount namespace: {}, other pid namespace: {} (files reached through /proc/{}/root)\n",
            p.foreign_mntns, p.foreign_pidns, p.pid
        ));
    }
    if let Some(e) = &i.env {
        s.push_str(&format!("  cmd dir:  {}\n", e.cmd_dir.display()));
        s.push_str(&format!(
            "  status:   {}\n",
            e.status_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "(SCOPE_STATUS_DIR not set)".into())
        ));
        s.push_str(&format!("  crash dir: {}\n", e.snapshot_dir.display()));
    }
    if let Some(err) = &i.status_error {
        s.push_str(&format!("\n{err}\n"));
    }
    if let Some(st) = &i.status {
        let d = &st.doc;
        s.push_str(&format!(
            "\nStatus file {} (updated {:.1}s ago",
            st.path.display(),
            st.age_secs
        ));
        if st.stale {
            s.push_str("; STALE: older than two summary periods, the library is not updating it: the process may be hung");
        }
        s.push_str(")\n");
        if !d.libscopever.is_empty() {
            s.push_str(&format!("  libscope: {}\n", d.libscopever));
        }
        s.push_str("\nInterfaces:\n");
        let rows: Vec<Vec<String>> = d
            .interfaces
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.connected.to_string(),
                    describe_config(&f.config),
                    f.attempts.to_string(),
                    f.sent.to_string(),
                    f.dropped.to_string(),
                    f.failure_details.clone().unwrap_or_default(),
                ]
            })
            .collect();
        for l in table(
            &[
                "NAME",
                "CONNECTED",
                "DESTINATION",
                "ATTEMPTS",
                "SENT",
                "DROPPED",
                "FAILURE",
            ],
            &rows,
        )
        .lines()
        {
            s.push_str(&format!("  {l}\n"));
        }
        if !d.config_problems.is_empty() {
            s.push_str("\nConfig problems at start (ignored settings):\n");
            for p in &d.config_problems {
                s.push_str(&format!("  {p}\n"));
            }
        }
        if let Some(lc) = &d.last_command {
            s.push_str(&format!("\nLast command file: {}\n", lc.file));
            s.push_str(&format!(
                "  applied:  {}\n",
                if lc.applied.is_empty() {
                    "-".into()
                } else {
                    lc.applied.join(", ")
                }
            ));
            for r in &lc.rejected {
                s.push_str(&format!("  rejected: line {}: {}\n", r.line, r.reason));
            }
        }
        s.push_str("\nConfig in effect:\n");
        let cfg = d.config.get("current").unwrap_or(&d.config);
        let pretty = serde_json::to_string_pretty(cfg).unwrap_or_default();
        for l in pretty.lines() {
            s.push_str(&format!("  {l}\n"));
        }
    }
    s
}

fn describe_config(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(o) => {
            let get = |k: &str| {
                o.get(k).map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
            };
            match (get("type"), get("host"), get("port"), get("path")) {
                (Some(t), Some(h), Some(p), _) => format!("{t}://{h}:{p}"),
                (Some(t), _, _, Some(p)) => format!("{t}://{p}"),
                _ => v.to_string(),
            }
        }
        _ => v.to_string(),
    }
}

/// `scope update --wait` result (pure).
pub fn update_text(o: &UpdateOutcome) -> String {
    let mut s = String::new();
    for a in &o.applied {
        s.push_str(&format!("applied   {a}\n"));
    }
    for r in &o.rejected {
        s.push_str(&format!("rejected  line {}: {}\n", r.line, r.reason));
    }
    for u in &o.unreported {
        s.push_str(&format!("unknown   {u} (the library did not report it)\n"));
    }
    s
}

/// `scope snapshot` summary (pure).
pub fn snapshot_text(r: &SnapshotResult) -> String {
    let mut s = format!(
        "Snapshot of pid {} ({}) in {}\n  files: {}\n  threads: {} (stopped {:.1} ms)\n",
        r.pid,
        r.procname,
        r.dir.display(),
        r.files.join(" "),
        r.threads.len(),
        r.stopped_ms
    );
    if let Some(c) = &r.core {
        s.push_str(&format!("  core: {c} (gdb {} -c {c})\n", exe_hint(r.pid)));
    }
    if let Some(b) = &r.library_bundle {
        s.push_str(&format!("  library bundle: {b}\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}

fn exe_hint(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "<exe>".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
