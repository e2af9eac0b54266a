//! Pure reconcile decisions shared by the agent and the controller:
//! which ScopeConfigs select a process, the desired overlay, the command to send given
//! the config in effect, per-process state, ScopeConfig status aggregation,
//! per-namespace retention, and the controller's whole pass ([`plan_controller`]).
//! No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use node_agent::store::Retention;
use scope_config::Config;
use scope_config::settings::{self, Kind};

use crate::crd::{Condition, ProcessCounts, ScopeConfig, ScopeConfigStatus, ScopeCrashReport};

// ------------------------------------------------------------------ selection

/// Whether a label selector matches `labels`. An empty selector matches everything.
/// Unknown operators match nothing (the API server rejects them anyway).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| vals.contains(v)),
            "NotIn" => have.is_none_or(|v| !vals.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `sc` applies to `container` of a pod with `labels` in `namespace`.
pub fn selects(
    sc: &ScopeConfig,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    container: &str,
) -> bool {
    sc.metadata.namespace.as_deref() == Some(namespace)
        && sc.metadata.deletion_timestamp.is_none()
        && selector_matches(&sc.spec.selector, labels)
        && sc
            .spec
            .containers
            .as_ref()
            .is_none_or(|cs| cs.iter().any(|c| c == container))
}

// -------------------------------------------------------------------- validation

/// A problem with one `spec.env` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvProblem {
    pub name: String,
    /// `UnknownSetting`, `InvalidValue` or `NotRuntimeSetting`.
    pub reason: &'static str,
    pub message: String,
}

/// Check one env entry: a known `SCOPE_*` config setting (changeable at runtime) with a
/// valid value. Start-only variables and actions are refused: a ScopeConfig is a level,
/// not a one-shot command.
pub fn check_env(name: &str, value: &str) -> Result<(), EnvProblem> {
    let problem = |reason, message: String| EnvProblem {
        name: name.to_string(),
        reason,
        message,
    };
    let Some(spec) = settings::spec(name) else {
        return Err(problem(
            "UnknownSetting",
            format!("{name} is not a SCOPE_* setting"),
        ));
    };
    if spec.kind != Kind::Config {
        return Err(problem(
            "NotRuntimeSetting",
            format!("{name} cannot be changed in a running process"),
        ));
    }
    settings::validate(name, value).map_err(|e| problem("InvalidValue", e.to_string()))
}

/// Every problem of a ScopeConfig's env, in name order.
pub fn env_problems(sc: &ScopeConfig) -> Vec<EnvProblem> {
    sc.spec
        .env
        .iter()
        .filter_map(|(k, v)| check_env(k, v).err())
        .collect()
}

// ---------------------------------------------------------------------- overlay

/// One desired setting and the ScopeConfig it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub value: String,
    /// `namespace/name` of the winning ScopeConfig.
    pub source: String,
}

/// The overlay for a process from the ScopeConfigs that select it: for each name, the
/// value of the highest `priority`; at equal priority the alphabetically first name
/// wins. Invalid entries (see [`check_env`]) are left out.
pub fn desired_overlay(selecting: &[&ScopeConfig]) -> BTreeMap<String, Desired> {
    let mut order: Vec<&ScopeConfig> = selecting.to_vec();
    // Apply lowest priority first, and within a priority the last name first, so the
    // winner is applied last.
    order.sort_by(|a, b| {
        a.spec
            .priority
            .cmp(&b.spec.priority)
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    let mut out = BTreeMap::new();
    for sc in order {
        let source = format!(
            "{}/{}",
            sc.metadata.namespace.as_deref().unwrap_or_default(),
            sc.metadata.name.as_deref().unwrap_or_default()
        );
        for (k, v) in &sc.spec.env {
            if check_env(k, v).is_ok() {
                out.insert(
                    k.clone(),
                    Desired {
                        value: v.clone(),
                        source: source.clone(),
                    },
                );
            }
        }
    }
    out
}

/// A value as the config reports it back (`Config::set` then `get`), so `"TRUE"` and
/// `"true"` compare equal. `None` for values that do not parse.
pub fn normalize(name: &str, value: &str) -> Option<String> {
    let mut c = Config::default();
    c.set(name, value).ok()?;
    c.get(name)
}

/// What to send to one process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Send `SCOPE_CONF_RELOAD=true` first: names we set earlier are no longer desired,
    /// and a reload returns them to the baseline (scope.yml + env).
    pub reload: bool,
    /// `NAME=value` lines.
    pub set: Vec<(String, String)>,
    /// Names being reverted (for status and logs).
    pub reverted: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        !self.reload && self.set.is_empty()
    }

    /// The command-file lines, in order.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.reload {
            out.push(("SCOPE_CONF_RELOAD".to_string(), "true".to_string()));
        }
        out.extend(self.set.iter().cloned());
        out
    }
}

