//! Crash-bundle types and file naming (design §3).
//!
//! A bundle lives in `<SCOPE_SNAPSHOT_DIR>/<pid>/` and is a set of files sharing one
//! timestamp `<ts>`:
//!
//! | file                 | written when                          |
//! |----------------------|---------------------------------------|
//! | `info_<ts>`          | always (AppScope's text lines)        |
//! | `cfg_<ts>`           | always (config in effect, JSON)       |
//! | `backtrace_<ts>`     | `SCOPE_SNAPSHOT_BACKTRACE=true`       |
//! | `core_<ts>`          | `SCOPE_SNAPSHOT_COREDUMP=true`        |
//! | `crash_<ts>.json`    | a fatal signal was captured           |
//! | `snapshot_<ts>.json` | a live snapshot (`SCOPE_CMD_SNAPSHOT`)|
//! | `done_<ts>`          | last, empty: the bundle is complete   |
//!
//! `<ts>` is `<unix seconds>.<nanoseconds, 9 digits>` (for example
//! `1764141221.000123456`). The library creates `info_<ts>` with `O_EXCL` and bumps the
//! nanoseconds on a collision, so two crashes in the same second (even two pid-1
//! processes of a restarting container sharing `<dir>/1/`) never share a `<ts>`.
//! AppScope's own bundles use plain `<unix seconds>`; [`Ts::parse`] accepts both.
//!
//! Readers must take only bundles for which [`bundle_complete`] is true.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Schema version of `crash_<ts>.json` / `snapshot_<ts>.json`.
pub const BUNDLE_SCHEMA: u32 = 1;

/// Bundle timestamp: unix seconds plus nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts {
    pub secs: u64,
    pub nanos: u32,
}

impl Ts {
    pub fn new(secs: u64, nanos: u32) -> Self {
        Ts { secs, nanos }
    }

    /// Parses `<secs>.<9 digits>` or AppScope's plain `<secs>`.
    pub fn parse(s: &str) -> Option<Ts> {
        let (secs, nanos) = match s.split_once('.') {
            Some((a, b)) => {
                if b.len() != 9 || !b.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                (a, b.parse::<u32>().ok()?)
            }
            None => (s, 0),
        };
        if secs.is_empty() || !secs.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(Ts {
            secs: secs.parse().ok()?,
            nanos,
        })
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs, self.nanos)
    }
}

/// The files of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleFile {
    Info,
    Cfg,
    Backtrace,
    Core,
    CrashJson,
    SnapshotJson,
    Done,
}

impl BundleFile {
    pub const ALL: [BundleFile; 7] = [
        BundleFile::Info,
        BundleFile::Cfg,
        BundleFile::Backtrace,
        BundleFile::Core,
        BundleFile::CrashJson,
        BundleFile::SnapshotJson,
        BundleFile::Done,
    ];

    /// File-name prefix, including the `_`.
    pub fn prefix(self) -> &'static str {
        match self {
            BundleFile::Info => "info_",
            BundleFile::Cfg => "cfg_",
            BundleFile::Backtrace => "backtrace_",
            BundleFile::Core => "core_",
            BundleFile::CrashJson => "crash_",
            BundleFile::SnapshotJson => "snapshot_",
            BundleFile::Done => "done_",
        }
    }

    /// File-name suffix after `<ts>`.
    pub fn suffix(self) -> &'static str {
        match self {
            BundleFile::CrashJson | BundleFile::SnapshotJson => ".json",
            _ => "",
        }
    }
}

/// `info_<ts>`, `crash_<ts>.json`, ...
pub fn file_name(file: BundleFile, ts: Ts) -> String {
    format!("{}{}{}", file.prefix(), ts, file.suffix())
}

/// Inverse of [`file_name`]; `None` for names that are not bundle files.
pub fn parse_file_name(name: &str) -> Option<(BundleFile, Ts)> {
    BundleFile::ALL.iter().find_map(|&f| {
        let rest = name.strip_prefix(f.prefix())?;
        let ts = rest.strip_suffix(f.suffix())?;
        // `crash_<ts>` without `.json` is not ours; `.json` suffix is mandatory for those.
        Some((f, Ts::parse(ts)?))
    })
}

