//! `kubectl scope` against a tower-test mocked API server: each test scripts the server,
//! asserts the exact requests (method, path, query, content type, body) and the output.

use appscope_operator::kubectl::{self, Cli, Error};
use clap::Parser;
use kube::Client;
use serde_json::{Value, json};

mod mockapi;
use mockapi::*;

fn cli(args: &[&str]) -> Cli {
    let mut v = vec!["kubectl-scope"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).expect("arguments parse")
}

/// Run a command against the script; returns (result, output).
async fn exec(args: &[&str], script: Vec<Exp>) -> (Result<i32, Error>, String) {
    let (client, task) = scripted(script);
    let mut out = Vec::new();
    let c = cli(args);
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        kubectl::execute(&c, client, &mut out),
    )
    .await
    .expect("command timed out");
    done(task).await;
    (r, String::from_utf8(out).unwrap())
}

fn status_reply(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn pod_json(ns: &str, name: &str, labels: Value, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": "u-1"},
           "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
           "status": {"phase": "Running"}})
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items})
}

// ------------------------------------------------------------------ update

#[tokio::test]
async fn update_server_side_applies_scope_config_selecting_the_pod_by_labels() {
    let scfg_path = "/apis/appscope.dev/v1alpha1/namespaces/shop/scopeconfigs/scope-web-0";
    let (r, out) = exec(
        &[
            "update",
            "web-0",
            "-n",
            "shop",
            "-c",
            "app",
            "--set",
            "SCOPE_METRIC_VERBOSITY=9",
        ],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/shop/pods/web-0",
                200,
                pod_json("shop", "web-0", json!({"app": "web", "tier": "front"}), "n1"),
            ),
            // An earlier update set SCOPE_EVENT_ENABLE: it is kept.
            exp(
                "GET",
                scfg_path,
                200,
                json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
                       "metadata": {"name": "scope-web-0", "namespace": "shop"},
                       "spec": {"selector": {"matchLabels": {"app": "web", "tier": "front"}},
                                "env": {"SCOPE_EVENT_ENABLE": "true", "SCOPE_METRIC_VERBOSITY": "4"},
                                "priority": 100}}),
            ),
            exp(
                "PATCH",
                scfg_path,
                200,
                json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
                       "metadata": {"name": "scope-web-0", "namespace": "shop"},
                       "spec": {"selector": {"matchLabels": {"app": "web", "tier": "front"}},
                                "containers": ["app"],
                                "env": {"SCOPE_EVENT_ENABLE": "true", "SCOPE_METRIC_VERBOSITY": "9"},
                                "priority": 100}}),
            )
            .query("fieldManager", "kubectl-scope")
            .query("force", "true")
            .ctype("application/apply-patch+yaml")
            .body(|b| {
                assert_eq!(b["apiVersion"], "appscope.dev/v1alpha1");
                assert_eq!(b["kind"], "ScopeConfig");
                assert_eq!(b["metadata"]["name"], "scope-web-0");
                assert_eq!(b["metadata"]["namespace"], "shop");
                assert_eq!(
                    b["spec"],
                    json!({"selector": {"matchLabels": {"app": "web", "tier": "front"}},
                           "containers": ["app"],
                           "env": {"SCOPE_EVENT_ENABLE": "true", "SCOPE_METRIC_VERBOSITY": "9"},
                           "priority": 100})
                );
            }),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    assert!(
        out.contains(
            "scopeconfig shop/scope-web-0 applied (priority 100, selector app=web,tier=front)"
        ),
        "{out}"
    );
    assert!(out.contains("set   SCOPE_METRIC_VERBOSITY=9"), "{out}");
    assert!(out.contains("kept  SCOPE_EVENT_ENABLE=true"), "{out}");
}

