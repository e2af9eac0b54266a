//! Byte providers for [`super::record`]: the bytes a call transferred, handed to a sink
//! only when a consumer (events, protocol detection) asks for them.

use libc::{c_int, c_void, iovec};

/// Receiver of a transfer's bytes.
pub(super) type Sink<'a> = dyn FnMut(&[u8]) + 'a;

/// Provider of the bytes of a plain buffer.
#[cfg_attr(test, allow(dead_code))] // used by the wrappers (not built in tests)
pub(super) fn one_buf(p: *const c_void, n: isize) -> impl Fn(&mut Sink<'_>) {
    move |f: &mut Sink<'_>| {
        if !p.is_null() && n > 0 {
            // SAFETY: the real call just read/wrote `n` bytes at `p`.
            f(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n as usize) })
        }
    }
}

/// Provider of the bytes of an iovec array, limited to `n` bytes in total.
pub(super) fn iov_bufs(iov: *const iovec, cnt: c_int, n: isize) -> impl Fn(&mut Sink<'_>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iov_bufs_stops_at_the_transferred_count() {
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
        iov_bufs(v.as_ptr(), 2, 7)(&mut |s: &[u8]| got.extend_from_slice(s));
        assert_eq!(got, b"hellowo");
        got.clear();
        iov_bufs(v.as_ptr(), 2, -1)(&mut |s: &[u8]| got.extend_from_slice(s));
        assert!(got.is_empty());
    }
}
