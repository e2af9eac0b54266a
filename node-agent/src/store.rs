//! Crash-report store (design §6): `<store>/<namespace>/<pod>/<container>/<UTC time>_<pid>_<signal>/`
//! holding the bundle's files and `report.json`.
//!
//! Crash safety (design §6): a bundle is copied into `.tmp-<name>` beside its final place,
//! every file and the directory are fsynced, then the directory is renamed into place and
//! the parent fsynced. Only then is the source deleted, in an order that never leaves a
//! bundle that looks complete but lacks files: `done_<ts>` is first *renamed* to the
//! tombstone `.ingested_<ts>` (one atomic step: the bundle stops being complete and is
//! marked as stored), the directory fsynced, then the data files are removed and the
//! tombstone last. An agent killed at any point and restarted:
//! - before the rename into place: finds no report (`.tmp-*` leftovers are removed on
//!   open) and a complete source, and stores it;
//! - after it, before the tombstone: finds the complete source again and recognises it
//!   as stored, because `report.json` records the source (directory and `<ts>`) and
//!   ingestion looks for that source among all reports of the pod, whatever their
//!   directory names (a name depends on the process name, which may be known only while
//!   the process lives);
//! - after the tombstone: sees no complete bundle; [`sweep_ingested`] (run by the
//!   collector on every snapshot directory, and by ingestion on the bundle's directory)
//!   removes the remaining files of tombstoned `<ts>`s.
//!
//! So no report is lost or duplicated. Retention renames a report directory to a
//! `.tmp-*` name before deleting it, so a half-deleted report is never listed.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::bundle::{self, Bundle, Frame};
use crate::error::{Error, Result, io_err};

/// Name of the report file in each stored report directory.
pub const REPORT_FILE: &str = "report.json";
const TMP_PREFIX: &str = ".tmp-";
/// Tombstone of a stored bundle in its source directory (`done_<ts>` renamed), left
/// while the bundle's data files are deleted.
pub const INGESTED_PREFIX: &str = ".ingested_";

/// Where a crashed process ran (cluster: pod and container; local: host and process).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    pub namespace: String,
    pub pod: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub container: String,
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Origin {
    /// Local mode: namespace `local`, pod = host name, container = process name.
    pub fn local(procname: &str) -> Origin {
        let host = hostname();
        Origin {
            namespace: "local".into(),
            pod: host.clone(),
            pod_uid: None,
            container: sanitize(if procname.is_empty() {
                "unknown"
            } else {
                procname
            }),
            node: host,
            image: None,
        }
    }
}

/// The host name (from /proc), or `localhost`.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Make a string safe as one path component.
pub fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_start_matches('.').to_string();
    if out.is_empty() { "_".into() } else { out }
}

/// What the agent knows about the crashed process besides the bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcContext {
    pub procname: String,
    pub cmdline: Vec<String>,
    /// Host pid, when known (the bundle directory carries the namespaced one).
    pub host_pid: Option<i32>,
}

/// One stored file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Where the bundle came from (used to make ingestion idempotent).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportSource {
    pub dir: String,
    pub key: String,
}

/// `report.json`: everything in ScopeCrashReport plus backtrace and command line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct CrashReport {
    pub schema: u32,
    /// Store-relative path, also the report's ID.
    pub id: String,
    pub namespace: String,
    pub pod: String,
    #[serde(rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub container: String,
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// pid as the process saw itself.
    pub pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<i32>,
    pub procname: String,
    pub cmdline: Vec<String>,
    pub signal: Option<i32>,
    pub signal_name: String,
    pub time: String,
    pub top_frames: Vec<String>,
    pub backtrace: Vec<Frame>,
    /// Absolute path of the report directory.
    pub path: String,
    pub files: Vec<ReportFile>,
    pub source: ReportSource,
    /// The crash JSON as written by the library (signal details, registers).
    pub crash: Value,
}

