//! The operator's API calls against a tower-test mocked API server (kube-rs style):
//! each test scripts the server and asserts the exact requests.

use appscope_operator::crd::*;
use appscope_operator::kubeapi::{self, Created, LeaseAction};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use serde_json::{Value, json};

mod mockapi;
use mockapi::*;

fn scfg_json(status: Value) -> Value {
    json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
           "metadata": {"name": "web", "namespace": "shop", "generation": 2},
           "spec": {"selector": {}, "env": {}, "priority": 0}, "status": status})
}

#[tokio::test]
async fn node_status_is_server_side_applied_with_the_agents_field_manager() {
    let (client, task) = scripted(vec![
        exp(
            "PATCH",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/web/status",
            200,
            scfg_json(json!({})),
        )
        .query("fieldManager", "appscope-agent-node-1")
        .query("force", "true")
        .ctype("application/apply-patch+yaml")
        .body(|b| {
            assert_eq!(b["apiVersion"], "appscope.dev/v1alpha1");
            assert_eq!(b["kind"], "ScopeConfig");
            assert_eq!(
                b["status"]["nodes"],
                json!([{"name": "node-1", "pods": 1,
                    "processes": {"matched": 2, "applied": 1, "pending": 1, "failed": 0}}])
            );
            assert!(b.get("spec").is_none(), "only the status entry is applied");
        }),
    ]);
    let api: Api<ScopeConfig> = Api::namespaced(client, "shop");
    let entry = NodeStatus {
        name: "node-1".into(),
        pods: 1,
        processes: ProcessCounts {
            matched: 2,
            applied: 1,
            pending: 1,
            failed: 0,
        },
        errors: vec![],
        updated: None,
    };
    kubeapi::apply_node_status(&api, "web", &entry)
        .await
        .unwrap();
    done(task).await;
}

#[tokio::test]
async fn controller_status_apply_leaves_nodes_alone() {
    let (client, task) = scripted(vec![
        exp(
            "PATCH",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/web/status",
            200,
            scfg_json(json!({})),
        )
        .query("fieldManager", "appscope-controller")
        .query("force", "true")
        .ctype("application/apply-patch+yaml")
        .body(|b| {
            assert_eq!(b["status"]["observedGeneration"], 2);
            assert_eq!(b["status"]["matchedPods"], 3);
            assert_eq!(b["status"]["conditions"][0]["type"], "Ready");
            assert!(
                b["status"].get("nodes").is_none(),
                "nodes belong to the agents"
            );
        }),
    ]);
    let api: Api<ScopeConfig> = Api::namespaced(client, "shop");
    let st = ScopeConfigStatus {
        observed_generation: Some(2),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Applied".into(),
            message: String::new(),
            observed_generation: Some(2),
            last_transition_time: Some("2026-11-26T08:00:00Z".into()),
        }],
        matched_pods: Some(3),
        processes: Some(ProcessCounts::default()),
        nodes: vec![NodeStatus {
            name: "n1".into(),
            ..Default::default()
        }],
    };
    kubeapi::apply_config_status(&api, "web", &st)
        .await
        .unwrap();
    done(task).await;
}

fn report() -> ScopeCrashReport {
    let mut r = ScopeCrashReport::new(
        "web-7d9f-20261126t080000z-42-sigsegv",
        ScopeCrashReportSpec {
            pod: "web-7d9f".into(),
            pod_uid: "1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b".into(),
            container: "app".into(),
            node: "node-1".into(),
            image: "nginx:1.27".into(),
            pid: 42,
            signal: "SIGSEGV".into(),
            time: "2026-11-26T08:00:00Z".into(),
            top_frame: "crash_me+0x10 (/app/bin)".into(),
            top_frames: vec![
                "crash_me+0x10 (/app/bin)".into(),
                "main+0x20 (/app/bin)".into(),
            ],
            path: "shop/web-7d9f/app/20261126T080000Z_42_SIGSEGV".into(),
            files: vec![ReportFile {
                name: "crash_1.json".into(),
                size: 10,
                sha256: "ab".into(),
            }],
        },
    );
    r.metadata.namespace = Some("shop".into());
    r
}

