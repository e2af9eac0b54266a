//! stdio writers that `write` never sees: libc's stdio flushes its buffers with an
//! internal write that does not go through the PLT, so without these hooks the output of
//! `printf`/`fprintf`/`dprintf` and of the single-character writers (`putchar`,
//! `fputc`, `putc`) was missed (console events, fs.write counts). `fwrite`, `fputs` and
//! `puts` are in `libc_fns`.
//!
//! Output is recorded when the application hands it to stdio (call time), through
//! [`record::data`] with the call's return value as the byte count, exactly once: the
//! later flush happens inside libc and is not seen again.
//!
//! The variadic functions are x86_64 only: stable Rust cannot define a C variadic
//! function, so each is a naked trampoline that builds a `va_list` from the argument
//! registers (as `va_start` does) and calls a Rust hook that forwards to the `v`
//! function (`printf` -> `vfprintf(stdout, ...)`, `__printf_chk` -> `__vfprintf_chk`).
//! The text for events is formatted a second time with `vsnprintf` on a copy of the
//! `va_list`, only when a consumer (console or log-file event, protocol detection) asks
//! for the bytes; the metrics only need the count. The `v` functions themselves are
//! interposed too.

#![allow(clippy::missing_safety_doc, non_snake_case)]

use std::panic::AssertUnwindSafe;

use libc::{FILE, c_int};

use super::guard::{self, Guard};
use super::real::{Real, errno, set_errno};
use super::record::{self, Dir};

/// Record a write of `n` bytes (or an error, `n < 0`) to `fd`, the bytes given on demand.
/// `errno` is preserved.
fn record_write(fd: c_int, n: isize, bytes: record::Bytes<'_>, op: &'static str) {
    if fd < 0 {
        return;
    }
    let saved = errno();
    {
        let _g = Guard::enter();
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
            record::data(fd, Dir::Write, n, bytes, 0, op)
        }));
    }
    set_errno(saved);
}

fn fd_of(fp: *mut FILE) -> c_int {
    if fp.is_null() {
        return -1;
    }
    // SAFETY: the application's stream, which the real call just used.
    unsafe { libc::fileno(fp) }
}

// ---- single characters and the _unlocked writers -------------------------------------

type CharFn = unsafe extern "C" fn(c_int, *mut FILE) -> c_int;

macro_rules! char_writer {
    ($name:ident) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(c: c_int, fp: *mut FILE) -> c_int {
            static REAL: Real = Real::new(concat!(stringify!($name), "\0"));
            let addr = REAL.addr();
            if addr == 0 {
                set_errno(libc::ENOSYS);
                return libc::EOF;
            }
            // SAFETY: the libc symbol has exactly this C signature.
            let f: CharFn = unsafe { std::mem::transmute(addr) };
            let r = unsafe { f(c, fp) };
            if !guard::active() && r != libc::EOF {
                let b = [c as u8];
                record_write(fd_of(fp), 1, &|f| f(&b), stringify!($name));
            }
            r
        }
    };
}

char_writer!(fputc);
char_writer!(putc);
char_writer!(_IO_putc);
char_writer!(fputc_unlocked);
char_writer!(putc_unlocked);

type PutcharFn = unsafe extern "C" fn(c_int) -> c_int;

macro_rules! putchar_writer {
    ($name:ident) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(c: c_int) -> c_int {
            static REAL: Real = Real::new(concat!(stringify!($name), "\0"));
            let addr = REAL.addr();
            if addr == 0 {
                set_errno(libc::ENOSYS);
                return libc::EOF;
            }
            // SAFETY: the libc symbol has exactly this C signature.
            let f: PutcharFn = unsafe { std::mem::transmute(addr) };
            let r = unsafe { f(c) };
            if !guard::active() && r != libc::EOF {
                let b = [c as u8];
                record_write(1, 1, &|f| f(&b), stringify!($name));
            }
            r
        }
    };
}

putchar_writer!(putchar);
putchar_writer!(putchar_unlocked);

type FputsFn = unsafe extern "C" fn(*const libc::c_char, *mut FILE) -> c_int;

