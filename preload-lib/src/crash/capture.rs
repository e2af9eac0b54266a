//! What runs in the fatal-signal handler (and for live snapshots).
//!
//! Rules: no allocation, no locks, only async-signal-safe calls. All buffers live in
//! one anonymous mapping made at configure time ([`Work`], marked `MADV_DONTDUMP` so it
//! never bloats the cores). One capture at a time: the first thread takes
//! [`CAPTURING`]; another thread crashing meanwhile waits (it stays parked and its
//! registers go into the same core, at its fault); a crash inside our own capture lets
//! the process die with the original signal.

use super::signals::{app_load, app_reset, set_default};
use super::threads::{self, MAX_THREADS, getpid, gettid, tgkill};
use super::{Prepared, bundle, prepared, unwind};
use crashdump::fmt::FixedBuf;
use crashdump::{Mapping, Maps, ThreadRegs};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

pub(crate) const MAX_MAPS: usize = 8192;
pub(crate) const MAX_FRAMES: usize = 128;
const RAW_FRAMES: usize = 512;

/// Preallocated buffers for one capture.
pub(crate) struct Work {
    pub maps: MapsBuf,
    pub text: Text,
    pub buf: Buf,
}

/// Text of the file being written (large: never put one on the stack).
pub(crate) type Text = FixedBuf<{ 256 * 1024 }>;

/// Storage for the maps snapshot.
pub(crate) struct MapsBuf {
    pub slots: [Mapping; MAX_MAPS],
    pub names: [u8; 1 << 20],
}

/// Everything else.
pub(crate) struct Buf {
    pub scratch: [u8; 1 << 20],
    pub threads: [ThreadRegs; MAX_THREADS],
    pub tids: [i32; MAX_THREADS],
    pub raw_frames: [u64; RAW_FRAMES],
    pub frames: [u64; MAX_FRAMES],
    pub nframes: usize,
    pub auxv: [u8; 8192],
    pub auxv_len: usize,
    pub comm: [u8; 64],
    pub comm_len: usize,
    pub tname: [u8; 64],
    pub tname_len: usize,
    pub cmdline: [u8; 4096],
    pub cmdline_len: usize,
    pub path: FixedBuf<4096>,
    pub symname: [u8; 1024],
    pub siginfo: [u8; 128],
}

static WORK: AtomicPtr<Work> = AtomicPtr::new(std::ptr::null_mut());
/// Tid of the thread capturing now (0: none).
static CAPTURING: AtomicI32 = AtomicI32::new(0);
/// Signal being captured (for a crash inside the capture).
static ORIG_SIG: AtomicI32 = AtomicI32::new(0);

/// Maps the capture buffers once (normal context).
pub(crate) fn prepare_buffers() {
    if !WORK.load(Ordering::Acquire).is_null() {
        return;
    }
    let len = std::mem::size_of::<Work>().next_multiple_of(4096);
    // SAFETY: fresh anonymous mapping; all-zero bytes are a valid `Work`.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return;
    }
    // SAFETY: our mapping.
    unsafe { libc::madvise(p, len, libc::MADV_DONTDUMP) };
    if WORK
        .compare_exchange(
            std::ptr::null_mut(),
            p.cast(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: lost the race; unmap ours.
        unsafe { libc::munmap(p, len) };
    }
}

pub(crate) fn reset_after_fork() {
    CAPTURING.store(0, Ordering::Release);
    threads::reset_after_fork();
}

