//! The operator's API calls, one function each, so tests can assert the exact requests
//! against a mocked API server. Field managers: agents use `appscope-agent-<node>`, the
//! controller `appscope-controller`.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::crd::{
    NodeStatus, ScopeConfig, ScopeConfigStatus, ScopeCrashReport, ScopeSnapshot,
    ScopeSnapshotStatus,
};

/// Field manager of the controller.
pub const CONTROLLER_MANAGER: &str = "appscope-controller";
/// Label on ConfigMaps the controller manages.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "appscope-operator");
/// ConfigMap name and key of the default config.
pub const CONFIGMAP_NAME: &str = "appscope";
pub const CONFIGMAP_KEY: &str = "scope.yml";
/// Event reason of a crash.
pub const CRASH_REASON: &str = "ScopedProcessCrashed";

/// Field manager of one node's agent.
pub fn agent_manager(node: &str) -> String {
    let m = format!("appscope-agent-{node}");
    m.chars().take(128).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

/// chrono time as the k8s-openapi timestamp type.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_millisecond(t.timestamp_millis())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// k8s-openapi timestamp as chrono time.
pub fn chrono_of(t: &k8s_openapi::jiff::Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.as_millisecond()).unwrap_or_default()
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Write this node's entry of `ScopeConfig.status.nodes` (server-side apply, list-map
/// keyed by name, so each agent owns only its entry).
pub async fn apply_node_status(
    api: &Api<ScopeConfig>,
    name: &str,
    entry: &NodeStatus,
) -> Result<(), ApiError> {
    let body = json!({
        "apiVersion": "appscope.dev/v1alpha1",
        "kind": "ScopeConfig",
        "status": { "nodes": [entry] },
    });
    let pp = PatchParams::apply(&agent_manager(&entry.name)).force();
    api.patch_status(name, &pp, &Patch::Apply(&body)).await?;
    Ok(())
}

/// Write the controller's fields of a ScopeConfig status (server-side apply).
pub async fn apply_config_status(
    api: &Api<ScopeConfig>,
    name: &str,
    status: &ScopeConfigStatus,
) -> Result<(), ApiError> {
    let mut st = serde_json::to_value(status)?;
    if let Some(o) = st.as_object_mut() {
        o.remove("nodes");
    }
    let body = json!({
        "apiVersion": "appscope.dev/v1alpha1",
        "kind": "ScopeConfig",
        "status": st,
    });
    let pp = PatchParams::apply(CONTROLLER_MANAGER).force();
    api.patch_status(name, &pp, &Patch::Apply(&body)).await?;
    Ok(())
}

/// Write a ScopeSnapshot's status (server-side apply by this node's agent).
pub async fn apply_snapshot_status(
    api: &Api<ScopeSnapshot>,
    name: &str,
    node: &str,
    status: &ScopeSnapshotStatus,
) -> Result<(), ApiError> {
    let body = json!({
        "apiVersion": "appscope.dev/v1alpha1",
        "kind": "ScopeSnapshot",
        "status": status,
    });
    let pp = PatchParams::apply(&agent_manager(node)).force();
    api.patch_status(name, &pp, &Patch::Apply(&body)).await?;
    Ok(())
}

/// Whether a create made a new object or found it there already (idempotent retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existed,
}

/// Create a ScopeCrashReport; an existing one of the same name counts as done.
pub async fn create_crash_report(
    api: &Api<ScopeCrashReport>,
    report: &ScopeCrashReport,
) -> Result<Created, ApiError> {
    match api.create(&PostParams::default(), report).await {
        Ok(_) => Ok(Created::New),
        Err(e) if is_status(&e, 409) => Ok(Created::Existed),
        Err(e) => Err(e.into()),
    }
}

/// The Event recorded on a pod for a crash.
pub fn crash_event(
    pod: &Pod,
    report: &ScopeCrashReport,
    now: chrono::DateTime<chrono::Utc>,
) -> Event {
    let report_name = report.metadata.name.as_deref().unwrap_or_default();
    let r = &report.spec;
    let (container, pid, signal, top_frame, node) = (
        &r.container,
        r.pid,
        &r.signal,
        &r.top_frame,
        r.node.as_str(),
    );
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{report_name}.crash")),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod_name),
            namespace: Some(ns),
            uid: pod.metadata.uid.clone(),
            field_path: Some(format!("spec.containers{{{container}}}")),
            ..Default::default()
        },
        reason: Some(CRASH_REASON.into()),
        message: Some(format!(
            "process {pid} in container {container} crashed with {signal} at {top_frame}; report {report_name}"
        )),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(Time(ts(now))),
        last_timestamp: Some(Time(ts(now))),
        event_time: Some(MicroTime(ts(now))),
        action: Some("CaptureCrash".into()),
        reporting_component: Some("appscope-agent".into()),
        reporting_instance: Some(node.into()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("appscope-agent".into()),
            host: Some(node.into()),
        }),
        ..Default::default()
    }
}

/// Record an Event (core/v1); an existing one of the same name counts as done.
pub async fn create_event(api: &Api<Event>, ev: &Event) -> Result<Created, ApiError> {
    match api.create(&PostParams::default(), ev).await {
        Ok(_) => Ok(Created::New),
        Err(e) if is_status(&e, 409) => Ok(Created::Existed),
        Err(e) => Err(e.into()),
    }
}

/// Delete ScopeCrashReports by name (already gone counts as done).
pub async fn delete_crash_reports(
    api: &Api<ScopeCrashReport>,
    names: &[String],
) -> Result<usize, ApiError> {
    let mut n = 0;
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => n += 1,
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

// ------------------------------------------------------------------ leader election

/// What to do with the Lease (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// No Lease yet: create it holding it.
    Create,
    /// Ours, or expired: take/renew it (update with the read resourceVersion).
    Take,
    /// Someone else holds a live lease.
    Wait { holder: String },
}

/// Decide from the current Lease spec.
pub fn lease_decision(
    spec: Option<&LeaseSpec>,
    identity: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> LeaseAction {
    let Some(spec) = spec else {
        return LeaseAction::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return LeaseAction::Take;
    }
    let dur = spec.lease_duration_seconds.unwrap_or(15) as i64;
    let last = spec
        .renew_time
        .as_ref()
        .map(|t| chrono_of(&t.0))
        .or(spec.acquire_time.as_ref().map(|t| chrono_of(&t.0)));
    match last {
        Some(t) if now < t + chrono::Duration::seconds(dur) => LeaseAction::Wait { holder },
        _ => LeaseAction::Take,
    }
}

/// Acquire or renew the Lease `name`; `Ok(true)` when this identity is the leader.
pub async fn acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration_secs: i32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, ApiError> {
    let current = api.get_opt(name).await?;
    let action = lease_decision(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        identity,
        now,
    );
    match action {
        LeaseAction::Wait { .. } => Ok(false),
        LeaseAction::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(ts(now))),
                    renew_time: Some(MicroTime(ts(now))),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 409) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        LeaseAction::Take => {
            let mut lease = current.unwrap_or_default();
            let spec = lease.spec.get_or_insert_with(Default::default);
            let was_ours = spec.holder_identity.as_deref() == Some(identity);
            if !was_ours {
                spec.acquire_time = Some(MicroTime(ts(now)));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(identity.into());
            spec.lease_duration_seconds = Some(duration_secs);
            spec.renew_time = Some(MicroTime(ts(now)));
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Someone else updated it first: not leader this round.
                Err(e) if is_status(&e, 409) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}
