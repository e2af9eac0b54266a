//! The agent's memory of what it did to each process ([`ProcMemory`]: the overlay keys it
//! set, so it can revert them; the command it is waiting to see confirmed) and of the
//! ScopeCrashReports it created, persisted in a small JSON state file so an agent restart
//! neither forgets keys to revert, nor re-sends a pending command, nor re-creates every
//! stored report (one API request each) to learn that it exists.
//!
//! Entries are keyed by pod UID, container, namespaced pid and the process start time from
//! its status file, so a recycled pid never inherits another process's state. The file
//! is written atomically (temp file, fsync, rename, fsync of the directory) and only
//! when its content changed. Default path: `<store>/.agent/<node>.json` (the store is the
//! crash-report volume, so the file survives the agent pod; one file per node).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::reconcile::ProcMemory;

/// Format version of the state file.
pub const VERSION: u32 = 1;

/// Identity of one process across agent restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcKey {
    pub pod_uid: String,
    pub container: String,
    /// Pid in the container's pid namespace (the status file's `pid`).
    pub pid: i64,
    /// The status file's `started` (process start time, RFC 3339).
    pub started: String,
}

/// Memory of all processes this agent handles.
pub type Memory = HashMap<ProcKey, ProcMemory>;

/// Names of the ScopeCrashReports this agent created (for reports still in the store).
pub type Reported = BTreeSet<String>;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path}: version {found}, expected {VERSION}")]
    Version { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    key: ProcKey,
    memory: ProcMemory,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    node: String,
    processes: Vec<Entry>,
    /// Absent in files written before it existed.
    #[serde(default, rename = "reportedCrashReports")]
    reported: Reported,
}

/// Default state file of `node` under the store: `<store>/.agent/<node>.json`.
pub fn default_path(store: &Path, node: &str) -> PathBuf {
    let name: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    store
        .join(".agent")
        .join(format!("{}.json", name.trim_start_matches('.')))
}

