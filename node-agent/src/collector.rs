//! The crash collector: find complete bundles in the crash directories of every scoped
//! process (and in directories of processes already gone), move them into the store,
//! apply retention. [`Collector::scan_once`] is one pass; callers loop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bundle::{self, Bundle};
use crate::procs::{self, ProcessInfo};
use crate::store::{Ingested, Origin, ProcContext, Retention, Store};

/// File in the store remembering crash directories seen, so bundles of processes that
/// died while the agent was down are still collected after a restart.
pub const KNOWN_DIRS_FILE: &str = ".agent-known-dirs.json";

/// Decides a bundle's origin (pod/container in cluster mode; host/process locally).
pub type OriginFn = Box<dyn Fn(&Bundle, Option<&ProcessInfo>, &str) -> Origin + Send>;

/// How long the collector remembers a scoped process after it was last seen alive, so a
/// bundle it left is still attributed to it (name, cmdline, host pid). Past this, and with
/// no bundle of it left to store, it is forgotten, so the agent's memory and its
/// `.agent-known-dirs.json` stay bounded however many processes come and go.
pub const FORGET_DEAD_AFTER: Duration = Duration::from_secs(3600);

/// Which remembered processes to keep (pure). An entry stays while its process was seen
/// alive within `grace` of `now`, or while a bundle of it is still waiting in its dir
/// (`pending`). A `/proc/<pid>/root/...` dir goes as soon as it vanishes (its process
/// died; a recycled pid must not inherit it); another dir left without processes is
/// dropped once it no longer exists.
pub fn prune_known<T>(
    known: &mut BTreeMap<PathBuf, BTreeMap<i32, T>>,
    last_seen: &HashMap<(PathBuf, i32), Instant>,
    pending: &BTreeSet<(PathBuf, i32)>,
    now: Instant,
    grace: Duration,
) -> bool {
    let mut changed = false;
    known.retain(|dir, procs| {
        if dir.starts_with("/proc/") && !dir.exists() {
            changed = true;
            return false;
        }
        let before = procs.len();
        procs.retain(|pid, _| {
            let key = (dir.clone(), *pid);
            pending.contains(&key)
                || last_seen
                    .get(&key)
                    .is_some_and(|t| now.saturating_duration_since(*t) < grace)
        });
        changed |= procs.len() != before;
        let keep = !procs.is_empty() || (!dir.starts_with("/proc/") && dir.exists());
        changed |= !keep;
        keep
    });
    changed
}

/// Counts of one scan pass.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScanStats {
    pub scoped_processes: usize,
    pub dirs_scanned: usize,
    pub bundles_found: usize,
    pub stored: Vec<String>,
    pub already_stored: usize,
    /// Complete live snapshot bundles (`snapshot_<ts>.json`) seen and left where they
    /// are: they are not crashes, so they are never stored or counted by retention.
    #[serde(default)]
    pub snapshot_bundles: usize,
    pub errors: Vec<String>,
    pub removed_by_retention: Vec<String>,
}

/// Where to look besides the live processes' own directories.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sources {
    /// Snapshot dirs (`<dir>/<pid>/...`) to scan always, e.g. `/tmp/appscope`.
    pub snapshot_dirs: Vec<PathBuf>,
    /// Dirs whose children each hold a `crash/` snapshot dir (`~/.scope/history`).
    pub history_dirs: Vec<PathBuf>,
    /// Also watch the snapshot dir of every scoped process found in /proc.
    pub scan_processes: bool,
}

impl Sources {
    /// Local-mode defaults: `/tmp/appscope`, and `.scope/history` under root's and every
    /// `/home/*` home directory.
    pub fn local_defaults() -> Sources {
        let mut history = vec![PathBuf::from("/root/.scope/history")];
        if let Some(h) = std::env::var_os("HOME") {
            history.push(PathBuf::from(h).join(".scope/history"));
        }
        if let Ok(rd) = fs::read_dir("/home") {
            history.extend(rd.flatten().map(|e| e.path().join(".scope/history")));
        }
        history.sort();
        history.dedup();
        Sources {
            snapshot_dirs: vec![PathBuf::from(procs::DEFAULT_SNAPSHOT_DIR)],
            history_dirs: history,
            scan_processes: true,
        }
    }

