//! The webhook binary over HTTPS: the fixture corpus, bad input, health/metrics,
//! certificate hot reload and graceful shutdown.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const LIB: &str = "/appscope/lib/libscope.so";

struct Running {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    pki: TestPki,
    server: Server,
    client: std::sync::Arc<rustls::ClientConfig>,
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("appscope-webhook-test");
    write_secret_dir(dir.path(), &pki, 1);
    let server = Server::start(
        &dir.path().join("tls.crt"),
        &dir.path().join("tls.key"),
        &[],
    );
    let client = client_config(&[&pki.ca_pem]);
    Running {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        pki,
        server,
        client,
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn find<'a>(arr: &'a Value, name: &str) -> Option<&'a Value> {
    arr.as_array()?.iter().find(|x| x["name"] == name)
}

fn env_value(c: &Value, name: &str) -> Option<Value> {
    let e = find(&c["env"], name)?;
    Some(
        e.get("value")
            .cloned()
            .unwrap_or_else(|| e["valueFrom"].clone()),
    )
}

/// Checks one injected pod against the contract of design §4.
fn check_injected(f: &Fixture, orig: &Value, pod: &Value, expected: &[String]) {
    let n = &f.name;
    let ann = pod["metadata"]["annotations"]["appscope.dev/injected"]
        .as_str()
        .unwrap_or_else(|| panic!("{n}: no injected annotation"));
    let ann: Value = serde_json::from_str(ann).unwrap();
    let got: BTreeSet<String> = ann["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        expected.iter().cloned().collect::<BTreeSet<_>>(),
        "{n}: injected containers"
    );
    assert_eq!(ann["version"], env!("CARGO_PKG_VERSION"), "{n}");

    // Init container: first, restricted, from the configured image.
    let inits = &pod["spec"]["initContainers"];
    let init = &inits[0];
    assert_eq!(
        init["name"], "appscope-init",
        "{n}: init container must run first"
    );
    assert_eq!(init["image"], INIT_IMAGE, "{n}");
    assert_eq!(
        init["command"],
        json!(["appscope-operator", "copy-lib", "--to", "/appscope/lib"]),
        "{n}"
    );
    let sc = &init["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{n}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{n}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{n}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{n}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{n}");
    assert!(sc["runAsUser"].as_i64().unwrap() > 0, "{n}");
    for k in ["requests", "limits"] {
        assert!(
            init["resources"][k]["cpu"].is_string() && init["resources"][k]["memory"].is_string(),
            "{n}: init {k}"
        );
    }
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "appscope", "mountPath": "/appscope"}]),
        "{n}"
    );
    // The user's init containers follow, unchanged except for scoped native sidecars.
    let orig_inits = names(orig["spec"].get("initContainers"));
    assert_eq!(
        names(Some(inits))[1..],
        orig_inits[..],
        "{n}: user init containers keep their order"
    );

    // Volumes: ours once each, the user's untouched.
    let vols = &pod["spec"]["volumes"];
    let vnames = names(Some(vols));
    assert_eq!(vnames.iter().filter(|v| *v == "appscope").count(), 1, "{n}");
    assert_eq!(
        vnames.iter().filter(|v| *v == "appscope-config").count(),
        1,
        "{n}"
    );
    assert!(
        find(vols, "appscope").unwrap()["emptyDir"]["sizeLimit"].is_string(),
        "{n}"
    );
    let cm = &find(vols, "appscope-config").unwrap()["configMap"];
    assert_eq!(cm["name"], f.expect["configmap"], "{n}");
    assert_eq!(cm["optional"], true, "{n}");
    assert_eq!(
        vnames[..vnames.len() - 2],
        names(orig["spec"].get("volumes"))[..],
        "{n}: user volumes untouched"
    );

    // Every container: scoped ones carry mounts and env; the others are unchanged.
    for field in ["containers", "initContainers"] {
        let Some(cs) = pod["spec"][field].as_array() else {
            continue;
        };
        for c in cs {
            let cname = c["name"].as_str().unwrap();
            if cname == "appscope-init" {
                continue;
            }
            let before = find(&orig["spec"][field], cname).unwrap();
            if !expected.iter().any(|e| e == cname) {
                assert_eq!(c, before, "{n}: container {cname} must be untouched");
                continue;
            }
            let mounts = &c["volumeMounts"];
            assert_eq!(
                mounts
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["mountPath"] == "/appscope" && m["name"] == "appscope")
                    .count(),
                1,
                "{n}/{cname}: /appscope mount"
            );
            let cfgm = mounts
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == "/etc/appscope")
                .unwrap();
            assert_eq!(cfgm["name"], "appscope-config", "{n}/{cname}");
            assert_eq!(cfgm["readOnly"], true, "{n}/{cname}");
            assert!(
                cfgm.get("subPath").is_none(),
                "{n}/{cname}: no subPath, so ConfigMap edits propagate"
            );
            // Env: each name at most once among the ones we manage; user values kept.
            let env = c["env"].as_array().unwrap();
            for ours in [
                "LD_PRELOAD",
                "SCOPE_CONF_PATH",
                "SCOPE_CMD_DIR",
                "SCOPE_STATUS_DIR",
                "SCOPE_SNAPSHOT_DIR",
                "SCOPE_TAG_pod",
                "SCOPE_TAG_namespace",
                "SCOPE_TAG_node",
                "SCOPE_TAG_container",
            ] {
                assert_eq!(
                    env.iter().filter(|e| e["name"] == ours).count(),
                    1,
                    "{n}/{cname}: {ours} exactly once"
                );
            }
            let ld = env_value(c, "LD_PRELOAD").unwrap();
            let ld = ld.as_str().unwrap();
            assert!(
                ld.split(':').any(|p| p == LIB),
                "{n}/{cname}: LD_PRELOAD={ld}"
            );
            assert!(ld.ends_with(LIB), "{n}/{cname}: our library is appended");
            for (k, path) in [
                ("SCOPE_TAG_pod", "metadata.name"),
                ("SCOPE_TAG_namespace", "metadata.namespace"),
                ("SCOPE_TAG_node", "spec.nodeName"),
            ] {
                if find(&before["env"], k).is_none() {
                    assert_eq!(
                        env_value(c, k).unwrap()["fieldRef"]["fieldPath"],
                        path,
                        "{n}/{cname}: {k}"
                    );
                }
            }
            let user_has = |k: &str| find(&before["env"], k).is_some();
            if !user_has("SCOPE_CONF_PATH") {
                assert_eq!(
                    env_value(c, "SCOPE_CONF_PATH").unwrap(),
                    "/etc/appscope/scope.yml"
                );
            }
            for (k, sub) in [
                ("SCOPE_CMD_DIR", "cmd"),
                ("SCOPE_STATUS_DIR", "status"),
                ("SCOPE_SNAPSHOT_DIR", "crash"),
            ] {
                if !user_has(k) {
                    assert_eq!(
                        env_value(c, k).unwrap(),
                        format!("/appscope/run/{cname}/{sub}"),
                        "{n}/{cname}: {k}"
                    );
                }
            }
            // The user's env entries are all still there with their values (LD_PRELOAD aside).
            for e in before["env"].as_array().into_iter().flatten() {
                if e["name"] != "LD_PRELOAD" {
                    assert!(env.contains(e), "{n}/{cname}: user env {e} kept");
                }
            }
        }
    }
    if let Some(envs) = f.expect["env"].as_object() {
        for (cname, vars) in envs {
            let c = find(&pod["spec"]["containers"], cname).unwrap();
            for (k, v) in vars.as_object().unwrap() {
                assert_eq!(env_value(c, k).as_ref(), Some(v), "{n}/{cname}: {k}");
            }
        }
    }
}