#[tokio::test]
async fn update_creates_when_absent_and_uses_the_default_namespace() {
    let (r, _out) = exec(
        &["update", "api", "--set", "SCOPE_EVENT_ENABLE=false"],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/default/pods/api",
                200,
                pod_json("default", "api", json!({"app": "api"}), "n1"),
            ),
            exp(
                "GET",
                "/apis/appscope.dev/v1alpha1/namespaces/default/scopeconfigs/scope-api",
                404,
                status_reply(404, "NotFound", "scopeconfigs \"scope-api\" not found"),
            ),
            exp(
                "PATCH",
                "/apis/appscope.dev/v1alpha1/namespaces/default/scopeconfigs/scope-api",
                201,
                json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
                       "metadata": {"name": "scope-api", "namespace": "default"},
                       "spec": {"selector": {"matchLabels": {"app": "api"}},
                                "env": {"SCOPE_EVENT_ENABLE": "false"}, "priority": 100}}),
            )
            .query("fieldManager", "kubectl-scope")
            .body(|b| {
                assert_eq!(
                    b["spec"],
                    json!({"selector": {"matchLabels": {"app": "api"}},
                           "env": {"SCOPE_EVENT_ENABLE": "false"}, "priority": 100})
                );
            }),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 0);
}

#[tokio::test]
async fn update_refuses_a_pod_without_labels() {
    let (r, _) = exec(
        &[
            "update",
            "bare",
            "-n",
            "shop",
            "--set",
            "SCOPE_EVENT_ENABLE=true",
        ],
        vec![exp(
            "GET",
            "/api/v1/namespaces/shop/pods/bare",
            200,
            pod_json("shop", "bare", json!({}), "n1"),
        )],
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("has no labels"), "{e}");
}

#[tokio::test]
async fn update_rejects_bad_settings_before_any_request() {
    for (set, want) in [
        ("SCOPE_NOT_A_SETTING=1", "SCOPE_NOT_A_SETTING"),
        ("SCOPE_METRIC_VERBOSITY=loud", "SCOPE_METRIC_VERBOSITY"),
        ("no-equals-sign", "expected NAME=VALUE"),
    ] {
        let c = cli(&["update", "web", "--set", set]);
        let e = kubectl::check_args(&c).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{set}");
        assert!(e.to_string().contains(want), "{set}: {e}");
        // And execute itself refuses without talking to the server.
        let (r, _) = exec(&["update", "web", "--set", set], vec![]).await;
        assert_eq!(r.unwrap_err().exit_code(), 2);
    }
}

#[tokio::test]
async fn rbac_forbidden_is_one_clear_error() {
    let (r, _) = exec(
        &["crashes", "-n", "shop"],
        vec![exp(
            "GET",
            "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports",
            403,
            status_reply(
                403,
                "Forbidden",
                "scopecrashreports.appscope.dev is forbidden: User \"bob\" cannot list resource",
            ),
        )],
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let Error::Kube(k) = &e else { panic!("{e:?}") };
    let line = kubectl::describe_kube_error(k);
    assert!(line.starts_with("forbidden by RBAC: "), "{line}");
    assert!(line.contains("User \"bob\" cannot list"), "{line}");
    assert!(!line.contains('\n'));
}

// ----------------------------------------------------------------- crashes

fn crash_json(ns: &str, name: &str, pod: &str, time: &str, top: &str) -> Value {
    json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeCrashReport",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"pod": pod, "podUID": "uid-1", "container": "app", "node": "n1",
                    "image": "shop/web:1", "pid": 7, "signal": "SIGSEGV", "time": time,
                    "topFrame": top, "topFrames": [top, "main", "__libc_start_main"],
                    "path": format!("{ns}/{pod}/{name}"),
                    "files": [{"name": "core", "size": 123456, "sha256": "ab".repeat(32)},
                              {"name": "backtrace.txt", "size": 321, "sha256": "cd".repeat(32)}]}})
}

#[tokio::test]
async fn crashes_all_namespaces_lists_newest_first() {
    let (r, out) = exec(
        &["crashes", "-A"],
        vec![exp(
            "GET",
            "/apis/appscope.dev/v1alpha1/scopecrashreports",
            200,
            json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeCrashReportList",
            "metadata": {"resourceVersion": "5"},
            "items": [
                crash_json("shop", "web-0-a1", "web-0", "2026-11-26T08:00:00Z", "crash_here"),
                crash_json("pay", "api-1-b2", "api-1", "2026-11-26T09:00:00Z", "abort"),
            ]}),
        )],
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let cols: Vec<&str> = lines[0]
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        cols,
        [
            "TIME",
            "NAMESPACE",
            "POD",
            "CONTAINER",
            "PID",
            "SIGNAL",
            "TOP FRAME",
            "NAME"
        ]
    );
    let row1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row1,
        [
            "2026-11-26T09:00:00Z",
            "pay",
            "api-1",
            "app",
            "7",
            "SIGSEGV",
            "abort",
            "api-1-b2"
        ]
    );
    let row2: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row2[1], "shop");
    assert_eq!(row2[6], "crash_here");
}

