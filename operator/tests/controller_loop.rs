//! The controller's main loop end to end against a tower-test API server that keeps
//! objects in memory and serves lists and watches (held open until something changes, as
//! a real one does), so kube-runtime's reflectors run unmodified. Every request is logged;
//! the tests assert the exact writes (method, path, field manager, content type, body):
//! lease acquire → initial lists and watches → ConfigMap sync → ScopeConfig status with
//! the right conditions → report GC → nothing written on later passes. And a lease held
//! by someone else → no writes at all.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appscope_operator::controller::{self, ControllerConfig, Progress};
use appscope_operator::crd::{ScopeConfig, ScopeConfigSpec};
use appscope_operator::reconcile;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

// ------------------------------------------------------------------ fake API server

#[derive(Debug, Clone)]
struct Logged {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
    at: std::time::Instant,
}

impl Logged {
    fn is_write(&self) -> bool {
        self.method != "GET"
    }
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

struct Watch {
    plural: String,
    ns: Option<String>,
    name: Option<String>,
    since: u64,
    meta_only: bool,
    send: mock::SendResponse<Response<Body>>,
}

#[derive(Default)]
struct Fake {
    /// (plural, namespace, name) -> object
    objects: BTreeMap<(String, String, String), Value>,
    rv: u64,
    /// (rv, plural, type, object)
    events: Vec<(u64, String, &'static str, Value)>,
    watches: Vec<Watch>,
    log: Vec<Logged>,
    /// (method, path, status): answer the next such request with this error, once.
    fail: Vec<(&'static str, String, u16)>,
    /// Answer writes other than the lease's this late (reads and the lease are not held
    /// up: each slow write is answered from its own task).
    write_delay: Option<Duration>,
}

fn kind_of(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "pods" => ("v1", "Pod"),
        "configmaps" => ("v1", "ConfigMap"),
        "leases" => ("coordination.k8s.io/v1", "Lease"),
        "scopeconfigs" => ("appscope.dev/v1alpha1", "ScopeConfig"),
        "scopecrashreports" => ("appscope.dev/v1alpha1", "ScopeCrashReport"),
        other => panic!("fake API: unknown resource {other}"),
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn meta_only(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": obj["metadata"]})
}

/// A `metadata.name=X` field selector (the only kind the controller uses).
fn field_name(q: &BTreeMap<String, String>) -> Option<String> {
    q.get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(String::from)
}

fn decode(s: &str) -> String {
    s.replace("%3D", "=")
        .replace("%2C", ",")
        .replace("%2F", "/")
        .replace("%3A", ":")
}

impl Fake {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Store `obj` as the server would (rv, uid, creation time) and emit `ty`.
    fn put(&mut self, plural: &str, mut obj: Value, ty: &'static str) -> Value {
        let rv = self.next_rv();
        let (api, kind) = kind_of(plural);
        obj["apiVersion"] = json!(api);
        obj["kind"] = json!(kind);
        let m = &mut obj["metadata"];
        m["resourceVersion"] = json!(rv.to_string());
        if m["uid"].is_null() {
            m["uid"] = json!(format!("uid-{rv}"));
        }
        if m["creationTimestamp"].is_null() {
            m["creationTimestamp"] = json!("2026-11-01T00:00:00Z");
        }
        if plural.starts_with("scope") && m["generation"].is_null() {
            m["generation"] = json!(1);
        }
        let key = (
            plural.to_string(),
            m["namespace"].as_str().unwrap_or_default().to_string(),
            m["name"].as_str().unwrap().to_string(),
        );
        self.objects.insert(key, obj.clone());
        self.events.push((rv, plural.to_string(), ty, obj.clone()));
        self.flush();
        obj
    }

    fn remove(&mut self, key: &(String, String, String)) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.events
            .push((rv, key.0.clone(), "DELETED", obj.clone()));
        self.flush();
        Some(obj)
    }

    /// Answer the held watches that have events now.
    fn flush(&mut self) {
        let watches = std::mem::take(&mut self.watches);
        for w in watches {
            let lines: Vec<String> = self
                .events
                .iter()
                .filter(|(rv, plural, _, obj)| {
                    *rv > w.since
                        && *plural == w.plural
                        && w.ns
                            .as_ref()
                            .is_none_or(|ns| obj["metadata"]["namespace"] == json!(ns))
                        && w.name
                            .as_ref()
                            .is_none_or(|n| obj["metadata"]["name"] == json!(n))
                })
                .map(|(_, _, ty, obj)| {
                    let o = if w.meta_only {
                        meta_only(obj)
                    } else {
                        obj.clone()
                    };
                    json!({"type": ty, "object": o}).to_string() + "\n"
                })
                .collect();
            if lines.is_empty() {
                self.watches.push(w);
            } else {
                w.send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(lines.concat().into_bytes()))
                        .unwrap(),
                );
            }
        }
    }

