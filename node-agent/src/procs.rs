//! Process discovery through `/proc`: which processes are scoped (libscope.so in their
//! maps), host and namespaced pids, owner, command line, and the AppScope directories
//! from their environment, resolved to host paths through `/proc/<pid>/root`.

use std::collections::BTreeMap;
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
    let st = parse_proc_status(&status);
    let cmdline = split_nul(&read_proc(pid, "cmdline").unwrap_or_default());
    // maps needs ptrace access: unreadable maps means we cannot tell; treat as unscoped.
    let maps = read_proc(pid, "maps").unwrap_or_default();
    let libscope = libscope_in_maps(&String::from_utf8_lossy(&maps));
    let me = "self";
    let p = pid.to_string();
    let foreign = |ns: &str| match (ns_link(me, ns), ns_link(&p, ns)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    Ok(ProcessInfo {
        pid,
        nspid: st.nspids.last().copied().unwrap_or(pid),
        ppid: st.ppid,
        uid: st.uid,
        gid: st.gid,
        user: user_name(st.uid),
        comm: st.name,
        cmdline,
        scoped: libscope.is_some(),
        libscope,
        foreign_mntns: foreign("mnt"),
        foreign_pidns: foreign("pid"),
    })
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
/// listing are skipped.
pub fn list_processes(all: bool) -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter_map(|pid| read_process(pid).ok())
        .filter(|p| all || p.scoped)
        .collect()
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
