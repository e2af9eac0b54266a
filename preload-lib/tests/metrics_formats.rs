//! Metrics from real programs: StatsD over UDP vs NDJSON to a file, the verbosity's tag
//! cardinality and de-aggregation (level 9: one line per read/write), the category
//! switches, and a verbosity change through a command file visible in the next period.

#[path = "events_support.rs"]
mod support;

use std::time::Duration;

use support::*;

/// A python3 loop that reads a file every 100 ms for `secs` seconds.
fn reader(secs: u32) -> String {
    format!(
        "import time\nopen('r.txt','w').write('abc'*100)\nend=time.time()+{secs}\nwhile time.time()<end:\n    with open('r.txt') as f: f.read()\n    time.sleep(0.1)\n"
    )
}

#[test]
fn statsd_over_udp_with_prefix_and_tag_cardinality() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let udp = UdpCollector::start();
    let mut py = scoped(PY, dir, "py");
    py.env("SCOPE_METRIC_DEST", format!("udp://127.0.0.1:{}", udp.port))
        .env("SCOPE_STATSD_PREFIX", "app.")
        .env("SCOPE_EVENT_ENABLE", "false")
        .args(["-c", &reader(2)]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    assert!(wait_for(Duration::from_secs(5), || udp
        .snapshot()
        .iter()
        .any(|l| l.starts_with("app.fs.read:"))));
    let lines = udp.snapshot();
    let parsed: Vec<_> = lines
        .iter()
        .map(|l| parse_statsd(l).unwrap_or_else(|| panic!("bad statsd line {l}")))
        .collect();
    let read = parsed.iter().find(|m| m.0 == "app.fs.read").unwrap();
    assert_eq!(read.2, "c");
    assert!(read.1 >= 300.0, "bytes read: {}", read.1);
    // Default verbosity 4: proc/pid/host/unit and summary, no file or fd.
    assert_eq!(read.3.get("unit").map(String::as_str), Some("byte"));
    assert_eq!(read.3.get("summary").map(String::as_str), Some("true"));
    assert!(
        read.3.contains_key("pid") && read.3.contains_key("proc") && read.3.contains_key("host")
    );
    assert!(!read.3.contains_key("file") && !read.3.contains_key("fd"));
    for g in [
        "app.proc.mem",
        "app.proc.thread",
        "app.proc.fd",
        "app.proc.cpu",
    ] {
        assert!(parsed.iter().any(|m| m.0 == g), "{g} missing: {lines:?}");
    }
    assert!(
        parsed
            .iter()
            .any(|m| m.0 == "app.proc.mem" && m.2 == "g" && m.1 > 1000.0)
    );
}

#[test]
fn ndjson_verbosity_9_and_switches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut py = scoped(PY, dir, "v9");
    py.env("SCOPE_METRIC_FORMAT", "ndjson")
        .env("SCOPE_METRIC_VERBOSITY", "9")
        .args(["-c", &reader(1)]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    let ms = json_lines(&dir.join("v9.metrics"));
    let reads: Vec<_> = ms
        .iter()
        .filter(|m| m["body"]["_metric"] == "fs.read" && m["body"]["file"] == "r.txt")
        .collect();
    assert!(
        reads.len() >= 5,
        "one fs.read line per read at verbosity 9: {}",
        reads.len()
    );
    assert!(reads.iter().all(|m| m["body"]["summary"].is_null()
        && m["body"]["fd"].is_number()
        && m["body"]["op"] == "read"));

    // Verbosity 0: no tags at all in StatsD.
    let mut py = scoped(PY, dir, "v0");
    py.env("SCOPE_METRIC_VERBOSITY", "0")
        .args(["-c", &reader(1)]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    let v0 = lines(&dir.join("v0.metrics"));
    assert!(v0.iter().any(|l| l.starts_with("fs.read:")));
    assert!(v0.iter().all(|l| !l.contains("|#")), "{v0:?}");

    // Switches: FS off, PROC off.
    let mut py = scoped(PY, dir, "sw");
    py.env("SCOPE_METRIC_FS", "false")
        .env("SCOPE_METRIC_PROC", "false")
        .args(["-c", &reader(1)]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    let sw = lines(&dir.join("sw.metrics"));
    assert!(
        sw.iter().any(|l| l.starts_with("net.tcp:")),
        "other categories stay on: {sw:?}"
    );
    assert!(
        sw.iter()
            .all(|l| !l.starts_with("fs.") && !l.starts_with("proc.")),
        "{sw:?}"
    );

    // Metrics off entirely: nothing.
    let mut py = scoped(PY, dir, "off");
    py.env("SCOPE_METRIC_ENABLE", "false")
        .args(["-c", &reader(1)]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    assert!(lines_of_metrics(&dir.join("off.metrics")).is_empty());
}

fn lines_of_metrics(p: &std::path::Path) -> Vec<String> {
    lines(p)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn verbosity_change_by_command_file_takes_effect_next_period() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut py = scoped(PY, dir, "cmd");
    py.env("SCOPE_EVENT_ENABLE", "false")
        .args(["-c", &reader(8)])
        .stdout(std::process::Stdio::null());
    let mut child = Guarded(py.spawn().unwrap());
    let pid = child.0.id();
    let mpath = dir.join("cmd.metrics");
    // Aggregated fs.read (summary) lines first.
    assert!(wait_for(Duration::from_secs(6), || lines(&mpath)
        .iter()
        .any(
            |l| l.starts_with("fs.read:") && l.contains("summary:true")
        )));
    let before = lines(&mpath).len();
    std::fs::write(
        dir.join("cmd").join(format!("scope.{pid}")),
        "SCOPE_METRIC_VERBOSITY=9\n",
    )
    .unwrap();
    let ok = wait_for(Duration::from_secs(5), || {
        lines(&mpath)[before.min(lines(&mpath).len())..]
            .iter()
            .any(|l| l.starts_with("fs.read:") && l.contains("file:r.txt") && l.contains("fd:"))
    });
    child.stop(Duration::from_secs(10));
    assert!(
        ok,
        "no per-read fs.read lines after the command file: {:?}",
        &lines(&mpath)[before..]
    );
}
