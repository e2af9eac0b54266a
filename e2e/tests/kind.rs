//! Cluster end-to-end test on kind (`e2e/kind/run.sh`). Runs only with
//! `APPSCOPE_E2E_KIND=1`; the script itself skips cleanly where docker or kind is missing.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn script() -> std::path::PathBuf {
    root().join("e2e").join("kind").join("run.sh")
}

/// Runs the script with `path` as PATH, bounded by `limit`; returns (exit ok, stdout+stderr).
fn run_script(path: &str, limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = Command::new("/bin/bash")
        .arg(script())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("bash");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "e2e/kind/run.sh did not finish within {limit:?}:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn kind_cluster_journeys() {
    if std::env::var("APPSCOPE_E2E_KIND").as_deref() != Ok("1") {
        eprintln!(
            "\n*** SKIPPED kind e2e: set APPSCOPE_E2E_KIND=1 to run e2e/kind/run.sh (needs docker and kind) ***\n"
        );
        return;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let (ok, out) = run_script(&path, Duration::from_secs(3 * 3600));
    eprintln!("{out}");
    assert!(ok, "e2e/kind/run.sh failed (output above)");
    assert!(
        out.contains("all journeys passed") || out.contains("SKIP: kind e2e:"),
        "the script neither passed nor skipped"
    );
}

#[test]
fn kind_script_skips_cleanly_without_docker() {
    // PATH without docker or kind (only the base system): the script must say why it
    // skips, exit 0, and create nothing (no cluster, no kubeconfig).
    let (ok, out) = run_script("/nonexistent-appscope-bin", Duration::from_secs(30));
    // with no PATH at all even `date` is missing: the skip happens before anything runs
    assert!(ok, "the skip must exit 0:\n{out}");
    assert!(
        out.starts_with("SKIP: kind e2e: docker is not installed"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "nothing else ran:\n{out}");
}

#[test]
fn kind_script_skips_cleanly_without_a_docker_engine() {
    // a docker client with no engine behind it (this machine): skip, naming the reason
    let Some(docker) = find_tool("docker") else {
        eprintln!("no docker client here; covered by kind_script_skips_cleanly_without_docker");
        return;
    };
    let engine = Command::new(&docker)
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if engine {
        eprintln!("a docker engine answers here; the skip path is not reachable");
        return;
    }
    let dir = docker.parent().unwrap().to_string_lossy().into_owned();
    let (ok, out) = run_script(&format!("{dir}:/usr/bin:/bin"), Duration::from_secs(60));
    assert!(ok, "{out}");
    assert!(
        out.contains("SKIP: kind e2e: docker is installed but no engine answers"),
        "{out}"
    );
}
