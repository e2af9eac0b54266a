//! `appscope-operator agent`: the node agent's Kubernetes side on top of the node-agent
//! core. Reflectors ([`crate::watch`]) keep this node's pods (field selector
//! `spec.nodeName`) and all ScopeConfigs and ScopeSnapshots in memory; a cycle runs every
//! `interval` (process scan, crash collection and status files are filesystem based) and,
//! debounced, soon after any watched object changes. Each cycle reads the stores, then
//! for every pod with an `appscope` emptyDir under the kubelet root:
//! - moves complete crash bundles into the store (node-agent `Store::ingest`), creates a
//!   ScopeCrashReport and a `ScopedProcessCrashed` Event;
//! - drives each process's config in effect to baseline + overlays with command files
//!   ([`crate::reconcile::step`]) and writes this node's `status.nodes` entry by SSA when
//!   it changed;
//! - exports transport state as metrics;
//! - runs ScopeSnapshots of pods on this node;
//! - applies retention per namespace to store files and their ScopeCrashReports.
//!
//! What the agent set in each process (to revert it later) is persisted in a state file
//! ([`crate::agentstate`]) so a restart does not forget it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::Api;
use kube::{Client, ResourceExt};
use node_agent::bundle;
use node_agent::store::{Ingested, Origin, ProcContext, Retention, Store, StoredReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use scope_config::Config;

use crate::agentstate::{self, ProcKey, StateFile};
use crate::crd::*;
use crate::kubeapi;
use crate::reconcile::{self, ProcState};
use crate::watch::Stores;

/// Wait after a watch event before running the cycle, so a burst of changes runs it once.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Agent settings (see docs/reference/operator.md).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    pub kubelet_root: PathBuf,
    pub store: PathBuf,
    pub interval: Duration,
    pub summary_period: Duration,
    pub retention: Retention,
    pub proc_root: PathBuf,
    /// Persisted per-process memory (default `<store>/.agent/<node>.json`).
    pub state_file: PathBuf,
}

/// Directory of one pod's `appscope` emptyDir on the host.
pub fn pod_volume(kubelet_root: &Path, pod_uid: &str) -> PathBuf {
    kubelet_root
        .join("pods")
        .join(pod_uid)
        .join("volumes/kubernetes.io~empty-dir/appscope")
}

/// Name of the ScopeCrashReport for a stored report: `<pod>-<report dir>`, as a DNS
/// subdomain (lowercase, `[a-z0-9.-]`, at most 253 characters).
pub fn crash_report_name(pod: &str, report_dir: &str) -> String {
    let raw = format!("{pod}-{report_dir}").to_lowercase();
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(253);
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// ScopeCrashReport from a stored report (pure).
pub fn crash_report_object(r: &StoredReport) -> ScopeCrashReport {
    let rep = &r.report;
    let dir_name = r.id.rsplit('/').next().unwrap_or(&r.id);
    let mut obj = ScopeCrashReport::new(
        &crash_report_name(&rep.pod, dir_name),
        ScopeCrashReportSpec {
            pod: rep.pod.clone(),
            pod_uid: rep.pod_uid.clone().unwrap_or_default(),
            container: rep.container.clone(),
            node: rep.node.clone(),
            image: rep.image.clone().unwrap_or_default(),
            pid: rep.pid as i64,
            signal: rep.signal_name.clone(),
            time: rep.time.clone(),
            top_frame: rep.top_frame(),
            top_frames: rep.top_frames.iter().take(8).cloned().collect(),
            path: r.id.clone(),
            files: rep
                .files
                .iter()
                .map(|f| ReportFile {
                    name: f.name.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                })
                .collect(),
        },
    );
    obj.metadata.namespace = Some(rep.namespace.clone());
    obj.metadata.labels = Some(
        [
            ("appscope.dev/node".to_string(), label_value(&rep.node)),
            ("appscope.dev/pod".to_string(), label_value(&rep.pod)),
        ]
        .into(),
    );
    obj
}

fn label_value(s: &str) -> String {
    let mut v: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    v.truncate(63);
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NsLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Metrics of the cluster agent (registered next to node-agent's).
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    pub crashes: Family<NsLabels, Counter>,
    pub transport_connected: Family<TransportLabels, Gauge>,
    pub transport_sent: Family<TransportLabels, Gauge>,
    pub transport_dropped: Family<TransportLabels, Gauge>,
    pub commands: Family<ResultLabels, Counter>,
    pub cycle_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl ClusterMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "appscope_crashes",
            "Crashes stored, by namespace",
            self.crashes.clone(),
        );
        r.register(
            "appscope_transport_connected",
            "Transport connected (1) or not (0), from status files",
            self.transport_connected.clone(),
        );
        r.register(
            "appscope_transport_sent",
            "Transport messages sent, from status files",
            self.transport_sent.clone(),
        );
        r.register(
            "appscope_transport_dropped",
            "Transport messages dropped, from status files",
            self.transport_dropped.clone(),
        );
        r.register(
            "appscope_config_commands",
            "Command files by result",
            self.commands.clone(),
        );
        r.register(
            "appscope_agent_cycle_seconds",
            "Duration of the last agent cycle",
            self.cycle_seconds.clone(),
        );
    }
}

