//! The library's own file descriptors.
//!
//! Every descriptor a transport opens is moved to a high number with `FD_CLOEXEC` and
//! registered in a small fixed table of slots. The interposers use [`is_own_fd`] so they
//! never report our I/O, and call [`relocate_own_fd`] before an application `close`,
//! `dup2` or `dup3` replaces one of our numbers: we move to another number first, so the
//! application gets the number it asked for and its data never mixes with ours.
//! `close_range` and `closefrom` are interposed here and skip our descriptors.
//!
//! Writers access a slot's descriptor through [`with_fd`], which marks the slot busy for
//! the duration of one non-blocking syscall; relocation waits for that to finish.

use std::ffi::CStr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use libc::{c_int, c_uint, c_void};

use crate::runtime;

/// Maximum number of descriptors the library holds at once (3 channels, with room to
/// spare for a connection being replaced).
pub const SLOTS: usize = 8;

struct Slot {
    fd: AtomicI32,
    busy: AtomicU32,
    /// What the descriptor refers to (device and inode, see [`identity`]), so a number
    /// the application closed under us (a raw system call) and then reused is never
    /// written to as ours.
    dev: AtomicU64,
    ino: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    fd: AtomicI32::new(-1),
    busy: AtomicU32::new(0),
    dev: AtomicU64::new(0),
    ino: AtomicU64::new(0),
};

/// Device and inode of an open descriptor (None when it is not open).
fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed local buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev as u64, st.st_ino as u64))
}

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
/// The lowest descriptor number ever registered (never raised): the interposers' check
/// of an application fd below it is one load. Ours normally sit at [`high_base`] or
/// above.
static LOWEST: AtomicI32 = AtomicI32::new(i32::MAX);

fn register_low(fd: c_int) {
    LOWEST.fetch_min(fd, Ordering::AcqRel);
}

/// Index of a registered descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId(usize);

/// True when `fd` is one of the library's own descriptors. Lock-free, allocation-free,
/// async-signal-safe.
#[inline]
pub fn is_own_fd(fd: c_int) -> bool {
    fd >= 0
        && fd >= LOWEST.load(Ordering::Acquire)
        && TABLE.iter().any(|s| s.fd.load(Ordering::Acquire) == fd)
}

/// The lowest number our descriptors are moved to: 64 below the soft `RLIMIT_NOFILE`,
/// capped at 1024 so a huge limit does not make the kernel grow the fd table.
pub fn high_base() -> c_int {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall wrapper with a valid out-pointer.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    };
    let soft = soft.min(1 << 20) as i64;
    (soft - 64).clamp(3, 1024 - 64) as c_int
}

/// Grows the kernel's fd table up to [`high_base`] now, while the process is still
/// single-threaded (the constructor). Growing it later, once our thread shares the
/// table, makes the kernel wait for an RCU grace period (~10 ms) inside the first
/// `F_DUPFD` of [`adopt`]; that wait dominated the start of short processes.
pub fn pregrow_fd_table() {
    let _g = runtime::internal();
    let base = high_base();
    for src in 0..=2 {
        // SAFETY: fcntl/close on a descriptor number we only duplicate and close again.
        let high = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, base) };
        if high >= 0 {
            unsafe { libc::close(high) };
            return;
        }
    }
}

/// Moves `fd` to a high number with `FD_CLOEXEC` and registers it. On success the
/// original number is closed. On failure (no free slot, no free high number) `fd` is
/// closed and `None` returned.
pub fn adopt(fd: c_int) -> Option<SlotId> {
    let _g = runtime::internal();
    let base = high_base();
    // SAFETY: fcntl/close on a descriptor we own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
    let use_fd = if high >= 0 {
        unsafe { libc::close(fd) };
        high
    } else {
        // No free high number: keep the original, still close-on-exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        fd
    };
    // Before the number is published in the table.
    register_low(use_fd);
    let (dev, ino) = identity(use_fd).unwrap_or_default();
    for (i, s) in TABLE.iter().enumerate() {
        if s.fd
            .compare_exchange(-1, -2, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Reserved (-2 matches no descriptor): set the identity, then publish.
            s.dev.store(dev, Ordering::Release);
            s.ino.store(ino, Ordering::Release);
            s.fd.store(use_fd, Ordering::Release);
            return Some(SlotId(i));
        }
    }
    unsafe { libc::close(use_fd) };
    None
}

