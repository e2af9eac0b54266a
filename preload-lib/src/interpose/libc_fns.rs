//! The interposed libc functions. Each wrapper calls the real function first (resolved
//! lazily, see [`super::real`]), passes straight through when the thread is inside the
//! library, otherwise records the call with the guard held and any panic caught, and
//! restores `errno` exactly before returning.
//!
//! Variadic C functions (`open`, `openat`, `fcntl`) are declared with their optional
//! argument as a plain integer parameter: on x86_64 and aarch64 Linux a variadic integer
//! argument travels in the same register as a fixed one, and the value is only used when
//! the flags say it was passed.

#![allow(clippy::missing_safety_doc)]

use std::ffi::CStr;
use std::panic::AssertUnwindSafe;

use libc::{
    FILE, c_char, c_int, c_long, c_uint, c_ulong, c_void, iovec, msghdr, off_t, size_t, sockaddr,
    socklen_t, ssize_t,
};

use super::bufs::{iov_bufs, one_buf};
use super::guard::Guard;
use super::real::{Real, errno, set_errno};
use super::record::{self, Dir};

/// Run `f` with the guard held, swallowing panics.
#[inline]
fn guarded<R: Default>(f: impl FnOnce() -> R) -> R {
    let _g = Guard::enter();
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_default()
}

/// Path argument as text (empty when null).
unsafe fn path_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: caller passes the application's NUL-terminated path.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

macro_rules! interpose {
    (
        fn $name:ident($($a:ident : $t:ty),*) -> $r:ty;
        $(invisible = $own:ident;)?
        fallback = $fb:expr;
        before = |$pre:ident| $before:expr;
        after = |$ret:ident| $after:expr;
    ) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
            static REAL: Real = Real::new(concat!(stringify!($name), "\0"));
            #[inline(never)]
            unsafe fn recording($($a: $t),*) -> $r {
                // One thread-local lookup: the re-entry counter, checked here and raised
                // around the recording below.
                let internal = crate::runtime::internal_counter();
                // SAFETY: the calling thread's own counter, valid during this call.
                let active = unsafe { (*internal).get() } != 0 || !crate::runtime::is_active();
                // The library's own descriptors do not exist for the application: it gets
                // what it would get without the library, EBADF, and ours stays open.
                $(
                    if !active && crate::transport::is_own_fd($own) {
                        set_errno(libc::EBADF);
                        return -1;
                    }
                )?
                // `before` is either trivial (a clock read) or wraps itself in `guarded`.
                let $pre: u64 = if active {
                    0
                } else {
                    #[allow(unused_unsafe)]
                    unsafe { $before }
                };
                let addr = REAL.addr();
                let $ret: $r = if addr == 0 {
                    #[allow(unused_unsafe)]
                    unsafe { $fb }
                } else {
                    // SAFETY: the libc symbol has exactly this C signature.
                    let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute(addr) };
                    unsafe { f($($a),*) }
                };
                if active {
                    return $ret;
                }
                let saved = errno();
                // SAFETY: as above.
                let c = unsafe { &*internal };
                c.set(c.get() + 1);
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    #[allow(unused_unsafe)]
                    unsafe { $after }
                }));
                c.set(c.get() - 1);
                set_errno(saved);
                $ret
            }
            // Crash capture only: nothing is recorded, call the real function at once.
            // This path has no frame of its own (the recording path is out of line), so
            // the real call is a tail jump.
            if !crate::runtime::is_recording() {
                $(
                    if crate::transport::is_own_fd($own) && !crate::runtime::is_internal() {
                        set_errno(libc::EBADF);
                        return -1;
                    }
                )?
                let addr = REAL.addr();
                if addr != 0 {
                    // SAFETY: the libc symbol has exactly this C signature.
                    let f: unsafe extern "C" fn($($t),*) -> $r = unsafe { std::mem::transmute(addr) };
                    return unsafe { f($($a),*) };
                }
            }
            // SAFETY: same arguments, same contract.
            unsafe { recording($($a),*) }
        }
    };
}

fn enosys<T>(v: T) -> T {
    set_errno(libc::ENOSYS);
    v
}

