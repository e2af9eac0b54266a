//! scope.yml parsing: overrides, diagnostics, watch lists, protocol, custom, $VAR.

use scope_config::{Config, EventWatchType, ProcessIdentity, TransportType, expand_vars};

fn parse(y: &str) -> (Config, Vec<scope_config::Diagnostic>) {
    Config::from_yaml_str(y)
}

#[test]
fn keys_override_defaults() {
    let (c, d) = parse(
        "metric:\n  enable: false\n  format:\n    type: ndjson\n    verbosity: 7\n    statsdprefix: app.\n  transport:\n    type: file\n    path: /tmp/m.log\n    buffering: full\n\
         event:\n  format:\n    maxeventpersec: 5\n  transport:\n    type: unix\n    path: '@evt'\n\
         libscope:\n  summaryperiod: 3\n  commanddir: /appscope/cmd\n  log:\n    level: error\n  snapshot:\n    coredump: true\n    backtrace: 'true'\n    dir: /crash\n    core_maxsize: 512K\n  statusdir: /status\n\
         cribl:\n  enable: false\n\
         tags:\n  service: web\n",
    );
    assert!(d.is_empty(), "{d:#?}");
    assert!(!c.metric.enable);
    assert_eq!(c.metric.format.verbosity, 7);
    assert_eq!(c.metric.format.statsdprefix, "app.");
    assert_eq!(c.metric.transport.kind, TransportType::File);
    assert_eq!(c.metric.transport.url(), "file:///tmp/m.log");
    assert_eq!(c.metric.transport.buffering, scope_config::Buffering::Full);
    assert_eq!(c.event.format.maxeventpersec, 5);
    assert_eq!(c.event.transport.url(), "unix://@evt");
    assert_eq!(c.libscope.summaryperiod, 3);
    assert_eq!(
        c.libscope.commanddir,
        std::path::PathBuf::from("/appscope/cmd")
    );
    assert!(c.libscope.snapshot.coredump && c.libscope.snapshot.backtrace);
    assert_eq!(c.snapshot_dir, std::path::PathBuf::from("/crash"));
    assert_eq!(c.core_maxsize, 512 * 1024);
    assert_eq!(c.status_dir, Some("/status".into()));
    assert!(!c.cribl.enable);
    assert_eq!(c.tags["service"], "web");
    // Untouched keys keep defaults.
    assert_eq!(c.event.transport.tls, Config::default().event.transport.tls);
}

#[test]
fn bad_values_and_unknown_keys_are_diagnosed_and_keep_defaults() {
    let (c, d) = parse(
        "metric:\n  enable: maybe\n  format:\n    verbosity: 12\n  colour: red\n\
         event:\n  watch:\n    - type: bogus\n    - type: http\n      name: '(unclosed'\n\
         libscope:\n  summaryperiod: -4\n  log:\n    level: loud\n\
         frobnicate: 1\n",
    );
    let keys: Vec<&str> = d.iter().map(|x| x.key.as_str()).collect();
    for k in [
        "metric.enable",
        "metric.format.verbosity",
        "metric.colour",
        "event.watch[0].type",
        "event.watch[1].name",
        "libscope.summaryperiod",
        "libscope.log.level",
        "frobnicate",
    ] {
        assert!(keys.contains(&k), "no diagnostic for {k}: {d:#?}");
    }
    let def = Config::default();
    assert_eq!(c.metric.enable, def.metric.enable);
    assert_eq!(c.metric.format.verbosity, 4);
    assert_eq!(c.libscope.summaryperiod, 10);
    assert_eq!(c.libscope.log.level, def.libscope.log.level);
    // The http entry was listed, so http is on with the default name regex.
    assert!(c.event.watch.http.enable);
    assert_eq!(c.event.watch.http.name, ".*");
    assert!(!c.event.watch.file.enable, "unlisted categories are off");
    for diag in &d {
        assert_eq!(diag.source, "scope.yml");
        assert!(!diag.message.is_empty());
    }
}

#[test]
fn invalid_yaml_keeps_defaults() {
    for text in [
        "metric: [unclosed",
        "\t- : :\n  x",
        "---\n- 1\n- 2\n",
        "metric: 5\n",
    ] {
        let (c, d) = parse(text);
        assert_eq!(c, Config::default(), "{text:?}");
        assert!(!d.is_empty(), "{text:?}");
    }
    let (c, d) = parse("");
    assert_eq!(c, Config::default());
    assert!(d.is_empty());
}

#[test]
fn watch_lists() {
    // Only the listed categories are on.
    let (c, d) = parse(
        "metric:\n  watch:\n    - type: fs\n    - type: process\nevent:\n  watch:\n    - type: metric\n    - type: console\n      allowbinary: false\n    - type: http\n      headers:\n        - (?i)accept\n        - x-request-id\n",
    );
    assert!(d.is_empty(), "{d:#?}");
    let w = &c.metric.watch;
    assert!(w.fs && w.process && !w.statsd && !w.net && !w.http && !w.dns);
    let e = &c.event.watch;
    assert!(e.metric.enable && e.console.enable && e.http.enable);
    assert!(!e.file.enable && !e.net.enable && !e.fs.enable && !e.dns.enable);
    assert!(!e.console.allowbinary);
    assert_eq!(e.http.headers, ["(?i)accept", "x-request-id"]);
    // An empty list turns everything off; a null (all entries commented out) keeps defaults.
    let (c, _) = parse("event:\n  watch: []\n");
    assert!(
        EventWatchType::ALL
            .iter()
            .all(|t| !c.event.watch.get(*t).enable)
    );
    let (c, d) = parse("event:\n  watch:\n");
    assert!(d.is_empty());
    assert_eq!(c.event.watch, Config::default().event.watch);
}