/// Per ScopeConfig (namespace, name): pods matched here, process states, rejections.
type PerConfig = BTreeMap<(String, String), (HashSet<String>, Vec<ProcState>, Vec<String>)>;

/// One scoped process seen through its status file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PodProcess {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pid: i64,
    pub procname: String,
    pub cmd: String,
    pub connected: bool,
    pub updated: String,
    pub config_state: String,
}

/// Shared view for the HTTP API (`/v1/pods`).
#[derive(Default)]
pub struct Shared {
    pub processes: std::sync::Mutex<Vec<PodProcess>>,
}

/// The agent's state between cycles.
pub struct Agent {
    pub cfg: AgentConfig,
    client: Client,
    stores: Stores,
    store: Store,
    memory: agentstate::Memory,
    state: StateFile,
    reported: agentstate::Reported,
    /// ScopeSnapshots (by UID) this agent finished; guards against running one twice
    /// when a cycle comes before the watch shows the status it wrote.
    snapshots_done: HashSet<String>,
    pub metrics: ClusterMetrics,
    pub core_metrics: node_agent::api::AgentMetrics,
    pub shared: Arc<Shared>,
}

fn parse_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl Agent {
    /// An agent reading the cluster from `stores`; loads the persisted memory.
    pub fn new(
        cfg: AgentConfig,
        client: Client,
        stores: Stores,
    ) -> Result<Agent, node_agent::Error> {
        let store = Store::open(&cfg.store)?;
        let mut state = StateFile::new(cfg.state_file.clone(), &cfg.node);
        let (memory, reported) = state.load();
        if !memory.is_empty() || !reported.is_empty() {
            tracing::info!(processes = memory.len(), crash_reports = reported.len(), file = %state.path.display(), "loaded agent state");
        }
        Ok(Agent {
            cfg,
            client,
            stores,
            store,
            memory,
            state,
            reported,
            snapshots_done: HashSet::new(),
            metrics: ClusterMetrics::default(),
            core_metrics: node_agent::api::AgentMetrics::default(),
            shared: Arc::new(Shared::default()),
        })
    }

    /// The persisted memory (for tests and the API).
    pub fn memory(&self) -> &agentstate::Memory {
        &self.memory
    }

    /// One full cycle over the stores' current content. Errors of single objects are
    /// logged and counted, not fatal.
    pub async fn cycle(&mut self) {
        let started = std::time::Instant::now();
        let mut pods = self.stores.pods.state();
        let mut configs = self.stores.configs.state();
        let mut snapshots = self.stores.snapshots.state();
        // Store order is a hash map's: sort for a stable order of work and writes.
        pods.sort_by_key(|p| (p.namespace(), p.name_any()));
        configs.sort_by_key(|c| (c.namespace(), c.name_any()));
        snapshots.sort_by_key(|s| (s.namespace(), s.name_any()));

        // Per ScopeConfig (ns/name): pods matched on this node, process states, errors.
        let mut per_config: PerConfig = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut procs_view = Vec::new();
        self.metrics.transport_connected.clear();
        self.metrics.transport_sent.clear();
        self.metrics.transport_dropped.clear();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let period_ms = self.cfg.summary_period.as_millis() as i64;
        for pod in pods.iter().map(|p| &**p) {
            let (Some(uid), Some(ns)) = (
                pod.metadata.uid.as_deref(),
                pod.metadata.namespace.as_deref(),
            ) else {
                continue;
            };
            let name = pod.name_any();
            let run = pod_volume(&self.cfg.kubelet_root, uid).join("run");
            let Ok(rd) = std::fs::read_dir(&run) else {
                continue;
            };
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            for e in rd.flatten() {
                let container = e.file_name().to_string_lossy().to_string();
                let cdir = e.path();
                self.collect_crashes(pod, ns, &name, uid, &container, &cdir.join("crash"))
                    .await;
                // config reconcile from status files
                let selecting: Vec<&ScopeConfig> = configs
                    .iter()
                    .map(|sc| &**sc)
                    .filter(|sc| reconcile::selects(sc, ns, &labels, &container))
                    .collect();
                let desired = reconcile::desired_overlay(&selecting);
                let Ok(sd) = std::fs::read_dir(cdir.join("status")) else {
                    continue;
                };
                for se in sd.flatten() {
                    let p = se.path();
                    if p.extension().is_none_or(|x| x != "json")
                        || se.file_name().to_string_lossy().starts_with('.')
                    {
                        continue;
                    }
                    let Ok(st) = scope_config::status::read(&p) else {
                        continue;
                    };
                    let updated_ms = parse_ms(&st.updated).unwrap_or(0);
                    // A status not refreshed for 3 periods belongs to a gone process.
                    if now_ms - updated_ms > 3 * period_ms + 2_000 {
                        continue;
                    }
                    let key = ProcKey {
                        pod_uid: uid.to_string(),
                        container: container.clone(),
                        pid: st.pid,
                        started: st.started.clone(),
                    };
                    seen.insert(key.clone());
                    for i in &st.interfaces {
                        let l = TransportLabels {
                            namespace: ns.into(),
                            pod: name.clone(),
                            container: container.clone(),
                            interface: i.name.clone(),
                        };
                        self.metrics
                            .transport_connected
                            .get_or_create(&l)
                            .set(i.connected as i64);
                        self.metrics
                            .transport_sent
                            .get_or_create(&l)
                            .set(i.sent as i64);
                        self.metrics
                            .transport_dropped
                            .get_or_create(&l)
                            .set(i.dropped as i64);
                    }
                    let (in_effect, _) = Config::from_config_in_effect(&st.config);
                    let cmd_dir = cdir.join("cmd");
                    let cmd_file = scope_config::cmdfile::path_for(&cmd_dir, st.pid as u32);
                    let mem = self.memory.get(&key).cloned().unwrap_or_default();
                    let obs = reconcile::Observed {
                        in_effect: &in_effect,
                        status_updated_ms: updated_ms,
                        cmd_file_pending: cmd_file.exists(),
                        last_command: st.last_command.as_ref(),
                        now_ms,
                        period_ms,
                    };
                    let step = reconcile::step(&desired, &obs, &mem);
                    if let Some(lines) = &step.write {
                        match scope_config::cmdfile::write(&cmd_dir, st.pid as u32, lines) {
                            Ok(path) => {
                                tracing::info!(pod = %name, namespace = ns, container, pid = st.pid, file = %path.display(), settings = lines.len(), "wrote command file");
                                self.metrics
                                    .commands
                                    .get_or_create(&ResultLabels {
                                        result: "written".into(),
                                    })
                                    .inc();
                            }
                            Err(e) => {
                                tracing::warn!(pod = %name, container, pid = st.pid, error = %e, "could not write command file");
                                self.metrics
                                    .commands
                                    .get_or_create(&ResultLabels {
                                        result: "error".into(),
                                    })
                                    .inc();
                            }
                        }
                    }
                    let errors: Vec<String> = step
                        .memory
                        .rejected
                        .iter()
                        .map(|(k, r)| format!("{name}/{container} pid {}: {k}: {r}", st.pid))
                        .collect();
                    for sc in &selecting {
                        let k = (sc.namespace().unwrap_or_default(), sc.name_any());
                        let entry = per_config.entry(k).or_default();
                        entry.0.insert(uid.to_string());
                        entry.1.push(step.state);
                        entry.2.extend(errors.iter().cloned());
                    }
                    procs_view.push(PodProcess {
                        namespace: ns.into(),
                        pod: name.clone(),
                        container: container.clone(),
                        pid: st.pid,
                        procname: st.procname.clone(),
                        cmd: st.cmd.clone(),
                        connected: !st.interfaces.is_empty()
                            && st.interfaces.iter().all(|i| i.connected),
                        updated: st.updated.clone(),
                        config_state: format!("{:?}", step.state),
                    });
                    self.memory.insert(key, step.memory);
                }
            }
        }
        agentstate::prune(&mut self.memory, &seen);
        if let Err(e) = self.state.save(&self.memory, &self.reported) {
            tracing::warn!(error = %e, "could not save agent state");
        }
        *self
            .shared
            .processes
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = procs_view;

        self.write_node_statuses(&configs, &per_config).await;
        self.run_snapshots(&pods, &snapshots).await;
        self.retention().await;
        self.core_metrics.scans.inc();
        self.metrics
            .cycle_seconds
            .set(started.elapsed().as_secs_f64());
    }

    async fn collect_crashes(
        &mut self,
        pod: &Pod,
        ns: &str,
        name: &str,
        uid: &str,
        container: &str,
        crash_dir: &Path,
    ) {
        // Finish deleting bundles stored before a kill (see node_agent::store).
        node_agent::store::sweep_ingested(crash_dir);
        for b in bundle::scan_crashes(crash_dir) {
            let image = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == container))
                .and_then(|c| c.image.clone());
            let origin = Origin {
                namespace: ns.into(),
                pod: name.into(),
                pod_uid: Some(uid.into()),
                container: container.into(),
                node: self.cfg.node.clone(),
                image,
            };
            let crash = b.crash_json();
            let ctx = ProcContext {
                procname: crash
                    .get("procname")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string(),
                cmdline: crash
                    .get("cmdline")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                host_pid: None,
            };
            match self.store.ingest(&b, &origin, &ctx) {
                Ok(Ingested::Stored(id)) => {
                    tracing::info!(report = %id, "stored crash report");
                    self.core_metrics.reports_stored.inc();
                    self.metrics
                        .crashes
                        .get_or_create(&NsLabels {
                            namespace: ns.into(),
                        })
                        .inc();
                    if let Ok(r) = self.store.find(&id) {
                        self.publish_report(&r, Some(pod)).await;
                    }
                }
                Ok(Ingested::AlreadyStored(id)) => {
                    self.core_metrics.reports_already_stored.inc();
                    if let Ok(r) = self.store.find(&id) {
                        self.publish_report(&r, Some(pod)).await;
                    }
                }
                Err(e) => {
                    self.core_metrics.ingest_errors.inc();
                    tracing::warn!(dir = %b.dir.display(), error = %e, "could not store crash bundle");
                }
            }
        }
    }

    /// Create the ScopeCrashReport (and the Event when the pod is known); idempotent.
    async fn publish_report(&mut self, r: &StoredReport, pod: Option<&Pod>) {
        let obj = crash_report_object(r);
        let name = obj.name_any();
        if self.reported.contains(&name) {
            return;
        }
        let api: Api<ScopeCrashReport> = Api::namespaced(self.client.clone(), &r.report.namespace);
        match kubeapi::create_crash_report(&api, &obj).await {
            Ok(_) => {
                self.reported.insert(name.clone());
                // Remembered at once, not at the end of the cycle: a restart in between
                // would send it again.
                if let Err(e) = self.state.save(&self.memory, &self.reported) {
                    tracing::warn!(error = %e, "could not save agent state");
                }
            }
            Err(e) => {
                tracing::warn!(report = %name, error = %e, "could not create ScopeCrashReport (will retry)");
                return;
            }
        }
        if let Some(pod) = pod {
            let ev = kubeapi::crash_event(pod, &obj, chrono::Utc::now());
            let api: Api<Event> = Api::namespaced(self.client.clone(), &r.report.namespace);
            if let Err(e) = kubeapi::create_event(&api, &ev).await {
                tracing::warn!(report = %name, error = %e, "could not record Event");
            }
        }
    }

    /// Reports of this node in the store whose CR was not created yet (agent restarts).
    /// Reports created before a restart are known from the state file and not sent again;
    /// names of reports no longer in the store are forgotten.
    pub async fn publish_pending(&mut self) {
        let node = self.cfg.node.clone();
        let mine: Vec<StoredReport> = self
            .store
            .list()
            .into_iter()
            .filter(|r| r.report.node == node)
            .collect();
        let names: HashSet<String> = mine
            .iter()
            .map(|r| crash_report_object(r).name_any())
            .collect();
        self.reported.retain(|n| names.contains(n));
        for r in &mine {
            self.publish_report(r, None).await;
        }
    }

    async fn write_node_statuses(&self, configs: &[Arc<ScopeConfig>], per_config: &PerConfig) {
        let node = &self.cfg.node;
        for sc in configs {
            let ns = sc.namespace().unwrap_or_default();
            let key = (ns.clone(), sc.name_any());
            let existing = sc
                .status
                .as_ref()
                .and_then(|s| s.nodes.iter().find(|n| &n.name == node));
            let Some((pods, states, errors)) = per_config.get(&key) else {
                // Nothing here: zero our entry if we had written one.
                if existing.is_some_and(|e| e.pods != 0 || e.processes != ProcessCounts::default())
                {
                    let entry = NodeStatus {
                        name: node.clone(),
                        updated: Some(scope_config::status::now_rfc3339()),
                        ..Default::default()
                    };
                    self.apply_entry(&ns, &key.1, &entry).await;
                }
                continue;
            };
            let mut errors = errors.clone();
            errors.sort();
            errors.dedup();
            errors.truncate(5);
            let mut entry = NodeStatus {
                name: node.clone(),
                pods: pods.len() as i64,
                processes: reconcile::count(states),
                errors,
                updated: None,
            };
            if let Some(ex) = existing {
                let mut cmp = ex.clone();
                cmp.updated = None;
                if cmp == entry {
                    continue; // no-op: nothing changed
                }
            }
            entry.updated = Some(scope_config::status::now_rfc3339());
            self.apply_entry(&ns, &key.1, &entry).await;
        }
    }

    async fn apply_entry(&self, ns: &str, name: &str, entry: &NodeStatus) {
        let api: Api<ScopeConfig> = Api::namespaced(self.client.clone(), ns);
        if let Err(e) = kubeapi::apply_node_status(&api, name, entry).await {
            tracing::warn!(scopeconfig = name, namespace = ns, error = %e, "could not write node status");
        }
    }

    async fn run_snapshots(&mut self, pods: &[Arc<Pod>], snapshots: &[Arc<ScopeSnapshot>]) {
        let uid_of = |s: &ScopeSnapshot| s.metadata.uid.clone().unwrap_or_else(|| s.name_any());
        // Forget finished snapshots once their objects are gone.
        let present: HashSet<String> = snapshots.iter().map(|s| uid_of(s)).collect();
        self.snapshots_done.retain(|u| present.contains(u));
        for snap in snapshots {
            let done = snap.status.as_ref().is_some_and(|s| {
                matches!(s.phase, SnapshotPhase::Complete | SnapshotPhase::Failed)
            });
            let uid = uid_of(snap);
            if done || self.snapshots_done.contains(&uid) {
                continue;
            }
            let ns = snap.namespace().unwrap_or_default();
            let Some(pod) = pods.iter().find(|p| {
                p.metadata.namespace.as_deref() == Some(ns.as_str())
                    && p.name_any() == snap.spec.pod
            }) else {
                continue; // not on this node
            };
            tracing::info!(snapshot = %snap.name_any(), namespace = %ns, pod = %snap.spec.pod, "taking snapshot");
            let status = crate::snapshot::run(&self.cfg, &self.store, pod, snap).await;
            self.core_metrics.snapshots.inc();
            let api: Api<ScopeSnapshot> = Api::namespaced(self.client.clone(), &ns);
            match kubeapi::apply_snapshot_status(&api, &snap.name_any(), &self.cfg.node, &status)
                .await
            {
                Ok(()) => {
                    tracing::info!(snapshot = %snap.name_any(), phase = ?status.phase, path = ?status.report_path, "snapshot status written");
                    self.snapshots_done.insert(uid);
                }
                Err(e) => {
                    tracing::warn!(snapshot = %snap.name_any(), error = %e, "could not write snapshot status (will retry)")
                }
            }
        }
    }

    /// Retention per namespace, files and CRs together (this node's reports).
    async fn retention(&mut self) {
        // The decision over every report in the store (all nodes' when it is shared), the
        // same the controller makes over the ScopeCrashReports; this agent removes its
        // node's. See reconcile.rs, "retention".
        let list: Vec<StoredReport> = self.store.list();
        let now = chrono::Utc::now();
        let stored: Vec<(String, ScopeCrashReport)> = list
            .iter()
            .map(|r| (r.id.clone(), crash_report_object(r)))
            .collect();
        for id in reconcile::retention_for_node(&stored, &self.cfg.node, &self.cfg.retention, now) {
            let Some(r) = list.iter().find(|r| r.id == id) else {
                continue;
            };
            let obj = crash_report_object(r);
            let api: Api<ScopeCrashReport> =
                Api::namespaced(self.client.clone(), &r.report.namespace);
            if let Err(e) = kubeapi::delete_crash_reports(&api, &[obj.name_any()]).await {
                tracing::warn!(report = %id, error = %e, "could not delete ScopeCrashReport; keeping files");
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(&r.dir) {
                tracing::warn!(report = %id, error = %e, "could not remove report files");
            }
            self.reported.remove(&obj.name_any());
            self.core_metrics.retention_removed.inc();
        }
    }
}

