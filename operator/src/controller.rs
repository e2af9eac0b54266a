//! `appscope-operator controller`: leader-elected; keeps ConfigMap `appscope` in every
//! namespace with scoped pods or ScopeConfigs, aggregates ScopeConfig status, and
//! garbage-collects ScopeCrashReports past retention.
//!
//! Four kube-runtime reflectors (pod metadata, ScopeConfigs, ConfigMaps named `appscope`,
//! ScopeCrashReports; all namespaces) keep the view. Any change to them triggers a pass
//! after a short debounce; a pass also runs every `interval` (age-based retention needs
//! no event) and when this replica becomes the leader. A pass computes everything it
//! should write with the pure [`reconcile::plan_controller`] and writes only that, and
//! only while this replica holds the Lease. Watch errors back off
//! (`default_backoff`) and are logged; a pass with failed writes is retried with an
//! exponential backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use node_agent::store::Retention;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::crd::{ScopeConfig, ScopeConfigStatus, ScopeCrashReport};
use crate::kubeapi::{self, ApiError, CONTROLLER_MANAGER};
use crate::reconcile::{self, ConfigMapAction, ControllerPlan, ControllerView};

pub use crate::reconcile::{INJECTED_ANNOTATION, is_scoped};

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    pub identity: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    /// `scope.yml` of ConfigMap `appscope`.
    pub default_config: String,
    /// A pass also runs this often without any change (age-based retention).
    pub interval: Duration,
    /// Changes arriving within this delay are handled by one pass.
    pub debounce: Duration,
    /// The same limits as the agents' (chart values `crashReports.retention`).
    pub retention: Retention,
}

/// What a running controller shows: readiness (the reflectors have synced), leadership,
/// and how many passes it has run (as leader) and how many writes it made.
#[derive(Debug, Default)]
pub struct Progress {
    pub ready: Arc<AtomicBool>,
    pub leader: AtomicBool,
    pub passes: AtomicU64,
    pub writes: AtomicU64,
}

/// The reflectors' stores.
#[derive(Clone)]
pub struct Stores {
    pub pods: Store<PartialObjectMeta<Pod>>,
    pub configs: Store<ScopeConfig>,
    pub configmaps: Store<ConfigMap>,
    pub reports: Store<ScopeCrashReport>,
}

/// Drive one reflector: every event (or relist) notifies the pass loop; errors are
/// logged (the stream backs off by itself).
fn drive<S, T, E>(what: &'static str, stream: S, notify: Arc<Notify>) -> tokio::task::JoinHandle<()>
where
    S: Stream<Item = Result<T, E>> + Send + 'static,
    T: Send,
    E: std::fmt::Display + Send,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(watch = what, error = %e, "watch failed; backing off"),
            }
        }
    })
}

/// Start the four reflectors; the tasks end when the returned handles are aborted.
pub fn start_reflectors(
    client: &Client,
    notify: Arc<Notify>,
) -> (Stores, Vec<tokio::task::JoinHandle<()>>) {
    let wc = watcher::Config::default;
    let (pods, w) = reflector::store();
    let s = reflector::reflector(
        w,
        watcher(Api::<PartialObjectMeta<Pod>>::all(client.clone()), wc()).default_backoff(),
    );
    let mut tasks = vec![drive("pods", s, notify.clone())];
    let (configs, w) = reflector::store();
    let s = reflector::reflector(
        w,
        watcher(Api::<ScopeConfig>::all(client.clone()), wc()).default_backoff(),
    );
    tasks.push(drive("scopeconfigs", s, notify.clone()));
    let (configmaps, w) = reflector::store();
    let s = reflector::reflector(
        w,
        watcher(
            Api::<ConfigMap>::all(client.clone()),
            wc().fields(&format!("metadata.name={}", reconcile::CONFIGMAP_NAME)),
        )
        .default_backoff(),
    );
    tasks.push(drive("configmaps", s, notify.clone()));
    let (reports, w) = reflector::store();
    let s = reflector::reflector(
        w,
        watcher(Api::<ScopeCrashReport>::all(client.clone()), wc()).default_backoff(),
    );
    tasks.push(drive("scopecrashreports", s, notify));
    (
        Stores {
            pods,
            configs,
            configmaps,
            reports,
        },
        tasks,
    )
}

impl Stores {
    async fn wait_until_ready(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.configs.wait_until_ready().await;
        let _ = self.configmaps.wait_until_ready().await;
        let _ = self.reports.wait_until_ready().await;
    }
}

