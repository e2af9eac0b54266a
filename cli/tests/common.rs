//! Helpers for the CLI integration tests: built binaries, child processes killed on
//! drop, bounded polling.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SCOPE: OnceLock<PathBuf> = OnceLock::new();
static DEMO: OnceLock<PathBuf> = OnceLock::new();
static LIB: OnceLock<PathBuf> = OnceLock::new();

/// The `scope` binary (built once per test process).
pub fn scope_bin() -> PathBuf {
    SCOPE
        .get_or_init(|| testkit::bin_path("appscope-cli", "scope"))
        .clone()
}

pub fn demo_bin() -> PathBuf {
    DEMO.get_or_init(|| testkit::bin_path("appscope-cli", "scope-crash-demo"))
        .clone()
}

pub fn lib_path() -> PathBuf {
    LIB.get_or_init(testkit::libscope_path).clone()
}

/// A `scope` invocation with its own ~/.scope and the workspace's libscope.so.
pub struct Scope {
    pub home: tempfile::TempDir,
    /// Set for tests that run scoped programs (building libscope.so is slow).
    pub lib: Option<PathBuf>,
}

impl Default for Scope {
    fn default() -> Scope {
        Scope::new()
    }
}

impl Scope {
    pub fn new() -> Scope {
        Scope {
            home: tempfile::tempdir().unwrap(),
            lib: None,
        }
    }

    /// With the workspace's libscope.so for `scope run`.
    pub fn scoped() -> Scope {
        Scope {
            home: tempfile::tempdir().unwrap(),
            lib: Some(lib_path()),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(scope_bin());
        c.args(args)
            .env("SCOPE_HOME_DIR", self.home.path())
            .stdin(Stdio::null());
        if let Some(l) = &self.lib {
            c.env("SCOPE_LIB_PATH", l);
        }
        c
    }

    /// Run to completion (bounded by `timeout` via the `timeout` program).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("timeout");
        c.arg("120")
            .arg(scope_bin())
            .args(args)
            .env("SCOPE_HOME_DIR", self.home.path())
            .stdin(Stdio::null());
        if let Some(l) = &self.lib {
            c.env("SCOPE_LIB_PATH", l);
        }
        c.output().expect("running scope")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "scope {args:?}: bad JSON ({e}): {}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        })
    }

    pub fn history(&self) -> PathBuf {
        self.home.path().join("history")
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(c: &mut Command) -> Proc {
        Proc(c.spawn().expect("spawning"))
    }
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `f` every 100 ms until it returns Some, or panic after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// pid of the program `scope run` started, from the run directory's info.json.
pub fn run_child_pid(history: &Path) -> Option<i32> {
    let e = std::fs::read_dir(history).ok()?.flatten().next()?;
    let b = std::fs::read(e.path().join("info.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    v.get("pid")?.as_i64().map(|p| p as i32)
}

/// Process state letter from /proc/<pid>/stat (R, S, t, T, Z...).
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Whether every thread of `pid` is blocked in one of the system calls `nrs`:
/// `/proc/<pid>/task/<tid>/syscall` starts with the call's number while the thread
/// sleeps in it (`running` otherwise). A program that reached its wait, not one still
/// starting up.
pub fn all_threads_in_syscall(pid: i32, nrs: &[i64]) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        let nr = std::fs::read_to_string(t.path().join("syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok());
        if !nr.is_some_and(|n| nrs.contains(&n)) {
            return false;
        }
        any = true;
    }
    any
}

/// The sleeps of `std::thread::sleep` and coreutils `sleep`.
pub const SLEEP_SYSCALLS: [i64; 2] = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
