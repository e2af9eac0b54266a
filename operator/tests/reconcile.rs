//! Table-driven tests of the pure reconcile decisions: selection, overlay by priority and
#![allow(clippy::type_complexity)]
//! name, diff against the config in effect, revert, per-process steps, status
//! aggregation and retention.

use std::collections::{BTreeMap, BTreeSet};

use appscope_operator::crd::{
    NodeStatus, ProcessCounts, ScopeConfig, ScopeConfigSpec, ScopeConfigStatus,
};
use appscope_operator::reconcile::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use scope_config::Config;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sc(
    name: &str,
    prio: i32,
    sel: &[(&str, &str)],
    containers: Option<&[&str]>,
    env: &[(&str, &str)],
) -> ScopeConfig {
    let mut s = ScopeConfig::new(
        name,
        ScopeConfigSpec {
            selector: LabelSelector {
                match_labels: (!sel.is_empty()).then(|| labels(sel)),
                match_expressions: None,
            },
            containers: containers.map(|c| c.iter().map(|s| s.to_string()).collect()),
            env: labels(env),
            priority: prio,
        },
    );
    s.metadata.namespace = Some("shop".into());
    s.metadata.generation = Some(3);
    s
}

#[test]
fn selection_table() {
    let web = labels(&[("app", "web"), ("tier", "front")]);
    let expr = |op: &str, vals: &[&str]| LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app".into(),
            operator: op.into(),
            values: Some(vals.iter().map(|s| s.to_string()).collect()),
        }]),
    };
    let cases: Vec<(&str, LabelSelector, bool)> = vec![
        ("empty selects all", LabelSelector::default(), true),
        (
            "matchLabels hit",
            LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                match_expressions: None,
            },
            true,
        ),
        (
            "matchLabels miss",
            LabelSelector {
                match_labels: Some(labels(&[("app", "db")])),
                match_expressions: None,
            },
            false,
        ),
        ("In hit", expr("In", &["web", "api"]), true),
        ("In miss", expr("In", &["db"]), false),
        ("NotIn", expr("NotIn", &["web"]), false),
        ("Exists", expr("Exists", &[]), true),
        ("DoesNotExist", expr("DoesNotExist", &[]), false),
        ("bogus operator", expr("Near", &["web"]), false),
    ];
    for (what, sel, want) in cases {
        assert_eq!(selector_matches(&sel, &web), want, "{what}");
    }
    // namespace and containers filters
    let s = sc("a", 0, &[("app", "web")], Some(&["app"]), &[]);
    assert!(selects(&s, "shop", &web, "app"));
    assert!(!selects(&s, "shop", &web, "sidecar"), "containers filter");
    assert!(!selects(&s, "other", &web, "app"), "other namespace");
    let all = sc("b", 0, &[], None, &[]);
    assert!(selects(&all, "shop", &labels(&[]), "anything"));
}

#[test]
fn env_validation_table() {
    let cases = [
        ("SCOPE_EVENT_HTTP", "true", None),
        ("SCOPE_METRIC_VERBOSITY", "9", None),
        ("SCOPE_METRIC_VERBOSITY", "12", Some("InvalidValue")),
        ("SCOPE_NO_SUCH_THING", "1", Some("UnknownSetting")),
        ("SCOPE_CMD_SNAPSHOT", "true", Some("NotRuntimeSetting")),
        ("SCOPE_CONF_RELOAD", "true", Some("NotRuntimeSetting")),
    ];
    for (k, v, want) in cases {
        assert_eq!(check_env(k, v).err().map(|e| e.reason), want, "{k}={v}");
    }
}

