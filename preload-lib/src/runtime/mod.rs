//! Library runtime: constructor, config in effect (swapped atomically on change),
//! re-entry guard, the background thread (reporter + transport drain), fork and exit.
//!
//! Start-up is cheap and cannot deadlock: the constructor reads the environment and (if
//! one exists) the config file, publishes the config, calls the modules' `on_config`
//! hooks and starts one background thread. It never waits for that thread, takes no lock
//! the loader could hold, and catches every panic; if anything fails the library stays a
//! pass-through (`runtime::is_active()` is false and the interposers do nothing).

pub mod cmddir;
pub mod lifecycle;
pub mod procinfo;
pub mod reporter;
pub mod startmsg;
pub mod status;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use scope_config::Config;

pub use procinfo::ProcInfo;

use crate::transport::{self, Endpoint, TlsSettings};

/// Library version reported in start messages and status files.
pub const LIBSCOPE_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

// ---- re-entry guard ----------------------------------------------------------------

thread_local! {
    static INTERNAL: Cell<u32> = const { Cell::new(0) };
}

/// While alive, this thread's libc calls are the library's own: interposers must pass
/// them straight through (no events, no metrics, no recursion).
pub struct Internal(());

impl Drop for Internal {
    fn drop(&mut self) {
        let _ = INTERNAL.try_with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Enters an internal scope (nestable).
pub fn internal() -> Internal {
    let _ = INTERNAL.try_with(|c| c.set(c.get().saturating_add(1)));
    Internal(())
}

/// True inside an internal scope and on the library's own threads. Interposers check this
/// first. Cheap (one TLS read); during thread teardown it answers true (pass-through).
#[inline]
pub fn is_internal() -> bool {
    INTERNAL.try_with(|c| c.get() != 0).unwrap_or(true)
}

/// This thread's re-entry counter, for the interposers' fast path: one thread-local
/// lookup per call instead of one per check, enter and leave. The pointer is valid on
/// the calling thread for the duration of the call it was taken in.
#[inline]
pub fn internal_counter() -> *const Cell<u32> {
    INTERNAL.with(|c| c as *const Cell<u32>)
}

/// Marks the calling thread as the library's own for its whole life.
fn mark_thread_internal() {
    let _ = INTERNAL.try_with(|c| c.set(1 << 30));
}

/// Thread id of the library's background thread in this process (0: none yet).
static LIB_TID: AtomicI32 = AtomicI32::new(0);

/// Records the calling thread as the library's background thread.
fn set_library_tid() {
    // SAFETY: gettid has no preconditions (the syscall: glibc's wrapper needs 2.30).
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    LIB_TID.store(tid, Ordering::Release);
}

/// Thread id of the library's background thread in this process, if it runs.
pub(crate) fn library_tid() -> Option<i32> {
    match LIB_TID.load(Ordering::Acquire) {
        0 => None,
        t => Some(t),
    }
}

// ---- fork-safe lazy values --------------------------------------------------------------

/// A value computed on first use and kept for the life of the process (or until
/// [`Lazy::set`] replaces it), without a lock:
/// concurrent first callers each compute it and one result wins. Unlike `OnceLock`, a
/// process forked while another thread is computing it does not wait forever for a
/// thread that does not exist in the child: the child computes its own.
pub(crate) struct Lazy<T> {
    p: std::sync::atomic::AtomicPtr<T>,
}

impl<T: Send + Sync> Lazy<T> {
    pub(crate) const fn new() -> Lazy<T> {
        Lazy {
            p: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    pub(crate) fn get_or_init(&'static self, f: impl FnOnce() -> T) -> &'static T {
        let p = self.p.load(Ordering::Acquire);
        // SAFETY: only leaked Boxes are stored, never freed.
        if let Some(v) = unsafe { p.as_ref() } {
            return v;
        }
        let new = Box::into_raw(Box::new(f()));
        match self.p.compare_exchange(
            std::ptr::null_mut(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: `new` was just leaked and is now published.
            Ok(_) => unsafe { &*new },
            Err(existing) => {
                // SAFETY: `new` was never published; `existing` is a leaked Box.
                drop(unsafe { Box::from_raw(new) });
                unsafe { &*existing }
            }
        }
    }

    /// Replaces the value (in a forked child: fresh state). The old value is leaked, not
    /// freed: references to it may still be held.
    pub(crate) fn set(&'static self, v: T) {
        self.p.store(Box::into_raw(Box::new(v)), Ordering::Release);
    }
}

// ---- state ---------------------------------------------------------------------------

const UNINIT: u8 = 0;
const STARTING: u8 = 1;
const ACTIVE: u8 = 2;
/// Initialisation failed: pass-through only.
const DISABLED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static CONFIG: ArcSwapOption<Config> = ArcSwapOption::const_empty();
static GENERATION: AtomicU64 = AtomicU64::new(0);
static DEFAULT: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();

/// True once the library initialised and is reporting. False before init, after a
/// failed init (pass-through) and in processes where it was never started.
#[inline]
pub fn is_active() -> bool {
    STATE.load(Ordering::Acquire) == ACTIVE
}

/// Events or metrics are on in the config in effect. While they are both off (crash
/// capture only), every interposed I/O function is a pass-through: one load and branch,
/// then the real function, with no clock read, no fd-table work and no thread-local
/// lookup. Turning either on (a command file, a ScopeConfig) switches the wrappers on at
/// once; calls made before that were not recorded (descriptors opened meanwhile are
/// classified when first used).
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True while events or metrics are on (see [`RECORDING`]).
#[inline(always)]
pub fn is_recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The config in effect (cheap: one atomic load plus a reference count). Before init it
/// is AppScope's defaults.
pub fn config() -> Arc<Config> {
    match CONFIG.load_full() {
        Some(c) => c,
        None => DEFAULT.get_or_init(|| Arc::new(Config::default())).clone(),
    }
}

/// Incremented on every config change; lets hot paths cache derived settings.
#[inline]
pub fn config_generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The process identity (pid, ppid, procname, cmd, host...). The reference stays valid
/// forever; after fork the child gets a new one from the next call.
pub fn proc_info() -> &'static ProcInfo {
    procinfo::get()
}

/// Replaces the config in effect and tells every module. Runs on the background thread
/// (or the constructor). Returns false when `new` equals the current config.
pub(crate) fn publish_config(new: Config, first: bool) -> bool {
    let cur = CONFIG.load_full();
    if !first && cur.as_deref() == Some(&new) {
        return false;
    }
    let new = Arc::new(new);
    CONFIG.store(Some(new.clone()));
    GENERATION.fetch_add(1, Ordering::AcqRel);
    // At start (the constructor) crash capture gets its settings without the text of the
    // config in effect (~250k instructions to build): the background thread adds it
    // (`configure_crash_fully`). On a change (background thread) it gets everything.
    run_hooks(&new, Some(!first));
    if !first {
        // The background thread: reconnect what changed, resend the start message.
        transport::configure(
            endpoints(&new),
            Some(startmsg::line(proc_info(), &new)),
            true,
        );
    }
    true
}

/// Tells every module about `cfg`. `crash`: `None` leaves crash capture as it is,
/// `Some(text)` configures it, with the config-in-effect text for crash bundles when
/// `text` (expensive: kept off the application's threads).
fn run_hooks(cfg: &Config, crash: Option<bool>) {
    let _g = internal();
    let recording = cfg.event.enable || cfg.metric.enable;
    if RECORDING.swap(recording, Ordering::AcqRel) != recording && recording {
        // Opens and closes made while nothing was recorded were not seen.
        crate::interpose::fdtable::forget_all();
    }
    let _ = catch_unwind(AssertUnwindSafe(|| crate::metrics::on_config(cfg)));
    let _ = catch_unwind(AssertUnwindSafe(|| crate::events::on_config(cfg)));
    if let Some(text) = crash {
        let settings = crash_settings_with(cfg, text);
        let _ = catch_unwind(AssertUnwindSafe(|| crate::crash::configure(&settings)));
        CRASH_FULL.store(text, Ordering::Release);
    }
}

/// Gives crash capture the full settings of the config in effect, including the text of
/// the config in effect (the background thread does this first thing after start and
/// after fork).
pub(crate) fn configure_crash_fully() {
    if CRASH_FULL.load(Ordering::Acquire) {
        return;
    }
    let _g = internal();
    let settings = crash_settings(&config());
    let _ = catch_unwind(AssertUnwindSafe(|| crate::crash::configure(&settings)));
    CRASH_FULL.store(true, Ordering::Release);
}

/// Crash capture has the full settings of the config in effect (kept across fork: the
/// child's config is the parent's).
static CRASH_FULL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What crash capture needs from the config.
pub fn crash_settings(cfg: &Config) -> crate::crash::CrashSettings {
    crash_settings_with(cfg, true)
}

fn crash_settings_with(cfg: &Config, text: bool) -> crate::crash::CrashSettings {
    crate::crash::CrashSettings {
        backtrace: cfg.libscope.snapshot.backtrace,
        coredump: cfg.libscope.snapshot.coredump,
        snapshot_dir: cfg.snapshot_dir.to_string_lossy().into_owned(),
        core_maxsize: cfg.core_maxsize,
        config_in_effect: if text {
            cfg.config_in_effect().to_string()
        } else {
            String::new()
        },
        libscope_version: LIBSCOPE_VERSION.to_string(),
    }
}

/// Converts the config's transport into a destination. Invalid or incomplete transports
/// become `Disabled` (reported through the status file's failure details).
pub fn endpoint_of(t: &scope_config::transport::Transport) -> Endpoint {
    use scope_config::transport::{Endpoint as E, FileTarget, UnixAddr};
    let tls = t.tls.enable.then(|| TlsSettings {
        validate_server: t.tls.validateserver,
        ca_cert_path: t.tls.cacertpath.clone(),
    });
    match t.endpoint() {
        Ok(E::Tcp { host, port }) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Endpoint::Tcp { host, port, tls },
            _ => Endpoint::Disabled,
        },
        Ok(E::Udp { host, port }) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Endpoint::Udp { host, port },
            _ => Endpoint::Disabled,
        },
        Ok(E::Unix(UnixAddr::Path(p))) => Endpoint::Unix {
            path: p.to_string_lossy().into_owned(),
            abstract_name: false,
        },
        Ok(E::Unix(UnixAddr::Abstract(n))) => Endpoint::Unix {
            path: n,
            abstract_name: true,
        },
        Ok(E::File(FileTarget::Path(p))) => Endpoint::File {
            path: p.to_string_lossy().into_owned(),
        },
        Ok(E::File(FileTarget::Stdout)) => Endpoint::Stdout,
        Ok(E::File(FileTarget::Stderr)) => Endpoint::Stderr,
        Ok(E::Edge) => Endpoint::Unix {
            path: std::env::var("SCOPE_CRIBL_EDGE_PATH")
                .ok()
                .filter(|p| p.starts_with('/'))
                .unwrap_or_else(|| transport::endpoint::EDGE_DEFAULT_PATH.to_string()),
            abstract_name: false,
        },
        Err(_) => Endpoint::Disabled,
    }
}

/// The destinations of the metrics, events and log channels under `cfg`.
pub fn endpoints(cfg: &Config) -> [Endpoint; 3] {
    let m = if cfg.metric.enable {
        endpoint_of(cfg.metric_transport())
    } else {
        Endpoint::Disabled
    };
    let e = if cfg.event.enable {
        endpoint_of(cfg.event_transport())
    } else {
        Endpoint::Disabled
    };
    let l = if cfg.libscope.log.level == scope_config::model::LogLevel::None {
        Endpoint::Disabled
    } else {
        endpoint_of(&cfg.libscope.log.transport)
    };
    [m, e, l]
}

// ---- library log -----------------------------------------------------------------------

/// Writes one line to the library log (`SCOPE_LOG_DEST`) when `level` passes
/// `SCOPE_LOG_LEVEL`. Never blocks.
pub fn log(level: scope_config::model::LogLevel, msg: &str) {
    let cfg = config();
    let min = cfg.libscope.log.level;
    if min == scope_config::model::LogLevel::None || level < min {
        return;
    }
    let pi = proc_info();
    let line = format!(
        "[{}] Scope: {}({}): [{}] {}\n",
        reporter::rfc3339_now(),
        pi.procname,
        pi.pid,
        level.as_str(),
        msg
    );
    transport::send_log(line.into_bytes());
}

// ---- constructor, fork, exit ----------------------------------------------------------

#[cfg(not(target_env = "musl"))]
unsafe extern "C" {
    /// glibc's registration behind pthread_atfork (exported since GLIBC_2.3.2; calling it
    /// directly avoids depending on libpthread_nonshared on old glibc).
    fn __register_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
        dso_handle: *mut libc::c_void,
    ) -> libc::c_int;
}

/// Registers `child` to run in the child after fork(): through glibc's `__register_atfork`,
/// or musl's `pthread_atfork` (musl has no `__register_atfork`; its `pthread_atfork` is in
/// libc.so itself).
///
/// # Safety
/// `child` must be safe to run in a forked child (async-signal-safe in spirit).
unsafe fn register_atfork_child(child: unsafe extern "C" fn()) {
    #[cfg(not(target_env = "musl"))]
    // SAFETY: plain extern "C" fn with no captured state; no DSO handle (never unloaded).
    unsafe {
        __register_atfork(None, None, Some(child), std::ptr::null_mut())
    };
    #[cfg(target_env = "musl")]
    // SAFETY: as above.
    unsafe {
        libc::pthread_atfork(None, None, Some(child))
    };
}

/// Full initialisation (the constructor calls it; tests may too). Idempotent.
pub fn init() {
    if STATE
        .compare_exchange(UNINIT, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let _g = internal();
    let ok = catch_unwind(AssertUnwindSafe(|| {
        procinfo::init();
        transport::init();
        transport::fds::pregrow_fd_table();
        let loaded = reporter::load_at_start();
        publish_config(loaded.config, true);
        let _ = catch_unwind(AssertUnwindSafe(crate::interpose::init));
        // SAFETY: registering plain extern "C" fns with no captured state.
        unsafe { register_atfork_child(atfork_child) };
        reporter::spawn()
    }));
    match ok {
        Ok(true) => STATE.store(ACTIVE, Ordering::Release),
        _ => STATE.store(DISABLED, Ordering::Release),
    }
}

/// Runs in the child after fork(): new identity, fresh transport state (the parent's
/// descriptors closed, its buffered data not re-sent), new counters, own thread.
unsafe extern "C" fn atfork_child() {
    let _ = catch_unwind(|| {
        if STATE.load(Ordering::Acquire) != ACTIVE {
            return;
        }
        let _g = internal();
        // The parent's background thread does not exist here.
        LIB_TID.store(0, Ordering::Release);
        lifecycle::after_fork_child();
        procinfo::after_fork_child();
        transport::after_fork_child();
        let _ = catch_unwind(crate::metrics::reset_after_fork);
        reporter::after_fork_child();
        let _ = catch_unwind(crate::crash::after_fork_child);
        // Modules reset their per-process aggregates through on_config (they can tell a
        // fork by proc_info().pid changing). Crash capture keeps the parent's prepared
        // settings (same config).
        run_hooks(&config(), None);
        if !reporter::spawn() {
            STATE.store(DISABLED, Ordering::Release);
        }
    });
}

#[cfg_attr(test, allow(dead_code))]
extern "C" fn scope_ctor() {
    let _ = catch_unwind(init);
}

/// At exit (via `.fini_array`): one last metrics period and a flush bounded to
/// [`EXIT_FLUSH`], only in the process that owns the state (not in a vfork child).
#[cfg_attr(test, allow(dead_code))]
extern "C" fn scope_fini() {
    let _ = catch_unwind(|| {
        if STATE.load(Ordering::Acquire) != ACTIVE {
            return;
        }
        // SAFETY: trivial syscall.
        if unsafe { libc::getpid() } as u32 != proc_info().pid {
            return;
        }
        let _g = internal();
        reporter::at_exit();
    });
}

/// Longest the exit path waits to deliver what is queued.
pub const EXIT_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static SCOPE_INIT: extern "C" fn() = scope_ctor;

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".fini_array")]
static SCOPE_FINI: extern "C" fn() = scope_fini;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_guard_nests() {
        assert!(!is_internal());
        {
            let _a = internal();
            assert!(is_internal());
            {
                let _b = internal();
                assert!(is_internal());
            }
            assert!(is_internal());
        }
        assert!(!is_internal());
    }

