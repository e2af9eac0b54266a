//! The library's thread never keeps a process alive.
//!
//! POSIX ends a process when its last thread exits. glibc and musl count the threads they
//! created: the thread that brings that count to zero (returning from its start routine,
//! or calling `pthread_exit`, the main thread included) calls `exit(0)`. The library's
//! background thread is one of those threads, so without help the application's last
//! thread would see one thread left (ours) and end only itself, leaving a zombie leader
//! plus our thread, which blocks the application's signals: the process would never end,
//! and a process-directed SIGTERM would stay pending for ever.
//!
//! So the background thread watches for that state: the main thread has exited (the
//! leader is a zombie) and no thread but the library's is left. It then ends the process
//! the way the application's last thread would have:
//! - after a `pthread_exit` of the main thread seen by the interposer below (or of a
//!   thread that then became the last), with `exit(0)`, as glibc and musl do, so atexit
//!   handlers run and stdio is flushed;
//! - when the main thread ended some other way (a raw `exit` system call, which bypasses
//!   the C library), by ending its own thread only: the kernel then ends the process
//!   with the status the main thread gave, exactly as without the library.
//!
//! Cost: the interposed `pthread_exit` reads the thread id once. The background thread
//! reads `/proc/self/stat` once per summary period; after a `pthread_exit` of the main
//! thread it reads it every [`FAST_POLL`] until the process ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the background thread checks, once the main thread has exited.
pub const FAST_POLL: Duration = Duration::from_millis(10);

/// The main thread called `pthread_exit` (in this process image or fork child).
static MAIN_EXITED: AtomicBool = AtomicBool::new(false);

/// True once the main thread called `pthread_exit`: the background thread then checks
/// every [`FAST_POLL`].
pub fn main_exited() -> bool {
    MAIN_EXITED.load(Ordering::Acquire)
}

/// In a forked child: the calling thread is the child's main thread, alive.
pub fn after_fork_child() {
    MAIN_EXITED.store(false, Ordering::Release);
}

/// What the background thread does about the process's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// An application thread is still alive.
    Continue,
    /// Only the library's threads are left after the C library's own thread exit:
    /// `exit(0)`, as the C library would have called in the last application thread.
    ExitProcess,
    /// Only the library's threads are left after the main thread ended through the
    /// kernel directly: end our thread and let the kernel end the process.
    EndThread,
}

/// The state letter and thread count of `/proc/self/stat` (pure). The command name
/// (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
pub fn parse_stat(stat: &[u8]) -> Option<(u8, u32)> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty());
    // Field 3 (state) is the first after the name; field 20 (num_threads) the 18th.
    let state = *fields.next()?.first()?;
    let threads = fields.nth(16)?;
    let threads = std::str::from_utf8(threads).ok()?.trim().parse().ok()?;
    Some((state, threads))
}

/// Decides from the leader's state, the kernel's thread count (which still counts a
/// zombie leader) and the number of library threads (pure).
pub fn decide(state: u8, threads: u32, library_threads: u32, main_exited: bool) -> Ending {
    let leader_gone = state == b'Z' || state == b'X';
    if !leader_gone || threads > 1 + library_threads {
        return Ending::Continue;
    }
    if main_exited {
        Ending::ExitProcess
    } else {
        Ending::EndThread
    }
}

/// Reads this process's state (None when `/proc` is not readable: nothing is decided).
fn read_self_stat() -> Option<(u8, u32)> {
    let _g = super::internal();
    let mut buf = [0u8; 1024];
    // SAFETY: open/read/close of a procfs file into a stack buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    parse_stat(&buf[..n as usize])
}

/// Called by the background thread (it is the only library thread): ends the process
/// when no application thread is left. Returns only while one is.
pub fn check() {
    let Some((state, threads)) = read_self_stat() else {
        return;
    };
    match decide(state, threads, 1, main_exited()) {
        Ending::Continue => {}
        Ending::ExitProcess => {
            // The application's exit handlers run here as they would have in its last
            // thread: with no signal blocked.
            // SAFETY: an empty mask for this thread, then the C library's exit.
            unsafe {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                libc::exit(0);
            }
        }
        Ending::EndThread => {
            // SAFETY: ends this thread only (not the group); it was the last one.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
    }
}

type PthreadExitFn = unsafe extern "C" fn(*mut libc::c_void) -> !;

static REAL_PTHREAD_EXIT: crate::interpose::real::Real =
    crate::interpose::real::Real::new("pthread_exit\0");

/// Exported `pthread_exit`: notes that the main thread is exiting (so the background
/// thread checks at once whether it is the last application thread), then exits.
///
/// # Safety
/// Same contract as libc's `pthread_exit`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_exit(retval: *mut libc::c_void) -> ! {
    // SAFETY: trivial syscalls.
    let main = unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t == libc::getpid() };
    if main {
        MAIN_EXITED.store(true, Ordering::Release);
        crate::transport::unpark_worker();
    }
    let addr = REAL_PTHREAD_EXIT.addr();
    if addr == 0 {
        // No C library pthread_exit to call: end the thread through the kernel.
        loop {
            // SAFETY: ends the calling thread.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
    }
    // SAFETY: the real pthread_exit has this signature.
    let f: PthreadExitFn = unsafe { std::mem::transmute::<usize, PthreadExitFn>(addr) };
    unsafe { f(retval) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line =
            b"4242 (a) b (c)) Z 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 3 0 12345 0 0\n";
        assert_eq!(parse_stat(line), Some((b'Z', 3)));
        let line = b"7 (sleep) S 1 7 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_stat(line), Some((b'S', 1)));
        assert_eq!(parse_stat(b"7 (x) S 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let (state, threads) = read_self_stat().expect("/proc/self/stat");
        assert!(matches!(state, b'R' | b'S'), "{}", state as char);
        assert!(threads >= 1);
    }

    #[test]
    fn ends_only_when_no_application_thread_is_left() {
        // Leader alive: never.
        assert_eq!(decide(b'S', 1, 1, false), Ending::Continue);
        assert_eq!(decide(b'R', 2, 1, true), Ending::Continue);
        // Zombie leader, one worker and our thread: the worker still runs.
        assert_eq!(decide(b'Z', 3, 1, true), Ending::Continue);
        // Zombie leader and our thread only.
        assert_eq!(decide(b'Z', 2, 1, true), Ending::ExitProcess);
        assert_eq!(decide(b'Z', 2, 1, false), Ending::EndThread);
        assert_eq!(decide(b'Z', 1, 1, true), Ending::ExitProcess);
    }
}