/// `fputs_unlocked` (the locked `fputs` is in `libc_fns`).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fputs_unlocked(s: *const libc::c_char, fp: *mut FILE) -> c_int {
    static REAL: Real = Real::new("fputs_unlocked\0");
    let addr = REAL.addr();
    if addr == 0 {
        set_errno(libc::ENOSYS);
        return libc::EOF;
    }
    // SAFETY: the libc symbol has exactly this C signature.
    let f: FputsFn = unsafe { std::mem::transmute(addr) };
    let r = unsafe { f(s, fp) };
    if !guard::active() && r >= 0 && !s.is_null() {
        // SAFETY: the application's NUL-terminated string, just written.
        let b = unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes();
        record_write(fd_of(fp), b.len() as isize, &|f| f(b), "fputs_unlocked");
    }
    r
}

type FwriteFn = unsafe extern "C" fn(*const libc::c_void, usize, usize, *mut FILE) -> usize;

/// `fwrite_unlocked` (the locked `fwrite` is in `libc_fns`).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fwrite_unlocked(
    p: *const libc::c_void,
    size: usize,
    nmemb: usize,
    fp: *mut FILE,
) -> usize {
    static REAL: Real = Real::new("fwrite_unlocked\0");
    let addr = REAL.addr();
    if addr == 0 {
        set_errno(libc::ENOSYS);
        return 0;
    }
    // SAFETY: the libc symbol has exactly this C signature.
    let f: FwriteFn = unsafe { std::mem::transmute(addr) };
    let r = unsafe { f(p, size, nmemb, fp) };
    if !guard::active() && !p.is_null() {
        let n = r.saturating_mul(size);
        // SAFETY: the real call consumed `n` bytes at `p`.
        let b = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) };
        record_write(fd_of(fp), n as isize, &|f| f(b), "fwrite_unlocked");
    }
    r
}

// ---- the printf family (x86_64) -------------------------------------------------------

#[cfg(target_arch = "x86_64")]
pub use printf::*;

#[cfg(target_arch = "x86_64")]
mod printf {
    use super::*;
    use libc::{c_char, c_void};

    /// The System V x86_64 `va_list` element (`va_list` is an array of one of these, so a
    /// function taking a `va_list` receives a pointer to it; `va_copy` is a plain copy).
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct VaList {
        gp_offset: u32,
        fp_offset: u32,
        overflow_arg_area: *mut c_void,
        reg_save_area: *mut c_void,
    }

    unsafe extern "C" {
        static mut stdout: *mut FILE;
        fn vsnprintf(buf: *mut c_char, n: usize, fmt: *const c_char, ap: *mut VaList) -> c_int;
    }

    /// Largest text formatted again for events and protocol detection.
    const MAX_TEXT: usize = 1 << 20;

    /// Where the output went.
    #[derive(Clone, Copy)]
    enum To {
        Stream(*mut FILE),
        Fd(c_int),
    }

    type VFn = unsafe extern "C" fn(*mut FILE, *const c_char, *mut VaList) -> c_int;
    type VChkFn = unsafe extern "C" fn(*mut FILE, c_int, *const c_char, *mut VaList) -> c_int;
    type DFn = unsafe extern "C" fn(c_int, *const c_char, *mut VaList) -> c_int;
    type DChkFn = unsafe extern "C" fn(c_int, c_int, *const c_char, *mut VaList) -> c_int;

    /// The real `v` function, called with its fixed arguments.
    enum Call {
        V(VFn),
        VChk(VChkFn),
        D(DFn),
        DChk(DChkFn),
    }

    static VFPRINTF: Real = Real::new("vfprintf\0");
    static VFPRINTF_CHK: Real = Real::new("__vfprintf_chk\0");
    static VDPRINTF: Real = Real::new("vdprintf\0");
    static VDPRINTF_CHK: Real = Real::new("__vdprintf_chk\0");