#[test]
fn overlay_by_priority_then_name() {
    let low = sc(
        "zz-low",
        0,
        &[],
        None,
        &[
            ("SCOPE_METRIC_VERBOSITY", "2"),
            ("SCOPE_EVENT_HTTP", "false"),
        ],
    );
    let high = sc("mm-high", 10, &[], None, &[("SCOPE_METRIC_VERBOSITY", "7")]);
    let tie_a = sc("aa-tie", 0, &[], None, &[("SCOPE_EVENT_HTTP", "true")]);
    let bad = sc(
        "bad",
        100,
        &[],
        None,
        &[
            ("SCOPE_METRIC_VERBOSITY", "99"),
            ("SCOPE_LOG_LEVEL", "debug"),
        ],
    );
    let cases: Vec<(&str, Vec<&ScopeConfig>, Vec<(&str, &str, &str)>)> = vec![
        ("none", vec![], vec![]),
        (
            "single",
            vec![&low],
            vec![
                ("SCOPE_EVENT_HTTP", "false", "shop/zz-low"),
                ("SCOPE_METRIC_VERBOSITY", "2", "shop/zz-low"),
            ],
        ),
        (
            "higher priority wins",
            vec![&low, &high],
            vec![
                ("SCOPE_EVENT_HTTP", "false", "shop/zz-low"),
                ("SCOPE_METRIC_VERBOSITY", "7", "shop/mm-high"),
            ],
        ),
        (
            "order of input irrelevant",
            vec![&high, &low],
            vec![
                ("SCOPE_EVENT_HTTP", "false", "shop/zz-low"),
                ("SCOPE_METRIC_VERBOSITY", "7", "shop/mm-high"),
            ],
        ),
        (
            "tie: first name wins",
            vec![&low, &tie_a],
            vec![
                ("SCOPE_EVENT_HTTP", "true", "shop/aa-tie"),
                ("SCOPE_METRIC_VERBOSITY", "2", "shop/zz-low"),
            ],
        ),
        (
            "invalid entries skipped",
            vec![&low, &bad],
            vec![
                ("SCOPE_EVENT_HTTP", "false", "shop/zz-low"),
                ("SCOPE_LOG_LEVEL", "debug", "shop/bad"),
                ("SCOPE_METRIC_VERBOSITY", "2", "shop/zz-low"),
            ],
        ),
    ];
    for (what, input, want) in cases {
        let got = desired_overlay(&input);
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(k, d)| (k.as_str(), d.value.as_str(), d.source.as_str()))
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

fn desired(pairs: &[(&str, &str)]) -> BTreeMap<String, Desired> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Desired {
                    value: v.to_string(),
                    source: "shop/x".into(),
                },
            )
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plan_table() {
    let base = Config::default(); // verbosity 4, http events on
    let mut v7 = Config::default();
    v7.set("SCOPE_METRIC_VERBOSITY", "7").unwrap();
    let cases: Vec<(
        &str,
        BTreeMap<String, Desired>,
        &Config,
        BTreeSet<String>,
        bool,
        Vec<(&str, &str)>,
    )> = vec![
        (
            "nothing desired, nothing managed",
            desired(&[]),
            &base,
            set(&[]),
            false,
            vec![],
        ),
        (
            "already in effect",
            desired(&[("SCOPE_METRIC_VERBOSITY", "4")]),
            &base,
            set(&[]),
            false,
            vec![],
        ),
        (
            "normalised compare",
            desired(&[("SCOPE_EVENT_HTTP", "TRUE")]),
            &base,
            set(&[]),
            false,
            vec![],
        ),
        (
            "difference only",
            desired(&[
                ("SCOPE_METRIC_VERBOSITY", "7"),
                ("SCOPE_EVENT_HTTP", "true"),
            ]),
            &base,
            set(&[]),
            false,
            vec![("SCOPE_METRIC_VERBOSITY", "7")],
        ),
        (
            "applied earlier",
            desired(&[("SCOPE_METRIC_VERBOSITY", "7")]),
            &v7,
            set(&["SCOPE_METRIC_VERBOSITY"]),
            false,
            vec![],
        ),
        (
            "deleted config reverts",
            desired(&[]),
            &v7,
            set(&["SCOPE_METRIC_VERBOSITY"]),
            true,
            vec![],
        ),
        (
            "revert one, keep other",
            desired(&[("SCOPE_EVENT_HTTP", "false")]),
            &v7,
            set(&["SCOPE_METRIC_VERBOSITY", "SCOPE_EVENT_HTTP"]),
            true,
            vec![("SCOPE_EVENT_HTTP", "false")],
        ),
    ];
    for (what, d, cfg, managed, reload, want) in cases {
        let p = plan(&d, cfg, &managed);
        assert_eq!(p.reload, reload, "{what}");
        let got: Vec<(&str, &str)> = p
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want, "{what}");
    }
    let p = plan(&desired(&[]), &v7, &set(&["SCOPE_METRIC_VERBOSITY"]));
    assert_eq!(
        p.lines(),
        vec![("SCOPE_CONF_RELOAD".to_string(), "true".to_string())]
    );
    assert_eq!(p.reverted, vec!["SCOPE_METRIC_VERBOSITY".to_string()]);
}