/// The difference between the desired overlay and the config in effect.
/// `managed` are the names this agent set earlier in this process.
/// After a reload the library re-applies scope.yml and env, then the file's other lines,
/// so every desired name is re-sent with it.
pub fn plan(
    desired: &BTreeMap<String, Desired>,
    in_effect: &Config,
    managed: &BTreeSet<String>,
) -> Plan {
    let reverted: Vec<String> = managed
        .iter()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    if !reverted.is_empty() {
        return Plan {
            reload: true,
            set: desired
                .iter()
                .map(|(k, d)| (k.clone(), d.value.clone()))
                .collect(),
            reverted,
        };
    }
    let set = desired
        .iter()
        .filter(|(k, d)| {
            let want = normalize(k, &d.value);
            want.is_none() || want != in_effect.get(k)
        })
        .map(|(k, d)| (k.clone(), d.value.clone()))
        .collect();
    Plan {
        reload: false,
        set,
        reverted: Vec::new(),
    }
}

// ------------------------------------------------------------- per-process state

/// State of one process with respect to its overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// The config in effect carries the overlay.
    Applied,
    /// A command was sent (or is about to be) and is not confirmed yet.
    Pending,
    /// The process rejected a setting of the overlay.
    Failed,
}

/// What the agent remembers about a process between cycles.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcMemory {
    /// Names this agent set in the process (to revert them later).
    pub managed: BTreeSet<String>,
    /// Unix ms of the last command file written, if not yet confirmed.
    pub written_at_ms: Option<i64>,
    /// Lines of that file.
    pub written: Vec<(String, String)>,
    /// Writes without success so far (drives the backoff).
    pub attempts: u32,
    /// Names the process rejected, with the reason it gave.
    pub rejected: BTreeMap<String, String>,
}

/// What the agent sees of a process this cycle.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub in_effect: &'a Config,
    /// Unix ms of the status file's `updated`.
    pub status_updated_ms: i64,
    /// Our command file still exists (the library has not read it yet).
    pub cmd_file_pending: bool,
    /// The status file's `last_command`, if any.
    pub last_command: Option<&'a scope_config::status::LastCommand>,
    pub now_ms: i64,
    /// The library's summary period (it reads command files once per period).
    pub period_ms: i64,
}

/// Backoff before rewriting an unconfirmed command: 2, 4, 8 periods (capped).
pub fn backoff_ms(attempts: u32, period_ms: i64) -> i64 {
    period_ms * (1i64 << attempts.clamp(1, 3))
}

/// The decision for one process this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: ProcState,
    /// Write these lines as a command file now.
    pub write: Option<Vec<(String, String)>>,
    pub memory: ProcMemory,
}

