//! `scope agent --local`: crash-safe collection (SIGKILL at random points), retention,
//! /healthz and /metrics.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Write a complete synthetic bundle `<watch>/<pid>/{info,crash,core,done}_<ts>`.
fn make_bundle(watch: &Path, pid: i32, ts: &str, core_bytes: usize) {
    let d = watch.join(pid.to_string());
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("info_{ts}")), format!("pid {pid}\n")).unwrap();
    std::fs::write(d.join(format!("core_{ts}")), vec![0xabu8; core_bytes]).unwrap();
    let secs: f64 = ts.parse().unwrap();
    let crash = serde_json::json!({"schema":1,"kind":"crash","ts":ts,"time":secs as u64,"pid":pid,
        "procname":"synthetic","cmd":"synthetic --flag",
        "signal":{"number":11,"name":"SIGSEGV","code":1,"reason":"SEGV_MAPERR","fault_addr":"0x0"},
        "frames":[{"index":0,"addr":"0x1000","module":"/nonexistent/app","offset":"0x10","symbol":"crash_here"}]});
    std::fs::write(d.join(format!("crash_{ts}.json")), crash.to_string()).unwrap();
    std::fs::write(d.join(format!("done_{ts}")), b"").unwrap();
}

/// Tiny xorshift for kill delays (no rand dependency; seeded from the clock and
/// printed so a failure can be replayed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn report_dirs(store: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut level = vec![store.to_path_buf()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for d in &level {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    out.extend(level);
    out
}

/// Stored reports (not a temp dir, `report.json` written).
fn completed_reports(store: &Path) -> usize {
    report_dirs(store)
        .iter()
        .filter(|d| {
            !d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
                && d.join("report.json").is_file()
        })
        .count()
}

fn watch_has_bundles(watch: &Path) -> bool {
    watch
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// `scope [-j] agent --local --once --store STORE --watch WATCH --only-watch EXTRA...`:
/// one collector pass over the test's own watch dir only.
fn once_args<'a>(store: &'a str, watch: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "agent",
        "--local",
        "--once",
        "--store",
        store,
        "--watch",
        watch,
        "--only-watch",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let s = Scope::new();
    let watch = s.home.path().join("watch");
    let store = s.home.path().join("store");
    let n = 40;
    for i in 0..n {
        make_bundle(
            &watch,
            1000 + (i % 7),
            &format!("1795000000.{:09}", i),
            256 * 1024,
        );
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Rng(seed);
    // Build before the timed loop (the first `scope` path builds the workspace).
    let _ = scope_bin();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut kills = 0;
    while watch_has_bundles(&watch) && Instant::now() < deadline {
        let mut child = s
            .cmd(&[
                "agent",
                "--local",
                "--store",
                store.to_str().unwrap(),
                "--watch",
                watch.to_str().unwrap(),
                "--only-watch",
                "--interval",
                "0.01",
                "--listen",
                "127.0.0.1:0",
            ])
            .env("HOME", s.home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every other agent is killed 2 to 80 ms after it was started, wherever that
        // finds it (starting, or mid-work: an agent starts in a few ms on an idle
        // machine and in up to ~150 ms on a loaded one). The others are killed 0 to 10
        // ms after they stored their first report, so that agents die mid-work however
        // slowly the machine starts them.
        if kills % 2 == 0 {
            let before = completed_reports(&store);
            let until = Instant::now() + Duration::from_secs(30);
            while completed_reports(&store) == before
                && watch_has_bundles(&watch)
                && child.try_wait().unwrap().is_none()
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.next() % 11));
        } else {
            std::thread::sleep(Duration::from_millis(2 + rng.next() % 78));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    // Reports stored by agents that were then killed: without any, the kills exercised
    // nothing (every agent died before its first ingestion).
    let stored_under_kills = completed_reports(&store);
    eprintln!("{stored_under_kills} of {n} bundles stored by agents that were then killed");
    assert!(
        stored_under_kills > 0,
        "no agent stored anything before being killed ({kills} kills)"
    );
    // A last clean pass finishes whatever the kills interrupted.
    let out = s.run(&once_args(
        store.to_str().unwrap(),
        watch.to_str().unwrap(),
        &[],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    eprintln!(
        "{kills} SIGKILLs, done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills >= 2,
        "the agent must have been killed mid-work at least twice"
    );

    let dirs = report_dirs(&store);
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".tmp-")),
        "leftover temp dirs: {names:?}"
    );
    assert_eq!(
        dirs.len(),
        n as usize,
        "each bundle exactly once: {names:?}"
    );
    let mut keys: Vec<String> = dirs
        .iter()
        .map(|d| {
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("report.json")).unwrap()).unwrap();
            assert_eq!(r["signal"], 11);
            assert_eq!(r["files"].as_array().unwrap().len(), 4);
            assert!(
                d.join(format!("core_{}", r["source"]["key"].as_str().unwrap()))
                    .metadata()
                    .unwrap()
                    .len()
                    == 256 * 1024
            );
            r["source"]["key"].as_str().unwrap().to_string()
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n as usize);
    assert!(
        watch.read_dir().unwrap().next().is_none(),
        "sources deleted"
    );
    // `scope crashes` reads the store.
    let list = s.json(&["crashes", "--store", store.to_str().unwrap()]);
    assert_eq!(list.as_array().unwrap().len(), n as usize);
}

