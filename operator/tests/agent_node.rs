//! Node-level test of `appscope-operator agent`: the real binary against a local HTTP
//! API fixture (serving the pods and CRs defined here, recording writes), a faked kubelet
//! root, and real processes scoped with libscope.so under `unshare --pid`.
//!
//! The fixture serves lists and streaming watches (`watch=true&resourceVersion=N`, with
//! the events after N), as the agent's reflectors need them.
//!
//! Checks: `/readyz` waits for the initial sync of all watches; a crash ends up in the
//! store with report.json, a ScopeCrashReport POST and an Event; a ScopeConfig leads to a
//! command file the process applies, and a status entry written by SSA with the agent's
//! field manager; a ScopeSnapshot of the pod is taken into the store and its status
//! patched Complete with node, reportPath and files (Failed with a message for a pid that
//! does not exist), once, and the library snapshot bundle it asked for never becomes a
//! ScopeCrashReport (the only one is the real SIGSEGV); deleting the ScopeConfig reverts it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const UID: &str = "1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    uri: String,
    body: Value,
}

/// One watch event of the fixture: resource version, resource (plural), event JSON.
type WatchEvent = (u64, &'static str, Value);

#[derive(Clone)]
struct Fixture {
    configs: Arc<Mutex<Vec<Value>>>,
    snapshots: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<Recorded>>>,
    rv: Arc<AtomicU64>,
    history: Arc<Mutex<Vec<WatchEvent>>>,
    events: tokio::sync::broadcast::Sender<WatchEvent>,
    /// While set, the ScopeSnapshot list is not answered (initial sync pending).
    hold_snapshot_list: Arc<AtomicBool>,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture {
            configs: Default::default(),
            snapshots: Default::default(),
            log: Default::default(),
            rv: Arc::new(AtomicU64::new(10)),
            history: Default::default(),
            events: tokio::sync::broadcast::channel(64).0,
            hold_snapshot_list: Default::default(),
        }
    }
}

impl Fixture {
    /// Give `obj` a new resourceVersion and publish a watch event of it.
    fn publish(&self, resource: &'static str, type_: &str, obj: &mut Value) {
        let rv = self.rv.fetch_add(1, Ordering::SeqCst) + 1;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let ev = (rv, resource, json!({"type": type_, "object": obj.clone()}));
        self.history.lock().unwrap().push(ev.clone());
        let _ = self.events.send(ev);
    }

    fn add(&self, resource: &'static str, mut obj: Value) {
        self.publish(resource, "ADDED", &mut obj);
        self.objects(resource).lock().unwrap().push(obj);
    }

    fn delete(&self, resource: &'static str, name: &str) {
        let mut objs = self.objects(resource).lock().unwrap();
        if let Some(i) = objs.iter().position(|o| o["metadata"]["name"] == name) {
            let mut obj = objs.remove(i);
            self.publish(resource, "DELETED", &mut obj);
        }
    }

    fn objects(&self, resource: &str) -> &Arc<Mutex<Vec<Value>>> {
        if resource == "scopeconfigs" {
            &self.configs
        } else {
            &self.snapshots
        }
    }

    fn status_patches(&self, resource: &str, name: &str) -> Vec<Recorded> {
        let path = format!("/{resource}/{name}/status");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "PATCH" && r.uri.split('?').next().unwrap().ends_with(&path))
            .cloned()
            .collect()
    }
}

fn list(kind: &str, api_version: &str, rv: u64, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn resource_of(path: &str) -> Option<&'static str> {
    match path {
        "/api/v1/pods" => Some("pods"),
        "/apis/appscope.dev/v1alpha1/scopeconfigs" => Some("scopeconfigs"),
        "/apis/appscope.dev/v1alpha1/scopesnapshots" => Some("scopesnapshots"),
        _ => None,
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A streaming watch of `resource`: the events after `since`, then live ones, one JSON
/// object a line, open until the fixture goes away.
fn watch_response(f: &Fixture, resource: &'static str, since: u64) -> Response {
    let rx = f.events.subscribe();
    let backlog: Vec<Value> = f
        .history
        .lock()
        .unwrap()
        .iter()
        .filter(|(rv, r, _)| *rv > since && *r == resource)
        .map(|(_, _, e)| e.clone())
        .collect();
    let last = f.rv.load(Ordering::SeqCst).max(since);
    let live = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok((rv, r, ev)) if r == resource && rv > last => return Some((ev, rx)),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    let body = futures::stream::iter(backlog)
        .chain(live)
        .map(|ev| Ok::<_, std::io::Error>(Bytes::from(format!("{ev}\n"))));
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": UID, "labels": {"app": "web"}, "resourceVersion": "3",
                     "annotations": {"appscope.dev/injected": "v0.1.0 app"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "registry.example/web:1.2"}]},
        "status": {"phase": "Running"}})
}

