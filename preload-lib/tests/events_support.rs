//! Helpers shared by the events/metrics/schema integration tests (included with
//! `#[path]`; also built as an empty test target of its own).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PY: &str = "/usr/bin/python3";

/// The built library (asked of testkit once per test binary: each request runs cargo,
/// which may wait for the shared build lock).
pub fn lib() -> PathBuf {
    static LIB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LIB.get_or_init(testkit::libscope_path).clone()
}

/// A command run under the library with events and metrics going to files in `dir`
/// (`<tag>.events`, `<tag>.metrics`), a 1 s summary period and a private command dir.
pub fn scoped(prog: &str, dir: &Path, tag: &str) -> Command {
    scoped_with(&lib(), prog, dir, tag)
}

/// As [`scoped`], preloading `lib` (the musl build for a musl program).
pub fn scoped_with(lib: &Path, prog: &str, dir: &Path, tag: &str) -> Command {
    let mut c = Command::new(prog);
    c.env("LD_PRELOAD", lib)
        .env("SCOPE_CRIBL_ENABLE", "false")
        .env(
            "SCOPE_EVENT_DEST",
            format!("file://{}", dir.join(format!("{tag}.events")).display()),
        )
        .env(
            "SCOPE_METRIC_DEST",
            format!("file://{}", dir.join(format!("{tag}.metrics")).display()),
        )
        .env("SCOPE_SUMMARY_PERIOD", "1")
        .env("SCOPE_CMD_DIR", dir.join("cmd"))
        .env("SCOPE_SNAPSHOT_DIR", dir.join("crash"))
        .env(
            "SCOPE_LOG_DEST",
            format!("file://{}", dir.join(format!("{tag}.log")).display()),
        )
        .env_remove("SCOPE_CONF_PATH")
        .env_remove("SCOPE_HOME")
        .current_dir(dir)
        .stdin(Stdio::null());
    let _ = std::fs::create_dir_all(dir.join("cmd"));
    c
}

/// Run to completion with a deadline; panics on timeout (killing the child).
pub fn run(mut c: Command, limit: Duration) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let start = Instant::now();
    loop {
        if let Some(_st) = child.try_wait().expect("wait") {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command timed out after {limit:?}: stdout={} stderr={}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child killed (SIGKILL) and reaped on drop.
pub struct Guarded(pub Child);

impl Guarded {
    /// Ask it to exit cleanly (SIGINT) and wait up to `limit`, then kill.
    pub fn stop(&mut self, limit: Duration) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts on 127.0.0.1:port.
pub fn wait_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on port {port} after {limit:?}");
}

/// `python3 -m http.server` on 127.0.0.1:port serving `root`, scoped with `tag`.
pub fn http_server(
    dir: &Path,
    root: &Path,
    port: u16,
    tag: &str,
    extra: &[(&str, &str)],
) -> Guarded {
    let mut c = scoped(PY, dir, tag);
    c.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(root)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in extra {
        c.env(k, v);
    }
    let g = Guarded(c.spawn().expect("start python3 http.server"));
    wait_port(port, Duration::from_secs(15));
    g
}

/// All JSON lines of a file (missing file = none); non-JSON lines are an error.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Text lines of a file.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait until `f` holds, polling every 100 ms, up to `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// Events of a given source.
pub fn events_of<'a>(evs: &'a [serde_json::Value], source: &str) -> Vec<&'a serde_json::Value> {
    evs.iter()
        .filter(|e| e["body"]["source"] == source)
        .collect()
}

/// A UDP listener collecting datagrams as text lines.
pub struct UdpCollector {
    pub port: u16,
    pub lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl UdpCollector {
    pub fn start() -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = s.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l2, st2) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = s.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    l2.lock().unwrap().extend(text.lines().map(str::to_string));
                }
            }
        });
        UdpCollector { port, lines, stop }
    }
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for UdpCollector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A TCP listener collecting newline-separated lines from every connection.
pub struct TcpCollector {
    pub port: u16,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl TcpCollector {
    pub fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let l3 = l2.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    for line in BufReader::new(s).lines().map_while(Result::ok) {
                        l3.lock().unwrap().push(line);
                    }
                });
            }
        });
        TcpCollector { port, lines }
    }
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Parse a StatsD line `name:value|type|#k:v,...` into (name, value, type, tags).
pub fn parse_statsd(line: &str) -> Option<(String, f64, String, BTreeMap<String, String>)> {
    let (head, tags) = match line.split_once("|#") {
        Some((h, t)) => (h, Some(t)),
        None => (line, None),
    };
    let (nv, ty) = head.split_once('|')?;
    let (name, val) = nv.rsplit_once(':')?;
    let mut map = BTreeMap::new();
    if let Some(t) = tags {
        for kv in t.split(',') {
            let (k, v) = kv.split_once(':')?;
            map.insert(k.to_string(), v.to_string());
        }
    }
    Some((name.to_string(), val.parse().ok()?, ty.to_string(), map))
}

/// Read everything from a reader (helper for child pipes).
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
