//! The CRDs `crdgen` prints: names, printer columns, admission-time validation.

use appscope_operator::crd::{ScopeConfig, ScopeConfigSpec, all_crds, all_crds_yaml};
use serde_json::{Value, json};

fn schema_of(kind: &str) -> (Value, Value) {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let v = serde_json::to_value(&crd).unwrap();
    let version = v["spec"]["versions"][0].clone();
    (v, version)
}

fn columns(version: &Value) -> Vec<(String, String)> {
    version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn three_namespaced_crds_in_group() {
    let crds = all_crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "scopeconfigs.appscope.dev",
            "scopesnapshots.appscope.dev",
            "scopecrashreports.appscope.dev"
        ]
    );
    for c in &crds {
        assert_eq!(c.spec.scope, "Namespaced");
        assert_eq!(c.spec.versions.len(), 1);
        assert_eq!(c.spec.versions[0].name, "v1alpha1");
        assert!(
            c.spec.versions[0].subresources.is_some() || c.spec.names.kind == "ScopeCrashReport"
        );
    }
    let (v, _) = schema_of("ScopeConfig");
    assert_eq!(v["spec"]["names"]["shortNames"], json!(["scfg"]));
}

#[test]
fn printer_columns() {
    let (_, v) = schema_of("ScopeConfig");
    let cols = columns(&v);
    assert!(
        cols.contains(&("Matched".into(), ".status.matchedPods".into())),
        "{cols:?}"
    );
    assert!(
        cols.contains(&("Applied".into(), ".status.processes.applied".into())),
        "{cols:?}"
    );
    assert!(
        cols.contains(&("Age".into(), ".metadata.creationTimestamp".into())),
        "{cols:?}"
    );
    let (_, v) = schema_of("ScopeCrashReport");
    let cols = columns(&v);
    let names: Vec<_> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["Pod", "Signal", "Top Frame", "Age"]);
    assert_eq!(cols[2].1, ".spec.topFrame");
}

#[test]
fn admission_validation_in_schema() {
    let (_, v) = schema_of("ScopeConfig");
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rules: Vec<&str> = spec["env"]["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.iter().any(|r| r.contains("^SCOPE_[A-Z0-9_]+$")),
        "{rules:?}"
    );
    assert_eq!(spec["priority"]["minimum"].as_f64(), Some(-1000.0));
    assert_eq!(spec["priority"]["maximum"].as_f64(), Some(1000.0));
    // status.nodes is a list-map keyed by name so each agent owns its entry under SSA.
    let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(status["nodes"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        status["nodes"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    // ScopeSnapshot spec is immutable.
    let (_, v) = schema_of("ScopeSnapshot");
    let rules = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"];
    assert_eq!(rules[0]["rule"], "self == oldSelf");
}

#[test]
fn yaml_is_multi_document_and_round_trips() {
    let y = all_crds_yaml().unwrap();
    let docs: Vec<Value> = y
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
}

#[test]
fn scopeconfig_serialises_as_documented() {
    let mut sc = ScopeConfig::new(
        "debug-http",
        ScopeConfigSpec {
            env: [("SCOPE_EVENT_HTTP".to_string(), "true".to_string())].into(),
            priority: 10,
            ..Default::default()
        },
    );
    sc.metadata.namespace = Some("shop".into());
    let v = serde_json::to_value(&sc).unwrap();
    assert_eq!(v["apiVersion"], "appscope.dev/v1alpha1");
    assert_eq!(v["kind"], "ScopeConfig");
    assert_eq!(v["spec"]["env"]["SCOPE_EVENT_HTTP"], "true");
    let back: ScopeConfig = serde_json::from_value(json!({
        "apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig",
        "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    assert_eq!(back.spec.priority, 0);
    assert!(back.spec.env.is_empty());
}