#[tokio::test]
async fn crash_report_creation_and_retry_is_idempotent() {
    let r = report();
    let reply = serde_json::to_value(&r).unwrap();
    let check = |b: &Value| {
        assert_eq!(b["kind"], "ScopeCrashReport");
        assert_eq!(
            b["metadata"]["name"],
            "web-7d9f-20261126t080000z-42-sigsegv"
        );
        assert!(
            b["metadata"].get("ownerReferences").is_none(),
            "outlives the pod"
        );
        assert_eq!(b["spec"]["podUID"], "1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b");
        assert_eq!(b["spec"]["signal"], "SIGSEGV");
        assert_eq!(b["spec"]["topFrame"], "crash_me+0x10 (/app/bin)");
    };
    let (client, task) = scripted(vec![
        exp(
            "POST",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports",
            201,
            reply.clone(),
        )
        .body(check),
        exp(
            "POST",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports",
            409,
            status_reply(409, "AlreadyExists"),
        )
        .body(check),
    ]);
    let api: Api<ScopeCrashReport> = Api::namespaced(client, "shop");
    assert_eq!(
        kubeapi::create_crash_report(&api, &r).await.unwrap(),
        Created::New
    );
    assert_eq!(
        kubeapi::create_crash_report(&api, &r).await.unwrap(),
        Created::Existed
    );
    done(task).await;
}

#[tokio::test]
async fn crash_event_on_the_pod() {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-7d9f", "namespace": "shop", "uid": "1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}})).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T08:00:01Z")
        .unwrap()
        .to_utc();
    let ev = kubeapi::crash_event(&pod, &report(), now);
    let (client, task) = scripted(vec![
        exp(
            "POST",
            "/api/v1/namespaces/shop/events",
            201,
            serde_json::to_value(&ev).unwrap(),
        )
        .body(|b| {
            assert_eq!(b["reason"], "ScopedProcessCrashed");
            assert_eq!(b["type"], "Warning");
            assert_eq!(b["involvedObject"]["kind"], "Pod");
            assert_eq!(b["involvedObject"]["name"], "web-7d9f");
            assert_eq!(
                b["involvedObject"]["uid"],
                "1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
            );
            let msg = b["message"].as_str().unwrap();
            assert!(
                msg.contains("SIGSEGV")
                    && msg.contains("crash_me+0x10 (/app/bin)")
                    && msg.contains("42"),
                "{msg}"
            );
            assert_eq!(b["source"]["host"], "node-1");
        }),
    ]);
    let api: Api<Event> = Api::namespaced(client, "shop");
    assert_eq!(
        kubeapi::create_event(&api, &ev).await.unwrap(),
        Created::New
    );
    done(task).await;
}

#[tokio::test]
async fn crash_report_gc_deletes_by_name() {
    let ok = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}});
    let (client, task) = scripted(vec![
        exp(
            "DELETE",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports/old-1",
            200,
            ok.clone(),
        ),
        exp(
            "DELETE",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports/gone",
            404,
            status_reply(404, "NotFound"),
        ),
    ]);
    let api: Api<ScopeCrashReport> = Api::namespaced(client, "shop");
    let n = kubeapi::delete_crash_reports(&api, &["old-1".into(), "gone".into()])
        .await
        .unwrap();
    assert_eq!(n, 1);
    done(task).await;
}

fn lease_json(holder: &str, renew: &str, rv: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "appscope-controller", "namespace": "appscope-system", "resourceVersion": rv},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew,
                    "acquireTime": renew, "leaseTransitions": 3}})
}

#[tokio::test]
async fn lease_create_renew_wait_and_take_over() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z")
        .unwrap()
        .to_utc();
    let path = "/apis/coordination.k8s.io/v1/namespaces/appscope-system/leases";
    let one = format!("{path}/appscope-controller");
    let (client, task) = scripted(vec![
        // no lease: create, holding it
        exp("GET", &one, 404, status_reply(404, "NotFound")),
        exp(
            "POST",
            path,
            201,
            lease_json("ctl-a", "2026-11-26T08:00:00.000000Z", "1"),
        )
        .body(|b| {
            assert_eq!(b["spec"]["holderIdentity"], "ctl-a");
            assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
        }),
        // ours: renew with the resourceVersion read (optimistic concurrency)
        exp(
            "GET",
            &one,
            200,
            lease_json("ctl-a", "2026-11-26T07:59:55.000000Z", "7"),
        ),
        exp(
            "PUT",
            &one,
            200,
            lease_json("ctl-a", "2026-11-26T08:00:00.000000Z", "8"),
        )
        .body(|b| {
            assert_eq!(b["metadata"]["resourceVersion"], "7");
            assert_eq!(b["spec"]["holderIdentity"], "ctl-a");
            assert_eq!(
                b["spec"]["leaseTransitions"], 3,
                "renewal is not a transition"
            );
        }),
        // someone else's live lease: wait, no write
        exp(
            "GET",
            &one,
            200,
            lease_json("ctl-b", "2026-11-26T07:59:55.000000Z", "9"),
        ),
        // someone else's expired lease: take over
        exp(
            "GET",
            &one,
            200,
            lease_json("ctl-b", "2026-11-26T07:59:00.000000Z", "10"),
        ),
        exp(
            "PUT",
            &one,
            200,
            lease_json("ctl-a", "2026-11-26T08:00:00.000000Z", "11"),
        )
        .body(|b| {
            assert_eq!(b["spec"]["holderIdentity"], "ctl-a");
            assert_eq!(b["spec"]["leaseTransitions"], 4);
        }),
        // lost a race on update: not leader
        exp(
            "GET",
            &one,
            200,
            lease_json("ctl-b", "2026-11-26T07:59:00.000000Z", "12"),
        ),
        exp("PUT", &one, 409, status_reply(409, "Conflict")),
    ]);
    let api: Api<Lease> = Api::namespaced(client, "appscope-system");
    let go = |api: &Api<Lease>| {
        let api = api.clone();
        async move {
            kubeapi::acquire_or_renew(&api, "appscope-controller", "ctl-a", 15, now)
                .await
                .unwrap()
        }
    };
    assert!(go(&api).await, "created");
    assert!(go(&api).await, "renewed");
    assert!(!go(&api).await, "held by ctl-b");
    assert!(go(&api).await, "taken over");
    assert!(!go(&api).await, "conflict");
    done(task).await;
}

