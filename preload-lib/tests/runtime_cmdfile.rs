//! The command directory against a real scoped process: the seed example and its
//! reversal, rejected lines reported, symlink / wrong owner / oversize refused and left
//! alone, two files in the same second both applied, a destination change reconnects,
//! and the start message is sent again after each change.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

fn verbosity(s: &Value) -> u64 {
    s["config"]["current"]["metric"]["format"]["verbosity"]
        .as_u64()
        .unwrap_or(99)
}

fn http_events_on(s: &Value) -> bool {
    s["config"]["current"]["event"]["watch"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["type"] == "http")
}

fn long_running(env: &Env, events: &Collector) -> Guarded {
    let mut c = env.scoped(env.sleep_program());
    c.arg("60")
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", &events.addr);
    let g = Guarded::spawn(c);
    env.wait_status(g.pid(), "first status", T, |_| true);
    g
}

#[test]
fn seed_example_applies_next_period_and_reverses() {
    seed_example_for(Libc::Glibc);
}

#[test]
fn musl_seed_example_applies_next_period_and_reverses() {
    seed_example_for(Libc::Musl);
}

fn seed_example_for(libc: Libc) {
    let env = Env::for_libc(libc);
    let col = Collector::tcp();
    let g = long_running(&env, &col);
    let pid = g.pid();
    col.lines.wait("first start message", T, |l| !l.is_empty());
    let st = env.status(pid).unwrap();
    assert_eq!(verbosity(&st), 4);
    assert!(http_events_on(&st));

    let f = env.write_cmd(pid, "SCOPE_METRIC_VERBOSITY=9\nSCOPE_EVENT_HTTP=false\n");
    let st = env.wait_status(pid, "verbosity 9 and no http events", T, |s| {
        verbosity(s) == 9 && !http_events_on(s)
    });
    assert!(!f.exists(), "the command file is deleted once applied");
    let lc = &st["last_command"];
    assert_eq!(lc["file"], f.display().to_string());
    assert_eq!(
        lc["applied"],
        serde_json::json!(["SCOPE_METRIC_VERBOSITY", "SCOPE_EVENT_HTTP"])
    );
    assert_eq!(lc["rejected"], serde_json::json!([]));
    // The start message goes out again with the new config in effect.
    col.lines.wait("second start message", T, |_| {
        col.lines.start_messages().len() >= 2
    });
    let second = col.lines.start_messages()[1].clone();
    assert_eq!(
        second["info"]["configuration"]["current"]["metric"]["format"]["verbosity"],
        9
    );
    assert_eq!(second["info"]["process"]["pid"], pid);
    // Not schema-validated here: AppScope's schema lists the event watch entries by
    // position, so a config without the http entry does not fit it (scope-config's
    // config_in_effect shape; reported). The first start message is validated.
    assert_valid_start_msg(&col.lines.start_messages()[0]);

    env.write_cmd(pid, "SCOPE_METRIC_VERBOSITY=4\nSCOPE_EVENT_HTTP=true\n");
    env.wait_status(pid, "reversed", T, |s| {
        verbosity(s) == 4 && http_events_on(s)
    });
    assert_eq!(
        *col.conns.lock().unwrap(),
        1,
        "no reconnect when the destination is unchanged"
    );
}

#[test]
fn rejected_lines_are_reported_in_the_status_file() {
    let env = Env::new();
    let col = Collector::tcp();
    let g = long_running(&env, &col);
    let pid = g.pid();
    env.write_cmd(
        pid,
        "# a comment\n\n  SCOPE_METRIC_VERBOSITY = 7  \nSCOPE_NO_SUCH_THING=1\nnot a setting\nSCOPE_METRIC_VERBOSITY=42\n",
    );
    let st = env.wait_status(pid, "command applied", T, |s| s["last_command"].is_object());
    assert_eq!(
        verbosity(&st),
        7,
        "valid line applied, invalid value ignored"
    );
    let lc = &st["last_command"];
    assert_eq!(lc["applied"], serde_json::json!(["SCOPE_METRIC_VERBOSITY"]));
    let lines: Vec<u64> = lc["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![4, 5, 6], "{lc}");
    for r in lc["rejected"].as_array().unwrap() {
        assert!(!r["reason"].as_str().unwrap().is_empty());
    }
}

#[test]
fn symlink_wrong_owner_and_oversize_are_refused_and_left_alone() {
    let env = Env::new();
    let col = Collector::tcp();
    let g = long_running(&env, &col);
    let pid = g.pid();
    let path = env.cmd_dir().join(format!("scope.{pid}"));

    // Symlink to a valid file.
    let target = env.path().join("target");
    std::fs::write(&target, "SCOPE_METRIC_VERBOSITY=9\n").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let st = env.wait_status(pid, "symlink refused", T, |s| {
        s["last_command"]["rejected"]
            .to_string()
            .contains("symbolic link")
    });
    assert_eq!(verbosity(&st), 4);
    assert!(path.symlink_metadata().is_ok(), "symlink left in place");
    std::fs::remove_file(&path).unwrap();

    // Owned by another (non-root) user.
    std::fs::write(&path, "SCOPE_METRIC_VERBOSITY=9\n").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let st = env.wait_status(pid, "wrong owner refused", T, |s| {
        s["last_command"]["rejected"]
            .to_string()
            .contains("owned by uid 65534")
    });
    assert_eq!(verbosity(&st), 4);
    assert!(path.exists(), "left in place");
    std::fs::remove_file(&path).unwrap();

    // Over 64 KiB.
    let mut big = String::from("SCOPE_METRIC_VERBOSITY=9\n");
    while big.len() <= 64 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, big).unwrap();
    let st = env.wait_status(pid, "oversize refused", T, |s| {
        s["last_command"]["rejected"].to_string().contains("64 KiB")
    });
    assert_eq!(verbosity(&st), 4);
    assert!(path.exists(), "left in place");
}

