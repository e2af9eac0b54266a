//! Allocation-free ELF core writer, shared by the preload library (in-process capture
//! from a signal handler) and the CLI/agent (`scope snapshot --core`, from outside with
//! ptrace).
//!
//! Nothing here allocates: maps go into caller-provided [`Mapping`] slots and a name
//! arena, the writer streams to an fd through a caller-provided scratch buffer, and
//! memory comes from a [`MemorySource`]:
//! - [`SelfMemory`]: the calling process (`write(2)` straight from the address space;
//!   unreadable pages give `EFAULT`, never a fault);
//! - [`ProcMem`]: another process through `/proc/<pid>/mem`.
//!
//! Registers: [`ThreadRegs::from_ucontext`] (signal handler) or
//! [`ThreadRegs::from_ptrace`] (`PTRACE_GETREGS` / `PTRACE_GETFPREGS`).
//!
//! The core has, like the kernel's: NT_PRSTATUS per thread (first = the crashing or
//! current thread, which gdb selects), NT_PRPSINFO, NT_SIGINFO (crashes), NT_AUXV,
//! NT_FILE (so gdb finds the shared libraries), NT_FPREGSET per thread, and a PT_LOAD per
//! mapping, with memory chosen by [`core::dump_policy`] (the kernel's default
//! `coredump_filter`, `MADV_DONTDUMP` honoured) and capped by [`CoreSpec::max_size`].
//! x86_64 only.
//!
//! # Core of a live process from outside (ptrace)
//!
//! ```no_run
//! use crashdump::{CoreSpec, Mapping, Maps, ProcMem, ProcessInfo, ThreadRegs, write_core};
//!
//! fn snapshot(pid: i32, out: &std::fs::File) -> Result<crashdump::CoreStats, crashdump::Errno> {
//!     use std::os::fd::AsRawFd;
//!     // 1. Stop every thread: PTRACE_SEIZE + PTRACE_INTERRUPT each tid of
//!     //    /proc/<pid>/task, then waitpid(tid, __WALL) for its stop.
//!     let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap()
//!         .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
//!     let mut threads = Vec::new();
//!     for &tid in &tids {
//!         unsafe {
//!             libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0);
//!             libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0);
//!             let mut st = 0;
//!             libc::waitpid(tid, &mut st, libc::__WALL);
//!             // 2. Registers of each stopped thread.
//!             let mut regs: libc::user_regs_struct = std::mem::zeroed();
//!             let mut fp: libc::user_fpregs_struct = std::mem::zeroed();
//!             libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs);
//!             libc::ptrace(libc::PTRACE_GETFPREGS, tid, 0, &mut fp);
//!             threads.push(ThreadRegs::from_ptrace(tid, &regs, Some(&fp)));
//!         }
//!     }
//!     // 3. Maps (smaps, for MADV_DONTDUMP), auxv, process info.
//!     let mut slots = vec![Mapping::default(); 8192];
//!     let mut names = vec![0u8; 1 << 20];
//!     let mut scratch = vec![0u8; 1 << 20];
//!     let mut maps = Maps::new(&mut slots, &mut names);
//!     maps.read_pid(pid, true, &mut scratch)?;
//!     let auxv = std::fs::read(format!("/proc/{pid}/auxv")).unwrap();
//!     let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
//!     let spec = CoreSpec {
//!         process: ProcessInfo { pid, ppid: 1, pgrp: pid, sid: pid, uid: 0, gid: 0,
//!                                fname: comm.trim_ascii_end(), psargs: b"" },
//!         threads: &threads, siginfo: None, auxv: &auxv, max_size: 0,
//!     };
//!     // 4. Memory through /proc/<pid>/mem, then PTRACE_DETACH every tid.
//!     let mut mem = ProcMem::open(pid)?;
//!     let stats = write_core(out.as_raw_fd(), &spec, &mut maps, &mut mem, &mut scratch);
//!     for &tid in &tids { unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0); } }
//!     stats
//! }
//! ```

#[cfg(not(target_arch = "x86_64"))]
compile_error!("crashdump supports x86_64 Linux only");

pub mod core;
pub mod fmt;
pub mod maps;
pub mod mem;
pub mod regs;
pub mod sym;
pub mod sys;

pub use crate::core::{CoreSpec, CoreStats, ProcessInfo, dump_policy, write_core};
pub use crate::maps::{Mapping, Maps};
pub use crate::mem::{MemorySource, ProcMem, SelfMemory};
pub use crate::regs::ThreadRegs;
pub use crate::sym::{SymInfo, symbolize};
pub use crate::sys::Errno;
