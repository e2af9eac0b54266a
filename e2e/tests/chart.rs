//! The Helm chart (charts/appscope) and the manifests generated from it (issue 6).
//!
//! Renders the chart with the real helm (from `.tools/`, see `.ci/setup.d/60-chart.sh`) and
//! checks what users and the other components rely on: the webhook registration contract,
//! least-privilege agent, certificate modes, persistence choices, stable renders, and that
//! the committed manifests/ and docs/reference/chart-values.md are up to date.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::*;

const TEST: &str = "chart tests";

fn helm() -> Option<std::path::PathBuf> {
    require_tool("helm", TEST)
}

fn render(args: &[&str]) -> Vec<Value> {
    let helm = helm().expect("checked by caller");
    helm_template(&helm, args).unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args_of(c: &Value) -> Vec<String> {
    c["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn first_diff(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}:\n  committed: {x}\n  rendered:  {y}", i + 1);
        }
    }
    format!(
        "lengths differ: committed {} lines, rendered {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

#[test]
fn manifests_are_up_to_date() {
    let Some(helm) = helm() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(
        Command::new(chart_dir().join("hack").join("gen-manifests.sh"))
            .arg(tmp.path())
            .env("HELM", &helm),
    );
    assert!(
        out.status.success(),
        "gen-manifests.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["crds.yaml", "install.yaml"] {
        let committed = std::fs::read_to_string(root().join("manifests").join(f))
            .unwrap_or_else(|e| panic!("manifests/{f}: {e}"));
        let fresh = std::fs::read_to_string(tmp.path().join(f)).expect("rendered file");
        assert!(
            committed == fresh,
            "manifests/{f} is stale (the chart changed): run charts/appscope/hack/gen-manifests.sh \
             and commit the result. First difference at {}",
            first_diff(&committed, &fresh)
        );
    }
    // install.yaml is self-contained: the namespace, the CRDs and every workload.
    let objs = parse_docs(&std::fs::read_to_string(root().join("manifests/install.yaml")).unwrap());
    assert_eq!(objs[0]["kind"], "Namespace");
    assert_eq!(objs[0]["metadata"]["name"], "appscope");
    for (kind, name) in [
        ("DaemonSet", "appscope-agent"),
        ("Deployment", "appscope-controller"),
        ("Deployment", "appscope-webhook"),
        ("MutatingWebhookConfiguration", "appscope-webhook"),
        ("PersistentVolumeClaim", "appscope-crash-reports"),
    ] {
        find(&objs, kind, name);
    }
    for o in &objs {
        let ns = &o["metadata"]["namespace"];
        assert!(
            ns.is_null() || ns == "appscope",
            "{} in namespace {ns}",
            o["metadata"]["name"]
        );
    }
}

#[test]
fn values_reference_is_current() {
    let schema = read_json(&chart_dir().join("values.schema.json"));
    let values = read_yaml(&chart_dir().join("values.yaml"));
    let doc = values_doc(&schema, &values);
    let path = root().join("docs/reference/chart-values.md");
    if std::env::var_os("APPSCOPE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &doc).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == doc,
        "docs/reference/chart-values.md is stale: run \
         `APPSCOPE_BLESS=1 cargo test -p e2e --test chart values_reference` and commit it. \
         First difference at {}",
        first_diff(&committed, &doc)
    );
}

#[test]
fn every_value_is_described_by_the_schema() {
    let schema = read_json(&chart_dir().join("values.schema.json"));
    let values = read_yaml(&chart_dir().join("values.yaml"));
    let mut paths = Vec::new();
    value_paths(&values, &[], &mut paths);
    assert!(paths.len() > 50, "values.yaml has {} leaves", paths.len());
    let mut missing = Vec::new();
    for p in &paths {
        // the leaf itself or its closest described ancestor must carry a description
        let described = (1..=p.len()).rev().any(|len| {
            schema_at(&schema, &p[..len])
                .is_some_and(|s| s["description"].as_str().is_some_and(|d| !d.is_empty()))
        });
        if schema_at(&schema, p).is_none() || !described {
            missing.push(p.join("."));
        }
    }
    assert!(
        missing.is_empty(),
        "values without a described schema entry: {missing:?}"
    );
    // and the schema refuses keys it does not know, at the top level and in each section
    assert_eq!(schema["additionalProperties"], json!(false));
    for (k, s) in schema["properties"].as_object().unwrap() {
        if s["type"] == "object" && s.get("properties").is_some() {
            assert_eq!(
                s["additionalProperties"],
                json!(false),
                "section {k} is open"
            );
        }
    }
}

#[test]
fn webhook_registration_follows_the_contract() {
    if helm().is_none() {
        return;
    }
    let objs = render(&[]);
    let mwc = find(&objs, "MutatingWebhookConfiguration", "appscope-webhook");
    let hooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(
        hooks.len(),
        2,
        "one entry for annotated pods, one for enabled namespaces"
    );
    for h in hooks {
        assert_eq!(h["failurePolicy"], "Ignore");
        assert_eq!(h["timeoutSeconds"], 5);
        assert_eq!(h["sideEffects"], "None");
        assert_eq!(h["reinvocationPolicy"], "IfNeeded");
        assert_eq!(h["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(h["rules"][0]["operations"], json!(["CREATE"]));
        assert_eq!(h["rules"][0]["resources"], json!(["pods"]));
        let svc = &h["clientConfig"]["service"];
        assert_eq!(svc["namespace"], "appscope");
        // the Service it names exists and targets the webhook's https port
        let service = find(&objs, "Service", svc["name"].as_str().unwrap());
        assert_eq!(service["spec"]["ports"][0]["port"], svc["port"]);
        // self mode: no Helm-generated CA; the webhook writes it
        assert!(h["clientConfig"].get("caBundle").is_none());
        let exprs = h["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap();
        let names = exprs
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name")
            .expect("namespace name exclusion");
        assert_eq!(names["operator"], "NotIn");
        let excluded = names["values"].as_array().unwrap();
        assert!(excluded.contains(&json!("kube-system")) && excluded.contains(&json!("appscope")));
        let conds = h["matchConditions"]
            .as_array()
            .expect("matchConditions on >= 1.28");
        assert!(conds.iter().any(|c| {
            c["expression"]
                .as_str()
                .unwrap()
                .contains("appscope.dev/injected")
        }));
    }
    let by_name = |n: &str| hooks.iter().find(|h| h["name"] == n).unwrap();
    let pods = by_name("pods.appscope.dev");
    assert_eq!(pods["clientConfig"]["service"]["path"], "/mutate");
    let sel = pods["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    assert!(sel.contains(
        &json!({"key":"appscope.dev/scope","operator":"NotIn","values":["disabled","enabled"]})
    ));
    let exprs: Vec<&str> = pods["matchConditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["expression"].as_str().unwrap())
        .collect();
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("['appscope.dev/scope'] == 'true'")),
        "{exprs:?}"
    );
    let nss = by_name("namespaces.appscope.dev");
    assert_eq!(nss["clientConfig"]["service"]["path"], "/mutate/namespace");
    let sel = nss["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    assert!(
        sel.contains(&json!({"key":"appscope.dev/scope","operator":"In","values":["enabled"]}))
    );

    // without matchConditions support requested, the entries are plain (webhook decides)
    let objs = render(&["--set", "webhook.matchConditions=never"]);
    let mwc = find(&objs, "MutatingWebhookConfiguration", "appscope-webhook");
    assert!(mwc["webhooks"][0].get("matchConditions").is_none());
}

#[test]
fn webhook_deployment_is_highly_available_and_wired() {
    if helm().is_none() {
        return;
    }
    let objs = render(&[]);
    let chart = read_yaml(&chart_dir().join("Chart.yaml"));
    let image = format!(
        "ghcr.io/appscope-k8s/appscope:{}",
        chart["appVersion"].as_str().unwrap()
    );
    let dep = find(&objs, "Deployment", "appscope-webhook");
    assert_eq!(dep["spec"]["replicas"], 2);
    let c = container(dep, "webhook");
    assert_eq!(
        c["image"],
        image.as_str(),
        "image tag defaults to the chart's appVersion"
    );
    assert_eq!(c["command"], json!(["/usr/bin/appscope-webhook"]));
    let args = args_of(c);
    for want in [
        "--listen=0.0.0.0:8443".to_string(),
        "--certs=self".to_string(),
        format!("--init-image={image}"),
        "--namespace=appscope".to_string(),
    ] {
        assert!(args.contains(&want), "webhook args {args:?} lack {want}");
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let anti = &dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert!(anti["preferredDuringSchedulingIgnoredDuringExecution"].is_array());
    let pdb = find(&objs, "PodDisruptionBudget", "appscope-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );
    // standard labels
    let labels = &dep["metadata"]["labels"];
    for k in [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    ] {
        assert!(labels.get(k).is_some(), "label {k} missing: {labels}");
    }
    // self mode: RBAC for exactly the Secret and the MutatingWebhookConfiguration
    let role = find(&objs, "Role", "appscope-webhook-certs");
    let rules = role["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["resourceNames"] == json!(["appscope-webhook-tls"]))
    );
    let cr = find(&objs, "ClusterRole", "appscope-webhook-cabundle");
    assert_eq!(cr["rules"][0]["resourceNames"], json!(["appscope-webhook"]));
    let env = &c["env"];
    let env_value = |n: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        env_value("APPSCOPE_WEBHOOK_CONFIG_NAME"),
        Some(json!("appscope-webhook"))
    );
    assert_eq!(
        env_value("APPSCOPE_SECRET_NAME"),
        Some(json!("appscope-webhook-tls"))
    );
    assert_eq!(
        env_value("APPSCOPE_SERVICE_NAME"),
        Some(json!("appscope-webhook"))
    );
    let lease = env_value("APPSCOPE_LEASE_NAME").expect("lease env");
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["leases"]) && r["resourceNames"] == json!([lease]))
    );

    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let objs = render(&[
        "--set",
        &format!("image.digest={digest}"),
        "--set",
        "image.tag=9.9.9",
    ]);
    let c = container(find(&objs, "Deployment", "appscope-webhook"), "webhook");
    assert_eq!(
        c["image"],
        format!("ghcr.io/appscope-k8s/appscope@{digest}").as_str()
    );
}