fn scope_config() -> Value {
    json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
        "metadata": {"name": "web-debug", "namespace": "shop", "uid": "u-1", "generation": 1, "resourceVersion": "5"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "env": {"SCOPE_METRIC_VERBOSITY": "7"}, "priority": 0}})
}

async fn handle(
    State(f): State<Fixture>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let body_v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.log.lock().unwrap().push(Recorded {
        method: method.to_string(),
        uri: uri.to_string(),
        body: body_v.clone(),
    });
    let path = uri.path();
    let reply = |code: u16, v: Value| {
        (
            StatusCode::from_u16(code).unwrap(),
            [("content-type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    let query = uri.query().unwrap_or("");
    if method == Method::GET
        && let Some(resource) = resource_of(path)
    {
        if query_param(query, "watch") == Some("true") {
            let since = query_param(query, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return watch_response(&f, resource, since);
        }
        if resource == "scopesnapshots" {
            while f.hold_snapshot_list.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The version read before the items: a watch from it misses nothing.
        let rv = f.rv.load(Ordering::SeqCst);
        return match resource {
            "pods" => reply(200, list("Pod", "v1", rv, vec![pod()])),
            "scopeconfigs" => reply(
                200,
                list(
                    "ScopeConfig",
                    "appscope.dev/v1alpha1",
                    rv,
                    f.configs.lock().unwrap().clone(),
                ),
            ),
            _ => reply(
                200,
                list(
                    "ScopeSnapshot",
                    "appscope.dev/v1alpha1",
                    rv,
                    f.snapshots.lock().unwrap().clone(),
                ),
            ),
        };
    }
    let status_target = path
        .strip_prefix("/apis/appscope.dev/v1alpha1/namespaces/shop/")
        .and_then(|p| p.strip_suffix("/status"))
        .and_then(|p| p.split_once('/'))
        .and_then(|(res, name)| {
            ["scopeconfigs", "scopesnapshots"]
                .into_iter()
                .find(|r| *r == res)
                .map(|r| (r, name.to_string()))
        });
    match (method.as_str(), path) {
        ("PATCH", _) if status_target.is_some() => {
            // Keep the applied status, as the API server would (SSA of the node's entry,
            // or of the snapshot's status), and tell the watchers.
            let (resource, name) = status_target.unwrap();
            let mut objs = f.objects(resource).lock().unwrap();
            match objs
                .iter_mut()
                .find(|c| c["metadata"]["name"] == name.as_str())
            {
                Some(c) => {
                    c["status"] = body_v["status"].clone();
                    f.publish(resource, "MODIFIED", c);
                    reply(200, c.clone())
                }
                None => reply(
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "gone"}),
                ),
            }
        }
        ("POST", "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports") => {
            reply(201, body_v)
        }
        ("POST", "/api/v1/namespaces/shop/events") => reply(201, body_v),
        _ => reply(
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not in fixture"}),
        ),
    }
}

/// Kills the child (and its process group) on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        unsafe_free_kill(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unsafe_free_kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Both have crash capture on (so a ScopeSnapshot of the sleeper also gets the library's
/// own snapshot bundle); `crasher` keeps its status file apart.
fn scoped(lib: &Path, run: &Path, script: &str, crasher: bool) -> Proc {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("unshare");
    // Only python (pid 1 in the new namespace) is scoped, not unshare itself.
    c.args(["--pid", "--fork", "--mount-proc", "/usr/bin/env"])
        .arg(format!("LD_PRELOAD={}", lib.display()))
        .args(["/usr/bin/python3", "-c", script])
        .env("SCOPE_SUMMARY_PERIOD", "1")
        .env("SCOPE_CMD_DIR", run.join("cmd"))
        // Both test processes are pid 1 in their own namespaces; in a pod they would
        // share one. Keep the crasher's status file apart so it cannot replace the
        // sleeper's `1.json`.
        .env(
            "SCOPE_STATUS_DIR",
            if crasher {
                run.join("crasher-status")
            } else {
                run.join("status")
            },
        )
        .env("SCOPE_SNAPSHOT_DIR", run.join("crash"))
        .env("SCOPE_SNAPSHOT_BACKTRACE", "true")
        .env("SCOPE_EVENT_DEST", "file:///dev/null")
        .env("SCOPE_METRIC_DEST", "file:///dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    Proc(c.spawn().expect("unshare"))
}

fn verbosity_in_effect(status_dir: &Path) -> Option<i64> {
    let st: Value = serde_json::from_slice(&std::fs::read(status_dir.join("1.json")).ok()?).ok()?;
    let v = &st["config"]["current"]["metric"]["format"]["verbosity"];
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn agent_collects_crashes_and_drives_config() {
    if !nix_root() {
        eprintln!("skipping: needs root for unshare --pid");
        return;
    }
    let lib = testkit::libscope_path();
    let agent_bin = PathBuf::from(env!("CARGO_BIN_EXE_appscope-operator"));
    let tmp = tempfile::tempdir().unwrap();
    let kubelet = tmp.path().join("kubelet");
    let run = kubelet
        .join("pods")
        .join(UID)
        .join("volumes/kubernetes.io~empty-dir/appscope/run/app");
    for d in ["cmd", "status", "crash"] {
        std::fs::create_dir_all(run.join(d)).unwrap();
    }
    let store = tmp.path().join("store");

    // API fixture on loopback.
    let fixture = Fixture::default();
    fixture.configs.lock().unwrap().push(scope_config());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(fixture.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fx\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: fx\n  context:\n    cluster: fx\n    user: u\n    namespace: default\ncurrent-context: fx\n"
        ),
    )
    .unwrap();

    // A scoped long-running process in the pod's container (pid 1 in its namespace).
    let _sleeper = scoped(&lib, &run, "import time\ntime.sleep(120)", false);
    wait_for("the sleeper's status file", Duration::from_secs(20), || {
        run.join("status/1.json").exists().then_some(())
    });
    assert_eq!(
        verbosity_in_effect(&run.join("status")),
        Some(4),
        "baseline verbosity"
    );

    let port = free_port();
    let agent_cmd = || {
        let mut agent_cmd = Command::new(&agent_bin);
        agent_cmd
            .args([
                "agent",
                "--node-name",
                "node-1",
                "--interval",
                "1s",
                "--summary-period",
                "1s",
            ])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--kubelet-root")
            .arg(&kubelet)
            .arg("--store")
            .arg(&store)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        agent_cmd
    };
    // 0. Not ready before every watch had its initial list.
    fixture.hold_snapshot_list.store(true, Ordering::SeqCst);
    let agent = Proc(agent_cmd().spawn().unwrap());
    let status_line = |path: &str| {
        http_get(port, path)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    wait_for("the agent's HTTP server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        status_line("/readyz").contains(" 503 "),
        "ready before the ScopeSnapshot list: {}",
        status_line("/readyz")
    );
    fixture.hold_snapshot_list.store(false, Ordering::SeqCst);
    wait_for("/readyz 200", Duration::from_secs(10), || {
        status_line("/readyz").contains(" 200 ").then_some(())
    });

    // 1. The ScopeConfig reaches the process through a command file.
    wait_for("verbosity 7 in effect", Duration::from_secs(20), || {
        (verbosity_in_effect(&run.join("status")) == Some(7)).then_some(())
    });
    let applied = wait_for(
        "a status entry with applied=1",
        Duration::from_secs(15),
        || {
            fixture
                .log
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|r| {
                    r.method == "PATCH"
                        && r.uri.contains("/scopeconfigs/web-debug/status")
                        && r.body["status"]["nodes"][0]["processes"]["applied"] == 1
                })
                .cloned()
        },
    );
    assert!(
        applied.uri.contains("fieldManager=appscope-agent-node-1"),
        "{}",
        applied.uri
    );
    assert_eq!(applied.body["status"]["nodes"][0]["name"], "node-1");
    assert_eq!(applied.body["status"]["nodes"][0]["pods"], 1);
    {
        let log = fixture.log.lock().unwrap();
        let pods_get = log
            .iter()
            .find(|r| r.uri.starts_with("/api/v1/pods"))
            .unwrap();
        assert!(
            pods_get
                .uri
                .contains("fieldSelector=spec.nodeName%3Dnode-1"),
            "{}",
            pods_get.uri
        );
        // Reflectors: list, then watch from the list's resourceVersion.
        for (res, selector) in [
            ("/api/v1/pods", Some("fieldSelector=spec.nodeName%3Dnode-1")),
            ("/apis/appscope.dev/v1alpha1/scopeconfigs", None),
            ("/apis/appscope.dev/v1alpha1/scopesnapshots", None),
        ] {
            let w = log
                .iter()
                .find(|r| r.uri.split('?').next() == Some(res) && r.uri.contains("watch=true"))
                .unwrap_or_else(|| panic!("no watch of {res}"));
            assert!(w.uri.contains("resourceVersion="), "{}", w.uri);
            if let Some(sel) = selector {
                assert!(w.uri.contains(sel), "{}", w.uri);
            }
        }
        assert!(
            !log.iter()
                .any(|r| r.uri.starts_with("/api/v1/namespaces/") && r.method == "GET"),
            "no per-namespace polling"
        );
    }
    // The agent persisted what it set in the process.
    let state_file = store.join(".agent/node-1.json");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let entry = &state["processes"][0];
    assert_eq!(entry["podUid"], UID, "{state}");
    assert_eq!(entry["container"], "app");
    assert_eq!(entry["pid"], 1);
    assert!(!entry["started"].as_str().unwrap().is_empty());
    assert!(
        entry["memory"]["managed"]
            .as_array()
            .unwrap()
            .contains(&json!("SCOPE_METRIC_VERBOSITY")),
        "{state}"
    );
    // No-op cycles do not write the status again.
    let patches = |f: &Fixture| {
        f.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count()
    };
    let before = patches(&fixture);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        patches(&fixture),
        before,
        "status written again though nothing changed"
    );

    // 1b. A ScopeSnapshot of the pod: taken with the local snapshot code into the store,
    // status patched Complete; one for a pid that does not exist fails with a message.
    let snapshot = |name: &str, pid: Option<i64>| {
        let mut spec = json!({"pod": "web-1", "container": "app"});
        if let Some(pid) = pid {
            spec["pid"] = json!(pid);
        }
        json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeSnapshot",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
            "spec": spec})
    };
    fixture.add("scopesnapshots", snapshot("snap-1", None));
    fixture.add("scopesnapshots", snapshot("snap-missing", Some(4242)));
    let done = wait_for("snap-1 status", Duration::from_secs(30), || {
        fixture
            .status_patches("scopesnapshots", "snap-1")
            .into_iter()
            .next()
    });
    assert!(
        done.uri.contains("fieldManager=appscope-agent-node-1"),
        "{}",
        done.uri
    );
    let st = &done.body["status"];
    assert_eq!(st["phase"], "Complete", "{st}");
    assert_eq!(st["node"], "node-1");
    let rel = st["reportPath"].as_str().unwrap();
    assert_eq!(rel, "shop/web-1/app/snapshot-snap-1");
    let files = st["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{st}");
    for f in files {
        let p = store.join(rel).join(f["name"].as_str().unwrap());
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            data.len() as u64,
            f["size"].as_u64().unwrap(),
            "{}",
            p.display()
        );
        assert_eq!(f["sha256"].as_str().unwrap().len(), 64);
    }
    // The library's own snapshot bundle of the sleeper: moved into the snapshot's
    // `libscope/`, or (arrived after the agent stopped waiting) left in the pod's crash
    // dir. Either way it never becomes a crash report (checked below).
    let snapshot_json_in = |d: &Path| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("snapshot_") && n.ends_with(".json")
            })
    };
    wait_for(
        "the library's snapshot bundle",
        Duration::from_secs(20),
        || {
            (snapshot_json_in(&store.join(rel).join("libscope"))
                || snapshot_json_in(&run.join("crash/1")))
            .then_some(())
        },
    );
    let failed = wait_for("snap-missing status", Duration::from_secs(15), || {
        fixture
            .status_patches("scopesnapshots", "snap-missing")
            .into_iter()
            .next()
    });
    let st = &failed.body["status"];
    assert_eq!(st["phase"], "Failed", "{st}");
    assert_eq!(st["node"], "node-1");
    assert!(st["message"].as_str().unwrap().contains("4242"), "{st}");
    assert!(st.get("reportPath").is_none(), "{st}");
    // Each ran once, though the agent's own status writes came back through the watch.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fixture.status_patches("scopesnapshots", "snap-1").len(), 1);
    assert_eq!(
        fixture
            .status_patches("scopesnapshots", "snap-missing")
            .len(),
        1
    );

    // 2. A crash in the container: stored, reported, evented.
    let crasher = scoped(&lib, &run, "import ctypes\nctypes.string_at(0)", true);
    let cr = wait_for("ScopeCrashReport POST", Duration::from_secs(30), || {
        fixture
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|r| {
                r.method == "POST"
                    && r.uri
                        .split('?')
                        .next()
                        .unwrap()
                        .ends_with("/scopecrashreports")
            })
            .cloned()
    });
    drop(crasher);
    let spec = &cr.body["spec"];
    assert_eq!(spec["pod"], "web-1");
    assert_eq!(spec["podUID"], UID);
    assert_eq!(spec["container"], "app");
    assert_eq!(spec["node"], "node-1");
    assert_eq!(spec["image"], "registry.example/web:1.2");
    assert_eq!(spec["signal"], "SIGSEGV");
    assert_eq!(spec["pid"], 1);
    assert_eq!(cr.body["metadata"]["namespace"], "shop");
    let rel = spec["path"].as_str().unwrap();
    assert!(rel.starts_with("shop/web-1/app/"), "{rel}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(store.join(rel).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["pod"], "web-1");
    assert_eq!(report["signalName"], "SIGSEGV");
    assert!(!spec["files"].as_array().unwrap().is_empty());
    for f in spec["files"].as_array().unwrap() {
        let p = store.join(rel).join(f["name"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            f["size"].as_u64().unwrap(),
            "{}",
            p.display()
        );
    }
    wait_for("the crash source removed", Duration::from_secs(10), || {
        std::fs::read_dir(run.join("crash"))
            .unwrap()
            .flatten()
            .all(|e| {
                std::fs::read_dir(e.path())
                    .map(|d| {
                        d.flatten().all(|f| {
                            // Only files of a live snapshot bundle may stay.
                            let n = f.file_name().to_string_lossy().to_string();
                            let ts = n.split_once('_').map(|(_, t)| t.trim_end_matches(".json"));
                            ts.is_some_and(|ts| {
                                e.path().join(format!("snapshot_{ts}.json")).exists()
                            })
                        })
                    })
                    .unwrap_or(true)
            })
            .then_some(())
    });
    let ev = wait_for("crash Event", Duration::from_secs(10), || {
        fixture
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|r| {
                r.method == "POST"
                    && r.uri.split('?').next() == Some("/api/v1/namespaces/shop/events")
            })
            .cloned()
    });
    assert_eq!(ev.body["reason"], "ScopedProcessCrashed");
    assert!(ev.body["message"].as_str().unwrap().contains("SIGSEGV"));
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("appscope_crashes_total{namespace=\"shop\"} 1"),
        "{metrics}"
    );
    let pods = http_get(port, "/v1/pods");
    assert!(
        pods.contains("\"pod\":\"web-1\"") && pods.contains("\"config_state\":\"Applied\""),
        "{pods}"
    );

    let cr_posts = || -> Vec<String> {
        fixture
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.method == "POST"
                    && r.uri
                        .split('?')
                        .next()
                        .unwrap()
                        .ends_with("/scopecrashreports")
            })
            .map(|r| {
                r.body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(cr_posts().len(), 1, "one crash, one report");

    // The agent remembers the report it created as soon as the API accepted it.
    let st: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        st["reportedCrashReports"],
        serde_json::json!([cr.body["metadata"]["name"]])
    );

    // 3. The agent restarts, and the ScopeConfig is deleted while it is down: the new
    // agent knows from its state file what the old one set, and reverts it.
    drop(agent);
    fixture.delete("scopeconfigs", "web-debug");
    let _agent = Proc(agent_cmd().spawn().unwrap());
    wait_for("verbosity back to 4", Duration::from_secs(20), || {
        (verbosity_in_effect(&run.join("status")) == Some(4)).then_some(())
    });
    wait_for("the state file emptied", Duration::from_secs(10), || {
        let st: Value = serde_json::from_slice(&std::fs::read(&state_file).ok()?).ok()?;
        let e = &st["processes"][0];
        (st["processes"].as_array()?.is_empty()
            || e["memory"]["managed"]
                .as_array()
                .is_some_and(|m| m.is_empty()))
        .then_some(())
    });
    // The restarted agent knows from its state file which reports it created: it does
    // not send them again (one request per stored report on every restart otherwise).
    assert_eq!(cr_posts().len(), 1, "{:?}", cr_posts());
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