    /// Every snapshot dir these sources name right now.
    pub fn expand(&self) -> Vec<PathBuf> {
        let mut out = self.snapshot_dirs.clone();
        for h in &self.history_dirs {
            if let Ok(rd) = fs::read_dir(h) {
                out.extend(
                    rd.flatten()
                        .map(|e| e.path().join("crash"))
                        .filter(|p| p.is_dir()),
                );
            }
        }
        out
    }
}

/// Process name from a `scope run` history directory name `<procname>_<id>_<pid>_<time>`.
pub fn procname_from_history(dir: &Path) -> Option<String> {
    // .../history/<run dir>/crash/<pid>/
    let run = dir.parent()?.parent()?.file_name()?.to_str()?;
    let parts: Vec<&str> = run.rsplitn(4, '_').collect();
    (parts.len() == 4).then(|| parts[3].to_string())
}

/// The collector.
pub struct Collector {
    store: Store,
    retention: Retention,
    sources: Sources,
    origin: OriginFn,
    /// Crash dirs (host paths) of scoped processes seen alive, with the last process
    /// seen there per namespaced pid.
    known: BTreeMap<PathBuf, BTreeMap<i32, ProcessInfo>>,
    /// When each remembered process was last seen alive (entries loaded at start count
    /// as seen then).
    last_seen: HashMap<(PathBuf, i32), Instant>,
    /// Process discovery with caches kept between passes.
    scanner: procs::Scanner,
}

