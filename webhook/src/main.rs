//! `appscope-webhook`: see `docs/reference/webhook.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use appscope_webhook::inject::InjectConfig;
use appscope_webhook::metrics::Metrics;
use appscope_webhook::selfcert::{self, SelfCertConfig};
use appscope_webhook::server::{self, AppState};
use appscope_webhook::tls::{self, CertStore};
use clap::{Parser, ValueEnum};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum CertMode {
    /// Generate and renew a CA and serving certificate in a Secret; patch the caBundle.
    #[value(name = "self")]
    SelfManaged,
    /// Read --tls-cert/--tls-key (e.g. from cert-manager), reloading them when they change.
    Files,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Json,
    Text,
}

/// Mutating admission webhook that injects AppScope into pods.
#[derive(Parser, Debug)]
#[command(name = "appscope-webhook", version)]
struct Args {
    /// Address and port of the HTTPS listener.
    #[arg(long, env = "APPSCOPE_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Where the serving certificate comes from.
    #[arg(long, env = "APPSCOPE_CERTS", value_enum, default_value = "files")]
    certs: CertMode,
    /// PEM certificate chain (--certs files).
    #[arg(
        long,
        env = "APPSCOPE_TLS_CERT",
        default_value = "/etc/appscope-webhook/tls/tls.crt"
    )]
    tls_cert: PathBuf,
    /// PEM private key (--certs files).
    #[arg(
        long,
        env = "APPSCOPE_TLS_KEY",
        default_value = "/etc/appscope-webhook/tls/tls.key"
    )]
    tls_key: PathBuf,
    /// How often the certificate files (or the Secret, in self mode) are checked, seconds.
    #[arg(long, env = "APPSCOPE_CERT_RELOAD_INTERVAL", default_value_t = 5)]
    cert_reload_interval: u64,
    /// Image of the injected init container (the operator image).
    #[arg(long, env = "APPSCOPE_INIT_IMAGE")]
    init_image: String,
    /// imagePullPolicy of the init container (Always, IfNotPresent, Never).
    #[arg(long, env = "APPSCOPE_INIT_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    init_image_pull_policy: Option<String>,
    /// UID (and GID) the init container runs as; must be non-zero.
    #[arg(long, env = "APPSCOPE_INIT_RUN_AS_USER", default_value_t = 65532)]
    init_run_as_user: i64,
    /// The operator's namespace: never injected; holds the Secret and Lease in self mode.
    #[arg(long, env = "APPSCOPE_NAMESPACE")]
    namespace: Option<String>,
    /// Extra namespaces never injected (comma list); kube-system always is.
    #[arg(long, env = "APPSCOPE_EXCLUDE_NAMESPACES", value_delimiter = ',')]
    exclude_namespaces: Vec<String>,
    /// sizeLimit of the injected `appscope` emptyDir.
    #[arg(long, env = "APPSCOPE_VOLUME_SIZE_LIMIT", default_value = "512Mi")]
    volume_size_limit: String,
    /// Secret holding the self-managed certificates.
    #[arg(
        long,
        env = "APPSCOPE_SECRET_NAME",
        default_value = "appscope-webhook-tls"
    )]
    secret_name: String,
    /// Service the API server calls (names in the serving certificate).
    #[arg(
        long,
        env = "APPSCOPE_SERVICE_NAME",
        default_value = "appscope-webhook"
    )]
    service_name: String,
    /// MutatingWebhookConfiguration whose caBundle is patched (self mode).
    #[arg(
        long,
        env = "APPSCOPE_WEBHOOK_CONFIG_NAME",
        default_value = "appscope-webhook"
    )]
    webhook_config_name: String,
    /// Lease used for leader election (self mode).
    #[arg(
        long,
        env = "APPSCOPE_LEASE_NAME",
        default_value = "appscope-webhook-certs"
    )]
    lease_name: String,
    /// This replica's identity in the Lease (default: the hostname, i.e. the pod name).
    #[arg(long, env = "APPSCOPE_POD_NAME")]
    pod_name: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "APPSCOPE_DRAIN_TIMEOUT", default_value_t = 25)]
    drain_timeout: u64,
    /// Log format.
    #[arg(long, env = "APPSCOPE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