/// Crash or live snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    Crash,
    Snapshot,
}

/// True when `done_<ts>` and the bundle's JSON (`crash_` or `snapshot_`) exist in `dir`.
pub fn bundle_complete(dir: &Path, ts: Ts) -> bool {
    dir.join(file_name(BundleFile::Done, ts)).is_file()
        && (dir.join(file_name(BundleFile::CrashJson, ts)).is_file()
            || dir.join(file_name(BundleFile::SnapshotJson, ts)).is_file())
}

/// One bundle found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRef {
    pub ts: Ts,
    /// `None` while the JSON file is not written yet.
    pub kind: Option<BundleKind>,
    pub complete: bool,
    /// File names present, sorted.
    pub files: Vec<String>,
}

/// Lists the bundles in `dir` (one `<pid>` directory), oldest first. Unreadable
/// directories give an error; stray files are ignored.
pub fn list_bundles(dir: &Path) -> std::io::Result<Vec<BundleRef>> {
    let mut by_ts: std::collections::BTreeMap<Ts, Vec<(BundleFile, String)>> =
        std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some((f, ts)) = parse_file_name(&name) {
            by_ts.entry(ts).or_default().push((f, name));
        }
    }
    Ok(by_ts
        .into_iter()
        .map(|(ts, files)| {
            let has = |k: BundleFile| files.iter().any(|(f, _)| *f == k);
            let kind = if has(BundleFile::CrashJson) {
                Some(BundleKind::Crash)
            } else if has(BundleFile::SnapshotJson) {
                Some(BundleKind::Snapshot)
            } else {
                None
            };
            let complete = kind.is_some() && has(BundleFile::Done);
            let mut names: Vec<String> = files.into_iter().map(|(_, n)| n).collect();
            names.sort();
            BundleRef {
                ts,
                kind,
                complete,
                files: names,
            }
        })
        .collect())
}

/// Signal details of a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalInfo {
    /// Signal number (11 for SIGSEGV).
    pub number: i32,
    /// `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`.
    pub name: String,
    /// `si_code`.
    pub code: i32,
    /// Text for `si_code` (`SEGV_MAPERR: address not mapped to object`).
    pub reason: String,
    /// `si_addr`, as `0x...`.
    pub fault_addr: String,
}

/// One frame of the crashing thread, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub index: u32,
    /// Absolute address, `0x...`.
    pub addr: String,
    /// Path of the mapped module, when the address is in a file mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// `addr - module load base`, `0x...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// Symbol name from the module's `.symtab` or `.dynsym`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// `addr - symbol start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol_offset: Option<u64>,
}

/// Core-file details when a core was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreInfo {
    pub file: String,
    pub bytes: u64,
    /// Some memory was left out to respect `SCOPE_SNAPSHOT_CORE_MAXSIZE`.
    pub truncated: bool,
    /// Threads in the core.
    pub threads: u32,
    /// Threads whose registers could not be captured (their NT_PRSTATUS has zeroed
    /// registers).
    pub threads_without_registers: u32,
}

/// `crash_<ts>.json` / `snapshot_<ts>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashReport {
    pub schema: u32,
    pub kind: BundleKind,
    /// `<ts>` of the bundle.
    pub ts: String,
    /// Unix time of capture, seconds.
    pub time: u64,
    pub pid: i32,
    pub ppid: i32,
    pub procname: String,
    pub cmd: String,
    /// Thread that crashed (or requested the snapshot).
    pub tid: i32,
    pub thread_name: String,
    pub libscope_version: String,
    /// Present for crashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalInfo>,
    /// Registers of the crashing thread at the fault, name -> `0x...`.
    #[serde(default)]
    pub registers: std::collections::BTreeMap<String, String>,
    /// Frames of the crashing thread, starting at the faulting instruction.
    #[serde(default)]
    pub frames: Vec<Frame>,
    /// Bundle file names present (besides this one and `done_`).
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<CoreInfo>,
}

/// Error reading a bundle's JSON.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("no crash_{ts}.json or snapshot_{ts}.json in {dir}")]
    Missing { dir: String, ts: Ts },
}