/// Decide for one process (pure): confirm an earlier write from the status file, then
/// plan the difference and write it unless a write is outstanding or backing off.
pub fn step(desired: &BTreeMap<String, Desired>, obs: &Observed, mem: &ProcMemory) -> Step {
    let mut mem = mem.clone();
    // 1. Was our last write consumed? (file gone and the status written since.)
    if let Some(at) = mem.written_at_ms
        && !obs.cmd_file_pending
        && obs.status_updated_ms >= at
    {
        // Record what the process refused, by line number of our file.
        mem.rejected.clear();
        if let Some(lc) = obs.last_command {
            for r in &lc.rejected {
                if let Some((k, _)) = r.line.checked_sub(1).and_then(|i| mem.written.get(i)) {
                    mem.rejected.insert(k.clone(), r.reason.clone());
                }
            }
        }
        // Reverted names went back to baseline with the reload.
        let sent: BTreeSet<String> = mem
            .written
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k != "SCOPE_CONF_RELOAD")
            .collect();
        if mem.written.iter().any(|(k, _)| k == "SCOPE_CONF_RELOAD") {
            mem.managed = sent;
        } else {
            mem.managed.extend(sent);
        }
        mem.written_at_ms = None;
    }
    let p = plan(desired, obs.in_effect, &mem.managed);
    if p.is_empty() {
        mem.attempts = 0;
        mem.rejected.clear();
        mem.written.clear();
        return Step {
            state: ProcState::Applied,
            write: None,
            memory: mem,
        };
    }
    // Only rejected names differ, with the same values: report, do not resend.
    let only_rejected = !p.reload
        && p.set.iter().all(|(k, v)| {
            mem.rejected.contains_key(k) && mem.written.iter().any(|(wk, wv)| wk == k && wv == v)
        });
    if only_rejected {
        return Step {
            state: ProcState::Failed,
            write: None,
            memory: mem,
        };
    }
    if let Some(at) = mem.written_at_ms {
        let waited = obs.now_ms - at;
        if obs.cmd_file_pending || waited < backoff_ms(mem.attempts, obs.period_ms) {
            return Step {
                state: ProcState::Pending,
                write: None,
                memory: mem,
            };
        }
    }
    let lines = p.lines();
    // Names we send become managed now, so a crash of the agent after the write still
    // reverts them later.
    mem.managed.extend(p.set.iter().map(|(k, _)| k.clone()));
    mem.written = lines.clone();
    mem.written_at_ms = Some(obs.now_ms);
    mem.attempts = mem.attempts.saturating_add(1);
    Step {
        state: ProcState::Pending,
        write: Some(lines),
        memory: mem,
    }
}

// ------------------------------------------------------------ status aggregation

/// Count of processes by state.
pub fn count(states: &[ProcState]) -> ProcessCounts {
    let mut c = ProcessCounts {
        matched: states.len() as i64,
        ..Default::default()
    };
    for s in states {
        match s {
            ProcState::Applied => c.applied += 1,
            ProcState::Pending => c.pending += 1,
            ProcState::Failed => c.failed += 1,
        }
    }
    c
}

fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: None,
    }
}