#[test]
fn agent_is_unprivileged_with_only_its_capabilities() {
    if helm().is_none() {
        return;
    }
    let objs = render(&[]);
    let ds = find(&objs, "DaemonSet", "appscope-agent");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    assert!(spec.get("hostNetwork").is_none());
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    let c = container(ds, "agent");
    assert_eq!(c["command"], json!(["/usr/bin/appscope-operator"]));
    assert_eq!(args_of(c)[0], "agent");
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let add = sc["capabilities"]["add"].as_array().unwrap();
    assert!(add.contains(&json!("SYS_PTRACE")) && add.contains(&json!("DAC_READ_SEARCH")));
    assert!(
        !add.contains(&json!("SYS_ADMIN")),
        "SYS_ADMIN is not granted by default"
    );
    assert!(c["resources"]["limits"]["memory"].is_string());
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| mounts.iter().find(|m| m["name"] == name).unwrap().clone();
    assert_eq!(mount("proc")["readOnly"], true);
    assert_eq!(mount("kubelet-root")["mountPath"], "/var/lib/kubelet");
    assert_eq!(
        mount("crash-reports")["mountPath"],
        "/var/lib/appscope/reports"
    );
    let vols = spec["volumes"].as_array().unwrap();
    let vol = |name: &str| vols.iter().find(|v| v["name"] == name).unwrap().clone();
    assert_eq!(vol("proc")["hostPath"]["path"], "/proc");
    assert_eq!(vol("kubelet-root")["hostPath"]["path"], "/var/lib/kubelet");
    assert_eq!(
        vol("crash-reports")["persistentVolumeClaim"]["claimName"],
        "appscope-crash-reports"
    );

    // the flags' env names from docs/reference/operator.md
    let env = c["env"].as_array().unwrap();
    let node = env
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let store = env.iter().find(|e| e["name"] == "APPSCOPE_STORE").unwrap();
    assert_eq!(store["value"], mount("crash-reports")["mountPath"]);

    // a non-default kubelet root moves both the mount and the hostPath
    let objs = render(&["--set", "kubeletRootDir=/data/kubelet"]);
    let ds = find(&objs, "DaemonSet", "appscope-agent");
    let vols = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        vols.iter()
            .any(|v| v["hostPath"]["path"] == "/data/kubelet")
    );

    // the controller runs one active replica under a Lease it may update
    let objs = render(&[]);
    let ctl = find(&objs, "Deployment", "appscope-controller");
    assert_eq!(ctl["spec"]["replicas"], 1);
    let c = container(ctl, "controller");
    let cfg = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "APPSCOPE_DEFAULT_CONFIG")
        .unwrap();
    let cfg_path = cfg["value"].as_str().unwrap();
    let m = &c["volumeMounts"][0];
    assert_eq!(
        format!("{}/scope.yml", m["mountPath"].as_str().unwrap()),
        cfg_path
    );
    let vol = &ctl["spec"]["template"]["spec"]["volumes"][0];
    let cm = find(
        &objs,
        "ConfigMap",
        vol["configMap"]["name"].as_str().unwrap(),
    );
    let scope_yml = cm["data"]["scope.yml"].as_str().unwrap();
    let parsed: serde_yaml::Value =
        serde_yaml::from_str(scope_yml).expect("default scope.yml is YAML");
    assert!(
        parsed.get("metric").is_some()
            && parsed.get("event").is_some()
            && parsed.get("libscope").is_some()
    );
    let role = find(&objs, "Role", "appscope-controller-leader-election");
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == json!(["leases"])
                && r["resourceNames"] == json!(["appscope-controller"]))
    );
    // and the ClusterRoles for users aggregate into view/edit
    let view = find(&objs, "ClusterRole", "appscope-view");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    let proxy = find(&objs, "Role", "appscope-cli-agent-proxy");
    assert!(
        proxy["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == json!(["pods/proxy"]))
    );
}