#[test]
fn process_steps_write_confirm_revert() {
    let period = 10_000;
    let base = Config::default();
    let mut v7 = Config::default();
    v7.set("SCOPE_METRIC_VERBOSITY", "7").unwrap();
    let want = desired(&[("SCOPE_METRIC_VERBOSITY", "7")]);
    let obs = |cfg, updated, pending, now| Observed {
        in_effect: cfg,
        status_updated_ms: updated,
        cmd_file_pending: pending,
        last_command: None,
        now_ms: now,
        period_ms: period,
    };
    // 1. first sight: write the difference
    let s1 = step(&want, &obs(&base, 0, false, 1_000), &ProcMemory::default());
    assert_eq!(s1.state, ProcState::Pending);
    assert_eq!(
        s1.write,
        Some(vec![("SCOPE_METRIC_VERBOSITY".into(), "7".into())])
    );
    // 2. file not read yet: wait, no rewrite
    let s2 = step(&want, &obs(&base, 500, true, 3_000), &s1.memory);
    assert_eq!((s2.state, s2.write.is_none()), (ProcState::Pending, true));
    // 3. consumed but status not showing it, within backoff: wait
    let s3 = step(&want, &obs(&base, 900, false, 5_000), &s2.memory);
    assert!(s3.write.is_none());
    // 4. past the backoff (2 periods) with nothing applied: rewrite
    let s4 = step(
        &want,
        &obs(&base, 900, false, 1_000 + 2 * period + 1),
        &s3.memory,
    );
    assert!(s4.write.is_some(), "retry after backoff");
    assert_eq!(s4.memory.attempts, 2);
    // 5. status shows it: applied, nothing written, backoff reset
    let s5 = step(&want, &obs(&v7, 30_000, false, 31_000), &s4.memory);
    assert_eq!((s5.state, s5.write.clone()), (ProcState::Applied, None));
    assert_eq!(s5.memory.attempts, 0);
    assert!(s5.memory.managed.contains("SCOPE_METRIC_VERBOSITY"));
    // 6. same again: idempotent
    let s6 = step(&want, &obs(&v7, 40_000, false, 41_000), &s5.memory);
    assert_eq!((s6.state, s6.write.clone()), (ProcState::Applied, None));
    // 7. the ScopeConfig is gone: reload to revert
    let s7 = step(&desired(&[]), &obs(&v7, 50_000, false, 51_000), &s6.memory);
    assert_eq!(
        s7.write,
        Some(vec![("SCOPE_CONF_RELOAD".into(), "true".into())])
    );
    // 8. reload consumed, baseline in effect: applied and nothing managed any more
    let s8 = step(
        &desired(&[]),
        &obs(&base, 52_000, false, 53_000),
        &s7.memory,
    );
    assert_eq!((s8.state, s8.write.clone()), (ProcState::Applied, None));
    assert!(s8.memory.managed.is_empty());
}

#[test]
fn rejected_setting_is_failed_not_resent() {
    let base = Config::default();
    let want = desired(&[("SCOPE_METRIC_VERBOSITY", "7")]);
    let s1 = step(
        &want,
        &Observed {
            in_effect: &base,
            status_updated_ms: 0,
            cmd_file_pending: false,
            last_command: None,
            now_ms: 1_000,
            period_ms: 10_000,
        },
        &ProcMemory::default(),
    );
    let lc = scope_config::status::LastCommand {
        file: "/appscope/run/app/cmd/scope.1".into(),
        applied: vec![],
        rejected: vec![scope_config::status::Rejected {
            line: 1,
            reason: "refused by policy".into(),
        }],
        at: "2026-01-01T00:00:00Z".into(),
    };
    let obs = Observed {
        in_effect: &base,
        status_updated_ms: 2_000,
        cmd_file_pending: false,
        last_command: Some(&lc),
        now_ms: 100_000,
        period_ms: 10_000,
    };
    let s2 = step(&want, &obs, &s1.memory);
    assert_eq!(s2.state, ProcState::Failed);
    assert_eq!(s2.write, None);
    assert_eq!(
        s2.memory
            .rejected
            .get("SCOPE_METRIC_VERBOSITY")
            .map(String::as_str),
        Some("refused by policy")
    );
    // A new value is sent even though the old one was rejected.
    let s3 = step(
        &desired(&[("SCOPE_METRIC_VERBOSITY", "6")]),
        &obs,
        &s2.memory,
    );
    assert_eq!(
        s3.write,
        Some(vec![("SCOPE_METRIC_VERBOSITY".into(), "6".into())])
    );
}

