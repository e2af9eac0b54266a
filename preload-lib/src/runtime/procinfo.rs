//! Identity of the scoped process (pid, names, command line, host), computed once at
//! init and again in a forked child. Only cheap syscalls and /proc reads.

use std::sync::atomic::{AtomicPtr, Ordering};

/// What the library knows about the process it is loaded in.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Basename of argv[0] (falls back to /proc/self/comm).
    pub procname: String,
    /// The command line, arguments joined with spaces.
    pub cmd: String,
    /// gethostname().
    pub host: String,
    /// Random per-process identifier (changes in a forked child).
    pub uuid: String,
    /// Unix time (seconds, fractional) the library started in this process.
    pub started: f64,
}

static INFO: AtomicPtr<ProcInfo> = AtomicPtr::new(std::ptr::null_mut());

fn read_small(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Command line from /proc/self/cmdline: (argv[0] basename, joined args).
pub fn parse_cmdline(raw: &[u8]) -> (String, String) {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    (name, args.join(" "))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buffer valid for its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A random RFC 4122 version-4 UUID (getrandom(2), falling back to time and pid).
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    // SAFETY: raw getrandom syscall into a local buffer (no glibc 2.25 symbol needed).
    let n = unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), b.len(), 0) };
    if n != 16 {
        let t = now_unix();
        let seed = (t * 1e9) as u64 ^ ((unsafe { libc::getpid() } as u64) << 32);
        b[..8].copy_from_slice(&seed.to_le_bytes());
        b[8..].copy_from_slice(
            &seed
                .rotate_left(17)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_le_bytes(),
        );
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Seconds since the epoch.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn compute() -> ProcInfo {
    let (mut procname, cmd) = parse_cmdline(&read_small("/proc/self/cmdline"));
    if procname.is_empty() {
        procname = String::from_utf8_lossy(&read_small("/proc/self/comm"))
            .trim()
            .to_string();
    }
    // SAFETY: trivial syscalls.
    let (pid, ppid, uid, gid) = unsafe {
        (
            libc::getpid() as u32,
            libc::getppid() as u32,
            libc::getuid(),
            libc::getgid(),
        )
    };
    ProcInfo {
        pid,
        ppid,
        uid,
        gid,
        procname,
        cmd,
        host: hostname(),
        uuid: new_uuid(),
        started: now_unix(),
    }
}

/// Computes and publishes the process info (at init).
pub fn init() {
    if INFO.load(Ordering::Acquire).is_null() {
        let p = Box::into_raw(Box::new(compute()));
        if INFO
            .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: p was never published.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// In a forked child: new pid, ppid, uuid and start time. The parent's copy is leaked
/// (other threads of the parent may have held references; in the child they are gone,
/// but `&'static` references handed out earlier stay valid).
pub fn after_fork_child() {
    let old = get();
    // SAFETY: trivial syscalls.
    let (pid, ppid) = unsafe { (libc::getpid() as u32, libc::getppid() as u32) };
    // The parent is the process that forked us, whose pid is the one we had until now:
    // getppid() races the parent's exit (daemon() exits right after fork, and the child
    // is then reparented to init or a subreaper), so it is only the fallback.
    let ppid = if old.pid != 0 && old.pid != pid {
        old.pid
    } else {
        ppid
    };
    let mut n = old.clone();
    n.pid = pid;
    n.ppid = ppid;
    n.uuid = new_uuid();
    n.started = now_unix();
    INFO.store(Box::into_raw(Box::new(n)), Ordering::Release);
}

static EMPTY: std::sync::OnceLock<ProcInfo> = std::sync::OnceLock::new();

/// The process info (computed on first use if init has not run).
pub fn get() -> &'static ProcInfo {
    let p = INFO.load(Ordering::Acquire);
    if p.is_null() {
        init();
    }
    let p = INFO.load(Ordering::Acquire);
    // SAFETY: INFO only holds leaked Boxes that are never freed.
    match unsafe { p.as_ref() } {
        Some(i) => i,
        None => EMPTY.get_or_init(compute),
    }
}

/// Looks a numeric id up in an /etc/passwd- or /etc/group-style file (no NSS, so no
/// dlopen inside the library). Pure apart from the read.
pub fn name_for_id(file_content: &str, id: u32) -> Option<String> {
    file_content.lines().find_map(|l| {
        let mut it = l.split(':');
        let name = it.next()?;
        let _pw = it.next()?;
        let num: u32 = it.next()?.parse().ok()?;
        (num == id).then(|| name.to_string())
    })
}

/// User and group names of this process's uid and gid, read once (the start message and
/// the `proc.start` metric both need them).
pub fn user_group_cached() -> &'static (String, String) {
    // Fork-safe (see `Lazy`): computed by the background thread at start.
    static NAMES: super::Lazy<(String, String)> = super::Lazy::new();
    NAMES.get_or_init(|| {
        let pi = get();
        user_group(pi.uid, pi.gid)
    })
}

/// User and group names of the process (from /etc/passwd and /etc/group; the number as
/// text when not listed).
pub fn user_group(uid: u32, gid: u32) -> (String, String) {
    let p = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let g = std::fs::read_to_string("/etc/group").unwrap_or_default();
    (
        name_for_id(&p, uid).unwrap_or_else(|| uid.to_string()),
        name_for_id(&g, gid).unwrap_or_else(|| gid.to_string()),
    )
}

/// Children of the process (the `proc.child` metric): the sum of the `children` files of
/// its threads. `status` is the text of `/proc/self/status`, which the caller has read.
///
/// A process without children (most short-lived ones) is told by one `waitid` that
/// reaps nothing, without touching `/proc/self/task`. When the process is its (live)
/// main thread plus the library's thread, only the main thread's file is read, without
/// listing `/proc/self/task`: the library's thread never
/// forks, and a child's parent thread exiting hands it to the first live thread of the
/// group, the main thread here, so the library's thread has none. Listing the directory
/// (or opening anything under the library thread's entry) would create procfs dentries
/// for the library's thread, and when the process exits the kernel's invalidation of
/// them races the parent's `wait()`, costing the parent ~1.5 ms of system time per
/// process (measured on Linux 6.18).
pub fn children_count(status: &str) -> u64 {
    if !may_have_children() {
        return 0;
    }
    if let Some(leader) = only_leader_and_library_thread(status, super::library_tid()) {
        return children_of(leader);
    }
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .map(|t| pids_in(&t.path().join("children")))
                .sum()
        })
        .unwrap_or(0)
}

