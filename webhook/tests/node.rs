//! Node-level check that an injected pod really works: the mutated spec's volumes are
//! materialised as directories, its init container's command runs (the real
//! `appscope-operator copy-lib`), then one app container's command runs with the pod's
//! env and mounts, each in its own mount namespace with a read-only overlay root, as the
//! container's non-root user. The app must load libscope.so and write its status file
//! where the agent looks for it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appscope_webhook::inject::InjectConfig;
use appscope_webhook::review;
use common::*;
use serde_json::Value;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Shell script: private mount ns, overlay root (writes go to `upper`, then the root is
/// made read-only), the container's volume mounts bound in, then chroot + setpriv + env.
fn container_script(
    root: &Path,
    volumes: &BTreeMap<String, PathBuf>,
    c: &Value,
    extra_binds: &[PathBuf],
    uid: i64,
    env: &[(String, String)],
    argv: &[String],
) -> String {
    let m = root.join("merged");
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let mut s = String::from("set -e\nmount --make-rprivate /\n");
    s += &format!(
        "mount -t overlay overlay -o lowerdir=/,upperdir={},workdir={} {}\n",
        q(&root.join("upper")),
        q(&root.join("work")),
        q(&m)
    );
    s += &format!("mount --rbind /dev {}/dev\n", q(&m));
    s += &format!("mount -t proc proc {}/proc\n", q(&m));
    for b in extra_binds {
        let target = m.join(b.strip_prefix("/").unwrap());
        s += &format!("mkdir -p {t}\nmount --bind {} {t}\n", q(b), t = q(&target));
    }
    let mut mounts = Vec::new();
    for vm in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = vm["name"].as_str().unwrap();
        let Some(src) = volumes.get(name) else {
            continue;
        };
        let target = m.join(vm["mountPath"].as_str().unwrap().trim_start_matches('/'));
        s += &format!("mkdir -p {t}\n", t = q(&target));
        mounts.push((src.clone(), target, vm["readOnly"] == true));
    }
    // Read-only root filesystem, as readOnlyRootFilesystem: true.
    s += &format!(
        "mount --rbind {m} {m}\nmount -o remount,bind,ro {m}\n",
        m = q(&m)
    );
    for (src, target, ro) in mounts {
        s += &format!("mount --bind {} {}\n", q(&src), q(&target));
        if ro {
            s += &format!("mount -o remount,bind,ro {}\n", q(&target));
        }
    }
    s += &format!(
        "cd {m}\nexec chroot {m} /usr/bin/setpriv --reuid={uid} --regid={uid} --clear-groups /usr/bin/env -i",
        m = q(&m)
    );
    for (k, v) in env {
        s += &format!(" {}", sh_quote(&format!("{k}={v}")));
    }
    for a in argv {
        s += &format!(" {}", sh_quote(a));
    }
    s += "\n";
    s
}

/// The container's env as the kubelet would resolve it for this pod.
fn resolve_env(c: &Value, pod_name: &str, ns: &str, node: &str) -> Vec<(String, String)> {
    let mut out = vec![(
        "PATH".to_string(),
        "/usr/local/bin:/usr/bin:/bin".to_string(),
    )];
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e.get("value") {
            v.as_str().unwrap().to_string()
        } else {
            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod_name.to_string(),
                Some("metadata.namespace") => ns.to_string(),
                Some("spec.nodeName") => node.to_string(),
                other => panic!("unsupported valueFrom {other:?} in {e}"),
            }
        };
        out.retain(|(k, _)| *k != name);
        out.push((name, value));
    }
    out
}

