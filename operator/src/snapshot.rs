//! ScopeSnapshot execution on the node: find the target process, take the snapshot with
//! node-agent's code, put it in the store, and describe the result as the CR's status.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use node_agent::snapshot::{NoProgress, SnapshotOptions};
use node_agent::store::{Store, sanitize};
use sha2::{Digest, Sha256};

use crate::agent::{AgentConfig, pod_volume};
use crate::crd::{ReportFile, ScopeSnapshot, ScopeSnapshotStatus, SnapshotPhase};

/// Host pids of the processes of `container` in `pod`: by cgroup (any process) and by
/// the identity of the container's status directory (scoped processes).
pub fn container_pids(cfg: &AgentConfig, pod: &Pod, container: &str) -> Vec<(i32, i32)> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let cid = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.container_id.clone());
    let status_dir = pod_volume(&cfg.kubelet_root, &uid)
        .join("run")
        .join(container)
        .join("status");
    let want_ino = std::fs::metadata(&status_dir)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let mut out = Vec::new();
    for pid in node_agent::procs::all_pids() {
        let by_cgroup = match (&cid, node_agent::cgroup::read_pid(&cfg.proc_root, pid)) {
            (Some(cid), Ok(Some(pc))) => pc.pod_uid == uid && pc.matches_status_id(cid),
            _ => false,
        };
        let by_dir = !by_cgroup
            && want_ino.is_some()
            && node_agent::procs::scope_env(pid)
                .ok()
                .and_then(|env| env.status_dir)
                .is_some_and(|d| {
                    let host = node_agent::procs::host_path(pid, true, &d);
                    std::fs::metadata(host).ok().map(|m| (m.dev(), m.ino())) == want_ino
                });
        // A process found by its status directory alone must be scoped: its parent
        // (a shell, `env`, `unshare`) inherits the same SCOPE_* environment.
        if (by_cgroup || by_dir)
            && let Ok(p) = node_agent::procs::read_process(pid)
            && (by_cgroup || p.scoped)
        {
            out.push((p.pid, p.nspid));
        }
    }
    out.sort();
    out
}

fn digest(p: &Path) -> Option<ReportFile> {
    let data = std::fs::read(p).ok()?;
    Some(ReportFile {
        name: p.file_name()?.to_string_lossy().to_string(),
        size: data.len() as u64,
        sha256: Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

fn failed(node: &str, msg: String) -> ScopeSnapshotStatus {
    ScopeSnapshotStatus {
        phase: SnapshotPhase::Failed,
        node: Some(node.into()),
        message: Some(msg),
        ..Default::default()
    }
}

/// Take the snapshot a ScopeSnapshot asks for and return its final status.
pub async fn run(
    cfg: &AgentConfig,
    store: &Store,
    pod: &Pod,
    snap: &ScopeSnapshot,
) -> ScopeSnapshotStatus {
    let node = cfg.node.clone();
    let container = match &snap.spec.container {
        Some(c) => c.clone(),
        None => {
            let run = pod_volume(
                &cfg.kubelet_root,
                pod.metadata.uid.as_deref().unwrap_or_default(),
            )
            .join("run");
            let scoped = std::fs::read_dir(&run).ok().and_then(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .min()
            });
            match scoped.or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .map(|c| c.name.clone())
            }) {
                Some(c) => c,
                None => return failed(&node, "pod has no containers".into()),
            }
        }
    };
    let pids = {
        let cfg = cfg.clone();
        let pod = pod.clone();
        let c = container.clone();
        tokio::task::spawn_blocking(move || container_pids(&cfg, &pod, &c))
            .await
            .unwrap_or_default()
    };
    let target = match snap.spec.pid {
        Some(want) => pids.iter().find(|(_, ns)| *ns as i64 == want).copied(),
        None => pids.first().copied(),
    };
    let Some((host_pid, _)) = target else {
        return failed(
            &node,
            format!(
                "no process{} found in container {container} of pod {}",
                snap.spec
                    .pid
                    .map(|p| format!(" with pid {p}"))
                    .unwrap_or_default(),
                pod.name_any()
            ),
        );
    };
    let ns = snap.namespace().unwrap_or_default();
    let rel = PathBuf::from(sanitize(&ns))
        .join(sanitize(&pod.name_any()))
        .join(sanitize(&container))
        .join(format!("snapshot-{}", sanitize(&snap.name_any())));
    let out_dir = store.root().join(&rel);
    let opts = SnapshotOptions {
        out_dir: out_dir.clone(),
        redact: true,
        core: snap.spec.core,
        library_wait: std::time::Duration::from_secs(3),
    };
    let res = tokio::task::spawn_blocking(move || {
        node_agent::snapshot::take_snapshot(host_pid, &opts, &mut NoProgress)
    })
    .await;
    match res {
        Ok(Ok(r)) => {
            let mut files: Vec<ReportFile> = std::fs::read_dir(&out_dir)
                .map(|rd| rd.flatten().filter_map(|e| digest(&e.path())).collect())
                .unwrap_or_default();
            files.sort_by(|a, b| a.name.cmp(&b.name));
            ScopeSnapshotStatus {
                phase: SnapshotPhase::Complete,
                node: Some(node),
                report_path: Some(rel.display().to_string()),
                files,
                message: Some(format!(
                    "pid {} ({}), {} threads",
                    r.nspid,
                    r.procname,
                    r.threads.len()
                )),
            }
        }
        Ok(Err(e)) => failed(&node, format!("snapshot failed: {e}")),
        Err(e) => failed(&node, format!("snapshot worker failed: {e}")),
    }
}