impl CrashReport {
    /// A live snapshot bundle stored as a report (only agents before snapshot bundles
    /// were told apart did that): the library's JSON says `"kind":"snapshot"`, or the
    /// files hold a `snapshot_<ts>.json` and no `crash_<ts>.json`.
    pub fn is_snapshot(&self) -> bool {
        if let Some(kind) = self.crash.get("kind").and_then(|k| k.as_str()) {
            return kind == "snapshot";
        }
        let has = |prefix: &str| {
            self.files
                .iter()
                .any(|f| bundle::split_name(&f.name).is_some_and(|(k, _)| k == prefix))
        };
        has("snapshot") && !has("crash")
    }

    /// First frame outside the crash handler / libc signal trampoline.
    pub fn top_frame(&self) -> String {
        self.top_frames
            .first()
            .cloned()
            .unwrap_or_else(|| "??".into())
    }
}

/// Time of a bundle: the crash JSON's `time`/`timestamp` (RFC 3339 or epoch seconds),
/// else the `done_` marker's mtime.
pub fn bundle_time(b: &Bundle, crash: &Value) -> DateTime<Utc> {
    if let Some(t) = crash
        .get("ts")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|f| DateTime::from_timestamp(f.trunc() as i64, (f.fract() * 1e9) as u32))
    {
        return t;
    }
    for k in ["time", "timestamp", "at"] {
        match crash.get(k) {
            Some(Value::String(s)) => {
                if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                    return t.with_timezone(&Utc);
                }
            }
            Some(Value::Number(n)) => {
                if let Some(f) = n.as_f64()
                    && let Some(t) =
                        DateTime::from_timestamp((f.trunc()) as i64, (f.fract() * 1e9) as u32)
                {
                    return t;
                }
            }
            _ => {}
        }
    }
    fs::metadata(&b.done)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

fn frames_to_top(frames: &[Frame]) -> Vec<String> {
    // Skip frames of the crash handler itself (inside libscope) and signal trampolines.
    let skip = |f: &Frame| {
        let m = f.module.as_deref().unwrap_or("");
        let s = f.symbol.as_deref().unwrap_or("");
        m.ends_with("libscope.so")
            || s.contains("__restore_rt")
            || s.contains("killpg")
            || s == "raise"
            || s.starts_with("__pthread_kill")
            || s.starts_with("pthread_kill")
            // Standard-library helpers (`core::ptr::write_volatile`...): the user's
            // function is more useful as the top frame.
            || s.starts_with("core::")
            || s.starts_with("std::")
            || s.starts_with("alloc::")
            || s.starts_with("<core::")
            || s.starts_with("<std::")
    };
    let first = frames.iter().position(|f| !skip(f)).unwrap_or(0);
    frames
        .iter()
        .skip(first)
        .take(5)
        .map(Frame::describe)
        .collect()
}

/// Build the report for a bundle (reads its files; does not move anything).
pub fn build_report(b: &Bundle, origin: &Origin, ctx: &ProcContext) -> CrashReport {
    let crash = b.crash_json();
    let mut frames = bundle::frames_from_crash_json(&crash);
    if frames.is_empty()
        && let Some(bt) = b.file("backtrace").and_then(|p| fs::read_to_string(p).ok())
    {
        frames = bundle::frames_from_backtrace_text(&bt);
    }
    crate::symbols::symbolize_frames(&mut frames);
    for f in &mut frames {
        if let Some(sym) = &f.symbol {
            f.symbol = Some(crate::symbols::demangle(sym));
        }
    }
    let signal = bundle::signal_from_crash_json(&crash);
    let time = bundle_time(b, &crash);
    let procname = if !ctx.procname.is_empty() {
        ctx.procname.clone()
    } else {
        crash
            .get("procname")
            .or_else(|| crash.get("process"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let cmdline = if ctx.cmdline.is_empty() {
        match crash.get("cmd").or_else(|| crash.get("cmdline")) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    } else {
        ctx.cmdline.clone()
    };
    // comm is cut at 15 bytes: prefer the command's file name when it extends it.
    let procname = match cmdline.first().and_then(|c| c.rsplit('/').next()) {
        Some(base) if procname.len() >= 15 && base.starts_with(&procname) => base.to_string(),
        _ => procname,
    };
    let files = b
        .files
        .iter()
        .chain(std::iter::once(&b.done))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let (size, sha256) = hash_file(p).ok()?;
            Some(ReportFile { name, size, sha256 })
        })
        .collect();
    CrashReport {
        schema: 1,
        id: String::new(),
        namespace: origin.namespace.clone(),
        pod: origin.pod.clone(),
        pod_uid: origin.pod_uid.clone(),
        container: origin.container.clone(),
        node: origin.node.clone(),
        image: origin.image.clone(),
        pid: b.pid,
        host_pid: ctx.host_pid,
        procname,
        cmdline,
        signal,
        signal_name: signal
            .map(bundle::signal_name)
            .unwrap_or_else(|| "unknown".into()),
        time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
        top_frames: frames_to_top(&frames),
        backtrace: frames,
        path: b.dir.display().to_string(),
        files,
        source: ReportSource {
            dir: b.dir.display().to_string(),
            key: b.key.clone(),
        },
        crash,
    }
}

/// Directory name of a report (pure): `<UTC time>_<pid>_<signal>`.
pub fn report_dir_name(time: &str, pid: i32, signal_name: &str) -> String {
    let t = DateTime::parse_from_rfc3339(time)
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y%m%dT%H%M%S%.3fZ")
                .to_string()
        })
        .unwrap_or_else(|_| sanitize(time));
    format!("{t}_{pid}_{}", sanitize(signal_name))
}