/// Reads the JSON of bundle `ts` in `dir`.
pub fn read_report(dir: &Path, ts: Ts) -> Result<CrashReport, BundleError> {
    for f in [BundleFile::CrashJson, BundleFile::SnapshotJson] {
        let p = dir.join(file_name(f, ts));
        match std::fs::read(&p) {
            Ok(b) => {
                return serde_json::from_slice(&b).map_err(|source| BundleError::Json {
                    path: p.display().to_string(),
                    source,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(BundleError::Io {
                    path: p.display().to_string(),
                    source,
                });
            }
        }
    }
    Err(BundleError::Missing {
        dir: dir.display().to_string(),
        ts,
    })
}

/// Signal name for the fatal signals we capture (and a few others).
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        31 => "SIGSYS",
        _ => "SIG?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_roundtrip_and_order() {
        let a = Ts::new(1764141221, 123);
        assert_eq!(a.to_string(), "1764141221.000000123");
        assert_eq!(Ts::parse(&a.to_string()), Some(a));
        assert_eq!(Ts::parse("1764141221"), Some(Ts::new(1764141221, 0)));
        assert!(Ts::new(5, 1) > Ts::new(5, 0));
        for bad in [
            "",
            ".",
            "12.",
            "12.1234",
            "x.000000001",
            "1.00000000x",
            "-1",
        ] {
            assert_eq!(Ts::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_names_roundtrip() {
        let ts = Ts::new(10, 42);
        for f in BundleFile::ALL {
            let n = file_name(f, ts);
            assert_eq!(parse_file_name(&n), Some((f, ts)), "{n}");
        }
        assert_eq!(
            file_name(BundleFile::CrashJson, ts),
            "crash_10.000000042.json"
        );
        assert_eq!(parse_file_name("crash_10.000000042"), None);
        assert_eq!(parse_file_name("info_abc"), None);
        assert_eq!(
            parse_file_name("core_1700000000"),
            Some((BundleFile::Core, Ts::new(1700000000, 0)))
        );
    }

    #[test]
    fn completeness_and_listing() {
        let d = std::env::temp_dir().join(format!("scope-config-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let a = Ts::new(100, 1);
        let b = Ts::new(100, 2);
        for f in [BundleFile::Info, BundleFile::Cfg, BundleFile::CrashJson] {
            std::fs::write(d.join(file_name(f, a)), b"x").unwrap();
        }
        std::fs::write(d.join(file_name(BundleFile::Info, b)), b"x").unwrap();
        std::fs::write(d.join("unrelated"), b"x").unwrap();
        assert!(!bundle_complete(&d, a));
        std::fs::write(d.join(file_name(BundleFile::Done, a)), b"").unwrap();
        assert!(bundle_complete(&d, a));
        assert!(!bundle_complete(&d, b));
        let l = list_bundles(&d).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].ts, a);
        assert!(l[0].complete);
        assert_eq!(l[0].kind, Some(BundleKind::Crash));
        assert_eq!(l[0].files.len(), 4);
        assert!(!l[1].complete);
        assert_eq!(l[1].kind, None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn report_json_roundtrip() {
        let r = CrashReport {
            schema: BUNDLE_SCHEMA,
            kind: BundleKind::Crash,
            ts: "1.000000002".into(),
            time: 1,
            pid: 7,
            ppid: 1,
            procname: "p".into(),
            cmd: "p -x".into(),
            tid: 8,
            thread_name: "worker".into(),
            libscope_version: "0.1.0".into(),
            signal: Some(SignalInfo {
                number: 11,
                name: "SIGSEGV".into(),
                code: 1,
                reason: "SEGV_MAPERR".into(),
                fault_addr: "0x0".into(),
            }),
            registers: [("rip".to_string(), "0x1".to_string())].into(),
            frames: vec![Frame {
                index: 0,
                addr: "0x401000".into(),
                module: Some("/bin/p".into()),
                offset: Some("0x1000".into()),
                symbol: Some("crash_here".into()),
                symbol_offset: Some(4),
            }],
            files: vec!["info_1.000000002".into()],
            core: None,
        };
        let s = serde_json::to_string(&r).unwrap();
        let back: CrashReport = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }
}