/// Serialise (pure): entries with nothing to remember are left out, order is stable.
pub fn encode(node: &str, mem: &Memory, reported: &Reported) -> Vec<u8> {
    let sorted: BTreeMap<&ProcKey, &ProcMemory> = mem
        .iter()
        .filter(|(_, m)| **m != ProcMemory::default())
        .collect();
    let f = FileFormat {
        version: VERSION,
        node: node.into(),
        processes: sorted
            .into_iter()
            .map(|(k, m)| Entry {
                key: k.clone(),
                memory: m.clone(),
            })
            .collect(),
        reported: reported.clone(),
    };
    let mut out = serde_json::to_vec_pretty(&f).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Parse (pure).
pub fn decode(path: &Path, data: &[u8]) -> Result<(Memory, Reported), StateError> {
    let f: FileFormat = serde_json::from_slice(data).map_err(|source| StateError::Json {
        path: path.into(),
        source,
    })?;
    if f.version != VERSION {
        return Err(StateError::Version {
            path: path.into(),
            found: f.version,
        });
    }
    Ok((
        f.processes.into_iter().map(|e| (e.key, e.memory)).collect(),
        f.reported,
    ))
}

/// Drop the entries of processes not in `live` (pure); returns how many went.
pub fn prune(mem: &mut Memory, live: &HashSet<ProcKey>) -> usize {
    let before = mem.len();
    mem.retain(|k, _| live.contains(k));
    before - mem.len()
}

/// Read the state file; a missing file is an empty memory.
pub fn load(path: &Path) -> Result<(Memory, Reported), StateError> {
    match std::fs::read(path) {
        Ok(data) => decode(path, &data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(source) => Err(StateError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Write `data` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.into(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(io)
}

/// Persisted memory: the map plus what was last written, so unchanged memory is not
/// rewritten every cycle.
pub struct StateFile {
    pub path: PathBuf,
    node: String,
    last: Option<Vec<u8>>,
}

impl StateFile {
    pub fn new(path: PathBuf, node: &str) -> StateFile {
        StateFile {
            path,
            node: node.into(),
            last: None,
        }
    }

    /// Load; an unreadable file is logged and treated as empty (the agent then only
    /// forgets what to revert, as before persistence existed).
    pub fn load(&mut self) -> (Memory, Reported) {
        match load(&self.path) {
            Ok((m, r)) => {
                self.last = Some(encode(&self.node, &m, &r));
                (m, r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not load agent state; starting empty");
                Default::default()
            }
        }
    }

    /// Save when the content changed; returns whether it wrote.
    pub fn save(&mut self, mem: &Memory, reported: &Reported) -> Result<bool, StateError> {
        let data = encode(&self.node, mem, reported);
        if self.last.as_deref() == Some(data.as_slice()) {
            return Ok(false);
        }
        write_atomic(&self.path, &data)?;
        self.last = Some(data);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: &str, pid: i64, started: &str) -> ProcKey {
        ProcKey {
            pod_uid: uid.into(),
            container: "app".into(),
            pid,
            started: started.into(),
        }
    }

    fn managed(names: &[&str]) -> ProcMemory {
        ProcMemory {
            managed: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn encode_decode_round_trip_and_skips_empty_entries() {
        let mut m = Memory::new();
        m.insert(
            key("u1", 1, "2026-11-26T08:00:00Z"),
            ProcMemory {
                managed: ["SCOPE_METRIC_VERBOSITY".to_string()].into(),
                written_at_ms: Some(1_764_144_000_000),
                written: vec![("SCOPE_METRIC_VERBOSITY".into(), "7".into())],
                attempts: 2,
                rejected: [("SCOPE_X".to_string(), "unknown".to_string())].into(),
            },
        );
        m.insert(key("u2", 7, "2026-11-26T08:00:01Z"), ProcMemory::default());
        let data = encode("node-1", &m, &Reported::new());
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["node"], "node-1");
        assert_eq!(v["processes"][0]["podUid"], "u1");
        assert_eq!(v["processes"][0]["started"], "2026-11-26T08:00:00Z");
        let (back, _) = decode(Path::new("x"), &data).unwrap();
        assert_eq!(back.len(), 1, "the empty entry is not stored");
        assert_eq!(back[&key("u1", 1, "2026-11-26T08:00:00Z")].attempts, 2);
        assert_eq!(
            back[&key("u1", 1, "2026-11-26T08:00:00Z")],
            m[&key("u1", 1, "2026-11-26T08:00:00Z")]
        );
        // Stable bytes for the same content, whatever the map order.
        assert_eq!(encode("node-1", &back, &Reported::new()), data);
    }

    #[test]
    fn recycled_pid_does_not_inherit_state() {
        let mut m = Memory::new();
        m.insert(key("u1", 1, "2026-11-26T08:00:00Z"), managed(&["SCOPE_A"]));
        let data = encode("n", &m, &Reported::new());
        let (back, _) = decode(Path::new("x"), &data).unwrap();
        assert!(
            !back.contains_key(&key("u1", 1, "2026-11-26T09:00:00Z")),
            "same pid, other start time"
        );
        assert!(!back.contains_key(&key("u2", 1, "2026-11-26T08:00:00Z")));
    }

    #[test]
    fn prune_drops_gone_processes() {
        let mut m = Memory::new();
        m.insert(key("u1", 1, "t1"), managed(&["SCOPE_A"]));
        m.insert(key("u1", 2, "t1"), managed(&["SCOPE_B"]));
        m.insert(key("u2", 1, "t1"), managed(&["SCOPE_C"]));
        let live: HashSet<ProcKey> = [key("u1", 2, "t1"), key("u9", 1, "t1")].into();
        assert_eq!(prune(&mut m, &live), 2);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key(&key("u1", 2, "t1")));
    }

    #[test]
    fn files_without_reported_reports_still_load() {
        let data = br#"{"version": 1, "node": "n", "processes": []}"#;
        let (m, r) = decode(Path::new("x"), data).unwrap();
        assert!(m.is_empty() && r.is_empty());
    }

    #[test]
    fn bad_files_are_errors_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.json");
        assert!(load(&p).unwrap().0.is_empty());
        std::fs::write(&p, b"{not json").unwrap();
        assert!(matches!(load(&p), Err(StateError::Json { .. })));
        std::fs::write(&p, br#"{"version": 9, "node": "n", "processes": []}"#).unwrap();
        assert!(matches!(
            load(&p),
            Err(StateError::Version { found: 9, .. })
        ));
        // The wrapper starts empty on a bad file instead of failing the agent.
        let mut sf = StateFile::new(p, "n");
        assert!(sf.load().0.is_empty());
    }

    #[test]
    fn save_is_atomic_and_skips_unchanged_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = default_path(dir.path(), "node-1");
        assert_eq!(p, dir.path().join(".agent/node-1.json"));
        let mut sf = StateFile::new(p.clone(), "node-1");
        assert!(sf.load().0.is_empty());
        let mut m = Memory::new();
        let mut r = Reported::new();
        m.insert(key("u1", 1, "t1"), managed(&["SCOPE_A"]));
        assert!(sf.save(&m, &r).unwrap(), "first save writes");
        assert!(!sf.save(&m, &r).unwrap(), "same content is not rewritten");
        m.insert(key("u1", 2, "t2"), managed(&["SCOPE_B"]));
        assert!(sf.save(&m, &r).unwrap());
        r.insert("crash-web-1-7-20261126t080000z".into());
        assert!(sf.save(&m, &r).unwrap(), "a created report is remembered");
        // No temp files left next to it.
        let names: Vec<String> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["node-1.json".to_string()]);
        // A new agent (restart) loads the same memory and does not rewrite it.
        let mut sf2 = StateFile::new(p.clone(), "node-1");
        let (loaded, reported) = sf2.load();
        assert_eq!(loaded, m);
        assert_eq!(reported, r);
        assert!(!sf2.save(&loaded, &reported).unwrap());
        // Pruning everything writes an empty list, not nothing.
        let mut gone = loaded;
        prune(&mut gone, &HashSet::new());
        assert!(sf2.save(&gone, &Reported::new()).unwrap());
        assert!(load(&p).unwrap().0.is_empty());
    }

    #[test]
    fn node_names_cannot_escape_the_state_dir() {
        let p = default_path(Path::new("/s"), "../etc/passwd");
        assert_eq!(p.parent(), Some(Path::new("/s/.agent")));
    }
}