#[test]
fn lease_decision_table() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z")
        .unwrap()
        .to_utc();
    let spec = |holder: &str, secs_ago: i64| LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(15),
        renew_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            kubeapi::ts(now - chrono::Duration::seconds(secs_ago)),
        )),
        ..Default::default()
    };
    assert_eq!(kubeapi::lease_decision(None, "a", now), LeaseAction::Create);
    assert_eq!(
        kubeapi::lease_decision(Some(&spec("a", 100)), "a", now),
        LeaseAction::Take
    );
    assert_eq!(
        kubeapi::lease_decision(Some(&spec("b", 5)), "a", now),
        LeaseAction::Wait { holder: "b".into() }
    );
    assert_eq!(
        kubeapi::lease_decision(Some(&spec("b", 16)), "a", now),
        LeaseAction::Take
    );
    assert_eq!(
        kubeapi::lease_decision(Some(&spec("", 1)), "a", now),
        LeaseAction::Take
    );
}

// ------------------------------------------------------------------ agent scenarios

use std::sync::{Arc, Mutex};
use std::time::Duration;

use appscope_operator::agent::{Agent, AgentConfig, pod_volume};
use appscope_operator::watch::{self, Stores};
use kube::ResourceExt;
use kube::runtime::{reflector, watcher};

const POD_UID: &str = "1f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

fn pod_json(name: &str, uid: &str, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv,
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "registry.example/web:1.2"}]}})
}

#[tokio::test]
async fn agent_pod_reflector_lists_this_node_then_watches_from_the_list_version() {
    let node_sel = "spec.nodeName=node-1";
    let (client, task) = scripted(vec![
        exp(
            "GET",
            "/api/v1/pods",
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "100"},
                   "items": [pod_json("web-1", "u1", "90")]}),
        )
        .query("fieldSelector", node_sel)
        .absent("watch"),
        exp("GET", "/api/v1/pods", 200, Value::Null)
            .query("fieldSelector", node_sel)
            .query("watch", "true")
            .query("resourceVersion", "100")
            .raw(watch_stream(&[
                ("ADDED", pod_json("web-2", "u2", "101")),
                ("DELETED", pod_json("web-1", "u1", "102")),
            ])),
        // The stream ended: watch again from the last version seen, not a re-list.
        exp("GET", "/api/v1/pods", 200, Value::Null)
            .query("fieldSelector", node_sel)
            .query("watch", "true")
            .query("resourceVersion", "102")
            .raw(String::new()),
    ]);
    let (tx, mut changes) = tokio::sync::mpsc::channel(1);
    let (store, reflector_task) = watch::spawn_reflector(
        Api::<Pod>::all(client),
        watch::pods_config("node-1"),
        "pods",
        tx,
    );
    tokio::time::timeout(Duration::from_secs(5), store.wait_until_ready())
        .await
        .expect("initial sync")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("a change signal")
        .unwrap();
    done(task).await;
    let mut names: Vec<String> = store.state().iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(names, vec!["web-2".to_string()]);
    // The server is gone now: watch errors are retried with backoff, the reflector keeps
    // running and its store keeps the last state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !reflector_task.is_finished(),
        "the reflector ended on errors"
    );
    assert_eq!(store.state().len(), 1);
    reflector_task.abort();
}