    /// Forward to the real `v` function, then record what it wrote.
    unsafe fn forward(
        to: To,
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
        op: &'static str,
    ) -> c_int {
        let entry_errno = errno();
        let (real, chk, fd_based) = match (to, op.contains("_chk")) {
            (To::Stream(_), false) => (&VFPRINTF, false, false),
            (To::Stream(_), true) => (&VFPRINTF_CHK, true, false),
            (To::Fd(_), false) => (&VDPRINTF, false, true),
            (To::Fd(_), true) => (&VDPRINTF_CHK, true, true),
        };
        let addr = real.addr();
        if addr == 0 || ap.is_null() {
            set_errno(libc::ENOSYS);
            return -1;
        }
        // SAFETY: the symbol has the signature its name says.
        let call = unsafe {
            match (fd_based, chk) {
                (false, false) => Call::V(std::mem::transmute::<usize, VFn>(addr)),
                (false, true) => Call::VChk(std::mem::transmute::<usize, VChkFn>(addr)),
                (true, false) => Call::D(std::mem::transmute::<usize, DFn>(addr)),
                (true, true) => Call::DChk(std::mem::transmute::<usize, DChkFn>(addr)),
            }
        };
        let active = guard::active();
        // `va_copy` before the real call consumes the list.
        // SAFETY: ap points to the caller's (or our trampoline's) live va_list.
        let pristine = unsafe { *ap };
        let r = unsafe {
            match (call, to) {
                (Call::V(f), To::Stream(fp)) => f(fp, fmt, ap),
                (Call::VChk(f), To::Stream(fp)) => f(fp, flag, fmt, ap),
                (Call::D(f), To::Fd(fd)) => f(fd, fmt, ap),
                (Call::DChk(f), To::Fd(fd)) => f(fd, flag, fmt, ap),
                _ => -1,
            }
        };
        if active || fmt.is_null() {
            return r;
        }
        let fd = match to {
            To::Stream(fp) => fd_of(fp),
            To::Fd(fd) => fd,
        };
        let n = r as isize;
        record_write(
            fd,
            n,
            &|sink| {
                if n <= 0 {
                    return;
                }
                let len = (n as usize).min(MAX_TEXT);
                let mut buf = vec![0u8; len + 1];
                let mut copy = pristine;
                // `%m` must see the errno of the call.
                set_errno(entry_errno);
                // SAFETY: buf has len + 1 bytes; copy is a va_copy of the list the real
                // call used, whose register save area and stack arguments are still live.
                let w = unsafe { vsnprintf(buf.as_mut_ptr().cast(), len + 1, fmt, &mut copy) };
                if w >= 0 {
                    sink(&buf[..(w as usize).min(len)]);
                }
            },
            op,
        );
        r
    }

    // The `v` functions: plain fixed-argument interposers.

    #[cfg_attr(not(test), unsafe(no_mangle))]
    pub unsafe extern "C" fn vprintf(fmt: *const c_char, ap: *mut VaList) -> c_int {
        // SAFETY: reading libc's stdout pointer.
        unsafe { forward(To::Stream(stdout), 0, fmt, ap, "vprintf") }
    }

    #[cfg_attr(not(test), unsafe(no_mangle))]
    pub unsafe extern "C" fn vfprintf(fp: *mut FILE, fmt: *const c_char, ap: *mut VaList) -> c_int {
        unsafe { forward(To::Stream(fp), 0, fmt, ap, "vfprintf") }
    }

    #[cfg_attr(not(test), unsafe(no_mangle))]
    pub unsafe extern "C" fn __vprintf_chk(
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
    ) -> c_int {
        // SAFETY: reading libc's stdout pointer.
        unsafe { forward(To::Stream(stdout), flag, fmt, ap, "__vprintf_chk") }
    }

    #[cfg_attr(not(test), unsafe(no_mangle))]
    pub unsafe extern "C" fn __vfprintf_chk(
        fp: *mut FILE,
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
    ) -> c_int {
        unsafe { forward(To::Stream(fp), flag, fmt, ap, "__vfprintf_chk") }
    }

    #[cfg_attr(not(test), unsafe(no_mangle))]
    pub unsafe extern "C" fn vdprintf(fd: c_int, fmt: *const c_char, ap: *mut VaList) -> c_int {
        unsafe { forward(To::Fd(fd), 0, fmt, ap, "vdprintf") }
    }

    #[cfg_attr(not(test), unsafe(no_mangle))]
    pub unsafe extern "C" fn __vdprintf_chk(
        fd: c_int,
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
    ) -> c_int {
        unsafe { forward(To::Fd(fd), flag, fmt, ap, "__vdprintf_chk") }
    }

