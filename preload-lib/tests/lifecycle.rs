//! The library's thread never keeps a process alive and never makes a signal
//! undeliverable: each case of `c/lifecycle.c` ends the same way with and without the
//! library (same lines printed, same exit status or terminating signal).
//!
//! The scoped runs use a 30 s summary period and must end well within 20 s: a process
//! whose main thread called `pthread_exit` ends as soon as its last thread has, not at
//! the library's next period.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn program(dir: &Path) -> PathBuf {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/lifecycle.c"))
            .unwrap();
    cc(dir, "lifecycle", &src, &["-pthread"])
}

/// How a run ended: its lines (sorted: threads print concurrently) and its status.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    lines: Vec<String>,
    code: Option<i32>,
    signal: Option<i32>,
}

/// What the test does to a running case.
#[derive(Clone, Copy)]
enum Poke {
    /// Nothing: the case ends by itself.
    None,
    /// Wait for "ready", then send this signal to the process.
    Signal(i32),
    /// Wait for "ready", send the signal, then write a line to its stdin.
    SignalThenGo(i32),
}

fn scoped(env: &Env, prog: &Path) -> Command {
    let mut c = env.scoped(prog.to_str().unwrap());
    c.env("SCOPE_SUMMARY_PERIOD", "30")
        .env("SCOPE_EVENT_ENABLE", "true")
        .env(
            "SCOPE_EVENT_DEST",
            format!("file://{}", env.path().join("events.ndjson").display()),
        )
        .env("SCOPE_METRIC_ENABLE", "true")
        .env(
            "SCOPE_METRIC_DEST",
            format!("file://{}", env.path().join("metrics.txt").display()),
        );
    c
}

fn run_case(mut c: Command, case: &str, poke: Poke, label: &str) -> Outcome {
    c.arg(case)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take();
    let out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let _ = tx.send(l);
        }
    });
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + LIMIT;
    if let Poke::Signal(sig) | Poke::SignalThenGo(sig) = poke {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let ready = l == "ready";
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{label} {case}: no \"ready\" within {LIMIT:?}; lines {lines:?}");
                }
            }
        }
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        if let Poke::SignalThenGo(_) = poke {
            let mut w = stdin.take().unwrap();
            w.write_all(b"go\n").unwrap();
        }
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let task = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.flatten().count())
                .unwrap_or(0);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label} {case}: still running after {LIMIT:?} ({task} threads); lines {lines:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(stdin);
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines.sort();
    let stderr = errs.join().unwrap();
    assert!(
        stderr.is_empty(),
        "{label} {case}: unexpected stderr: {stderr}"
    );
    Outcome {
        lines,
        code: status.code(),
        signal: status.signal(),
    }
}

/// Runs `case` without and with the library; both must end alike. Returns the outcome.
fn same(case: &str, poke: Poke) -> Outcome {
    let env = Env::new();
    let prog = program(env.path());
    let plain = run_case(Command::new(&prog), case, poke, "unscoped");
    let scoped = run_case(scoped(&env, &prog), case, poke, "scoped");
    assert_eq!(scoped, plain, "{case}: scoped and unscoped differ");
    assert!(
        !plain.lines.is_empty(),
        "{case}: the comparison needs output"
    );
    plain
}

#[test]
fn pthread_exit_from_main_ends_with_status_0() {
    let o = same("main-pthread-exit", Poke::None);
    assert_eq!(o.code, Some(0));
    assert_eq!(o.lines, ["atexit ran", "main exits", "worker done"]);
}

#[test]
fn pthread_exit_from_main_then_from_the_last_worker() {
    let o = same("main-then-worker-pthread-exit", Poke::None);
    assert_eq!(o.code, Some(0));
    assert_eq!(o.lines, ["atexit ran", "main exits", "worker exits"]);
}

#[test]
fn fork_child_of_a_worker_ending_with_pthread_exit() {
    let o = same("fork-child-of-worker", Poke::None);
    assert_eq!(o.code, Some(0));
    assert!(
        o.lines.contains(&"child exited=1 status=0".to_string()),
        "{o:?}"
    );
}

#[test]
fn exit_from_a_thread() {
    assert_eq!(same("exit-from-thread", Poke::None).code, Some(3));
}

#[test]
fn execve_from_a_thread() {
    let o = same("exec-from-thread", Poke::None);
    assert_eq!(o.lines, ["exec from a thread"]);
    assert_eq!(o.code, Some(0));
}

#[test]
fn vfork_child_status() {
    assert_eq!(same("vfork", Poke::None).lines, ["vfork child status 7"]);
}

#[test]
fn signals_end_a_process_whose_main_thread_exited() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let o = same("last-thread-waits", Poke::Signal(sig));
        assert_eq!(o.signal, Some(sig), "{o:?}");
    }
}

#[test]
fn signals_end_a_waiting_process() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let o = same("plain-waits", Poke::Signal(sig));
        assert_eq!(o.signal, Some(sig), "{o:?}");
    }
}

#[test]
fn a_process_blocking_every_signal_keeps_sigterm_pending() {
    let o = same("blocks-all", Poke::SignalThenGo(libc::SIGTERM));
    assert_eq!(o.lines, ["SIGTERM pending", "ready"]);
    assert_eq!(o.code, Some(0));
}

#[test]
fn sigterm_read_from_a_signalfd() {
    let o = same("signalfd", Poke::Signal(libc::SIGTERM));
    assert_eq!(o.lines, ["ready", "signalfd got SIGTERM"]);
    assert_eq!(o.code, Some(0));
}
