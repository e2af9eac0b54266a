//! Crash capture's own constructor: makes capture work from library load, before and
//! independently of the runtime's init, from the `SCOPE_SNAPSHOT_*` environment.

use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::Ordering;

fn env(name: &CStr) -> Option<String> {
    // SAFETY: getenv with a NUL-terminated name; the result is copied at once.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// `true`/`false` as AppScope reads them (anything else: not set).
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `SCOPE_SNAPSHOT_CORE_MAXSIZE`: bytes, with an optional `k`/`m`/`g` (binary) suffix;
/// 0 or unset = unlimited. `None` for an invalid value.
pub(crate) fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.as_bytes().last()?.to_ascii_lowercase() {
        b'k' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' => (&v[..v.len() - 1], 1 << 20),
        b'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Settings from the environment only.
pub(crate) fn settings_from_env() -> super::CrashSettings {
    super::CrashSettings {
        backtrace: env(c"SCOPE_SNAPSHOT_BACKTRACE")
            .and_then(|v| parse_bool(&v))
            .unwrap_or(false),
        coredump: env(c"SCOPE_SNAPSHOT_COREDUMP")
            .and_then(|v| parse_bool(&v))
            .unwrap_or(false),
        snapshot_dir: env(c"SCOPE_SNAPSHOT_DIR")
            .filter(|d| d.starts_with('/'))
            .unwrap_or_else(|| super::DEFAULT_SNAPSHOT_DIR.to_string()),
        core_maxsize: env(c"SCOPE_SNAPSHOT_CORE_MAXSIZE")
            .and_then(|v| parse_size(&v))
            .unwrap_or(0),
        config_in_effect: String::new(),
        libscope_version: String::new(),
    }
}

extern "C" fn init(_argc: c_int, _argv: *const *const c_char, _envp: *const *const c_char) {
    let _ = std::panic::catch_unwind(|| {
        super::signals::resolve_real();
        // The main thread's alternate stack (threads created later get theirs from the
        // pthread_create wrapper), also when capture is off now: a command file may turn
        // it on later. Cheap: untouched pages cost nothing.
        super::signals::ensure_altstack();
        let s = settings_from_env();
        if !super::CONFIGURED_BY_RUNTIME.load(Ordering::Acquire) {
            super::apply(&s);
        }
    });
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = init;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_bool(" TRUE "), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
