//! A start message built with config_in_effect() validates against AppScope's
//! event_start_msg.schema.json (relative $refs mapped to the in-repo copies).

use std::path::PathBuf;

use scope_config::effect::{ProcessInfo, start_message};
use scope_config::{Config, cmdfile};
use serde_json::Value;

struct LocalSchemas(PathBuf);

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let rest = uri
            .as_str()
            .strip_prefix("https://appscope.dev/docs/schemas/")
            .ok_or_else(|| format!("unexpected schema uri {}", uri.as_str()))?;
        let text = std::fs::read_to_string(self.0.join(rest))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validator() -> jsonschema::Validator {
    let dir = testkit::compat_dir().join("schemas");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("event_start_msg.schema.json")).unwrap(),
    )
    .unwrap();
    jsonschema::options()
        .with_retriever(LocalSchemas(dir))
        .build(&schema)
        .expect("start-message schema compiles")
}

fn process() -> ProcessInfo {
    ProcessInfo {
        libscopever: "v1.4.0".into(),
        pid: 4242,
        ppid: 1,
        gid: 0,
        groupname: "root".into(),
        uid: 0,
        username: "root".into(),
        hostname: "node-1".into(),
        procname: "nginx".into(),
        cmd: "nginx -g daemon off;".into(),
        id: "node-1-nginx-nginx -g daemon off;".into(),
        cgroup: "0::/".into(),
        machine_id: "a1e2ada5a5b1b273b4b5c0c2c1c4f5d1".into(),
        uuid: "da845a9b-a55d-4c42-893d-08b54ee6e999".into(),
    }
}

fn assert_valid(v: &jsonschema::Validator, msg: &Value) {
    let errors: Vec<String> = v
        .iter_errors(msg)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "schema errors: {errors:#?}\nmessage: {msg:#}"
    );
}

#[test]
fn default_config_start_message_validates() {
    let v = validator();
    let cfg = Config::default();
    let msg = start_message(
        &cfg,
        &process(),
        &[("SCOPE_CRIBL_ENABLE".into(), "false".into())],
    );
    assert_valid(&v, &msg);
    // And the schema really checks our output: a bad enum value fails.
    let mut bad = msg.clone();
    bad["info"]["configuration"]["current"]["metric"]["enable"] = Value::from(true);
    assert!(
        !v.is_valid(&bad),
        "schema must reject a JSON boolean for enable"
    );
    let mut bad = msg;
    bad["info"]["configuration"]["current"]["metric"]["format"]["verbosity"] = Value::from(12);
    assert!(!v.is_valid(&bad), "schema must reject verbosity 12");
}

#[test]
fn varied_configs_validate() {
    let v = validator();
    let variants: &[&[(&str, &str)]] = &[
        &[
            ("SCOPE_CRIBL_ENABLE", "false"),
            ("SCOPE_METRIC_DEST", "file:///tmp/m.log"),
            ("SCOPE_EVENT_DEST", "unix://@scope"),
        ],
        &[
            ("SCOPE_METRIC_DEST", "tcp://[::1]:8125"),
            ("SCOPE_METRIC_TLS_ENABLE", "true"),
            ("SCOPE_METRIC_FORMAT", "ndjson"),
        ],
        &[
            ("SCOPE_LOG_DEST", "file://stderr"),
            ("SCOPE_LOG_LEVEL", "debug"),
            ("SCOPE_SNAPSHOT_COREDUMP", "true"),
            ("SCOPE_SNAPSHOT_BACKTRACE", "true"),
        ],
        &[
            ("SCOPE_CRIBL", "tcp://127.0.0.1:10090"),
            ("SCOPE_CRIBL_AUTHTOKEN", "s3cret"),
            ("SCOPE_TAG_service", "web"),
            ("SCOPE_STATUS_DIR", "/run/st"),
        ],
        &[
            ("SCOPE_EVENT_METRIC", "true"),
            ("SCOPE_EVENT_HTTP_HEADER", "(?i)accept"),
            ("SCOPE_SNAPSHOT_CORE_MAXSIZE", "64M"),
        ],
    ];
    for vars in variants {
        let mut cfg = Config::default();
        for (n, val) in *vars {
            cfg.set(n, val).unwrap_or_else(|e| panic!("{n}={val}: {e}"));
        }
        cfg.apply_cribl_forcing();
        assert_valid(&v, &start_message(&cfg, &process(), &[]));
    }
    // A protocol detector from scope.yml.
    let (cfg, d) = Config::from_yaml_str("protocol:\n  - name: Redis\n    regex: \"^[*]\\\\d+\"\n");
    assert!(d.is_empty(), "{d:?}");
    let msg = start_message(&cfg, &process(), &[]);
    assert_eq!(
        msg["info"]["configuration"]["current"]["protocol"][0]["name"],
        "Redis"
    );
    assert_valid(&v, &msg);
}

