//! Crash bundles written by the library (design §3): files `info_<ts>`, `cfg_<ts>`,
//! `backtrace_<ts>`, `core_<ts>`, `crash_<ts>.json` and, written last, `done_<ts>`, in
//! `<SCOPE_SNAPSHOT_DIR>/<pid>/`. Only bundles whose `done_` exists are complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// File kinds of a bundle, by name prefix.
pub const KINDS: &[&str] = &[
    "info",
    "cfg",
    "backtrace",
    "core",
    "crash",
    "snapshot",
    "done",
];

/// A complete crash (or snapshot) bundle on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bundle {
    /// Directory holding it (`<snapshot dir>/<pid>`), host path.
    pub dir: PathBuf,
    /// The `<ts>` shared by its files.
    pub key: String,
    /// pid from the directory name (the process's own view).
    pub pid: i32,
    /// Data files (everything but `done_`), host paths, sorted.
    pub files: Vec<PathBuf>,
    /// The `done_<ts>` marker.
    pub done: PathBuf,
}

impl Bundle {
    /// The file of one kind, if present.
    pub fn file(&self, kind: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|f| {
                split_name(f.file_name().and_then(|n| n.to_str()).unwrap_or("")).map(|(k, _)| k)
                    == Some(kind)
            })
            .map(|p| p.as_path())
    }

    /// A live snapshot the library wrote on request (`snapshot_<ts>.json`, no
    /// `crash_<ts>.json`): not a crash. Crash readers skip it (see [`scan_crashes`]);
    /// the snapshot that asked for it moves it out of the snapshot directory.
    pub fn is_snapshot(&self) -> bool {
        self.file("snapshot").is_some() && self.file("crash").is_none()
    }

    /// Parsed `crash_<ts>.json`, or Null.
    pub fn crash_json(&self) -> Value {
        self.file("crash")
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }
}

/// Split a bundle file name into (kind, ts) (pure). `crash_123.json` -> ("crash", "123").
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let (kind, rest) = name.split_once('_')?;
    if !KINDS.contains(&kind) || rest.is_empty() || name.starts_with('.') {
        return None;
    }
    let ts = rest
        .strip_suffix(".json")
        .or_else(|| rest.strip_suffix(".txt"))
        .unwrap_or(rest);
    (!ts.is_empty()).then_some((kind, ts))
}

/// Group file names of one pid directory into complete bundles (pure).
pub fn group_bundles(dir: &Path, pid: i32, names: &[String]) -> Vec<Bundle> {
    let mut by_key: BTreeMap<&str, (Vec<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for n in names {
        if let Some((kind, ts)) = split_name(n) {
            let e = by_key.entry(ts).or_default();
            if kind == "done" {
                e.1 = Some(dir.join(n));
            } else {
                e.0.push(dir.join(n));
            }
        }
    }
    by_key
        .into_iter()
        .filter_map(|(key, (mut files, done))| {
            files.sort();
            Some(Bundle {
                dir: dir.to_path_buf(),
                key: key.to_string(),
                pid,
                files,
                done: done?,
            })
        })
        .collect()
}

/// Complete bundles in one `<snapshot dir>/<pid>` directory.
pub fn scan_pid_dir(dir: &Path) -> Vec<Bundle> {
    let pid = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    group_bundles(dir, pid, &names)
}

/// Complete bundles under a snapshot directory (`<dir>/<pid>/...`).
pub fn scan_snapshot_dir(dir: &Path) -> Vec<Bundle> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    let mut subdirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<i32>().is_ok())
        })
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    for d in subdirs {
        out.extend(scan_pid_dir(&d));
    }
    out
}

/// Complete crash bundles under a snapshot directory: [`scan_snapshot_dir`] without the
/// live snapshots ([`Bundle::is_snapshot`]), which are never crash reports.
pub fn scan_crashes(dir: &Path) -> Vec<Bundle> {
    scan_snapshot_dir(dir)
        .into_iter()
        .filter(|b| !b.is_snapshot())
        .collect()
}

/// A frame as read from a bundle (crash JSON or backtrace text).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Frame {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

impl Frame {
    /// `symbol+0x..` or `module+0x..`, for tables.
    pub fn describe(&self) -> String {
        match (&self.symbol, &self.module, self.offset) {
            (Some(s), Some(m), _) => format!("{s} ({})", base_name(m)),
            (Some(s), None, _) => s.clone(),
            (None, Some(m), Some(o)) => format!("{}+{o:#x}", base_name(m)),
            _ => self
                .address
                .map(|a| format!("{a:#x}"))
                .unwrap_or_else(|| "??".into()),
        }
    }
}

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        }
        _ => None,
    }
}

/// Frames from a crash JSON (pure). Accepts `frames`, `backtrace` or `stack` arrays of
/// objects with `module`/`offset`/`symbol`/`address` (or `ip`/`pc`) fields.
pub fn frames_from_crash_json(v: &Value) -> Vec<Frame> {
    let arr = ["frames", "backtrace", "stack"]
        .iter()
        .find_map(|k| v.get(k).and_then(|a| a.as_array()));
    let Some(arr) = arr else { return Vec::new() };
    arr.iter()
        .enumerate()
        .map(|(i, f)| {
            let s = |k: &str| f.get(k).and_then(|x| x.as_str()).map(str::to_string);
            Frame {
                index: i,
                module: s("module").or_else(|| s("object")),
                offset: f.get("offset").and_then(as_u64),
                address: ["address", "ip", "pc", "addr"]
                    .iter()
                    .find_map(|k| f.get(k).and_then(as_u64)),
                symbol: s("symbol")
                    .or_else(|| s("function"))
                    .or_else(|| s("name"))
                    .filter(|s| !s.is_empty()),
            }
        })
        .collect()
}

