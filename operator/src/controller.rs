//! `appscope-operator controller`: leader-elected; keeps ConfigMap `appscope` in every
//! namespace with scoped pods or ScopeConfigs, aggregates ScopeConfig status, and
//! garbage-collects ScopeCrashReports past retention.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use node_agent::store::Retention;

use crate::crd::{ScopeConfig, ScopeCrashReport};
use crate::kubeapi::{self, ApiError};
use crate::reconcile;

/// Annotation the webhook sets on injected pods.
pub const INJECTED_ANNOTATION: &str = "appscope.dev/injected";

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub namespace: String,
    pub identity: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub default_config: String,
    pub interval: Duration,
    pub retention: Retention,
}

/// Whether the webhook injected this pod.
pub fn is_scoped(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED_ANNOTATION))
}

/// Namespaces that need ConfigMap `appscope`: those with scoped pods or ScopeConfigs (pure).
pub fn namespaces_needing_config(pods: &[Pod], configs: &[ScopeConfig]) -> BTreeSet<String> {
    pods.iter()
        .filter(|p| is_scoped(p))
        .filter_map(|p| p.namespace())
        .chain(configs.iter().filter_map(|c| c.namespace()))
        .collect()
}

/// One reconcile pass (the caller holds the lease).
pub async fn reconcile_once(client: &Client, cfg: &ControllerConfig) -> Result<(), ApiError> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let configs = Api::<ScopeConfig>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;

    for ns in namespaces_needing_config(&pods, &configs) {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        match kubeapi::sync_configmap(&api, &cfg.default_config).await {
            Ok(r) => tracing::debug!(namespace = %ns, result = ?r, "configmap sync"),
            Err(e) => tracing::warn!(namespace = %ns, error = %e, "configmap sync failed"),
        }
    }

    let now = scope_config::status::now_rfc3339();
    for sc in &configs {
        let ns = sc.namespace().unwrap_or_default();
        let matched = pods
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && is_scoped(p))
            .filter(|p| {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                reconcile::selector_matches(&sc.spec.selector, &labels)
            })
            .count() as i64;
        let computed = reconcile::aggregate_status(sc, matched, sc.status.as_ref(), &now);
        if !reconcile::status_changed(sc.status.as_ref(), &computed) {
            continue;
        }
        let api: Api<ScopeConfig> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = kubeapi::apply_config_status(&api, &sc.name_any(), &computed).await {
            tracing::warn!(scopeconfig = %sc.name_any(), namespace = %ns, error = %e, "status write failed");
        }
    }

    gc_crash_reports(client, &cfg.retention).await
}

/// Delete ScopeCrashReports past retention (count and age per namespace).
pub async fn gc_crash_reports(client: &Client, retention: &Retention) -> Result<(), ApiError> {
    let reports = Api::<ScopeCrashReport>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let now = chrono::Utc::now();
    let items: Vec<reconcile::RetainItem> = reports
        .iter()
        .map(|r| reconcile::RetainItem {
            namespace: r.namespace().unwrap_or_default(),
            id: format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()),
            time: chrono::DateTime::parse_from_rfc3339(&r.spec.time)
                .map(|t| t.to_utc())
                .unwrap_or(now),
            bytes: 0,
        })
        .collect();
    let limits = Retention {
        max_bytes: None,
        ..retention.clone()
    };
    let mut by_ns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in reconcile::retention_per_namespace(&items, &limits, now) {
        if let Some((ns, name)) = id.split_once('/') {
            by_ns
                .entry(ns.to_string())
                .or_default()
                .push(name.to_string());
        }
    }
    for (ns, names) in by_ns {
        let api: Api<ScopeCrashReport> = Api::namespaced(client.clone(), &ns);
        let n = kubeapi::delete_crash_reports(&api, &names).await?;
        tracing::info!(namespace = %ns, deleted = n, "crash reports past retention deleted");
    }
    Ok(())
}

/// Run until stopped: renew the lease every third of its duration; reconcile while leader.
pub async fn run(
    client: Client,
    cfg: ControllerConfig,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let dur = cfg.lease_duration.as_secs().max(3) as i32;
    let mut last_reconcile = std::time::Instant::now() - cfg.interval;
    loop {
        let leader = match kubeapi::acquire_or_renew(
            &leases,
            &cfg.lease_name,
            &cfg.identity,
            dur,
            chrono::Utc::now(),
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "lease");
                false
            }
        };
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        if leader && last_reconcile.elapsed() >= cfg.interval {
            last_reconcile = std::time::Instant::now();
            if let Err(e) = reconcile_once(&client, &cfg).await {
                tracing::warn!(error = %e, "reconcile failed");
            }
        }
        tokio::time::sleep(Duration::from_secs((dur / 3).max(1) as u64).min(cfg.interval)).await;
    }
}
