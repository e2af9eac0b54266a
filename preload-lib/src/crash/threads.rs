//! Registers of the other threads for the core file.
//!
//! Method: each other thread (from `/proc/self/task`) is sent a real-time signal
//! (`SIGRTMAX-2`, handler installed once with `SA_ONSTACK`, chaining to any handler the
//! application had there). Its handler stores the interrupted registers from its
//! `ucontext_t` into a preallocated slot and parks on a futex until released (a live
//! snapshot) or the process dies (a crash). Threads that do not answer within
//! [`ANSWER_TIMEOUT_MS`] (signal blocked, stopped, in uninterruptible sleep) get
//! `rsp`/`rip` from `/proc/self/task/<tid>/syscall` when the kernel reports them (enough
//! for gdb to unwind from a syscall), else zeroed registers. No ptrace: it works without
//! `CAP_SYS_PTRACE` and under Yama.

use crashdump::ThreadRegs;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};

pub(crate) const MAX_THREADS: usize = 1024;
/// How long the capturing thread waits for the others to answer.
pub(crate) const ANSWER_TIMEOUT_MS: u64 = 500;

static SIG: AtomicI32 = AtomicI32::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static COLLECTOR: AtomicI32 = AtomicI32::new(0);
static RELEASE: AtomicU32 = AtomicU32::new(0);
static ARRIVED: AtomicU32 = AtomicU32::new(0);
static DEPARTED: AtomicU32 = AtomicU32::new(0);
static SLOTS: AtomicPtr<ThreadRegs> = AtomicPtr::new(std::ptr::null_mut());
static NSLOTS: AtomicU32 = AtomicU32::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_TID: AtomicI32 = AtomicI32::new(0);
static TIDS: [AtomicI32; MAX_THREADS] = [ZERO_TID; MAX_THREADS];
#[allow(clippy::declare_interior_mutable_const)]
const NOT_READY: AtomicBool = AtomicBool::new(false);
static READY: [AtomicBool; MAX_THREADS] = [NOT_READY; MAX_THREADS];
static PREV_HANDLER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PREV_FLAGS: AtomicI32 = AtomicI32::new(0);

pub(crate) fn gettid() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

pub(crate) fn getpid() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

pub(crate) fn tgkill(pid: i32, tid: i32, sig: c_int) -> c_int {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) as c_int }
}

fn arch_prctl_get(code: c_int) -> u64 {
    let mut v = 0u64;
    // SAFETY: ARCH_GET_FS/GS write one u64.
    unsafe { libc::syscall(libc::SYS_arch_prctl, code, &mut v as *mut u64) };
    v
}

