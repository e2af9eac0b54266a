//! Live snapshots of any process, scoped or not: proc files, redacted environment, fds,
//! sockets, and the user-space stack of every thread (ptrace, stopped only while the
//! registers and stacks are read). Optionally a core file, and for scoped processes the
//! library's own bundle (`SCOPE_CMD_SNAPSHOT=true`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cmdfile::{self, Setting};
use crate::error::{Error, Result, io_err};
use crate::procs::{self, ProcessInfo};
use crate::stacks::{self, ProcessImage, ThreadStack};

/// Files every snapshot has.
pub const SNAPSHOT_FILES: &[&str] = &[
    "info",
    "status",
    "cmdline",
    "environ",
    "maps",
    "limits",
    "fds",
    "sockets",
    "cgroup",
    "stacks",
    "snapshot.json",
];

/// Options of one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotOptions {
    /// Directory to write (created).
    pub out_dir: PathBuf,
    /// Redact secret-looking environment values.
    pub redact: bool,
    /// Write a core file.
    pub core: bool,
    /// For scoped processes: ask the library for its bundle and wait this long for it
    /// (zero: do not ask).
    pub library_wait: Duration,
}

/// Progress of long steps (bytes done, bytes total) for progress bars.
pub trait Progress {
    fn stage(&mut self, _name: &str) {}
    fn bytes(&mut self, _done: u64, _total: u64) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a snapshot produced (`snapshot.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotResult {
    pub pid: i32,
    pub nspid: i32,
    pub procname: String,
    pub scoped: bool,
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub threads: Vec<ThreadStack>,
    /// How long the process was stopped for stack capture, milliseconds.
    pub stopped_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<String>,
    /// Library bundle copied in (scoped processes), or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_bundle: Option<String>,
    pub warnings: Vec<String>,
    pub time: String,
}

/// Secret-looking environment names (pure): `*TOKEN*`, `*SECRET*`, `*PASSWORD*`,
/// `*PASSWD*`, `*KEY*`, `*CREDENTIAL*`, `*PRIVATE*`, case-insensitive.
pub fn should_redact(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Render the environment, one `NAME=value` a line, redacting when asked (pure).
pub fn render_environ(env: &BTreeMap<String, String>, redact: bool) -> String {
    env.iter()
        .map(|(k, v)| {
            if redact && should_redact(k) {
                format!("{k}=<redacted>\n")
            } else {
                format!("{k}={v}\n")
            }
        })
        .collect()
}

/// A socket from `/proc/<pid>/net/*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketEntry {
    pub proto: String,
    pub local: String,
    pub remote: String,
    pub state: String,
    pub inode: u64,
}

fn hex_ip_port(s: &str) -> String {
    let Some((ip, port)) = s.split_once(':') else {
        return s.to_string();
    };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    let bytes: Vec<u8> = (0..ip.len() / 2)
        .filter_map(|i| u8::from_str_radix(&ip[2 * i..2 * i + 2], 16).ok())
        .collect();
    match bytes.len() {
        4 => format!("{}.{}.{}.{}:{port}", bytes[3], bytes[2], bytes[1], bytes[0]),
        16 => {
            // Four little-endian 32-bit words.
            let mut b = [0u8; 16];
            for w in 0..4 {
                for i in 0..4 {
                    b[w * 4 + i] = bytes[w * 4 + 3 - i];
                }
            }
            format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
        _ => s.to_string(),
    }
}

const TCP_STATES: &[&str] = &[
    "",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// Parse `/proc/net/{tcp,udp,tcp6,udp6}` text (pure).
pub fn parse_net_inet(proto: &str, text: &str) -> Vec<SocketEntry> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let st = usize::from_str_radix(f[3], 16).unwrap_or(0);
            Some(SocketEntry {
                proto: proto.to_string(),
                local: hex_ip_port(f[1]),
                remote: hex_ip_port(f[2]),
                state: TCP_STATES.get(st).copied().unwrap_or("?").to_string(),
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Parse `/proc/net/unix` text (pure).
pub fn parse_net_unix(text: &str) -> Vec<SocketEntry> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 7 {
                return None;
            }
            Some(SocketEntry {
                proto: "unix".into(),
                local: f.get(7).map(|s| s.to_string()).unwrap_or_default(),
                remote: String::new(),
                state: match f[5] {
                    "01" => "UNCONNECTED",
                    "02" => "CONNECTING",
                    "03" => "CONNECTED",
                    "04" => "DISCONNECTING",
                    _ => "?",
                }
                .into(),
                inode: f[6].parse().ok()?,
            })
        })
        .collect()
}

fn read_text(pid: i32, f: &str) -> Result<String> {
    let p = PathBuf::from(format!("/proc/{pid}/{f}"));
    fs::read(&p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(io_err(p))
}

/// Open fds: (fd, target).
pub fn fds(pid: i32) -> Result<Vec<(i32, String)>> {
    let d = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut v: Vec<(i32, String)> = fs::read_dir(&d)
        .map_err(io_err(&d))?
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let t = fs::read_link(e.path()).ok()?.display().to_string();
            Some((fd, t))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Sockets the process holds (matched by inode against its network namespace's tables).
pub fn sockets(pid: i32, fds: &[(i32, String)]) -> Vec<(i32, SocketEntry)> {
    let mut by_inode: HashMap<u64, SocketEntry> = HashMap::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        if let Ok(t) = read_text(pid, &format!("net/{proto}")) {
            for s in parse_net_inet(proto, &t) {
                by_inode.insert(s.inode, s);
            }
        }
    }
    if let Ok(t) = read_text(pid, "net/unix") {
        for s in parse_net_unix(&t) {
            by_inode.insert(s.inode, s);
        }
    }
    fds.iter()
        .filter_map(|(fd, t)| {
            let inode: u64 = t
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            let s = by_inode.get(&inode).cloned().unwrap_or(SocketEntry {
                proto: "socket".into(),
                local: String::new(),
                remote: String::new(),
                state: String::new(),
                inode,
            });
            Some((*fd, s))
        })
        .collect()
}

/// Capture the stacks of every thread. Modules are parsed and indexed first; then all
/// threads are stopped only while their registers and stack memory are copied; the
/// copies are unwound and symbolized after they resume. Returns the stacks and how long
/// the process was stopped (first stop request to last thread resumed).
pub fn capture_stacks(pid: i32) -> Result<(Vec<ThreadStack>, Duration)> {
    if pid == std::process::id() as i32 {
        return Err(Error::Invalid("cannot snapshot the agent itself".into()));
    }
    let mut image = ProcessImage::open(pid)?;
    image.prepare();
    let tids = procs::threads(pid)?;
    let names: HashMap<i32, String> = tids
        .iter()
        .map(|&t| (t, stacks::thread_name(pid, t)))
        .collect();
    let t0 = Instant::now();
    let attached = crate::ptrace::Attached::stop_threads(&tids)?;
    let captured: Vec<(i32, Result<(crate::ptrace::Regs, stacks::StackCopy)>)> = attached
        .tids()
        .iter()
        .map(|&tid| (tid, attached.regs(tid).map(|r| (r, image.copy_stack(r.sp)))))
        .collect();
    drop(attached);
    let stopped = t0.elapsed();
    let out = captured
        .into_iter()
        .map(|(tid, c)| {
            let name = names
                .get(&tid)
                .cloned()
                .unwrap_or_else(|| stacks::thread_name(pid, tid));
            match c {
                Ok((r, stack)) => ThreadStack {
                    tid,
                    name,
                    frames: image.unwind_copy(r.ip, r.sp, r.fp, &stack),
                    error: None,
                },
                Err(e) => ThreadStack {
                    tid,
                    name,
                    frames: Vec::new(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    Ok((out, stopped))
}

/// Render stacks as text (pure).
pub fn render_stacks(threads: &[ThreadStack]) -> String {
    let mut s = String::new();
    for t in threads {
        s.push_str(&format!("Thread {} ({}):\n", t.tid, t.name));
        if let Some(e) = &t.error {
            s.push_str(&format!("  <error: {e}>\n"));
        }
        for (i, f) in t.frames.iter().enumerate() {
            s.push_str(&format!("  #{i:<2} {}\n", f.describe()));
        }
        s.push('\n');
    }
    s
}

/// Take a snapshot of `pid` into `opts.out_dir`.
pub fn take_snapshot(
    pid: i32,
    opts: &SnapshotOptions,
    progress: &mut dyn Progress,
) -> Result<SnapshotResult> {
    let info = procs::read_process(pid)?;
    let dir = &opts.out_dir;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let write = |name: &str, data: &[u8], files: &mut Vec<String>| -> Result<()> {
        let p = dir.join(name);
        fs::write(&p, data).map_err(io_err(&p))?;
        files.push(name.to_string());
        Ok(())
    };
    progress.stage("proc files");
    for (name, src) in [
        ("status", "status"),
        ("maps", "maps"),
        ("limits", "limits"),
        ("cgroup", "cgroup"),
    ] {
        match read_text(pid, src) {
            Ok(t) => write(name, t.as_bytes(), &mut files)?,
            Err(e) => {
                warnings.push(format!("{name}: {e}"));
                write(name, format!("<unreadable: {e}>\n").as_bytes(), &mut files)?;
            }
        }
    }
    write(
        "cmdline",
        format!("{}\n", info.cmdline.join("\n")).as_bytes(),
        &mut files,
    )?;
    let env = procs::environ(pid).unwrap_or_else(|e| {
        warnings.push(format!("environ: {e}"));
        BTreeMap::new()
    });
    write(
        "environ",
        render_environ(&env, opts.redact).as_bytes(),
        &mut files,
    )?;
    let fd_list = fds(pid).unwrap_or_else(|e| {
        warnings.push(format!("fds: {e}"));
        Vec::new()
    });
    let fd_text: String = fd_list
        .iter()
        .map(|(fd, t)| format!("{fd}\t{t}\n"))
        .collect();
    write("fds", fd_text.as_bytes(), &mut files)?;
    let socks = sockets(pid, &fd_list);
    let sock_text: String = socks
        .iter()
        .map(|(fd, s)| {
            format!(
                "{fd}\t{}\t{}\t{}\t{}\tinode={}\n",
                s.proto, s.local, s.remote, s.state, s.inode
            )
        })
        .collect();
    write("sockets", sock_text.as_bytes(), &mut files)?;

    progress.stage("thread stacks");
    let (threads, stopped) = match capture_stacks(pid) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("stacks: {e}"));
            (Vec::new(), Duration::ZERO)
        }
    };
    write("stacks", render_stacks(&threads).as_bytes(), &mut files)?;

    let mut core = None;
    if opts.core {
        progress.stage("core");
        match crate::snapshot::write_core(pid, &dir.join("core"), progress) {
            Ok(()) => {
                files.push("core".into());
                core = Some(dir.join("core").display().to_string());
            }
            Err(e) => warnings.push(format!("core: {e}")),
        }
    }

    let mut library_bundle = None;
    if info.scoped && !opts.library_wait.is_zero() {
        progress.stage("library snapshot");
        library_bundle = Some(
            match library_snapshot(&info, &dir.join("libscope"), opts.library_wait) {
                Ok(key) => {
                    files.push("libscope/".into());
                    format!("moved bundle {key} into libscope/")
                }
                Err(e) => {
                    warnings.push(format!("library snapshot: {e}"));
                    format!("not received: {e}")
                }
            },
        );
    }

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let info_text = render_info(&info, &env, threads.len(), stopped, &now);
    write("info", info_text.as_bytes(), &mut files)?;
    files.push("snapshot.json".into());
    let result = SnapshotResult {
        pid,
        nspid: info.nspid,
        procname: info.comm.clone(),
        scoped: info.scoped,
        dir: dir.clone(),
        files,
        threads,
        stopped_ms: stopped.as_secs_f64() * 1000.0,
        core,
        library_bundle,
        warnings,
        time: now,
    };
    let p = dir.join("snapshot.json");
    fs::write(&p, serde_json::to_vec_pretty(&result).unwrap_or_default()).map_err(io_err(&p))?;
    Ok(result)
}

fn render_info(
    info: &ProcessInfo,
    env: &BTreeMap<String, String>,
    threads: usize,
    stopped: Duration,
    now: &str,
) -> String {
    let exe = fs::read_link(format!("/proc/{}/exe", info.pid))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut s = String::new();
    s.push_str(&format!(
        "time: {now}\nhost: {}\n",
        crate::store::hostname()
    ));
    s.push_str(&format!(
        "pid: {}\nnamespaced pid: {}\nppid: {}\n",
        info.pid, info.nspid, info.ppid
    ));
    s.push_str(&format!(
        "user: {} (uid {}, gid {})\n",
        info.user, info.uid, info.gid
    ));
    s.push_str(&format!(
        "name: {}\nexe: {exe}\ncommand: {}\n",
        info.comm,
        info.command()
    ));
    s.push_str(&format!("scoped: {}\n", info.scoped));
    if let Some(l) = &info.libscope {
        s.push_str(&format!("libscope: {l}\n"));
    }
    s.push_str(&format!(
        "other mount namespace: {}\nother pid namespace: {}\n",
        info.foreign_mntns, info.foreign_pidns
    ));
    s.push_str(&format!(
        "threads: {threads}\nstopped for stacks: {:.1} ms\n",
        stopped.as_secs_f64() * 1000.0
    ));
    let scope_vars: Vec<String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("SCOPE_"))
        .map(|(k, v)| format!("  {k}={v}"))
        .collect();
    if !scope_vars.is_empty() {
        s.push_str(&format!("scope environment:\n{}\n", scope_vars.join("\n")));
    }
    s
}

/// Ask the library for its own snapshot bundle (`SCOPE_CMD_SNAPSHOT=true`) and move the
/// bundle into `dest` once it is complete (copied, then removed from the process's
/// snapshot directory). Returns the bundle's `<ts>`. A bundle that arrives after `wait`
/// stays in the snapshot directory; crash collectors leave it there.
pub fn library_snapshot(info: &ProcessInfo, dest: &Path, wait: Duration) -> Result<String> {
    let env = procs::scope_env(info.pid)?;
    let snap_dir = info.host_path(&env.snapshot_dir.join(info.nspid.to_string()));
    let before: Vec<String> = crate::bundle::scan_pid_dir(&snap_dir)
        .into_iter()
        .map(|b| b.key)
        .collect();
    cmdfile::write_command_file(
        info,
        &env,
        &[Setting {
            name: "SCOPE_CMD_SNAPSHOT".into(),
            value: "true".into(),
        }],
    )?;
    let deadline = Instant::now() + wait;
    loop {
        if let Some(b) = crate::bundle::scan_pid_dir(&snap_dir)
            .into_iter()
            .find(|b| !before.contains(&b.key))
        {
            fs::create_dir_all(dest).map_err(io_err(dest))?;
            for f in b.files.iter().chain(std::iter::once(&b.done)) {
                if let Some(n) = f.file_name() {
                    fs::copy(f, dest.join(n)).map_err(io_err(f))?;
                }
            }
            // Moved, not copied: the bundle is this snapshot's, and left in the snapshot
            // directory it would only take space (crash collectors never store it).
            if let Err(e) = crate::store::remove_bundle(&b) {
                tracing::warn!(dir = %b.dir.display(), bundle = %b.key, error = %e,
                    "could not remove the library's snapshot bundle after copying it");
            }
            return Ok(b.key);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "the library wrote no bundle into {} within {:.0}s (it reads command files once per summary period)",
                snap_dir.display(),
                wait.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Write a gdb-loadable core of a live process (see [`crate::core`]).
pub fn write_core(pid: i32, path: &Path, progress: &mut dyn Progress) -> Result<()> {
    crate::core::write_live_core(pid, path, progress).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let mut env = BTreeMap::new();
        env.insert("API_TOKEN".to_string(), "abc".to_string());
        env.insert("aws_secret_access_key".to_string(), "x".to_string());
        env.insert("PATH".to_string(), "/bin".to_string());
        let r = render_environ(&env, true);
        assert!(r.contains("API_TOKEN=<redacted>"));
        assert!(r.contains("aws_secret_access_key=<redacted>"));
        assert!(r.contains("PATH=/bin"));
        assert!(render_environ(&env, false).contains("API_TOKEN=abc"));
    }

    #[test]
    fn net_parsing() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n";
        let s = parse_net_inet("tcp", tcp);
        assert_eq!(s[0].local, "127.0.0.1:8080");
        assert_eq!(s[0].state, "LISTEN");
        assert_eq!(s[0].inode, 12345);
        let tcp6 = "hdr\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        assert_eq!(parse_net_inet("tcp6", tcp6)[0].local, "[::1]:80");
    }
}
