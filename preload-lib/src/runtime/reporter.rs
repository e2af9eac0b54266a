//! The library's background thread: drains the transport queues continuously and, once
//! per summary period, flushes metrics, applies the command file, checks connections and
//! writes the status file.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scope_config::model::LogLevel;
use scope_config::status::{LastCommand, Rejected};
use scope_config::{Config, LoadInput, Loaded};

use super::{
    cmddir, config, endpoints, lifecycle, log, proc_info, procinfo, publish_config, startmsg,
    status,
};
use crate::transport;

/// Stack of the background thread (TLS handshakes and JSON need little).
const STACK: usize = 512 << 10;
/// While data flows, the thread comes back this often to batch writes.
const BUSY_WAIT: Duration = Duration::from_millis(2);

#[derive(Default)]
struct State {
    last_command: Option<LastCommand>,
    /// Last refused command file + reason, so a file left in place is logged once.
    last_refusal: Option<String>,
    /// Problems found while loading the config at start (logged once, and kept in the
    /// status file).
    load_diagnostics: Vec<String>,
    /// They were logged.
    diagnostics_logged: bool,
    /// The environment at start (`SCOPE_CONF_RELOAD` reloads with it).
    env: Vec<(String, String)>,
}

struct Reporter {
    state: Mutex<State>,
    /// Held while a period is processed (the exit flush must not run one concurrently).
    tick: Mutex<()>,
}

static REPORTER: super::Lazy<Reporter> = super::Lazy::new();

fn reporter() -> &'static Reporter {
    REPORTER.get_or_init(|| Reporter {
        state: Mutex::new(State::default()),
        tick: Mutex::new(()),
    })
}