fn hash_file(p: &Path) -> std::io::Result<(u64, String)> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        n += r as u64;
        h.update(&buf[..r]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((n, hex))
}

/// Result of ingesting one bundle.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Newly stored under this ID.
    Stored(String),
    /// Was already stored (a previous run died before deleting the source).
    AlreadyStored(String),
}

impl Ingested {
    pub fn id(&self) -> &str {
        match self {
            Ingested::Stored(s) | Ingested::AlreadyStored(s) => s,
        }
    }
}

/// A report in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredReport {
    pub id: String,
    pub dir: PathBuf,
    pub bytes: u64,
    pub report: CrashReport,
}

/// Retention limits (`None` = unlimited).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Retention {
    pub max_reports: Option<usize>,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

/// Which reports to delete (pure). `reports` are (id, time, bytes); the oldest go first:
/// everything older than `max_age`, then the oldest until count and bytes fit.
pub fn plan_retention(
    reports: &[(String, DateTime<Utc>, u64)],
    limits: &Retention,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut sorted: Vec<&(String, DateTime<Utc>, u64)> = reports.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut remove = Vec::new();
    let mut keep: Vec<&(String, DateTime<Utc>, u64)> = Vec::new();
    for r in sorted {
        let too_old = limits.max_age.is_some_and(|age| {
            now.signed_duration_since(r.1)
                .to_std()
                .map(|d| d > age)
                .unwrap_or(false)
        });
        if too_old {
            remove.push(r.0.clone())
        } else {
            keep.push(r)
        }
    }
    let mut total: u64 = keep.iter().map(|r| r.2).sum();
    let mut i = 0;
    while i < keep.len() {
        let over_count = limits.max_reports.is_some_and(|m| keep.len() - i > m);
        let over_bytes = limits.max_bytes.is_some_and(|m| total > m);
        if !(over_count || over_bytes) {
            break;
        }
        total -= keep[i].2;
        remove.push(keep[i].0.clone());
        i += 1;
    }
    remove
}