/// Runs one syscall with the slot's current descriptor. Returns `None` when the slot is
/// empty or its descriptor was lost: closed under us by a raw system call (which the
/// interposers cannot see), perhaps with the number reused by the application. Such a
/// slot is emptied without closing the number (it is not ours any more); the transport
/// reports the loss (failure details, dropped lines) and reconnects.
pub fn with_fd<R>(id: SlotId, f: impl FnOnce(c_int) -> R) -> Option<R> {
    let s = &TABLE[id.0];
    s.busy.fetch_add(1, Ordering::SeqCst);
    let fd = s.fd.load(Ordering::SeqCst);
    let ours = fd >= 0
        && identity(fd) == Some((s.dev.load(Ordering::Acquire), s.ino.load(Ordering::Acquire)));
    let r = if ours { Some(f(fd)) } else { None };
    s.busy.fetch_sub(1, Ordering::SeqCst);
    if fd >= 0 && !ours {
        let _ =
            s.fd.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
    r
}

/// The current number of a slot (for poll), or -1.
pub fn current(id: SlotId) -> c_int {
    TABLE[id.0].fd.load(Ordering::Acquire)
}

/// Closes and unregisters a slot's descriptor (one found lost is only unregistered).
pub fn release(id: SlotId) {
    let s = &TABLE[id.0];
    let fd = s.fd.swap(-1, Ordering::SeqCst);
    let fd = if fd >= 0
        && identity(fd) != Some((s.dev.load(Ordering::Acquire), s.ino.load(Ordering::Acquire)))
    {
        // Lost: the number is not ours to close.
        -1
    } else {
        fd
    };
    wait_idle(s);
    if fd >= 0 {
        let _g = runtime::internal();
        // SAFETY: the descriptor is ours and no longer reachable through the table.
        unsafe { libc::close(fd) };
    }
}

fn wait_idle(s: &Slot) {
    // Writers hold `busy` only across one non-blocking syscall.
    let mut spins = 0u32;
    while s.busy.load(Ordering::SeqCst) != 0 {
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Call before the application closes or replaces descriptor `fd` (close, dup2, dup3).
/// If `fd` is ours, the library moves to another number first and returns true; the
/// caller then proceeds with the real call, which affects only the application.
pub fn relocate_own_fd(fd: c_int) -> bool {
    if fd < 0 {
        return false;
    }
    for s in TABLE.iter() {
        if s.fd.load(Ordering::Acquire) != fd {
            continue;
        }
        let _g = runtime::internal();
        // SAFETY: duplicating a descriptor we registered.
        let newfd = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high_base()) };
        let newfd = if newfd == fd || newfd < 0 {
            // Could not move: give the number up; the transport reconnects.
            -1
        } else {
            register_low(newfd);
            newfd
        };
        if s.fd
            .compare_exchange(fd, newfd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
            && newfd >= 0
        {
            // Someone else changed the slot meanwhile; drop our duplicate.
            unsafe { libc::close(newfd) };
        }
        wait_idle(s);
        return true;
    }
    false
}

/// In a forked child: close every inherited descriptor of the parent's transports and
/// empty the table (the child opens its own connections).
pub fn forget_all_in_child() {
    for s in TABLE.iter() {
        s.busy.store(0, Ordering::SeqCst);
        let fd = s.fd.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the child's copy of a descriptor the parent's library owned.
            unsafe { libc::syscall(libc::SYS_close, fd) };
        }
    }
}

/// Our registered descriptors in `[lo, hi]`, sorted, without allocating.
fn own_in_range(lo: c_uint, hi: c_uint) -> ([c_uint; SLOTS], usize) {
    let mut out = [0 as c_uint; SLOTS];
    let mut n = 0;
    for s in TABLE.iter() {
        let fd = s.fd.load(Ordering::Acquire);
        if fd >= 0 && (fd as c_uint) >= lo && (fd as c_uint) <= hi {
            out[n] = fd as c_uint;
            n += 1;
        }
    }
    out[..n].sort_unstable();
    (out, n)
}

/// Splits `[lo, hi]` into the sub-ranges that exclude `own`, in order. Pure.
pub fn split_range(
    lo: c_uint,
    hi: c_uint,
    own: &[c_uint],
) -> ([(c_uint, c_uint); SLOTS + 1], usize) {
    let mut out = [(0, 0); SLOTS + 1];
    let mut n = 0;
    let mut start = lo as u64;
    for &fd in own {
        let fd = fd as u64;
        if fd < start || fd > hi as u64 {
            continue;
        }
        if fd > start {
            out[n] = (start as c_uint, (fd - 1) as c_uint);
            n += 1;
        }
        start = fd + 1;
    }
    if start <= hi as u64 {
        out[n] = (start as c_uint, hi);
        n += 1;
    }
    (out, n)
}

// ---- interposed close_range / closefrom ------------------------------------------

type CloseRangeFn = unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int;
type CloseFromFn = unsafe extern "C" fn(c_int);

static REAL_CLOSE_RANGE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_CLOSEFROM: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
const UNRESOLVED: *mut c_void = std::ptr::dangling_mut::<c_void>();

fn next_symbol(cache: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let p = cache.load(Ordering::Acquire);
    if !p.is_null() {
        return if p == UNRESOLVED {
            std::ptr::null_mut()
        } else {
            p
        };
    }
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT skips this library.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    cache.store(if f.is_null() { UNRESOLVED } else { f }, Ordering::Release);
    f
}

unsafe fn real_close_range(lo: c_uint, hi: c_uint, flags: c_int) -> c_int {
    let f = next_symbol(&REAL_CLOSE_RANGE, c"close_range");
    if f.is_null() {
        // SAFETY: raw syscall, same contract as the libc wrapper.
        unsafe { libc::syscall(libc::SYS_close_range, lo, hi, flags as c_uint) as c_int }
    } else {
        // SAFETY: the symbol has close_range's C signature.
        let f: CloseRangeFn = unsafe { std::mem::transmute::<*mut c_void, CloseRangeFn>(f) };
        unsafe { f(lo, hi, flags) }
    }
}

/// `close_range(2)`, minus the library's own descriptors.
///
/// # Safety
/// Same contract as libc's `close_range`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // Panic-free by construction; the guard keeps any bug from unwinding into C.
    match std::panic::catch_unwind(|| unsafe { close_range_skipping_own(first, last, flags) }) {
        Ok(r) => r,
        Err(_) => unsafe { real_close_range(first, last, flags) },
    }
}

