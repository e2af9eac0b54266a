//! The library's descriptors are left out of the application's listings of its own
//! descriptors: `/proc/self/fd`, `/proc/self/fdinfo`, `/dev/fd`, `/proc/<own pid>/fd`,
//! `/proc/thread-self/fd` and `/proc/.../task/<tid>/fd`, read through `opendir` or
//! `fdopendir` and `readdir`/`readdir64` (and their `_r` forms). A program that lists
//! its descriptors (to close "all the others", to check for leaks, to pass them on)
//! sees exactly those it would see without the library.
//!
//! A directory stream is recognised when it is opened: by its path when the path names
//! one of those directories, and otherwise, for a path ending in `fd` or `fdinfo` (a
//! relative path, another spelling) or a stream from `fdopendir`, by the target of
//! `/proc/self/fd/<its descriptor>`. Recognised streams are kept in a small fixed table;
//! entries that name one of the library's descriptors are skipped. `scandir` and a raw
//! `getdents64` system call are not covered (glibc's `scandir` reads the directory
//! without going through the exported `readdir`).

#![allow(clippy::missing_safety_doc)]

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use libc::{DIR, c_char, c_int, dirent, dirent64};

use super::real::Real;

/// Most streams on descriptor directories open at once that are filtered.
const STREAMS: usize = 16;

#[allow(clippy::declare_interior_mutable_const)]
const NONE: AtomicPtr<DIR> = AtomicPtr::new(std::ptr::null_mut());
static TRACKED: [AtomicPtr<DIR>; STREAMS] = [NONE; STREAMS];
/// Streams in the table (the readdir wrappers skip the table scan while 0).
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn track(d: *mut DIR) {
    for slot in TRACKED.iter() {
        if slot
            .compare_exchange(std::ptr::null_mut(), d, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            COUNT.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }
}

fn untrack(d: *mut DIR) {
    if COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    for slot in TRACKED.iter() {
        if slot
            .compare_exchange(d, std::ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            COUNT.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    }
}

#[inline]
fn tracked(d: *mut DIR) -> bool {
    COUNT.load(Ordering::Acquire) != 0 && TRACKED.iter().any(|s| s.load(Ordering::Acquire) == d)
}

/// Is `path` (absolute, as written or as procfs resolves it) a listing of this process's
/// descriptors? `pid` is this process's id. Pure.
pub fn is_own_fd_dir(path: &[u8], pid: u32) -> bool {
    let mut p = path;
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    if p == b"/dev/fd" {
        return true;
    }
    let Some(rest) = p.strip_prefix(b"/proc/") else {
        return false;
    };
    let parts: Vec<&[u8]> = rest
        .split(|b| *b == b'/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_list = |s: &[u8]| s == b"fd" || s == b"fdinfo";
    let is_self = |s: &[u8]| {
        s == b"self"
            || std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                == Some(pid)
    };
    let is_num = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    match parts.as_slice() {
        [who, list] => (is_self(who) || *who == b"thread-self") && is_list(list),
        [who, b"task", tid, list] => is_self(who) && is_num(tid) && is_list(list),
        _ => false,
    }
}

/// A path worth resolving through its descriptor: it ends in `fd` or `fdinfo`.
fn may_be_fd_dir(path: &[u8]) -> bool {
    let mut p = path;
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    p.ends_with(b"fd") || p.ends_with(b"fdinfo")
}

/// Where the stream's descriptor points, per procfs, is one of our descriptor lists.
fn stream_is_own_fd_dir(d: *mut DIR) -> bool {
    let _g = crate::runtime::internal();
    // SAFETY: `d` is a live stream just returned by the C library.
    let fd = unsafe { libc::dirfd(d) };
    if fd < 0 {
        return false;
    }
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(fd).as_bytes();
    link[14..14 + digits.len()].copy_from_slice(digits);
    let mut target = [0u8; 256];
    // SAFETY: NUL-terminated link path, target buffer of its stated size.
    let len = unsafe {
        libc::readlink(
            link.as_ptr().cast(),
            target.as_mut_ptr().cast(),
            target.len(),
        )
    };
    len > 0 && is_own_fd_dir(&target[..len as usize], std::process::id())
}

/// Decides for a stream the application just opened whether it is filtered.
fn consider(d: *mut DIR, path: Option<&[u8]>) {
    if d.is_null() || !crate::runtime::is_active() || crate::runtime::is_internal() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let own = match path {
            Some(p) if p.starts_with(b"/") && is_own_fd_dir(p, std::process::id()) => true,
            Some(p) if !may_be_fd_dir(p) => false,
            _ => stream_is_own_fd_dir(d),
        };
        if own {
            track(d);
        }
    });
}

/// The entry names one of the library's descriptors.
fn hidden(name: &[c_char]) -> bool {
    let mut fd: i64 = 0;
    let mut digits = 0;
    for &c in name {
        let c = c as u8;
        if c == 0 {
            break;
        }
        if !c.is_ascii_digit() || digits >= 10 {
            return false;
        }
        fd = fd * 10 + i64::from(c - b'0');
        digits += 1;
    }
    digits > 0 && fd <= i64::from(i32::MAX) && crate::transport::is_own_fd(fd as c_int)
}

macro_rules! real {
    ($name:expr, $ty:ty) => {{
        static REAL: Real = Real::new(concat!($name, "\0"));
        let a = REAL.addr();
        // SAFETY: the C library's function of this name has this signature.
        (a != 0).then(|| unsafe { std::mem::transmute::<usize, $ty>(a) })
    }};
}

#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn opendir(name: *const c_char) -> *mut DIR {
    let Some(f) = real!("opendir", unsafe extern "C" fn(*const c_char) -> *mut DIR) else {
        crate::interpose::real::set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let d = unsafe { f(name) };
    if !d.is_null() && !name.is_null() {
        let e = crate::interpose::real::errno();
        // SAFETY: the caller's NUL-terminated path.
        consider(d, Some(unsafe { CStr::from_ptr(name) }.to_bytes()));
        crate::interpose::real::set_errno(e);
    }
    d
}

#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut DIR {
    let Some(f) = real!("fdopendir", unsafe extern "C" fn(c_int) -> *mut DIR) else {
        crate::interpose::real::set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    };
    // SAFETY: forwarding the caller's arguments.
    let d = unsafe { f(fd) };
    if !d.is_null() {
        let e = crate::interpose::real::errno();
        consider(d, None);
        crate::interpose::real::set_errno(e);
    }
    d
}