/// The controller's part of a ScopeConfig's status: `observedGeneration`,
/// `matchedPods`, `processes` (sum of the nodes' entries) and the `Ready`/`Degraded`
/// conditions. `matched_pods` = scoped pods the selector matches. Transition times are
/// kept from `previous` when a condition's status did not change, else set to `now`.
pub fn aggregate_status(
    sc: &ScopeConfig,
    matched_pods: i64,
    previous: Option<&ScopeConfigStatus>,
    now: &str,
) -> ScopeConfigStatus {
    let generation = sc.metadata.generation;
    let problems = env_problems(sc);
    let nodes = previous.map(|p| p.nodes.as_slice()).unwrap_or_default();
    let mut processes = ProcessCounts::default();
    let mut node_errors = Vec::new();
    for n in nodes {
        processes.matched += n.processes.matched;
        processes.applied += n.processes.applied;
        processes.pending += n.processes.pending;
        processes.failed += n.processes.failed;
        node_errors.extend(n.errors.iter().map(|e| format!("{}: {e}", n.name)));
    }
    let (ready, degraded) = if !problems.is_empty() {
        let reason = problems[0].reason;
        let msg = problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        (
            cond("Ready", false, reason, msg.clone(), generation),
            cond("Degraded", true, reason, msg, generation),
        )
    } else if matched_pods == 0 {
        let msg = "the selector matches no scoped pod in this namespace".to_string();
        (
            cond("Ready", false, "NoMatchingPods", msg.clone(), generation),
            cond("Degraded", true, "NoMatchingPods", msg, generation),
        )
    } else if processes.failed > 0 {
        let msg = if node_errors.is_empty() {
            format!("{} process(es) rejected settings", processes.failed)
        } else {
            node_errors.join("; ")
        };
        (
            cond("Ready", false, "ProcessRejected", msg.clone(), generation),
            cond("Degraded", true, "ProcessRejected", msg, generation),
        )
    } else if processes.pending > 0 || processes.matched == 0 {
        let msg = format!(
            "{} of {} processes applied",
            processes.applied, processes.matched
        );
        (
            cond("Ready", false, "Pending", msg, generation),
            cond("Degraded", false, "AsExpected", String::new(), generation),
        )
    } else {
        let msg = format!("applied to {} processes", processes.applied);
        (
            cond("Ready", true, "Applied", msg, generation),
            cond("Degraded", false, "AsExpected", String::new(), generation),
        )
    };
    let mut conditions = vec![ready, degraded];
    for c in &mut conditions {
        let prev = previous
            .and_then(|p| p.conditions.iter().find(|pc| pc.type_ == c.type_))
            .filter(|pc| pc.status == c.status)
            .and_then(|pc| pc.last_transition_time.clone());
        c.last_transition_time = Some(prev.unwrap_or_else(|| now.to_string()));
    }
    ScopeConfigStatus {
        observed_generation: generation,
        conditions,
        matched_pods: Some(matched_pods),
        processes: Some(processes),
        nodes: Vec::new(),
    }
}

/// Whether writing `computed` would change the controller-owned fields of `current`
/// (`nodes` belong to the agents and are ignored).
pub fn status_changed(current: Option<&ScopeConfigStatus>, computed: &ScopeConfigStatus) -> bool {
    let Some(cur) = current else { return true };
    cur.observed_generation != computed.observed_generation
        || cur.matched_pods != computed.matched_pods
        || cur.processes != computed.processes
        || cur.conditions != computed.conditions
}

// -------------------------------------------------------------------- retention
//
// Retention is one decision, [`retention_per_namespace`], over one kind of input,
// [`RetainItem::of_crash_report`], with one set of limits: chart values
// `crashReports.retention.{count,bytes,age}`, flags `--retention-count/-bytes/-age` of
// both the agent and the controller. Limits apply per namespace to files and CRs
// together; `bytes` counts a report's crash files (`spec.files`).
//
// - The controller runs it over every ScopeCrashReport in the cluster and deletes the
//   CRs it picks ([`plan_controller`]).
// - Each agent runs it over every report in the store, as the ScopeCrashReport object
//   of each ([`retention_for_node`]), and removes the CR and then the files of those on
//   its own node. With the shared store (the chart's default PVC) every agent sees all
//   reports, so agents and controller reach the same decision. With per-node hostPath
//   stores an agent sees its node's reports only, a subset of the cluster's; the
//   decision is monotonic (a report too old, or with `count` newer reports or more than
//   `bytes` in newer reports of its namespace on one node, has at least as many in the
//   whole namespace), so an agent never removes a report the controller keeps. There the
//   controller may remove a CR first and the files go when the node's own limits reach
//   them.

/// One crash report as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RetainItem {
    pub namespace: String,
    pub id: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub bytes: u64,
}

