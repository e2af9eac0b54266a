//! The agent's HTTP API, served by both agents (`scope agent --local` and the cluster
//! agent): `/healthz`, `/readyz`, `/metrics` (Prometheus text), and JSON endpoints for
//! the CLI:
//!
//! | method | path                    | answer                                  |
//! |--------|-------------------------|-----------------------------------------|
//! | GET    | `/v1/ps?all=true`       | `[ProcessInfo]`                         |
//! | GET    | `/v1/inspect/{pid}`     | `Inspection`                            |
//! | POST   | `/v1/snapshot/{pid}?core=true&redact=false` | `SnapshotResult`    |
//! | GET    | `/v1/crashes`           | `[StoredReport]`, newest first          |
//! | GET    | `/v1/crashes/{*id}`     | `StoredReport`                          |
//!
//! Handlers call the sync core on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::collector::ScanStats;
use crate::error::Error;
use crate::snapshot::{NoProgress, SnapshotOptions};
use crate::store::Store;

/// Agent metrics (Prometheus).
#[derive(Debug, Default, Clone)]
pub struct AgentMetrics {
    pub scans: Counter,
    pub reports_stored: Counter,
    pub reports_already_stored: Counter,
    pub ingest_errors: Counter,
    pub retention_removed: Counter,
    pub snapshots: Counter,
    pub scoped_processes: Gauge,
    pub reports_in_store: Gauge,
}

impl AgentMetrics {
    /// Register every metric under `appscope_agent_*`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "appscope_agent_scans",
            "Collector passes",
            self.scans.clone(),
        );
        r.register(
            "appscope_agent_reports_stored",
            "Crash reports stored",
            self.reports_stored.clone(),
        );
        r.register(
            "appscope_agent_reports_already_stored",
            "Bundles found already stored (source cleanup after a restart)",
            self.reports_already_stored.clone(),
        );
        r.register(
            "appscope_agent_ingest_errors",
            "Bundles that could not be stored",
            self.ingest_errors.clone(),
        );
        r.register(
            "appscope_agent_retention_removed",
            "Reports removed by retention",
            self.retention_removed.clone(),
        );
        r.register(
            "appscope_agent_snapshots",
            "Live snapshots taken",
            self.snapshots.clone(),
        );
        r.register(
            "appscope_agent_scoped_processes",
            "Scoped processes seen in the last pass",
            self.scoped_processes.clone(),
        );
        r.register(
            "appscope_agent_reports_in_store",
            "Crash reports in the store",
            self.reports_in_store.clone(),
        );
    }

    /// Account one collector pass.
    pub fn record_scan(&self, s: &ScanStats, reports_in_store: usize) {
        self.scans.inc();
        self.reports_stored.inc_by(s.stored.len() as u64);
        self.reports_already_stored.inc_by(s.already_stored as u64);
        self.ingest_errors.inc_by(s.errors.len() as u64);
        self.retention_removed
            .inc_by(s.removed_by_retention.len() as u64);
        self.scoped_processes.set(s.scoped_processes as i64);
        self.reports_in_store.set(reports_in_store as i64);
    }
}

/// Shared state of the API.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: AgentMetrics,
    pub registry: Arc<Registry>,
    /// Where snapshots requested over the API are written.
    pub snapshot_root: PathBuf,
    pub store: Option<Store>,
    /// Set once the first collector pass finished (readiness).
    pub ready: Arc<AtomicBool>,
}

impl ApiState {
    pub fn new(snapshot_root: PathBuf, store: Option<Store>) -> ApiState {
        let metrics = AgentMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        ApiState {
            metrics,
            registry: Arc::new(registry),
            snapshot_root,
            store,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

struct ApiError(Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self.0 {
            Error::NoSuchProcess(_) | Error::ReportNotFound(_) => StatusCode::NOT_FOUND,
            Error::Invalid(_) | Error::NotScoped(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (code, Json(serde_json::json!({"error": self.0.to_string()}))).into_response()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Other(format!("worker failed: {e}"))))?
        .map_err(ApiError)
}

#[derive(Deserialize)]
struct PsQuery {
    #[serde(default)]
    all: bool,
}

#[derive(Deserialize)]
struct SnapQuery {
    #[serde(default)]
    core: bool,
    #[serde(default = "yes")]
    redact: bool,
}

fn yes() -> bool {
    true
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<ApiState>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                }
            }),
        )
        .route("/metrics", get(metrics))
        .route("/v1/ps", get(ps))
        .route("/v1/inspect/{pid}", get(inspect))
        .route("/v1/snapshot/{pid}", post(snapshot))
        .route("/v1/crashes", get(crashes))
        .route("/v1/crashes/{*id}", get(crash))
        .with_state(state)
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ps(Query(q): Query<PsQuery>) -> Result<impl IntoResponse, ApiError> {
    let list = blocking(move || Ok(crate::procs::list_processes(q.all))).await?;
    Ok(Json(list))
}

async fn inspect(Path(pid): Path<i32>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(blocking(move || crate::status::inspect(pid)).await?))
}

async fn snapshot(
    State(s): State<ApiState>,
    Path(pid): Path<i32>,
    Query(q): Query<SnapQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let dir = s.snapshot_root.join(format!(
        "{pid}_{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let opts = SnapshotOptions {
        out_dir: dir,
        redact: q.redact,
        core: q.core,
        library_wait: std::time::Duration::ZERO,
    };
    let r = blocking(move || crate::snapshot::take_snapshot(pid, &opts, &mut NoProgress)).await?;
    s.metrics.snapshots.inc();
    Ok(Json(r))
}

async fn crashes(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let store = s.store.clone();
    Ok(Json(
        blocking(move || Ok(store.map(|st| st.list()).unwrap_or_default())).await?,
    ))
}

async fn crash(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let store = s
        .store
        .clone()
        .ok_or_else(|| ApiError(Error::ReportNotFound(id.clone())))?;
    Ok(Json(blocking(move || store.find(&id)).await?))
}