fn raise_default(sig: c_int) {
    set_default(sig);
    tgkill(getpid(), gettid(), sig);
    // Make sure it is not blocked.
    // SAFETY: valid sigset ops.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// The handler for SIGSEGV, SIGBUS, SIGILL, SIGFPE.
pub(crate) extern "C" fn on_fatal(sig: c_int, info: *mut libc::siginfo_t, ucv: *mut c_void) {
    // 1. The application's own handler runs instead (JVM, Go, crash reporters): no
    //    bundle, no death unless it decides so.
    let app = app_load(sig);
    if app.sa_sigaction != libc::SIG_DFL && app.sa_sigaction != libc::SIG_IGN {
        if app.sa_flags & libc::SA_RESETHAND != 0 {
            app_reset(sig);
        }
        // SAFETY: mask manipulation with valid sets; calling the app's handler with the
        // kernel's arguments.
        unsafe {
            let uc = ucv as *mut libc::ucontext_t;
            let mut mask = (*uc).uc_sigmask;
            for s in 1..65 {
                if libc::sigismember(&app.sa_mask, s) == 1 {
                    libc::sigaddset(&mut mask, s);
                }
            }
            if app.sa_flags & libc::SA_NODEFER == 0 {
                libc::sigaddset(&mut mask, sig);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            if app.sa_flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                    std::mem::transmute(app.sa_sigaction);
                f(sig, info, ucv);
            } else {
                let f: extern "C" fn(c_int) = std::mem::transmute(app.sa_sigaction);
                f(sig);
            }
        }
        return;
    }

    // 2. A fatal signal sent by kill/raise/sigqueue (si_code <= 0) is not a crash: no
    //    bundle, the default action (this also keeps a supervisor such as `timeout`,
    //    which re-raises its child's signal, from producing a bundle of its own).
    // SAFETY: info from the kernel.
    if unsafe { (*info).si_code } <= 0 {
        raise_default(sig);
        return;
    }

    // 3. One capture at a time.
    let tid = gettid();
    let mut parked = false;
    loop {
        match CAPTURING.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                if parked {
                    threads::unpark_fault(tid);
                }
                break;
            }
            Err(t) if t == tid => {
                // We crashed inside our own capture: die with the original signal.
                let orig = ORIG_SIG.load(Ordering::Acquire);
                let orig = if orig != 0 { orig } else { sig };
                set_default(sig);
                raise_default(orig);
                return;
            }
            Err(_) => {
                // Another thread is capturing: wait. A crash capture ends with the
                // process's death; a live snapshot releases us and we capture after it.
                // Our registers at the fault go into that capture's core.
                if !parked {
                    // SAFETY: ucv from the kernel.
                    let mut r = unsafe { threads::regs_from_uc(tid, ucv as *const _) };
                    r.cursig = sig;
                    threads::park_fault(r);
                    parked = true;
                }
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                // SAFETY: valid timespec.
                unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            }
        }
    }
    ORIG_SIG.store(sig, Ordering::Release);

    // 4. Capture.
    let work = WORK.load(Ordering::Acquire);
    if let (Some(p), false) = (prepared(), work.is_null())
        && (p.backtrace || p.coredump)
    {
        // SAFETY: exclusive use under CAPTURING; info/uc from the kernel.
        unsafe { capture_crash(p, &mut *work, sig, info, ucv as *const libc::ucontext_t) };
    }

    // 5. Die as without us: default action, and the faulting instruction runs again
    //    on return and gets the kernel's default handling (exit status, kernel core).
    set_default(sig);
}

fn now() -> (u64, u32) {
    // SAFETY: zeroed timespec out buffer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What is being captured.
pub(crate) enum Kind<'a> {
    Crash {
        sig: c_int,
        info: &'a libc::siginfo_t,
        uc: *const libc::ucontext_t,
    },
    Snapshot,
}

/// # Safety
/// `work` is used exclusively; `info`/`uc` come from the kernel.
unsafe fn capture_crash(
    p: &Prepared,
    work: &mut Work,
    sig: c_int,
    info: *mut libc::siginfo_t,
    uc: *const libc::ucontext_t,
) {
    // SAFETY: per contract.
    let info = unsafe { &*info };
    // SAFETY: siginfo_t is 128 bytes.
    let raw = unsafe { std::slice::from_raw_parts(info as *const _ as *const u8, 128) };
    work.buf.siginfo.copy_from_slice(raw);
    let _ = write_bundle(p, work, Kind::Crash { sig, info, uc });
}

