//! Per-thread register state in the kernel's core-file layout (x86_64).

/// `struct user_regs_struct` order (what NT_PRSTATUS carries).
pub const NREGS: usize = 27;
pub const R15: usize = 0;
pub const R14: usize = 1;
pub const R13: usize = 2;
pub const R12: usize = 3;
pub const RBP: usize = 4;
pub const RBX: usize = 5;
pub const R11: usize = 6;
pub const R10: usize = 7;
pub const R9: usize = 8;
pub const R8: usize = 9;
pub const RAX: usize = 10;
pub const RCX: usize = 11;
pub const RDX: usize = 12;
pub const RSI: usize = 13;
pub const RDI: usize = 14;
pub const ORIG_RAX: usize = 15;
pub const RIP: usize = 16;
pub const CS: usize = 17;
pub const EFLAGS: usize = 18;
pub const RSP: usize = 19;
pub const SS: usize = 20;
pub const FS_BASE: usize = 21;
pub const GS_BASE: usize = 22;
pub const DS: usize = 23;
pub const ES: usize = 24;
pub const FS: usize = 25;
pub const GS: usize = 26;

/// Register names in `user_regs_struct` order (as gdb names them).
pub const REG_NAMES: [&str; NREGS] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// Size of the FXSAVE area (`struct user_fpregs_struct`, NT_FPREGSET).
pub const FPREGS_LEN: usize = 512;

/// One thread's state for the core file.
#[derive(Clone, Copy)]
pub struct ThreadRegs {
    pub tid: i32,
    /// `user_regs_struct` as 27 words.
    pub regs: [u64; NREGS],
    /// FXSAVE area (`user_fpregs_struct`).
    pub fpregs: [u8; FPREGS_LEN],
    /// False when the registers could not be captured (they are zero in the core).
    pub has_regs: bool,
    pub has_fpregs: bool,
    /// Signal being delivered to this thread (`pr_cursig`), 0 if none.
    pub cursig: i32,
    /// Blocked signals mask (`pr_sighold`).
    pub sighold: u64,
}

impl Default for ThreadRegs {
    fn default() -> Self {
        ThreadRegs {
            tid: 0,
            regs: [0; NREGS],
            fpregs: [0; FPREGS_LEN],
            has_regs: false,
            has_fpregs: false,
            cursig: 0,
            sighold: 0,
        }
    }
}

/// The kernel's pointer to the saved FXSAVE area in a signal frame's `mcontext_t`.
#[cfg(not(target_env = "musl"))]
fn fpregs_ptr(mc: &libc::mcontext_t) -> *const u8 {
    mc.fpregs as *const u8
}

/// The kernel's pointer to the saved FXSAVE area in a signal frame's `mcontext_t`. musl's
/// `mcontext_t` is the kernel's `struct sigcontext` too (23 general registers, then the
/// `fpstate` pointer, then reserved words), but the libc crate keeps the words after the
/// registers private: read the pointer at its kernel offset.
#[cfg(target_env = "musl")]
fn fpregs_ptr(mc: &libc::mcontext_t) -> *const u8 {
    const _: () = assert!(core::mem::size_of::<libc::mcontext_t>() == (23 + 1 + 8) * 8);
    let at = core::ptr::addr_of!(mc.gregs).cast::<u8>();
    // SAFETY: `mcontext_t` is 32 words (checked above); word 23 is the fpstate pointer,
    // inside the borrowed value; read unaligned-tolerant.
    unsafe { at.add(23 * 8).cast::<*const u8>().read_unaligned() }
}

impl ThreadRegs {
    pub fn pc(&self) -> u64 {
        self.regs[RIP]
    }
    pub fn sp(&self) -> u64 {
        self.regs[RSP]
    }
    pub fn fp(&self) -> u64 {
        self.regs[RBP]
    }