/// Registers of the current thread's interrupted context.
///
/// # Safety
/// `uc` is the ucontext given to an SA_SIGINFO handler.
pub(crate) unsafe fn regs_from_uc(tid: i32, uc: *const libc::ucontext_t) -> ThreadRegs {
    // SAFETY: per contract.
    unsafe { ThreadRegs::from_ucontext(tid, uc, arch_prctl_get(0x1003), arch_prctl_get(0x1004)) }
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    // SAFETY: valid timespec.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

fn futex_wait(word: &AtomicU32, val: u32, ms: u64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: (ms * 1_000_000) as i64,
    };
    // SAFETY: futex wait on a valid word with a timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: futex wake on a valid word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

extern "C" fn on_collect(sig: c_int, info: *mut libc::siginfo_t, uc: *mut c_void) {
    if !ACTIVE.load(Ordering::Acquire) {
        // Not ours: hand it to the application's handler, if it had one.
        let h = PREV_HANDLER.load(Ordering::Acquire);
        if h != libc::SIG_DFL && h != libc::SIG_IGN && h != 0 {
            if PREV_FLAGS.load(Ordering::Acquire) & libc::SA_SIGINFO != 0 {
                // SAFETY: the application's SA_SIGINFO handler.
                let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(h) };
                f(sig, info, uc);
            } else {
                // SAFETY: the application's plain handler.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
        }
        return;
    }
    let tid = gettid();
    let n = NSLOTS.load(Ordering::Acquire) as usize;
    let slots = SLOTS.load(Ordering::Acquire);
    let Some(i) = (0..n.min(MAX_THREADS)).find(|&i| TIDS[i].load(Ordering::Acquire) == tid) else {
        return;
    };
    if READY[i].load(Ordering::Acquire) || slots.is_null() {
        return;
    }
    // A thread waiting in the fatal handler contributes its registers at its own fault.
    let regs = parked_fault(tid)
        // SAFETY: uc from the kernel.
        .unwrap_or_else(|| unsafe { regs_from_uc(tid, uc as *const libc::ucontext_t) });
    // SAFETY: slot i belongs to this thread.
    unsafe { *slots.add(i) = regs };
    READY[i].store(true, Ordering::Release);
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    if tid == COLLECTOR.load(Ordering::Acquire) {
        return;
    }
    // Park until released; bounded so a lost release never hangs a live process.
    let mut waited = 0;
    while RELEASE.load(Ordering::Acquire) == 0 && waited < 30_000 {
        futex_wait(&RELEASE, 0, 10);
        waited += 10;
    }
    DEPARTED.fetch_add(1, Ordering::AcqRel);
}

// Threads that crashed while another capture was running park their fault registers
// here, so the capture's core shows them at their fault (not in our waiting loop).
const PARK_SLOTS: usize = 16;
struct Parked {
    tid: AtomicI32,
    regs: std::cell::UnsafeCell<ThreadRegs>,
}
// SAFETY: a slot's regs are written only by the thread that won its tid CAS, before
// publishing READY_PARK; read only after.
unsafe impl Sync for Parked {}
#[allow(clippy::declare_interior_mutable_const)]
const PARK_EMPTY: Parked = Parked {
    tid: AtomicI32::new(0),
    regs: std::cell::UnsafeCell::new(ThreadRegs {
        tid: 0,
        regs: [0; crashdump::regs::NREGS],
        fpregs: [0; crashdump::regs::FPREGS_LEN],
        has_regs: false,
        has_fpregs: false,
        cursig: 0,
        sighold: 0,
    }),
};
static PARKED: [Parked; PARK_SLOTS] = [PARK_EMPTY; PARK_SLOTS];
#[allow(clippy::declare_interior_mutable_const)]
const PARK_NOT_READY: AtomicBool = AtomicBool::new(false);
static PARK_READY: [AtomicBool; PARK_SLOTS] = [PARK_NOT_READY; PARK_SLOTS];

/// Records the calling thread's fault registers while it waits for another capture.
pub(crate) fn park_fault(r: ThreadRegs) {
    for (i, p) in PARKED.iter().enumerate() {
        if p.tid
            .compare_exchange(0, r.tid, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // SAFETY: we own slot i (won the CAS).
            unsafe { *p.regs.get() = r };
            PARK_READY[i].store(true, Ordering::Release);
            return;
        }
    }
}

/// Frees the calling thread's parked slot (it now captures itself).
pub(crate) fn unpark_fault(tid: i32) {
    for (i, p) in PARKED.iter().enumerate() {
        if p.tid.load(Ordering::Acquire) == tid {
            PARK_READY[i].store(false, Ordering::Release);
            p.tid.store(0, Ordering::Release);
        }
    }
}

fn parked_fault(tid: i32) -> Option<ThreadRegs> {
    for (i, p) in PARKED.iter().enumerate() {
        if p.tid.load(Ordering::Acquire) == tid && PARK_READY[i].load(Ordering::Acquire) {
            // SAFETY: published by PARK_READY.
            return Some(unsafe { *p.regs.get() });
        }
    }
    None
}

/// Installs the collection handler once (normal context).
pub(crate) fn install_collector() {
    if SIG.load(Ordering::Acquire) != 0 {
        return;
    }
    let sig = libc::SIGRTMAX() - 2;
    // SAFETY: zeroed then filled.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_collect as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: zeroed out buffer.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { super::signals::real_sigaction(sig, &act, &mut old) } == 0 {
        PREV_HANDLER.store(old.sa_sigaction, Ordering::Release);
        PREV_FLAGS.store(old.sa_flags, Ordering::Release);
        SIG.store(sig, Ordering::Release);
    }
}