/// Live snapshot (normal context): same bundle, `snapshot_<ts>.json`.
pub(crate) fn snapshot(p: &Prepared) -> Result<String, String> {
    let work = WORK.load(Ordering::Acquire);
    if work.is_null() {
        return Err("crash capture buffers could not be mapped".into());
    }
    let tid = gettid();
    let mut waited = 0;
    while CAPTURING
        .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        if waited > 5000 {
            return Err("another capture is in progress".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        waited += 1;
    }
    // SAFETY: exclusive under CAPTURING.
    let r = write_bundle(p, unsafe { &mut *work }, Kind::Snapshot);
    CAPTURING.store(0, Ordering::Release);
    r.map_err(|e| e.to_string())
}

/// Writes one bundle; returns its directory.
fn write_bundle(
    p: &Prepared,
    work: &mut Work,
    kind: Kind<'_>,
) -> Result<String, bundle::BundleErr> {
    let pid = getpid();
    let tid = gettid();
    let (secs, nanos) = now();
    let Work {
        maps: mbuf,
        text,
        buf: work,
    } = work;
    // Process facts.
    work.comm_len = read_small(b"/proc/self/comm\0", &mut work.comm, &mut work.scratch);
    trim_nl(&mut work.comm, &mut work.comm_len);
    {
        let mut path = FixedBuf::<64>::new();
        use std::fmt::Write;
        // The lead thread: the crashing one, or the main thread for a snapshot.
        let lead = if matches!(kind, Kind::Snapshot) {
            pid
        } else {
            tid
        };
        let _ = write!(path, "/proc/self/task/{lead}/comm\0");
        work.tname_len = read_small(path.as_bytes(), &mut work.tname, &mut work.scratch);
        trim_nl(&mut work.tname, &mut work.tname_len);
    }
    work.cmdline_len = read_small(
        b"/proc/self/cmdline\0",
        &mut work.cmdline,
        &mut work.scratch,
    );
    for b in work.cmdline[..work.cmdline_len].iter_mut() {
        if *b == 0 {
            *b = b' ';
        }
    }
    while work.cmdline_len > 0 && work.cmdline[work.cmdline_len - 1] == b' ' {
        work.cmdline_len -= 1;
    }

    // Directory and timestamp (info_<ts> created with O_EXCL).
    let (dir_len, ts, info_fd) = bundle::create_bundle(p, pid, secs, nanos, &mut work.path)?;

    // Maps snapshot (smaps when a core is wanted: MADV_DONTDUMP and COW information).
    let mut maps = Maps::new(&mut mbuf.slots, &mut mbuf.names);
    let _ = maps.read_pid(0, p.coredump, &mut work.scratch);

    // Lead thread's registers and frames: the crashing thread (from its ucontext,
    // unwound with CFI), or for a snapshot the main thread (registers collected by
    // signal, frame-pointer walk).
    let mut collected = None;
    let (lead_regs, sig_info) = match &kind {
        Kind::Crash { sig, info, uc } => {
            // SAFETY: uc from the kernel.
            let r = unsafe { threads::regs_from_uc(tid, *uc) };
            (r, Some((*sig, *info)))
        }
        Kind::Snapshot => {
            collected = Some(threads::collect(
                &mut work.threads,
                None,
                &mut work.tids,
                &mut work.scratch[..64 * 1024],
            ));
            (work.threads[0], None)
        }
    };
    work.nframes = match &kind {
        Kind::Crash { .. } => unwind::backtrace(
            lead_regs.pc(),
            lead_regs.fp(),
            &maps,
            &mut work.raw_frames,
            &mut work.frames,
        ),
        Kind::Snapshot => {
            unwind::frame_pointer_walk(lead_regs.pc(), lead_regs.fp(), &maps, &mut work.frames)
        }
    };

    let ctx = bundle::Ctx {
        p,
        pid,
        tid: lead_regs.tid,
        secs,
        ts,
        dir_len,
        sig: sig_info,
        lead: &lead_regs,
    };

    // info_<ts>
    bundle::write_info(&ctx, text, work, &maps, info_fd);
    crashdump::sys::close(info_fd);
    // cfg_<ts>
    bundle::write_simple(&ctx, &mut work.path, "cfg_", "", &p.cfg);
    // backtrace_<ts>
    if p.backtrace {
        bundle::write_backtrace(&ctx, text, work, &maps);
    }
    // core_<ts>
    let mut core = None;
    if p.coredump {
        core = bundle::write_core_file(&ctx, work, &mut maps, collected);
    }
    // crash_<ts>.json / snapshot_<ts>.json, then done_<ts>.
    bundle::write_json(&ctx, text, work, &maps, core.as_ref());
    bundle::write_simple(&ctx, &mut work.path, "done_", "", b"");
    if matches!(kind, Kind::Snapshot) {
        threads::release();
    }
    Ok(String::from_utf8_lossy(&work.path.as_bytes()[..dir_len]).into_owned())
}

fn read_small(path: &[u8], out: &mut [u8], scratch: &mut [u8]) -> usize {
    match crashdump::sys::read_file(path, scratch) {
        Ok(n) => {
            let k = n.min(out.len());
            out[..k].copy_from_slice(&scratch[..k]);
            k
        }
        Err(_) => 0,
    }
}

fn trim_nl(b: &mut [u8], len: &mut usize) {
    while *len > 0 && (b[*len - 1] == b'\n' || b[*len - 1] == 0) {
        *len -= 1;
    }
}