/// The one GET `crashes show web-0-a1 -n shop` makes, and its reply.
fn show_web_0_a1() -> Vec<Exp> {
    vec![exp(
        "GET",
        "/apis/appscope.dev/v1alpha1/namespaces/shop/scopecrashreports/web-0-a1",
        200,
        crash_json(
            "shop",
            "web-0-a1",
            "web-0",
            "2026-11-26T08:00:00Z",
            "crash_here",
        ),
    )]
}

#[tokio::test]
async fn crashes_show_prints_frames_and_files() {
    let (r, out) = exec(
        &["crashes", "show", "web-0-a1", "-n", "shop"],
        show_web_0_a1(),
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    assert!(out.starts_with("Crash shop/web-0-a1\n"), "{out}");
    assert!(out.contains("  signal:     SIGSEGV\n"), "{out}");
    assert!(out.contains("  reportPath: shop/web-0/web-0-a1\n"), "{out}");
    assert!(out.contains("  #0  crash_here\n  #1  main\n"), "{out}");
    assert!(
        out.contains("core           123456  abababababababab"),
        "{out}"
    );
    assert!(out.contains("backtrace.txt  321"), "{out}");
    // The namespace may also come before `show`.
    let (r, out2) = exec(
        &["crashes", "-n", "shop", "show", "web-0-a1"],
        show_web_0_a1(),
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(out2, out);
}

// ---------------------------------------------------------------- snapshot

fn snap_json(phase: Option<&str>, extra: Value) -> Value {
    let mut v = json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeSnapshot",
           "metadata": {"name": "web-0-x7k2p", "namespace": "shop", "generateName": "web-0-"},
           "spec": {"pod": "web-0", "container": "app", "core": true}});
    if let Some(p) = phase {
        let mut st = json!({"phase": p});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                st[k] = x;
            }
        }
        v["status"] = st;
    }
    v
}