    /// Registers from a signal handler's `ucontext_t` (the interrupted state, not the
    /// handler's). `fs_base` / `gs_base` are not in the ucontext: pass the values read
    /// with `arch_prctl(ARCH_GET_FS/GS)` in that thread (0 if unknown).
    ///
    /// # Safety
    /// `uc` must point to a valid `ucontext_t` as given to an `SA_SIGINFO` handler.
    pub unsafe fn from_ucontext(
        tid: i32,
        uc: *const libc::ucontext_t,
        fs_base: u64,
        gs_base: u64,
    ) -> ThreadRegs {
        let mut t = ThreadRegs {
            tid,
            has_regs: true,
            ..Default::default()
        };
        // SAFETY: caller guarantees uc is valid.
        let uc = unsafe { &*uc };
        let g = &uc.uc_mcontext.gregs;
        let r = &mut t.regs;
        r[R8] = g[libc::REG_R8 as usize] as u64;
        r[R9] = g[libc::REG_R9 as usize] as u64;
        r[R10] = g[libc::REG_R10 as usize] as u64;
        r[R11] = g[libc::REG_R11 as usize] as u64;
        r[R12] = g[libc::REG_R12 as usize] as u64;
        r[R13] = g[libc::REG_R13 as usize] as u64;
        r[R14] = g[libc::REG_R14 as usize] as u64;
        r[R15] = g[libc::REG_R15 as usize] as u64;
        r[RDI] = g[libc::REG_RDI as usize] as u64;
        r[RSI] = g[libc::REG_RSI as usize] as u64;
        r[RBP] = g[libc::REG_RBP as usize] as u64;
        r[RBX] = g[libc::REG_RBX as usize] as u64;
        r[RDX] = g[libc::REG_RDX as usize] as u64;
        r[RAX] = g[libc::REG_RAX as usize] as u64;
        r[RCX] = g[libc::REG_RCX as usize] as u64;
        r[RSP] = g[libc::REG_RSP as usize] as u64;
        r[RIP] = g[libc::REG_RIP as usize] as u64;
        r[EFLAGS] = g[libc::REG_EFL as usize] as u64;
        let csgsfs = g[libc::REG_CSGSFS as usize] as u64;
        r[CS] = csgsfs & 0xffff;
        r[GS] = (csgsfs >> 16) & 0xffff;
        r[FS] = (csgsfs >> 32) & 0xffff;
        let ss = (csgsfs >> 48) & 0xffff;
        r[SS] = if ss != 0 { ss } else { 0x2b };
        r[ORIG_RAX] = u64::MAX;
        r[FS_BASE] = fs_base;
        r[GS_BASE] = gs_base;
        let fpregs = fpregs_ptr(&uc.uc_mcontext);
        if !fpregs.is_null() {
            // SAFETY: fpregs points to the 512-byte FXSAVE area saved by the kernel.
            let src = unsafe { core::slice::from_raw_parts(fpregs, FPREGS_LEN) };
            t.fpregs.copy_from_slice(src);
            t.has_fpregs = true;
        }
        // Blocked mask at the time of the signal: first word of uc_sigmask.
        // SAFETY: sigset_t is at least 8 bytes.
        t.sighold = unsafe { *(&uc.uc_sigmask as *const libc::sigset_t as *const u64) };
        t
    }

    /// Registers of a ptrace-stopped thread (`PTRACE_GETREGS` / `PTRACE_GETFPREGS`).
    pub fn from_ptrace(
        tid: i32,
        regs: &libc::user_regs_struct,
        fpregs: Option<&libc::user_fpregs_struct>,
    ) -> ThreadRegs {
        let mut t = ThreadRegs {
            tid,
            has_regs: true,
            ..Default::default()
        };
        // SAFETY: user_regs_struct is 27 u64s (x86_64), same layout as our array.
        t.regs = unsafe { core::mem::transmute_copy::<libc::user_regs_struct, [u64; NREGS]>(regs) };
        if let Some(fp) = fpregs {
            // SAFETY: user_fpregs_struct is the 512-byte FXSAVE area.
            t.fpregs = unsafe {
                core::mem::transmute_copy::<libc::user_fpregs_struct, [u8; FPREGS_LEN]>(fp)
            };
            t.has_fpregs = true;
        }
        t
    }
}

const _: () = assert!(core::mem::size_of::<libc::user_regs_struct>() == NREGS * 8);
const _: () = assert!(core::mem::size_of::<libc::user_fpregs_struct>() == FPREGS_LEN);