#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn closedir(d: *mut DIR) -> c_int {
    untrack(d);
    let Some(f) = real!("closedir", unsafe extern "C" fn(*mut DIR) -> c_int) else {
        crate::interpose::real::set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(d) }
}

/// `readdir` and `readdir64`: the real one, skipping hidden entries.
macro_rules! readdir_fn {
    ($name:ident, $ent:ty) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(d: *mut DIR) -> *mut $ent {
            let Some(f) = real!(
                stringify!($name),
                unsafe extern "C" fn(*mut DIR) -> *mut $ent
            ) else {
                crate::interpose::real::set_errno(libc::ENOSYS);
                return std::ptr::null_mut();
            };
            loop {
                // SAFETY: forwarding the caller's stream.
                let e = unsafe { f(d) };
                // SAFETY: a non-null entry is valid until the next call on `d`.
                if e.is_null() || !tracked(d) || !hidden(unsafe { &(*e).d_name }) {
                    return e;
                }
            }
        }
    };
}

readdir_fn!(readdir, dirent);
readdir_fn!(readdir64, dirent64);

/// `readdir_r` and `readdir64_r`: the real one, skipping hidden entries.
macro_rules! readdir_r_fn {
    ($name:ident, $ent:ty) => {
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name(
            d: *mut DIR,
            entry: *mut $ent,
            out: *mut *mut $ent,
        ) -> c_int {
            let Some(f) = real!(
                stringify!($name),
                unsafe extern "C" fn(*mut DIR, *mut $ent, *mut *mut $ent) -> c_int
            ) else {
                return libc::ENOSYS;
            };
            loop {
                // SAFETY: forwarding the caller's arguments.
                let r = unsafe { f(d, entry, out) };
                // SAFETY: `out` is the caller's; a non-null result points at `entry`.
                if r != 0
                    || out.is_null()
                    || unsafe { (*out).is_null() }
                    || !tracked(d)
                    || !hidden(unsafe { &(**out).d_name })
                {
                    return r;
                }
            }
        }
    };
}

readdir_r_fn!(readdir_r, dirent);
readdir_r_fn!(readdir64_r, dirent64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_own_descriptor_lists() {
        let yes: &[&[u8]] = &[
            b"/proc/self/fd",
            b"/proc/self/fd/",
            b"/proc/self/fdinfo",
            b"/dev/fd",
            b"/dev/fd/",
            b"/proc/42/fd",
            b"/proc/thread-self/fd",
            b"/proc/self/task/43/fd",
            b"/proc/42/task/43/fdinfo",
        ];
        for p in yes {
            assert!(is_own_fd_dir(p, 42), "{}", String::from_utf8_lossy(p));
        }
        let no: &[&[u8]] = &[
            b"/proc/41/fd",
            b"/proc/self",
            b"/proc/self/fd/3",
            b"/proc/self/task/x/fd",
            b"/proc/41/task/43/fd",
            b"/tmp/fd",
            b"fd",
            b"/proc/self/net",
        ];
        for p in no {
            assert!(!is_own_fd_dir(p, 42), "{}", String::from_utf8_lossy(p));
        }
        assert!(may_be_fd_dir(b"self/fd/"));
        assert!(!may_be_fd_dir(b"/etc"));
    }

    #[test]
    fn the_table_tracks_and_forgets_streams() {
        let a = 0x1000 as *mut DIR;
        let b = 0x2000 as *mut DIR;
        track(a);
        assert!(tracked(a) && !tracked(b));
        untrack(b);
        assert!(tracked(a));
        untrack(a);
        assert!(!tracked(a));
    }

    #[test]
    fn only_numbers_of_own_descriptors_are_hidden() {
        let name = |s: &str| {
            let mut v: Vec<c_char> = s.bytes().map(|b| b as c_char).collect();
            v.push(0);
            v
        };
        assert!(!hidden(&name(".")));
        assert!(!hidden(&name("0")));
        assert!(!hidden(&name("99999999999")));
        assert!(!hidden(&name("")));
    }
}
