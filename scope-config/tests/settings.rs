//! The SCOPE_* table, Config::set/get and settings::validate.

use scope_config::settings::{self, ALL, Kind, Origin, parse_size};
use scope_config::{Config, LogLevel, MetricFormatType, SettingError, TransportType};

#[test]
fn every_config_default_round_trips_through_set_and_get() {
    let d = Config::default();
    for sp in ALL.iter().filter(|s| s.kind == Kind::Config) {
        if sp.name == "SCOPE_TAG_<name>" || sp.name == "SCOPE_CRIBL_CLOUD" {
            continue;
        }
        // The table's default is what Config::default() holds.
        assert_eq!(
            d.get(sp.name).as_deref(),
            Some(sp.default),
            "{}: table default vs Config::default()",
            sp.name
        );
        // Setting the default on the default config changes nothing.
        let mut c = Config::default();
        c.set(sp.name, sp.default)
            .unwrap_or_else(|e| panic!("{}={:?}: {e}", sp.name, sp.default));
        assert_eq!(c, d, "{}", sp.name);
    }
}

#[test]
fn table_is_consistent() {
    let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate names in settings::ALL");
    for sp in ALL {
        assert!(sp.name.starts_with("SCOPE_"), "{}", sp.name);
        assert!(!sp.doc.is_empty(), "{} has no doc", sp.name);
        assert_eq!(
            sp.kind == Kind::Config,
            !sp.yaml_path.is_empty(),
            "{}",
            sp.name
        );
    }
    let ours: Vec<&str> = ALL
        .iter()
        .filter(|s| s.origin == Origin::Ours)
        .map(|s| s.name)
        .collect();
    for n in [
        "SCOPE_SNAPSHOT_DIR",
        "SCOPE_STATUS_DIR",
        "SCOPE_SNAPSHOT_CORE_MAXSIZE",
        "SCOPE_CMD_SNAPSHOT",
    ] {
        assert!(ours.contains(&n), "{n} must be marked as ours");
    }
}

#[test]
fn every_override_named_in_stock_scope_yml_is_in_the_table() {
    let text = std::fs::read_to_string(testkit::compat_dir().join("scope.yml")).unwrap();
    let re = regex::Regex::new(r"\$(SCOPE_[A-Z_]+[A-Z])").unwrap();
    let mut missing = Vec::new();
    for cap in re.captures_iter(&text) {
        let name = &cap[1];
        // "$SCOPE_METRIC_TLS_* variables" and the SCOPE_TAG_ family.
        if name.ends_with("_TLS") || name == "SCOPE_TAG" {
            continue;
        }
        if settings::spec(name).is_none() {
            missing.push(name.to_string());
        }
    }
    assert!(missing.is_empty(), "not in settings::ALL: {missing:?}");
}

#[test]
fn set_applies_values() {
    let mut c = Config::default();
    let ok: &[(&str, &str)] = &[
        ("SCOPE_METRIC_VERBOSITY", " 9 "),
        ("SCOPE_METRIC_FORMAT", "NDJSON"),
        ("SCOPE_EVENT_HTTP", "False"),
        ("SCOPE_EVENT_HTTP_NAME", "http\\.req"),
        ("SCOPE_LOG_LEVEL", "debug"),
        ("SCOPE_METRIC_DEST", "tcp://127.0.0.1:8126"),
        ("SCOPE_CRIBL_CLOUD", "tcp://in.cribl.cloud:10090"),
        ("SCOPE_TAG_service", "web $NOT_EXPANDED_BY_SET"),
        ("SCOPE_SNAPSHOT_CORE_MAXSIZE", "2G"),
        ("SCOPE_STATUS_DIR", "/run/status"),
        ("SCOPE_EVENT_MAXEPS", "0"),
    ];
    for (n, v) in ok {
        c.set(n, v).unwrap_or_else(|e| panic!("{n}={v}: {e}"));
    }
    assert_eq!(c.metric.format.verbosity, 9);
    assert_eq!(c.metric.format.kind, MetricFormatType::Ndjson);
    assert!(!c.event.watch.http.enable);
    assert_eq!(c.event.watch.http.name, "http\\.req");
    assert_eq!(c.libscope.log.level, LogLevel::Debug);
    assert_eq!(c.metric.transport.kind, TransportType::Tcp);
    assert_eq!(c.metric.transport.port, "8126");
    assert!(c.cribl.enable && c.cribl.transport.tls.enable && c.cribl.transport.tls.validateserver);
    assert_eq!(c.cribl.transport.host, "in.cribl.cloud");
    assert_eq!(
        c.tags.get("service").map(String::as_str),
        Some("web $NOT_EXPANDED_BY_SET")
    );
    assert_eq!(c.core_maxsize, 2 << 30);
    assert_eq!(
        c.status_dir.as_deref(),
        Some(std::path::Path::new("/run/status"))
    );
    assert_eq!(c.event.format.maxeventpersec, 0);
    assert_eq!(
        c.get("SCOPE_METRIC_DEST").as_deref(),
        Some("tcp://127.0.0.1:8126")
    );
    // SCOPE_CRIBL without a port uses 10090, like AppScope.
    c.set("SCOPE_CRIBL", "tcp://stream.local").unwrap();
    assert_eq!(
        c.get("SCOPE_CRIBL").as_deref(),
        Some("tcp://stream.local:10090")
    );
    c.set("SCOPE_CRIBL", "tcp://[fd00::1]").unwrap();
    assert_eq!(
        c.get("SCOPE_CRIBL").as_deref(),
        Some("tcp://[fd00::1]:10090")
    );
    c.set("SCOPE_CRIBL", "tcp://stream.local:10091").unwrap();
    assert_eq!(c.cribl.transport.port, "10091");
    c.set("SCOPE_STATUS_DIR", "").unwrap();
    assert_eq!(c.status_dir, None);
}