impl RetainItem {
    /// The retention input of a ScopeCrashReport: its name, namespace, crash time
    /// (`spec.time`, else its creation time, else `now`), and bytes (the sum of
    /// `spec.files`, which are the stored files but `report.json`).
    pub fn of_crash_report(r: &ScopeCrashReport, now: chrono::DateTime<chrono::Utc>) -> Self {
        let time = chrono::DateTime::parse_from_rfc3339(&r.spec.time)
            .map(|t| t.to_utc())
            .ok()
            .or_else(|| {
                r.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| crate::kubeapi::chrono_of(&t.0))
            })
            .unwrap_or(now);
        RetainItem {
            namespace: r.metadata.namespace.clone().unwrap_or_default(),
            id: r.metadata.name.clone().unwrap_or_default(),
            time,
            bytes: r.spec.files.iter().map(|f| f.size).sum(),
        }
    }
}

/// Reports to remove, applying `limits` to each namespace separately (oldest first:
/// everything older than `max_age`, then the oldest until count and bytes fit).
pub fn retention_per_namespace(
    items: &[RetainItem],
    limits: &Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    type Entry = (String, chrono::DateTime<chrono::Utc>, u64);
    let mut by_ns: BTreeMap<&str, Vec<Entry>> = BTreeMap::new();
    for i in items {
        by_ns
            .entry(i.namespace.as_str())
            .or_default()
            .push((i.id.clone(), i.time, i.bytes));
    }
    by_ns
        .values()
        .flat_map(|v| node_agent::store::plan_retention(v, limits, now))
        .collect()
}

/// The agent's share of retention: the decision over every stored report (`(store id,
/// its ScopeCrashReport object)`, all nodes' when the store is shared), of which this
/// node's store ids.
pub fn retention_for_node(
    stored: &[(String, ScopeCrashReport)],
    node: &str,
    limits: &Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let items: Vec<RetainItem> = stored
        .iter()
        .map(|(id, obj)| RetainItem {
            id: id.clone(),
            ..RetainItem::of_crash_report(obj, now)
        })
        .collect();
    let remove: BTreeSet<String> = retention_per_namespace(&items, limits, now)
        .into_iter()
        .collect();
    stored
        .iter()
        .filter(|(id, obj)| obj.spec.node == node && remove.contains(id))
        .map(|(id, _)| id.clone())
        .collect()
}

// ------------------------------------------------------------ controller pass

/// Annotation the webhook sets on injected pods.
pub const INJECTED_ANNOTATION: &str = "appscope.dev/injected";
pub use crate::kubeapi::{CONFIGMAP_KEY, CONFIGMAP_NAME, MANAGED_BY};

/// Whether the webhook injected this pod.
pub fn is_scoped(pod: &ObjectMeta) -> bool {
    pod.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED_ANNOTATION))
}

/// Namespaces that need ConfigMap `appscope`: those with scoped pods or ScopeConfigs.
pub fn namespaces_needing_config(
    pods: &[&ObjectMeta],
    configs: &[&ScopeConfig],
) -> BTreeSet<String> {
    pods.iter()
        .filter(|p| is_scoped(p))
        .filter_map(|p| p.namespace.clone())
        .chain(configs.iter().filter_map(|c| c.metadata.namespace.clone()))
        .collect()
}

/// Scoped pods of `sc`'s namespace its selector matches.
pub fn matched_pods(sc: &ScopeConfig, pods: &[&ObjectMeta]) -> i64 {
    let empty = BTreeMap::new();
    pods.iter()
        .filter(|p| p.namespace.is_some() && p.namespace == sc.metadata.namespace && is_scoped(p))
        .filter(|p| selector_matches(&sc.spec.selector, p.labels.as_ref().unwrap_or(&empty)))
        .count() as i64
}

/// What to do with ConfigMap `appscope` of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigMapAction {
    Create,
    /// Ours, with other data: server-side apply the data.
    Update,
    Unchanged,
    /// Exists without our label: the user's (`appscope.dev/config` may name it); left alone.
    UserOwned,
}

