//! `scope agent --local`: the crash collector loop plus the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use node_agent::api::{ApiState, router};
use node_agent::collector::{Collector, Sources, parse_bytes, parse_duration};
use node_agent::store::{Retention, Store};

use crate::exit;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Run without Kubernetes (the only mode of `scope agent`; the cluster agent is
    /// `appscope-operator agent`).
    #[arg(long)]
    pub local: bool,
    /// Crash-report store directory.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Serve /healthz, /readyz, /metrics and the API here.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Seconds between collector passes.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub interval: f64,
    /// Keep at most this many reports.
    #[arg(long, value_name = "N")]
    pub max_reports: Option<usize>,
    /// Keep at most this many bytes of reports (k, M, G suffixes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_bytes: Option<u64>,
    /// Delete reports older than this (s, m, h, d suffixes).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub max_age: Option<Duration>,
    /// Extra snapshot directory to watch (`<dir>/<pid>/...`), repeatable.
    #[arg(long = "watch", value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    /// Collect only from the --watch dirs (not /tmp/appscope, the `scope run` history
    /// dirs, or the dirs of live scoped processes).
    #[arg(long)]
    pub only_watch: bool,
    /// Do one collector pass and exit (no HTTP server).
    #[arg(long)]
    pub once: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    parse_bytes(s).ok_or_else(|| format!("`{s}` is not a size (e.g. 500M, 2G)"))
}

fn parse_age(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 30m, 7d)"))
}

pub fn agent(a: AgentArgs, json: bool) -> Result<i32> {
    if !a.local {
        bail!(node_agent::Error::Invalid(
            "`scope agent` needs --local (in a cluster the agent is `appscope-operator agent`)"
                .into()
        ));
    }
    let store_dir = a
        .store
        .clone()
        .unwrap_or_else(crate::commands::default_store);
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening store {}", store_dir.display()))?;
    let retention = Retention {
        max_reports: a.max_reports,
        max_bytes: a.max_bytes,
        max_age: a.max_age,
    };
    let sources = collector_sources(&a);
    let mut collector = Collector::local(store.clone(), retention, sources);
    if a.once {
        let s = collector.scan_once();
        if json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            for id in &s.stored {
                println!("stored {id}");
            }
            for e in &s.errors {
                eprintln!("error: {e}");
            }
            println!(
                "{} scoped process(es), {} bundle(s) found, {} stored, {} removed by retention",
                s.scoped_processes,
                s.bundles_found,
                s.stored.len(),
                s.removed_by_retention.len()
            );
        }
        return Ok(if s.errors.is_empty() {
            exit::OK
        } else {
            exit::FAILURE
        });
    }
    let state = ApiState::new(crate::scope_home().join("snapshots"), Some(store.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = state.metrics.clone();
    let ready = state.ready.clone();
    let interval = Duration::from_secs_f64(a.interval.max(0.05));
    let stop2 = stop.clone();
    let worker = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let s = collector.scan_once();
            metrics.record_scan(&s, collector.store().list().len());
            ready.store(true, Ordering::Relaxed);
            let mut slept = Duration::ZERO;
            while slept < interval && !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                slept += Duration::from_millis(50);
            }
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listen = a.listen;
    let res: Result<()> = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "scope agent: store {}, listening on http://{} (/healthz /metrics /v1/...)",
            store_dir.display(),
            listener.local_addr()?
        );
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    res?;
    Ok(exit::OK)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
        _ = async { if let Some(i) = int.as_mut() { i.recv().await; } else { std::future::pending::<()>().await } } => {}
    }
}

/// Where the local collector looks: with `--only-watch` just the `--watch` dirs; else
/// also `/tmp/appscope`, the `scope run` history dirs and every live scoped process's dir.
fn collector_sources(a: &AgentArgs) -> Sources {
    if a.only_watch {
        return Sources {
            snapshot_dirs: a.watch.clone(),
            history_dirs: Vec::new(),
            scan_processes: false,
        };
    }
    let mut sources = Sources::local_defaults();
    sources
        .history_dirs
        .push(crate::scope_home().join("history"));
    sources.history_dirs.sort();
    sources.history_dirs.dedup();
    sources.snapshot_dirs.extend(a.watch.iter().cloned());
    sources
}