    fn handle(&mut self, log: Logged, accept: String, send: mock::SendResponse<Response<Body>>) {
        self.log.push(log.clone());
        if let Some(i) = self
            .fail
            .iter()
            .position(|(m, p, _)| *m == log.method && *p == log.path)
        {
            let (_, _, code) = self.fail.remove(i);
            return send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(
                        serde_json::to_vec(&status(code, "InternalError")).unwrap(),
                    ))
                    .unwrap(),
            );
        }
        let reply = |send: mock::SendResponse<Response<Body>>, code: u16, v: Value| {
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&v).unwrap()))
                    .unwrap(),
            )
        };
        let segs: Vec<&str> = log.path.trim_start_matches('/').split('/').collect();
        let rest = match segs.as_slice() {
            ["api", "v1", rest @ ..] => rest,
            ["apis", _, _, rest @ ..] => rest,
            _ => return reply(send, 404, status(404, "NotFound")),
        };
        let (ns, plural, name, sub) = match rest {
            ["namespaces", ns, plural, tail @ ..] => (
                Some(ns.to_string()),
                plural.to_string(),
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            ),
            [plural] => (None, plural.to_string(), None, None),
            _ => return reply(send, 404, status(404, "NotFound")),
        };
        let meta = accept.contains("PartialObjectMetadata");
        let key = |name: &str| {
            (
                plural.clone(),
                ns.clone().unwrap_or_default(),
                name.to_string(),
            )
        };
        match (log.method.as_str(), name) {
            ("GET", None) if log.query.get("watch").is_some_and(|w| w == "true") => {
                let since = log
                    .query
                    .get("resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                self.watches.push(Watch {
                    plural: plural.clone(),
                    ns,
                    name: field_name(&log.query),
                    since,
                    meta_only: meta,
                    send,
                });
                self.flush();
            }
            ("GET", None) => {
                let want_name = field_name(&log.query);
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((p, n, name), _)| {
                        *p == plural
                            && ns.as_ref().is_none_or(|ns| ns == n)
                            && want_name.as_ref().is_none_or(|w| w == name)
                    })
                    .map(|(_, o)| if meta { meta_only(o) } else { o.clone() })
                    .collect();
                let (api, kind) = kind_of(&plural);
                let list = json!({
                    "apiVersion": if meta { "meta.k8s.io/v1" } else { api },
                    "kind": if meta { "PartialObjectMetadataList".to_string() } else { format!("{kind}List") },
                    "metadata": {"resourceVersion": self.rv.to_string()},
                    "items": items,
                });
                reply(send, 200, list)
            }
            ("GET", Some(name)) => match self.objects.get(&key(&name)) {
                Some(o) => reply(send, 200, o.clone()),
                None => reply(send, 404, status(404, "NotFound")),
            },
            ("POST", None) => {
                let mut obj = log.body.clone();
                let name = obj["metadata"]["name"].as_str().unwrap().to_string();
                if self.objects.contains_key(&key(&name)) {
                    return reply(send, 409, status(409, "AlreadyExists"));
                }
                obj["metadata"]["namespace"] = json!(ns.clone().unwrap_or_default());
                let o = self.put(&plural, obj, "ADDED");
                reply(send, 201, o)
            }
            ("PUT", Some(name)) => {
                let Some(cur) = self.objects.get(&key(&name)) else {
                    return reply(send, 404, status(404, "NotFound"));
                };
                let given = &log.body["metadata"]["resourceVersion"];
                if !given.is_null() && *given != cur["metadata"]["resourceVersion"] {
                    return reply(send, 409, status(409, "Conflict"));
                }
                let mut obj = log.body.clone();
                obj["metadata"]["uid"] = cur["metadata"]["uid"].clone();
                let o = self.put(&plural, obj, "MODIFIED");
                reply(send, 200, o)
            }
            ("PATCH", Some(name)) => {
                let existing = self.objects.get(&key(&name)).cloned();
                let mut obj = match (existing, sub.as_deref()) {
                    (Some(o), _) => o,
                    (None, Some("status")) => {
                        return reply(send, 404, status(404, "NotFound"));
                    }
                    (None, _) => json!({"metadata": {"name": name, "namespace": ns}}),
                };
                if sub.as_deref() == Some("status") {
                    // Status apply: the controller's fields replace ours, others stay.
                    if obj["status"].is_null() {
                        obj["status"] = json!({});
                    }
                    for (k, v) in log.body["status"].as_object().unwrap() {
                        obj["status"][k] = v.clone();
                    }
                } else {
                    for (k, v) in log.body["metadata"]["labels"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                    {
                        obj["metadata"]["labels"][k] = v;
                    }
                    obj["data"] = log.body["data"].clone();
                }
                let o = self.put(&plural, obj, "MODIFIED");
                reply(send, 200, o)
            }
            ("DELETE", Some(name)) => {
                let k = key(&name);
                let Some(cur) = self.objects.get(&k) else {
                    return reply(send, 404, status(404, "NotFound"));
                };
                let want_uid = &log.body["preconditions"]["uid"];
                if !want_uid.is_null() && *want_uid != cur["metadata"]["uid"] {
                    return reply(send, 409, status(409, "Conflict"));
                }
                let o = self.remove(&k).unwrap();
                reply(send, 200, o)
            }
            _ => reply(send, 405, status(405, "MethodNotAllowed")),
        }
    }
}