#[test]
fn seed_example_shows_in_config_in_effect() {
    let mut cfg = Config::default();
    cmdfile::parse(b"SCOPE_METRIC_VERBOSITY=9\nSCOPE_EVENT_HTTP=false\n").apply(&mut cfg);
    let cur = &cfg.config_in_effect()["current"];
    assert_eq!(cur["metric"]["format"]["verbosity"], 9);
    let types: Vec<&str> = cur["event"]["watch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["file", "console", "net", "fs", "dns"]);
    assert_eq!(cur["libscope"]["snapshot"]["coredump"], "false");
}

#[test]
fn config_in_effect_round_trips() {
    let mut cfg = Config::default();
    for (n, val) in [
        ("SCOPE_CRIBL_ENABLE", "false"),
        ("SCOPE_METRIC_VERBOSITY", "7"),
        ("SCOPE_EVENT_DNS", "false"),
        ("SCOPE_EVENT_METRIC", "true"),
        ("SCOPE_EVENT_HTTP_HEADER", "x-req-id"),
        ("SCOPE_METRIC_HTTP", "false"),
        ("SCOPE_EVENT_DEST", "udp://10.0.0.1:9000"),
        ("SCOPE_LOG_DEST", "file:///var/log/scope.log"),
        ("SCOPE_SNAPSHOT_BACKTRACE", "true"),
        ("SCOPE_SNAPSHOT_DIR", "/appscope/run/c/crash"),
        ("SCOPE_STATUS_DIR", "/appscope/run/c/status"),
        ("SCOPE_SNAPSHOT_CORE_MAXSIZE", "1G"),
        ("SCOPE_TAG_pod", "web-1"),
    ] {
        cfg.set(n, val).unwrap();
    }
    let json = cfg.config_in_effect();
    let (back, diags) = Config::from_config_in_effect(&json);
    assert!(diags.is_empty(), "{diags:#?}");
    // Disabled watch categories keep default filters, not the ones set earlier.
    let mut expected = cfg.clone();
    expected.event.watch.dns = scope_config::EventWatchType::Dns.default_watch();
    expected.event.watch.dns.enable = false;
    assert_eq!(back, expected);
}

#[test]
fn matches_appscope_example_start_message() {
    // AppScope's own example (schema "examples"[0]) was taken with cribl disabled and
    // log level info; everything else is the defaults.
    let dir = testkit::compat_dir().join("schemas");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("event_start_msg.schema.json")).unwrap(),
    )
    .unwrap();
    let example = &schema["examples"][0]["info"]["configuration"];
    let mut cfg = Config::default();
    cfg.set("SCOPE_CRIBL_ENABLE", "false").unwrap();
    cfg.set("SCOPE_LOG_LEVEL", "info").unwrap();
    let mut ours = cfg.config_in_effect();
    // Our additions are the only difference.
    let snap = ours["current"]["libscope"]["snapshot"]
        .as_object_mut()
        .unwrap();
    assert_eq!(snap.remove("dir"), Some(Value::from("/tmp/appscope")));
    assert_eq!(snap.remove("core_maxsize"), Some(Value::from(0)));
    assert_eq!(&ours, example);
}
