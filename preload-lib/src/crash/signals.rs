//! Handler installation, the application's own handlers, the exported `sigaction` /
//! `signal` interposers, per-thread alternate signal stacks and the `pthread_create`
//! wrapper that gives every new thread one.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// The signals we capture.
pub(crate) const FATAL: [c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Size of each alternate signal stack (plus a guard page below it).
pub(crate) const ALTSTACK_SIZE: usize = 256 * 1024;

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type PthreadCreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut c_void) -> *mut c_void,
    *mut c_void,
) -> c_int;

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_PTHREAD_CREATE: AtomicUsize = AtomicUsize::new(0);

fn dlsym_next(name: &[u8]) -> usize {
    // SAFETY: name is NUL-terminated; RTLD_NEXT finds libc's definition after ours.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) as usize }
}

/// Resolves the real libc functions we interpose (normal context only).
pub(crate) fn resolve_real() {
    if REAL_SIGACTION.load(Ordering::Acquire) == 0 {
        REAL_SIGACTION.store(dlsym_next(b"sigaction\0"), Ordering::Release);
    }
    if REAL_PTHREAD_CREATE.load(Ordering::Acquire) == 0 {
        REAL_PTHREAD_CREATE.store(dlsym_next(b"pthread_create\0"), Ordering::Release);
    }
}

/// libc's `sigaction` (never our interposer).
pub(crate) unsafe fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let f = REAL_SIGACTION.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: plain syscall fallback; only used for SIG_DFL/query before resolve.
        return unsafe { raw_sigaction(sig, act, old) };
    }
    // SAFETY: f is libc's sigaction.
    unsafe { std::mem::transmute::<usize, SigactionFn>(f)(sig, act, old) }
}

/// rt_sigaction without a restorer: only for SIG_DFL / SIG_IGN / queries.
unsafe fn raw_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    #[repr(C)]
    struct KSig {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let mut k = KSig {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let kp = if act.is_null() {
        std::ptr::null()
    } else {
        // SAFETY: act is valid per caller.
        let a = unsafe { &*act };
        k.handler = a.sa_sigaction;
        k.flags = a.sa_flags as u64 & !0x0400_0000u64; // SA_RESTORER
        &k as *const KSig
    };
    let mut ko = KSig {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: valid pointers, sigsetsize 8.
    let r = unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, kp, &mut ko as *mut KSig, 8) };
    if r == 0 && !old.is_null() {
        // SAFETY: old is valid per caller.
        unsafe {
            std::ptr::write_bytes(old, 0, 1);
            (*old).sa_sigaction = ko.handler;
            (*old).sa_flags = ko.flags as c_int;
        }
    }
    r as c_int
}

// ---------------------------------------------------------------------------------
// The application's handlers for the fatal signals, kept while ours are installed.
// A tiny seqlock per signal: writers (normal context) serialize on an odd sequence;
// the handler copies without waiting (it retries a bounded number of times).

struct AppSlot {
    seq: AtomicU32,
    act: std::cell::UnsafeCell<libc::sigaction>,
}

// SAFETY: access goes through the seqlock protocol below.
unsafe impl Sync for AppSlot {}

const fn slot() -> AppSlot {
    AppSlot {
        seq: AtomicU32::new(0),
        // SAFETY: an all-zero sigaction is SIG_DFL with no flags.
        act: std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }),
    }
}

static APP: [AppSlot; 4] = [slot(), slot(), slot(), slot()];
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn idx(sig: c_int) -> Option<usize> {
    FATAL.iter().position(|&s| s == sig)
}

pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

fn app_store(i: usize, act: &libc::sigaction) {
    let s = &APP[i];
    loop {
        let v = s.seq.load(Ordering::Relaxed);
        if v.is_multiple_of(2)
            && s.seq
                .compare_exchange(v, v + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            // SAFETY: we hold the odd sequence.
            unsafe { *s.act.get() = *act };
            s.seq.store(v + 2, Ordering::Release);
            return;
        }
        std::hint::spin_loop();
    }
}

/// The application's handler for `sig` (async-signal-safe).
pub(crate) fn app_load(sig: c_int) -> libc::sigaction {
    let s = &APP[idx(sig).unwrap_or(0)];
    let mut out: libc::sigaction;
    let mut tries = 0;
    loop {
        let a = s.seq.load(Ordering::Acquire);
        // SAFETY: a racy copy, validated by the sequence check below.
        out = unsafe { std::ptr::read_volatile(s.act.get()) };
        let b = s.seq.load(Ordering::Acquire);
        if (a == b && a.is_multiple_of(2)) || tries > 1000 {
            return out;
        }
        tries += 1;
        std::hint::spin_loop();
    }
}

/// Clears the one-shot handler after use (`SA_RESETHAND`).
pub(crate) fn app_reset(sig: c_int) {
    if let Some(i) = idx(sig) {
        // SAFETY: zeroed sigaction = SIG_DFL.
        let z: libc::sigaction = unsafe { std::mem::zeroed() };
        app_store(i, &z);
    }
}

fn our_action(handler: usize) -> libc::sigaction {
    // SAFETY: zero-initialised then filled.
    let mut a: libc::sigaction = unsafe { std::mem::zeroed() };
    a.sa_sigaction = handler;
    // SA_NODEFER: a fault inside our own capture re-enters the handler, which then lets
    // the process die with the original signal.
    a.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
    // SAFETY: valid sigset.
    unsafe { libc::sigemptyset(&mut a.sa_mask) };
    a
}

