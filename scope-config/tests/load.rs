//! Loading: search order and precedence defaults < scope.yml < env (< command files).

use std::path::{Path, PathBuf};

use scope_config::{Config, LoadInput, load, load_vars, load_with, search_paths};

fn env_of<'a>(vars: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |n: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn search_order() {
    let vars = [
        ("SCOPE_CONF_PATH", "/a/scope.yml".to_string()),
        ("SCOPE_HOME", "/h".to_string()),
        ("HOME", "/home/u".to_string()),
    ];
    let got = search_paths(&env_of(&vars));
    let want: Vec<PathBuf> = [
        "/a/scope.yml",
        "/h/conf/scope.yml",
        "/h/scope.yml",
        "/etc/scope/scope.yml",
        "/home/u/conf/scope.yml",
        "/home/u/scope.yml",
        "./conf/scope.yml",
        "./scope.yml",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(got, want);
    let none = search_paths(&|_| None);
    assert_eq!(
        none,
        ["/etc/scope/scope.yml", "./conf/scope.yml", "./scope.yml"].map(PathBuf::from)
    );
}

#[test]
fn first_readable_file_wins() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let sh = t.path().join("scopehome");
    write(
        &home.join("scope.yml"),
        "metric:\n  format:\n    verbosity: 1\n",
    );
    write(
        &home.join("conf/scope.yml"),
        "metric:\n  format:\n    verbosity: 2\n",
    );
    write(
        &sh.join("scope.yml"),
        "metric:\n  format:\n    verbosity: 3\n",
    );
    write(
        &sh.join("conf/scope.yml"),
        "metric:\n  format:\n    verbosity: 5\n",
    );
    let explicit = t.path().join("explicit.yml");
    write(&explicit, "metric:\n  format:\n    verbosity: 6\n");

    let h = home.display().to_string();
    let s = sh.display().to_string();
    let e = explicit.display().to_string();
    // (env, expected verbosity, expected file)
    type Row<'a> = (Vec<(&'a str, String)>, u8, Option<PathBuf>);
    let rows: Vec<Row> = vec![
        (
            vec![("HOME", h.clone())],
            2,
            Some(home.join("conf/scope.yml")),
        ),
        (
            vec![("HOME", h.clone()), ("SCOPE_HOME", s.clone())],
            5,
            Some(sh.join("conf/scope.yml")),
        ),
        (
            vec![
                ("HOME", h.clone()),
                ("SCOPE_HOME", s.clone()),
                ("SCOPE_CONF_PATH", e.clone()),
            ],
            6,
            Some(explicit.clone()),
        ),
    ];
    for (vars, want, path) in rows {
        let l = load(&env_of(&vars));
        assert_eq!(l.config.metric.format.verbosity, want, "{vars:?}");
        assert_eq!(l.path, path, "{vars:?}");
    }
    // Remove files one by one: the next in order is used.
    std::fs::remove_file(sh.join("conf/scope.yml")).unwrap();
    let l = load(&env_of(&[("HOME", h.clone()), ("SCOPE_HOME", s.clone())]));
    assert_eq!(l.config.metric.format.verbosity, 3);
    std::fs::remove_file(home.join("conf/scope.yml")).unwrap();
    let l = load(&env_of(&[("HOME", h.clone())]));
    assert_eq!(l.config.metric.format.verbosity, 1);
    // A missing explicit SCOPE_CONF_PATH is reported and the search goes on.
    let l = load(&env_of(&[
        ("HOME", h),
        ("SCOPE_CONF_PATH", "/nonexistent/scope.yml".into()),
    ]));
    assert_eq!(l.config.metric.format.verbosity, 1);
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.source == "/nonexistent/scope.yml"),
        "{:#?}",
        l.diagnostics
    );
    // A directory where a file is expected is skipped with a diagnostic.
    let l = load(&env_of(&[
        ("SCOPE_CONF_PATH", t.path().display().to_string()),
        ("HOME", "/nonexistent".into()),
    ]));
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.message.contains("cannot read")),
        "{:#?}",
        l.diagnostics
    );
}

