//! `appscope-operator`: node agent, controller, CRD generator and library copier.

use std::path::PathBuf;
use std::process::ExitCode;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "appscope-operator",
    version,
    about = "AppScope operator for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

fn duration(s: &str) -> Result<Duration, String> {
    node_agent::collector::parse_duration(s)
        .ok_or_else(|| format!("not a duration: {s:?} (use 30s, 15m, 12h, 7d)"))
}

fn bytes(s: &str) -> Result<u64, String> {
    node_agent::collector::parse_bytes(s).ok_or_else(|| format!("not a size: {s:?} (use 500M, 2G)"))
}

fn limit<T: PartialEq + Default>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

#[derive(Args, Debug)]
struct RetentionArgs {
    /// Crash reports kept per namespace (0 = unlimited).
    #[arg(long, env = "APPSCOPE_RETENTION_COUNT", default_value_t = 100)]
    retention_count: usize,
    /// Reports older than this are removed (0 = unlimited).
    #[arg(long, env = "APPSCOPE_RETENTION_AGE", default_value = "30d", value_parser = duration)]
    retention_age: Duration,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Node agent (DaemonSet).
    Agent {
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        #[arg(long, env = "APPSCOPE_LISTEN", default_value = "0.0.0.0:9464")]
        listen: SocketAddr,
        #[arg(
            long,
            env = "APPSCOPE_KUBELET_ROOT",
            default_value = "/var/lib/kubelet"
        )]
        kubelet_root: PathBuf,
        #[arg(
            long,
            env = "APPSCOPE_STORE",
            default_value = "/var/lib/appscope/reports"
        )]
        store: PathBuf,
        /// Where the agent persists what it set in each process (to revert it after a
        /// restart) [default: <store>/.agent/<node>.json].
        #[arg(long, env = "APPSCOPE_AGENT_STATE")]
        state_file: Option<PathBuf>,
        /// Period of the process scan; watch events also start a cycle (debounced).
        #[arg(long, env = "APPSCOPE_SCAN_INTERVAL", default_value = "2s", value_parser = duration)]
        interval: Duration,
        #[arg(long, env = "APPSCOPE_SUMMARY_PERIOD", default_value = "10s", value_parser = duration)]
        summary_period: Duration,
        /// Bytes kept per namespace (0 = unlimited).
        #[arg(long, env = "APPSCOPE_RETENTION_BYTES", default_value = "2G", value_parser = bytes)]
        retention_bytes: u64,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Controller (Deployment, leader-elected).
    Controller {
        #[arg(long, env = "POD_NAMESPACE", default_value = "appscope-system")]
        namespace: String,
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        #[arg(
            long,
            env = "APPSCOPE_LEASE_NAME",
            default_value = "appscope-controller"
        )]
        lease_name: String,
        #[arg(long, env = "APPSCOPE_LEASE_DURATION", default_value = "15s", value_parser = duration)]
        lease_duration: Duration,
        #[arg(
            long,
            env = "APPSCOPE_DEFAULT_CONFIG",
            default_value = "/etc/appscope-default/scope.yml"
        )]
        default_config: PathBuf,
        /// A pass also runs this often without any change (age-based retention).
        #[arg(long, env = "APPSCOPE_SYNC_INTERVAL", default_value = "30s", value_parser = duration)]
        interval: Duration,
        /// Changes within this many milliseconds are handled by one pass.
        #[arg(long, env = "APPSCOPE_DEBOUNCE_MS", default_value_t = 500)]
        debounce_ms: u64,
        #[arg(long, env = "APPSCOPE_LISTEN", default_value = "0.0.0.0:9465")]
        listen: SocketAddr,
        /// Bytes of ScopeCrashReports (their `spec.files`) kept per namespace (0 = unlimited).
        #[arg(long, env = "APPSCOPE_RETENTION_BYTES", default_value = "2G", value_parser = bytes)]
        retention_bytes: u64,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Print all CRDs as one multi-document YAML.
    Crdgen,
    /// Copy libscope.so into a shared volume atomically (init container).
    CopyLib {
        /// Library to copy [env: APPSCOPE_LIB_SOURCE] [default: /usr/lib/appscope/libscope.so]
        #[arg(long)]
        from: Option<PathBuf>,
        /// Destination directory; the file is written as <to>/libscope.so.
        #[arg(long)]
        to: PathBuf,
    },
}

fn init_logs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("appscope-operator: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appscope-operator: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Agent {
            node_name,
            listen,
            kubelet_root,
            store,
            state_file,
            interval,
            summary_period,
            retention_bytes,
            retention,
        } => {
            init_logs();
            let state_file = state_file
                .unwrap_or_else(|| appscope_operator::agentstate::default_path(&store, &node_name));
            let cfg = appscope_operator::agent::AgentConfig {
                state_file,
                node: node_name,
                kubelet_root,
                store,
                interval,
                summary_period,
                retention: node_agent::store::Retention {
                    max_reports: limit(retention.retention_count),
                    max_bytes: limit(retention_bytes),
                    max_age: limit(retention.retention_age),
                },
                proc_root: PathBuf::from("/proc"),
            };
            run_async(async move {
                let client = kube::Client::try_default().await?;
                appscope_operator::agent::run(cfg, client, listen).await
            })
        }
        Cmd::Controller {
            namespace,
            identity,
            lease_name,
            lease_duration,
            default_config,
            interval,
            debounce_ms,
            listen,
            retention_bytes,
            retention,
        } => {
            init_logs();
            let default_config = match std::fs::read_to_string(&default_config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "appscope-operator controller: reading --default-config {}: {e}",
                        default_config.display()
                    );
                    return ExitCode::from(1);
                }
            };
            let cfg = appscope_operator::controller::ControllerConfig {
                namespace,
                identity: identity.unwrap_or_else(node_agent::store::hostname),
                lease_name,
                lease_duration,
                default_config,
                interval,
                debounce: Duration::from_millis(debounce_ms),
                retention: node_agent::store::Retention {
                    max_reports: limit(retention.retention_count),
                    max_bytes: limit(retention_bytes),
                    max_age: limit(retention.retention_age),
                },
            };
            run_async(async move {
                let client = kube::Client::try_default().await?;
                let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let r2 = ready.clone();
                let app = axum::Router::new()
                    .route("/healthz", axum::routing::get(|| async { "ok\n" }))
                    .route(
                        "/readyz",
                        axum::routing::get(move || {
                            let r = r2.clone();
                            async move {
                                if r.load(std::sync::atomic::Ordering::Relaxed) {
                                    (axum::http::StatusCode::OK, "ready\n")
                                } else {
                                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                                }
                            }
                        }),
                    );
                let listener = tokio::net::TcpListener::bind(listen).await?;
                tokio::spawn(async move { axum::serve(listener, app).await });
                appscope_operator::controller::run(client, cfg, ready).await
            })
        }
        Cmd::Crdgen => match appscope_operator::crd::all_crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("appscope-operator crdgen: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::CopyLib { from, to } => {
            let src = appscope_operator::copylib::resolve_source(
                from,
                std::env::var_os(appscope_operator::copylib::SOURCE_ENV),
            );
            match appscope_operator::copylib::copy_lib(&src, &to) {
                Ok(dest) => {
                    println!("copied {} -> {}", src.display(), dest.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("appscope-operator copy-lib: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