/// A client served by a shared in-memory [`Fake`].
fn serve(fake: Arc<Mutex<Fake>>) -> (Client, tokio::task::JoinHandle<()>) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut handle = pin!(handle);
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let method = parts.method.to_string();
            let path = parts.uri.path().to_string();
            let query: BTreeMap<String, String> = parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), decode(v))))
                .collect();
            let header = |h: &str| {
                parts
                    .headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let (content_type, accept) = (header("content-type"), header("accept"));
            let bytes = body.collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let log = Logged {
                method,
                path,
                query,
                content_type,
                body,
                at: std::time::Instant::now(),
            };
            let delay = fake.lock().unwrap().write_delay;
            match delay {
                Some(d) if log.is_write() && !log.path.contains("/leases") => {
                    let fake = fake.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        fake.lock().unwrap().handle(log, accept, send);
                    });
                }
                _ => fake.lock().unwrap().handle(log, accept, send),
            }
        }
    });
    (Client::new(svc, "default"), task)
}

// ------------------------------------------------------------------ fixtures

const NOW_MINUS_1H: i64 = 3600;

fn ago(secs: i64) -> String {
    reconcile::rfc3339(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

fn pod(ns: &str, name: &str, app: &str, scoped: bool) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                       "spec": {"nodeName": "node-a", "containers": [{"name": "main", "image": "x"}]}});
    if scoped {
        p["metadata"]["annotations"] = json!({"appscope.dev/injected": "true"});
    }
    p
}

fn scfg(ns: &str, name: &str, app: &str, env: &[(&str, &str)]) -> ScopeConfig {
    let mut sc = ScopeConfig::new(
        name,
        ScopeConfigSpec {
            selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                match_expressions: None,
            },
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        },
    );
    sc.metadata.namespace = Some(ns.into());
    sc.metadata.generation = Some(2);
    sc
}

fn report(ns: &str, name: &str, age_secs: i64, size: u64) -> Value {
    json!({"metadata": {"name": name, "namespace": ns},
           "spec": {"pod": "web-1", "podUID": "u", "container": "main", "node": "node-a",
                    "pid": 7, "signal": "SIGSEGV", "time": ago(age_secs), "topFrame": "f",
                    "path": format!("{ns}/web-1/main/{name}"),
                    "files": [{"name": "crash.json", "size": size, "sha256": "00"}]}})
}