/// Start of a timed call, in [`crate::metrics::clock`] ticks (0: not timed).
#[inline]
fn t0(fd: c_int) -> u64 {
    if record::want_timing(fd) {
        crate::metrics::clock::ticks()
    } else {
        0
    }
}

// ---- files ----------------------------------------------------------------------------

interpose! {
    fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "open", errno());
}
interpose! {
    fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "open64", errno());
}
interpose! {
    fn __open_2(path: *const c_char, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, 0) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "__open_2", errno());
}
interpose! {
    fn __open64_2(path: *const c_char, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, 0) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "__open64_2", errno());
}
interpose! {
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, dirfd, path, flags, mode) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "openat", errno());
}
interpose! {
    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, dirfd, path, flags, mode) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "openat64", errno());
}
interpose! {
    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, dirfd, path, flags, 0) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "__openat_2", errno());
}
interpose! {
    fn creat(path: *const c_char, mode: c_uint) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "creat", errno());
}
interpose! {
    fn creat64(path: *const c_char, mode: c_uint) -> c_int;
    fallback = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode) as c_int;
    before = |_p| 0;
    after = |r| record::open(r, path_str(path), "creat64", errno());
}
interpose! {
    fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE;
    fallback = enosys(std::ptr::null_mut());
    before = |_p| 0;
    after = |r| record::open(if r.is_null() { -1 } else { libc::fileno(r) }, path_str(path), "fopen", errno());
}
interpose! {
    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE;
    fallback = enosys(std::ptr::null_mut());
    before = |_p| 0;
    after = |r| record::open(if r.is_null() { -1 } else { libc::fileno(r) }, path_str(path), "fopen64", errno());
}
interpose! {
    fn fclose(stream: *mut FILE) -> c_int;
    fallback = enosys(-1);
    before = |_p| {
        guarded(|| {
            if !stream.is_null() {
                record::close(libc::fileno(stream), "fclose");
            }
            0
        })
    };
    after = |_r| ();
}
interpose! {
    fn close(fd: c_int) -> c_int;
    invisible = fd;
    fallback = libc::syscall(libc::SYS_close, fd) as c_int;
    before = |_p| {
        guarded(|| {
            record::close(fd, "close");
            0
        })
    };
    after = |_r| ();
}

