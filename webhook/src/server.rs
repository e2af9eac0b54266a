//! The HTTPS server: axum routes on a rustls listener with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::inject::InjectConfig;
use crate::metrics::Metrics;
use crate::review::{self, MAX_BODY_BYTES, Reply, RequestOutcome};
use crate::tls::CertStore;

/// Shared state of the handlers.
pub struct AppState {
    pub cfg: InjectConfig,
    pub metrics: Arc<Metrics>,
    pub certs: Arc<CertStore>,
}

/// The routes: `POST /mutate`, `POST /mutate/namespace`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_annotated))
        .route("/mutate/namespace", post(mutate_namespace))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.certs.is_loaded() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate loaded yet",
        )
            .into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

async fn mutate_annotated(State(st): State<Arc<AppState>>, body: Body) -> Response {
    mutate(st, body, false).await
}

async fn mutate_namespace(State(st): State<Arc<AppState>>, body: Body) -> Response {
    mutate(st, body, true).await
}

async fn mutate(st: Arc<AppState>, body: Body, ns_enabled: bool) -> Response {
    let start = Instant::now();
    let reply = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => review::review_with(&bytes, ns_enabled, &st.cfg, review::decide_catching),
        Err(e) => {
            // Either the cap or a broken connection; both are the client's problem.
            let msg = format!("reading the request body (limit {MAX_BODY_BYTES} bytes): {e}");
            review::error_reply(413, &msg)
        }
    };
    record(&st.metrics, &reply, start);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.body,
    )
        .into_response()
}

fn record(m: &Metrics, reply: &Reply, start: Instant) {
    m.count_request(reply.outcome.as_str());
    m.latency.observe(start.elapsed().as_secs_f64());
    m.warnings.inc_by(reply.warnings.len() as u64);
    match reply.outcome {
        RequestOutcome::Injected => {
            m.injected_pods.inc();
            tracing::info!(detail = %reply.detail, containers = ?reply.containers, warnings = ?reply.warnings, "injected");
        }
        RequestOutcome::Skipped | RequestOutcome::Ignored => {
            tracing::debug!(detail = %reply.detail, warnings = ?reply.warnings, outcome = reply.outcome.as_str(), "not injected");
        }
        RequestOutcome::Invalid => {
            tracing::warn!(detail = %reply.detail, status = reply.status, "invalid request")
        }
        RequestOutcome::Error => {
            tracing::error!(detail = %reply.detail, warnings = ?reply.warnings, "internal error; pod allowed unchanged")
        }
    }
}

/// Accepts TLS connections on `listener` and serves `app` until `shutdown` resolves,
/// then stops accepting and waits up to `drain` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => break,
            res = listener.accept() => match res {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let svc = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
    Ok(())
}
