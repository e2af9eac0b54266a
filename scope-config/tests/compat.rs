//! The stock AppScope scope.yml parses to exactly Config::default().

use scope_config::Config;

fn stock() -> String {
    std::fs::read_to_string(testkit::compat_dir().join("scope.yml"))
        .expect("compat/appscope/scope.yml")
}

#[test]
fn stock_scope_yml_equals_defaults() {
    let (cfg, diags) = Config::from_yaml_str(&stock());
    assert!(
        diags.is_empty(),
        "diagnostics on stock scope.yml: {diags:#?}"
    );
    assert_eq!(cfg, Config::default());
}