interpose! {
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_read, fd, buf, n) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &one_buf(buf, r), p, "read");
}
interpose! {
    fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_read, fd, buf, n.min(buflen)) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &one_buf(buf, r), p, "__read_chk");
}
interpose! {
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_write, fd, buf, n) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &one_buf(buf, r), p, "write");
}
interpose! {
    fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pread64, fd, buf, n, off) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &one_buf(buf, r), p, "pread");
}
interpose! {
    fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pread64, fd, buf, n, off) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &one_buf(buf, r), p, "pread64");
}
interpose! {
    fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pwrite64, fd, buf, n, off) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &one_buf(buf, r), p, "pwrite");
}
interpose! {
    fn pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pwrite64, fd, buf, n, off) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &one_buf(buf, r), p, "pwrite64");
}
interpose! {
    fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_readv, fd, iov, cnt) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &iov_bufs(iov, cnt, r), p, "readv");
}
interpose! {
    fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_writev, fd, iov, cnt) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &iov_bufs(iov, cnt, r), p, "writev");
}
// Positional vectored I/O, counted like readv/writev. The raw-syscall fallback passes the
// offset as low/high halves; on 64-bit the low half holds all of it.
interpose! {
    fn preadv(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_preadv, fd, iov, cnt, off, 0) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &iov_bufs(iov, cnt, r), p, "preadv");
}
interpose! {
    fn preadv64(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_preadv, fd, iov, cnt, off, 0) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &iov_bufs(iov, cnt, r), p, "preadv64");
}
interpose! {
    fn pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pwritev, fd, iov, cnt, off, 0) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &iov_bufs(iov, cnt, r), p, "pwritev");
}
interpose! {
    fn pwritev64(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pwritev, fd, iov, cnt, off, 0) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &iov_bufs(iov, cnt, r), p, "pwritev64");
}
interpose! {
    fn preadv2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_preadv2, fd, iov, cnt, off, 0, flags) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &iov_bufs(iov, cnt, r), p, "preadv2");
}
interpose! {
    fn preadv64v2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_preadv2, fd, iov, cnt, off, 0, flags) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Read, r, &iov_bufs(iov, cnt, r), p, "preadv64v2");
}
interpose! {
    fn pwritev2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pwritev2, fd, iov, cnt, off, 0, flags) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &iov_bufs(iov, cnt, r), p, "pwritev2");
}
interpose! {
    fn pwritev64v2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_pwritev2, fd, iov, cnt, off, 0, flags) as ssize_t;
    before = |p| t0(fd);
    after = |r| record::data_ticks(fd, Dir::Write, r, &iov_bufs(iov, cnt, r), p, "pwritev64v2");
}
interpose! {
    fn fwrite(ptr: *const c_void, size: size_t, nmemb: size_t, stream: *mut FILE) -> size_t;
    fallback = enosys(0);
    before = |_p| 0;
    after = |r| if !stream.is_null() {
        let n = (r * size) as isize;
        record::data(libc::fileno(stream), Dir::Write, n, &one_buf(ptr, n), 0, "fwrite")
    };
}
interpose! {
    fn fread(ptr: *mut c_void, size: size_t, nmemb: size_t, stream: *mut FILE) -> size_t;
    fallback = enosys(0);
    before = |_p| 0;
    after = |r| if !stream.is_null() {
        let n = (r * size) as isize;
        record::data(libc::fileno(stream), Dir::Read, n, &one_buf(ptr, n), 0, "fread")
    };
}
interpose! {
    fn fputs(s: *const c_char, stream: *mut FILE) -> c_int;
    fallback = enosys(libc::EOF);
    before = |_p| 0;
    after = |r| if r >= 0 && !stream.is_null() && !s.is_null() {
        let n = libc::strlen(s) as isize;
        record::data(libc::fileno(stream), Dir::Write, n, &one_buf(s.cast(), n), 0, "fputs")
    };
}
interpose! {
    fn puts(s: *const c_char) -> c_int;
    fallback = enosys(libc::EOF);
    before = |_p| 0;
    after = |r| if r >= 0 && !s.is_null() {
        let mut v = CStr::from_ptr(s).to_bytes().to_vec();
        v.push(b'\n');
        record::data(1, Dir::Write, v.len() as isize, &one_buf(v.as_ptr().cast(), v.len() as isize), 0, "puts")
    };
}
interpose! {
    fn lseek(fd: c_int, off: off_t, whence: c_int) -> off_t;
    fallback = libc::syscall(libc::SYS_lseek, fd, off, whence) as off_t;
    before = |_p| 0;
    after = |r| record::seek(fd, r, "lseek");
}
interpose! {
    fn lseek64(fd: c_int, off: off_t, whence: c_int) -> off_t;
    fallback = libc::syscall(libc::SYS_lseek, fd, off, whence) as off_t;
    before = |_p| 0;
    after = |r| record::seek(fd, r, "lseek64");
}

// stat family: counted as fs.stat (path-based) ----------------------------------------
interpose! {
    fn stat(path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, path, buf, 0) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "stat");
}
interpose! {
    fn stat64(path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, path, buf, 0) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "stat64");
}
interpose! {
    fn lstat(path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, path, buf, libc::AT_SYMLINK_NOFOLLOW) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "lstat");
}
interpose! {
    fn lstat64(path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, path, buf, libc::AT_SYMLINK_NOFOLLOW) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "lstat64");
}
interpose! {
    fn fstatat(dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_newfstatat, dirfd, path, buf, flags) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "fstatat");
}
interpose! {
    fn fstatat64(dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_newfstatat, dirfd, path, buf, flags) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "fstatat64");
}
interpose! {
    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut c_void) -> c_int;
    fallback = libc::syscall(libc::SYS_statx, dirfd, path, flags, mask, buf) as c_int;
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "statx");
}
interpose! {
    fn __xstat(ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = enosys(-1);
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "__xstat");
}
interpose! {
    fn __lxstat(ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = enosys(-1);
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "__lxstat");
}
interpose! {
    fn __xstat64(ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = enosys(-1);
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "__xstat64");
}
interpose! {
    fn __lxstat64(ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int;
    fallback = enosys(-1);
    before = |_p| 0;
    after = |r| record::stat_lazy(|| path_str(path), r, "__lxstat64");
}
interpose! {
    fn unlink(path: *const c_char) -> c_int;
    fallback = libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, path, 0) as c_int;
    before = |_p| 0;
    after = |r| if r == 0 { record::unlink(&path_str(path), "unlink") };
}
interpose! {
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_unlinkat, dirfd, path, flags) as c_int;
    before = |_p| 0;
    after = |r| if r == 0 { record::unlink(&path_str(path), "unlinkat") };
}

