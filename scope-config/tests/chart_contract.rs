//! The default scope.yml the Helm chart ships (values.yaml `scopeYml`) must load in the
//! library without a single diagnostic.

use scope_config::Config;

#[test]
fn chart_default_scope_yml_is_valid() {
    let values =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/appscope/values.yaml");
    let Ok(text) = std::fs::read_to_string(&values) else {
        eprintln!("{} not present; skipping", values.display());
        return;
    };
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("values.yaml is YAML");
    let Some(scope_yml) = v.get("scopeYml").and_then(|s| s.as_str()) else {
        eprintln!("no scopeYml in values.yaml; skipping");
        return;
    };
    let (_cfg, diags) = Config::from_yaml_str(scope_yml);
    assert!(diags.is_empty(), "chart scopeYml problems: {diags:#?}");
}