/// Signal number from a crash JSON (`signal` or `signo`, number or name) (pure).
pub fn signal_from_crash_json(v: &Value) -> Option<i32> {
    for k in ["signal", "signo", "sig"] {
        match v.get(k) {
            Some(Value::Number(n)) => return n.as_i64().map(|n| n as i32),
            Some(Value::String(s)) => return signal_number(s),
            Some(Value::Object(o)) => {
                if let Some(n) = o
                    .get("number")
                    .or_else(|| o.get("signo"))
                    .and_then(|n| n.as_i64())
                {
                    return Some(n as i32);
                }
                if let Some(s) = o.get("name").and_then(|n| n.as_str()) {
                    return signal_number(s);
                }
            }
            _ => {}
        }
    }
    None
}

const SIGNALS: &[(i32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (31, "SIGSYS"),
];

/// `SIGSEGV` for 11 (or `SIG<n>`).
pub fn signal_name(n: i32) -> String {
    SIGNALS
        .iter()
        .find(|(k, _)| *k == n)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| format!("SIG{n}"))
}

/// 11 for `SIGSEGV`, `SEGV` or `11`.
pub fn signal_number(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    SIGNALS
        .iter()
        .find(|(_, name)| *name == full)
        .map(|(n, _)| *n)
}

/// Frames from AppScope-style backtrace text (pure): lines like
/// `#0 0x0000.. in func+0x12 (/path/module)`, `func+0x12 [0x...]`, or `module(func+0x12) [0x..]`.
pub fn frames_from_backtrace_text(text: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let addr = line
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '(' || c == ')')
            .find_map(|t| {
                t.strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
            });
        // symbol: a token with '+0x' or the word after " in "
        let symbol = line
            .split_once(" in ")
            .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
            .or_else(|| {
                line.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                    .find(|t| t.contains("+0x") && !t.starts_with("0x") && !t.starts_with('/'))
                    .map(str::to_string)
            })
            .map(|s| s.split("+0x").next().unwrap_or("").to_string())
            .filter(|s| !s.is_empty() && s != "??");
        let module = line
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .find(|t| t.starts_with('/'))
            .map(str::to_string);
        if addr.is_none() && symbol.is_none() {
            continue;
        }
        out.push(Frame {
            index: out.len(),
            module,
            offset: None,
            address: addr,
            symbol,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_grouping() {
        assert_eq!(
            split_name("crash_1700000000.json"),
            Some(("crash", "1700000000"))
        );
        assert_eq!(
            split_name("core_1700000000_2"),
            Some(("core", "1700000000_2"))
        );
        assert_eq!(split_name("other_1"), None);
        assert_eq!(split_name("done_"), None);
        let names: Vec<String> = [
            "info_1",
            "cfg_1",
            "done_1",
            "info_2",
            "crash_2.json",
            "junk",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let b = group_bundles(Path::new("/d/7"), 7, &names);
        assert_eq!(b.len(), 1, "bundle 2 has no done_ marker yet");
        assert_eq!(b[0].key, "1");
        assert_eq!(b[0].files.len(), 2);
    }

    #[test]
    fn snapshot_bundles_are_not_crashes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("7");
        fs::create_dir(&d).unwrap();
        for f in [
            "info_1.000000001",
            "cfg_1.000000001",
            "snapshot_1.000000001.json",
            "done_1.000000001",
            "info_2.000000002",
            "crash_2.000000002.json",
            "done_2.000000002",
            "info_3",
            "done_3",
        ] {
            fs::write(d.join(f), "{}").unwrap();
        }
        let all = scan_snapshot_dir(tmp.path());
        assert_eq!(all.len(), 3);
        assert!(all[0].is_snapshot());
        assert!(!all[1].is_snapshot(), "crash JSON");
        assert!(
            !all[2].is_snapshot(),
            "AppScope's bundles have no JSON: crashes"
        );
        let crashes: Vec<String> = scan_crashes(tmp.path())
            .into_iter()
            .map(|b| b.key)
            .collect();
        assert_eq!(crashes, ["2.000000002", "3"]);
    }

    #[test]
    fn crash_json_frames_and_signal() {
        let v = serde_json::json!({"signal": 11, "frames": [
            {"module": "/usr/bin/demo", "offset": "0x1139", "symbol": "crash_here"},
            {"module": "/lib/libc.so.6", "offset": 4096}]});
        let f = frames_from_crash_json(&v);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].offset, Some(0x1139));
        assert_eq!(f[0].describe(), "crash_here (demo)");
        assert_eq!(f[1].describe(), "libc.so.6+0x1000");
        assert_eq!(signal_from_crash_json(&v), Some(11));
        assert_eq!(
            signal_from_crash_json(&serde_json::json!({"signal":"SIGABRT"})),
            Some(6)
        );
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_number("segv"), Some(11));
    }

    #[test]
    fn backtrace_text() {
        let t = "#0  0x0000555555555139 in crash_here+0x10 (/usr/bin/demo)\n\
                 /lib/libc.so.6(__libc_start_main+0x80) [0x7f0000001000]\n";
        let f = frames_from_backtrace_text(t);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].symbol.as_deref(), Some("crash_here"));
        assert_eq!(f[0].address, Some(0x555555555139));
        assert_eq!(f[1].symbol.as_deref(), Some("__libc_start_main"));
    }
}
