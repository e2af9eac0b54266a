//! Interposition of libc I/O, socket and DNS functions.
//!
//! - [`guard`]: the thread-local re-entry guard.
//! - [`real`]: lazy `dlsym(RTLD_NEXT)` resolution of the real functions.
//! - [`fdtable`]: the per-fd state table.
//! - [`fddir`]: the library's descriptors left out of listings of `/proc/self/fd`.
//! - [`record`]: what is recorded after each call (metrics, events, HTTP/DNS detection).
//! - `libc_fns`: the exported wrappers themselves (including `preadv`/`pwritev` and
//!   their `64`/`v2` variants).
//! - `bufs`: the byte providers the wrappers hand to `record`.
//! - [`stdio`]: the printf family and the single-character stdio writers.

mod bufs;
pub mod fddir;
pub mod fdtable;
pub mod guard;
#[cfg(not(test))]
mod libc_fns;
pub mod real;
pub mod record;
pub mod stdio;

/// Called once by the runtime after the config is loaded: resolves nothing eagerly (the
/// wrappers resolve on first use) but classifies the standard descriptors so console
/// output is recognised from the first write.
pub fn init() {
    let _g = guard::Guard::enter();
    for fd in 0..3 {
        let _ = record::classify(fd);
    }
}
