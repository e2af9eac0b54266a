//! Thin async-signal-safe wrappers over the few syscalls the writer uses.

use core::fmt;

/// An `errno` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub fn last() -> Errno {
        // SAFETY: __errno_location is always valid for the calling thread.
        Errno(unsafe { *libc::__errno_location() })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.0 {
            libc::ENOENT => "no such file or directory",
            libc::EACCES => "permission denied",
            libc::EPERM => "operation not permitted",
            libc::EFAULT => "bad address",
            libc::EIO => "input/output error",
            libc::ENOSPC => "no space left on device",
            libc::EFBIG => "file too large",
            libc::EEXIST => "file exists",
            libc::ESRCH => "no such process",
            libc::EINVAL => "invalid argument",
            libc::ENOBUFS => "buffer too small",
            _ => "",
        };
        if s.is_empty() {
            write!(f, "errno {}", self.0)
        } else {
            write!(f, "{s} (errno {})", self.0)
        }
    }
}

impl std::error::Error for Errno {}

pub type Result<T> = core::result::Result<T, Errno>;

/// `open(path, flags, mode)`; `path` must be NUL-terminated.
pub fn open(path: &[u8], flags: i32, mode: u32) -> Result<i32> {
    if path.last() != Some(&0) {
        return Err(Errno(libc::EINVAL));
    }
    loop {
        // SAFETY: path is NUL-terminated.
        let fd = unsafe { libc::open(path.as_ptr().cast(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            return Ok(fd);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

pub fn close(fd: i32) {
    // SAFETY: closing an fd we own.
    unsafe { libc::close(fd) };
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::pread64(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// Reads until `buf` is full or EOF.
pub fn pread_full(fd: i32, buf: &mut [u8], off: u64) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = pread(fd, &mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Writes all of `buf`.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(Errno(libc::ENOSPC));
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads a whole small file (such as `/proc/<pid>/auxv`) into `buf`; returns its length.
/// Fails with `ENOBUFS` when the file does not fit.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> Result<usize> {
    let fd = open(path, libc::O_RDONLY, 0)?;
    let mut done = 0;
    let r = loop {
        if done == buf.len() {
            break Err(Errno(libc::ENOBUFS));
        }
        match read(fd, &mut buf[done..]) {
            Ok(0) => break Ok(done),
            Ok(n) => done += n,
            Err(e) => break Err(e),
        }
    };
    close(fd);
    r
}

pub fn lseek(fd: i32, off: i64, whence: i32) -> Result<u64> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::lseek64(fd, off, whence) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as u64)
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf is async-signal-safe.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}
