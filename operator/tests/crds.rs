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

// ------------------------------------------------------------------ CEL cost bounds

/// Where the API server's CEL cost estimate would find no bound: every string, list and
/// map a rule can reach (the node carrying `x-kubernetes-validations` and everything
/// below it) needs `maxLength` / `maxItems` / `maxProperties`, and a rule under a list or
/// map runs once per element, so those ancestors need a bound too. Without one the
/// estimate assumes the largest value a request can carry (3 MiB) and the API server
/// refuses the CRD ("estimated rule cost exceeds budget"). Map keys cannot be bounded
/// in a schema; the estimator takes their size from the key type, not from the request.
fn unbounded_nodes(schema: &Value) -> (Vec<String>, usize) {
    fn bound_missing(n: &Value) -> Option<&'static str> {
        match n["type"].as_str() {
            Some("string") if n.get("maxLength").is_none() && n.get("enum").is_none() => {
                Some("maxLength")
            }
            Some("array") if n.get("maxItems").is_none() => Some("maxItems"),
            Some("object")
                if n.get("additionalProperties").is_some_and(Value::is_object)
                    && n.get("maxProperties").is_none() =>
            {
                Some("maxProperties")
            }
            _ => None,
        }
    }
    fn walk(
        n: &Value,
        path: String,
        unbounded_ancestor: Option<&str>,
        under_rule: bool,
        out: &mut Vec<String>,
        rules: &mut usize,
    ) {
        let has_rules = n
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        if has_rules {
            *rules += n["x-kubernetes-validations"].as_array().unwrap().len();
            if let Some(a) = unbounded_ancestor {
                out.push(format!("{path}: rule under unbounded collection {a}"));
            }
        }
        let under = under_rule || has_rules;
        let missing = bound_missing(n);
        if under && let Some(m) = missing {
            out.push(format!(
                "{path}: {} without {m}",
                n["type"].as_str().unwrap()
            ));
        }
        // The first unbounded list or map on the way down.
        let anc = unbounded_ancestor.map(String::from).or_else(|| {
            matches!(missing, Some("maxItems" | "maxProperties")).then(|| path.clone())
        });
        let anc = anc.as_deref();
        if let Some(props) = n.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, format!("{path}.{k}"), anc, under, out, rules);
            }
        }
        if let Some(items) = n.get("items").filter(|i| i.is_object()) {
            walk(items, format!("{path}[]"), anc, under, out, rules);
        }
        if let Some(ap) = n.get("additionalProperties").filter(|a| a.is_object()) {
            walk(ap, format!("{path}{{}}"), anc, under, out, rules);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for (i, sub) in n
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                walk(
                    sub,
                    format!("{path}<{key}{i}>"),
                    unbounded_ancestor,
                    under_rule,
                    out,
                    rules,
                );
            }
        }
    }
    let mut out = Vec::new();
    let mut rules = 0;
    walk(schema, String::new(), None, false, &mut out, &mut rules);
    (out, rules)
}

#[test]
fn every_value_a_cel_rule_reaches_is_bounded() {
    let mut rules = 0;
    for crd in all_crds() {
        let v = serde_json::to_value(&crd).unwrap();
        for ver in v["spec"]["versions"].as_array().unwrap() {
            let (problems, n) = unbounded_nodes(&ver["schema"]["openAPIV3Schema"]);
            assert!(
                problems.is_empty(),
                "{}: unbounded for CEL cost: {problems:#?}",
                crd.spec.names.kind
            );
            rules += n;
        }
    }
    // ScopeConfig: containers, env; ScopeSnapshot: spec, pod.
    assert!(rules >= 4, "the walk found only {rules} rules");
    // The bounds themselves, as documented.
    let (_, v) = schema_of("ScopeConfig");
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["env"]["maxProperties"], 128);
    assert_eq!(spec["env"]["additionalProperties"]["maxLength"], 4096);
    assert_eq!(spec["containers"]["maxItems"], 64);
    assert_eq!(spec["containers"]["items"]["maxLength"], 63);
}

#[test]
fn the_bound_check_finds_unbounded_nodes() {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self == oldSelf"}],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string", "enum": ["A", "B"]},
                    "tags": {"type": "array", "maxItems": 4, "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 9}},
                    "n": {"type": "integer"}
                }
            },
            "list": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"s": {"type": "string", "maxLength": 3,
                        "x-kubernetes-validations": [{"rule": "self != 'x'"}]}}
                }
            },
            "free": {"type": "string"}
        }
    });
    let (mut problems, rules) = unbounded_nodes(&schema);
    problems.sort();
    assert_eq!(rules, 2);
    assert_eq!(
        problems,
        [
            ".list[].s: rule under unbounded collection .list",
            ".spec.labels: object without maxProperties",
            ".spec.name: string without maxLength",
            ".spec.tags[]: string without maxLength",
        ],
        "`free` is reached by no rule; enums and integers need no bound"
    );
}