fn fresh_root(base: &Path, name: &str) -> PathBuf {
    let r = base.join(name);
    for d in ["upper", "work", "merged"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    r
}

#[test]
fn injected_pod_loads_the_library() {
    run_injected_pod(false);
}

/// Nothing prepares `/appscope/run/<container>/status` in a pod: the library creates it.
#[test]
fn injected_pod_writes_its_status_file() {
    run_injected_pod(true);
}

fn run_injected_pod(check_status: bool) {
    let lib = testkit::libscope_path();
    let operator = testkit::bin_path("appscope-operator", "appscope-operator");
    // The restricted fixture: non-root uid 1001, read-only root, python3 -m http.server.
    let f = load_fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("13-restricted"))
        .unwrap();
    let cfg = InjectConfig::new(INIT_IMAGE, Some("appscope-system"));
    let reply = review::review(&serde_json::to_vec(&f.review).unwrap(), false, &cfg);
    assert_eq!(reply.status, 200);
    let resp: Value = serde_json::from_slice(&reply.body).unwrap();
    let patch = patch_of(&resp).expect("patch");
    let mut pod = f.review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();

    let tmp = tempfile::Builder::new()
        .prefix("appscope-node-")
        .tempdir()
        .unwrap();
    let base = tmp.path();
    // Materialise the volumes: emptyDirs as 0777 directories (as the kubelet does),
    // the ConfigMap as its files.
    let mut volumes = BTreeMap::new();
    for v in pod["spec"]["volumes"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let dir = base.join("volumes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if v.get("emptyDir").is_some() {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        } else if let Some(cm) = v.get("configMap") {
            assert_eq!(cm["name"], "appscope");
            std::fs::write(
                dir.join("scope.yml"),
                "libscope:\n  summaryperiod: 1\n  log:\n    level: warning\n",
            )
            .unwrap();
        } else if v.get("projected").is_some() {
            std::fs::write(dir.join("token"), "test-token").unwrap();
        }
        volumes.insert(name.to_string(), dir);
    }
    let bin_dir = |p: &Path| p.parent().unwrap().to_path_buf();
    let binds = vec![bin_dir(&lib), bin_dir(&operator)];

    // 1. The init container, as its securityContext says (non-root, read-only root).
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "appscope-init");
    let mut argv: Vec<String> = init["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], "appscope-operator");
    argv[0] = operator.display().to_string();
    let uid = init["securityContext"]["runAsUser"].as_i64().unwrap();
    let env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("APPSCOPE_LIB_SOURCE".to_string(), lib.display().to_string()),
    ];
    let script = container_script(
        &fresh_root(base, "init"),
        &volumes,
        init,
        &binds,
        uid,
        &env,
        &argv,
    );
    let out = Command::new("timeout")
        .args(["60", "unshare", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init container failed: {}\n{}\nscript:\n{script}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = volumes["appscope"].join("lib/libscope.so");
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&lib).unwrap(),
        "library copied intact"
    );

    // 2. The app container with the pod's env and mounts.
    let app = &pod["spec"]["containers"][0];
    let cname = app["name"].as_str().unwrap();
    let env = resolve_env(app, "restricted-app-84c7d6f5b9-x2x9z", "secure", "node-1");
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("LD_PRELOAD"), "/appscope/lib/libscope.so");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut argv: Vec<String> = app["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[..3], ["python3", "-m", "http.server"]);
    argv[0] = "/usr/bin/python3".into();
    argv.truncate(3);
    argv.extend([port.to_string(), "--bind".into(), "127.0.0.1".into()]);
    let uid = app["securityContext"]["runAsUser"].as_i64().unwrap();
    let script = container_script(
        &fresh_root(base, "app"),
        &volumes,
        app,
        &[],
        uid,
        &env,
        &argv,
    );
    let child = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    // sh execs chroot, setpriv, env and python in turn: same pid throughout.
    let loaded = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|m| m.contains("/appscope/lib/libscope.so"))
    });
    if !loaded {
        let _ = child.0.kill();
        let out = child.0.wait_with_output_ref();
        panic!("libscope.so not in /proc/{pid}/maps; stderr: {out}");
    }
    let status_uid = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status_uid
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&uid.to_string())),
        "runs as uid {uid}"
    );
    // Serve something so the process is doing real work.
    let served = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok() && {
                let mut b = String::new();
                let _ = s.read_to_string(&mut b);
                b.starts_with("HTTP/1.0 200")
            }
        })
    });
    assert!(served, "python http.server answered under the library");
    if !check_status {
        return;
    }
    // The status file, where the agent reads it: <emptyDir>/run/<container>/status/<pid>.json.
    assert_eq!(
        get("SCOPE_STATUS_DIR"),
        format!("/appscope/run/{cname}/status")
    );
    let status_dir = volumes["appscope"].join(format!("run/{cname}/status"));
    let status_file = status_dir.join(format!("{pid}.json"));
    let written = wait_until(Duration::from_secs(20), || status_file.exists());
    assert!(
        written,
        "no status file at {} (dir exists: {}); the library must create SCOPE_STATUS_DIR or something must pre-create it",
        status_file.display(),
        status_dir.exists()
    );
    let s: Value = serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    assert_eq!(s["pid"], pid);
    assert_eq!(s["scoped"], true);
    // The config came from the ConfigMap file at SCOPE_CONF_PATH.
    let cur = s["config"]["current"].to_string();
    assert!(cur.contains("summaryperiod"), "config in effect: {cur}");
}

trait WaitOut {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitOut for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(e) = self.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}