/// Writes made but not yet seen by the reflectors: a pass that runs before the watch
/// event of our own write arrives must not write the same thing again. Each entry holds
/// the input it was computed from (resourceVersion, or absence); once the store shows
/// another input the entry no longer applies.
#[derive(Debug, Default)]
pub struct Expectations {
    configmaps: BTreeMap<String, Option<String>>,
    statuses: BTreeMap<(String, String), (Option<String>, ScopeConfigStatus)>,
    deletes: BTreeMap<(String, String), Option<String>>,
}

/// Status equality without condition transition times (they are derived from `now`).
fn same_status(a: &ScopeConfigStatus, b: &ScopeConfigStatus) -> bool {
    let strip = |s: &ScopeConfigStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

fn rv(m: &ObjectMeta) -> Option<String> {
    m.resource_version.clone()
}

impl Expectations {
    /// Drop from `plan` the writes already made from the same input; forget entries
    /// whose object changed since.
    pub fn filter(&mut self, plan: &mut ControllerPlan, view: &ControllerView) {
        let cm_rv = |ns: &str| {
            view.configmaps
                .iter()
                .find(|c| c.metadata.namespace.as_deref() == Some(ns))
                .and_then(|c| rv(&c.metadata))
        };
        self.configmaps.retain(|ns, input| *input == cm_rv(ns));
        plan.configmaps
            .retain(|w| !self.configmaps.contains_key(&w.namespace));

        let sc_rv = |ns: &str, name: &str| {
            view.configs
                .iter()
                .find(|c| {
                    c.metadata.namespace.as_deref() == Some(ns)
                        && c.metadata.name.as_deref() == Some(name)
                })
                .map(|c| rv(&c.metadata))
        };
        self.statuses
            .retain(|(ns, name), (input, _)| sc_rv(ns, name) == Some(input.clone()));
        plan.statuses.retain(|w| {
            self.statuses
                .get(&(w.namespace.clone(), w.name.clone()))
                .is_none_or(|(_, done)| !same_status(done, &w.status))
        });

        let rep_rv = |ns: &str, name: &str| {
            view.reports
                .iter()
                .find(|r| {
                    r.metadata.namespace.as_deref() == Some(ns)
                        && r.metadata.name.as_deref() == Some(name)
                })
                .map(|r| rv(&r.metadata))
        };
        self.deletes
            .retain(|(ns, name), input| rep_rv(ns, name) == Some(input.clone()));
        plan.deletes.retain(|k| !self.deletes.contains_key(k));
    }

    fn configmap_written(&mut self, ns: &str, view: &ControllerView) {
        let input = view
            .configmaps
            .iter()
            .find(|c| c.metadata.namespace.as_deref() == Some(ns))
            .and_then(|c| rv(&c.metadata));
        self.configmaps.insert(ns.to_string(), input);
    }

    fn status_written(&mut self, w: &reconcile::StatusWrite, view: &ControllerView) {
        let input = view
            .configs
            .iter()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(w.namespace.as_str())
                    && c.metadata.name.as_deref() == Some(w.name.as_str())
            })
            .and_then(|c| rv(&c.metadata));
        self.statuses.insert(
            (w.namespace.clone(), w.name.clone()),
            (input, w.status.clone()),
        );
    }

    fn deleted(&mut self, ns: &str, name: &str, view: &ControllerView) {
        let input = view
            .reports
            .iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some(ns)
                    && r.metadata.name.as_deref() == Some(name)
            })
            .and_then(|r| rv(&r.metadata));
        self.deletes
            .insert((ns.to_string(), name.to_string()), input);
    }
}