#[test]
fn precedence_defaults_file_env() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("scope.yml");
    write(
        &f,
        "metric:\n  format:\n    verbosity: 6\n    statsdprefix: $PREFIX\n  transport:\n    type: tcp\n    host: 10.0.0.1\n    port: 9000\ncribl:\n  enable: false\nlibscope:\n  summaryperiod: 20\ntags:\n  a: file\n  b: file\n",
    );
    let fp = f.display().to_string();
    // (env, key, expected value via Config::get)
    type Row<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let rows: Vec<Row> = vec![
        (vec![], "SCOPE_METRIC_VERBOSITY", "6"),
        (
            vec![("SCOPE_METRIC_VERBOSITY", "8")],
            "SCOPE_METRIC_VERBOSITY",
            "8",
        ),
        (vec![], "SCOPE_SUMMARY_PERIOD", "20"),
        (
            vec![("SCOPE_SUMMARY_PERIOD", "2")],
            "SCOPE_SUMMARY_PERIOD",
            "2",
        ),
        (vec![], "SCOPE_METRIC_DEST", "tcp://10.0.0.1:9000"),
        (
            vec![("SCOPE_METRIC_DEST", "udp://127.0.0.1:8125")],
            "SCOPE_METRIC_DEST",
            "udp://127.0.0.1:8125",
        ),
        (vec![], "SCOPE_EVENT_DEST", "tcp://127.0.0.1:9109"),
        (vec![], "SCOPE_STATSD_PREFIX", "$PREFIX"),
        (vec![("PREFIX", "svc.")], "SCOPE_STATSD_PREFIX", "svc."),
        (
            vec![("SCOPE_STATSD_PREFIX", "${PREFIX}x"), ("PREFIX", "p")],
            "SCOPE_STATSD_PREFIX",
            "px",
        ),
        (vec![("SCOPE_TAG_a", "env")], "SCOPE_TAG_a", "env"),
        (vec![("SCOPE_TAG_a", "env")], "SCOPE_TAG_b", "file"),
        (
            vec![("SCOPE_TAG_c", "$HOSTNAME"), ("HOSTNAME", "n1")],
            "SCOPE_TAG_c",
            "n1",
        ),
        (vec![], "SCOPE_CRIBL_ENABLE", "false"),
        (
            vec![("SCOPE_CRIBL", "tcp://127.0.0.1:10090")],
            "SCOPE_CRIBL_ENABLE",
            "true",
        ),
        // cribl forcing wins over env for the forced keys.
        (
            vec![
                ("SCOPE_CRIBL_ENABLE", "true"),
                ("SCOPE_METRIC_FORMAT", "statsd"),
            ],
            "SCOPE_METRIC_FORMAT",
            "ndjson",
        ),
        (
            vec![("SCOPE_CRIBL_ENABLE", "true"), ("SCOPE_LOG_LEVEL", "debug")],
            "SCOPE_LOG_LEVEL",
            "warning",
        ),
        (
            vec![
                ("SCOPE_CRIBL_ENABLE", "false"),
                ("SCOPE_LOG_LEVEL", "debug"),
            ],
            "SCOPE_LOG_LEVEL",
            "debug",
        ),
        // A bad env value keeps the file value and is reported.
        (
            vec![("SCOPE_METRIC_VERBOSITY", "eleven")],
            "SCOPE_METRIC_VERBOSITY",
            "6",
        ),
        (
            vec![("SCOPE_SNAPSHOT_DIR", "/x/crash")],
            "SCOPE_SNAPSHOT_DIR",
            "/x/crash",
        ),
        (vec![], "SCOPE_SNAPSHOT_DIR", "/tmp/appscope"),
        (vec![], "SCOPE_STATUS_DIR", ""),
    ];
    for (extra, key, want) in rows {
        let mut vars: Vec<(String, String)> = vec![
            ("SCOPE_CONF_PATH".into(), fp.clone()),
            ("HOME".into(), "/nonexistent".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let l = load_vars(&vars);
        assert_eq!(l.path.as_deref(), Some(f.as_path()));
        assert_eq!(
            l.config.get(key).as_deref(),
            Some(want),
            "env {extra:?} key {key}"
        );
        let bad_env = extra.iter().any(|(_, v)| *v == "eleven");
        assert_eq!(
            l.diagnostics.iter().any(|d| d.source == "env"),
            bad_env,
            "env {extra:?}: {:#?}",
            l.diagnostics
        );
    }
}

#[test]
fn command_files_override_env() {
    let vars = vec![
        (
            "SCOPE_CONF_PATH".to_string(),
            "/nonexistent/scope.yml".to_string(),
        ),
        ("HOME".to_string(), "/nonexistent".to_string()),
        ("SCOPE_CRIBL_ENABLE".to_string(), "false".to_string()),
        ("SCOPE_METRIC_VERBOSITY".to_string(), "2".to_string()),
    ];
    let mut l = load_vars(&vars);
    assert_eq!(l.config.metric.format.verbosity, 2);
    scope_config::cmdfile::parse(b"SCOPE_METRIC_VERBOSITY=9").apply(&mut l.config);
    assert_eq!(l.config.metric.format.verbosity, 9);
}

#[test]
fn no_file_no_env_gives_defaults_after_cribl_forcing() {
    let l = load(&|n: &str| (n == "HOME").then(|| "/nonexistent".to_string()));
    // Unless /etc/scope/scope.yml or ./scope.yml exist on this machine.
    if l.path.is_none() {
        let mut want = Config::default();
        want.apply_cribl_forcing();
        assert_eq!(l.config, want);
        assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    }
}

#[test]
fn reload_from_path_override() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("new.yml");
    write(&f, "libscope:\n  snapshot:\n    backtrace: true\n");
    let env = |n: &str| match n {
        "SCOPE_SNAPSHOT_COREDUMP" => Some("true".to_string()),
        _ => None,
    };
    let l = load_with(&LoadInput {
        env: &env,
        tag_vars: vec![],
        identity: None,
        path_override: Some(f.clone()),
    });
    assert_eq!(l.path, Some(f));
    assert!(l.config.libscope.snapshot.backtrace && l.config.libscope.snapshot.coredump);
}