/// Decide for one namespace from the ConfigMap `appscope` there, if any.
pub fn configmap_action(existing: Option<&ConfigMap>, scope_yml: &str) -> ConfigMapAction {
    let Some(cm) = existing else {
        return ConfigMapAction::Create;
    };
    let ours = cm
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1);
    if !ours {
        return ConfigMapAction::UserOwned;
    }
    let current = cm.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY));
    let only_key = cm.data.as_ref().is_some_and(|d| d.len() == 1);
    if current.map(String::as_str) == Some(scope_yml) && only_key {
        ConfigMapAction::Unchanged
    } else {
        ConfigMapAction::Update
    }
}

/// What the controller sees: the reflectors' stores.
#[derive(Debug, Clone, Default)]
pub struct ControllerView<'a> {
    /// Pod metadata (all namespaces).
    pub pods: Vec<&'a ObjectMeta>,
    pub configs: Vec<&'a ScopeConfig>,
    /// ConfigMaps named `appscope` (all namespaces).
    pub configmaps: Vec<&'a ConfigMap>,
    pub reports: Vec<&'a ScopeCrashReport>,
}

/// One ConfigMap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapWrite {
    pub namespace: String,
    /// `Create` or `Update`.
    pub action: ConfigMapAction,
}

/// One ScopeConfig status write (the controller's fields).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub namespace: String,
    pub name: String,
    pub status: ScopeConfigStatus,
}

/// Everything one controller pass writes, in order: ConfigMaps by namespace, then
/// ScopeConfig statuses by namespace and name, then ScopeCrashReport deletions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControllerPlan {
    pub configmaps: Vec<ConfigMapWrite>,
    /// Namespaces whose `appscope` ConfigMap is the user's (left alone).
    pub user_owned: Vec<String>,
    pub statuses: Vec<StatusWrite>,
    /// `(namespace, name)` of ScopeCrashReports past retention.
    pub deletes: Vec<(String, String)>,
}

impl ControllerPlan {
    pub fn is_empty(&self) -> bool {
        self.configmaps.is_empty() && self.statuses.is_empty() && self.deletes.is_empty()
    }
}

/// RFC 3339 UTC with seconds, as conditions carry it.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The controller's pass (pure): ConfigMaps to create or update, ScopeConfig statuses
/// that changed, and ScopeCrashReports past retention. Nothing to write when nothing
/// changed.
pub fn plan_controller(
    view: &ControllerView,
    scope_yml: &str,
    limits: &Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> ControllerPlan {
    let mut plan = ControllerPlan::default();
    for ns in namespaces_needing_config(&view.pods, &view.configs) {
        let existing = view
            .configmaps
            .iter()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(ns.as_str())
                    && c.metadata.name.as_deref() == Some(CONFIGMAP_NAME)
            })
            .copied();
        match configmap_action(existing, scope_yml) {
            ConfigMapAction::Unchanged => {}
            ConfigMapAction::UserOwned => plan.user_owned.push(ns),
            action => plan.configmaps.push(ConfigMapWrite {
                namespace: ns,
                action,
            }),
        }
    }

    let stamp = rfc3339(now);
    let mut configs: Vec<&ScopeConfig> = view
        .configs
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .copied()
        .collect();
    configs.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for sc in configs {
        let computed =
            aggregate_status(sc, matched_pods(sc, &view.pods), sc.status.as_ref(), &stamp);
        if status_changed(sc.status.as_ref(), &computed) {
            plan.statuses.push(StatusWrite {
                namespace: sc.metadata.namespace.clone().unwrap_or_default(),
                name: sc.metadata.name.clone().unwrap_or_default(),
                status: computed,
            });
        }
    }

    // Names are unique per namespace only: key the items by `namespace/name`.
    let items: Vec<RetainItem> = view
        .reports
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .map(|r| {
            let mut i = RetainItem::of_crash_report(r, now);
            i.id = format!("{}/{}", i.namespace, i.id);
            i
        })
        .collect();
    let mut deletes: Vec<(String, String)> = retention_per_namespace(&items, limits, now)
        .into_iter()
        .filter_map(|id| {
            id.split_once('/')
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
        })
        .collect();
    deletes.sort();
    deletes.dedup();
    plan.deletes = deletes;
    plan
}
