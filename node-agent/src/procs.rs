//! Process discovery through `/proc`: which processes are scoped (libscope.so in their
//! maps), host and namespaced pids, owner, command line, and the AppScope directories
//! from their environment, resolved to host paths through `/proc/<pid>/root`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};

/// File name of the preload library that marks a process as scoped.
pub const LIB_NAME: &str = "libscope.so";
/// Default `SCOPE_CMD_DIR` (AppScope's default).
pub const DEFAULT_CMD_DIR: &str = "/tmp";
/// Default `SCOPE_SNAPSHOT_DIR` (design §2).
pub const DEFAULT_SNAPSHOT_DIR: &str = "/tmp/appscope";
/// Default `SCOPE_SUMMARY_PERIOD` in seconds.
pub const DEFAULT_SUMMARY_PERIOD_SECS: u64 = 10;

/// One process on the host, as the agent sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessInfo {
    /// pid in the agent's (host) pid namespace.
    pub pid: i32,
    /// pid as the process sees itself (last `NSpid` entry); equals `pid` outside containers.
    pub nspid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub gid: u32,
    /// User name from the host's /etc/passwd, or the uid as text.
    pub user: String,
    /// `comm` (short process name).
    pub comm: String,
    pub cmdline: Vec<String>,
    /// libscope.so path as mapped in the process (its own view), when scoped.
    pub libscope: Option<String>,
    pub scoped: bool,
    /// Why no library build can load into it ("static binary", "libc not supported: ..."),
    /// from its executable's ELF headers; `None` when scoped, or when a build would fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscoped_reason: Option<String>,
    /// True when the process lives in another mount namespace than the agent.
    pub foreign_mntns: bool,
    /// True when the process lives in another pid namespace than the agent.
    pub foreign_pidns: bool,
}

impl ProcessInfo {
    /// Command line joined with spaces, or `[comm]` for kernel threads / zombies.
    pub fn command(&self) -> String {
        if self.cmdline.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.cmdline.join(" ")
        }
    }

    /// Host path of a path as the process sees it: unchanged in the same mount
    /// namespace, otherwise through `/proc/<pid>/root`.
    pub fn host_path(&self, inner: &Path) -> PathBuf {
        host_path(self.pid, self.foreign_mntns, inner)
    }
}

/// Host path for `inner` as seen by `pid`.
pub fn host_path(pid: i32, foreign_mntns: bool, inner: &Path) -> PathBuf {
    if foreign_mntns {
        let rel = inner.strip_prefix("/").unwrap_or(inner);
        PathBuf::from(format!("/proc/{pid}/root")).join(rel)
    } else {
        inner.to_path_buf()
    }
}

/// The AppScope settings of a process that the agent needs, from its environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScopeEnv {
    /// `SCOPE_CMD_DIR` as the process sees it.
    pub cmd_dir: PathBuf,
    /// `SCOPE_STATUS_DIR`, when set.
    pub status_dir: Option<PathBuf>,
    /// `SCOPE_SNAPSHOT_DIR`.
    pub snapshot_dir: PathBuf,
    /// `SCOPE_SUMMARY_PERIOD`.
    pub summary_period: Duration,
    /// Every `SCOPE_*` variable of the process.
    pub vars: BTreeMap<String, String>,
}

impl ScopeEnv {
    /// Decide the settings from a parsed environment (pure).
    pub fn from_vars(env: &BTreeMap<String, String>) -> ScopeEnv {
        let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let vars = env
            .iter()
            .filter(|(k, _)| k.starts_with("SCOPE_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let period = get("SCOPE_SUMMARY_PERIOD")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_SUMMARY_PERIOD_SECS);
        ScopeEnv {
            cmd_dir: PathBuf::from(get("SCOPE_CMD_DIR").unwrap_or(DEFAULT_CMD_DIR)),
            status_dir: get("SCOPE_STATUS_DIR").map(PathBuf::from),
            snapshot_dir: PathBuf::from(get("SCOPE_SNAPSHOT_DIR").unwrap_or(DEFAULT_SNAPSHOT_DIR)),
            summary_period: Duration::from_secs(period),
            vars,
        }
    }
}

/// Fields of `/proc/<pid>/status` the agent uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusFields {
    pub name: String,
    pub ppid: i32,
    pub uid: u32,
    pub gid: u32,
    pub nspids: Vec<i32>,
    pub threads: u32,
}

/// Parse `/proc/<pid>/status` text (pure).
pub fn parse_proc_status(text: &str) -> StatusFields {
    let mut f = StatusFields::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => f.name = v.to_string(),
            "PPid" => f.ppid = v.parse().unwrap_or(0),
            "Uid" => f.uid = first_num(v),
            "Gid" => f.gid = first_num(v),
            "NSpid" => {
                f.nspids = v
                    .split_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect()
            }
            "Threads" => f.threads = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    f
}

fn first_num(v: &str) -> u32 {
    v.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The libscope.so path named in `/proc/<pid>/maps` text, if any (pure).
pub fn libscope_in_maps(maps: &str) -> Option<String> {
    maps.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        let base = path.rsplit('/').next()?;
        (base == LIB_NAME || (base.starts_with("libscope") && base.ends_with(".so")))
            .then(|| path.to_string())
    })
}

