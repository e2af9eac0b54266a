//! Helpers shared by the runtime, transport and program integration tests: running real
//! programs under the built libscope.so with bounded timeouts, listeners that collect
//! lines, C programs compiled on the fly, status-file polling.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use testkit::Libc;

pub fn libscope() -> PathBuf {
    testkit::libscope_path()
}

/// A per-test directory with `status/`, `cmd/`, and a log file.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Whose library build `scoped` preloads.
    pub libc: Libc,
}

impl Env {
    pub fn new() -> Env {
        Env::for_libc(Libc::Glibc)
    }

    /// An environment whose scoped commands preload the build for `libc`.
    pub fn for_libc(libc: Libc) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("scope-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("status")).unwrap();
        std::fs::create_dir_all(dir.path().join("cmd")).unwrap();
        Env { dir, libc }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn status_dir(&self) -> PathBuf {
        self.dir.path().join("status")
    }
    pub fn cmd_dir(&self) -> PathBuf {
        self.dir.path().join("cmd")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("scope.log")
    }

    /// Environment for a scoped run: our library preloaded, cribl off, 1 s period,
    /// status/cmd/log inside this directory, metrics and events disabled unless the
    /// caller sets destinations with `.env(...)` afterwards.
    pub fn scoped(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("LD_PRELOAD", self.libc.libscope())
            .env("SCOPE_CRIBL_ENABLE", "false")
            .env("SCOPE_CONF_PATH", self.dir.path().join("no-scope.yml"))
            .env("SCOPE_SUMMARY_PERIOD", "1")
            .env("SCOPE_STATUS_DIR", self.status_dir())
            .env("SCOPE_CMD_DIR", self.cmd_dir())
            .env("SCOPE_SNAPSHOT_DIR", self.dir.path().join("snap"))
            .env(
                "SCOPE_LOG_DEST",
                format!("file://{}", self.log_path().display()),
            )
            .env("SCOPE_METRIC_ENABLE", "false")
            .env("SCOPE_EVENT_ENABLE", "false");
        c
    }

    /// A program that sleeps for `argv[1]` seconds, linked against this environment's libc:
    /// `/bin/sleep` for glibc, a `musl-gcc` build for musl (compiled once per environment).
    pub fn sleep_program(&self) -> PathBuf {
        match self.libc {
            Libc::Glibc => PathBuf::from("/bin/sleep"),
            Libc::Musl => {
                let p = self.dir.path().join("sleep");
                if p.exists() {
                    return p;
                }
                cc_for(
                    self.libc,
                    self.dir.path(),
                    "sleep",
                    "#include <stdlib.h>\n#include <unistd.h>\n\
                     int main(int c, char **v) { sleep(c > 1 ? atoi(v[1]) : 1); return 0; }\n",
                    &[],
                )
            }
        }
    }

    pub fn status_path(&self, pid: u32) -> PathBuf {
        self.status_dir().join(format!("{pid}.json"))
    }

    pub fn status(&self, pid: u32) -> Option<Value> {
        let b = std::fs::read(self.status_path(pid)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Polls the status file of `pid` until `pred` holds.
    pub fn wait_status(
        &self,
        pid: u32,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < end {
            if let Some(v) = self.status(pid) {
                if pred(&v) {
                    return v;
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "status of pid {pid}: {what} not seen in {timeout:?}; last status: {}",
            last.map(|v| serde_json::to_string_pretty(&v).unwrap())
                .unwrap_or_else(|| "none".into())
        );
    }

    /// All status files present, by pid.
    pub fn statuses(&self) -> BTreeMap<u32, Value> {
        let mut m = BTreeMap::new();
        for e in std::fs::read_dir(self.status_dir()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_suffix(".json")
                .and_then(|p| p.parse::<u32>().ok())
                && let Ok(b) = std::fs::read(e.path())
                && let Ok(v) = serde_json::from_slice(&b)
            {
                m.insert(pid, v);
            }
        }
        m
    }

    pub fn write_cmd(&self, pid: u32, body: &str) -> PathBuf {
        // Write under a temp name and rename, as a careful sender does.
        let p = self.cmd_dir().join(format!("scope.{pid}"));
        let tmp = self.cmd_dir().join(format!(".tmp.{pid}"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }
}

/// The interface entry `name` of a status file.
pub fn iface<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no interface {name} in {status}"))
}

/// A child that is killed when dropped.
pub struct Guarded(pub Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guarded {
    pub fn spawn(mut c: Command) -> Guarded {
        Guarded(c.stdin(Stdio::null()).spawn().expect("spawn"))
    }
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Runs to completion with a timeout (the child is killed on timeout, which fails).
pub fn run(mut c: Command, timeout: Duration) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
    }
}

/// Lines collected by a listener.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn json(&self) -> Vec<Value> {
        self.all()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    /// Start messages (lines with `info.process`).
    pub fn start_messages(&self) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|v| v["info"]["process"].is_object())
            .collect()
    }
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&[String]) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(&self.all()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let all = self.all();
        panic!(
            "{what} not received in {timeout:?}; got {} lines: {:?}",
            all.len(),
            &all[..all.len().min(5)]
        );
    }
}

/// A listener that stops its threads when dropped.
pub struct Collector {
    pub lines: Lines,
    /// Number of connections accepted (stream listeners).
    pub conns: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    pub addr: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_lines<R: Read + Send + 'static>(r: R, lines: Lines, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut br = BufReader::new(r);
        let mut s = String::new();
        while !stop.load(Ordering::SeqCst) {
            s.clear();
            match br.read_line(&mut s) {
                Ok(0) => break,
                Ok(_) => lines.0.lock().unwrap().push(s.trim_end().to_string()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue;
                }
                Err(_) => break,
            }
        }
    });
}