/// Run the agent until the process is stopped: reflectors, HTTP server, and the cycle
/// loop. `/readyz` answers 503 until all three stores have had their initial list and
/// the first cycle ran.
pub async fn run(
    cfg: AgentConfig,
    client: Client,
    listen: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let mut watches = crate::watch::start(client.clone(), &cfg.node);
    let mut agent = Agent::new(cfg.clone(), client, watches.stores.clone())?;
    let mut registry = Registry::default();
    agent.core_metrics.register(&mut registry);
    agent.metrics.register(&mut registry);
    let state = node_agent::api::ApiState {
        metrics: agent.core_metrics.clone(),
        registry: Arc::new(registry),
        snapshot_root: cfg.store.join(".snapshots"),
        store: Some(Store::open(&cfg.store)?),
        ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let ready = state.ready.clone();
    let shared = agent.shared.clone();
    let app = node_agent::api::router(state).merge(axum::Router::new().route(
        "/v1/pods",
        axum::routing::get(move || {
            let shared = shared.clone();
            async move {
                let v = shared
                    .processes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                axum::Json(v)
            }
        }),
    ));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, node = %cfg.node, state = %cfg.state_file.display(), "agent listening");
    let mut server = tokio::spawn(async move { axum::serve(listener, app).await });
    agent.publish_pending().await;

    // Initial sync of the three reflectors (watch errors are retried inside).
    tokio::select! {
        synced = watches.stores.wait_until_ready() => {
            if !synced {
                anyhow::bail!("a watch ended before its initial list");
            }
        }
        r = &mut server => anyhow::bail!("HTTP server stopped: {r:?}"),
    }
    tracing::info!("pods, ScopeConfigs and ScopeSnapshots synced");
    loop {
        agent.cycle().await;
        ready.store(true, Ordering::Relaxed);
        if server.is_finished() {
            anyhow::bail!("HTTP server stopped");
        }
        wait_for_work(&mut watches.changes, cfg.interval).await;
    }
}

/// Wait for the next cycle: `interval`, or a watch change followed by [`DEBOUNCE`] (and
/// the changes that came meanwhile), whichever is first.
pub async fn wait_for_work(changes: &mut tokio::sync::mpsc::Receiver<()>, interval: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(interval) => {}
        Some(()) = changes.recv() => {
            tokio::time::sleep(DEBOUNCE).await;
            while changes.try_recv().is_ok() {}
        }
    }
}