unsafe fn close_range_skipping_own(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last {
        // Let the real call report EINVAL.
        return unsafe { real_close_range(first, last, flags) };
    }
    let (own, n) = own_in_range(first, last);
    if n == 0 {
        return unsafe { real_close_range(first, last, flags) };
    }
    let (parts, m) = split_range(first, last, &own[..n]);
    let mut rc = 0;
    for &(lo, hi) in &parts[..m] {
        let r = unsafe { real_close_range(lo, hi, flags) };
        if r != 0 {
            rc = r;
        }
    }
    rc
}

/// `closefrom(3)`, minus the library's own descriptors.
///
/// # Safety
/// Same contract as libc's `closefrom`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    let _ = std::panic::catch_unwind(|| unsafe { closefrom_skipping_own(lowfd) });
}

unsafe fn closefrom_skipping_own(lowfd: c_int) {
    let lo = lowfd.max(0) as c_uint;
    let (own, n) = own_in_range(lo, c_uint::MAX);
    if n == 0 {
        let f = next_symbol(&REAL_CLOSEFROM, c"closefrom");
        if !f.is_null() {
            // SAFETY: the symbol has closefrom's C signature.
            let f: CloseFromFn = unsafe { std::mem::transmute::<*mut c_void, CloseFromFn>(f) };
            unsafe { f(lowfd) };
            return;
        }
    }
    let (parts, m) = split_range(lo, c_uint::MAX, &own[..n]);
    for &(a, b) in &parts[..m] {
        unsafe { real_close_range(a, b, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(lo: u32, hi: u32, own: &[u32]) -> Vec<(u32, u32)> {
        let (p, n) = split_range(lo, hi, own);
        p[..n].to_vec()
    }

    #[test]
    fn split_skips_own_fds() {
        assert_eq!(parts(3, 100, &[]), vec![(3, 100)]);
        assert_eq!(parts(3, 100, &[50]), vec![(3, 49), (51, 100)]);
        assert_eq!(parts(3, 100, &[3]), vec![(4, 100)]);
        assert_eq!(parts(3, 100, &[100]), vec![(3, 99)]);
        assert_eq!(parts(3, 100, &[50, 51]), vec![(3, 49), (52, 100)]);
        assert_eq!(parts(5, 5, &[5]), vec![]);
        assert_eq!(
            parts(3, u32::MAX, &[960, 961]),
            vec![(3, 959), (962, u32::MAX)]
        );
        assert_eq!(parts(3, 10, &[1, 20]), vec![(3, 10)]);
    }

    #[test]
    fn adopt_moves_high_and_relocation_frees_the_number() {
        let mut sv = [0; 2];
        // SAFETY: plain syscalls on descriptors this test owns.
        unsafe {
            assert_eq!(
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()),
                0
            );
            let id = adopt(sv[0]).expect("slot");
            let fd = current(id);
            assert!(fd >= high_base(), "moved high: {fd}");
            assert!(is_own_fd(fd));
            assert!(!is_own_fd(sv[0]) || sv[0] == fd);
            assert_ne!(
                libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC,
                0,
                "close-on-exec"
            );
            // The application wants `fd`: we move away, then it may close/replace it.
            assert!(relocate_own_fd(fd));
            let nfd = current(id);
            assert_ne!(nfd, fd);
            assert!(!is_own_fd(fd));
            assert!(is_own_fd(nfd));
            libc::close(fd);
            let n = with_fd(id, |f| libc::write(f, b"x".as_ptr().cast(), 1)).unwrap();
            assert_eq!(n, 1, "our socket survived the application's close");
            let mut b = [0u8; 1];
            assert_eq!(libc::read(sv[1], b.as_mut_ptr().cast(), 1), 1);
            assert_eq!(&b, b"x");
            release(id);
            assert!(!is_own_fd(nfd));
            assert!(!relocate_own_fd(nfd));
            libc::close(sv[1]);
        }
    }

    #[test]
    fn high_base_is_sane() {
        let b = high_base();
        assert!((3..=960).contains(&b), "{b}");
    }
}
