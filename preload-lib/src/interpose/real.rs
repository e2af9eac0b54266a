//! Lazy resolution of the real libc functions with `dlsym(RTLD_NEXT)`.
//!
//! Each interposed function has a [`Real`] holding the resolved address (0 = not yet).
//! Resolution happens on first use, in whatever thread calls first; racing resolvers store
//! the same value. glibc's `dlsym` allocates with `calloc`/`malloc`, which we do not
//! interpose, so this is safe before `main` and inside early constructors. If `dlsym`
//! finds nothing (a static or exotic libc), wrappers fall back to the raw syscall where
//! one exists, or fail with `ENOSYS`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One real function.
pub struct Real {
    name: &'static str,
    addr: AtomicUsize,
}

impl Real {
    /// `name` must end with a NUL byte.
    pub const fn new(name: &'static str) -> Self {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The function's address, or 0 when it cannot be found.
    #[inline]
    pub fn addr(&self) -> usize {
        let a = self.addr.load(Ordering::Relaxed);
        if a > 1 {
            return a;
        }
        if a == 1 {
            return 0;
        }
        if !self.name.ends_with('\0') {
            return 0;
        }
        // SAFETY: dlsym with a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) } as usize;
        self.addr
            .store(if p == 0 { 1 } else { p }, Ordering::Relaxed);
        p
    }
}

/// `errno` of the calling thread.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Set `errno` of the calling thread.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}
