//! Positional vectored I/O: `preadv`/`pwritev`, their `64` aliases and the `v2` variants
//! with flags. Counted exactly like `readv`/`writev` (fs.read/fs.write on files,
//! net.rx/net.tx on sockets, with the bytes given to protocol detection and console/file
//! events) through [`record::data`].

#![allow(clippy::missing_safety_doc)]

use std::panic::AssertUnwindSafe;

use libc::{c_int, iovec, off_t, ssize_t};

use super::guard::{self, Guard};
use super::real::{Real, errno, set_errno};
use super::record::{self, Dir};

/// The bytes an iovec array transferred, limited to `n` in total.
/// Receiver of a transfer's bytes.
type Sink<'a> = dyn FnMut(&[u8]) + 'a;

fn iov_bytes(iov: *const iovec, cnt: c_int, n: isize) -> impl Fn(&mut Sink<'_>) {
    move |f: &mut Sink<'_>| {
        if iov.is_null() || n <= 0 {
            return;
        }
        let mut left = n as usize;
        for i in 0..cnt.max(0) as usize {
            if left == 0 {
                break;
            }
            // SAFETY: the application passed `cnt` iovecs.
            let v = unsafe { &*iov.add(i) };
            let take = v.iov_len.min(left);
            if !v.iov_base.is_null() && take > 0 {
                // SAFETY: the real call transferred these bytes.
                f(unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), take) });
            }
            left -= take;
        }
    }
}

/// Calls the real function (or the raw syscall when it cannot be found) and records the
/// transfer unless the thread is inside the library. `errno` is preserved.
#[inline]
fn call(
    real: &Real,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    dir: Dir,
    op: &'static str,
    f: impl FnOnce(usize) -> ssize_t,
) -> ssize_t {
    let active = guard::active();
    let t0 = if active {
        0
    } else if record::want_timing(fd) {
        crate::metrics::mono_ns()
    } else {
        0
    };
    let r = f(real.addr());
    if active {
        return r;
    }
    let saved = errno();
    {
        let _g = Guard::enter();
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
            record::data(fd, dir, r, &iov_bytes(iov, cnt, r), t0, op)
        }));
    }
    set_errno(saved);
    r
}

type PFn = unsafe extern "C" fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
type P2Fn = unsafe extern "C" fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;

macro_rules! positional {
    ($name:ident, $sys:expr, $dir:expr) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const iovec,
            cnt: c_int,
            off: off_t,
        ) -> ssize_t {
            static REAL: Real = Real::new(concat!(stringify!($name), "\0"));
            call(&REAL, fd, iov, cnt, $dir, stringify!($name), |addr| {
                if addr == 0 {
                    // SAFETY: the syscall takes the offset as low/high halves; on 64-bit
                    // the low half holds all of it.
                    unsafe { libc::syscall($sys, fd, iov, cnt, off, 0) as ssize_t }
                } else {
                    // SAFETY: the libc symbol has exactly this C signature.
                    let f: PFn = unsafe { std::mem::transmute(addr) };
                    unsafe { f(fd, iov, cnt, off) }
                }
            })
        }
    };
}

macro_rules! positional2 {
    ($name:ident, $sys:expr, $dir:expr) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const iovec,
            cnt: c_int,
            off: off_t,
            flags: c_int,
        ) -> ssize_t {
            static REAL: Real = Real::new(concat!(stringify!($name), "\0"));
            call(&REAL, fd, iov, cnt, $dir, stringify!($name), |addr| {
                if addr == 0 {
                    // SAFETY: as for preadv; flags follow the two offset halves.
                    unsafe { libc::syscall($sys, fd, iov, cnt, off, 0, flags) as ssize_t }
                } else {
                    // SAFETY: the libc symbol has exactly this C signature.
                    let f: P2Fn = unsafe { std::mem::transmute(addr) };
                    unsafe { f(fd, iov, cnt, off, flags) }
                }
            })
        }
    };
}

positional!(preadv, libc::SYS_preadv, Dir::Read);
positional!(preadv64, libc::SYS_preadv, Dir::Read);
positional!(pwritev, libc::SYS_pwritev, Dir::Write);
positional!(pwritev64, libc::SYS_pwritev, Dir::Write);
positional2!(preadv2, libc::SYS_preadv2, Dir::Read);
positional2!(preadv64v2, libc::SYS_preadv2, Dir::Read);
positional2!(pwritev2, libc::SYS_pwritev2, Dir::Write);
positional2!(pwritev64v2, libc::SYS_pwritev2, Dir::Write);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iov_bytes_stops_at_the_transferred_count() {
        let a = *b"hello";
        let b = *b"world";
        let v = [
            iovec {
                iov_base: a.as_ptr() as *mut _,
                iov_len: 5,
            },
            iovec {
                iov_base: b.as_ptr() as *mut _,
                iov_len: 5,
            },
        ];
        let mut got = Vec::new();
        iov_bytes(v.as_ptr(), 2, 7)(&mut |s: &[u8]| got.extend_from_slice(s));
        assert_eq!(got, b"hellowo");
        got.clear();
        iov_bytes(v.as_ptr(), 2, -1)(&mut |s: &[u8]| got.extend_from_slice(s));
        assert!(got.is_empty());
    }
}