/// Installs our handlers (idempotent); the current dispositions become the
/// application's.
pub(crate) fn install() {
    if INSTALLED.load(Ordering::Acquire) {
        return;
    }
    let ours = our_action(super::capture::on_fatal as *const () as usize);
    for (i, &sig) in FATAL.iter().enumerate() {
        // SAFETY: zeroed sigaction is a valid out buffer.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers.
        if unsafe { real_sigaction(sig, &ours, &mut old) } == 0
            && old.sa_sigaction != ours.sa_sigaction
        {
            app_store(i, &old);
        }
    }
    INSTALLED.store(true, Ordering::Release);
}

/// Removes our handlers, giving the kernel back the application's.
pub(crate) fn uninstall() {
    if !INSTALLED.swap(false, Ordering::AcqRel) {
        return;
    }
    for &sig in FATAL.iter() {
        let app = app_load(sig);
        // SAFETY: valid pointers.
        unsafe { real_sigaction(sig, &app, std::ptr::null_mut()) };
    }
}

/// Sets SIG_DFL for `sig` in the kernel (async-signal-safe).
pub(crate) fn set_default(sig: c_int) {
    // SAFETY: zeroed = SIG_DFL.
    let d: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { raw_sigaction(sig, &d, std::ptr::null_mut()) };
}

/// Exported `sigaction`: for the fatal signals while our handlers are installed, the
/// application's handler is recorded (and reported back) instead of replacing ours.
///
/// # Safety
/// Same contract as libc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if let Some(i) = idx(sig)
        && INSTALLED.load(Ordering::Acquire)
    {
        if !old.is_null() {
            // SAFETY: caller's buffer.
            unsafe { *old = app_load(sig) };
        }
        if !act.is_null() {
            // SAFETY: caller's struct.
            app_store(i, unsafe { &*act });
        }
        return 0;
    }
    resolve_real_lazy();
    // SAFETY: forwarding the caller's arguments.
    unsafe { real_sigaction(sig, act, old) }
}

fn resolve_real_lazy() {
    if REAL_SIGACTION.load(Ordering::Acquire) == 0 {
        resolve_real();
    }
}

/// Exported `signal` (glibc's calls its internal sigaction, so it is interposed too):
/// BSD semantics like glibc's (`SA_RESTART`).
///
/// # Safety
/// Same contract as libc's `signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: zeroed then filled.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: valid sigset.
    unsafe { libc::sigaddset(&mut act.sa_mask, sig) };
    // SAFETY: zeroed out buffer.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// Exported `bsd_signal` (same as `signal`).
///
/// # Safety
/// Same contract as libc's `bsd_signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bsd_signal(sig: c_int, h: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: same contract.
    unsafe { signal(sig, h) }
}

// ---------------------------------------------------------------------------------
// Alternate signal stacks.

/// Gives the calling thread an alternate signal stack unless it already has one.
/// Returns the mapping we created (to free at thread exit), if any.
pub(crate) fn ensure_altstack() -> Option<(usize, usize)> {
    // SAFETY: zeroed stack_t out buffer.
    let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: query only.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) } != 0 {
        return None;
    }
    if cur.ss_flags & libc::SS_DISABLE == 0 {
        return None;
    }
    let page = crashdump::sys::page_size() as usize;
    let len = ALTSTACK_SIZE + page;
    // SAFETY: fresh anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // Guard page below the stack.
    // SAFETY: our mapping.
    unsafe { libc::mprotect(p, page, libc::PROT_NONE) };
    let st = libc::stack_t {
        // SAFETY: within our mapping.
        ss_sp: unsafe { (p as *mut u8).add(page) }.cast(),
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: valid stack_t.
    if unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) } != 0 {
        // SAFETY: our mapping.
        unsafe { libc::munmap(p, len) };
        return None;
    }
    Some((p as usize, len))
}

struct AltStackGuard(Option<(usize, usize)>);

impl Drop for AltStackGuard {
    fn drop(&mut self) {
        if let Some((p, len)) = self.0.take() {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disable then unmap our own stack; we are not running on it.
            unsafe {
                libc::sigaltstack(&off, std::ptr::null_mut());
                libc::munmap(p as *mut c_void, len);
            }
        }
    }
}

thread_local! {
    static ALTSTACK: std::cell::RefCell<AltStackGuard> =
        const { std::cell::RefCell::new(AltStackGuard(None)) };
}

struct Start {
    f: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
}

extern "C" fn thread_trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: p is the Box<Start> leaked by pthread_create below.
    let s = unsafe { Box::from_raw(p as *mut Start) };
    let mine = ensure_altstack();
    let _ = ALTSTACK.try_with(|g| g.borrow_mut().0 = mine);
    (s.f)(s.arg)
}

/// Exported `pthread_create`: every new thread gets an alternate signal stack (so a
/// stack overflow in it can be captured, also when capture is turned on later), freed
/// when the thread exits.
///
/// # Safety
/// Same contract as libc's `pthread_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
) -> c_int {
    if REAL_PTHREAD_CREATE.load(Ordering::Acquire) == 0 {
        resolve_real();
    }
    let real = REAL_PTHREAD_CREATE.load(Ordering::Acquire);
    if real == 0 {
        return libc::EAGAIN;
    }
    // SAFETY: real is libc's pthread_create.
    let real = unsafe { std::mem::transmute::<usize, PthreadCreateFn>(real) };
    let b = Box::into_raw(Box::new(Start { f: start, arg }));
    // SAFETY: forwarding with our trampoline; b is reclaimed by it, or here on failure.
    let r = unsafe { real(thread, attr, thread_trampoline, b.cast()) };
    if r != 0 {
        // SAFETY: the thread was not created; reclaim.
        drop(unsafe { Box::from_raw(b) });
    }
    r
}