    #[test]
    fn lazy_is_computed_once() {
        static L: Lazy<String> = Lazy::new();
        let a = L.get_or_init(|| "a".to_string());
        let b = L.get_or_init(|| "b".to_string());
        assert_eq!((a.as_str(), b.as_str()), ("a", "a"));
        assert!(std::ptr::eq(a, b));
    }

    /// A child forked while another thread computes the value gets one (a `OnceLock`
    /// being initialised at fork time hangs the child forever).
    #[test]
    fn lazy_after_fork_during_init_does_not_hang() {
        static L: Lazy<u32> = Lazy::new();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            *L.get_or_init(|| {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv();
                1
            })
        });
        started_rx.recv().unwrap();
        // SAFETY: the child only reads an atomic, allocates and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let v = *L.get_or_init(|| 2);
            unsafe { libc::_exit(if v == 2 { 0 } else { 1 }) };
        }
        assert!(pid > 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut st = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if std::time::Instant::now() > deadline {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("forked child hung in Lazy::get_or_init");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        release_tx.send(()).unwrap();
        assert_eq!(t.join().unwrap(), 1);
        assert_eq!(*L.get_or_init(|| 3), 1);
    }

    #[test]
    fn library_tid_is_the_background_thread() {
        let tid = std::thread::spawn(|| {
            set_library_tid();
            library_tid()
        })
        .join()
        .unwrap();
        assert!(tid.is_some_and(|t| t > 0 && t as u32 != std::process::id()));
        LIB_TID.store(0, Ordering::Release);
        assert_eq!(library_tid(), None);
    }

    #[test]
    fn endpoints_follow_config() {
        let mut c = Config::default();
        c.cribl.enable = false;
        c.set("SCOPE_EVENT_DEST", "unix://@ev").unwrap();
        c.set("SCOPE_METRIC_DEST", "udp://127.0.0.1:8125").unwrap();
        c.set("SCOPE_LOG_DEST", "file:///tmp/x.log").unwrap();
        let [m, e, l] = endpoints(&c);
        assert_eq!(m.to_string(), "udp://127.0.0.1:8125");
        assert_eq!(e.to_string(), "unix://@ev");
        assert_eq!(l.to_string(), "file:///tmp/x.log");
        c.set("SCOPE_EVENT_ENABLE", "false").unwrap();
        assert_eq!(endpoints(&c)[1], Endpoint::Disabled);
        c.set("SCOPE_METRIC_TLS_ENABLE", "true").unwrap();
        c.set("SCOPE_METRIC_DEST", "tcp://h:9").unwrap();
        assert_eq!(endpoints(&c)[0].to_string(), "tls://h:9");
    }
}
