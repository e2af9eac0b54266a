//! The chart's CRDs are exactly `appscope-operator crdgen`'s output, and the custom
//! resources in examples/ are valid against them.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::*;

fn crd_file() -> std::path::PathBuf {
    chart_dir().join("crds").join("appscope.dev.yaml")
}

#[test]
fn chart_crds_are_crdgen_output() {
    let bin = testkit::bin_path("appscope-operator", "appscope-operator");
    let out = run(Command::new(bin).arg("crdgen"));
    assert!(
        out.status.success(),
        "crdgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = String::from_utf8(out.stdout).expect("utf-8");
    let committed =
        std::fs::read_to_string(crd_file()).expect("charts/appscope/crds/appscope.dev.yaml");
    assert!(
        fresh == committed,
        "charts/appscope/crds/appscope.dev.yaml differs from `appscope-operator crdgen`: run \
         charts/appscope/hack/gen-crds.sh (it also refreshes manifests/) and commit the result"
    );
    let kinds: Vec<String> = parse_docs(&committed)
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["ScopeConfig", "ScopeSnapshot", "ScopeCrashReport"]);
}

/// kind -> JSON schema of the served version, with apiVersion/kind pinned.
fn schemas() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(crd_file()).expect("CRD file");
    parse_docs(&text)
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| {
            let spec = &d["spec"];
            let kind = spec["names"]["kind"].as_str().unwrap().to_string();
            let ver = spec["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["served"] == true && v["storage"] == true)
                .expect("a served storage version");
            let mut schema = ver["schema"]["openAPIV3Schema"].clone();
            let api = format!(
                "{}/{}",
                spec["group"].as_str().unwrap(),
                ver["name"].as_str().unwrap()
            );
            schema["properties"]["apiVersion"] = json!({"const": api});
            schema["properties"]["kind"] = json!({"const": kind});
            schema["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
            (kind, schema)
        })
        .collect()
}

fn validate(schemas: &[(String, Value)], obj: &Value) -> Result<(), String> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (_, schema) = schemas
        .iter()
        .find(|(k, _)| k == kind)
        .ok_or_else(|| format!("no CRD for kind {kind}"))?;
    let v = jsonschema::validator_for(schema).map_err(|e| format!("schema for {kind}: {e}"))?;
    let errs: Vec<String> = v
        .iter_errors(obj)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

#[test]
fn example_custom_resources_match_the_crds() {
    let schemas = schemas();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for obj in parse_docs(&std::fs::read_to_string(&path).unwrap()) {
            if obj["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("appscope.dev/"))
            {
                validate(&schemas, &obj)
                    .unwrap_or_else(|e| panic!("{}: {} invalid: {e}", path.display(), obj["kind"]));
                checked.push(obj["kind"].as_str().unwrap().to_string());
            }
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        ["ScopeConfig", "ScopeSnapshot"],
        "the examples cover both user-facing CRs"
    );
}

#[test]
fn the_crd_schemas_refuse_bad_resources() {
    // the validation above must be able to fail: typical mistakes are caught
    let schemas = schemas();
    let bad = [
        json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig", "metadata": {"name": "x"},
               "spec": {"env": {"SCOPE_METRIC_VERBOSITY": 9}}}),
        json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeConfig", "metadata": {"name": "x"},
               "spec": {"priority": 5000}}),
        json!({"apiVersion": "appscope.dev/v1beta9", "kind": "ScopeConfig", "metadata": {"name": "x"}, "spec": {}}),
        json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeSnapshot", "metadata": {"name": "x"},
               "spec": {"container": "web"}}),
        json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeSnapshot", "metadata": {"name": "x"},
               "spec": {"pod": "p", "pid": 0}}),
    ];
    for obj in bad {
        assert!(validate(&schemas, &obj).is_err(), "accepted: {obj}");
    }
    let good = json!({"apiVersion": "appscope.dev/v1alpha1", "kind": "ScopeSnapshot",
                      "metadata": {"name": "x"}, "spec": {"pod": "p", "core": true}});
    validate(&schemas, &good).unwrap();
}