/// Create ConfigMap `appscope` (labelled as ours); an existing one counts as done.
pub async fn create_configmap(api: &Api<ConfigMap>, scope_yml: &str) -> Result<(), ApiError> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(reconcile::CONFIGMAP_NAME.into()),
            labels: Some(
                [(
                    reconcile::MANAGED_BY.0.to_string(),
                    reconcile::MANAGED_BY.1.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some([(reconcile::CONFIGMAP_KEY.to_string(), scope_yml.to_string())].into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Bring our ConfigMap `appscope` back to the default config (server-side apply).
pub async fn apply_configmap(api: &Api<ConfigMap>, scope_yml: &str) -> Result<(), ApiError> {
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": reconcile::CONFIGMAP_NAME,
            "labels": { reconcile::MANAGED_BY.0: reconcile::MANAGED_BY.1 },
        },
        "data": { reconcile::CONFIGMAP_KEY: scope_yml },
    });
    let pp = PatchParams::apply(CONTROLLER_MANAGER).force();
    api.patch(reconcile::CONFIGMAP_NAME, &pp, &Patch::Apply(&body))
        .await?;
    Ok(())
}

/// Delete one ScopeCrashReport; already gone counts as done. The precondition on the
/// UID makes sure a report re-created under the same name is not the one deleted.
pub async fn delete_crash_report(
    api: &Api<ScopeCrashReport>,
    name: &str,
    uid: Option<String>,
) -> Result<(), ApiError> {
    let dp = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Make the writes of `plan`; every write is tried, the first error is returned.
/// Returns the number of writes made.
pub async fn execute(
    client: &Client,
    plan: &ControllerPlan,
    view: &ControllerView<'_>,
    scope_yml: &str,
    expect: &mut Expectations,
    leader: &(dyn Fn() -> bool + Sync),
) -> Result<u64, ApiError> {
    let mut first_err = None;
    let mut n = 0;
    // Every write is fenced: a pass that outlives the lease stops where it is (the new
    // holder redoes what is left from its own view).
    let lost = |n: u64| {
        tracing::warn!(writes = n, "lease lost during a pass; stopping its writes");
        Ok(n)
    };
    for w in &plan.configmaps {
        if !leader() {
            return lost(n);
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &w.namespace);
        let r = match w.action {
            ConfigMapAction::Create => create_configmap(&api, scope_yml).await,
            _ => apply_configmap(&api, scope_yml).await,
        };
        match r {
            Ok(()) => {
                n += 1;
                expect.configmap_written(&w.namespace, view);
                tracing::info!(namespace = %w.namespace, action = ?w.action, "configmap appscope synced");
            }
            Err(e) => {
                tracing::warn!(namespace = %w.namespace, error = %e, "configmap sync failed");
                first_err.get_or_insert(e);
            }
        }
    }
    for w in &plan.statuses {
        if !leader() {
            return lost(n);
        }
        let api: Api<ScopeConfig> = Api::namespaced(client.clone(), &w.namespace);
        match kubeapi::apply_config_status(&api, &w.name, &w.status).await {
            Ok(()) => {
                n += 1;
                expect.status_written(w, view);
                tracing::debug!(namespace = %w.namespace, scopeconfig = %w.name, "status written");
            }
            Err(e) => {
                tracing::warn!(namespace = %w.namespace, scopeconfig = %w.name, error = %e, "status write failed");
                first_err.get_or_insert(e);
            }
        }
    }
    for (ns, name) in &plan.deletes {
        if !leader() {
            return lost(n);
        }
        let uid = view
            .reports
            .iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some(ns.as_str())
                    && r.metadata.name.as_deref() == Some(name.as_str())
            })
            .and_then(|r| r.meta().uid.clone());
        let api: Api<ScopeCrashReport> = Api::namespaced(client.clone(), ns);
        match delete_crash_report(&api, name, uid).await {
            Ok(()) => {
                n += 1;
                expect.deleted(ns, name, view);
                tracing::info!(namespace = %ns, report = %name, "crash report past retention deleted");
            }
            Err(e) => {
                tracing::warn!(namespace = %ns, report = %name, error = %e, "crash report delete failed");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// One pass over the stores, writing only while `leader()` holds.
pub async fn pass(
    client: &Client,
    cfg: &ControllerConfig,
    stores: &Stores,
    expect: &mut Expectations,
    leader: &(dyn Fn() -> bool + Sync),
) -> Result<u64, ApiError> {
    let pods = stores.pods.state();
    let configs = stores.configs.state();
    let configmaps = stores.configmaps.state();
    let reports = stores.reports.state();
    let view = ControllerView {
        pods: pods.iter().map(|p| &p.metadata).collect(),
        configs: configs.iter().map(|c| c.as_ref()).collect(),
        configmaps: configmaps
            .iter()
            .map(|c| c.as_ref())
            .filter(|c| c.metadata.name.as_deref() == Some(reconcile::CONFIGMAP_NAME))
            .collect(),
        reports: reports.iter().map(|r| r.as_ref()).collect(),
    };
    let now = chrono::Utc::now();
    let mut plan = reconcile::plan_controller(&view, &cfg.default_config, &cfg.retention, now);
    expect.filter(&mut plan, &view);
    let user: BTreeSet<&String> = plan.user_owned.iter().collect();
    if !user.is_empty() {
        tracing::debug!(namespaces = ?user, "ConfigMap appscope is the user's; left alone");
    }
    if plan.is_empty() {
        return Ok(0);
    }
    execute(client, &plan, &view, &cfg.default_config, expect, leader).await
}

/// Run until stopped, setting `ready` once the reflectors have synced.
pub async fn run(
    client: Client,
    cfg: ControllerConfig,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let progress = Arc::new(Progress {
        ready,
        ..Default::default()
    });
    run_with(client, cfg, progress).await
}

/// Until when this replica may write: a successful renewal started at `t` holds until
/// `t + lease_hold(duration)`, well before others may take the lease over (they wait a
/// full duration from the renew time they read, which is later than `t`).
pub fn lease_hold(duration: Duration) -> Duration {
    duration * 2 / 3
}

/// The lease as the renewal task last saw it.
#[derive(Default)]
struct Leadership {
    until: std::sync::Mutex<Option<Instant>>,
}

impl Leadership {
    fn held(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }
    fn set(&self, until: Option<Instant>) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// Acquires and renews the Lease every third of its duration, on its own task so that a
/// long pass never delays a renewal. A failed renewal keeps the lease until its hold
/// runs out (no flapping on one lost request); another holder ends it at once.
async fn keep_lease(
    leases: Api<Lease>,
    cfg: ControllerConfig,
    lease: Arc<Leadership>,
    progress: Arc<Progress>,
    notify: Arc<Notify>,
) {
    let dur = cfg.lease_duration.as_secs().max(3) as i32;
    let duration = Duration::from_secs(dur as u64);
    let renew_every = Duration::from_secs((dur / 3).max(1) as u64);
    loop {
        let started = Instant::now();
        let r = kubeapi::acquire_or_renew(
            &leases,
            &cfg.lease_name,
            &cfg.identity,
            dur,
            chrono::Utc::now(),
        )
        .await;
        match r {
            Ok(true) => lease.set(Some(started + lease_hold(duration))),
            Ok(false) => lease.set(None),
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
        let leader = lease.held();
        if leader != progress.leader.swap(leader, Ordering::Relaxed) {
            tracing::info!(identity = %cfg.identity, leader, "leadership changed");
            if leader {
                notify.notify_one();
            }
        }
        tokio::time::sleep_until(started + renew_every).await;
    }
}

/// Run until stopped: reflectors, the Lease (its own task), and passes while leader.
pub async fn run_with(
    client: Client,
    cfg: ControllerConfig,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let notify = Arc::new(Notify::new());
    let (stores, mut tasks) = start_reflectors(&client, notify.clone());
    let lease = Arc::new(Leadership::default());
    tasks.push(tokio::spawn(keep_lease(
        Api::namespaced(client.clone(), &cfg.namespace),
        cfg.clone(),
        lease.clone(),
        progress.clone(),
        notify.clone(),
    )));
    struct Abort(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for Abort {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _abort = Abort(tasks);

    let mut next_resync = Instant::now() + cfg.interval;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_secs(1);
    let mut dirty = true;
    let mut synced = false;
    let mut expect = Expectations::default();
    let sync = stores.clone();
    let mut sync_wait = std::pin::pin!(async move { sync.wait_until_ready().await });
    let leader = || lease.held();

    loop {
        let now = Instant::now();
        if now >= next_resync {
            dirty = true;
            next_resync = now + cfg.interval;
        }
        if retry_at.is_some_and(|t| now >= t) {
            retry_at = None;
            dirty = true;
        }
        if synced && dirty && retry_at.is_none() && leader() {
            dirty = false;
            progress.passes.fetch_add(1, Ordering::Relaxed);
            match pass(&client, &cfg, &stores, &mut expect, &leader).await {
                Ok(n) => {
                    progress.writes.fetch_add(n, Ordering::Relaxed);
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "pass failed; retrying");
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
        let mut wake = next_resync;
        if let Some(t) = retry_at {
            wake = wake.min(t);
        }
        tokio::select! {
            _ = &mut sync_wait, if !synced => {
                synced = true;
                dirty = true;
                progress.ready.store(true, Ordering::Relaxed);
                tracing::info!("reflectors synced");
            }
            _ = notify.notified() => {
                // Let a burst of changes land in the stores, then one pass.
                tokio::time::sleep(cfg.debounce).await;
                dirty = true;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}