fn state() -> MutexGuard<'static, State> {
    reporter().state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads the config at start from the environment (read once: `SCOPE_*` and `HOME`, see
/// [`scope_env`]) and the config file, and keeps what the loader reported (and the
/// environment, for reloads).
pub(crate) fn load_at_start() -> Loaded {
    let env = scope_env();
    let loaded = reload_with(&env, None);
    set_load_diagnostics(&loaded, env);
    loaded
}

fn set_load_diagnostics(loaded: &Loaded, env: Vec<(String, String)>) {
    let mut s = state();
    s.load_diagnostics = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    s.env = env;
}

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

/// `SCOPE_*` and `HOME` from the environment, read directly (the names are checked
/// before anything is copied: a process may have hundreds of variables).
fn scope_env() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // SAFETY: `environ` is the process environment, a NULL-terminated array of
    // NUL-terminated strings; we are in the constructor (single-threaded) or a test.
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return out;
        }
        while !(*p).is_null() {
            let e = std::ffi::CStr::from_ptr(*p).to_bytes();
            p = p.add(1);
            if !(e.starts_with(b"SCOPE_") || e.starts_with(b"HOME=")) {
                continue;
            }
            let Some(eq) = e.iter().position(|b| *b == b'=') else {
                continue;
            };
            if let (Ok(k), Ok(v)) = (
                std::str::from_utf8(&e[..eq]),
                std::str::from_utf8(&e[eq + 1..]),
            ) {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// In a forked child: fresh state (locks of the parent's thread may be held).
pub(crate) fn after_fork_child() {
    let old = reporter();
    // The child's config is the parent's: same environment, same problems (already
    // logged by the parent).
    let (env, load_diagnostics) = old
        .state
        .try_lock()
        .map(|s| (s.env.clone(), s.load_diagnostics.clone()))
        .unwrap_or_default();
    REPORTER.set(Reporter {
        state: Mutex::new(State {
            env,
            load_diagnostics,
            diagnostics_logged: true,
            ..State::default()
        }),
        tick: Mutex::new(()),
    });
}

/// Fault signals stay deliverable on our thread (a fault there must be reported as one).
const SYNC_SIGNALS: [libc::c_int; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The mask of the background thread: every signal blocked except the fault signals, so
/// the application's signals (SIGCHLD, SIGQUIT, SIGTERM, SIGALRM...) are never delivered
/// to our thread. Programs that block signals and wait in `sigsuspend`/`sigwait` (nginx's
/// master) depend on that.
fn thread_mask() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in SYNC_SIGNALS {
            libc::sigdelset(&mut set, s);
        }
        // Crash capture reads every thread's registers with this signal: a thread that
        // blocks it appears in cores without registers.
        libc::sigdelset(&mut set, crate::crash::collect_signal());
        set
    }
}

/// Starts the background thread. False when the thread cannot be created. The thread is
/// created with the application's signals blocked (it inherits the mask in effect here).
pub(crate) fn spawn() -> bool {
    reporter();
    let mask = thread_mask();
    // SAFETY: pthread_sigmask with valid sets; the old mask is restored right after.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let masked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask, &mut old) } == 0;
    let ok = std::thread::Builder::new()
        .name("libscope".into())
        .stack_size(STACK)
        .spawn(run)
        .is_ok();
    if masked {
        // SAFETY: restoring the caller's mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    ok
}

/// RFC 3339 UTC now.
pub fn rfc3339_now() -> String {
    status::rfc3339(procinfo::now_unix())
}

fn period_of(cfg: &Config) -> Duration {
    Duration::from_secs(u64::from(cfg.libscope.summaryperiod.max(1)))
}

/// Creates the command and status directories the config names (`mkdir -p`, as the
/// process's own user), so a fresh emptyDir or a new `scope run` directory works without
/// anyone preparing it. Failures are logged, never fatal.
///
/// The directory itself is made world-writable (0777, like the emptyDir it usually
/// lives in): the processes of one tree may not share a user. nginx, Apache or
/// PostgreSQL start as root and fork workers that switch to an unprivileged user; a
/// worker must still replace its status file (which it may have first written as root,
/// before the switch, hence no sticky bit) and take its command file. Command files stay
/// safe in a shared directory: one owned by neither root nor the process's user is
/// refused. Missing parents are created 0755.
fn ensure_dirs(cfg: &Config) {
    let dirs = [
        Some(cfg.libscope.commanddir.as_path()),
        cfg.status_dir.as_deref(),
    ];
    for dir in dirs.into_iter().flatten() {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            continue;
        }
        if let Err(e) = create_shared_dir(dir) {
            log(
                LogLevel::Warning,
                &format!("cannot create {}: {e}", dir.display()),
            );
        }
    }
}

/// `mkdir -p dir`, the last component 0777 whatever the umask.
fn create_shared_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o777).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)),
        // Another process of the tree created it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn run() {
    let mask = thread_mask();
    // SAFETY: setting this thread's own mask (already inherited; this makes it certain).
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) };
    super::mark_thread_internal();
    super::set_library_tid();
    transport::set_worker(std::thread::current());
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // First the destinations and the start message, then connect and send at once:
        // a short-lived process gets its start message out before it exits.
        let cfg = config();
        transport::configure(
            endpoints(&cfg),
            Some(startmsg::line(proc_info(), &cfg)),
            false,
        );
        transport::service(Instant::now() + Duration::from_millis(50));
        // Then what the constructor left to this thread.
        super::configure_crash_fully();
        let diags = {
            let mut s = state();
            if s.diagnostics_logged {
                Vec::new()
            } else {
                s.diagnostics_logged = true;
                s.load_diagnostics.clone()
            }
        };
        for d in diags {
            log(LogLevel::Warning, &format!("config: {d}"));
        }
        ensure_dirs(&cfg);
        write_status();
    }));
    let mut next = Instant::now() + period_of(&config());
    loop {
        let r = catch_unwind(AssertUnwindSafe(|| {
            if lifecycle::main_exited() {
                // Returns only while an application thread is left.
                lifecycle::check();
            }
            let now = Instant::now();
            if now >= next {
                tick();
                next = Instant::now() + period_of(&config());
            }
            let more = transport::service(Instant::now() + Duration::from_millis(50));
            if more {
                std::thread::park_timeout(BUSY_WAIT);
                return;
            }
            let mut wake = next;
            if let Some(t) = transport::next_attempt() {
                wake = wake.min(t);
            }
            if lifecycle::main_exited() {
                wake = wake.min(Instant::now() + lifecycle::FAST_POLL);
            }
            let now = Instant::now();
            if wake > now && transport::go_idle() {
                std::thread::park_timeout(wake - now);
                transport::wake();
            }
        }));
        if r.is_err() {
            // A bug in one iteration must not kill reporting; do not spin on it.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Loads the config from `env` (the `SCOPE_*` variables of the process start, looked up
/// without scanning the environment for each of the hundred names the loader asks for;
/// other names, which values may expand as `$VAR`, come from the environment) and the
/// config file (`path`, or the one the environment names). `SCOPE_TAG_*` become tags.
fn reload_with(env: &[(String, String)], path: Option<PathBuf>) -> Loaded {
    let lookup = |n: &str| {
        if n.starts_with("SCOPE_") || n == "HOME" {
            env.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        } else {
            std::env::var(n).ok()
        }
    };
    let tag_vars = env
        .iter()
        .filter(|(k, _)| k.starts_with("SCOPE_TAG_"))
        .map(|(k, _)| k.clone())
        .collect();
    scope_config::load_with(&LoadInput {
        env: &lookup,
        tag_vars,
        identity: None,
        path_override: path,
    })
}

/// One summary period.
fn tick() {
    let r = reporter();
    let t = r.tick.lock().unwrap_or_else(|e| e.into_inner());
    let _ = catch_unwind(crate::metrics::flush_period);
    transport::check_peers();
    ensure_dirs(&config());
    apply_command_file();
    write_status();
    drop(t);
    // Once per period: a main thread that ended without `pthread_exit` (which wakes this
    // thread at once) is noticed here.
    lifecycle::check();
}

fn apply_command_file() {
    let cfg = config();
    let pi = proc_info();
    let env = state().env.clone();
    // SAFETY: trivial syscall.
    let uid = unsafe { libc::geteuid() };
    let reload = |p: Option<PathBuf>| reload_with(&env, p);
    let Some(o) = cmddir::poll(&cfg.libscope.commanddir, pi.pid, uid, &cfg, &reload) else {
        return;
    };
    let at = rfc3339_now();
    let mut rejected: Vec<Rejected> = o.rejected.iter().map(Rejected::from).collect();
    if o.refused {
        let key = format!("{}: {:?}", o.file.display(), o.rejected);
        let mut s = state();
        if s.last_refusal.as_ref() == Some(&key) {
            return;
        }
        s.last_refusal = Some(key);
        drop(s);
        for r in &o.rejected {
            log(
                LogLevel::Warning,
                &format!("command file {}: {}", o.file.display(), r.reason),
            );
        }
    } else {
        state().last_refusal = None;
        for r in &o.rejected {
            log(
                LogLevel::Warning,
                &format!(
                    "command file {} line {}: {}",
                    o.file.display(),
                    r.line,
                    r.reason
                ),
            );
        }
    }
    if let Some(newcfg) = o.config
        && publish_config(newcfg, false)
    {
        log(
            LogLevel::Info,
            &format!(
                "command file {}: applied {}",
                o.file.display(),
                o.applied.join(", ")
            ),
        );
    }
    if o.snapshot {
        let _g = super::internal();
        match catch_unwind(crate::crash::snapshot_now) {
            Ok(Ok(dir)) => log(LogLevel::Info, &format!("snapshot written to {dir}")),
            Ok(Err(e)) => rejected.push(Rejected {
                line: 0,
                reason: format!("SCOPE_CMD_SNAPSHOT: {e}"),
            }),
            Err(_) => rejected.push(Rejected {
                line: 0,
                reason: "SCOPE_CMD_SNAPSHOT: snapshot failed".into(),
            }),
        }
    }
    state().last_command = Some(LastCommand {
        file: o.file.display().to_string(),
        applied: o.applied,
        rejected,
        at,
    });
}

fn write_status() {
    let cfg = config();
    let links = transport::status();
    let (last, problems) = {
        let s = state();
        (s.last_command.clone(), s.load_diagnostics.clone())
    };
    if let Err(e) = status::write(
        proc_info(),
        &cfg,
        &links,
        last.as_ref(),
        &problems,
        procinfo::now_unix(),
        false,
    ) {
        let dir = cfg
            .status_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        log(LogLevel::Warning, &format!("status file in {dir}: {e}"));
    }
}

/// Process exit: a last metrics period and a bounded flush, then a final status.
///
/// Nothing here waits on the network: the flush writes only to connected links and to
/// local destinations (see [`transport::can_deliver_at_exit`]); a destination the
/// background thread has not connected yet gets nothing. The last period is computed
/// only when it can be delivered. Waits are bounded by [`super::EXIT_FLUSH`] and happen
/// only while the background thread holds a lock for a short write or a period.
#[cfg_attr(test, allow(dead_code))]
pub(crate) fn at_exit() {
    let deadline = Instant::now() + super::EXIT_FLUSH;
    let cfg = config();
    let eps = endpoints(&cfg);
    if !transport::is_configured() && eps.iter().any(|e| e.exit_connectable()) {
        // The background thread has not run yet: set the destinations ourselves. The
        // start message is built below only if the events link connects.
        transport::configure(eps, None, false);
    }
    let r = reporter();
    if cfg.metric.enable && transport::can_deliver_at_exit(transport::Channel::Metrics) {
        loop {
            match r.tick.try_lock() {
                Ok(_t) => {
                    let _ = catch_unwind(crate::metrics::flush_period);
                    break;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(transport::EXIT_POLL),
                Err(_) => break,
            }
        }
    }
    transport::flush_until(deadline, &|| startmsg::line(proc_info(), &cfg));
    if cfg.status_dir.is_some()
        && let Ok(s) = r.state.try_lock()
        && let Some(links) = transport::try_status()
    {
        let (last, problems) = (s.last_command.clone(), s.load_diagnostics.clone());
        drop(s);
        let _ = status::write(
            proc_info(),
            &cfg,
            &links,
            last.as_ref(),
            &problems,
            procinfo::now_unix(),
            true,
        );
    }
}