/// The crash-report store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (create) a store and remove leftovers of interrupted ingestions.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let s = Store { root };
        s.remove_temps();
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn remove_temps(&self) {
        for d in walk_dirs(&self.root, 3) {
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
    }

    /// Move one complete bundle into the store (see the module doc for crash safety).
    pub fn ingest(&self, b: &Bundle, origin: &Origin, ctx: &ProcContext) -> Result<Ingested> {
        self.ingest_at(b, origin, ctx, &Crashpoint::never())
    }

    /// [`Store::ingest`] with a simulated kill point (tests).
    fn ingest_at(
        &self,
        b: &Bundle,
        origin: &Origin,
        ctx: &ProcContext,
        cp: &Crashpoint,
    ) -> Result<Ingested> {
        if b.is_snapshot() {
            return Err(Error::Invalid(format!(
                "{}: bundle {} is a live snapshot, not a crash",
                b.dir.display(),
                b.key
            )));
        }
        // Leftovers of earlier stored bundles of this process.
        sweep_pid_dir(&b.dir, cp)?;
        let mut report = build_report(b, origin, ctx);
        let pod_dir = self
            .root
            .join(sanitize(&origin.namespace))
            .join(sanitize(&origin.pod));
        if let Some(existing) = self.find_source(&pod_dir, &origin.node, &report.source) {
            let id = self.rel_id(&existing);
            delete_source(b, cp)?;
            return Ok(Ingested::AlreadyStored(id));
        }
        let parent = pod_dir.join(sanitize(&origin.container));
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let base = report_dir_name(&report.time, b.pid, &report.signal_name);
        // The first free name (reports of this source were looked for above).
        let mut name = base.clone();
        for n in 1.. {
            if !parent.join(&name).exists() {
                break;
            }
            name = format!("{base}-{n}");
        }
        let dest = parent.join(&name);
        let tmp = parent.join(format!("{TMP_PREFIX}{name}"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        cp.step()?;
        for f in b.files.iter().chain(std::iter::once(&b.done)) {
            let Some(fname) = f.file_name() else { continue };
            let to = tmp.join(fname);
            copy_synced(f, &to)?;
            cp.step()?;
        }
        report.id = self.rel_id(&dest);
        report.path = dest.display().to_string();
        let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::Other(e.to_string()))?;
        let rp = tmp.join(REPORT_FILE);
        let mut f = fs::File::create(&rp).map_err(io_err(&rp))?;
        f.write_all(&json).map_err(io_err(&rp))?;
        f.sync_all().map_err(io_err(&rp))?;
        fsync_dir(&tmp);
        cp.step()?;
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        fsync_dir(&parent);
        cp.step()?;
        delete_source(b, cp)?;
        Ok(Ingested::Stored(report.id))
    }

    /// The stored report of `source` (bundle directory and `<ts>`) from `node`, under any
    /// container of one pod directory.
    fn find_source(&self, pod_dir: &Path, node: &str, source: &ReportSource) -> Option<PathBuf> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            node: String,
            #[serde(default)]
            source: ReportSource,
        }
        walk_dirs(pod_dir, 2)
            .into_iter()
            .filter(|d| {
                !d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
            })
            .find(|d| {
                fs::read(d.join(REPORT_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Head>(&b).ok())
                    .is_some_and(|h| h.node == node && h.source == *source)
            })
    }

    fn rel_id(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.root)
            .unwrap_or(dir)
            .display()
            .to_string()
    }

    /// All crash reports, newest first. Snapshot bundles that an earlier agent stored
    /// as reports ([`CrashReport::is_snapshot`]) are left out: they are not listed,
    /// published, or counted (or deleted) by retention.
    pub fn list(&self) -> Vec<StoredReport> {
        let mut out: Vec<StoredReport> = walk_dirs(&self.root, 4)
            .into_iter()
            .filter(|d| {
                !d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
            })
            .filter_map(|d| {
                let report = read_report(&d).filter(|r| !r.is_snapshot())?;
                Some(StoredReport {
                    id: self.rel_id(&d),
                    bytes: dir_bytes(&d),
                    dir: d,
                    report,
                })
            })
            .collect();
        out.sort_by(|a, b| b.report.time.cmp(&a.report.time).then(b.id.cmp(&a.id)));
        out
    }

    /// One report by ID: the full store-relative path, its last component, or a unique
    /// prefix of the last component.
    pub fn find(&self, id: &str) -> Result<StoredReport> {
        find_report(self.list(), id)
    }

    /// Delete reports beyond the limits; returns the IDs removed.
    pub fn apply_retention(&self, limits: &Retention, now: DateTime<Utc>) -> Result<Vec<String>> {
        let list = self.list();
        let input: Vec<(String, DateTime<Utc>, u64)> = list
            .iter()
            .map(|r| {
                let t = DateTime::parse_from_rfc3339(&r.report.time)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(now);
                (r.id.clone(), t, r.bytes)
            })
            .collect();
        let remove = plan_retention(&input, limits, now);
        for id in &remove {
            // Rename first: a report half deleted by a kill is never listed, and the
            // `.tmp-` leftover is removed on the next open.
            let d = self.root.join(id);
            let name = d.file_name().unwrap_or_default().to_string_lossy();
            let doomed = d.with_file_name(format!("{TMP_PREFIX}del-{name}"));
            fs::rename(&d, &doomed).map_err(io_err(&d))?;
            fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        }
        Ok(remove)
    }
}

