//! Helpers shared by the crash_* integration tests.
#![allow(dead_code)]

use scope_config::crash::{BundleFile, Ts, file_name, list_bundles};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How the test program is compiled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Opt {
    /// `-g -O0 -fno-omit-frame-pointer`
    Debug,
    /// `-g -O2 -fomit-frame-pointer`
    O2NoFp,
}

pub use testkit::Libc;

static DEBUG: OnceLock<PathBuf> = OnceLock::new();
static O2: OnceLock<PathBuf> = OnceLock::new();
static MUSL_DEBUG: OnceLock<PathBuf> = OnceLock::new();
static MUSL_O2: OnceLock<PathBuf> = OnceLock::new();

/// The compiled `tests/c/crash.c` (built once per test binary).
pub fn program(opt: Opt) -> PathBuf {
    program_for(Libc::Glibc, opt)
}

/// `tests/c/crash.c` compiled against `libc` (`gcc` or `musl-gcc`), once per test binary.
/// The musl builds have the same names, in a directory of their own.
pub fn program_for(libc: Libc, opt: Opt) -> PathBuf {
    let cell = match (libc, opt) {
        (Libc::Glibc, Opt::Debug) => &DEBUG,
        (Libc::Glibc, Opt::O2NoFp) => &O2,
        (Libc::Musl, Opt::Debug) => &MUSL_DEBUG,
        (Libc::Musl, Opt::O2NoFp) => &MUSL_O2,
    };
    cell.get_or_init(|| {
        let dir = testkit::target_dir().join("crash-tests");
        let dir = match libc {
            Libc::Glibc => dir,
            Libc::Musl => dir.join("musl"),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let name = match opt {
            Opt::Debug => "crash-O0",
            Opt::O2NoFp => "crash-O2",
        };
        // Unique per test process, then renamed: parallel test binaries never see a
        // half-written program.
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        let out = dir.join(name);
        let flags: &[&str] = match opt {
            Opt::Debug => &["-g", "-O0", "-fno-omit-frame-pointer"],
            Opt::O2NoFp => &["-g", "-O2", "-fomit-frame-pointer"],
        };
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/crash.c");
        let compiler = match libc {
            Libc::Glibc => "gcc",
            Libc::Musl => libc.cc(),
        };
        let st = Command::new(compiler)
            .args(flags)
            .args(["-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("running the C compiler");
        assert!(st.success(), "{compiler} failed for {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

pub fn libscope() -> PathBuf {
    static L: OnceLock<PathBuf> = OnceLock::new();
    L.get_or_init(testkit::libscope_path).clone()
}

pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new() -> Self {
        let d = tempfile::Builder::new()
            .prefix("scope-crash-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(d.path().join("cmd")).unwrap();
        TestDir(d)
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn snap(&self) -> PathBuf {
        self.0.path().join("snap")
    }
    pub fn cmd(&self) -> PathBuf {
        self.0.path().join("cmd")
    }
}

/// Kills and reaps the child on drop.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn scoped_command(prog: &Path, args: &[String], snap: &Path, env: &[(&str, &str)]) -> Command {
    scoped_command_with(&libscope(), prog, args, snap, env)
}

/// As [`scoped_command`], preloading `lib`.
pub fn scoped_command_with(
    lib: &Path,
    prog: &Path,
    args: &[String],
    snap: &Path,
    env: &[(&str, &str)],
) -> Command {
    let mut c = Command::new(prog);
    c.args(args)
        .env("LD_PRELOAD", lib)
        .env("SCOPE_SNAPSHOT_BACKTRACE", "true")
        .env("SCOPE_SNAPSHOT_COREDUMP", "true")
        .env("SCOPE_SNAPSHOT_DIR", snap)
        .env("SCOPE_CMD_DIR", snap.parent().unwrap().join("cmd"))
        .env("SCOPE_METRIC_ENABLE", "false")
        .env("SCOPE_EVENT_ENABLE", "false")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a scoped program to its end; returns its status and pid.
pub fn run_scoped(
    prog: &Path,
    args: &[String],
    snap: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (ExitStatus, u32) {
    run_scoped_for(Libc::Glibc, prog, args, snap, env, limit)
}

/// As [`run_scoped`], preloading the library build for `libc`.
pub fn run_scoped_for(
    libc: Libc,
    prog: &Path,
    args: &[String],
    snap: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (ExitStatus, u32) {
    let lib = match libc {
        Libc::Glibc => libscope(),
        Libc::Musl => testkit::libscope_musl_path(),
    };
    let mut c = scoped_command_with(&lib, prog, args, snap, env);
    c.stdout(Stdio::null());
    let mut child = Kill(c.spawn().unwrap());
    let pid = child.0.id();
    (wait_timeout(&mut child.0, limit), pid)
}

pub fn spawn_scoped(prog: &Path, args: &[String], snap: &Path, env: &[(&str, &str)]) -> Kill {
    let mut c = scoped_command(prog, args, snap, env);
    c.stdout(Stdio::piped());
    Kill(c.spawn().unwrap())
}

/// Waits for a stdout line starting with `prefix` (bounded).
pub fn wait_line(child: &mut Kill, prefix: &str, limit: Duration) -> String {
    let out = child.0.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with(&prefix) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    rx.recv_timeout(limit).expect("expected output line")
}

pub struct Bundle {
    pub dir: PathBuf,
    pub ts: Ts,
}

impl Bundle {
    pub fn file(&self, prefix: &str) -> PathBuf {
        let f = match prefix {
            "info_" => BundleFile::Info,
            "cfg_" => BundleFile::Cfg,
            "backtrace_" => BundleFile::Backtrace,
            "core_" => BundleFile::Core,
            "crash_" => BundleFile::CrashJson,
            "snapshot_" => BundleFile::SnapshotJson,
            _ => BundleFile::Done,
        };
        let p = self.dir.join(file_name(f, self.ts));
        assert!(p.exists(), "{} missing", p.display());
        p
    }
    pub fn read(&self, prefix: &str) -> String {
        std::fs::read_to_string(self.file(prefix)).unwrap()
    }
}

/// Asserts `dir` holds exactly one bundle, complete, with every file.
pub fn single_bundle(dir: &Path) -> Bundle {
    let l = list_bundles(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(l.len(), 1, "one bundle in {}: {l:?}", dir.display());
    let b = &l[0];
    assert!(b.complete, "complete: {b:?}");
    for f in [
        BundleFile::Info,
        BundleFile::Cfg,
        BundleFile::Backtrace,
        BundleFile::Core,
        BundleFile::Done,
    ] {
        assert!(b.files.contains(&file_name(f, b.ts)), "{f:?} in {b:?}");
    }
    Bundle {
        dir: dir.to_path_buf(),
        ts: b.ts,
    }
}

pub fn gdb(prog: &Path, core: &Path, cmds: &[&str]) -> String {
    let mut c = Command::new("timeout");
    c.args(["120", "gdb", "-nx", "-batch"]);
    for x in cmds {
        c.args(["-ex", x]);
    }
    let out = c
        .arg(prog)
        .arg(core)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("gdb");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// gdb's frame #0 or #1 is `func`.
pub fn assert_gdb_frame(out: &str, func: &str) {
    let ok = out.lines().any(|l| {
        (l.starts_with("#0 ") || l.starts_with("#1 ")) && l.contains(&format!(" {func} ("))
            || (l.starts_with("#0 ") && l.contains(&format!("  {func} (")))
    });
    assert!(ok, "gdb frame #0/#1 is {func}:\n{out}");
}