fn with_nodes(nodes: &[(&str, i64, i64, i64, i64)]) -> ScopeConfigStatus {
    ScopeConfigStatus {
        nodes: nodes
            .iter()
            .map(|(n, m, a, p, f)| NodeStatus {
                name: n.to_string(),
                pods: 1,
                processes: ProcessCounts {
                    matched: *m,
                    applied: *a,
                    pending: *p,
                    failed: *f,
                },
                errors: if *f > 0 {
                    vec!["SCOPE_X: refused".into()]
                } else {
                    vec![]
                },
                updated: None,
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn status_aggregation_table() {
    let good = sc(
        "good",
        0,
        &[("app", "web")],
        None,
        &[("SCOPE_METRIC_VERBOSITY", "7")],
    );
    let unknown = sc("u", 0, &[], None, &[("SCOPE_FOO", "1")]);
    let invalid = sc("i", 0, &[], None, &[("SCOPE_METRIC_VERBOSITY", "x")]);
    let cases: Vec<(
        &str,
        &ScopeConfig,
        i64,
        ScopeConfigStatus,
        &str,
        &str,
        bool,
        ProcessCounts,
    )> = vec![
        (
            "all applied",
            &good,
            2,
            with_nodes(&[("n1", 2, 2, 0, 0), ("n2", 1, 1, 0, 0)]),
            "True",
            "Applied",
            false,
            ProcessCounts {
                matched: 3,
                applied: 3,
                pending: 0,
                failed: 0,
            },
        ),
        (
            "pending",
            &good,
            2,
            with_nodes(&[("n1", 2, 1, 1, 0)]),
            "False",
            "Pending",
            false,
            ProcessCounts {
                matched: 2,
                applied: 1,
                pending: 1,
                failed: 0,
            },
        ),
        (
            "rejected",
            &good,
            1,
            with_nodes(&[("n1", 1, 0, 0, 1)]),
            "False",
            "ProcessRejected",
            true,
            ProcessCounts {
                matched: 1,
                applied: 0,
                pending: 0,
                failed: 1,
            },
        ),
        (
            "no pods",
            &good,
            0,
            with_nodes(&[]),
            "False",
            "NoMatchingPods",
            true,
            ProcessCounts::default(),
        ),
        (
            "unknown name",
            &unknown,
            1,
            with_nodes(&[]),
            "False",
            "UnknownSetting",
            true,
            ProcessCounts::default(),
        ),
        (
            "invalid value",
            &invalid,
            1,
            with_nodes(&[]),
            "False",
            "InvalidValue",
            true,
            ProcessCounts::default(),
        ),
    ];
    for (what, s, matched, prev, ready, reason, degraded, counts) in cases {
        let st = aggregate_status(s, matched, Some(&prev), "2026-11-26T08:00:00Z");
        assert_eq!(st.observed_generation, Some(3), "{what}");
        assert_eq!(st.matched_pods, Some(matched), "{what}");
        assert_eq!(st.processes, Some(counts), "{what}");
        let r = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        let d = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            (ready, reason),
            "{what}"
        );
        assert_eq!(d.status == "True", degraded, "{what}");
    }
    let st = aggregate_status(&unknown, 1, None, "t0");
    assert!(
        st.conditions[0]
            .message
            .contains("SCOPE_FOO is not a SCOPE_* setting"),
        "{:?}",
        st.conditions
    );
}

#[test]
fn status_no_op_detection_keeps_transition_times() {
    let good = sc("good", 0, &[], None, &[("SCOPE_METRIC_VERBOSITY", "7")]);
    let prev = with_nodes(&[("n1", 1, 1, 0, 0)]);
    let first = aggregate_status(&good, 1, Some(&prev), "t1");
    assert!(status_changed(Some(&prev), &first));
    let mut stored = first.clone();
    stored.nodes = prev.nodes.clone();
    let second = aggregate_status(&good, 1, Some(&stored), "t2");
    assert!(
        !status_changed(Some(&stored), &second),
        "nothing changed: no write"
    );
    assert_eq!(
        second.conditions[0].last_transition_time.as_deref(),
        Some("t1")
    );
    // a new generation is a change
    let mut g4 = good.clone();
    g4.metadata.generation = Some(4);
    assert!(status_changed(
        Some(&stored),
        &aggregate_status(&g4, 1, Some(&stored), "t3")
    ));
}

#[test]
fn retention_applies_per_namespace() {
    use chrono::{Duration, TimeZone, Utc};
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap();
    let item = |ns: &str, id: &str, hours: i64, bytes: u64| RetainItem {
        namespace: ns.into(),
        id: id.into(),
        time: now - Duration::hours(hours),
        bytes,
    };
    let items = vec![
        item("a", "a1", 1, 10),
        item("a", "a2", 2, 10),
        item("a", "a3", 3, 10),
        item("b", "b1", 1, 10),
        item("b", "b2", 100, 10),
    ];
    let limits = node_agent::store::Retention {
        max_reports: Some(2),
        max_bytes: None,
        max_age: Some(std::time::Duration::from_secs(48 * 3600)),
    };
    let mut got = retention_per_namespace(&items, &limits, now);
    got.sort();
    assert_eq!(
        got,
        vec!["a3", "b2"],
        "count applies in a; age in b; b1 kept though a is full"
    );
    let bytes = node_agent::store::Retention {
        max_reports: None,
        max_bytes: Some(15),
        max_age: None,
    };
    let mut got = retention_per_namespace(&items, &bytes, now);
    got.sort();
    assert_eq!(got, vec!["a2", "a3", "b2"]);
}

// ------------------------------------------------------------ retention, agent and controller

mod retention_coherence {
    use super::*;
    use appscope_operator::crd::{ReportFile, ScopeCrashReport, ScopeCrashReportSpec};
    use chrono::{Duration, TimeZone, Utc};
    use node_agent::store::Retention;

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap()
    }

    fn cr(ns: &str, name: &str, node: &str, minutes: i64, sizes: &[u64]) -> ScopeCrashReport {
        let mut r = ScopeCrashReport::new(
            name,
            ScopeCrashReportSpec {
                node: node.into(),
                time: rfc3339(now() - Duration::minutes(minutes)),
                files: sizes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ReportFile {
                        name: format!("f{i}"),
                        size: *s,
                        sha256: String::new(),
                    })
                    .collect(),
                ..Default::default()
            },
        );
        r.metadata.namespace = Some(ns.into());
        r
    }

    #[test]
    fn items_come_from_the_crash_report_object() {
        let r = cr("shop", "web-1-x", "n1", 90, &[100, 23]);
        let i = RetainItem::of_crash_report(&r, now());
        assert_eq!(i.namespace, "shop");
        assert_eq!(i.id, "web-1-x");
        assert_eq!(i.time, now() - Duration::minutes(90));
        assert_eq!(i.bytes, 123, "bytes are the sum of spec.files");
        // No parseable time: the creation time, else now.
        let mut bad = r.clone();
        bad.spec.time = "yesterday".into();
        assert_eq!(RetainItem::of_crash_report(&bad, now()).time, now());
        bad.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                appscope_operator::kubeapi::ts(now() - Duration::hours(5)),
            ));
        assert_eq!(
            RetainItem::of_crash_report(&bad, now()).time,
            now() - Duration::hours(5)
        );
    }

    /// A small deterministic generator (no extra dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn scene(seed: u64) -> (Vec<ScopeCrashReport>, Retention) {
        let mut g = Lcg(seed);
        let n = 1 + g.next(40) as usize;
        let reports = (0..n)
            .map(|i| {
                cr(
                    ["a", "b", "c"][g.next(3) as usize],
                    &format!("r{i}"),
                    ["n1", "n2", "n3"][g.next(3) as usize],
                    g.next(60 * 24 * 10) as i64,
                    &[g.next(500)],
                )
            })
            .collect();
        let limits = Retention {
            max_reports: [None, Some(1), Some(3), Some(8)][g.next(4) as usize],
            max_bytes: [None, Some(300), Some(2000)][g.next(3) as usize],
            max_age: [None, Some(std::time::Duration::from_secs(3 * 86400))][g.next(2) as usize],
        };
        (reports, limits)
    }

    fn controller_deletes(reports: &[ScopeCrashReport], limits: &Retention) -> BTreeSet<String> {
        let view = ControllerView {
            reports: reports.iter().collect(),
            ..Default::default()
        };
        plan_controller(&view, "", limits, now())
            .deletes
            .into_iter()
            .map(|(ns, name)| format!("{ns}/{name}"))
            .collect()
    }

    /// With the shared store every agent sees every report: the agents together remove
    /// exactly the reports whose CRs the controller deletes, each its own node's.
    #[test]
    fn shared_store_agents_and_controller_decide_the_same() {
        for seed in 0..300 {
            let (reports, limits) = scene(seed);
            let stored: Vec<(String, ScopeCrashReport)> = reports
                .iter()
                .map(|r| {
                    let id = format!(
                        "{}/{}",
                        r.metadata.namespace.as_deref().unwrap(),
                        r.metadata.name.as_deref().unwrap()
                    );
                    (id, r.clone())
                })
                .collect();
            let mut by_agents = BTreeSet::new();
            for node in ["n1", "n2", "n3"] {
                for id in retention_for_node(&stored, node, &limits, now()) {
                    let r = &stored.iter().find(|(i, _)| *i == id).unwrap().1;
                    assert_eq!(
                        r.spec.node, node,
                        "an agent removes only its node's reports"
                    );
                    assert!(by_agents.insert(id), "two agents removed one report");
                }
            }
            assert_eq!(
                by_agents,
                controller_deletes(&reports, &limits),
                "seed {seed} limits {limits:?}"
            );
        }
    }

    /// With per-node stores an agent sees its node's reports only: it never removes a
    /// report the controller keeps.
    #[test]
    fn per_node_stores_agents_remove_a_subset() {
        let mut strict = 0;
        for seed in 0..300 {
            let (reports, limits) = scene(seed);
            let cluster = controller_deletes(&reports, &limits);
            let mut by_agents = BTreeSet::new();
            for node in ["n1", "n2", "n3"] {
                let local: Vec<(String, ScopeCrashReport)> = reports
                    .iter()
                    .filter(|r| r.spec.node == node)
                    .map(|r| {
                        let id = format!(
                            "{}/{}",
                            r.metadata.namespace.as_deref().unwrap(),
                            r.metadata.name.as_deref().unwrap()
                        );
                        (id, r.clone())
                    })
                    .collect();
                by_agents.extend(retention_for_node(&local, node, &limits, now()));
            }
            assert!(
                by_agents.is_subset(&cluster),
                "seed {seed}: agents removed {:?} the controller keeps",
                by_agents.difference(&cluster).collect::<Vec<_>>()
            );
            strict += usize::from(by_agents != cluster);
        }
        assert!(
            strict > 0,
            "the scenes include cases where the cluster view removes more"
        );
    }

    #[test]
    fn the_same_name_in_two_namespaces_is_two_reports() {
        let reports = vec![
            cr("a", "same", "n1", 10, &[1]),
            cr("a", "older", "n1", 20, &[1]),
            cr("b", "same", "n1", 30, &[1]),
        ];
        let limits = Retention {
            max_reports: Some(1),
            ..Default::default()
        };
        assert_eq!(
            controller_deletes(&reports, &limits),
            BTreeSet::from(["a/older".to_string()])
        );
    }
}