#[test]
fn fixture_corpus_over_https_validates_and_is_idempotent() {
    let r = start();
    let fixtures = load_fixtures();
    assert!(
        fixtures.len() >= 25,
        "at least 25 fixtures, found {}",
        fixtures.len()
    );
    let out = tempfile::tempdir().unwrap();
    let mut to_validate = Vec::new();
    let mut injected_count = 0;
    for f in &fixtures {
        let n = &f.name;
        let path = f.expect["path"].as_str().unwrap();
        let body = serde_json::to_vec(&f.review).unwrap();
        let resp = post(r.server.addr, &r.client, path, &body);
        assert_eq!(
            resp.status,
            200,
            "{n}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let v = resp.json();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{n}");
        assert_eq!(v["kind"], "AdmissionReview", "{n}");
        assert_eq!(
            v["response"]["uid"], f.review["request"]["uid"],
            "{n}: uid echoed"
        );
        assert_eq!(v["response"]["allowed"], true, "{n}: never denies");
        let warnings: Vec<String> = v["response"]["warnings"]
            .as_array()
            .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        for want in f.expect["warnings"].as_array().unwrap() {
            let want = want.as_str().unwrap();
            assert!(
                warnings.iter().any(|w| w.contains(want)),
                "{n}: expected a warning containing {want:?}, got {warnings:?}"
            );
        }
        let orig = &f.review["request"]["object"];
        let patch = patch_of(&v);
        let mutated = match f.expect["injected"].as_array() {
            None => {
                assert!(
                    patch.is_none() || patch.as_ref().unwrap().0.is_empty(),
                    "{n}: expected no patch, got {patch:?}"
                );
                orig.clone()
            }
            Some(exp) => {
                let patch =
                    patch.unwrap_or_else(|| panic!("{n}: expected a patch; warnings {warnings:?}"));
                assert_eq!(v["response"]["patchType"], "JSONPatch", "{n}");
                for op in &patch.0 {
                    assert!(
                        matches!(op, json_patch::PatchOperation::Add(_)),
                        "{n}: only add operations, got {op:?}"
                    );
                }
                let mut pod = orig.clone();
                json_patch::patch(&mut pod, &patch)
                    .unwrap_or_else(|e| panic!("{n}: patch does not apply: {e}"));
                let exp: Vec<String> = exp
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect();
                check_injected(f, orig, &pod, &exp);
                injected_count += 1;

                // Reinvocation: the mutated pod gets no further change.
                let mut again = f.review.clone();
                again["request"]["object"] = pod.clone();
                let v2 = post(
                    r.server.addr,
                    &r.client,
                    path,
                    &serde_json::to_vec(&again).unwrap(),
                )
                .json();
                assert_eq!(v2["response"]["allowed"], true, "{n}");
                let p2 = patch_of(&v2);
                assert!(
                    p2.is_none() || p2.unwrap().0.is_empty(),
                    "{n}: second injection must be a no-op"
                );
                // And the same request twice gives the same answer.
                let v3 = post(r.server.addr, &r.client, path, &body).json();
                assert_eq!(patch_of(&v3), Some(patch), "{n}: deterministic");
                pod
            }
        };
        let file = out.path().join(format!("{n}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&mutated).unwrap()).unwrap();
        to_validate.push(file);
    }
    assert!(
        injected_count >= 20,
        "most fixtures inject, got {injected_count}"
    );
    for version in ["1.28.0", "1.33.0"] {
        if let Some((ok, output)) = kubernetes_validate(version, &to_validate) {
            assert!(
                ok,
                "kubernetes-validate --strict -k {version} failed:\n{output}"
            );
        }
    }
    // Metrics reflect the traffic.
    let m = String::from_utf8(get(r.server.addr, &r.client, "/metrics").body).unwrap();
    let injected_line = m
        .lines()
        .find(|l| l.starts_with("appscope_webhook_injected_pods_total"))
        .unwrap();
    let count: f64 = injected_line
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        count as usize,
        injected_count * 2,
        "injected_pods_total counts each injecting response: {injected_line}"
    );
    assert!(
        m.contains("appscope_webhook_requests_total{outcome=\"skipped\"}"),
        "{m}"
    );
    assert!(
        m.contains("appscope_webhook_request_duration_seconds_bucket"),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("appscope_webhook_warnings_total") && !l.ends_with(" 0")),
        "{m}"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_never_block() {
    let r = start();
    let a = r.server.addr;
    // Malformed JSON.
    let resp = post(a, &r.client, "/mutate", b"{not json");
    assert_eq!(resp.status, 400);
    let msg = resp.json()["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("not an AdmissionReview"), "{msg}");
    // Valid JSON, wrong shape.
    let resp = post(
        a,
        &r.client,
        "/mutate",
        br#"{"kind":"Pod","apiVersion":"v1"}"#,
    );
    assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&resp.body));
    // A review with no request.
    let resp = post(
        a,
        &r.client,
        "/mutate",
        br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#,
    );
    assert_eq!(resp.status, 400);
    assert!(String::from_utf8_lossy(&resp.body).contains("no request"));
    // Too large: rejected with 413 and a reason, without reading it all into a pod.
    let huge = vec![b' '; 5 * 1024 * 1024];
    let resp = post(a, &r.client, "/mutate", &huge);
    assert_eq!(resp.status, 413);
    assert!(String::from_utf8_lossy(&resp.body).contains("limit"));

    let base = load_fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("01-"))
        .unwrap()
        .review;
    // A Deployment sent by a misconfigured webhook rule: allowed, unchanged, explained.
    let mut dep = base.clone();
    dep["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    dep["request"]["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    dep["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}});
    let v = post(a, &r.client, "/mutate", &serde_json::to_vec(&dep).unwrap()).json();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
    assert!(
        v["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("apps/v1 Deployment"),
        "{v}"
    );
    // UPDATE of a pod: not our business.
    let mut upd = base.clone();
    upd["request"]["operation"] = json!("UPDATE");
    upd["request"]["oldObject"] = upd["request"]["object"].clone();
    let v = post(a, &r.client, "/mutate", &serde_json::to_vec(&upd).unwrap()).json();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
    // A pod object that does not parse as a Pod (containers is a string): allowed + warning.
    let mut broken = base.clone();
    broken["request"]["object"]["spec"]["containers"] = json!("nginx");
    let v = post(
        a,
        &r.client,
        "/mutate",
        &serde_json::to_vec(&broken).unwrap(),
    )
    .json();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
    assert!(
        v["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("could not read the pod"),
        "{v}"
    );
    // Unknown route.
    assert_eq!(post(a, &r.client, "/nope", b"{}").status, 404);
    // Still serving, and the errors were counted.
    let m = String::from_utf8(get(a, &r.client, "/metrics").body).unwrap();
    assert!(
        m.contains("appscope_webhook_requests_total{outcome=\"invalid\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("appscope_webhook_requests_total{outcome=\"error\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("appscope_webhook_requests_total{outcome=\"ignored\"} 2"),
        "{m}"
    );
    assert_eq!(get(a, &r.client, "/healthz").status, 200);
    // Plain HTTP is refused (TLS only).
    let mut tcp = std::net::TcpStream::connect(a).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tcp, &mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "plain HTTP must not be served"
    );
}

#[test]
fn readyz_waits_for_a_certificate_then_hot_reload_swaps_without_failed_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    // Start with no certificate at all: live but not ready (and no TLS possible yet).
    let server = Server::start(
        &dir.path().join("tls.crt"),
        &dir.path().join("tls.key"),
        &[],
    );
    let a = server.addr;
    let pki1 = make_pki("generation-1");
    let pki2 = make_pki("generation-2");
    let both = client_config(&[&pki1.ca_pem, &pki2.ca_pem]);
    assert!(
        tls_connect(a, &both).is_err(),
        "no certificate yet: handshake cannot succeed"
    );
    write_secret_dir(dir.path(), &pki1, 1);
    assert!(
        wait_until(Duration::from_secs(15), || request(
            a, &both, "GET", "/readyz", b""
        )
        .is_ok_and(|r| r.status == 200)),
        "ready once the files appear; logs {:?}",
        server.logs()
    );
    let served = |cfg| {
        request(a, cfg, "GET", "/healthz", b"")
            .unwrap()
            .peer_cert
            .unwrap()
    };
    let gen1 = served(&both);
    assert_eq!(
        &gen1[..],
        &rustls_pemfile::certs(&mut pki1.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()[..]
    );

    // Hammer handshakes from two threads while the Secret rotates.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (stop, both) = (stop.clone(), both.clone());
        threads.push(std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match request(a, &both, "GET", "/readyz", b"") {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    write_secret_dir(dir.path(), &pki2, 2);
    let gen2_der = rustls_pemfile::certs(&mut pki2.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let swapped = wait_until(Duration::from_secs(15), || {
        served(&both)[..] == gen2_der[..]
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in threads {
        let (ok, failed) = t.join().unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during rotation: {failed:?}"
        );
        total += ok;
    }
    assert!(
        swapped,
        "new certificate served after rotation; logs {:?}",
        server.logs()
    );
    assert!(
        total > 20,
        "handshakes kept succeeding during the swap ({total})"
    );
    // A client that trusts only the new CA now connects; one trusting only the old fails.
    assert!(tls_connect(a, &client_config(&[&pki2.ca_pem])).is_ok());
    assert!(tls_connect(a, &client_config(&[&pki1.ca_pem])).is_err());

    // A broken write (key of another pair) is refused; the current cert stays in use.
    let pki3 = make_pki("generation-3");
    let bad = TestPki {
        ca_pem: String::new(),
        cert_pem: pki3.cert_pem.clone(),
        key_pem: pki1.key_pem.clone(),
    };
    write_secret_dir(dir.path(), &bad, 3);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        served(&both)[..],
        gen2_der[..],
        "mismatched pair must not replace the working certificate"
    );
    let m = String::from_utf8(get(a, &both, "/metrics").body).unwrap();
    assert!(
        m.contains("appscope_webhook_cert_reloads_total{result=\"error\"}"),
        "{m}"
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut r = start();
    let a = r.server.addr;
    let body = serde_json::to_vec(
        &load_fixtures()
            .into_iter()
            .find(|f| f.name.starts_with("01-"))
            .unwrap()
            .review,
    )
    .unwrap();
    // Open a request and send only half of its body.
    let mut s = tls_connect(a, &r.client).unwrap();
    write!(
        s,
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let half = body.len() / 2;
    s.write_all(&body[..half]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    send_signal(r.server.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(500));
    // New connections are refused once the listener is closed.
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_err()
        }),
        "listener closed after SIGTERM"
    );
    // The in-flight request completes.
    s.write_all(&body[half..]).unwrap();
    s.flush().unwrap();
    let (status, _, resp) = read_response(&mut s).unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&resp).unwrap();
    assert!(
        patch_of(&v).is_some(),
        "the in-flight request got its patch"
    );
    drop(s);
    // And the process exits on its own, cleanly.
    let exited = wait_until(Duration::from_secs(10), || {
        matches!(r.server.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "webhook exits after draining");
    let status = r.server.child.wait().unwrap();
    assert!(status.success(), "clean exit, got {status}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let _ = &r.dir;
    let _ = &r.pki;
}

/// Sends a signal with the `kill` program (no unsafe code in this crate).
fn send_signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn settings_from_env_as_the_chart_sets_them() {
    // The chart passes most settings as APPSCOPE_* env (charts/appscope/templates/webhook-deployment.yaml).
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("env-test");
    write_secret_dir(dir.path(), &pki, 1);
    let bin = testkit::bin_path("appscope-webhook", "appscope-webhook");
    let mut child = std::process::Command::new(bin)
        .env("APPSCOPE_LISTEN", "127.0.0.1:0")
        .env("APPSCOPE_CERTS", "files")
        .env("APPSCOPE_TLS_CERT", dir.path().join("tls.crt"))
        .env("APPSCOPE_TLS_KEY", dir.path().join("tls.key"))
        .env("APPSCOPE_INIT_IMAGE", "registry.example.com/appscope:9.9")
        .env("APPSCOPE_INIT_IMAGE_PULL_POLICY", "IfNotPresent")
        .env("APPSCOPE_VOLUME_SIZE_LIMIT", "1Gi")
        .env("APPSCOPE_EXCLUDE_NAMESPACES", "kube-system,batch")
        .env("APPSCOPE_SERVICE_NAME", "rel-appscope-webhook")
        .env("APPSCOPE_WEBHOOK_CONFIG_NAME", "rel-appscope-webhook")
        .env("APPSCOPE_SECRET_NAME", "rel-appscope-webhook-tls")
        .env("APPSCOPE_LEASE_NAME", "rel-appscope-webhook-certs")
        .env("APPSCOPE_POD_NAME", "rel-appscope-webhook-abc")
        .env("APPSCOPE_NAMESPACE", "appscope")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Keep draining stderr for the whole run (a closed pipe would break the server's logging).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(l) = v["listen"].as_str()
            {
                let _ = tx.send(l.parse::<std::net::SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).ok();
    let addr = addr.expect("started with env settings");
    let client = client_config(&[&pki.ca_pem]);
    let f = load_fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("01-"))
        .unwrap();
    let v = post(
        addr,
        &client,
        "/mutate",
        &serde_json::to_vec(&f.review).unwrap(),
    )
    .json();
    let mut pod = f.review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch_of(&v).unwrap()).unwrap();
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["image"], "registry.example.com/appscope:9.9");
    assert_eq!(init["imagePullPolicy"], "IfNotPresent");
    let vols = pod["spec"]["volumes"].as_array().unwrap();
    assert!(
        vols.iter()
            .any(|v| v["name"] == "appscope" && v["emptyDir"]["sizeLimit"] == "1Gi")
    );
    // "batch" is excluded through the env list, the release namespace through APPSCOPE_NAMESPACE.
    for ns in ["batch", "appscope"] {
        let mut r = f.review.clone();
        r["request"]["namespace"] = json!(ns);
        let v = post(addr, &client, "/mutate", &serde_json::to_vec(&r).unwrap()).json();
        assert!(patch_of(&v).is_none(), "{ns} is excluded");
    }
    let _ = child.kill();
    let _ = child.wait();
}