fn cfg(identity: &str) -> ControllerConfig {
    ControllerConfig {
        namespace: "appscope-system".into(),
        identity: identity.into(),
        lease_name: "appscope-controller".into(),
        lease_duration: Duration::from_secs(3),
        default_config: "metric:\n  enable: true\n".into(),
        // Passes come from changes only in these tests (no periodic resync).
        interval: Duration::from_secs(3600),
        debounce: Duration::from_millis(50),
        retention: node_agent::store::Retention {
            max_reports: Some(2),
            max_bytes: Some(1000),
            max_age: Some(Duration::from_secs(30 * 86400)),
        },
    }
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn writes(fake: &Arc<Mutex<Fake>>) -> Vec<Logged> {
    fake.lock()
        .unwrap()
        .log
        .iter()
        .filter(|l| l.is_write() && !l.path.contains("/leases"))
        .cloned()
        .collect()
}

fn condition<'a>(status: &'a Value, ty: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} condition in {status}"))
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_loop_syncs_configmaps_statuses_and_retention_then_stays_quiet() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let up_to_date;
    {
        let mut f = fake.lock().unwrap();
        for (ns, name, app, scoped) in [
            ("shop", "web-1", "web", true),
            ("shop", "db-1", "db", false),
            ("other", "x", "web", false),
            ("mine", "m-1", "web", true),
            ("stale", "s-1", "web", true),
        ] {
            f.put("pods", pod(ns, name, app, scoped), "ADDED");
        }
        // The user's own ConfigMap `appscope` (no managed-by label), and an outdated one of ours.
        f.put(
            "configmaps",
            json!({"metadata": {"name": "appscope", "namespace": "mine"},
                   "data": {"scope.yml": "user: config\n"}}),
            "ADDED",
        );
        f.put(
            "configmaps",
            json!({"metadata": {"name": "appscope", "namespace": "stale",
                                "labels": {"app.kubernetes.io/managed-by": "appscope-operator"}},
                   "data": {"scope.yml": "old: config\n"}}),
            "ADDED",
        );
        let mut good = scfg("shop", "good", "web", &[("SCOPE_METRIC_VERBOSITY", "7")]);
        good.status = Some(appscope_operator::crd::ScopeConfigStatus {
            nodes: vec![appscope_operator::crd::NodeStatus {
                name: "node-a".into(),
                pods: 1,
                processes: appscope_operator::crd::ProcessCounts {
                    matched: 1,
                    applied: 1,
                    pending: 0,
                    failed: 0,
                },
                errors: vec![],
                updated: None,
            }],
            ..Default::default()
        });
        let mut current = scfg("shop", "uptodate", "nothing", &[]);
        let st = reconcile::aggregate_status(&current, 0, None, "2026-11-01T00:00:00Z");
        current.status = Some(st);
        up_to_date = current.clone();
        for sc in [
            good,
            scfg("shop", "badname", "web", &[("SCOPE_NOT_A_SETTING", "1")]),
            scfg(
                "shop",
                "badvalue",
                "web",
                &[("SCOPE_METRIC_VERBOSITY", "eleven")],
            ),
            scfg(
                "shop",
                "nomatch",
                "nothing",
                &[("SCOPE_METRIC_VERBOSITY", "4")],
            ),
            scfg("cfgonly", "lonely", "web", &[]),
            current,
        ] {
            f.put("scopeconfigs", serde_json::to_value(&sc).unwrap(), "ADDED");
        }
        for (ns, name, age, size) in [
            ("shop", "old-1", 40 * 86400, 10), // past the age limit
            ("shop", "new-1", NOW_MINUS_1H, 10),
            ("busy", "r1", 3 * 3600, 10), // count limit 2: r1 goes
            ("busy", "r2", 2 * 3600, 10),
            ("busy", "r3", 3600, 10),
            ("big", "b1", 2 * 3600, 800), // bytes limit 1000: b1 goes
            ("big", "b2", 3600, 800),
        ] {
            f.put("scopecrashreports", report(ns, name, age, size), "ADDED");
        }
        f.log.clear();
    }
    let (client, server) = serve(fake.clone());
    let progress = Arc::new(Progress::default());
    let ctl = tokio::spawn(controller::run_with(client, cfg("ctl-a"), progress.clone()));

    wait_for("the first pass's 11 writes", 20, || {
        writes(&fake).len() >= 11
    })
    .await;
    // Let the watch events of those writes come back and run their pass.
    let after_first = progress.passes.load(Ordering::Relaxed);
    wait_for("a pass after the writes", 10, || {
        progress.passes.load(Ordering::Relaxed) > after_first
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let log = fake.lock().unwrap().log.clone();
    // 1. The lease first: GET (absent), then POST holding it.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/appscope-system/leases";
    let lease_get = log
        .iter()
        .position(|l| l.method == "GET" && l.path == format!("{lease_path}/appscope-controller"))
        .expect("lease read");
    let lease_post = log
        .iter()
        .find(|l| l.method == "POST" && l.path.ends_with("/leases"))
        .expect("lease created");
    assert_eq!(lease_post.body["spec"]["holderIdentity"], "ctl-a");
    assert_eq!(lease_post.body["spec"]["leaseDurationSeconds"], 3);
    let first_write = log
        .iter()
        .position(|l| l.is_write() && !l.path.contains("/leases"))
        .unwrap();
    let lease_at = log
        .iter()
        .position(|l| std::ptr::eq(l, lease_post))
        .unwrap();
    assert_eq!(lease_post.path, lease_path);
    assert!(
        lease_get < lease_at,
        "the lease is read before it is created"
    );
    assert!(lease_at < first_write, "no write before the lease is held");

    // 2. Initial lists then watches of the four resources, all namespaces, before any write.
    for (path, extra) in [
        ("/api/v1/pods", None),
        ("/apis/appscope.dev/v1alpha1/scopeconfigs", None),
        ("/api/v1/configmaps", Some("metadata.name=appscope")),
        ("/apis/appscope.dev/v1alpha1/scopecrashreports", None),
    ] {
        let list = log
            .iter()
            .position(|l| l.method == "GET" && l.path == path && !l.query.contains_key("watch"))
            .unwrap_or_else(|| panic!("no list of {path}"));
        assert!(list < first_write, "{path} listed before the first write");
        let watch = log
            .iter()
            .find(|l| l.path == path && l.query.get("watch").is_some_and(|w| w == "true"))
            .unwrap_or_else(|| panic!("no watch of {path}"));
        assert!(
            watch.query.contains_key("resourceVersion"),
            "{path} watch resumes from the list"
        );
        if let Some(sel) = extra {
            assert_eq!(
                log[list].query.get("fieldSelector").map(String::as_str),
                Some(sel)
            );
            assert_eq!(
                watch.query.get("fieldSelector").map(String::as_str),
                Some(sel)
            );
        }
    }

    // 3. Exactly these writes, in this order, and nothing else.
    let w = writes(&fake);
    let lines: Vec<String> = w.iter().map(Logged::line).collect();
    assert_eq!(
        lines,
        [
            "POST /api/v1/namespaces/cfgonly/configmaps",
            "POST /api/v1/namespaces/shop/configmaps",
            "PATCH /api/v1/namespaces/stale/configmaps/appscope",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/cfgonly/scopeconfigs/lonely/status",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/badname/status",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/badvalue/status",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/good/status",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/nomatch/status",
            "DELETE /apis/appscope.dev/v1alpha1/namespaces/big/scopecrashreports/b1",
            "DELETE /apis/appscope.dev/v1alpha1/namespaces/busy/scopecrashreports/r1",
            "DELETE /apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports/old-1",
        ],
        "the user's ConfigMap in `mine`, the up-to-date ScopeConfig and the kept reports are not written"
    );
    // ConfigMaps: created with our label and the default config; the stale one applied.
    for c in &w[..2] {
        assert_eq!(c.body["metadata"]["name"], "appscope");
        assert_eq!(
            c.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "appscope-operator"
        );
        assert_eq!(
            c.body["data"],
            json!({"scope.yml": "metric:\n  enable: true\n"})
        );
    }
    assert_eq!(w[2].content_type, "application/apply-patch+yaml");
    assert_eq!(
        w[2].query.get("fieldManager").map(String::as_str),
        Some("appscope-controller")
    );
    assert_eq!(
        w[2].body["data"],
        json!({"scope.yml": "metric:\n  enable: true\n"})
    );
    // Statuses: server-side apply by the controller, never touching `nodes`.
    for s in &w[3..8] {
        assert_eq!(s.content_type, "application/apply-patch+yaml");
        assert_eq!(
            s.query.get("fieldManager").map(String::as_str),
            Some("appscope-controller")
        );
        assert_eq!(s.query.get("force").map(String::as_str), Some("true"));
        assert!(s.body["status"].get("nodes").is_none(), "{}", s.body);
        assert_eq!(s.body["status"]["observedGeneration"], 2);
    }
    let st = |i: usize| &w[i].body["status"];
    let expect = |i: usize, ready: &str, reason: &str, degraded: &str, matched: i64| {
        assert_eq!(condition(st(i), "Ready")["status"], ready, "{}", w[i].path);
        assert_eq!(condition(st(i), "Ready")["reason"], reason, "{}", w[i].path);
        assert_eq!(
            condition(st(i), "Degraded")["status"],
            degraded,
            "{}",
            w[i].path
        );
        assert_eq!(st(i)["matchedPods"], matched, "{}", w[i].path);
    };
    expect(3, "False", "NoMatchingPods", "True", 0);
    expect(4, "False", "UnknownSetting", "True", 1);
    assert!(
        condition(st(4), "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("SCOPE_NOT_A_SETTING is not a SCOPE_* setting")
    );
    expect(5, "False", "InvalidValue", "True", 1);
    expect(6, "True", "Applied", "False", 1);
    assert_eq!(
        st(6)["processes"],
        json!({"matched": 1, "applied": 1, "pending": 0, "failed": 0})
    );
    expect(7, "False", "NoMatchingPods", "True", 0);
    // Deletions name the object they decided on.
    for d in &w[8..] {
        assert!(
            d.body["preconditions"]["uid"]
                .as_str()
                .unwrap()
                .starts_with("uid-")
        );
    }

    // 4. The state the server holds now needs no write: later passes wrote nothing.
    {
        let f = fake.lock().unwrap();
        let good = &f.objects[&("scopeconfigs".into(), "shop".into(), "good".into())];
        assert_eq!(
            good["status"]["nodes"][0]["name"], "node-a",
            "agent's entry kept"
        );
        let kept = &f.objects[&("scopeconfigs".into(), "shop".into(), "uptodate".into())];
        assert_eq!(
            kept["status"],
            serde_json::to_value(up_to_date.status.as_ref().unwrap()).unwrap()
        );
        assert!(!f.objects.contains_key(&(
            "scopecrashreports".into(),
            "shop".into(),
            "old-1".into()
        )));
    }
    assert_eq!(
        writes(&fake).len(),
        11,
        "no write on later passes: {:?}",
        writes(&fake).iter().map(Logged::line).collect::<Vec<_>>()
    );
    assert_eq!(progress.writes.load(Ordering::Relaxed), 11);

    // 5. A change arrives by watch: a new report in `busy` puts it over the count, and a
    //    new scoped pod matches `nomatch`. One pass handles both.
    {
        let mut f = fake.lock().unwrap();
        f.put("scopecrashreports", report("busy", "r4", 60, 10), "ADDED");
        f.put("pods", pod("shop", "lonely-web", "nothing", true), "ADDED");
    }
    wait_for("the writes for the new objects", 10, || {
        writes(&fake).len() >= 14
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let w = writes(&fake);
    let lines: Vec<String> = w[11..].iter().map(Logged::line).collect();
    assert_eq!(
        lines,
        [
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/nomatch/status",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/uptodate/status",
            "DELETE /apis/appscope.dev/v1alpha1/namespaces/busy/scopecrashreports/r2",
        ]
    );
    assert_eq!(w[11].body["status"]["matchedPods"], 1);
    // `nomatch` now matches a pod that no agent reported yet: pending, not degraded.
    assert_eq!(
        condition(&w[11].body["status"], "Ready")["reason"],
        "Pending"
    );
    assert_eq!(
        condition(&w[11].body["status"], "Degraded")["status"],
        "False"
    );

    ctl.abort();
    server.abort();
}

/// The same cluster state as a small scene: one scoped pod, one ScopeConfig, one report
/// past its age.
fn small_scene(f: &mut Fake, lease_holder: &str, renewed_secs_ago: i64) {
    f.put(
        "leases",
        json!({"metadata": {"name": "appscope-controller", "namespace": "appscope-system"},
               "spec": {"holderIdentity": lease_holder, "leaseDurationSeconds": 15,
                        "acquireTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        "renewTime": (chrono::Utc::now() - chrono::Duration::seconds(renewed_secs_ago))
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        "leaseTransitions": 4}}),
        "ADDED",
    );
    f.put("pods", pod("shop", "web-1", "web", true), "ADDED");
    let sc = scfg("shop", "good", "web", &[("SCOPE_METRIC_VERBOSITY", "7")]);
    f.put("scopeconfigs", serde_json::to_value(&sc).unwrap(), "ADDED");
    f.put(
        "scopecrashreports",
        report("shop", "old-1", 40 * 86400, 10),
        "ADDED",
    );
    f.log.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_another_replica_means_no_writes() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    small_scene(&mut fake.lock().unwrap(), "ctl-other", 0);
    let (client, server) = serve(fake.clone());
    let progress = Arc::new(Progress::default());
    let ctl = tokio::spawn(controller::run_with(client, cfg("ctl-b"), progress.clone()));
    wait_for("readiness (reflectors synced)", 10, || {
        progress.ready.load(Ordering::Relaxed)
    })
    .await;
    // The lease is re-read every second (duration 3 s / 3): wait for three reads.
    let lease_reads = |fake: &Arc<Mutex<Fake>>| {
        fake.lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.method == "GET" && l.path.ends_with("/leases/appscope-controller"))
            .count()
    };
    wait_for("three lease reads", 10, || lease_reads(&fake) >= 3).await;
    let log = fake.lock().unwrap().log.clone();
    let all_writes: Vec<String> = log
        .iter()
        .filter(|l| l.is_write())
        .map(Logged::line)
        .collect();
    assert!(all_writes.is_empty(), "a follower wrote: {all_writes:?}");
    assert!(!progress.leader.load(Ordering::Relaxed));
    assert_eq!(progress.passes.load(Ordering::Relaxed), 0);
    // It still keeps its caches warm: lists and watches ran.
    assert!(
        log.iter()
            .any(|l| l.path == "/apis/appscope.dev/v1alpha1/scopeconfigs"
                && l.query.get("watch").is_some_and(|w| w == "true"))
    );
    ctl.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_then_the_pass_runs() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    small_scene(&mut fake.lock().unwrap(), "ctl-gone", 60);
    let (client, server) = serve(fake.clone());
    let progress = Arc::new(Progress::default());
    let ctl = tokio::spawn(controller::run_with(client, cfg("ctl-c"), progress.clone()));
    wait_for("the pass's writes", 10, || writes(&fake).len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = fake.lock().unwrap().log.clone();
    let take = log
        .iter()
        .position(|l| l.method == "PUT" && l.path.ends_with("/leases/appscope-controller"))
        .expect("lease taken over with an update");
    assert_eq!(log[take].body["spec"]["holderIdentity"], "ctl-c");
    assert_eq!(log[take].body["spec"]["leaseTransitions"], 5);
    // The update carries the resourceVersion it read (optimistic concurrency).
    assert!(log[take].body["metadata"]["resourceVersion"].is_string());
    let lines: Vec<String> = writes(&fake).iter().map(Logged::line).collect();
    assert_eq!(
        lines,
        [
            "POST /api/v1/namespaces/shop/configmaps",
            "PATCH /apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/good/status",
            "DELETE /apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports/old-1",
        ]
    );
    let first_write = log
        .iter()
        .position(|l| l.is_write() && !l.path.contains("/leases"))
        .unwrap();
    assert!(take < first_write);
    assert!(progress.leader.load(Ordering::Relaxed));
    ctl.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_retried_after_a_backoff() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let status_path = "/apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/good/status";
    {
        let mut f = fake.lock().unwrap();
        small_scene(&mut f, "ctl-gone", 60);
        f.fail.push(("PATCH", status_path.to_string(), 500));
    }
    let (client, server) = serve(fake.clone());
    let progress = Arc::new(Progress::default());
    let ctl = tokio::spawn(controller::run_with(client, cfg("ctl-d"), progress.clone()));
    wait_for("the retried status write", 10, || {
        writes(&fake)
            .iter()
            .filter(|l| l.path == status_path)
            .count()
            >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let w = writes(&fake);
    let lines: Vec<String> = w.iter().map(Logged::line).collect();
    assert_eq!(
        lines,
        [
            "POST /api/v1/namespaces/shop/configmaps",
            &format!("PATCH {status_path}"),
            // the other writes of the pass are still made
            "DELETE /apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports/old-1",
            &format!("PATCH {status_path}"),
        ]
    );
    let waited = w[3].at.duration_since(w[1].at);
    assert!(
        waited >= Duration::from_millis(900),
        "retried after {waited:?}, before the 1 s backoff"
    );
    ctl.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_during_a_long_pass_and_losing_it_stops_the_writes() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    {
        let mut f = fake.lock().unwrap();
        small_scene(&mut f, "ctl-gone", 60);
        // Seven more namespaces with a scoped pod: eight ConfigMaps to create, each
        // write answered after 400 ms, so the pass lasts longer than the lease's hold.
        for i in 0..7 {
            f.put("pods", pod(&format!("ns-{i}"), "p", "x", true), "ADDED");
        }
        f.write_delay = Some(Duration::from_millis(400));
        f.log.clear();
    }
    let (client, server) = serve(fake.clone());
    let progress = Arc::new(Progress::default());
    let ctl = tokio::spawn(controller::run_with(client, cfg("ctl-e"), progress.clone()));
    let lease_puts = |fake: &Arc<Mutex<Fake>>| {
        fake.lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.method == "PUT" && l.path.ends_with("/leases/appscope-controller"))
            .map(|l| l.at)
            .collect::<Vec<_>>()
    };
    // The lease is renewed (every 1 s) while the pass's writes are under way.
    wait_for("four writes", 15, || writes(&fake).len() >= 4).await;
    let first_write = writes(&fake)[0].at;
    assert!(
        lease_puts(&fake)
            .iter()
            .filter(|t| **t > first_write)
            .count()
            >= 1,
        "no renewal while the pass ran"
    );
    // Another replica takes the lease over (as after a partition).
    let taken = std::time::Instant::now();
    {
        let mut f = fake.lock().unwrap();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        f.put(
            "leases",
            json!({"metadata": {"name": "appscope-controller", "namespace": "appscope-system"},
                   "spec": {"holderIdentity": "ctl-other", "leaseDurationSeconds": 15,
                            "acquireTime": now, "renewTime": now, "leaseTransitions": 6}}),
            "MODIFIED",
        );
    }
    wait_for("leadership lost", 5, || {
        !progress.leader.load(Ordering::Relaxed)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = fake.lock().unwrap().log.clone();
    let seen = log
        .iter()
        .find(|l| {
            l.at > taken && l.method == "GET" && l.path.ends_with("/leases/appscope-controller")
        })
        .expect("lease read after the takeover")
        .at;
    let late: Vec<String> = writes(&fake)
        .iter()
        .filter(|l| l.at > seen + Duration::from_millis(100))
        .map(Logged::line)
        .collect();
    assert!(
        late.is_empty(),
        "written after the lease was lost: {late:?}"
    );
    let n = writes(&fake).len();
    assert!(
        n < 10,
        "the pass ran to its end ({n} writes) without the lease"
    );
    assert!(lease_puts(&fake).iter().all(|t| *t < seen));
    ctl.abort();
    server.abort();
}