// ---- fd duplication -------------------------------------------------------------------

interpose! {
    fn dup(old: c_int) -> c_int;
    invisible = old;
    fallback = libc::syscall(libc::SYS_dup, old) as c_int;
    before = |_p| 0;
    after = |r| if r >= 0 && !record::own_fd(old) { super::fdtable::dup(old, r, crate::metrics::mono_ns()) };
}
interpose! {
    fn dup2(old: c_int, new: c_int) -> c_int;
    invisible = old;
    fallback = libc::syscall(libc::SYS_dup3, old, new, 0) as c_int;
    before = |_p| {
        guarded(|| {
            if old != new && crate::transport::is_own_fd(new) {
                crate::transport::relocate_own_fd(new);
            }
            if old != new {
                record::close(new, "dup2");
            }
            0
        })
    };
    after = |r| if r >= 0 && old != new && !record::own_fd(old) { super::fdtable::dup(old, r, crate::metrics::mono_ns()) };
}
interpose! {
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    invisible = old;
    fallback = libc::syscall(libc::SYS_dup3, old, new, flags) as c_int;
    before = |_p| {
        guarded(|| {
            if old != new && crate::transport::is_own_fd(new) {
                crate::transport::relocate_own_fd(new);
            }
            if old != new {
                record::close(new, "dup3");
            }
            0
        })
    };
    after = |r| if r >= 0 && !record::own_fd(old) { super::fdtable::dup(old, r, crate::metrics::mono_ns()) };
}
interpose! {
    fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    invisible = fd;
    fallback = libc::syscall(libc::SYS_fcntl, fd, cmd, arg) as c_int;
    before = |_p| 0;
    after = |r| if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && !record::own_fd(fd) {
        super::fdtable::dup(fd, r, crate::metrics::mono_ns())
    };
}
interpose! {
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    invisible = fd;
    fallback = libc::syscall(libc::SYS_fcntl, fd, cmd, arg) as c_int;
    before = |_p| 0;
    after = |r| if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && !record::own_fd(fd) {
        super::fdtable::dup(fd, r, crate::metrics::mono_ns())
    };
}

// ---- sockets --------------------------------------------------------------------------

/// The peer address `accept` wrote for the application, if it asked for one. `cap` is
/// the buffer size the application passed (the kernel reports the full length even when
/// it truncated the address).
unsafe fn accepted_peer(
    r: c_int,
    addr: *const sockaddr,
    len: *const socklen_t,
    cap: u64,
) -> Option<std::net::SocketAddr> {
    if r < 0 || addr.is_null() || len.is_null() {
        return None;
    }
    // SAFETY: accept succeeded and wrote `min(*len, cap)` bytes at `addr`.
    let n = u64::from(unsafe { *len }).min(cap) as socklen_t;
    unsafe { super::fdtable::sockaddr_to(addr, n) }
}

