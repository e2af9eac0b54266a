//! Config::to_yaml renders a scope.yml that loads back to the same config.

use scope_config::Config;

#[test]
fn rendered_yaml_round_trips() {
    let mut variants = vec![Config::default()];
    let sets: &[&[(&str, &str)]] = &[
        &[
            ("SCOPE_CRIBL_ENABLE", "false"),
            ("SCOPE_METRIC_VERBOSITY", "9"),
            ("SCOPE_EVENT_HTTP_HEADER", "(?i)x-req"),
        ],
        &[
            ("SCOPE_METRIC_DEST", "unix://@m"),
            ("SCOPE_EVENT_DEST", "file://stdout"),
            ("SCOPE_LOG_DEST", "udp://[::1]:514"),
        ],
        &[
            ("SCOPE_METRIC_HTTP", "false"),
            ("SCOPE_EVENT_METRIC", "true"),
            ("SCOPE_ALLOW_BINARY_CONSOLE", "false"),
        ],
        &[
            ("SCOPE_TAG_team", "sre"),
            ("SCOPE_TAG_odd", "true"),
            ("SCOPE_STATSD_PREFIX", "a: b"),
            ("SCOPE_CRIBL_AUTHTOKEN", "tok"),
        ],
        &[
            ("SCOPE_STATUS_DIR", "/st"),
            ("SCOPE_SNAPSHOT_DIR", "/crash"),
            ("SCOPE_SNAPSHOT_CORE_MAXSIZE", "5M"),
            ("SCOPE_SNAPSHOT_COREDUMP", "true"),
        ],
        &[
            ("SCOPE_METRIC_TLS_ENABLE", "true"),
            ("SCOPE_METRIC_TLS_CA_CERT_PATH", "/ca.pem"),
            ("SCOPE_SUMMARY_PERIOD", "1"),
        ],
    ];
    for set in sets {
        let mut c = Config::default();
        for (n, v) in *set {
            c.set(n, v).unwrap();
        }
        variants.push(c);
    }
    let (with_extras, d) = Config::from_yaml_str(
        "protocol:\n  - name: Redis\n    regex: \"^[*]\\\\d+\"\n    len: 32\ncustom:\n  web:\n    filter:\n      procname: nginx\n    config:\n      tags:\n        svc: web\n",
    );
    assert!(d.is_empty(), "{d:?}");
    variants.push(with_extras);
    for c in variants {
        let text = c.to_yaml();
        let (back, d) = Config::from_yaml_str(&text);
        assert!(d.is_empty(), "{d:#?}\n{text}");
        assert_eq!(back, c, "\n{text}");
    }
}