    // Hooks the trampolines call: the named arguments, then the built va_list.

    unsafe extern "C" fn hook_printf(fmt: *const c_char, ap: *mut VaList) -> c_int {
        // SAFETY: reading libc's stdout pointer.
        unsafe { forward(To::Stream(stdout), 0, fmt, ap, "printf") }
    }
    unsafe extern "C" fn hook_fprintf(fp: *mut FILE, fmt: *const c_char, ap: *mut VaList) -> c_int {
        unsafe { forward(To::Stream(fp), 0, fmt, ap, "fprintf") }
    }
    unsafe extern "C" fn hook_dprintf(fd: c_int, fmt: *const c_char, ap: *mut VaList) -> c_int {
        unsafe { forward(To::Fd(fd), 0, fmt, ap, "dprintf") }
    }
    unsafe extern "C" fn hook_printf_chk(
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
    ) -> c_int {
        // SAFETY: reading libc's stdout pointer.
        unsafe { forward(To::Stream(stdout), flag, fmt, ap, "__printf_chk") }
    }
    unsafe extern "C" fn hook_fprintf_chk(
        fp: *mut FILE,
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
    ) -> c_int {
        unsafe { forward(To::Stream(fp), flag, fmt, ap, "__fprintf_chk") }
    }
    unsafe extern "C" fn hook_dprintf_chk(
        fd: c_int,
        flag: c_int,
        fmt: *const c_char,
        ap: *mut VaList,
    ) -> c_int {
        unsafe { forward(To::Fd(fd), flag, fmt, ap, "__dprintf_chk") }
    }

    /// A variadic entry point: saves the six integer argument registers and, when `al`
    /// says vector registers carry arguments, xmm0-7 into a register save area on the
    /// stack; fills a `va_list` after it (`gp_offset` = 8 per named argument, `fp_offset`
    /// = 48, the stack arguments above the return address); passes its address as the
    /// argument after the named ones (`$va`), and calls `$hook`, whose result it returns.
    ///
    /// Frame (16-byte aligned after `push rbp`): [rsp+0,48) integer registers,
    /// [rsp+48,176) xmm0-7, [rsp+176,200) the va_list.
    macro_rules! variadic {
        ($name:ident, $hook:ident, $gp:literal, $va:literal) => {
            #[cfg_attr(not(test), unsafe(no_mangle))]
            #[unsafe(naked)]
            pub unsafe extern "C" fn $name() {
                core::arch::naked_asm!(
                    "push rbp",
                    "mov rbp, rsp",
                    "sub rsp, 208",
                    "mov [rsp], rdi",
                    "mov [rsp + 8], rsi",
                    "mov [rsp + 16], rdx",
                    "mov [rsp + 24], rcx",
                    "mov [rsp + 32], r8",
                    "mov [rsp + 40], r9",
                    "test al, al",
                    "je 2f",
                    "movaps [rsp + 48], xmm0",
                    "movaps [rsp + 64], xmm1",
                    "movaps [rsp + 80], xmm2",
                    "movaps [rsp + 96], xmm3",
                    "movaps [rsp + 112], xmm4",
                    "movaps [rsp + 128], xmm5",
                    "movaps [rsp + 144], xmm6",
                    "movaps [rsp + 160], xmm7",
                    "2:",
                    concat!("mov dword ptr [rsp + 176], ", $gp),
                    "mov dword ptr [rsp + 180], 48",
                    "lea rax, [rbp + 16]",
                    "mov [rsp + 184], rax",
                    "mov [rsp + 192], rsp",
                    concat!("lea ", $va, ", [rsp + 176]"),
                    "call {hook}",
                    "leave",
                    "ret",
                    hook = sym $hook,
                )
            }
        };
    }

    variadic!(printf, hook_printf, "8", "rsi");
    variadic!(fprintf, hook_fprintf, "16", "rdx");
    variadic!(dprintf, hook_dprintf, "16", "rdx");
    variadic!(__printf_chk, hook_printf_chk, "16", "rdx");
    variadic!(__fprintf_chk, hook_fprintf_chk, "24", "rcx");
    variadic!(__dprintf_chk, hook_dprintf_chk, "24", "rcx");
}