// ------------------------------------------------------------ the controller's pass

mod controller_pass {
    use super::*;
    use appscope_operator::crd::{ScopeCrashReport, ScopeCrashReportSpec};
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ns: &str, app: &str, scoped: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(format!("{app}-1")),
            namespace: Some(ns.into()),
            labels: Some(labels(&[("app", app)])),
            annotations: scoped.then(|| labels(&[(INJECTED_ANNOTATION, "true")])),
            ..Default::default()
        }
    }

    fn cm(ns: &str, ours: bool, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("appscope".into()),
                namespace: Some(ns.into()),
                labels: ours.then(|| labels(&[MANAGED_BY])),
                ..Default::default()
            },
            data: Some(labels(data)),
            ..Default::default()
        }
    }

    #[test]
    fn configmap_action_table() {
        let yml = "metric: {}\n";
        let cases: Vec<(Option<ConfigMap>, ConfigMapAction)> = vec![
            (None, ConfigMapAction::Create),
            (
                Some(cm("x", true, &[("scope.yml", yml)])),
                ConfigMapAction::Unchanged,
            ),
            (
                Some(cm("x", true, &[("scope.yml", "old")])),
                ConfigMapAction::Update,
            ),
            (
                Some(cm("x", true, &[("scope.yml", yml), ("extra", "1")])),
                ConfigMapAction::Update,
            ),
            (Some(cm("x", true, &[])), ConfigMapAction::Update),
            // The user's, whatever it holds.
            (
                Some(cm("x", false, &[("scope.yml", "old")])),
                ConfigMapAction::UserOwned,
            ),
            (
                Some(cm("x", false, &[("scope.yml", yml)])),
                ConfigMapAction::UserOwned,
            ),
        ];
        for (existing, want) in cases {
            assert_eq!(
                configmap_action(existing.as_ref(), yml),
                want,
                "{existing:?}"
            );
        }
    }

    #[test]
    fn namespaces_with_scoped_pods_or_scopeconfigs_get_the_configmap() {
        let pods = [
            pod("a", "web", true),
            pod("b", "web", false),
            pod("c", "web", true),
        ];
        let mut sc_d = sc("x", 0, &[], None, &[]);
        sc_d.metadata.namespace = Some("d".into());
        let configmaps = [cm("c", false, &[("scope.yml", "mine")])];
        let view = ControllerView {
            pods: pods.iter().collect(),
            configs: vec![&sc_d],
            configmaps: configmaps.iter().collect(),
            reports: vec![],
        };
        let plan = plan_controller(&view, "y", &Default::default(), chrono::Utc::now());
        let ns: Vec<(&str, ConfigMapAction)> = plan
            .configmaps
            .iter()
            .map(|w| (w.namespace.as_str(), w.action))
            .collect();
        assert_eq!(
            ns,
            [
                ("a", ConfigMapAction::Create),
                ("d", ConfigMapAction::Create)
            ],
            "b has no scoped pod; c has the user's ConfigMap"
        );
        assert_eq!(plan.user_owned, ["c"]);
    }

    #[test]
    fn status_writes_only_for_changes_and_not_for_deleted_configs() {
        let pods = [pod("ns", "web", true), pod("ns", "db", false)];
        let mut web = sc("web", 0, &[("app", "web")], None, &[]);
        web.metadata.generation = Some(1);
        let mut db = sc("db", 0, &[("app", "db")], None, &[]);
        db.metadata.generation = Some(1);
        let mut gone = sc("gone", 0, &[("app", "web")], None, &[]);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                appscope_operator::kubeapi::ts(chrono::Utc::now()),
            ));
        for s in [&mut web, &mut db, &mut gone] {
            s.metadata.namespace = Some("ns".into());
        }
        let p: Vec<&ObjectMeta> = pods.iter().collect();
        assert_eq!(matched_pods(&web, &p), 1);
        assert_eq!(matched_pods(&db, &p), 0, "db-1 is not scoped");
        // web's status is current already.
        web.status = Some(aggregate_status(&web, 1, None, "t0"));
        let view = ControllerView {
            pods: p.clone(),
            configs: vec![&web, &db, &gone],
            ..Default::default()
        };
        let plan = plan_controller(&view, "y", &Default::default(), chrono::Utc::now());
        let names: Vec<&str> = plan.statuses.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["db"]);
        assert_eq!(plan.statuses[0].status.matched_pods, Some(0));
        assert_eq!(
            plan.statuses[0].status.conditions[0].reason,
            "NoMatchingPods"
        );
    }

    #[test]
    fn reports_being_deleted_are_not_deleted_again() {
        let mut r = ScopeCrashReport::new(
            "r",
            ScopeCrashReportSpec {
                time: "2020-01-01T00:00:00Z".into(),
                ..Default::default()
            },
        );
        r.metadata.namespace = Some("ns".into());
        let limits = node_agent::store::Retention {
            max_age: Some(std::time::Duration::from_secs(3600)),
            ..Default::default()
        };
        let view = ControllerView {
            reports: vec![&r],
            ..Default::default()
        };
        let plan = plan_controller(&view, "y", &limits, chrono::Utc::now());
        assert_eq!(plan.deletes, [("ns".to_string(), "r".to_string())]);
        r.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            appscope_operator::kubeapi::ts(chrono::Utc::now()),
        ));
        let view = ControllerView {
            reports: vec![&r],
            ..Default::default()
        };
        assert!(plan_controller(&view, "y", &limits, chrono::Utc::now()).is_empty());
    }
}