/// stderr that never reports a write error: a closed or full log pipe must not turn into
/// failed admissions (tracing-subscriber would otherwise `eprintln!` and panic on EPIPE).
struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogSink);
    match format {
        LogFormat::Json => b.json().flatten_event(true).init(),
        LogFormat::Text => b.init(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("appscope-webhook-{}", std::process::id()))
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    let _ = tx.send(true);
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tls::install_default_provider();
    init_logging(args.log_format);
    if args.init_run_as_user <= 0 {
        bail!(
            "--init-run-as-user must be a non-root UID (got {})",
            args.init_run_as_user
        );
    }
    if args.init_image.trim().is_empty() {
        bail!("--init-image (APPSCOPE_INIT_IMAGE) must name the operator image");
    }

    let mut cfg = InjectConfig::new(args.init_image.clone(), args.namespace.as_deref());
    cfg.init_image_pull_policy = args.init_image_pull_policy.clone();
    cfg.init_run_as_user = args.init_run_as_user;
    cfg.volume_size_limit = args.volume_size_limit.clone();
    cfg.excluded_namespaces.extend(
        args.exclude_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    );

    let metrics = Arc::new(Metrics::new());
    let certs = Arc::new(CertStore::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = Duration::from_secs(args.cert_reload_interval.max(1));

    match args.certs {
        CertMode::Files => {
            match certs.load_files(&args.tls_cert, &args.tls_key) {
                Ok(_) => metrics.count_reload(true),
                Err(e) => {
                    metrics.count_reload(false);
                    tracing::error!(error = %e, "no usable serving certificate yet; /readyz fails until the files are valid");
                }
            }
            tokio::spawn(tls::watch_files(
                certs.clone(),
                metrics.clone(),
                args.tls_cert.clone(),
                args.tls_key.clone(),
                interval,
                wait_stop(stop_rx.clone()),
            ));
        }
        CertMode::SelfManaged => {
            let ns = args
                .namespace
                .clone()
                .context("--certs self needs --namespace (APPSCOPE_NAMESPACE)")?;
            let identity = args.pod_name.clone().unwrap_or_else(hostname);
            let mut sc = SelfCertConfig::new(&ns, &identity);
            sc.secret_name = args.secret_name.clone();
            sc.service_name = args.service_name.clone();
            sc.webhook_config_name = args.webhook_config_name.clone();
            sc.lease_name = args.lease_name.clone();
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (needed by --certs self)")?;
            let (certs2, metrics2, stop) = (certs.clone(), metrics.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let stop = wait_stop(stop);
                tokio::pin!(stop);
                loop {
                    let now = k8s_openapi::jiff::Timestamp::now();
                    match selfcert::reconcile_once(&client, &sc, now).await {
                        Ok(Some((crt, key))) => {
                            match certs2.load_pem(crt.as_bytes(), key.as_bytes()) {
                                Ok(true) => {
                                    metrics2.count_reload(true);
                                    tracing::info!("serving certificate loaded from the Secret");
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    metrics2.count_reload(false);
                                    tracing::error!(error = %e, "certificate in the Secret is unusable");
                                }
                            }
                        }
                        Ok(None) => tracing::info!(
                            "waiting for the leader to create the certificate Secret"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "certificate reconcile failed; retrying")
                        }
                    }
                    // Renew the lease well within its duration.
                    let wait =
                        (sc.lease_duration / 3).min(interval.max(Duration::from_secs(2)) * 2);
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            });
        }
    }

    let state = Arc::new(AppState {
        cfg,
        metrics,
        certs: certs.clone(),
    });
    let app = server::router(state);
    let tls_cfg = Arc::new(tls::server_config(certs).context("building the TLS configuration")?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, certs = ?args.certs, "appscope-webhook serving");
    tokio::spawn(shutdown_signal(stop_tx));
    server::serve(
        listener,
        tls_cfg,
        app,
        wait_stop(stop_rx),
        Duration::from_secs(args.drain_timeout),
    )
    .await
    .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
