//! Fatal-signal capture (SIGSEGV, SIGBUS, SIGILL, SIGFPE).
//!
//! Interface used by the runtime (keep stable):
//! - `configure(&CrashSettings)`: at init and after every config change, from a normal
//!   (non-signal) context. Installs or removes handlers and precomputes everything the
//!   handler needs (paths, the text of the config in effect, process info).
//! - `after_fork_child()`: in the child after fork.
//! - `snapshot_now() -> Result<String, String>`: `SCOPE_CMD_SNAPSHOT=true`: writes a
//!   snapshot bundle of the live process and returns its directory.
//!
//! Crash capture is also self-sufficient: a constructor of its own (`ctor::init`) reads
//! `SCOPE_SNAPSHOT_*` from the environment at load time and installs the handlers, until
//! the runtime's first `configure` takes over.
//!
//! Layout: `signals` (handler installation, the application's handlers, the exported
//! `sigaction`/`signal` interposers, alternate stacks and the `pthread_create` wrapper),
//! `capture` (what runs in the handler), `threads` (registers of the other threads),
//! `unwind` (backtrace), `bundle` (file writing).

mod bundle;
mod capture;
mod ctor;
mod signals;
mod threads;
mod unwind;

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Settings the runtime hands to crash capture after each config change.
#[derive(Debug, Clone, Default)]
pub struct CrashSettings {
    /// `libscope.snapshot.backtrace` / `SCOPE_SNAPSHOT_BACKTRACE`
    pub backtrace: bool,
    /// `libscope.snapshot.coredump` / `SCOPE_SNAPSHOT_COREDUMP`
    pub coredump: bool,
    /// `SCOPE_SNAPSHOT_DIR` (default `/tmp/appscope`); bundles go to `<dir>/<pid>/`.
    pub snapshot_dir: String,
    /// `SCOPE_SNAPSHOT_CORE_MAXSIZE` in bytes (0 = unlimited).
    pub core_maxsize: u64,
    /// AppScope's config-in-effect JSON, written as `cfg_<ts>`.
    pub config_in_effect: String,
    /// Library version, for `info_<ts>`.
    pub libscope_version: String,
}

/// Default `SCOPE_SNAPSHOT_DIR`.
pub const DEFAULT_SNAPSHOT_DIR: &str = "/tmp/appscope";

/// Everything the handler reads, prepared in a normal context and published with one
/// atomic pointer store. Old versions are leaked on purpose (a handler may be reading
/// them); config changes are rare and each is a few KiB.
pub(crate) struct Prepared {
    pub backtrace: bool,
    pub coredump: bool,
    /// `<dir>` without trailing `/`, no NUL.
    pub dir: Vec<u8>,
    pub core_maxsize: u64,
    pub cfg: Vec<u8>,
    pub version: Vec<u8>,
}

static PREPARED: AtomicPtr<Prepared> = AtomicPtr::new(std::ptr::null_mut());
/// Set by the first `configure` call from the runtime (the constructor's env-only
/// settings then no longer apply).
static CONFIGURED_BY_RUNTIME: AtomicBool = AtomicBool::new(false);

pub(crate) fn prepared() -> Option<&'static Prepared> {
    let p = PREPARED.load(Ordering::Acquire);
    // SAFETY: published pointers are leaked boxes, valid forever.
    if p.is_null() {
        None
    } else {
        Some(unsafe { &*p })
    }
}

fn publish(s: &CrashSettings) {
    let mut dir = if s.snapshot_dir.is_empty() {
        DEFAULT_SNAPSHOT_DIR.as_bytes().to_vec()
    } else {
        s.snapshot_dir.as_bytes().to_vec()
    };
    while dir.len() > 1 && dir.last() == Some(&b'/') {
        dir.pop();
    }
    let cfg = if s.config_in_effect.is_empty() {
        format!(
            "{{\"libscope\":{{\"snapshot\":{{\"coredump\":{},\"backtrace\":{}}}}},\
             \"snapshot_dir\":{:?},\"core_maxsize\":{}}}\n",
            s.coredump,
            s.backtrace,
            String::from_utf8_lossy(&dir),
            s.core_maxsize
        )
        .into_bytes()
    } else {
        s.config_in_effect.as_bytes().to_vec()
    };
    let version = if s.libscope_version.is_empty() {
        env!("CARGO_PKG_VERSION").as_bytes().to_vec()
    } else {
        s.libscope_version.as_bytes().to_vec()
    };
    let p = Box::new(Prepared {
        backtrace: s.backtrace,
        coredump: s.coredump,
        dir,
        core_maxsize: s.core_maxsize,
        cfg,
        version,
    });
    PREPARED.store(Box::into_raw(p), Ordering::Release);
}

/// Applies new settings: handlers are installed when backtrace or coredump is on and
/// removed (the application's own dispositions restored) when both are off.
pub fn configure(settings: &CrashSettings) {
    CONFIGURED_BY_RUNTIME.store(true, Ordering::Release);
    apply(settings);
}

fn apply(settings: &CrashSettings) {
    signals::resolve_real();
    publish(settings);
    if settings.backtrace || settings.coredump {
        capture::prepare_buffers();
        unwind::warm_up();
        threads::install_collector();
        signals::install();
    } else {
        signals::uninstall();
    }
}

/// In the child after fork: only the calling thread exists; forget any capture or
/// collection in progress in the parent.
pub fn after_fork_child() {
    capture::reset_after_fork();
}

/// Writes a snapshot bundle (`snapshot_<ts>.json` instead of `crash_<ts>.json`, same
/// other files, `done_<ts>` last) of the live process and returns its directory. The
/// process goes on; its other threads are paused only while their registers are read
/// and the core (if enabled) is written.
pub fn snapshot_now() -> Result<String, String> {
    let Some(p) = prepared() else {
        return Err("crash capture is not configured".into());
    };
    capture::prepare_buffers();
    unwind::warm_up();
    threads::install_collector();
    capture::snapshot(p)
}

/// The real-time signal (`SIGRTMAX-2`) crash capture sends to each thread to read its
/// registers for the core. Library threads that block all signals should leave this one
/// unblocked (`sigdelset`), else they appear in cores with only `rsp`/`rip`.
pub fn collect_signal() -> i32 {
    threads::collect_signal()
}

/// Whether fatal-signal handlers are currently installed (for tests and status).
pub fn handlers_installed() -> bool {
    signals::installed()
}