/// Pick a report from a list by ID (see [`Store::find`]).
pub fn find_report(list: Vec<StoredReport>, id: &str) -> Result<StoredReport> {
    let id = id.trim_end_matches('/');
    if let Some(r) = list.iter().find(|r| r.id == id || r.report.id == id) {
        return Ok(r.clone());
    }
    let last = |r: &StoredReport| r.id.rsplit('/').next().unwrap_or("").to_string();
    let matches: Vec<&StoredReport> = list.iter().filter(|r| last(r).starts_with(id)).collect();
    match matches.len() {
        1 => Ok(matches[0].clone()),
        0 => Err(Error::ReportNotFound(id.to_string())),
        n => Err(Error::Invalid(format!(
            "`{id}` matches {n} reports; give more of the ID"
        ))),
    }
}

fn read_report(dir: &Path) -> Option<CrashReport> {
    let b = fs::read(dir.join(REPORT_FILE)).ok()?;
    serde_json::from_slice(&b).ok()
}

fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    let mut src = fs::File::open(from).map_err(io_err(from))?;
    let mut dst = fs::File::create(to).map_err(io_err(to))?;
    std::io::copy(&mut src, &mut dst).map_err(io_err(to))?;
    dst.sync_all().map_err(io_err(to))?;
    Ok(())
}

fn fsync_dir(d: &Path) {
    if let Ok(f) = fs::File::open(d) {
        let _ = f.sync_all();
    }
}

/// Simulated kill points for tests: `step` fails once the given number of durable steps
/// have been taken, leaving the disk exactly as a SIGKILL at that point would.
struct Crashpoint(std::cell::Cell<Option<usize>>);

impl Crashpoint {
    fn never() -> Crashpoint {
        Crashpoint(std::cell::Cell::new(None))
    }

    fn step(&self) -> Result<()> {
        match self.0.get() {
            None => Ok(()),
            Some(0) => Err(Error::Other("simulated kill".into())),
            Some(n) => {
                self.0.set(Some(n - 1));
                Ok(())
            }
        }
    }
}

/// Delete a stored bundle's source files: rename `done_<ts>` to the tombstone
/// `.ingested_<ts>` (the bundle is no longer complete, and is marked as stored), fsync the
/// directory, remove the data files, then the tombstone and the pid directory if it
/// became empty.
fn delete_source(b: &Bundle, cp: &Crashpoint) -> Result<()> {
    let tomb = b.dir.join(format!("{INGESTED_PREFIX}{}", b.key));
    if let Err(e) = fs::rename(&b.done, &tomb) {
        tracing::warn!(file = %b.done.display(), error = %e, "could not mark bundle as stored");
        fs::remove_file(&b.done).map_err(io_err(&b.done))?;
    }
    fsync_dir(&b.dir);
    cp.step()?;
    for f in &b.files {
        let _ = fs::remove_file(f);
        cp.step()?;
    }
    let _ = fs::remove_file(&tomb);
    let _ = fs::remove_dir(&b.dir);
    Ok(())
}

/// Remove a complete bundle from its snapshot directory in the same crash-safe order as
/// after ingestion (`done_<ts>` renamed to a tombstone first, so a half-removed bundle
/// never looks complete). Used by live snapshots once they copied the library's bundle.
pub fn remove_bundle(b: &Bundle) -> Result<()> {
    delete_source(b, &Crashpoint::never())
}

