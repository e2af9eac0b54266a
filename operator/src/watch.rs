//! The agent's view of the cluster: kube-runtime reflectors over this node's pods (field
//! selector `spec.nodeName=<node>`) and all ScopeConfigs and ScopeSnapshots. The agent
//! cycle reads the stores; every change (an applied or deleted object, or a finished
//! (re)list) is signalled on a channel of capacity one so the cycle can run soon after it.
//! Watch errors are logged and retried with kube-runtime's default backoff; they never end
//! the agent.

use std::fmt::Debug;
use std::hash::Hash;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::crd::{ScopeConfig, ScopeSnapshot};

/// Read handles of the three reflectors.
#[derive(Clone)]
pub struct Stores {
    pub pods: Store<Pod>,
    pub configs: Store<ScopeConfig>,
    pub snapshots: Store<ScopeSnapshot>,
}

impl Stores {
    /// Resolves once every store has had its initial list (false if a reflector ended).
    pub async fn wait_until_ready(&self) -> bool {
        let (p, c, s) = futures::join!(
            self.pods.wait_until_ready(),
            self.configs.wait_until_ready(),
            self.snapshots.wait_until_ready()
        );
        p.is_ok() && c.is_ok() && s.is_ok()
    }
}

/// Running reflectors: their stores, the change signal, and the tasks driving them
/// (aborted on drop).
pub struct Watches {
    pub stores: Stores,
    pub changes: mpsc::Receiver<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Watcher configuration of this node's pods.
pub fn pods_config(node: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("spec.nodeName={node}"))
}

/// One reflector driven by a task: store, and a signal on `tx` for each change.
pub fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    tx: mpsc::Sender<()>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))
                | Ok(watcher::Event::InitDone) => {
                    // Full means a cycle is already due; one signal is enough.
                    let _ = tx.try_send(());
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(e) => {
                    tracing::warn!(resource = what, error = %e, "watch failed; retrying with backoff")
                }
            }
        }
        tracing::warn!(resource = what, "watch stream ended");
    });
    (reader, task)
}

/// Start the three reflectors of the agent on `node`.
pub fn start(client: Client, node: &str) -> Watches {
    let (tx, changes) = mpsc::channel(1);
    let (pods, t1) = spawn_reflector(
        Api::<Pod>::all(client.clone()),
        pods_config(node),
        "pods",
        tx.clone(),
    );
    let (configs, t2) = spawn_reflector(
        Api::<ScopeConfig>::all(client.clone()),
        watcher::Config::default(),
        "scopeconfigs",
        tx.clone(),
    );
    let (snapshots, t3) = spawn_reflector(
        Api::<ScopeSnapshot>::all(client),
        watcher::Config::default(),
        "scopesnapshots",
        tx,
    );
    Watches {
        stores: Stores {
            pods,
            configs,
            snapshots,
        },
        changes,
        tasks: vec![t1, t2, t3],
    }
}
