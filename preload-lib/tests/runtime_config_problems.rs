//! Problems in the config at start (scope.yml and SCOPE_* env) are listed in the status
//! file, not only logged: the setting is ignored and the process runs normally. A
//! `SCOPE_CONF_PATH` naming a missing file is one of them.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn config_problems_at_start_are_in_the_status_file() {
    let env = Env::new();
    let yml = env.path().join("scope.yml");
    std::fs::write(
        &yml,
        "metric:\n  enable: true\n  bogus: 1\n  format:\n    verbosity: 5\nevent:\n  format:\n    maxeventpersec: lots\n",
    )
    .unwrap();
    let mut c = env.scoped("/bin/sleep");
    c.arg("30")
        .env("SCOPE_CONF_PATH", &yml)
        .env("SCOPE_SUMMARY_PERIOD", "eleven");
    let g = Guarded::spawn(c);
    let st = env.wait_status(g.pid(), "first status", T, |_| true);
    let problems: Vec<String> = st["config_problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no config_problems in {st}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let has = |what: &str| problems.iter().any(|p| p.contains(what));
    assert!(has("bogus"), "{problems:?}");
    assert!(has("maxeventpersec"), "{problems:?}");
    assert!(has("SCOPE_SUMMARY_PERIOD"), "{problems:?}");
    assert_eq!(problems.len(), 3, "{problems:?}");
    // The good settings of the same file apply; the bad ones keep their defaults.
    let cur = &st["config"]["current"];
    assert_eq!(cur["metric"]["format"]["verbosity"], 5, "{cur}");
    assert_eq!(cur["event"]["format"]["maxeventpersec"], 10000, "{cur}");
    // Still listed in later statuses.
    let later = env.wait_status(g.pid(), "a later status", T, |s| {
        s["updated"] != st["updated"]
    });
    assert_eq!(later["config_problems"], st["config_problems"]);
}

#[test]
fn a_clean_config_lists_no_problems() {
    let env = Env::new();
    let yml = env.path().join("scope.yml");
    std::fs::write(&yml, "metric:\n  enable: false\n").unwrap();
    let mut c = env.scoped("/bin/sleep");
    c.arg("30").env("SCOPE_CONF_PATH", &yml);
    let g = Guarded::spawn(c);
    let st = env.wait_status(g.pid(), "first status", T, |_| true);
    assert!(st.get("config_problems").is_none(), "{st}");
}

/// `SCOPE_TAG_<name>` variables of the process start are tags of the config in effect
/// (with `$VAR` expanded from the environment), and every event carries them.
#[test]
fn tags_from_the_environment_apply_at_start() {
    let env = Env::new();
    let col = Collector::tcp();
    let mut c = env.scoped("/bin/sleep");
    c.arg("30")
        .env("SCOPE_TAG_service", "web")
        .env("SCOPE_TAG_node", "$TEST_NODE_NAME")
        .env("TEST_NODE_NAME", "node-7")
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", &col.addr);
    let g = Guarded::spawn(c);
    let st = env.wait_status(g.pid(), "first status", T, |_| true);
    assert_eq!(
        st["config"]["current"]["tags"],
        serde_json::json!({"service": "web", "node": "node-7"}),
        "{st}"
    );
    col.lines.wait("start message", T, |_| {
        !col.lines.start_messages().is_empty()
    });
    let start = &col.lines.start_messages()[0];
    assert_eq!(
        start["info"]["configuration"]["current"]["tags"]["service"], "web",
        "{start}"
    );
}
