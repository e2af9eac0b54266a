//! The agent's only unsafe code: a minimal ptrace wrapper for live snapshots.
//!
//! Threads are attached with `PTRACE_SEIZE` and stopped with `PTRACE_INTERRUPT`, which
//! neither sends a signal nor changes what the process observes; registers are read with
//! `PTRACE_GETREGS`; `Drop` detaches every thread, which resumes it. Memory is read via
//! `/proc/<pid>/mem` (safe code). All ptrace calls for one [`Attached`] must be made from
//! the thread that created it (the kernel ties tracees to the tracing thread).

use std::io;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// General-purpose registers of a stopped thread (the subset the unwinder uses, plus
/// the full kernel struct for core files).
#[derive(Debug, Clone, Copy)]
pub struct Regs {
    pub ip: u64,
    pub sp: u64,
    pub fp: u64,
    #[cfg(target_arch = "x86_64")]
    pub raw: libc::user_regs_struct,
}

/// A set of threads attached and stopped. Detached (resumed) on drop.
pub struct Attached {
    tids: Vec<i32>,
}

impl Attached {
    /// Seize every thread, then interrupt them all, then wait until each is stopped, so
    /// the threads stop at nearly the same moment. Threads that exit meanwhile are
    /// skipped.
    pub fn stop_threads(tids: &[i32]) -> Result<Attached> {
        let mut a = Attached { tids: Vec::new() };
        for &tid in tids {
            // SAFETY: PTRACE_SEIZE takes no pointer arguments (addr and data are 0).
            let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    continue;
                }
                return Err(Error::Ptrace {
                    op: "PTRACE_SEIZE",
                    tid,
                    source: e,
                });
            }
            a.tids.push(tid);
        }
        for &tid in &a.tids {
            // SAFETY: as above, no pointers.
            let r = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    continue; // exited; its wait below reports it
                }
                return Err(Error::Ptrace {
                    op: "PTRACE_INTERRUPT",
                    tid,
                    source: e,
                });
            }
        }
        let mut stopped = Vec::with_capacity(a.tids.len());
        for &tid in &a.tids {
            match wait_stopped(tid, Duration::from_secs(2)) {
                Ok(()) => stopped.push(tid),
                Err(Error::Ptrace { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
                }
                Err(e) => return Err(e),
            }
        }
        a.tids = stopped;
        Ok(a)
    }

    pub fn tids(&self) -> &[i32] {
        &self.tids
    }

    /// Registers of one stopped thread.
    #[cfg(target_arch = "x86_64")]
    pub fn regs(&self, tid: i32) -> Result<Regs> {
        // SAFETY: user_regs_struct is plain old data; all-zero is a valid value.
        let mut raw: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS writes exactly one user_regs_struct to `data`, which
        // points to a live, properly aligned value of that type.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                tid,
                0usize,
                &mut raw as *mut libc::user_regs_struct,
            )
        };
        if r != 0 {
            return Err(Error::Ptrace {
                op: "PTRACE_GETREGS",
                tid,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Regs {
            ip: raw.rip,
            sp: raw.rsp,
            fp: raw.rbp,
            raw,
        })
    }

    /// Floating-point registers (FXSAVE area) of one stopped thread.
    #[cfg(target_arch = "x86_64")]
    pub fn fpregs(&self, tid: i32) -> Result<libc::user_fpregs_struct> {
        // SAFETY: user_fpregs_struct is plain old data; all-zero is a valid value.
        let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETFPREGS writes one user_fpregs_struct to `data`, which points
        // to a live, properly aligned value of that type.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETFPREGS,
                tid,
                0usize,
                &mut fp as *mut libc::user_fpregs_struct,
            )
        };
        if r != 0 {
            return Err(Error::Ptrace {
                op: "PTRACE_GETFPREGS",
                tid,
                source: io::Error::last_os_error(),
            });
        }
        Ok(fp)
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn regs(&self, tid: i32) -> Result<Regs> {
        Err(Error::Other(format!(
            "thread {tid}: register capture is implemented for x86_64 only"
        )))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for &tid in &self.tids {
            // SAFETY: no pointers; detaching a thread we seized resumes it.
            let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize) };
            // A seized thread that is not in a ptrace stop yet (an error path left before
            // waiting for it) cannot be detached: wait briefly for its stop, then retry.
            if r != 0 && wait_stopped(tid, Duration::from_millis(100)).is_ok() {
                // SAFETY: as above.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize) };
            }
        }
    }
}

/// Wait (bounded) until `tid` reports a ptrace stop. Polls without blocking: spins
/// briefly (a stop usually arrives within microseconds), then sleeps 50 us between polls.
fn wait_stopped(tid: i32, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        let mut status = 0i32;
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == tid {
            if libc::WIFSTOPPED(status) {
                return Ok(());
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Err(Error::Ptrace {
                    op: "waitpid",
                    tid,
                    source: io::Error::from_raw_os_error(libc::ESRCH),
                });
            }
        } else if r < 0 {
            return Err(Error::Ptrace {
                op: "waitpid",
                tid,
                source: io::Error::last_os_error(),
            });
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout(format!(
                "thread {tid} did not stop within {:.1}s",
                timeout.as_secs_f64()
            )));
        }
        polls += 1;
        if polls < 200 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
