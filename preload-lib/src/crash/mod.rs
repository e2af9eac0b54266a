//! Fatal-signal capture (SIGSEGV, SIGBUS, SIGILL, SIGFPE).
//!
//! Interface used by the runtime (keep stable):
//! - `configure(&CrashSettings)`: at init and after every config change, from a normal
//!   (non-signal) context. Installs or removes handlers and precomputes everything the
//!   handler needs (paths, the text of the config in effect, process info).
//! - `after_fork_child()`: in the child after fork.
//! - `snapshot_now() -> Result<String, String>`: `SCOPE_CMD_SNAPSHOT=true`: writes a
//!   snapshot bundle of the live process and returns its directory.

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

pub fn configure(_settings: &CrashSettings) {}

pub fn after_fork_child() {}

pub fn snapshot_now() -> Result<String, String> {
    Err("snapshot not available".into())
}
