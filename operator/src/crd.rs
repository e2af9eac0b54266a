//! Custom resources of group `appscope.dev`, version `v1alpha1` (design §5).
//!
//! - [`ScopeConfig`]: declarative `scope update` for every matching scoped process.
//! - [`ScopeSnapshot`]: declarative `scope snapshot` of one pod/container/pid.
//! - [`ScopeCrashReport`]: one captured crash, in the crashed pod's namespace.
//!
//! `appscope-operator crdgen` prints [`all_crds_yaml`]; the chart and `manifests/`
//! carry that output.

// The kube derive takes several `printcolumn(...)` with the same keys.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of all AppScope resources.
pub const GROUP: &str = "appscope.dev";
/// API version of all AppScope resources.
pub const VERSION: &str = "v1alpha1";
/// Lowest and highest accepted `ScopeConfig.spec.priority`.
pub const PRIORITY_MIN: i32 = -1000;
pub const PRIORITY_MAX: i32 = 1000;
/// Pattern env names must match (admission-time, CEL).
pub const ENV_NAME_PATTERN: &str = "^SCOPE_[A-Z0-9_]+$";
/// Bounds of `ScopeConfig.spec.env`: entries and value length. Every string, list and map
/// a CEL rule can reach is bounded, so the API server's cost estimate stays in budget.
pub const ENV_MAX_ENTRIES: u32 = 128;
pub const ENV_VALUE_MAX: u32 = 4096;

// ---------------------------------------------------------------- ScopeConfig

/// Desired AppScope settings for scoped processes of the pods selected in this namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[kube(
    group = "appscope.dev",
    version = "v1alpha1",
    kind = "ScopeConfig",
    namespaced,
    shortname = "scfg",
    category = "appscope",
    status = "ScopeConfigStatus",
    derive = "PartialEq",
    doc = "ScopeConfig: SCOPE_* settings applied live (through command files) to the scoped processes of the selected pods. Deleting it reverts them to their baseline.",
    printcolumn(
        name = "Matched",
        type_ = "integer",
        description = "Pods selected that have scoped processes",
        json_path = ".status.matchedPods"
    ),
    printcolumn(
        name = "Applied",
        type_ = "integer",
        description = "Processes whose config in effect carries this overlay",
        json_path = ".status.processes.applied"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScopeConfigSpec {
    /// Pods in this namespace this config applies to. An empty selector selects all pods.
    #[serde(default)]
    pub selector: LabelSelector,
    /// Containers of the selected pods (default: every scoped container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.all(c, c.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("container names must be DNS labels"))]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub containers: Option<Vec<String>>,
    /// `SCOPE_*` settings, exactly what a command file carries.
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, k.matches('^SCOPE_[A-Z0-9_]+$'))").message("env names must match ^SCOPE_[A-Z0-9_]+$"))]
    #[schemars(extend(
        "maxProperties" = ENV_MAX_ENTRIES,
        "additionalProperties" = {"type": "string", "maxLength": ENV_VALUE_MAX}
    ))]
    pub env: BTreeMap<String, String>,
    /// Higher wins when several ScopeConfigs set the same name; ties are broken by name.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,
}

/// A condition (`Ready`, `Degraded`) in the Kubernetes style.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Processes counted by their state with respect to one ScopeConfig.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub struct ProcessCounts {
    pub matched: i64,
    pub applied: i64,
    pub pending: i64,
    pub failed: i64,
}

/// One node's view, written by that node's agent with server-side apply.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    /// Pods on this node the config selects that have scoped processes.
    #[serde(default)]
    pub pods: i64,
    #[serde(default)]
    pub processes: ProcessCounts,
    /// Rejections reported by processes (`NAME: reason`), at most a few.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// RFC 3339 time of the agent's last change to this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_pods: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub nodes: Vec<NodeStatus>,
}

// -------------------------------------------------------------- ScopeSnapshot

/// Take a snapshot (cmdline, config, backtrace, optionally a core) of a process in a pod.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[kube(
    group = "appscope.dev",
    version = "v1alpha1",
    kind = "ScopeSnapshot",
    namespaced,
    shortname = "ssnap",
    category = "appscope",
    status = "ScopeSnapshotStatus",
    derive = "PartialEq",
    doc = "ScopeSnapshot: the declarative `scope snapshot` of a process in a pod of this namespace.",
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.pod"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct ScopeSnapshotSpec {
    /// Pod name in this namespace.
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("pod is required"))]
    #[schemars(length(max = 253))]
    pub pod: String,
    /// Container (default: the first scoped container, else the first container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub container: Option<String>,
    /// Pid as seen inside the container (default: the container's main scoped process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pid: Option<i64>,
    /// Also write a core file.
    #[serde(default)]
    pub core: bool,
}

/// Phase of a ScopeSnapshot.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum SnapshotPhase {
    #[default]
    Pending,
    Running,
    Complete,
    Failed,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSnapshotStatus {
    #[serde(default)]
    pub phase: SnapshotPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Directory of the result on the crash-report volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ReportFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ----------------------------------------------------------- ScopeCrashReport

/// A file of a crash report or snapshot, with its size and digest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, schemars::JsonSchema)]
pub struct ReportFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One crash of a scoped process. Lives in the crashed pod's namespace with no owner,
/// so it outlives the pod; removed by retention.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[kube(
    group = "appscope.dev",
    version = "v1alpha1",
    kind = "ScopeCrashReport",
    namespaced,
    shortname = "scrash",
    category = "appscope",
    derive = "PartialEq",
    doc = "ScopeCrashReport: a crash of a scoped process captured by the node agent; the files are on the crash-report volume under spec.path.",
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.pod"),
    printcolumn(name = "Signal", type_ = "string", json_path = ".spec.signal"),
    printcolumn(name = "Top Frame", type_ = "string", json_path = ".spec.topFrame"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScopeCrashReportSpec {
    pub pod: String,
    #[serde(rename = "podUID")]
    pub pod_uid: String,
    pub container: String,
    pub node: String,
    #[serde(default)]
    pub image: String,
    /// Pid as the process saw itself.
    pub pid: i64,
    /// Signal name, e.g. `SIGSEGV`.
    pub signal: String,
    /// Crash time, RFC 3339 UTC.
    pub time: String,
    /// First symbolized frame (for `kubectl get`).
    #[serde(default)]
    pub top_frame: String,
    /// Top frames, innermost first.
    #[serde(default)]
    pub top_frames: Vec<String>,
    /// Directory of the report on the crash-report volume, relative to its root.
    pub path: String,
    #[serde(default)]
    pub files: Vec<ReportFile>,
}

/// All CRDs, in a stable order.
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        ScopeConfig::crd(),
        ScopeSnapshot::crd(),
        ScopeCrashReport::crd(),
    ]
}

/// All CRDs as one multi-document YAML (what `crdgen` prints).
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from("# Generated by `appscope-operator crdgen`. Do not edit.\n");
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