/// Stores filled as the reflectors would after their initial list.
fn stores_with(
    pods: Vec<Value>,
    configs: Vec<Value>,
    snapshots: Vec<Value>,
) -> (Stores, reflector::store::Writer<ScopeConfig>) {
    fn fill<K>(items: Vec<Value>) -> (reflector::Store<K>, reflector::store::Writer<K>)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (r, mut w) = reflector::store::<K>();
        w.apply_watcher_event(&watcher::Event::Init);
        for v in items {
            w.apply_watcher_event(&watcher::Event::InitApply(
                serde_json::from_value(v).unwrap(),
            ));
        }
        w.apply_watcher_event(&watcher::Event::InitDone);
        (r, w)
    }
    let (pods, _) = fill::<Pod>(pods);
    let (configs, cw) = fill::<ScopeConfig>(configs);
    let (snapshots, _) = fill::<ScopeSnapshot>(snapshots);
    (
        Stores {
            pods,
            configs,
            snapshots,
        },
        cw,
    )
}

fn write_status(dir: &std::path::Path, pid: i64, verbosity: i64) {
    let now = scope_config::status::now_rfc3339();
    let st = json!({"schema": 1, "pid": pid, "ppid": 0, "procname": "python3",
        "cmd": "python3 app.py", "libscopever": "v0.1.0", "started": "2026-11-26T08:00:00.000Z",
        "updated": now, "scoped": true,
        "config": {"current": {"metric": {"format": {"verbosity": verbosity}}}},
        "interfaces": [{"name": "metric", "config": "file:///dev/null", "connected": true,
                        "sent": 5, "dropped": 0}]});
    std::fs::write(
        dir.join(format!("{pid}.json")),
        serde_json::to_vec(&st).unwrap(),
    )
    .unwrap();
}

