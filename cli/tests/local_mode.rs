//! `scope` local mode driven as a user would: real scoped servers, real crashes,
//! snapshots checked with gdb.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn interface<'a>(inspect: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    inspect["status"]["doc"]["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

#[test]
fn scoped_http_server_ps_inspect_connected_and_update() {
    let s = Scope::scoped();
    let events_port = free_port();
    let http_port = free_port().to_string();
    let eventdest = format!("tcp://127.0.0.1:{events_port}");
    let _run = Proc::spawn(
        s.cmd(&[
            "run",
            "--period",
            "1",
            "--eventdest",
            &eventdest,
            "--",
            "/usr/bin/python3",
            "-m",
            "http.server",
        ])
        .args([&http_port, "--bind", "127.0.0.1"])
        // A bad value in the environment: ignored, and shown by inspect.
        .env("SCOPE_METRIC_VERBOSITY", "loud")
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    );
    let pid = wait_for("scope run to start python", Duration::from_secs(20), || {
        run_child_pid(&s.history())
    });

    // ps: scoped, with its command.
    let ps = wait_for(
        "ps to list the server as scoped",
        Duration::from_secs(20),
        || {
            let v = s.json(&["ps"]);
            v.as_array()?.iter().find(|p| p["pid"] == pid).cloned()
        },
    );
    assert_eq!(ps["scoped"], true);
    assert!(ps["cmdline"].to_string().contains("http.server"));
    let table = text(&s.run(&["ps"]).stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&pid.to_string()) && l.contains("true")),
        "{table}"
    );

    // inspect: events not connected while nothing listens.
    let i = wait_for("a status file", Duration::from_secs(20), || {
        let v = s.json(&["inspect", &pid.to_string()]);
        interface(&v, "events").is_some().then_some(v)
    });
    assert_eq!(interface(&i, "events").unwrap()["connected"], false, "{i}");
    assert_eq!(i["status"]["stale"], false);
    let human = text(&s.run(&["inspect", &pid.to_string()]).stdout);
    assert!(
        human.contains("Interfaces:") && human.contains("Config in effect:"),
        "{human}"
    );
    let problems = i["status"]["doc"]["config_problems"].to_string();
    assert!(problems.contains("SCOPE_METRIC_VERBOSITY"), "{i}");
    assert!(
        human.contains("Config problems at start") && human.contains("SCOPE_METRIC_VERBOSITY"),
        "{human}"
    );

    // A listener appears: the library connects and inspect says so.
    let listener = std::net::TcpListener::bind(("127.0.0.1", events_port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let acceptor = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((c, _)) = listener.accept() {
                c.set_nonblocking(true).ok();
                conns.push(c);
            }
            for c in conns.iter_mut() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let _ = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{http_port}/"),
        ])
        .status();
    wait_for("events connected", Duration::from_secs(30), || {
        let v = s.json(&["inspect", &pid.to_string()]);
        (interface(&v, "events")?["connected"] == true).then_some(())
    });

    // update --wait: applied, and the config in effect shows it.
    let out = s.run(&[
        "update",
        &pid.to_string(),
        "--set",
        "SCOPE_METRIC_VERBOSITY=9",
        "--wait",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "update failed: {stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("applied   SCOPE_METRIC_VERBOSITY"),
        "{stdout}"
    );
    let v = s.json(&["inspect", &pid.to_string()]);
    let cfg = v["status"]["doc"]["config"].to_string();
    assert!(
        cfg.contains("\"verbosity\":9") || cfg.contains("\"verbosity\":\"9\""),
        "{cfg}"
    );
    // The command file was consumed.
    assert!(
        !s.history()
            .read_dir()
            .unwrap()
            .flatten()
            .any(|d| d.path().join(format!("cmd/scope.{pid}")).exists())
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    acceptor.join().unwrap();

    // Bad input is reported, never written.
    let bad = s.run(&["update", &pid.to_string(), "--set", "PATH=/x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("not a SCOPE_* setting name"));
}

#[test]
fn inspect_and_update_refuse_unscoped_processes() {
    let s = Scope::new();
    let sleep = Proc::spawn(Command::new("sleep").arg("30"));
    let out = s.run(&["inspect", &sleep.pid().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("is not scoped"),
        "{}",
        text(&out.stdout)
    );
    let out = s.run(&[
        "update",
        &sleep.pid().to_string(),
        "--set",
        "SCOPE_METRIC_VERBOSITY=9",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("not scoped"));
    let out = s.run(&["inspect", "999999999"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no such process"));
}

#[test]
fn snapshot_of_unscoped_sleep_has_every_file_and_leaves_it_running() {
    let s = Scope::new();
    let sleep = Proc::spawn(
        Command::new("sleep")
            .arg("30")
            .env("MY_API_TOKEN", "hunter2"),
    );
    // Snapshot it once it sleeps, not while the loader is still starting it.
    wait_for(
        "sleep to reach its nanosleep",
        Duration::from_secs(10),
        || all_threads_in_syscall(sleep.pid(), &SLEEP_SYSCALLS).then_some(()),
    );
    let dir = s.home.path().join("snap");
    let v = s.json(&[
        "snapshot",
        &sleep.pid().to_string(),
        "-o",
        dir.to_str().unwrap(),
    ]);
    for f in node_agent::snapshot::SNAPSHOT_FILES {
        assert!(dir.join(f).is_file(), "missing {f}");
        assert!(
            v["files"].as_array().unwrap().iter().any(|x| x == f),
            "{f} not listed: {v}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("cmdline")).unwrap(),
        "sleep\n30\n"
    );
    let env = std::fs::read_to_string(dir.join("environ")).unwrap();
    assert!(
        env.contains("MY_API_TOKEN=<redacted>") && !env.contains("hunter2"),
        "{env}"
    );
    assert!(
        std::fs::read_to_string(dir.join("maps"))
            .unwrap()
            .contains("libc")
    );
    assert!(
        std::fs::read_to_string(dir.join("fds"))
            .unwrap()
            .starts_with("0\t")
    );
    let threads = v["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1);
    let stacks = std::fs::read_to_string(dir.join("stacks")).unwrap();
    assert!(stacks.contains("nanosleep"), "{stacks}");
    // Not left stopped: back to sleeping once detached (it may still be runnable for a
    // moment on a busy machine; a stopped process stays 'T'/'t').
    wait_for(
        "the process to sleep again",
        Duration::from_secs(10),
        || (proc_state(sleep.pid()) == Some('S')).then_some(()),
    );
    // --no-redact keeps the value.
    let dir2 = s.home.path().join("snap2");
    s.run(&[
        "snapshot",
        &sleep.pid().to_string(),
        "--no-redact",
        "-o",
        dir2.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(dir2.join("environ"))
            .unwrap()
            .contains("MY_API_TOKEN=hunter2")
    );
}

#[test]
fn snapshot_of_multithreaded_program_with_core_loads_in_gdb() {
    let s = Scope::new();
    let demo = demo_bin();
    let p = Proc::spawn(
        Command::new(&demo)
            .args(["--threads", "3", "--wait"])
            .stdout(Stdio::null()),
    );
    // Four threads, each already in its sleep (a worker just cloned is not yet in
    // `worker_loop`).
    wait_for("4 sleeping threads", Duration::from_secs(10), || {
        (std::fs::read_dir(format!("/proc/{}/task", p.pid()))
            .ok()?
            .count()
            == 4
            && all_threads_in_syscall(p.pid(), &SLEEP_SYSCALLS))
        .then_some(())
    });
    let dir = s.home.path().join("snap");
    let out = s.run(&[
        "snapshot",
        &p.pid().to_string(),
        "--core",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stacks = std::fs::read_to_string(dir.join("stacks")).unwrap();
    assert_eq!(stacks.matches("Thread ").count(), 4, "{stacks}");
    assert_eq!(
        stacks.matches("scope_crash_demo::worker_loop").count(),
        3,
        "{stacks}"
    );
    assert!(stacks.contains("scope_crash_demo::main"), "{stacks}");
    wait_for("the demo to sleep again", Duration::from_secs(10), || {
        (proc_state(p.pid()) == Some('S')).then_some(())
    });
    // Stopped only while registers and stacks were copied: unwinding and symbols come
    // after the threads resume (this program stayed stopped ~90 ms when they did not).
    let snap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("snapshot.json")).unwrap()).unwrap();
    let stopped = snap["stopped_ms"].as_f64().unwrap();
    assert!(stopped > 0.0 && stopped < 50.0, "stopped_ms {stopped}");
    let gdb = Command::new("timeout")
        .args([
            "120",
            "gdb",
            "-batch",
            "-nx",
            "-ex",
            "info threads",
            "-ex",
            "thread apply all bt",
        ])
        .arg(&demo)
        .arg(dir.join("core"))
        .output()
        .unwrap();
    let g = text(&gdb.stdout);
    assert!(
        g.contains("4 Thread")
            || g.matches("Thread 0x").count() >= 4
            || g.matches("LWP").count() >= 4,
        "{g}"
    );
    assert!(g.contains("worker_loop"), "{g}");
    assert!(g.contains("scope_crash_demo::main"), "{g}");
}

#[test]
fn crashing_program_appears_in_crashes_with_its_top_frame() {
    let s = Scope::scoped();
    let demo = demo_bin();
    let out = s.run(&["run", "-b", "-d", "--", demo.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(139),
        "SIGSEGV is 128+11: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("killed by SIGSEGV") && err.contains("crash bundle"),
        "{err}"
    );
    let list = s.json(&["crashes"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let r = &list[0]["report"];
    assert_eq!(r["signal"], 11);
    assert!(
        r["topFrames"][0].as_str().unwrap().contains("crash_here"),
        "{r}"
    );
    assert!(
        r["files"].to_string().contains("core_"),
        "-d gives a core: {r}"
    );
    let table = text(&s.run(&["crashes", "list"]).stdout);
    assert!(
        table.contains("SIGSEGV") && table.contains("scope_crash_demo::crash_here"),
        "{table}"
    );
    let show = text(&s.run(&["crashes", "show"]).stdout);
    assert!(
        show.contains("Backtrace:") && show.contains("handle_request"),
        "{show}"
    );
    let id = list[0]["id"].as_str().unwrap();
    let path = text(&s.run(&["crashes", "path", id]).stdout);
    assert!(std::path::Path::new(path.trim()).is_dir(), "{path}");
    let missing = s.run(&["crashes", "show", "nope"]);
    assert_eq!(missing.status.code(), Some(3));
}