/// Finish deleting stored bundles whose deletion was interrupted: in every
/// `<snapshot dir>/<pid>/` holding a tombstone `.ingested_<ts>`, remove the files of that
/// `<ts>`, then the tombstone, then the pid directory if it became empty. Returns how many
/// tombstones were cleared. Files of other `<ts>`s (bundles being written) are untouched.
pub fn sweep_ingested(snapshot_dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(snapshot_dir) else {
        return 0;
    };
    let mut n = 0;
    for pid_dir in rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        n += sweep_pid_dir(&pid_dir, &Crashpoint::never()).unwrap_or(0);
    }
    n
}

fn sweep_pid_dir(dir: &Path, cp: &Crashpoint) -> Result<usize> {
    let names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => return Ok(0),
    };
    let mut n = 0;
    for tomb in names.iter().filter(|f| f.starts_with(INGESTED_PREFIX)) {
        let key = &tomb[INGESTED_PREFIX.len()..];
        // `done_` (never expected beside a tombstone) first, so that no half-deleted
        // bundle looks complete.
        let mut files: Vec<(&str, &String)> = names
            .iter()
            .filter_map(|f| {
                let (kind, ts) = bundle::split_name(f)?;
                (ts == key).then_some((kind, f))
            })
            .collect();
        files.sort_by_key(|(kind, _)| *kind != "done");
        for (_, f) in files {
            let _ = fs::remove_file(dir.join(f));
            cp.step()?;
        }
        let _ = fs::remove_file(dir.join(tomb));
        n += 1;
    }
    if n > 0 {
        let _ = fs::remove_dir(dir);
    }
    Ok(n)
}

fn dir_bytes(d: &Path) -> u64 {
    fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Directories exactly `depth` levels below `root`.
fn walk_dirs(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for d in &level {
            if let Ok(rd) = fs::read_dir(d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        next.push(e.path());
                    }
                }
            }
        }
        level = next;
    }
    level
}