#[tokio::test]
async fn agent_cycle_reports_crash_applies_status_fails_missing_snapshot_then_stays_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let kubelet = tmp.path().join("kubelet");
    let run = pod_volume(&kubelet, POD_UID).join("run/app");
    std::fs::create_dir_all(run.join("status")).unwrap();
    std::fs::create_dir_all(run.join("cmd")).unwrap();
    write_status(&run.join("status"), 1, 4);
    // A complete crash bundle of pid 42.
    let b = run.join("crash/42");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("info_100"), "info").unwrap();
    std::fs::write(
        b.join("crash_100.json"),
        json!({"signal": 11, "time": "2026-11-26T07:00:00.250Z", "procname": "python3",
               "frames": [{"module": "/usr/bin/demo", "offset": 16, "symbol": "crash_here"}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(b.join("done_100"), "").unwrap();

    let scfg = json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
        "metadata": {"name": "web-debug", "namespace": "shop", "uid": "c-1", "generation": 1, "resourceVersion": "5"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "env": {"SCOPE_METRIC_VERBOSITY": "7"}, "priority": 0}});
    let snap = |name: &str, pid: i64, status: Value| {
        json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeSnapshot",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("s-{name}"), "resourceVersion": "6"},
            "spec": {"pod": "web-1", "container": "app", "pid": pid}, "status": status})
    };
    let (stores, mut config_writer) = stores_with(
        vec![pod_json("web-1", POD_UID, "3")],
        vec![scfg.clone()],
        vec![
            snap("snap-missing", 4242, Value::Null),
            // Finished already: not run again.
            snap(
                "snap-old",
                1,
                json!({"phase": "Complete", "node": "node-1"}),
            ),
            // A pod not on this node: not ours.
        ],
    );
    let cr_name = "web-1-20261126t070000.250z-42-sigsegv";
    let applied_status = Arc::new(Mutex::new(Value::Null));
    let keep = applied_status.clone();
    let (client, task) = scripted_then_quiet(
        vec![
            exp(
                "POST",
                "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports",
                201,
                serde_json::to_value(report()).unwrap(),
            )
            .body(move |b| {
                assert_eq!(b["kind"], "ScopeCrashReport");
                assert_eq!(b["metadata"]["name"], cr_name);
                assert_eq!(b["metadata"]["namespace"], "shop");
                assert_eq!(b["spec"]["pod"], "web-1");
                assert_eq!(b["spec"]["podUID"], POD_UID);
                assert_eq!(b["spec"]["node"], "node-1");
                assert_eq!(b["spec"]["image"], "registry.example/web:1.2");
                assert_eq!(b["spec"]["signal"], "SIGSEGV");
                assert_eq!(b["spec"]["pid"], 42);
                assert_eq!(
                    b["spec"]["path"],
                    "shop/web-1/app/20261126T070000.250Z_42_SIGSEGV"
                );
            }),
            exp(
                "POST",
                "/api/v1/namespaces/shop/events",
                201,
                serde_json::to_value(Event::default()).unwrap(),
            )
            .body(move |b| {
                assert_eq!(b["metadata"]["name"], format!("{cr_name}.crash"));
                assert_eq!(b["reason"], "ScopedProcessCrashed");
                assert_eq!(b["involvedObject"]["uid"], POD_UID);
                assert!(b["message"].as_str().unwrap().contains("SIGSEGV"));
            }),
            exp(
                "PATCH",
                "/apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/web-debug/status",
                200,
                scfg.clone(),
            )
            .query("fieldManager", "appscope-agent-node-1")
            .query("force", "true")
            .ctype("application/apply-patch+yaml")
            .body(move |b| {
                let n = &b["status"]["nodes"][0];
                assert_eq!(n["name"], "node-1");
                assert_eq!(n["pods"], 1);
                assert_eq!(
                    n["processes"],
                    json!({"matched": 1, "applied": 0, "pending": 1, "failed": 0})
                );
                assert!(n["updated"].is_string());
                assert_eq!(b["status"]["nodes"].as_array().unwrap().len(), 1);
                *keep.lock().unwrap() = b["status"].clone();
            }),
            exp(
                "PATCH",
                "/apis/appscope.dev/v1alpha1/namespaces/shop/scopesnapshots/snap-missing/status",
                200,
                snap("snap-missing", 4242, json!({"phase": "Failed"})),
            )
            .query("fieldManager", "appscope-agent-node-1")
            .query("force", "true")
            .ctype("application/apply-patch+yaml")
            .body(|b| {
                assert_eq!(b["kind"], "ScopeSnapshot");
                let st = &b["status"];
                assert_eq!(st["phase"], "Failed");
                assert_eq!(st["node"], "node-1");
                let msg = st["message"].as_str().unwrap();
                assert!(msg.contains("4242") && msg.contains("web-1"), "{msg}");
                assert!(st.get("reportPath").is_none());
            }),
        ],
        Duration::from_secs(2),
    );
    let cfg = AgentConfig {
        node: "node-1".into(),
        kubelet_root: kubelet.clone(),
        store: tmp.path().join("store"),
        interval: Duration::from_secs(2),
        summary_period: Duration::from_secs(10),
        retention: node_agent::store::Retention::default(),
        proc_root: "/proc".into(),
        state_file: tmp.path().join("state/node-1.json"),
    };
    let mut agent = Agent::new(cfg, client, stores).unwrap();
    agent.cycle().await;
    let cmd = scope_config::cmdfile::path_for(&run.join("cmd"), 1);
    let cmd_text = std::fs::read_to_string(&cmd).unwrap();
    assert!(cmd_text.contains("SCOPE_METRIC_VERBOSITY=7"), "{cmd_text}");
    assert!(
        tmp.path()
            .join("store/shop/web-1/app/20261126T070000.250Z_42_SIGSEGV/report.json")
            .exists()
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("state/node-1.json")).unwrap())
            .unwrap();
    assert_eq!(state["processes"][0]["podUid"], POD_UID);
    assert_eq!(
        state["processes"][0]["memory"]["managed"],
        json!(["SCOPE_METRIC_VERBOSITY"])
    );

    // The status write comes back through the watch; then nothing changed, so the next
    // cycle makes no API call (and the failed snapshot is not run again).
    let mut with_status = scfg;
    with_status["status"] = applied_status.lock().unwrap().clone();
    config_writer.apply_watcher_event(&watcher::Event::Apply(
        serde_json::from_value(with_status).unwrap(),
    ));
    agent.cycle().await;
    done(task).await;
}

#[tokio::test]
async fn agent_cycle_waits_for_interval_or_debounced_change() {
    use appscope_operator::agent::{DEBOUNCE, wait_for_work};
    use std::time::Instant;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    // Nothing changes: the interval.
    let t = Instant::now();
    wait_for_work(&mut rx, Duration::from_millis(300)).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    // A change: the debounce, not the (long) interval.
    tx.try_send(()).unwrap();
    let t = Instant::now();
    wait_for_work(&mut rx, Duration::from_secs(30)).await;
    assert!(t.elapsed() >= DEBOUNCE, "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A burst during the debounce is handled by that one cycle: the next wait is a full
    // interval again.
    tx.try_send(()).unwrap();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx2.try_send(());
        }
    });
    wait_for_work(&mut rx, Duration::from_secs(30)).await;
    let t = Instant::now();
    wait_for_work(&mut rx, Duration::from_millis(400)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "a change of the burst started another cycle: {:?}",
        t.elapsed()
    );
}