#[test]
fn retention_by_count_and_bytes() {
    let s = Scope::new();
    let watch = s.home.path().join("watch");
    let store = s.home.path().join("store");
    for i in 0..6 {
        make_bundle(&watch, 50, &format!("179500000{i}.000000000"), 1000);
    }
    let st = store.to_str().unwrap();
    let w = watch.to_str().unwrap();
    let out = s.json(&once_args(st, w, &["--max-reports", "4"]));
    assert_eq!(out["stored"].as_array().unwrap().len(), 6);
    assert_eq!(out["removed_by_retention"].as_array().unwrap().len(), 2);
    let list = s.json(&["crashes", "--store", st]);
    let times: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["report"]["time"].as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 4);
    assert!(
        times[0] > times[3],
        "newest first, oldest removed: {times:?}"
    );
    // Keep only what the two newest weigh.
    let newest_two: u64 = list.as_array().unwrap()[..2]
        .iter()
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum();
    let limit = newest_two.to_string();
    let out = s.json(&once_args(st, w, &["--max-bytes", &limit]));
    assert_eq!(
        out["removed_by_retention"].as_array().unwrap().len(),
        2,
        "{out}"
    );
    let out = s.json(&once_args(st, w, &["--max-age", "1d"]));
    assert_eq!(
        out["removed_by_retention"].as_array().unwrap().len(),
        2,
        "2026-11 bundles are older than a day: {out}"
    );
    let bad = s.run(&["agent", "--local", "--once", "--max-age", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    let code = s
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        s.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn agent_serves_health_metrics_and_api() {
    let s = Scope::new();
    let watch = s.home.path().join("watch");
    let store = s.home.path().join("store");
    make_bundle(&watch, 77, "1795000000.000000001", 10);
    let mut agent = Proc::spawn(
        s.cmd(&[
            "agent",
            "--local",
            "--store",
            store.to_str().unwrap(),
            "--watch",
            watch.to_str().unwrap(),
            "--only-watch",
            "--interval",
            "0.1",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(agent.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .rsplit(':')
        .next()
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(http_get(port, "/healthz").0, 200);
    wait_for("the bundle stored", Duration::from_secs(20), || {
        let (_, m) = http_get(port, "/metrics");
        m.contains("appscope_agent_reports_stored_total 1")
            .then_some(())
    });
    assert_eq!(http_get(port, "/readyz").0, 200);
    let (code, body) = http_get(port, "/v1/crashes");
    assert_eq!(code, 200);
    assert!(body.contains("crash_here"), "{body}");
    let sleep = Proc::spawn(Command::new("sleep").arg("30"));
    let (code, body) = http_get(port, "/v1/ps?all=true");
    assert_eq!(code, 200);
    assert!(body.contains(&format!("\"pid\":{}", sleep.pid())));
    let (code, body) = http_get(port, "/v1/inspect/999999999");
    assert_eq!(code, 404, "{body}");
    // SIGTERM: clean exit.
    unsafe_free_sigterm(agent.pid());
    let st = wait_for("agent exit", Duration::from_secs(10), || {
        agent.0.try_wait().ok().flatten()
    });
    assert!(st.success());
}

fn unsafe_free_sigterm(pid: i32) {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn only_watch_leaves_every_other_crash_dir_alone() {
    let s = Scope::new();
    let watch = s.home.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let store = s.home.path().join("store");
    // A bundle of a `scope run` of this scope home: not a --watch dir.
    let run_crash = s.home.path().join("history/demo_1_42_1795000000/crash");
    make_bundle(&run_crash, 42, "1795000000.000000042", 10);
    let out = s.json(&once_args(
        store.to_str().unwrap(),
        watch.to_str().unwrap(),
        &[],
    ));
    assert_eq!(out["stored"].as_array().unwrap().len(), 0, "{out}");
    assert_eq!(out["scoped_processes"], 0, "no process scan: {out}");
    assert!(
        run_crash.join("42/done_1795000000.000000042").exists(),
        "the history bundle is left where it is"
    );
}

/// A python process scoped with the workspace's libscope.so, crash capture on, its
/// bundles in `<dir>/watch/<pid>/`, command files in `<dir>/cmd`.
fn scoped_python(dir: &Path, script: &str) -> Proc {
    for d in ["watch", "cmd", "status"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    Proc::spawn(
        Command::new("/usr/bin/python3")
            .args(["-c", script])
            .env("LD_PRELOAD", lib_path())
            .env("SCOPE_SUMMARY_PERIOD", "1")
            .env("SCOPE_SNAPSHOT_DIR", dir.join("watch"))
            .env("SCOPE_CMD_DIR", dir.join("cmd"))
            .env("SCOPE_STATUS_DIR", dir.join("status"))
            .env("SCOPE_SNAPSHOT_BACKTRACE", "true")
            .env("SCOPE_EVENT_DEST", "file:///dev/null")
            .env("SCOPE_METRIC_DEST", "file:///dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Names of the library's `snapshot_<ts>.json` files in one pid directory.
fn snapshot_jsons(pid_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(pid_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("snapshot_") && n.ends_with(".json"))
        .collect();
    v.sort();
    v
}

/// A live snapshot of a scoped process is not a crash: with a real SIGSEGV report in the
/// store and retention at one report, neither the library's snapshot bundle left in the
/// snapshot directory nor `scope snapshot` of the process makes a report, and the crash
/// stays. `scope snapshot` moves the bundle it asked for into its own output.
#[test]
fn live_snapshot_bundles_are_never_stored_as_crashes() {
    let s = Scope::new();
    let base = s.home.path();
    let watch = base.join("watch");
    let store = base.join("store");
    let (st, w) = (store.to_str().unwrap(), watch.to_str().unwrap());

    // A real crash.
    let mut crasher = scoped_python(base, "import ctypes\nctypes.string_at(0)");
    let status = crasher.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(11)
    );
    let out = s.json(&once_args(st, w, &["--max-reports", "1"]));
    assert_eq!(out["stored"].as_array().unwrap().len(), 1, "{out}");

    // A live process asked for a library snapshot by hand: its bundle stays in place.
    let sleeper = scoped_python(base, "import time\ntime.sleep(120)");
    let pid = sleeper.pid();
    wait_for("the sleeper's status file", Duration::from_secs(30), || {
        base.join(format!("status/{pid}.json"))
            .exists()
            .then_some(())
    });
    std::fs::write(
        base.join(format!("cmd/scope.{pid}")),
        "SCOPE_CMD_SNAPSHOT=true\n",
    )
    .unwrap();
    let pid_dir = watch.join(pid.to_string());
    let first = wait_for(
        "the library's snapshot bundle",
        Duration::from_secs(30),
        || {
            let v = snapshot_jsons(&pid_dir);
            let ts = v
                .first()?
                .strip_prefix("snapshot_")?
                .strip_suffix(".json")?;
            pid_dir
                .join(format!("done_{ts}"))
                .exists()
                .then(|| v[0].clone())
        },
    );
    let crashes_are_one_sigsegv = |when: &str| {
        let list = s.json(&["crashes", "--store", st]);
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "{when}: {list:?}");
        assert_eq!(list[0]["report"]["signalName"], "SIGSEGV", "{when}");
    };
    let out = s.json(&once_args(st, w, &["--max-reports", "1"]));
    assert_eq!(out["stored"].as_array().unwrap().len(), 0, "{out}");
    assert_eq!(out["snapshot_bundles"], 1, "{out}");
    assert_eq!(
        out["removed_by_retention"].as_array().unwrap().len(),
        0,
        "{out}"
    );
    crashes_are_one_sigsegv("after a pass over a snapshot bundle");
    assert_eq!(
        snapshot_jsons(&pid_dir),
        std::slice::from_ref(&first),
        "left in place"
    );

    // `scope snapshot` of the process: the bundle it asks for goes into its output.
    let snap_out = base.join("snap");
    let r = s.json(&[
        "snapshot",
        &pid.to_string(),
        "--library-wait",
        "20",
        "-o",
        snap_out.to_str().unwrap(),
    ]);
    assert!(
        r["library_bundle"]
            .as_str()
            .unwrap_or_default()
            .starts_with("moved bundle"),
        "{r}"
    );
    assert_eq!(snapshot_jsons(&snap_out.join("libscope")).len(), 1, "{r}");
    assert_eq!(
        snapshot_jsons(&pid_dir),
        [first],
        "the requested bundle was moved out of the snapshot dir"
    );
    let out = s.json(&once_args(st, w, &["--max-reports", "1"]));
    assert_eq!(out["stored"].as_array().unwrap().len(), 0, "{out}");
    crashes_are_one_sigsegv("after scope snapshot");
    drop(sleeper);
}