#[tokio::test]
async fn snapshot_creates_then_polls_until_complete() {
    let path = "/apis/appscope.dev/v1alpha1/namespaces/shop/scopesnapshots";
    let obj = format!("{path}/web-0-x7k2p");
    let (r, out) = exec(
        &[
            "snapshot", "web-0", "-n", "shop", "-c", "app", "--core", "--poll-ms", "10",
        ],
        vec![
            exp("POST", path, 201, snap_json(None, json!({}))).body(|b| {
                assert_eq!(b["metadata"]["generateName"], "web-0-");
                assert!(b["metadata"].get("name").is_none_or(|n| n.is_null() || n == ""));
                assert_eq!(b["spec"], json!({"pod": "web-0", "container": "app", "core": true}));
            }),
            exp("GET", &obj, 200, snap_json(None, json!({}))),
            exp("GET", &obj, 200, snap_json(Some("Running"), json!({"node": "n1"}))),
            exp("GET", &obj, 200, snap_json(Some("Running"), json!({"node": "n1"}))),
            exp(
                "GET",
                &obj,
                200,
                snap_json(
                    Some("Complete"),
                    json!({"node": "n1", "reportPath": "shop/web-0/snap-1",
                           "files": [{"name": "core", "size": 999, "sha256": "ef".repeat(32)},
                                     {"name": "snapshot.json", "size": 42, "sha256": "01".repeat(32)}]}),
                ),
            ),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 0, "{out}");
    let want = "scopesnapshot shop/web-0-x7k2p created\n  Pending\n  Running (node n1)\n  Complete (node n1)\nreportPath: shop/web-0/snap-1\n";
    assert!(out.starts_with(want), "{out}");
    assert!(
        out.contains("core           999   efefefefefefefef"),
        "{out}"
    );
    assert!(out.contains("snapshot.json  42"), "{out}");
}

#[tokio::test]
async fn snapshot_failed_exits_1_with_the_message() {
    let path = "/apis/appscope.dev/v1alpha1/namespaces/shop/scopesnapshots";
    let (r, out) = exec(
        &["snapshot", "web-0", "-n", "shop", "--poll-ms", "10"],
        vec![
            exp("POST", path, 201, snap_json(None, json!({}))),
            exp(
                "GET",
                &format!("{path}/web-0-x7k2p"),
                200,
                snap_json(
                    Some("Failed"),
                    json!({"message": "pod web-0 has no scoped process"}),
                ),
            ),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 1);
    assert!(
        out.contains("snapshot failed: pod web-0 has no scoped process"),
        "{out}"
    );
}

#[tokio::test]
async fn snapshot_times_out_with_a_clear_error() {
    let path = "/apis/appscope.dev/v1alpha1/namespaces/shop/scopesnapshots";
    let obj = format!("{path}/web-0-x7k2p");
    let mut script = vec![exp("POST", path, 201, snap_json(None, json!({})))];
    // 0 s timeout: one GET, then give up.
    script.push(exp("GET", &obj, 200, snap_json(Some("Running"), json!({}))));
    let (r, _) = exec(
        &["snapshot", "web-0", "-n", "shop", "--timeout", "0"],
        script,
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("still Running after 0s"), "{e}");
}

// ---------------------------------------------------------------------- ps

fn agent_pod(name: &str, node: &str) -> Value {
    pod_json(
        "appscope",
        name,
        json!({"app.kubernetes.io/part-of": "appscope", "app.kubernetes.io/component": "agent"}),
        node,
    )
}

fn pod_proc(ns: &str, pod: &str, pid: i64, connected: bool, cmd: &str) -> Value {
    json!({"namespace": ns, "pod": pod, "container": "app", "pid": pid,
           "procname": cmd.split(' ').next().unwrap(), "cmd": cmd, "connected": connected,
           "updated": "2026-11-26T09:00:00Z", "config_state": "Applied"})
}

#[tokio::test]
async fn ps_asks_every_agent_through_the_pods_proxy() {
    let (r, out) = exec(
        &["ps", "-n", "shop"],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods",
                200,
                pod_list(vec![agent_pod("agent-a", "n1"), agent_pod("agent-b", "n2")]),
            )
            .query(
                "labelSelector",
                "app.kubernetes.io/part-of=appscope,app.kubernetes.io/component=agent",
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-a:9464/proxy/v1/pods",
                200,
                json!([
                    pod_proc("shop", "web-0", 1, true, "nginx -g daemon off;"),
                    pod_proc("other", "x", 1, true, "python3 x.py")
                ]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/pods",
                200,
                json!([pod_proc("shop", "api-1", 12, false, "java -jar api.jar")]),
            ),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAMESPACE",
            "POD",
            "CONTAINER",
            "PID",
            "CONNECTED",
            "COMMAND"
        ]
    );
    assert_eq!(
        lines[1],
        [
            "shop", "api-1", "app", "12", "no", "java", "-jar", "api.jar"
        ]
    );
    assert_eq!(lines[2][..5], ["shop", "web-0", "app", "1", "yes"]);
    assert_eq!(lines.len(), 3, "other namespaces are filtered: {out}");
}

#[tokio::test]
async fn ps_without_agents_explains_and_fails() {
    let (r, _) = exec(
        &["--agent-namespace", "scope-sys", "ps", "-A"],
        vec![exp(
            "GET",
            "/api/v1/namespaces/scope-sys/pods",
            200,
            pod_list(vec![]),
        )],
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string()
            .contains("no running AppScope agent in namespace scope-sys"),
        "{e}"
    );
}

#[tokio::test]
async fn ps_reports_an_unreachable_agent_and_lists_the_others() {
    let (r, out) = exec(
        &["ps", "-A"],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods",
                200,
                pod_list(vec![agent_pod("agent-a", "n1"), agent_pod("agent-b", "n2")]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-a:9464/proxy/v1/pods",
                503,
                status_reply(503, "ServiceUnavailable", "error trying to reach service"),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/pods",
                200,
                json!([pod_proc("pay", "api-1", 12, true, "java -jar api.jar")]),
            ),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    assert!(
        out.contains("pay        api-1  app        12   yes"),
        "{out}"
    );
    assert!(out.contains("warning: agent agent-a: "), "{out}");
    assert!(out.contains("error trying to reach service"), "{out}");
}

// ----------------------------------------------------------------- inspect

#[tokio::test]
async fn inspect_finds_the_nodes_agent_and_maps_the_pid() {
    let (r, out) = exec(
        &["inspect", "web-0", "-n", "shop"],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/shop/pods/web-0",
                200,
                pod_json("shop", "web-0", json!({"app": "web"}), "n2"),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods",
                200,
                pod_list(vec![agent_pod("agent-b", "n2")]),
            )
            .query("fieldSelector", "spec.nodeName=n2"),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/pods",
                200,
                json!([pod_proc("shop", "web-0", 1, true, "nginx -g daemon off;")]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/ps",
                200,
                json!([
                    {"pid": 4000, "nspid": 1, "ppid": 3990, "uid": 0, "gid": 0, "user": "root",
                     "comm": "python3", "cmdline": ["python3", "x.py"], "libscope": "/x/libscope.so",
                     "scoped": true, "foreign_mntns": true, "foreign_pidns": true},
                    {"pid": 4242, "nspid": 1, "ppid": 4200, "uid": 0, "gid": 0, "user": "root",
                     "comm": "nginx", "cmdline": ["nginx", "-g", "daemon off;"],
                     "libscope": "/appscope/libscope.so",
                     "scoped": true, "foreign_mntns": true, "foreign_pidns": true}
                ]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/inspect/4242",
                500,
                status_reply(500, "InternalError", "process 4242 is gone"),
            ),
        ],
    )
    .await;
    // The pid mapping picked host pid 4242 (nginx), not 4000 (the other container's pid 1).
    let e = r.unwrap_err();
    assert!(e.to_string().contains("process 4242 is gone"), "{e}");
    assert!(
        out.contains("== shop/web-0 container app pid 1 (node n2)"),
        "{out}"
    );
}

#[tokio::test]
async fn unreachable_api_server_is_one_clear_error() {
    // A real client against a loopback port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let mut cfg = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    cfg.connect_timeout = Some(std::time::Duration::from_secs(5));
    let client = Client::try_from(cfg).unwrap();
    let mut out = Vec::new();
    let c = cli(&["crashes", "-A"]);
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        kubectl::execute(&c, client, &mut out),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let Error::Kube(k) = &e else { panic!("{e:?}") };
    let line = kubectl::describe_kube_error(k);
    assert!(line.starts_with("cannot reach the API server: "), "{line}");
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[tokio::test]
async fn inspect_prints_the_agents_inspection_like_local_mode() {
    let proc_json = json!({"pid": 4242, "nspid": 1, "ppid": 4200, "uid": 0, "gid": 0,
        "user": "root", "comm": "nginx", "cmdline": ["nginx", "-g", "daemon off;"],
        "libscope": "/appscope/libscope.so", "scoped": true,
        "foreign_mntns": true, "foreign_pidns": true});
    let inspection = json!({"process": proc_json, "env": null, "status": null,
        "status_error": "no SCOPE_STATUS_DIR in its environment"});
    let local: node_agent::status::Inspection = serde_json::from_value(inspection.clone()).unwrap();
    let (r, out) = exec(
        &["inspect", "web-0", "-n", "shop", "-c", "app"],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/shop/pods/web-0",
                200,
                pod_json("shop", "web-0", json!({"app": "web"}), "n2"),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods",
                200,
                pod_list(vec![agent_pod("agent-b", "n2")]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/pods",
                200,
                json!([pod_proc("shop", "web-0", 1, true, "nginx -g daemon off;")]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/ps",
                200,
                json!([proc_json]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-b:9464/proxy/v1/inspect/4242",
                200,
                inspection,
            ),
        ],
    )
    .await;
    assert_eq!(r.unwrap(), 0);
    let want = format!(
        "== shop/web-0 container app pid 1 (node n2)\n{}",
        node_agent::render::inspect_text(&local)
    );
    assert_eq!(out, want);
    assert!(out.contains("nginx -g daemon off;"), "{out}");
}

#[tokio::test]
async fn inspect_of_a_pod_without_scoped_processes_says_so() {
    let (r, _) = exec(
        &["inspect", "db-0", "-n", "shop"],
        vec![
            exp(
                "GET",
                "/api/v1/namespaces/shop/pods/db-0",
                200,
                pod_json("shop", "db-0", json!({"app": "db"}), "n1"),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods",
                200,
                pod_list(vec![agent_pod("agent-a", "n1")]),
            ),
            exp(
                "GET",
                "/api/v1/namespaces/appscope/pods/agent-a:9464/proxy/v1/pods",
                200,
                json!([pod_proc("shop", "web-0", 1, true, "nginx")]),
            ),
        ],
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string()
            .contains("no scoped process in pod shop/db-0 (agent agent-a on node n1)"),
        "{e}"
    );
}
