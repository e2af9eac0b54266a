//! Backtrace of the crashing thread, starting at the faulting instruction.
//!
//! Primary: libgcc's `_Unwind_Backtrace` (CFI from `.eh_frame`, so code built without
//! frame pointers unwinds too) run from the handler: it walks our handler's frames, the
//! kernel's signal trampoline, then the interrupted code; frames before the one whose
//! ip is the faulting `rip` are dropped. Warmed up at configure time so nothing is
//! resolved lazily in the handler. Fallback when the unwinder cannot get past the
//! trampoline: the frame-pointer chain from the ucontext's `rbp`, checked against the
//! maps snapshot before every read.

use crashdump::Maps;
use std::ffi::{c_int, c_void};

#[link(name = "gcc_s")]
unsafe extern "C" {
    fn _Unwind_Backtrace(
        cb: extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIPInfo(ctx: *mut c_void, ip_before_insn: *mut c_int) -> usize;
}

const URC_NO_REASON: c_int = 0;
const URC_END_OF_STACK: c_int = 5;

struct Acc {
    buf: *mut u64,
    cap: usize,
    n: usize,
}

extern "C" fn cb(ctx: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Acc passed below.
    let acc = unsafe { &mut *(arg as *mut Acc) };
    if acc.n >= acc.cap {
        return URC_END_OF_STACK;
    }
    let mut before = 0;
    // SAFETY: ctx from the unwinder.
    let ip = unsafe { _Unwind_GetIPInfo(ctx, &mut before) } as u64;
    if ip == 0 {
        return URC_END_OF_STACK;
    }
    // SAFETY: n < cap.
    unsafe { *acc.buf.add(acc.n) = ip };
    acc.n += 1;
    URC_NO_REASON
}

/// Runs the unwinder once so its lazy setup (symbol binding, FDE caches) happens
/// outside any signal handler.
pub(crate) fn warm_up() {
    let mut tmp = [0u64; 4];
    let mut acc = Acc {
        buf: tmp.as_mut_ptr(),
        cap: tmp.len(),
        n: 0,
    };
    // SAFETY: valid callback and accumulator.
    unsafe { _Unwind_Backtrace(cb, &mut acc as *mut Acc as *mut c_void) };
}

/// Fills `out` with return addresses of the interrupted thread, `out[0] = pc`.
/// `raw` is scratch for the unwinder's frames (ours included). Returns the count.
pub(crate) fn backtrace(
    pc: u64,
    fp: u64,
    maps: &Maps<'_>,
    raw: &mut [u64],
    out: &mut [u64],
) -> usize {
    if out.is_empty() {
        return 0;
    }
    let mut acc = Acc {
        buf: raw.as_mut_ptr(),
        cap: raw.len(),
        n: 0,
    };
    // SAFETY: valid callback and accumulator.
    unsafe { _Unwind_Backtrace(cb, &mut acc as *mut Acc as *mut c_void) };
    if let Some(start) = raw[..acc.n].iter().position(|&ip| ip == pc) {
        let n = (acc.n - start).min(out.len());
        out[..n].copy_from_slice(&raw[start..start + n]);
        // A stack overflow's unwind can be cut by `raw`'s size: fine, the top is what
        // matters.
        if n > 1 {
            return n;
        }
    }
    frame_pointer_walk(pc, fp, maps, out)
}

/// Frame-pointer chain walk, reading only addresses inside readable, writable
/// mappings of the snapshot.
pub(crate) fn frame_pointer_walk(pc: u64, mut fp: u64, maps: &Maps<'_>, out: &mut [u64]) -> usize {
    out[0] = pc;
    let mut n = 1;
    let ok = |a: u64| {
        a.is_multiple_of(8)
            && maps
                .find(a)
                .is_some_and(|m| m.readable() && m.writable() && a + 16 <= m.end)
    };
    while n < out.len() && fp != 0 && ok(fp) {
        // SAFETY: fp and fp+8 are inside a readable mapping (checked above).
        let (next, ret) = unsafe { (*(fp as *const u64), *((fp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}