#[test]
fn custom_entries_apply_between_file_and_env() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("scope.yml");
    write(
        &f,
        "metric:\n  format:\n    verbosity: 1\ncustom:\n  web:\n    filter:\n      procname: nginx\n    config:\n      metric:\n        format:\n          verbosity: 6\n      tags:\n        svc: $SVC\n",
    );
    let fp = f.display().to_string();
    let id = scope_config::ProcessIdentity {
        procname: "nginx".into(),
        ..Default::default()
    };
    let run = |extra: &[(&str, &str)], id: Option<&scope_config::ProcessIdentity>| {
        let mut vars: Vec<(&str, String)> =
            vec![("SCOPE_CONF_PATH", fp.clone()), ("SVC", "shop".into())];
        vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let env = env_of(&vars);
        load_with(&LoadInput {
            env: &env,
            tag_vars: vec![],
            identity: id,
            path_override: None,
        })
    };
    assert_eq!(run(&[], None).config.metric.format.verbosity, 1);
    let l = run(&[], Some(&id));
    assert_eq!(l.config.metric.format.verbosity, 6);
    assert_eq!(l.config.tags["svc"], "shop");
    let l = run(&[("SCOPE_METRIC_VERBOSITY", "9")], Some(&id));
    assert_eq!(l.config.metric.format.verbosity, 9, "env wins over custom");
}

fn vars_with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![
        (
            "SCOPE_CONF_PATH".to_string(),
            "/nonexistent/scope.yml".to_string(),
        ),
        ("HOME".to_string(), "/nonexistent".to_string()),
    ];
    v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
    v
}

#[test]
fn explicit_destination_in_env_wins_over_cribl_default() {
    // The issue's own example: only destinations are given. They must be used.
    let l = load_vars(&vars_with(&[
        ("SCOPE_EVENT_DEST", "tcp://127.0.0.1:9109"),
        ("SCOPE_METRIC_DEST", "udp://127.0.0.1:8125"),
    ]));
    assert!(!l.config.cribl.enable);
    assert_eq!(l.config.event_transport().url(), "tcp://127.0.0.1:9109");
    assert_eq!(l.config.metric_transport().url(), "udp://127.0.0.1:8125");
    // Metrics keep their own format (statsd): cribl forcing did not apply.
    assert_eq!(
        l.config.metric.format.kind,
        Config::default().metric.format.kind
    );

    // Naming cribl alongside keeps AppScope's behaviour: cribl carries both.
    let l = load_vars(&vars_with(&[
        ("SCOPE_EVENT_DEST", "tcp://127.0.0.1:9109"),
        ("SCOPE_CRIBL_ENABLE", "true"),
    ]));
    assert!(l.config.cribl.enable);
    assert_eq!(l.config.event_transport(), &l.config.cribl.transport);

    // No destination given: the stock default (cribl on) stands.
    let l = load_vars(&vars_with(&[("SCOPE_METRIC_VERBOSITY", "3")]));
    assert_eq!(l.config.cribl.enable, Config::default().cribl.enable);
}

#[test]
fn explicit_destination_in_command_file_wins_over_cribl() {
    let mut l = load_vars(&vars_with(&[]));
    scope_config::cmdfile::parse(b"SCOPE_EVENT_DEST=unix:///tmp/ev.sock\n").apply(&mut l.config);
    assert!(!l.config.cribl.enable);
    assert_eq!(l.config.event_transport().url(), "unix:///tmp/ev.sock");
    // A later file can turn cribl back on explicitly.
    scope_config::cmdfile::parse(b"SCOPE_CRIBL_ENABLE=true\nSCOPE_EVENT_DEST=tcp://h:1\n")
        .apply(&mut l.config);
    assert!(l.config.cribl.enable);
}
