//! Where the core writer reads process memory from.

use crate::sys::{self, Errno, Result};

/// A source of process memory.
pub trait MemorySource {
    /// Copies up to `len` bytes of memory at `addr` to `out_fd` at its current file
    /// offset, using `scratch` if it needs a bounce buffer. Returns the number of bytes
    /// accounted for (written, or skipped with `lseek` when known to be zero), at least
    /// one byte, or `Ok(0)` / `Err(EFAULT | EIO)` when `addr` itself cannot be read (the
    /// writer then leaves that page as a hole of zeros and goes on). `anon` is true for
    /// anonymous mappings (heap, stacks, `[vdso]`...).
    fn copy_to_fd(
        &mut self,
        out_fd: i32,
        addr: u64,
        len: u64,
        anon: bool,
        scratch: &mut [u8],
    ) -> Result<u64>;
}

/// The calling process's own memory (in-process capture). Memory goes straight from
/// the address space to the file with `write(2)`: one copy, no bounce buffer, and an
/// unreadable page gives `EFAULT` instead of a fault (safe even for pages of a
/// truncated mapped file). Pages of anonymous mappings that `mincore` reports as not
/// resident (never touched, or swapped out) are left as file holes (zeros).
pub struct SelfMemory {
    /// Use `mincore` to skip non-resident pages of anonymous mappings.
    pub skip_nonresident: bool,
}

impl Default for SelfMemory {
    fn default() -> Self {
        SelfMemory {
            skip_nonresident: true,
        }
    }
}

const CHUNK: u64 = 8 << 20;

impl MemorySource for SelfMemory {
    fn copy_to_fd(
        &mut self,
        out_fd: i32,
        addr: u64,
        len: u64,
        anon: bool,
        scratch: &mut [u8],
    ) -> Result<u64> {
        let page = sys::page_size();
        let len = len.min(CHUNK);
        if anon && self.skip_nonresident && addr.is_multiple_of(page) && len >= page {
            // One byte of residency info per page, in scratch.
            let npages = ((len / page) as usize).min(scratch.len());
            if npages > 0 {
                // SAFETY: scratch has room for npages entries; addr is page aligned.
                let r = unsafe {
                    libc::mincore(
                        addr as *mut libc::c_void,
                        npages * page as usize,
                        scratch.as_mut_ptr(),
                    )
                };
                if r == 0 {
                    let resident = scratch[0] & 1 != 0;
                    let run = scratch[..npages]
                        .iter()
                        .take_while(|&&b| (b & 1 != 0) == resident)
                        .count() as u64;
                    let bytes = run * page;
                    if !resident {
                        sys::lseek(out_fd, bytes as i64, libc::SEEK_CUR)?;
                        return Ok(bytes);
                    }
                    return write_direct(out_fd, addr, bytes);
                }
            }
        }
        write_direct(out_fd, addr, len)
    }
}

fn write_direct(out_fd: i32, addr: u64, len: u64) -> Result<u64> {
    loop {
        // SAFETY: the kernel validates the source range; bad pages give EFAULT.
        let n = unsafe { libc::write(out_fd, addr as *const libc::c_void, len as usize) };
        if n >= 0 {
            return Ok(n as u64);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// Memory of another process through `/proc/<pid>/mem` (the process should be
/// ptrace-stopped for a consistent image). All-zero chunks become file holes.
pub struct ProcMem {
    fd: i32,
}

impl ProcMem {
    /// Opens `/proc/<pid>/mem` read-only (needs ptrace access to `pid`).
    pub fn open(pid: i32) -> Result<ProcMem> {
        let mut p = crate::fmt::FixedBuf::<48>::new();
        use core::fmt::Write;
        let _ = write!(p, "/proc/{pid}/mem\0");
        Ok(ProcMem {
            fd: sys::open(p.as_bytes(), libc::O_RDONLY, 0)?,
        })
    }

    /// Wraps an already open `/proc/<pid>/mem` fd (closed on drop).
    pub fn from_fd(fd: i32) -> ProcMem {
        ProcMem { fd }
    }
}

impl Drop for ProcMem {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

impl MemorySource for ProcMem {
    fn copy_to_fd(
        &mut self,
        out_fd: i32,
        addr: u64,
        len: u64,
        _anon: bool,
        scratch: &mut [u8],
    ) -> Result<u64> {
        let n = (len as usize).min(scratch.len());
        let got = sys::pread(self.fd, &mut scratch[..n], addr)?;
        if got == 0 {
            return Ok(0);
        }
        if scratch[..got].iter().all(|&b| b == 0) {
            sys::lseek(out_fd, got as i64, libc::SEEK_CUR)?;
        } else {
            sys::write_all(out_fd, &scratch[..got])?;
        }
        Ok(got as u64)
    }
}