#[test]
fn bad_values_are_refused_and_leave_config_unchanged() {
    let bad: &[(&str, &str)] = &[
        ("SCOPE_METRIC_VERBOSITY", "10"),
        ("SCOPE_METRIC_VERBOSITY", "-1"),
        ("SCOPE_METRIC_VERBOSITY", "high"),
        ("SCOPE_METRIC_ENABLE", "yes"),
        ("SCOPE_METRIC_FORMAT", "json"),
        ("SCOPE_EVENT_FORMAT", "statsd"),
        ("SCOPE_STATSD_MAXLEN", "0"),
        ("SCOPE_SUMMARY_PERIOD", "0"),
        ("SCOPE_LOG_LEVEL", "trace"),
        ("SCOPE_EVENT_DEST", "tls://x:1"),
        ("SCOPE_CRIBL", "udp://127.0.0.1:10090"),
        ("SCOPE_CRIBL", "file:///tmp/x"),
        ("SCOPE_EVENT_NET_NAME", "(unclosed"),
        ("SCOPE_SNAPSHOT_CORE_MAXSIZE", "10T"),
        ("SCOPE_SNAPSHOT_CORE_MAXSIZE", "M"),
        ("SCOPE_SNAPSHOT_DIR", "  "),
        ("SCOPE_TAG_", "x"),
        ("SCOPE_TAG_a b", "x"),
        ("SCOPE_EVENT_LOGFILE_FIELD", ".*"),
    ];
    for (n, v) in bad {
        let mut c = Config::default();
        let err = c.set(n, v).expect_err(&format!("{n}={v:?} accepted"));
        assert_eq!(c, Config::default(), "{n}={v:?} changed the config");
        assert!(
            err.to_string().contains(n.trim_end_matches('_'))
                || matches!(err, SettingError::Unknown(_)),
            "{err}"
        );
        assert!(settings::validate(n, v).is_err(), "validate({n}={v:?})");
    }
}

#[test]
fn validate_covers_every_kind() {
    assert!(settings::validate("SCOPE_METRIC_VERBOSITY", "5").is_ok());
    assert!(settings::validate("SCOPE_TAG_node", "n1").is_ok());
    assert!(settings::validate("SCOPE_CONF_RELOAD", "true").is_ok());
    assert!(settings::validate("SCOPE_CONF_RELOAD", "/etc/appscope/scope.yml").is_ok());
    assert!(settings::validate("SCOPE_CONF_RELOAD", "maybe").is_err());
    assert!(settings::validate("SCOPE_CMD_SNAPSHOT", "true").is_ok());
    assert!(settings::validate("SCOPE_CMD_SNAPSHOT", "now").is_err());
    assert!(settings::validate("SCOPE_CONF_PATH", "/etc/scope.yml").is_ok());
    assert!(matches!(
        settings::validate("SCOPE_NOPE", "1"),
        Err(SettingError::Unknown(_))
    ));
    assert!(matches!(
        settings::validate("PATH", "/bin"),
        Err(SettingError::Unknown(_))
    ));
    // Start-only and action names are not config settings.
    let mut c = Config::default();
    assert!(matches!(
        c.set("SCOPE_CONF_PATH", "/x"),
        Err(SettingError::NotApplicable { .. })
    ));
    assert!(matches!(
        c.set("SCOPE_CMD_SNAPSHOT", "true"),
        Err(SettingError::NotApplicable { .. })
    ));
}

#[test]
fn sizes() {
    let cases: &[(&str, Option<u64>)] = &[
        ("0", Some(0)),
        ("512", Some(512)),
        ("10K", Some(10 << 10)),
        ("10k", Some(10 << 10)),
        ("64M", Some(64 << 20)),
        ("64MiB", Some(64 << 20)),
        ("2G", Some(2 << 30)),
        (" 3 g ", Some(3 << 30)),
        ("1.5G", None),
        ("", None),
        ("G", None),
        ("-1", None),
        ("99999999999999999999", None),
        ("18014398509481984G", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_size(s), *want, "{s:?}");
    }
}