/// Modification time of a path as SystemTime (helper for callers).
pub fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn make_bundle(dir: &Path, pid: i32, key: &str, sig: i32) -> Bundle {
        let d = dir.join(pid.to_string());
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("info_{key}")), "info").unwrap();
        fs::write(
            d.join(format!("crash_{key}.json")),
            serde_json::json!({"signal": sig, "time": "2026-11-26T07:00:00.250Z",
                "frames": [{"module":"/x/libscope.so","offset":1,"symbol":"handler"},
                           {"module":"/usr/bin/demo","offset":16,"symbol":"crash_here"}]})
            .to_string(),
        )
        .unwrap();
        fs::write(d.join(format!("done_{key}")), "").unwrap();
        bundle::scan_pid_dir(&d)
            .into_iter()
            .find(|b| b.key == key)
            .unwrap()
    }

    #[test]
    fn ingest_is_idempotent_and_deletes_source() {
        let src = tempfile::tempdir().unwrap();
        let st = tempfile::tempdir().unwrap();
        let store = Store::open(st.path()).unwrap();
        let b = make_bundle(src.path(), 42, "100", 11);
        let origin = Origin::local("demo");
        let id = store.ingest(&b, &origin, &ProcContext::default()).unwrap();
        assert!(matches!(id, Ingested::Stored(_)));
        assert!(
            id.id().ends_with("20261126T070000.250Z_42_SIGSEGV"),
            "{}",
            id.id()
        );
        assert!(!src.path().join("42").exists(), "source deleted");
        let list = store.list();
        assert_eq!(list.len(), 1);
        let r = &list[0].report;
        assert_eq!(r.top_frame(), "crash_here (demo)");
        assert_eq!(r.files.len(), 3);
        assert_eq!(r.signal, Some(11));
        // Simulate a crash after the rename but before the source was deleted.
        let b2 = make_bundle(src.path(), 42, "100", 11);
        let again = store.ingest(&b2, &origin, &ProcContext::default()).unwrap();
        assert_eq!(again, Ingested::AlreadyStored(id.id().to_string()));
        assert_eq!(store.list().len(), 1);
        // Same second, same pid, different bundle: stored beside it.
        let b3 = make_bundle(src.path(), 42, "101", 11);
        store.ingest(&b3, &origin, &ProcContext::default()).unwrap();
        assert_eq!(store.list().len(), 2);
        assert!(store.find("20261126T070000.250Z_42_SIGSEGV-1").is_ok());
        assert!(store.find("2026").is_err(), "ambiguous prefix");
    }

    /// A snapshot bundle an earlier agent stored as a report (signal unknown) is not a
    /// crash: not listed, and retention neither counts nor deletes it.
    #[test]
    fn stored_snapshot_reports_are_not_crashes() {
        let src = tempfile::tempdir().unwrap();
        let st = tempfile::tempdir().unwrap();
        let store = Store::open(st.path()).unwrap();
        let b = make_bundle(src.path(), 42, "100", 11);
        let crash = store
            .ingest(&b, &Origin::local("demo"), &ProcContext::default())
            .unwrap();
        let legacy = st
            .path()
            .join("local/host/demo/20261126T080000.000Z_42_unknown");
        fs::create_dir_all(&legacy).unwrap();
        let r = CrashReport {
            schema: 1,
            time: "2026-11-26T08:00:00.000Z".into(),
            signal_name: "unknown".into(),
            files: vec![ReportFile {
                name: "snapshot_200.json".into(),
                size: 2,
                sha256: String::new(),
            }],
            crash: serde_json::json!({"kind": "snapshot"}),
            ..Default::default()
        };
        fs::write(legacy.join(REPORT_FILE), serde_json::to_vec(&r).unwrap()).unwrap();
        let ids: Vec<String> = store.list().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, [crash.id().to_string()]);
        let limits = Retention {
            max_reports: Some(1),
            ..Default::default()
        };
        assert!(
            store
                .apply_retention(&limits, Utc::now())
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.list().len(), 1);
        assert!(legacy.join(REPORT_FILE).exists());
        // Without a `kind`, the files tell.
        let mut r2 = r.clone();
        r2.crash = Value::Null;
        assert!(r2.is_snapshot());
        r2.files[0].name = "crash_200.json".into();
        assert!(!r2.is_snapshot());
    }

    /// Every file under `dir` (relative paths), sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// One agent pass as the collector runs it after a restart: open the store, sweep
    /// tombstones, ingest every complete bundle; stops at the crash point.
    fn agent_pass(store_root: &Path, src: &Path, origin: &Origin, cp: &Crashpoint) -> Result<()> {
        let store = Store::open(store_root)?;
        for e in fs::read_dir(src).into_iter().flatten().flatten() {
            sweep_pid_dir(&e.path(), cp)?;
        }
        for b in bundle::scan_snapshot_dir(src) {
            store.ingest_at(&b, origin, &ProcContext::default(), cp)?;
        }
        Ok(())
    }

    /// Simulated SIGKILL after every durable step of ingestion and source deletion, and
    /// again after every step of the restarted agent's recovery: always exactly one
    /// report, complete, and the source gone (a bundle still being written untouched).
    #[test]
    fn kill_at_every_step_stores_exactly_once() {
        let mut first_steps = None;
        for k1 in 0.. {
            let mut k1_completed = false;
            for k2 in 0.. {
                let src = tempfile::tempdir().unwrap();
                let st = tempfile::tempdir().unwrap();
                let b = make_bundle(src.path(), 42, "100", 11);
                // A bundle the library is still writing (no `done_`) must survive.
                fs::write(src.path().join("42/info_200"), "partial").unwrap();
                let store = Store::open(st.path()).unwrap();
                let cp = Crashpoint(std::cell::Cell::new(Some(k1)));
                let first =
                    store.ingest_at(&b, &Origin::local("demo"), &ProcContext::default(), &cp);
                k1_completed = first.is_ok();
                // The restarted agent no longer knows the process: its reports would go
                // under another container name.
                let cp2 = Crashpoint(std::cell::Cell::new(Some(k2)));
                let second = agent_pass(st.path(), src.path(), &Origin::local("unknown"), &cp2);
                let k2_completed = second.is_ok();
                // Final clean pass.
                agent_pass(
                    st.path(),
                    src.path(),
                    &Origin::local("unknown"),
                    &Crashpoint::never(),
                )
                .unwrap();
                let store = Store::open(st.path()).unwrap();
                let list = store.list();
                assert_eq!(
                    list.len(),
                    1,
                    "kill after {k1} then {k2} steps: {:?}",
                    tree(st.path())
                );
                let r = &list[0].report;
                assert_eq!(r.source.key, "100");
                assert_eq!(r.signal, Some(11));
                assert_eq!(r.time, "2026-11-26T07:00:00.250Z");
                let stored = tree(&list[0].dir);
                assert_eq!(
                    stored,
                    vec!["crash_100.json", "done_100", "info_100", "report.json"],
                    "kill after {k1} then {k2} steps"
                );
                assert_eq!(
                    tree(src.path()),
                    vec!["42/info_200"],
                    "kill after {k1} then {k2} steps"
                );
                assert!(
                    !tree(st.path()).iter().any(|p| p.contains(TMP_PREFIX)),
                    "{:?}",
                    tree(st.path())
                );
                if k2_completed {
                    break;
                }
            }
            if k1_completed {
                first_steps = Some(k1);
                break;
            }
        }
        // Copy dir + 3 files + report + rename + tombstone + 2 data files.
        assert_eq!(first_steps, Some(9), "every step was exercised");
    }

    #[test]
    fn sweep_removes_only_tombstoned_bundles() {
        let src = tempfile::tempdir().unwrap();
        let d = src.path().join("7");
        fs::create_dir_all(&d).unwrap();
        for f in [
            "info_1.5",
            "core_1.5",
            ".ingested_1.5",
            "info_2.5",
            "crash_2.5.json",
        ] {
            fs::write(d.join(f), "x").unwrap();
        }
        assert_eq!(sweep_ingested(src.path()), 1);
        assert_eq!(tree(src.path()), vec!["7/crash_2.5.json", "7/info_2.5"]);
        assert_eq!(sweep_ingested(src.path()), 0);
        fs::remove_file(d.join("info_2.5")).unwrap();
        fs::remove_file(d.join("crash_2.5.json")).unwrap();
        fs::write(d.join(".ingested_3"), "").unwrap();
        assert_eq!(sweep_ingested(src.path()), 1);
        assert!(!d.exists(), "emptied pid dir removed");
    }

    #[test]
    fn retention_never_leaves_a_half_deleted_report_listed() {
        let src = tempfile::tempdir().unwrap();
        let st = tempfile::tempdir().unwrap();
        let store = Store::open(st.path()).unwrap();
        for key in ["100", "101"] {
            let b = make_bundle(src.path(), 42, key, 11);
            store
                .ingest(&b, &Origin::local("demo"), &ProcContext::default())
                .unwrap();
        }
        let keep = Retention {
            max_reports: Some(1),
            ..Default::default()
        };
        let removed = store.apply_retention(&keep, Utc::now()).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(store.list().len(), 1);
        assert!(!tree(st.path()).iter().any(|p| p.contains(TMP_PREFIX)));
    }

    #[test]
    fn leftover_temp_dirs_are_removed_on_open() {
        let st = tempfile::tempdir().unwrap();
        let t = st.path().join("local/h/p/.tmp-x");
        fs::create_dir_all(&t).unwrap();
        Store::open(st.path()).unwrap();
        assert!(!t.exists());
    }

    #[test]
    fn retention_plan() {
        let now = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();
        let day = |d| Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap();
        let r = vec![
            ("a".to_string(), day(1), 100),
            ("b".to_string(), day(8), 100),
            ("c".to_string(), day(9), 100),
            ("d".to_string(), day(9), 500),
        ];
        let age = Retention {
            max_age: Some(Duration::from_secs(5 * 86400)),
            ..Default::default()
        };
        assert_eq!(plan_retention(&r, &age, now), vec!["a"]);
        let count = Retention {
            max_reports: Some(2),
            ..Default::default()
        };
        assert_eq!(plan_retention(&r, &count, now), vec!["a", "b"]);
        let bytes = Retention {
            max_bytes: Some(550),
            ..Default::default()
        };
        assert_eq!(plan_retention(&r, &bytes, now), vec!["a", "b", "c"]);
        assert!(plan_retention(&r, &Retention::default(), now).is_empty());
    }
}