impl Collector {
    pub fn new(
        store: Store,
        retention: Retention,
        sources: Sources,
        origin: OriginFn,
    ) -> Collector {
        let known: BTreeMap<PathBuf, BTreeMap<i32, ProcessInfo>> =
            fs::read(store.root().join(KNOWN_DIRS_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
        let now = Instant::now();
        let last_seen = known
            .iter()
            .flat_map(|(d, m)| m.keys().map(move |pid| ((d.clone(), *pid), now)))
            .collect();
        Collector {
            store,
            retention,
            sources,
            origin,
            known,
            last_seen,
            scanner: procs::Scanner::reusing_status(),
        }
    }

    /// Local mode: origin = (local, host name, process name).
    pub fn local(store: Store, retention: Retention, sources: Sources) -> Collector {
        Collector::new(
            store,
            retention,
            sources,
            Box::new(|_, _, procname| Origin::local(procname)),
        )
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn save_known(&self) {
        if let Ok(b) = serde_json::to_vec(&self.known) {
            let _ = crate::cmdfile::write_atomic(
                &self.store.root().join(KNOWN_DIRS_FILE),
                &b,
                None,
                0o600,
            );
        }
    }

    /// One pass: discover scoped processes, scan every crash dir, ingest complete
    /// bundles, apply retention.
    pub fn scan_once(&mut self) -> ScanStats {
        let mut stats = ScanStats::default();
        let mut changed = false;
        let now = Instant::now();
        let live = if self.sources.scan_processes {
            self.scanner.list(false)
        } else {
            Vec::new()
        };
        for p in live {
            stats.scoped_processes += 1;
            let Ok(env) = self.scanner.scope_env(p.pid) else {
                continue;
            };
            let dir = p.host_path(&env.snapshot_dir);
            // Dirs reached through /proc/<pid>/root vanish with the process; keep them
            // only while it lives (the agent still sees bundles written before it died
            // if it scans in time; cluster mode uses the pod volume instead).
            self.last_seen.insert((dir.clone(), p.nspid), now);
            let procs_in_dir = self.known.entry(dir).or_default();
            match procs_in_dir.get(&p.nspid) {
                Some(seen) if *seen == p => {}
                _ => {
                    procs_in_dir.insert(p.nspid, p);
                    changed = true;
                }
            }
        }
        let mut dirs: Vec<PathBuf> = self.known.keys().cloned().collect();
        dirs.extend(self.sources.expand());
        dirs.sort();
        dirs.dedup();
        let mut pending = BTreeSet::new();
        for dir in dirs {
            stats.dirs_scanned += 1;
            // Finish deleting bundles stored before a kill (see `store` crash safety).
            crate::store::sweep_ingested(&dir);
            for b in bundle::scan_snapshot_dir(&dir) {
                if b.is_snapshot() {
                    stats.snapshot_bundles += 1;
                    continue;
                }
                stats.bundles_found += 1;
                let proc_ = self.known.get(&dir).and_then(|m| m.get(&b.pid)).cloned();
                let crash = b.crash_json();
                let procname = proc_
                    .as_ref()
                    .map(|p| p.comm.clone())
                    .or_else(|| {
                        crash
                            .get("procname")
                            .and_then(|v| v.as_str())
                            .map(str::to_string)
                    })
                    .or_else(|| procname_from_history(&b.dir))
                    .unwrap_or_else(|| "unknown".into());
                let origin = (self.origin)(&b, proc_.as_ref(), &procname);
                let ctx = ProcContext {
                    procname,
                    cmdline: proc_
                        .as_ref()
                        .map(|p| p.cmdline.clone())
                        .unwrap_or_default(),
                    host_pid: proc_.as_ref().map(|p| p.pid),
                };
                match self.store.ingest(&b, &origin, &ctx) {
                    Ok(Ingested::Stored(id)) => {
                        tracing::info!(report = %id, "stored crash report");
                        stats.stored.push(id)
                    }
                    Ok(Ingested::AlreadyStored(_)) => stats.already_stored += 1,
                    Err(e) => {
                        pending.insert((dir.clone(), b.pid));
                        tracing::warn!(dir = %b.dir.display(), error = %e, "could not store bundle");
                        stats.errors.push(format!("{}: {e}", b.dir.display()))
                    }
                }
            }
        }
        // Forget processes long dead (and dirs through /proc/<pid>/root of dead ones),
        // after their last bundles had their chance above.
        changed |= prune_known(
            &mut self.known,
            &self.last_seen,
            &pending,
            now,
            FORGET_DEAD_AFTER,
        );
        let known = &self.known;
        self.last_seen
            .retain(|(d, pid), _| known.get(d).is_some_and(|m| m.contains_key(pid)));
        if changed {
            self.save_known();
        }
        match self
            .store
            .apply_retention(&self.retention, chrono::Utc::now())
        {
            Ok(r) => stats.removed_by_retention = r,
            Err(e) => stats.errors.push(format!("retention: {e}")),
        }
        stats
    }
}

/// Parse durations like `30s`, `15m`, `12h`, `7d`, or plain seconds (pure).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        'd' => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .map(|n| Duration::from_secs(n * mult))
}

/// Parse sizes like `500M`, `2G`, `10k`, or plain bytes (pure).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    #[test]
    fn forgets_dead_processes_after_grace_unless_a_bundle_waits() {
        use std::collections::{BTreeMap, BTreeSet, HashMap};
        use std::time::{Duration, Instant};
        let tmp = tempfile::tempdir().unwrap();
        let live_dir = tmp.path().join("a");
        std::fs::create_dir(&live_dir).unwrap();
        let gone_dir = tmp.path().join("gone");
        let proc_dir = std::path::PathBuf::from("/proc/999999999/root/tmp/appscope");
        let t0 = Instant::now();
        let grace = Duration::from_secs(3600);
        let now = t0 + Duration::from_secs(7200);
        let mut known: BTreeMap<std::path::PathBuf, BTreeMap<i32, &str>> = BTreeMap::new();
        known.insert(
            live_dir.clone(),
            BTreeMap::from([
                (1, "alive"),
                (2, "dead long ago"),
                (3, "dead, bundle waits"),
            ]),
        );
        known.insert(gone_dir.clone(), BTreeMap::from([(4, "dead long ago")]));
        known.insert(
            proc_dir.clone(),
            BTreeMap::from([(5, "alive but dir gone")]),
        );
        let mut seen = HashMap::new();
        seen.insert((live_dir.clone(), 1), now - Duration::from_secs(5));
        seen.insert((live_dir.clone(), 2), t0);
        seen.insert((live_dir.clone(), 3), t0);
        seen.insert((gone_dir.clone(), 4), t0);
        seen.insert((proc_dir.clone(), 5), now);
        let pending = BTreeSet::from([(live_dir.clone(), 3)]);
        assert!(super::prune_known(&mut known, &seen, &pending, now, grace));
        assert_eq!(known.len(), 1, "{known:?}");
        assert_eq!(
            known[&live_dir].keys().copied().collect::<Vec<_>>(),
            vec![1, 3]
        );
        // Nothing more to forget: no change reported, so no rewrite of the file.
        assert!(!super::prune_known(&mut known, &seen, &pending, now, grace));
        // Within the grace period a dead process is kept.
        let mut k2 = BTreeMap::from([(live_dir.clone(), BTreeMap::from([(2, "x")]))]);
        assert!(!super::prune_known(
            &mut k2,
            &seen,
            &BTreeSet::new(),
            t0 + Duration::from_secs(60),
            grace
        ));
    }

    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("10MiB"), Some(10 << 20));
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(
            procname_from_history(Path::new(
                "/root/.scope/history/python3_3_4242_1700000000/crash/4242"
            )),
            Some("python3".into())
        );
    }

    /// A live snapshot bundle beside a real crash, newer than it, with retention at one
    /// report: the crash is stored and kept; the snapshot is neither stored nor removed.
    #[test]
    fn snapshot_bundles_are_left_alone_and_never_push_out_a_crash() {
        let watch = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let d = watch.path().join("1");
        fs::create_dir_all(&d).unwrap();
        let crash_ts = "1795000000.000000001";
        fs::write(d.join(format!("info_{crash_ts}")), "Signal: 11 (SIGSEGV)\n").unwrap();
        let crash = serde_json::json!({"schema":1,"kind":"crash","ts":crash_ts,"pid":1,
            "procname":"web","signal":{"number":11,"name":"SIGSEGV"}});
        fs::write(d.join(format!("crash_{crash_ts}.json")), crash.to_string()).unwrap();
        fs::write(d.join(format!("done_{crash_ts}")), "").unwrap();
        let snap_ts = "1795000100.000000002";
        let snap_files = [
            format!("info_{snap_ts}"),
            format!("cfg_{snap_ts}"),
            format!("snapshot_{snap_ts}.json"),
            format!("done_{snap_ts}"),
        ];
        let snap = serde_json::json!({"schema":1,"kind":"snapshot","ts":snap_ts,"pid":1,
            "procname":"web","frames":[{"index":0,"symbol":"clock_nanosleep"}]});
        for f in &snap_files {
            let body = if f.starts_with("snapshot_") {
                snap.to_string()
            } else {
                String::new()
            };
            fs::write(d.join(f), body).unwrap();
        }
        let sources = Sources {
            snapshot_dirs: vec![watch.path().to_path_buf()],
            history_dirs: vec![],
            scan_processes: false,
        };
        let retention = Retention {
            max_reports: Some(1),
            ..Default::default()
        };
        let mut c = Collector::local(Store::open(store_dir.path()).unwrap(), retention, sources);
        for pass in 0..2 {
            let s = c.scan_once();
            assert_eq!(s.snapshot_bundles, 1, "pass {pass}: {s:?}");
            assert_eq!(s.stored.len(), usize::from(pass == 0), "pass {pass}: {s:?}");
            assert!(s.removed_by_retention.is_empty(), "pass {pass}: {s:?}");
            assert!(s.errors.is_empty(), "pass {pass}: {s:?}");
            let list = c.store().list();
            assert_eq!(list.len(), 1, "pass {pass}");
            assert_eq!(list[0].report.signal_name, "SIGSEGV");
            for f in &snap_files {
                assert!(d.join(f).exists(), "pass {pass}: {f} left in place");
            }
        }
        // Storing one by hand is refused too.
        let b = bundle::scan_snapshot_dir(watch.path()).remove(0);
        assert!(b.is_snapshot());
        let e = c
            .store()
            .ingest(&b, &Origin::local("web"), &ProcContext::default())
            .unwrap_err();
        assert!(e.to_string().contains("live snapshot"), "{e}");
    }

    #[test]
    fn collects_bundles_from_history_dirs() {
        let home = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let crash = home
            .path()
            .join("history/crashdemo_1_77_1700000000/crash/77");
        fs::create_dir_all(&crash).unwrap();
        fs::write(crash.join("info_1.5"), "x").unwrap();
        fs::write(crash.join("done_1.5"), "").unwrap();
        fs::write(crash.join("info_2.5"), "incomplete").unwrap();
        let sources = Sources {
            snapshot_dirs: vec![],
            history_dirs: vec![home.path().join("history")],
            scan_processes: false,
        };
        let mut c = Collector::local(
            Store::open(store_dir.path()).unwrap(),
            Retention::default(),
            sources,
        );
        let s = c.scan_once();
        assert_eq!(s.stored.len(), 1, "{s:?}");
        assert!(s.stored[0].contains("/crashdemo/"), "{s:?}");
        assert!(
            crash.join("info_2.5").exists(),
            "incomplete bundle left alone"
        );
        let s2 = c.scan_once();
        assert!(s2.stored.is_empty());
        assert_eq!(c.store().list().len(), 1);
    }
}