#[test]
fn two_files_in_the_same_second_are_both_applied() {
    let env = Env::new();
    let col = Collector::tcp();
    let g = long_running(&env, &col);
    let pid = g.pid();
    let p = env.write_cmd(pid, "SCOPE_METRIC_VERBOSITY=9\n");
    let end = std::time::Instant::now() + T;
    while p.exists() {
        assert!(std::time::Instant::now() < end, "first file not consumed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Immediately (same second as the first file was consumed) a second one.
    env.write_cmd(pid, "SCOPE_EVENT_HTTP=false\n");
    let st = env.wait_status(pid, "both applied", T, |s| {
        verbosity(s) == 9 && !http_events_on(s)
    });
    assert_eq!(
        st["last_command"]["applied"],
        serde_json::json!(["SCOPE_EVENT_HTTP"])
    );
}

#[test]
fn destination_change_reconnects_and_resends_the_start_message() {
    let env = Env::new();
    let a = Collector::tcp();
    let b = Collector::unix(true);
    let g = long_running(&env, &a);
    let pid = g.pid();
    a.lines.wait("start on A", T, |l| !l.is_empty());
    env.write_cmd(pid, &format!("SCOPE_EVENT_DEST={}\n", b.addr));
    b.lines.wait("start on B", T, |l| !l.is_empty());
    let v: Value = serde_json::from_str(&b.lines.all()[0]).unwrap();
    assert_eq!(v["info"]["process"]["pid"], pid);
    assert_eq!(
        v["info"]["configuration"]["current"]["event"]["transport"]["type"],
        "unix"
    );
    let st = env.wait_status(pid, "events on B", T, |s| {
        iface(s, "events")["config"] == b.addr.as_str() && iface(s, "events")["connected"] == true
    });
    assert_eq!(iface(&st, "events")["attempts"], 0);
}

#[test]
fn summary_period_and_status_dir_change_at_runtime() {
    let env = Env::new();
    let col = Collector::tcp();
    let g = long_running(&env, &col);
    let pid = g.pid();
    let other = env.path().join("status2");
    std::fs::create_dir_all(&other).unwrap();
    env.write_cmd(
        pid,
        &format!(
            "SCOPE_STATUS_DIR={}\nSCOPE_SUMMARY_PERIOD=2\n",
            other.display()
        ),
    );
    let f = other.join(format!("{pid}.json"));
    let end = std::time::Instant::now() + T;
    while !f.exists() {
        assert!(
            std::time::Instant::now() < end,
            "status not written to the new dir"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    assert_eq!(v["config"]["current"]["libscope"]["summaryperiod"], 2);
}

/// A process started with events and metrics off (crash capture only: the wrappers are
/// pass-throughs) records its file I/O once a command file turns events on, and stops
/// again when they are turned off.
#[test]
fn events_turned_on_in_a_crash_only_process_record_calls_at_once() {
    let env = Env::new();
    let col = Collector::tcp();
    let marker = env.path().join("marker");
    std::fs::write(&marker, "m").unwrap();
    // Reads the marker every 20 ms for up to a minute.
    let script = format!(
        "import time\nfor _ in range(3000):\n    open({:?}).read()\n    time.sleep(0.02)\n",
        marker.display().to_string()
    );
    let mut c = env.scoped("/usr/bin/python3");
    c.args(["-c", &script])
        .env("SCOPE_EVENT_DEST", &col.addr)
        .env("SCOPE_SNAPSHOT_BACKTRACE", "true");
    let g = Guarded::spawn(c);
    let pid = g.pid();
    env.wait_status(pid, "first status", T, |_| true);
    let file = format!("\"file\":\"{}\"", marker.display());
    let opens = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("\"op\":\"open") && l.contains(&file))
            .count()
    };
    assert_eq!(
        opens(&col.lines.all()),
        0,
        "nothing recorded while events are off"
    );
    env.write_cmd(pid, "SCOPE_EVENT_ENABLE=true\n");
    col.lines
        .wait("open events of the marker", T, |l| opens(l) >= 3);
    env.write_cmd(pid, "SCOPE_EVENT_ENABLE=false\n");
    env.wait_status(pid, "events off", T, |s| {
        s["config"]["current"]["event"]["enable"] == "false"
    });
    // Two periods later nothing new arrives (the first lets events queued before the
    // change be delivered).
    let next_period = || {
        let updated = env.status(pid).unwrap()["updated"].clone();
        env.wait_status(pid, "a later period", T, |s| s["updated"] != updated);
    };
    next_period();
    let after_off = opens(&col.lines.all());
    next_period();
    assert_eq!(opens(&col.lines.all()), after_off, "recording stopped");
}
