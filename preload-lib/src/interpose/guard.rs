//! The re-entry guard, shared with the runtime: while the current thread is inside the
//! library (`runtime::internal()` scope or one of the library's own threads), interposers
//! pass straight through, so the library's own I/O is never reported and never recurses.
//! Before the runtime is active (or after it failed to start), and while events and
//! metrics are both off (crash capture only), they pass through too.

/// True when interposers must pass straight through on this thread.
#[inline]
pub fn active() -> bool {
    !crate::runtime::is_recording() || crate::runtime::is_internal() || !crate::runtime::is_active()
}

/// RAII guard: the thread's calls are the library's own until it is dropped.
pub struct Guard(#[allow(dead_code)] crate::runtime::Internal);

impl Guard {
    pub fn enter() -> Guard {
        Guard(crate::runtime::internal())
    }
}