interpose! {
    fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_socket, domain, ty, proto) as c_int;
    before = |_p| 0;
    after = |r| record::socket(r, domain, ty);
}
interpose! {
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fallback = libc::syscall(libc::SYS_connect, fd, addr, len) as c_int;
    before = |_p| 0;
    after = |r| record::connect(fd, addr, len, r, errno());
}
interpose! {
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fallback = libc::syscall(libc::SYS_bind, fd, addr, len) as c_int;
    before = |_p| 0;
    after = |r| if r == 0 { record::bind(fd, addr, len) };
}
interpose! {
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_listen, fd, backlog) as c_int;
    before = |_p| 0;
    after = |r| if r == 0 { record::listen(fd) };
}
interpose! {
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fallback = libc::syscall(libc::SYS_accept, fd, addr, len) as c_int;
    before = |p| if len.is_null() { 0 } else { u64::from(*len) };
    after = |r| record::accept_from(fd, r, accepted_peer(r, addr, len, p), "accept");
}
interpose! {
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_accept4, fd, addr, len, flags) as c_int;
    before = |p| if len.is_null() { 0 } else { u64::from(*len) };
    after = |r| record::accept_from(fd, r, accepted_peer(r, addr, len, p), "accept4");
}
interpose! {
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fallback = libc::syscall(libc::SYS_shutdown, fd, how) as c_int;
    before = |_p| 0;
    after = |_r| ();
}
interpose! {
    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_sendto, fd, buf, n, flags, 0, 0) as ssize_t;
    before = |_p| 0;
    after = |r| record::data(fd, Dir::Write, r, &one_buf(buf, r), 0, "send");
}
interpose! {
    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_sendto, fd, buf, n, flags, addr, alen) as ssize_t;
    before = |_p| {
        guarded(|| {
            // An unconnected UDP send names its peer here (DNS detection needs it).
            if !addr.is_null() && !record::own_fd(fd) && record::classify(fd) == super::fdtable::Kind::Udp
                && let Some(s) = super::fdtable::get(fd)
            {
                // SAFETY: the application passed `alen` bytes at `addr`.
                let peer = unsafe { super::fdtable::sockaddr_to(addr, alen) };
                if peer.is_some() {
                    s.info().peer = peer;
                }
            }
            0
        })
    };
    after = |r| record::data(fd, Dir::Write, r, &one_buf(buf, r), 0, "sendto");
}
interpose! {
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_sendmsg, fd, msg, flags) as ssize_t;
    before = |_p| 0;
    after = |r| if !msg.is_null() {
        let m = &*msg;
        record::data(fd, Dir::Write, r, &iov_bufs(m.msg_iov, m.msg_iovlen as c_int, r), 0, "sendmsg")
    };
}
interpose! {
    fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_recvfrom, fd, buf, n, flags, 0, 0) as ssize_t;
    before = |_p| 0;
    after = |r| if flags & libc::MSG_PEEK == 0 { record::data(fd, Dir::Read, r, &one_buf(buf, r), 0, "recv") };
}
interpose! {
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_recvfrom, fd, buf, n, flags, addr, alen) as ssize_t;
    before = |_p| 0;
    after = |r| if flags & libc::MSG_PEEK == 0 { record::data(fd, Dir::Read, r, &one_buf(buf, r), 0, "recvfrom") };
}
interpose! {
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fallback = libc::syscall(libc::SYS_recvmsg, fd, msg, flags) as ssize_t;
    before = |_p| 0;
    after = |r| if !msg.is_null() && flags & libc::MSG_PEEK == 0 {
        let m = &*msg;
        record::data(fd, Dir::Read, r, &iov_bufs(m.msg_iov, m.msg_iovlen as c_int, r), 0, "recvmsg")
    };
}
interpose! {
    fn sendfile(out_fd: c_int, in_fd: c_int, off: *mut off_t, count: size_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_sendfile, out_fd, in_fd, off, count) as ssize_t;
    before = |_p| 0;
    after = |r| record::opaque_write(out_fd, r, "sendfile");
}
interpose! {
    fn sendfile64(out_fd: c_int, in_fd: c_int, off: *mut off_t, count: size_t) -> ssize_t;
    fallback = libc::syscall(libc::SYS_sendfile, out_fd, in_fd, off, count) as ssize_t;
    before = |_p| 0;
    after = |r| record::opaque_write(out_fd, r, "sendfile64");
}

// ---- DNS ------------------------------------------------------------------------------

interpose! {
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const libc::addrinfo, res: *mut *mut libc::addrinfo) -> c_int;
    fallback = enosys(libc::EAI_SYSTEM);
    before = |_p| 0;
    after = |_r| if !node.is_null() { record::dns(&path_str(node)) };
}
interpose! {
    fn gethostbyname(name: *const c_char) -> *mut c_void;
    fallback = enosys(std::ptr::null_mut());
    before = |_p| 0;
    after = |_r| if !name.is_null() { record::dns(&path_str(name)) };
}

#[allow(dead_code)]
fn _unused(_: c_long) {}
