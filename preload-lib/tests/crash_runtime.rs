//! Crash capture with the whole library: a restarting pid-1 container crash loop,
//! turning capture on at runtime with a command file, live snapshots, and a JVM (whose
//! intentional SIGSEGVs must never produce a bundle or a death).

mod crash_common;

use crash_common::*;
use scope_config::crash::{BundleKind, list_bundles, read_report};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until the command file is consumed by the library (bounded).
fn wait_consumed(p: &Path, limit: Duration) {
    let start = Instant::now();
    while p.exists() {
        assert!(
            start.elapsed() < limit,
            "{} not applied in {limit:?}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pid1_crash_loop_leaves_three_distinct_complete_bundles() {
    let t = TestDir::new();
    let prog = program(Opt::Debug);
    let start = Instant::now();
    for _ in 0..3 {
        // Like a restarting container: each run is pid 1 of a new pid namespace, and all
        // share `<dir>/1/`.
        let mut c = Command::new("timeout");
        c.args(["60", "unshare", "--pid", "--fork", "env"])
            .arg(format!("LD_PRELOAD={}", libscope().display()))
            .arg("SCOPE_SNAPSHOT_BACKTRACE=true")
            .arg("SCOPE_SNAPSHOT_COREDUMP=true")
            .arg(format!("SCOPE_SNAPSHOT_DIR={}", t.snap().display()))
            .arg("SCOPE_METRIC_ENABLE=false")
            .arg("SCOPE_EVENT_ENABLE=false")
            .arg(format!("SCOPE_CMD_DIR={}", t.cmd().display()))
            .arg(&prog)
            .arg("null")
            .stdout(Stdio::null());
        let st = c.status().expect("unshare");
        // unshare re-raises its child's signal.
        assert!(
            st.signal() == Some(libc::SIGSEGV) || st.code() == Some(128 + libc::SIGSEGV),
            "{st:?}"
        );
    }
    let elapsed = start.elapsed();
    let dir = t.snap().join("1");
    let l = list_bundles(&dir).unwrap();
    assert_eq!(
        l.len(),
        3,
        "three bundles in {}: {l:?} ({elapsed:?})",
        dir.display()
    );
    for b in &l {
        assert!(b.complete, "{b:?}");
        assert_eq!(b.files.len(), 6, "{b:?}");
        let rep = read_report(&dir, b.ts).unwrap();
        assert_eq!(rep.pid, 1);
        assert_eq!(rep.kind, BundleKind::Crash);
    }
    eprintln!("3 pid-1 crashes with bundles in {elapsed:?}");
}

#[test]
fn command_file_turns_coredump_on_then_a_crash_has_a_core_and_snapshot_works() {
    let t = TestDir::new();
    let prog = program(Opt::Debug);
    let go = t.path().join("go");
    let mut child = spawn_scoped(
        &prog,
        &["wait".into(), go.to_str().unwrap().into()],
        &t.snap(),
        &[
            ("SCOPE_SNAPSHOT_BACKTRACE", "false"),
            ("SCOPE_SNAPSHOT_COREDUMP", "false"),
            ("SCOPE_SUMMARY_PERIOD", "1"),
        ],
    );
    wait_line(&mut child, "waiting", Duration::from_secs(30));
    let pid = child.0.id();
    // Capture is off: nothing for this process yet. Turn coredump on at runtime.
    let cmd = t.cmd().join(format!("scope.{pid}"));
    std::fs::write(&cmd, "SCOPE_SNAPSHOT_COREDUMP=true\n").unwrap();
    wait_consumed(&cmd, Duration::from_secs(30));
    // A live snapshot through the command file.
    std::fs::write(&cmd, "SCOPE_CMD_SNAPSHOT=true\n").unwrap();
    wait_consumed(&cmd, Duration::from_secs(30));
    let dir = t.snap().join(pid.to_string());
    let start = Instant::now();
    let snap = loop {
        let l = list_bundles(&dir).unwrap_or_default();
        if let Some(b) = l.iter().find(|b| b.complete) {
            break b.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no snapshot bundle: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(snap.kind, Some(BundleKind::Snapshot));
    let rep = read_report(&dir, snap.ts).unwrap();
    assert!(rep.signal.is_none());
    // The process is still alive after its snapshot, and the snapshot core loads.
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "alive after snapshot"
    );
    let core = dir.join(scope_config::crash::file_name(
        scope_config::crash::BundleFile::Core,
        snap.ts,
    ));
    let out = gdb(&prog, &core, &["bt"]);
    assert!(
        out.contains("in main"),
        "snapshot core: main thread unwinds\n{out}"
    );
    // Now crash: a core is written because of the runtime switch.
    std::fs::write(&go, "").unwrap();
    let st = wait_timeout(&mut child.0, Duration::from_secs(60));
    assert_eq!(st.signal(), Some(libc::SIGSEGV));
    let l = list_bundles(&dir).unwrap();
    let crash = l
        .iter()
        .find(|b| b.kind == Some(BundleKind::Crash))
        .unwrap_or_else(|| panic!("crash bundle: {l:?}"));
    assert!(crash.complete);
    assert!(
        crash.files.iter().any(|f| f.starts_with("core_")),
        "{crash:?}"
    );
    // Backtrace stayed off.
    assert!(
        !crash.files.iter().any(|f| f.starts_with("backtrace_")),
        "{crash:?}"
    );
    let core = dir.join(scope_config::crash::file_name(
        scope_config::crash::BundleFile::Core,
        crash.ts,
    ));
    assert_gdb_frame(&gdb(&prog, &core, &["bt"]), "crash_null_deref");
}

const JAVA_SRC: &str = r#"
public class NullLoop {
    static int[] maybe(int i) { return (i % 3 == 0) ? null : new int[1]; }
    public static void main(String[] a) {
        long caught = 0, sum = 0;
        // Hot loop: the JIT compiles it with implicit null checks, which the JVM
        // implements with SIGSEGV and its own handler.
        for (int i = 0; i < 3_000_000; i++) {
            try { sum += maybe(i)[0]; } catch (NullPointerException e) { caught++; }
        }
        System.out.println("caught " + caught + " sum " + sum);
    }
}
"#;

#[test]
fn jvm_with_snapshots_on_runs_and_exits_zero() {
    let t = TestDir::new();
    let src = t.path().join("NullLoop.java");
    std::fs::write(&src, JAVA_SRC).unwrap();
    let st = Command::new("javac")
        .arg("-d")
        .arg(t.path())
        .arg(&src)
        .status()
        .expect("javac");
    assert!(st.success());
    let mut c = scoped_command(
        Path::new("java"),
        &[
            "-Xmx128m".into(),
            "-cp".into(),
            t.path().to_str().unwrap().into(),
            "NullLoop".into(),
        ],
        &t.snap(),
        &[],
    );
    c.stdout(Stdio::piped());
    let mut child = Kill(c.spawn().unwrap());
    let pid = child.0.id();
    let mut so = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let status = wait_timeout(&mut child.0, Duration::from_secs(120));
    let stdout = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?} {stdout}");
    assert!(stdout.contains("caught 1000000"), "{stdout}");
    assert!(
        !t.snap().join(pid.to_string()).exists(),
        "no bundle for the JVM's own SIGSEGVs"
    );
}