/// Split NUL-separated `/proc` data (cmdline, environ) (pure).
pub fn split_nul(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Parse `/proc/<pid>/environ` into a map (pure). Later duplicates win, like getenv.
pub fn parse_environ(data: &[u8]) -> BTreeMap<String, String> {
    split_nul(data)
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn proc_dir(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

fn read_proc(pid: i32, file: &str) -> Result<Vec<u8>> {
    let path = proc_dir(pid).join(file);
    fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
            Error::NoSuchProcess(pid)
        } else {
            Error::Io { path, source: e }
        }
    })
}

fn ns_link(pid: &str, ns: &str) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()
}

/// User name for a uid from the host's /etc/passwd (uid as text when unknown).
pub fn user_name(uid: u32) -> String {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut it = l.split(':');
            let name = it.next()?;
            let _pw = it.next()?;
            (it.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Read one process. `Err(NoSuchProcess)` when it is gone.
pub fn read_process(pid: i32) -> Result<ProcessInfo> {
    let status = String::from_utf8_lossy(&read_proc(pid, "status")?).into_owned();
    // maps needs ptrace access: unreadable maps means we cannot tell; treat as unscoped.
    let maps = read_proc(pid, "maps").unwrap_or_default();
    let libscope = libscope_in_maps(&String::from_utf8_lossy(&maps));
    let me = "self";
    let p = pid.to_string();
    let foreign = |ns: &str| match (ns_link(me, ns), ns_link(&p, ns)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    let cmdline = split_nul(&read_proc(pid, "cmdline").unwrap_or_default());
    let mut info = build_info(
        pid,
        parse_proc_status(&status),
        cmdline,
        libscope,
        |st| user_name(st.uid),
        foreign("mnt"),
        foreign("pid"),
    );
    if !info.scoped {
        info.unscoped_reason = unscoped_reason(pid);
    }
    Ok(info)
}

/// Why process `pid` cannot be scoped, from its executable (`/proc/<pid>/exe`); `None`
/// when a build of the library fits it or the executable cannot be read (kernel threads,
/// no permission).
pub fn unscoped_reason(pid: i32) -> Option<String> {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    crate::elf::program_linkage(&exe).ok()?.unscoped_reason()
}

fn build_info(
    pid: i32,
    st: StatusFields,
    cmdline: Vec<String>,
    libscope: Option<String>,
    user: impl FnOnce(&StatusFields) -> String,
    foreign_mntns: bool,
    foreign_pidns: bool,
) -> ProcessInfo {
    ProcessInfo {
        pid,
        nspid: st.nspids.last().copied().unwrap_or(pid),
        ppid: st.ppid,
        uid: st.uid,
        gid: st.gid,
        user: user(&st),
        comm: st.name,
        cmdline,
        scoped: libscope.is_some(),
        unscoped_reason: None,
        libscope,
        foreign_mntns,
        foreign_pidns,
    }
}

/// All pids currently in /proc, ascending.
pub fn all_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Every process on the host (`all`), or only scoped ones. Processes that vanish while
/// listing are skipped. Unscoped processes carry [`ProcessInfo::unscoped_reason`] (one read of each one's
/// executable headers; the agent's repeated [`Scanner`] passes skip it).
pub fn list_processes(all: bool) -> Vec<ProcessInfo> {
    let mut list = Scanner::new().list(all);
    for p in list.iter_mut().filter(|p| !p.scoped) {
        p.unscoped_reason = unscoped_reason(p.pid);
    }
    list
}

/// The fields of `/proc/<pid>/stat` the [`Scanner`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Hash of `comm` (field 2), to notice a rename cheaply.
    pub comm_hash: u64,
    /// Field 4.
    pub ppid: i32,
    /// `PF_*` flags (field 9).
    pub flags: u64,
    /// Start time in clock ticks after boot (field 22): with the pid, names a process.
    pub starttime: u64,
    /// Virtual memory size in bytes (field 23): changes when anything is mapped or
    /// unmapped, a library included.
    pub vsize: u64,
    /// Address-space identity: fields 26 (startcode), 28 (startstack), 50 and 51
    /// (env_start, env_end). They change with every `execve` (ASLR, and a different
    /// environment size), and read as 0 when the reader may not ptrace the process.
    pub mm: [u64; 4],
}

const PF_KTHREAD: u64 = 0x0020_0000;

impl ProcStat {
    /// A kernel thread: never scoped.
    pub fn kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// Whether the address-space fields are visible (not a zombie, not hidden from us).
    fn mm_known(&self) -> bool {
        self.mm.iter().any(|v| *v != 0)
    }
}

/// Parse `/proc/<pid>/stat` text (pure). `None` when truncated or malformed.
pub fn parse_proc_stat(text: &[u8]) -> Option<ProcStat> {
    // comm (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let open = text.iter().position(|b| *b == b'(')?;
    let close = text.iter().rposition(|b| *b == b')')?;
    let comm = text.get(open + 1..close)?;
    // FNV-1a.
    let comm_hash = comm.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    // Index 0 is field 3 (state).
    let mut f = rest.split_ascii_whitespace();
    let ppid = f.nth(1)?.parse().ok()?; // field 4
    let mut nth = |skip: usize| -> Option<u64> { f.nth(skip)?.parse().ok() };
    let flags = nth(4)?; // field 9
    let starttime = nth(12)?; // field 22
    let vsize = nth(0)?; // 23
    let startcode = nth(2)?; // 26
    let startstack = nth(1)?; // 28
    let env_start = nth(21)?; // 50
    let env_end = nth(0)?; // 51
    Some(ProcStat {
        comm_hash,
        ppid,
        flags,
        starttime,
        vsize,
        mm: [startcode, startstack, env_start, env_end],
    })
}

/// What the [`Scanner`] remembers of one process between passes.
#[derive(Debug)]
struct Cached {
    stat: ProcStat,
    libscope: Option<String>,
    env: Option<ScopeEnv>,
    /// (foreign mount namespace, foreign pid namespace), for this address space.
    ns: Option<(bool, bool)>,
    /// `/proc/<pid>/status` as parsed, with the ppid and comm hash seen at the time
    /// (only with [`Scanner::reusing_status`]).
    status: Option<(i32, u64, StatusFields)>,
    /// How many times this process's maps were read.
    maps_reads: u32,
}

impl Cached {
    /// Same process and same address space as when `libscope` was decided.
    fn same_mm(&self, st: &ProcStat) -> bool {
        st.mm_known() && self.stat.starttime == st.starttime && self.stat.mm == st.mm
    }

    /// Whether what was read of `maps` still holds for a process now showing `st`:
    /// same address space, and nothing mapped or unmapped since (same virtual size).
    fn maps_still_valid(&self, st: &ProcStat) -> bool {
        self.same_mm(st) && self.stat.vsize == st.vsize
    }
}

/// `/etc/passwd`, re-read only when it changes.
#[derive(Debug, Default)]
struct Passwd {
    key: Option<(u64, u64, i64, i64)>,
    names: HashMap<u32, String>,
}

impl Passwd {
    fn refresh(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let key = fs::metadata("/etc/passwd")
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        if key.is_some() && key == self.key {
            return;
        }
        self.key = key;
        self.names.clear();
        let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
        for l in text.lines() {
            let mut it = l.split(':');
            let (Some(name), Some(_pw), Some(uid)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if let Ok(uid) = uid.parse::<u32>() {
                // First entry wins, like `user_name`.
                self.names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }

    fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

/// Repeated process discovery for the agent's scan loop. Gives the same answers as
/// [`list_processes`] and [`scope_env`], reading less of `/proc` on each pass:
/// - `/proc/<pid>/stat` first: unscoped processes cost one small read per pass, and
///   kernel threads are skipped;
/// - `/proc/<pid>/maps` (the most expensive file: the kernel formats every mapping) is
///   read again only when the process is new, has exec'd, or its virtual size changed
///   (a library was mapped or unmapped);
/// - the environment is parsed once per address space (it is fixed at exec), and so
///   are the namespace links (the pid namespace is fixed at fork; a mount namespace
///   change without a following exec is not noticed);
/// - `/etc/passwd` and the agent's own namespaces are read once per pass, not per process;
/// - files are read into one reused buffer.
///
/// A process's cached facts are dropped when its pid disappears or its start time
/// changes (pid reused). See also [`Scanner::reusing_status`].
#[derive(Debug, Default)]
pub struct Scanner {
    cache: HashMap<i32, Cached>,
    passwd: Passwd,
    buf: Vec<u8>,
    len: usize,
    path: String,
    uncached_env: Option<ScopeEnv>,
    reuse_status: bool,
    /// Counters of the last pass (for tests and benchmarks).
    pub last_pass: PassCounts,
}

/// File reads of one [`Scanner::list`] pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    pub pids: usize,
    pub maps_read: usize,
    pub maps_cached: usize,
    /// Scoped processes whose `status` was not read again (see [`Scanner::reusing_status`]).
    pub status_reused: usize,
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// A scanner for the collector loop that also skips `/proc/<pid>/status` of a
    /// scoped process while its address space, parent and name are unchanged, taking
    /// the namespaced pid, uid and gid from the last read. The namespaced pid never
    /// changes; uid/gid lag a `setuid()` without exec until the next exec, rename or
    /// reparenting. The collector only uses name, command line, pids and namespaces;
    /// exact callers (`scope ps`, inspect) use [`Scanner::new`].
    pub fn reusing_status() -> Scanner {
        Scanner {
            reuse_status: true,
            ..Scanner::default()
        }
    }

    /// Read `/proc/<pid>/<file>` into the reusable buffer; the data is `self.data()`.
    /// (A plain read loop: `read_to_end` on a `File` also asks for its size and
    /// position first, two wasted syscalls on /proc files.)
    fn read(&mut self, pid: i32, file: &str) -> std::io::Result<()> {
        use std::fmt::Write as _;
        use std::io::Read;
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/{file}");
        self.len = 0;
        let mut f = fs::File::open(&self.path)?;
        loop {
            if self.len == self.buf.len() {
                let grow = self.buf.len().max(4096);
                self.buf.resize(self.buf.len() + grow, 0);
            }
            match f.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(()),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Every process (`all`), or only scoped ones, ascending by pid; like
    /// [`list_processes`]. Processes that vanish while listing are skipped.
    pub fn list(&mut self, all: bool) -> Vec<ProcessInfo> {
        let me = std::process::id() as i32;
        self.passwd.refresh();
        let self_mnt = ns_link("self", "mnt");
        let self_pid = ns_link("self", "pid");
        let mut out = Vec::new();
        let mut counts = PassCounts::default();
        let pids = all_pids();
        for &pid in &pids {
            if pid == me {
                continue;
            }
            counts.pids += 1;
            if self.read(pid, "stat").is_err() {
                continue;
            }
            let Some(st) = parse_proc_stat(self.data()) else {
                continue;
            };
            let cached = self.cache.get(&pid).filter(|c| c.maps_still_valid(&st));
            let libscope = if st.kernel_thread() {
                None
            } else if let Some(c) = cached {
                counts.maps_cached += 1;
                c.libscope.clone()
            } else {
                counts.maps_read += 1;
                // maps needs ptrace access: unreadable maps means we cannot tell; treat
                // as unscoped.
                let libscope = match self.read(pid, "maps") {
                    Ok(()) => libscope_in_maps(&String::from_utf8_lossy(self.data())),
                    Err(_) => None,
                };
                let fresh = Cached {
                    stat: st,
                    libscope: libscope.clone(),
                    env: None,
                    ns: None,
                    status: None,
                    maps_reads: 1,
                };
                let entry = match self.cache.remove(&pid) {
                    // Same address space (a mapping changed): what depends on the
                    // address space only still holds.
                    Some(c) if c.same_mm(&st) => Cached {
                        maps_reads: c.maps_reads + 1,
                        env: c.env,
                        ns: c.ns,
                        status: c.status,
                        ..fresh
                    },
                    Some(c) if c.stat.starttime == st.starttime => Cached {
                        maps_reads: c.maps_reads + 1,
                        ..fresh
                    },
                    _ => fresh,
                };
                self.cache.insert(pid, entry);
                libscope
            };
            if !all && libscope.is_none() {
                continue;
            }
            let reused = if self.reuse_status {
                self.cache
                    .get(&pid)
                    .filter(|c| c.same_mm(&st))
                    .and_then(|c| c.status.as_ref())
                    .filter(|(ppid, comm, _)| *ppid == st.ppid && *comm == st.comm_hash)
                    .map(|(_, _, f)| f.clone())
            } else {
                None
            };
            let status = match reused {
                Some(f) => {
                    counts.status_reused += 1;
                    f
                }
                None => {
                    if self.read(pid, "status").is_err() {
                        continue;
                    }
                    let f = parse_proc_status(&String::from_utf8_lossy(self.data()));
                    if self.reuse_status
                        && let Some(c) = self.cache.get_mut(&pid).filter(|c| c.same_mm(&st))
                    {
                        c.status = Some((st.ppid, st.comm_hash, f.clone()));
                    }
                    f
                }
            };
            let cmdline = match self.read(pid, "cmdline") {
                Ok(()) => split_nul(self.data()),
                Err(_) => Vec::new(),
            };
            // A process's pid namespace is fixed at fork and its mount namespace changes
            // in practice only across an exec (unshare/setns then exec), so both are
            // read once per address space.
            let cached_ns = self
                .cache
                .get(&pid)
                .filter(|c| c.same_mm(&st))
                .and_then(|c| c.ns);
            let (fm, fp) = match cached_ns {
                Some(ns) => ns,
                None => {
                    let p = pid.to_string();
                    let foreign = |me: &Option<PathBuf>, ns: &str| match (me, ns_link(&p, ns)) {
                        (Some(a), Some(b)) => *a != b,
                        _ => false,
                    };
                    let ns = (foreign(&self_mnt, "mnt"), foreign(&self_pid, "pid"));
                    if let Some(c) = self.cache.get_mut(&pid).filter(|c| c.same_mm(&st)) {
                        c.ns = Some(ns);
                    }
                    ns
                }
            };
            let passwd = &self.passwd;
            out.push(build_info(
                pid,
                status,
                cmdline,
                libscope,
                |st| passwd.name(st.uid),
                fm,
                fp,
            ));
        }
        // Forget processes that are gone (pids are sorted).
        self.cache.retain(|pid, _| pids.binary_search(pid).is_ok());
        self.last_pass = counts;
        out
    }

    /// How many times the maps of `pid` were read while it was alive (for tests and
    /// benchmarks); `None` for a process the last pass did not see.
    pub fn maps_reads(&self, pid: i32) -> Option<u32> {
        self.cache.get(&pid).map(|c| c.maps_reads)
    }

    /// The AppScope settings of a process, like [`scope_env`]: parsed once per address
    /// space of a process seen by the last [`Scanner::list`].
    pub fn scope_env(&mut self, pid: i32) -> Result<&ScopeEnv> {
        let cacheable = self.cache.get(&pid).is_some_and(|c| c.stat.mm_known());
        if !cacheable {
            // Unknown to the last pass, or its address space is hidden from us: no cache.
            return Ok(self.uncached_env.insert(scope_env(pid)?));
        }
        if self.cache.get(&pid).is_some_and(|c| c.env.is_none()) {
            let env = ScopeEnv::from_vars(&parse_environ(&read_proc(pid, "environ")?));
            if let Some(c) = self.cache.get_mut(&pid) {
                c.env = Some(env);
            }
        }
        self.cache
            .get(&pid)
            .and_then(|c| c.env.as_ref())
            .ok_or(Error::NoSuchProcess(pid))
    }
}

/// The AppScope settings from a process's environment.
pub fn scope_env(pid: i32) -> Result<ScopeEnv> {
    let env = parse_environ(&read_proc(pid, "environ")?);
    Ok(ScopeEnv::from_vars(&env))
}

/// Full environment of a process (for snapshots).
pub fn environ(pid: i32) -> Result<BTreeMap<String, String>> {
    Ok(parse_environ(&read_proc(pid, "environ")?))
}

/// A scoped process with its settings; `Err(NotScoped)` when libscope.so is not mapped.
pub fn scoped_process(pid: i32) -> Result<(ProcessInfo, ScopeEnv)> {
    let info = read_process(pid)?;
    if !info.scoped {
        return Err(Error::NotScoped(pid));
    }
    let env = scope_env(pid)?;
    Ok((info, env))
}

/// Thread ids of a process.
pub fn threads(pid: i32) -> Result<Vec<i32>> {
    let dir = proc_dir(pid).join("task");
    let mut tids: Vec<i32> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing_takes_namespaced_pid() {
        let t = "Name:\tpython3\nPPid:\t1\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\nThreads:\t3\nNSpid:\t4242\t7\n";
        let f = parse_proc_status(t);
        assert_eq!(f.name, "python3");
        assert_eq!(f.uid, 1000);
        assert_eq!(f.gid, 5);
        assert_eq!(f.nspids, vec![4242, 7]);
        assert_eq!(f.threads, 3);
    }

    #[test]
    fn maps_detection() {
        let m = "7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                 7f02-7f03 r-xp 00000000 08:01 124 /appscope/lib/libscope.so\n";
        assert_eq!(
            libscope_in_maps(m).as_deref(),
            Some("/appscope/lib/libscope.so")
        );
        assert_eq!(
            libscope_in_maps("7f00-7f01 r-xp 0 0:0 1 /usr/lib/libscopex.a\n"),
            None
        );
        assert_eq!(libscope_in_maps("7f00-7f01 rw-p 0 0:0 0\n"), None);
    }

    #[test]
    fn env_defaults_and_overrides() {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/bin".into());
        let d = ScopeEnv::from_vars(&env);
        assert_eq!(d.cmd_dir, PathBuf::from("/tmp"));
        assert_eq!(d.snapshot_dir, PathBuf::from("/tmp/appscope"));
        assert_eq!(d.status_dir, None);
        assert_eq!(d.summary_period, Duration::from_secs(10));
        env.insert("SCOPE_CMD_DIR".into(), "/x/cmd".into());
        env.insert("SCOPE_STATUS_DIR".into(), "/x/status".into());
        env.insert("SCOPE_SUMMARY_PERIOD".into(), "2".into());
        let s = ScopeEnv::from_vars(&env);
        assert_eq!(s.cmd_dir, PathBuf::from("/x/cmd"));
        assert_eq!(s.status_dir, Some(PathBuf::from("/x/status")));
        assert_eq!(s.summary_period, Duration::from_secs(2));
        assert_eq!(s.vars.len(), 3);
    }

    #[test]
    fn host_path_goes_through_proc_root_only_when_foreign() {
        assert_eq!(
            host_path(5, false, Path::new("/tmp/a")),
            PathBuf::from("/tmp/a")
        );
        assert_eq!(
            host_path(5, true, Path::new("/tmp/a")),
            PathBuf::from("/proc/5/root/tmp/a")
        );
    }

    #[test]
    fn stat_parsing_resumes_after_the_last_paren() {
        // Field 2 with spaces and parentheses; values at fields 9, 22, 23, 26, 28, 50, 51.
        let mut f: Vec<String> = (3..=52).map(|n| (n * 10).to_string()).collect();
        f[0] = "S".into();
        let text = format!("42 (a) b (c) {}\n", f.join(" "));
        let st = parse_proc_stat(text.as_bytes()).unwrap();
        assert_eq!(st.ppid, 40);
        assert_eq!(st.flags, 90);
        assert_eq!(st.starttime, 220);
        assert_eq!(st.vsize, 230);
        assert_eq!(st.mm, [260, 280, 500, 510]);
        let renamed = format!("42 (a) b (d) {}\n", f.join(" "));
        assert_ne!(
            parse_proc_stat(renamed.as_bytes()).unwrap().comm_hash,
            st.comm_hash
        );
        assert!(parse_proc_stat(b"42 (x) S 1 2 3").is_none(), "truncated");
        assert!(parse_proc_stat(b"garbage").is_none());
        // Our own: a user process with a visible address space.
        let me = parse_proc_stat(&fs::read("/proc/self/stat").unwrap()).unwrap();
        assert!(!me.kernel_thread());
        assert!(me.mm_known() && me.starttime > 0 && me.vsize > 0);
    }

    #[test]
    fn maps_cache_validity() {
        let st = ProcStat {
            comm_hash: 7,
            ppid: 1,
            flags: 0,
            starttime: 100,
            vsize: 1 << 20,
            mm: [1, 2, 3, 4],
        };
        let c = Cached {
            stat: st,
            libscope: None,
            env: None,
            ns: None,
            status: None,
            maps_reads: 1,
        };
        assert!(c.maps_still_valid(&st));
        let mapped = ProcStat {
            vsize: 2 << 20,
            ..st
        };
        assert!(c.same_mm(&mapped) && !c.maps_still_valid(&mapped), "dlopen");
        let exec = ProcStat {
            mm: [1, 9, 3, 4],
            ..st
        };
        assert!(!c.maps_still_valid(&exec), "execve");
        let other = ProcStat {
            starttime: 101,
            ..st
        };
        assert!(!c.maps_still_valid(&other), "pid reused");
        let hidden = ProcStat { mm: [0; 4], ..st };
        let c0 = Cached { stat: hidden, ..c };
        assert!(!c0.maps_still_valid(&hidden), "never cached when hidden");
    }

    fn wait_for(mut cond: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < end, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether `pid` is blocked in `read(fd, ...)`: `/proc/<pid>/syscall` starts with
    /// the system call number and its first argument while the process sleeps in it
    /// (`running` otherwise).
    fn blocked_in_read(pid: i32, fd: u64) -> bool {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
            return false;
        };
        let mut f = text.split_whitespace();
        let nr = f.next().and_then(|n| n.parse::<i64>().ok());
        let arg0 = f
            .next()
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
        nr == Some(libc::SYS_read) && arg0 == Some(fd)
    }

    /// The scanner answers like `read_process`/`scope_env`, reads a process's maps once
    /// while nothing changes, and again after it execs.
    #[test]
    fn scanner_matches_uncached_reads_and_sees_exec() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("/bin/sh")
            .args(["-c", "read x; exec /bin/sleep 30"])
            .env("SCOPE_SNAPSHOT_DIR", "/x/snap")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until the shell waits in its `read` of stdin, its own start-up (the dynamic
        // loader mapping libraries, malloc growing the heap) changes the virtual size
        // between passes, and a changed size rightly makes the scanner read maps again.
        wait_for(|| blocked_in_read(pid, 0));
        let mut sc = Scanner::new();
        let mut reusing = Scanner::reusing_status();
        let find = |sc: &mut Scanner| sc.list(true).into_iter().find(|p| p.pid == pid);
        let first = find(&mut sc).unwrap();
        assert_eq!(find(&mut reusing).unwrap(), first);
        assert_eq!(first, read_process(pid).unwrap());
        assert!(!first.scoped);
        assert_eq!(sc.maps_reads(pid), Some(1));
        assert_eq!(*sc.scope_env(pid).unwrap(), scope_env(pid).unwrap());
        assert_eq!(
            sc.scope_env(pid).unwrap().snapshot_dir,
            PathBuf::from("/x/snap")
        );
        for _ in 0..3 {
            assert_eq!(find(&mut sc).unwrap(), first);
            assert_eq!(find(&mut reusing).unwrap(), first);
            assert!(reusing.last_pass.status_reused > 0);
            assert_eq!(sc.last_pass.status_reused, 0, "exact scanner reads status");
        }
        assert_eq!(
            sc.maps_reads(pid),
            Some(1),
            "maps read once while unchanged"
        );
        assert!(sc.last_pass.maps_cached > 0);
        // Only scoped processes: the unscoped child is not listed.
        assert!(sc.list(false).iter().all(|p| p.pid != pid && p.scoped));

        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        wait_for(|| read_process(pid).is_ok_and(|p| p.comm == "sleep"));
        let after = find(&mut sc).unwrap();
        assert_eq!(after, read_process(pid).unwrap());
        assert_eq!(
            find(&mut reusing).unwrap(),
            after,
            "exec: status read again"
        );
        assert_eq!(after.cmdline, vec!["/bin/sleep", "30"]);
        assert_eq!(sc.maps_reads(pid), Some(2), "exec seen: maps read again");
        assert_eq!(*sc.scope_env(pid).unwrap(), scope_env(pid).unwrap());

        child.kill().unwrap();
        child.wait().unwrap();
        sc.list(true);
        assert_eq!(sc.maps_reads(pid), None, "dead process forgotten");
        assert!(sc.scope_env(pid).is_err());
    }

    #[test]
    fn reads_itself() {
        let me = read_process(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, me.nspid);
        assert!(!me.foreign_mntns);
        assert!(!me.cmdline.is_empty());
        assert!(matches!(
            read_process(i32::MAX),
            Err(Error::NoSuchProcess(_))
        ));
    }
}