/// Lists thread ids of this process into `out` (via getdents64 on /proc/self/task).
fn list_tids(out: &mut [i32], scratch: &mut [u8]) -> usize {
    let Ok(fd) = crashdump::sys::open(b"/proc/self/task\0", libc::O_RDONLY | libc::O_DIRECTORY, 0)
    else {
        return 0;
    };
    let mut n = 0;
    loop {
        // SAFETY: scratch is a valid buffer.
        let got = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd,
                scratch.as_mut_ptr(),
                scratch.len(),
            )
        };
        if got <= 0 {
            break;
        }
        let got = got as usize;
        let mut off = 0;
        while off + 19 < got {
            let reclen = u16::from_le_bytes([scratch[off + 16], scratch[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &scratch[off + 19..(off + reclen).min(got)];
            let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            let mut v: i64 = 0;
            let mut ok = len > 0;
            for &c in &name[..len] {
                if c.is_ascii_digit() {
                    v = v * 10 + (c - b'0') as i64;
                } else {
                    ok = false;
                    break;
                }
            }
            if ok && n < out.len() {
                out[n] = v as i32;
                n += 1;
            }
            off += reclen;
        }
    }
    crashdump::sys::close(fd);
    n
}

/// Whether `sig` is in the thread's blocked mask (`SigBlk:` of its status file).
fn signal_blocked(tid: i32, sig: c_int, scratch: &mut [u8]) -> bool {
    let mut p = crashdump::fmt::FixedBuf::<64>::new();
    use std::fmt::Write;
    let _ = write!(p, "/proc/self/task/{tid}/status\0");
    let Ok(n) = crashdump::sys::read_file(p.as_bytes(), scratch) else {
        return false;
    };
    let text = &scratch[..n];
    let Some(at) = text.windows(7).position(|w| w == b"SigBlk:") else {
        return false;
    };
    let mut mask = 0u64;
    for &c in text[at + 7..]
        .iter()
        .skip_while(|c| **c == b' ' || **c == b'\t')
    {
        match (c as char).to_digit(16) {
            Some(d) => mask = (mask << 4) | d as u64,
            None => break,
        }
    }
    (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0
}

/// The real-time signal used to collect the other threads' registers. Threads that
/// block it (a background thread with every signal blocked) can only be given
/// `rsp`/`rip` from `/proc`: keep it unblocked in threads whose registers matter.
pub(crate) fn collect_signal() -> c_int {
    match SIG.load(Ordering::Acquire) {
        0 => libc::SIGRTMAX() - 2,
        s => s,
    }
}

/// `rsp` and `rip` from `/proc/self/task/<tid>/syscall` (a thread blocked in a syscall).
fn regs_from_proc_syscall(tid: i32, scratch: &mut [u8]) -> Option<(u64, u64)> {
    let mut p = crashdump::fmt::FixedBuf::<64>::new();
    use std::fmt::Write;
    let _ = write!(p, "/proc/self/task/{tid}/syscall\0");
    let n = crashdump::sys::read_file(p.as_bytes(), scratch).ok()?;
    let line = &scratch[..n];
    // "<nr> <6 args> <sp> <pc>" (all hex but nr); "running" or "-1 sp pc" otherwise.
    let mut fields = line
        .split(|&c| c == b' ' || c == b'\n')
        .filter(|f| !f.is_empty());
    let nr = fields.next()?;
    if nr == b"running" {
        return None;
    }
    let rest: [&[u8]; 8] = {
        let mut a: [&[u8]; 8] = [b""; 8];
        let mut k = 0;
        for f in fields {
            if k < 8 {
                a[k] = f;
                k += 1;
            }
        }
        if k == 8 {
            a
        } else if k == 2 {
            [b"", b"", b"", b"", b"", b"", a[0], a[1]]
        } else {
            return None;
        }
    };
    let hex = |f: &[u8]| -> Option<u64> {
        let f = f.strip_prefix(b"0x").unwrap_or(f);
        let mut v = 0u64;
        for &c in f {
            v = (v << 4) | (c as char).to_digit(16)? as u64;
        }
        Some(v)
    };
    Some((hex(rest[6])?, hex(rest[7])?))
}

/// Gathers every thread's registers into `slots`. `slots[0]` must already hold the
/// crashing thread (when `first` is set), which is not signalled; otherwise every thread
/// is signalled, including the caller, and the main thread goes first. Returns (number
/// of threads, threads without registers).
pub(crate) fn collect(
    slots: &mut [ThreadRegs],
    first: Option<i32>,
    tids_scratch: &mut [i32],
    scratch: &mut [u8],
) -> (usize, u32) {
    let sig = SIG.load(Ordering::Acquire);
    let pid = getpid();
    let me = gettid();
    let cap = slots.len().min(MAX_THREADS);
    let mut ntids = list_tids(tids_scratch, scratch);
    // Order: crashing thread (or main thread) first.
    let lead = first.unwrap_or(pid);
    if let Some(p) = tids_scratch[..ntids].iter().position(|&t| t == lead) {
        tids_scratch.swap(0, p);
    } else if first.is_some() && ntids < tids_scratch.len() {
        tids_scratch.copy_within(0..ntids, 1);
        tids_scratch[0] = lead;
        ntids += 1;
    }
    let n = ntids.min(cap);
    COLLECTOR.store(me, Ordering::Release);
    RELEASE.store(0, Ordering::Release);
    ARRIVED.store(0, Ordering::Release);
    DEPARTED.store(0, Ordering::Release);
    SLOTS.store(slots.as_mut_ptr(), Ordering::Release);
    for i in 0..n {
        TIDS[i].store(tids_scratch[i], Ordering::Release);
        READY[i].store(first.is_some() && i == 0, Ordering::Release);
        if !(first.is_some() && i == 0) {
            slots[i] = ThreadRegs {
                tid: tids_scratch[i],
                ..Default::default()
            };
        }
    }
    NSLOTS.store(n as u32, Ordering::Release);
    ACTIVE.store(true, Ordering::Release);
    let mut sent = 0u32;
    if sig != 0 {
        for i in 0..n {
            if READY[i].load(Ordering::Acquire) {
                continue;
            }
            // A thread blocking the signal would only cost us the whole timeout.
            if signal_blocked(tids_scratch[i], sig, scratch) {
                continue;
            }
            if tgkill(pid, tids_scratch[i], sig) == 0 {
                sent += 1;
            }
        }
    }
    let mut waited = 0;
    while ARRIVED.load(Ordering::Acquire) < sent && waited < ANSWER_TIMEOUT_MS {
        sleep_ms(1);
        waited += 1;
    }
    let mut missing = 0;
    for i in 0..n {
        if !READY[i].load(Ordering::Acquire) {
            // Blocked in a syscall: the kernel tells rsp and rip, enough for gdb to
            // unwind by CFI. Otherwise the thread has no registers in the core.
            match regs_from_proc_syscall(tids_scratch[i], scratch) {
                Some((sp, pc)) => {
                    slots[i].regs[crashdump::regs::RSP] = sp;
                    slots[i].regs[crashdump::regs::RIP] = pc;
                    slots[i].regs[crashdump::regs::CS] = 0x33;
                    slots[i].regs[crashdump::regs::SS] = 0x2b;
                    slots[i].has_regs = true;
                }
                None => missing += 1,
            }
        }
    }
    (n, missing)
}

/// Lets parked threads go (live snapshot) and stops collecting.
pub(crate) fn release() {
    RELEASE.store(1, Ordering::Release);
    futex_wake_all(&RELEASE);
    let parked = ARRIVED.load(Ordering::Acquire).saturating_sub(1);
    let mut waited = 0;
    while DEPARTED.load(Ordering::Acquire) < parked && waited < 200 {
        sleep_ms(1);
        waited += 1;
    }
    ACTIVE.store(false, Ordering::Release);
}

/// After fork: nothing of the parent's collection applies.
pub(crate) fn reset_after_fork() {
    ACTIVE.store(false, Ordering::Release);
    RELEASE.store(1, Ordering::Release);
}
