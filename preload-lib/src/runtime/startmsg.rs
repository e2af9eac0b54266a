//! The process-start message (`{"format":"ndjson","info":{"process",...}}`), sent first
//! on every new events connection and again after each config change.

use scope_config::Config;
use scope_config::effect::{ProcessInfo, start_message};

use super::procinfo::{self, ProcInfo};
use super::{LIBSCOPE_VERSION, Lazy};

struct Static {
    username: String,
    groupname: String,
    cgroup: String,
    machine_id: String,
    environment: Vec<(String, String)>,
}

/// Not a `OnceLock`: the background thread computes it (reading files) right at start,
/// and an application forking meanwhile must not leave its child waiting forever.
static STATIC: Lazy<Static> = Lazy::new();

fn statics(pi: &ProcInfo) -> &'static Static {
    STATIC.get_or_init(|| {
        let (username, groupname) =
            if (pi.uid, pi.gid) == (procinfo::get().uid, procinfo::get().gid) {
                procinfo::user_group_cached().clone()
            } else {
                procinfo::user_group(pi.uid, pi.gid)
            };
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .unwrap_or_default()
            .trim()
            .to_string();
        Static {
            username,
            groupname,
            cgroup,
            machine_id,
            environment: scope_environment(
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            ),
        }
    })
}

/// The `SCOPE_*` variables shown in `info.environment` (secrets left out).
pub fn scope_environment(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vars
        .filter(|(k, _)| k.starts_with("SCOPE_") && !k.contains("TOKEN") && !k.contains("KEY"))
        .collect();
    v.sort();
    v
}

/// AppScope's `info.process` for this process.
pub fn process_info(pi: &ProcInfo) -> ProcessInfo {
    let s = statics(pi);
    let mut id = format!("{}-{}-{}", pi.host, pi.procname, pi.cmd);
    if id.len() > 256 {
        let mut cut = 256;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
    }
    ProcessInfo {
        libscopever: LIBSCOPE_VERSION.to_string(),
        pid: pi.pid as i64,
        ppid: pi.ppid as i64,
        gid: pi.gid as i64,
        groupname: s.groupname.clone(),
        uid: pi.uid as i64,
        username: s.username.clone(),
        hostname: pi.host.clone(),
        procname: pi.procname.clone(),
        cmd: pi.cmd.clone(),
        id,
        cgroup: s.cgroup.clone(),
        machine_id: s.machine_id.clone(),
        uuid: pi.uuid.clone(),
    }
}

/// The start message as one NDJSON line (with its newline).
pub fn line(pi: &ProcInfo, cfg: &Config) -> Vec<u8> {
    let msg = start_message(cfg, &process_info(pi), &statics(pi).environment);
    let mut v = serde_json::to_vec(&msg).unwrap_or_default();
    v.push(b'\n');
    v
}