/// False when the process certainly has no child, of any of its threads and in any
/// state: `waitid(P_ALL, WNOHANG | WNOWAIT)` fails with ECHILD (it waits for the children
/// of every thread of the group and consumes nothing). A process that traces others
/// (whose tracees count for waitid) answers true: the caller then reads /proc.
fn may_have_children() -> bool {
    use crate::interpose::real::{errno, set_errno};
    // errno is restored: this runs on application threads, e.g. at exit.
    let saved = errno();
    // SAFETY: waitid with a local siginfo out-parameter and no rusage.
    let none = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::syscall(
            libc::SYS_waitid,
            libc::P_ALL,
            0,
            &mut info as *mut libc::siginfo_t,
            libc::WNOHANG
                | libc::WNOWAIT
                | libc::WEXITED
                | libc::WSTOPPED
                | libc::WCONTINUED
                | libc::__WALL,
            std::ptr::null_mut::<libc::rusage>(),
        );
        r == -1 && errno() == libc::ECHILD
    };
    set_errno(saved);
    !none
}

/// The main thread's id when `status` says the process has two threads, the main thread
/// is alive (not a zombie after `pthread_exit`) and the library's thread runs (so the
/// other thread is the library's: it is never the main thread).
fn only_leader_and_library_thread(status: &str, library_tid: Option<i32>) -> Option<i32> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let threads = field("Threads:")?.parse::<u32>().ok()?;
    let state = field("State:")?;
    let lib = library_tid?;
    // SAFETY: trivial syscall.
    let pid = unsafe { libc::getpid() };
    let alive = !(state.starts_with('Z') || state.starts_with('X'));
    (threads == 2 && alive && lib != pid).then_some(pid)
}

/// Number of children of thread `tid` of this process.
fn children_of(tid: i32) -> u64 {
    pids_in(std::path::Path::new(&format!(
        "/proc/self/task/{tid}/children"
    )))
}

/// Number of pids in a `children` file (0 when unreadable).
fn pids_in(children: &std::path::Path) -> u64 {
    std::fs::read_to_string(children)
        .map(|s| s.split_whitespace().count() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_fast_path_only_for_leader_plus_library_thread() {
        let pid = std::process::id() as i32;
        let st = |threads: u32, state: &str| {
            format!("Name:\tx\nState:\t{state}\nTgid:\t{pid}\nThreads:\t{threads}\n")
        };
        let lib = Some(pid + 1);
        assert_eq!(
            only_leader_and_library_thread(&st(2, "S (sleeping)"), lib),
            Some(pid)
        );
        assert_eq!(
            only_leader_and_library_thread(&st(2, "R (running)"), lib),
            Some(pid)
        );
        // More threads, no library thread, a zombie main thread, unreadable status.
        assert_eq!(
            only_leader_and_library_thread(&st(3, "S (sleeping)"), lib),
            None
        );
        assert_eq!(
            only_leader_and_library_thread(&st(2, "S (sleeping)"), None),
            None
        );
        assert_eq!(
            only_leader_and_library_thread(&st(2, "Z (zombie)"), lib),
            None
        );
        assert_eq!(
            only_leader_and_library_thread(&st(1, "S (sleeping)"), lib),
            None
        );
        assert_eq!(only_leader_and_library_thread("", lib), None);
    }

    #[test]
    fn children_of_counts_this_threads_children() {
        // SAFETY: trivial syscall.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        assert_eq!(children_of(tid), 0);
        let mut a = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let mut b = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(children_of(tid), 2);
        assert!(may_have_children());
        // The full listing sees them too (other tests' children may add to it).
        assert!(children_count("") >= 2);
        let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    }

    #[test]
    fn cmdline_parsing() {
        assert_eq!(
            parse_cmdline(b"/usr/bin/python3\0-c\0print(1)\0"),
            (
                "python3".to_string(),
                "/usr/bin/python3 -c print(1)".to_string()
            )
        );
        assert_eq!(parse_cmdline(b""), (String::new(), String::new()));
    }

    #[test]
    fn uuid_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uuid());
    }

    #[test]
    fn passwd_lookup() {
        let f = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\n";
        assert_eq!(name_for_id(f, 0).as_deref(), Some("root"));
        assert_eq!(name_for_id(f, 65534).as_deref(), Some("nobody"));
        assert_eq!(name_for_id(f, 5), None);
    }
}