impl Collector {
    fn new(addr: String) -> Collector {
        Collector {
            lines: Lines::default(),
            conns: Arc::new(Mutex::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            addr,
            _dir: None,
        }
    }

    /// TCP on 127.0.0.1 (ephemeral port); `addr` is `tcp://127.0.0.1:PORT`.
    pub fn tcp() -> Collector {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = Collector::new(format!("tcp://{}", l.local_addr().unwrap()));
        l.set_nonblocking(true).unwrap();
        let (lines, stop, conns) = (c.lines.clone(), c.stop.clone(), c.conns.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(200)))
                            .unwrap();
                        *conns.lock().unwrap() += 1;
                        read_lines(s, lines.clone(), stop.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        c
    }

    /// UDP on 127.0.0.1; every datagram is split into lines.
    pub fn udp() -> Collector {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = Collector::new(format!("udp://{}", s.local_addr().unwrap()));
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (lines, stop) = (c.lines.clone(), c.stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                if let Ok(n) = s.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let mut l = lines.0.lock().unwrap();
                    for line in text.lines().filter(|x| !x.is_empty()) {
                        l.push(line.to_string());
                    }
                }
            }
        });
        c
    }

    /// A unix stream socket at a path, or in the abstract namespace (`abstract_name`).
    pub fn unix(abstract_name: bool) -> Collector {
        use std::os::linux::net::SocketAddrExt;
        let dir = tempfile::tempdir().unwrap();
        let (l, addr) = if abstract_name {
            let name = format!("scope-test-{}-{}", std::process::id(), rand_suffix());
            let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (
                UnixListener::bind_addr(&sa).unwrap(),
                format!("unix://@{name}"),
            )
        } else {
            let p = dir.path().join("c.sock");
            (
                UnixListener::bind(&p).unwrap(),
                format!("unix://{}", p.display()),
            )
        };
        let mut c = Collector::new(addr);
        c._dir = Some(dir);
        l.set_nonblocking(true).unwrap();
        let (lines, stop, conns) = (c.lines.clone(), c.stop.clone(), c.conns.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(200)))
                            .unwrap();
                        *conns.lock().unwrap() += 1;
                        read_lines(s, lines.clone(), stop.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        c
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A TCP port on 127.0.0.1 with nothing listening (bound then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Compiles a C source with `cc` into `dir` and returns the binary.
pub fn cc(dir: &Path, name: &str, src: &str, extra: &[&str]) -> PathBuf {
    cc_for(Libc::Glibc, dir, name, src, extra)
}

/// Compiles a C source against `libc` (`cc` or `musl-gcc`) into `dir`.
pub fn cc_for(libc: Libc, dir: &Path, name: &str, src: &str, extra: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let bin = dir.join(name);
    let out = Command::new(libc.cc())
        .arg("-O1")
        .arg("-o")
        .arg(&bin)
        .arg(&c)
        .args(extra)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "{} {name}: {}",
        libc.cc(),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Validates a start message against AppScope's schema (with `$ref`s to the local
/// definitions). Returns the list of errors.
pub fn start_msg_errors(v: &Value) -> Vec<String> {
    let dir = testkit::compat_dir().join("schemas");
    let load = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let schema = load(&dir.join("event_start_msg.schema.json"));
    let mut builder = jsonschema::Registry::new();
    for d in ["data", "body", "envelope"] {
        let def = load(&dir.join("definitions").join(format!("{d}.schema.json")));
        let uri = format!("https://appscope.dev/docs/schemas/definitions/{d}.schema.json");
        builder = builder.add(uri, def).unwrap();
    }
    let registry = builder.prepare().unwrap();
    let val = jsonschema::options()
        .with_registry(&registry)
        .build(&schema)
        .expect("start message schema compiles");
    val.iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

pub fn assert_valid_start_msg(v: &Value) {
    let errs = start_msg_errors(v);
    assert!(errs.is_empty(), "start message invalid: {errs:?}\n{v}");
}