#[test]
fn protocol_detectors() {
    let (c, d) = parse(
        "protocol:\n  - name: Redis\n    regex: \"^[*]\\\\d+|^[+]\\\\w+\"\n  - name: Mongo\n    regex: \"^240100000000000000000000d407\"\n    binary: true\n    len: 14\n    detect: false\n    payload: true\n  - name: NoRegex\n  - regex: x\n",
    );
    assert_eq!(c.protocol.len(), 2, "{c:#?}");
    assert_eq!(c.protocol[0].name, "Redis");
    assert!(!c.protocol[0].binary && c.protocol[0].detect && c.protocol[0].len == 256);
    assert!(
        c.protocol[1].binary
            && !c.protocol[1].detect
            && c.protocol[1].payload
            && c.protocol[1].len == 14
    );
    assert_eq!(d.len(), 2, "{d:#?}");
}

#[test]
fn env_expansion_in_values() {
    let env = |n: &str| match n {
        "USER" => Some("alice".to_string()),
        "POD" => Some("web-1".to_string()),
        _ => None,
    };
    let (c, d) = Config::from_yaml_str_env(
        "tags:\n  user: $USER\n  pod: ${POD}-x\n  keep: $UNSET_VAR\nevent:\n  transport:\n    type: file\n    path: /tmp/$USER/events.log\n",
        "test.yml",
        &env,
    );
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(c.tags["user"], "alice");
    assert_eq!(c.tags["pod"], "web-1-x");
    assert_eq!(c.tags["keep"], "$UNSET_VAR");
    assert_eq!(c.event.transport.path, "/tmp/alice/events.log");

    let cases: &[(&str, &str)] = &[
        ("$USER", "alice"),
        ("${USER}", "alice"),
        ("a$USER.b", "aalice.b"),
        ("$USERX", "$USERX"),
        ("${USER", "${USER"),
        ("${}", "${}"),
        ("cost $5", "cost $5"),
        ("(\\.log$)|x", "(\\.log$)|x"),
        ("$", "$"),
        ("$$USER", "$alice"),
        ("é$USER€", "éalice€"),
    ];
    for (input, want) in cases {
        assert_eq!(expand_vars(input, &env), *want, "{input:?}");
    }
}

#[test]
fn custom_entries_apply_when_filters_match() {
    let text = "custom:\n  example:\n    filter:\n      username: eg\n      hostname: eg1\n    config:\n      metric:\n        format:\n          verbosity: 7\n      tags:\n        service: eg\n  nginx:\n    filter:\n      procname: nginx\n    config:\n      tags:\n        service: nginx\n  broken:\n    config:\n      tags: {a: b}\n";
    let (c, d) = parse(text);
    assert_eq!(c.custom.len(), 2);
    assert_eq!(d.len(), 1, "entry without filter is reported: {d:#?}");

    let mut both = c.clone();
    let id = ProcessIdentity {
        procname: "nginx".into(),
        username: "eg".into(),
        hostname: "eg1".into(),
        ..Default::default()
    };
    let (applied, d) = both.apply_custom(&id);
    assert!(d.is_empty());
    assert_eq!(applied, ["example", "nginx"]);
    assert_eq!(both.metric.format.verbosity, 7);
    assert_eq!(both.tags["service"], "nginx", "later entries win");

    let mut none = c.clone();
    let other = ProcessIdentity {
        procname: "redis".into(),
        username: "eg".into(),
        hostname: "other".into(),
        ..Default::default()
    };
    let (applied, _) = none.apply_custom(&other);
    assert!(applied.is_empty());
    assert_eq!(none, c);

    // env and ancestor and arg filters.
    let (c, _) = parse(
        "custom:\n  e:\n    filter:\n      env: MODE=debug\n      ancestor: bash\n      arg: --serve\n    config:\n      libscope:\n        log:\n          level: debug\n",
    );
    let mut m = c.clone();
    let id = ProcessIdentity {
        cmdline: "app --serve --port 1".into(),
        env: vec![("MODE".into(), "debug".into())],
        ancestors: vec!["sh".into(), "bash".into()],
        ..Default::default()
    };
    assert_eq!(m.apply_custom(&id).0, ["e"]);
    assert_eq!(m.libscope.log.level, scope_config::LogLevel::Debug);
    let mut n = c.clone();
    let id2 = ProcessIdentity {
        env: vec![("MODE".into(), "prod".into())],
        ..id
    };
    assert!(n.apply_custom(&id2).0.is_empty());
}