#[test]
fn certificate_modes() {
    if helm().is_none() {
        return;
    }
    // cert-manager: Issuer + Certificate whose Secret the webhook mounts; CA injected
    let objs = render(&["--set", "webhook.certs.mode=cert-manager"]);
    let cert = find(&objs, "Certificate", "appscope-webhook");
    let issuer = find(&objs, "Issuer", "appscope-selfsigned");
    assert_eq!(
        cert["spec"]["issuerRef"]["name"],
        issuer["metadata"]["name"]
    );
    let dns: Vec<&str> = cert["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(dns.contains(&"appscope-webhook.appscope.svc"), "{dns:?}");
    let mwc = find(&objs, "MutatingWebhookConfiguration", "appscope-webhook");
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "appscope/appscope-webhook"
    );
    let dep = find(&objs, "Deployment", "appscope-webhook");
    let c = container(dep, "webhook");
    let args = args_of(c);
    assert!(args.contains(&"--certs=files".to_string()), "{args:?}");
    assert!(args.contains(&"--tls-cert=/etc/appscope-webhook/tls/tls.crt".to_string()));
    assert_eq!(
        dep["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        cert["spec"]["secretName"]
    );
    assert!(
        kinds(&objs, "Role")
            .iter()
            .all(|r| r["metadata"]["name"] != "appscope-webhook-certs")
    );

    // cert-manager with the user's ClusterIssuer: no Issuer rendered
    let objs = render(&[
        "--set",
        "webhook.certs.mode=cert-manager",
        "--set",
        "webhook.certs.certManager.issuerRef.name=corp-ca",
        "--set",
        "webhook.certs.certManager.issuerRef.kind=ClusterIssuer",
    ]);
    assert!(kinds(&objs, "Issuer").is_empty());
    assert_eq!(
        find(&objs, "Certificate", "appscope-webhook")["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );

    // secret: the user's Secret and CA
    let objs = render(&[
        "--set",
        "webhook.certs.mode=secret",
        "--set",
        "webhook.certs.secretName=my-tls",
        "--set",
        "webhook.certs.caBundle=QUJDRA==",
    ]);
    let mwc = find(&objs, "MutatingWebhookConfiguration", "appscope-webhook");
    for h in mwc["webhooks"].as_array().unwrap() {
        assert_eq!(h["clientConfig"]["caBundle"], "QUJDRA==");
    }
    let dep = find(&objs, "Deployment", "appscope-webhook");
    assert_eq!(
        dep["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "my-tls"
    );
    assert!(kinds(&objs, "Certificate").is_empty());

    // mode secret without its Secret and CA is refused by the schema
    let err = helm_template(&helm().unwrap(), &["--set", "webhook.certs.mode=secret"]).unwrap_err();
    assert!(err.contains("/webhook/certs/secretName"), "{err}");
}

#[test]
fn default_render_is_stable_for_gitops() {
    let Some(helm) = helm() else { return };
    let a = run(Command::new(&helm)
        .args(["template", "appscope"])
        .arg(chart_dir())
        .args(["-n", "appscope"]));
    let b = run(Command::new(&helm)
        .args(["template", "appscope"])
        .arg(chart_dir())
        .args(["-n", "appscope"]));
    assert!(a.status.success());
    assert_eq!(
        a.stdout, b.stdout,
        "two renders differ (random certificates or names?)"
    );
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(!text.contains("BEGIN CERTIFICATE") && !text.contains("kind: Secret"));
}

#[test]
fn crash_report_persistence_choices() {
    if helm().is_none() {
        return;
    }
    let claim = |objs: &[Value]| {
        find(objs, "DaemonSet", "appscope-agent")["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "crash-reports")
            .unwrap()
            .clone()
    };
    let objs = render(&[]);
    let pvc = find(&objs, "PersistentVolumeClaim", "appscope-crash-reports");
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteMany"]));
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(
        pvc["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(
        pvc["spec"].get("storageClassName").is_none(),
        "default class"
    );

    let objs = render(&[
        "--set",
        "crashReports.persistence.accessModes={ReadWriteOnce}",
        "--set",
        "crashReports.persistence.storageClass=-",
        "--set",
        "crashReports.persistence.size=1Gi",
    ]);
    let pvc = find(&objs, "PersistentVolumeClaim", "appscope-crash-reports");
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(pvc["spec"]["storageClassName"], "");

    let objs = render(&[
        "--set",
        "crashReports.persistence.existingClaim=team-reports",
    ]);
    assert!(kinds(&objs, "PersistentVolumeClaim").is_empty());
    assert_eq!(
        claim(&objs)["persistentVolumeClaim"]["claimName"],
        "team-reports"
    );

    let objs = render(&["--set", "crashReports.persistence.enabled=false"]);
    assert!(kinds(&objs, "PersistentVolumeClaim").is_empty());
    assert_eq!(
        claim(&objs)["hostPath"]["path"],
        "/var/lib/appscope/reports"
    );
}

#[test]
fn bad_values_fail_with_the_schema_message() {
    let Some(helm) = helm() else { return };
    for (set, want) in [
        (
            "webhook.certs.mode=bogus",
            "value must be one of 'self', 'cert-manager', 'secret'",
        ),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        (
            "crashReports.persistence.accessModes={ReadOnlyMany}",
            "/crashReports/persistence/accessModes/0",
        ),
        ("agent.capabilities={SYS_MODULE}", "/agent/capabilities/0"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("kubeletRootDir=relative/path", "/kubeletRootDir"),
        ("webhook.replicas=0", "/webhook/replicas"),
        (
            "controller.unknown=1",
            "additional properties 'unknown' not allowed",
        ),
    ] {
        let err = helm_template(&helm, &["--set", set])
            .err()
            .unwrap_or_else(|| panic!("--set {set} was accepted"));
        assert!(
            err.contains(want),
            "--set {set}: error lacks {want:?}:\n{err}"
        );
    }
}

/// The library's own loader (scope-config) reads the chart's default scope.yml.
fn load_scope_yml(text: &str) -> scope_config::load::Loaded {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scope.yml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_string_lossy().into_owned();
    scope_config::load::load(&|n: &str| (n == "SCOPE_CONF_PATH").then(|| p.clone()))
}

#[test]
fn default_scope_yml_loads_cleanly_in_the_library() {
    let values = read_yaml(&chart_dir().join("values.yaml"));
    let text = values["scopeYml"].as_str().expect("scopeYml is a string");
    let loaded = load_scope_yml(text);
    assert!(loaded.path.is_some(), "the file was not used");
    assert!(
        loaded.diagnostics.is_empty(),
        "the chart's default scope.yml has problems: {:?}",
        loaded.diagnostics
    );
    // the same loader does complain about a broken file, so the check above can fail
    let broken =
        load_scope_yml("metric:\n  enable: maybe\n  transport:\n    type: carrier-pigeon\n");
    assert!(
        !broken.diagnostics.is_empty(),
        "a broken scope.yml gave no diagnostics"
    );
}

#[test]
fn optional_monitoring_and_network_policies() {
    if helm().is_none() {
        return;
    }
    // off by default: no ServiceMonitor, no NetworkPolicy, and no Service in front of the
    // agents (the CLI goes through the pod proxy)
    let objs = render(&[]);
    assert!(kinds(&objs, "ServiceMonitor").is_empty() && kinds(&objs, "NetworkPolicy").is_empty());
    assert!(
        kinds(&objs, "Service")
            .iter()
            .all(|s| s["metadata"]["name"] != "appscope-agent")
    );

    let objs = render(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServerCIDRs={172.18.0.2/32}",
    ]);
    for c in ["agent", "controller", "webhook"] {
        let name = format!("appscope-{c}");
        let sm = find(&objs, "ServiceMonitor", &name);
        let svc = find(&objs, "Service", &name);
        // the ServiceMonitor selects its Service, and names one of its ports
        let sel = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
        for (k, v) in sel {
            assert_eq!(
                &svc["metadata"]["labels"][k.as_str()],
                v,
                "{name}: label {k}"
            );
        }
        let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
        assert!(
            svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == port)
        );
        let np = find(&objs, "NetworkPolicy", &name);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let from = &np["spec"]["ingress"][0]["from"];
        if c == "controller" {
            assert!(
                from.is_null(),
                "controller metrics open to any scraper by default"
            );
        } else {
            assert_eq!(
                from,
                &json!([{"ipBlock": {"cidr": "172.18.0.2/32"}}]),
                "{name}"
            );
        }
    }
}
