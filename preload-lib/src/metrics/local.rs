//! Per-thread counter blocks: the application's threads count into a block of their
//! own with plain (non-locked) relaxed stores; the reporter sums the blocks once per
//! period.
//!
//! - A block mirrors [`super::Agg`] slot for slot (slot `i` is the `i`-th 8-byte
//!   field), so `AGG.fs_read_bytes.add(n)` lands in the calling thread's block.
//! - Only the owning thread writes a block's values, so load + store is exact without a
//!   lock prefix; the reporter reads them and remembers what it has already reported
//!   (`seen`), so values never need resetting.
//! - Blocks are never freed. When a thread exits its block is released for the next new
//!   thread, which carries on from the same values: nothing counted is lost.
//! - After fork only the forking thread exists: every other block is released, and the
//!   parent's unreported counts are marked as seen (the parent reports them).
//! - A thread that cannot use its block (during thread exit) counts into the global
//!   atomics instead.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Slots in a block (one per 8-byte field of [`super::Agg`]).
pub const SLOTS: usize = std::mem::size_of::<super::Agg>() / 8;

pub struct Block {
    vals: [AtomicU64; SLOTS],
    /// Reporter only (under the period lock): values already reported.
    seen: [AtomicU64; SLOTS],
    in_use: AtomicBool,
    next: *const Block,
}

// SAFETY: `next` is immutable after publication and points to a leaked block.
unsafe impl Sync for Block {}
unsafe impl Send for Block {}

static HEAD: AtomicPtr<Block> = AtomicPtr::new(std::ptr::null_mut());

/// Marker in `MINE` for a thread whose block was released (thread exit under way).
const GONE: *const Block = std::ptr::dangling::<Block>();

thread_local! {
    static MINE: Cell<*const Block> = const { Cell::new(std::ptr::null()) };
    static RELEASE: Release = const { Release };
}

struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        let _ = MINE.try_with(|m| {
            let p = m.replace(GONE);
            // SAFETY: blocks are leaked, never freed.
            if let Some(b) = unsafe { p.as_ref() }.filter(|_| p != GONE) {
                b.in_use.store(false, Ordering::Release);
            }
        });
    }
}

fn blocks() -> impl Iterator<Item = &'static Block> {
    let mut p: *const Block = HEAD.load(Ordering::Acquire);
    std::iter::from_fn(move || {
        // SAFETY: the list only holds leaked blocks.
        let b = unsafe { p.as_ref() }?;
        p = b.next;
        Some(b)
    })
}

#[cold]
fn acquire() -> *const Block {
    // Registering the release runs the destructor at thread exit; if that is not
    // possible any more (the thread is exiting), count globally.
    if RELEASE.try_with(|_| ()).is_err() {
        return GONE;
    }
    for b in blocks() {
        if !b.in_use.load(Ordering::Relaxed)
            && b.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return b;
        }
    }
    let b = Box::leak(Box::new(Block {
        vals: [const { AtomicU64::new(0) }; SLOTS],
        seen: [const { AtomicU64::new(0) }; SLOTS],
        in_use: AtomicBool::new(true),
        next: std::ptr::null(),
    }));
    let mut head = HEAD.load(Ordering::Acquire);
    loop {
        b.next = head;
        match HEAD.compare_exchange(head, b, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return b,
            Err(h) => head = h,
        }
    }
}

/// The calling thread's block (taken on first use), or `None` (count globally then).
/// Look it up once per call when adding several counters.
#[inline]
pub fn mine() -> Option<&'static Block> {
    MINE.try_with(|m| {
        let mut p = m.get();
        if p.is_null() {
            p = acquire();
            m.set(p);
        }
        if p == GONE {
            return None;
        }
        // SAFETY: blocks are leaked, never freed.
        unsafe { p.as_ref() }
    })
    .ok()
    .flatten()
}

impl Block {
    /// Adds `n` to slot `i`. Only the owning thread calls this.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        let v = &self.vals[i];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// Adds `n` to slot `i` of the calling thread's block. False when the thread has no
/// block (count globally then).
#[inline]
pub fn add(i: usize, n: u64) -> bool {
    match mine() {
        Some(b) => {
            b.add(i, n);
            true
        }
        None => false,
    }
}

/// Adds every block's unreported counts into `out` and marks them reported. Called
/// with the period lock held (one caller at a time).
pub fn collect(out: &mut [u64; SLOTS]) {
    for b in blocks() {
        for ((o, v), s) in out.iter_mut().zip(&b.vals).zip(&b.seen) {
            let v = v.load(Ordering::Relaxed);
            let s = s.swap(v, Ordering::Relaxed);
            *o = o.wrapping_add(v.wrapping_sub(s));
        }
    }
}

/// In a forked child: the parent's counts are the parent's; only this thread's block
/// stays in use.
pub fn after_fork_child() {
    let mine = MINE.try_with(|m| m.get()).unwrap_or(std::ptr::null());
    for b in blocks() {
        for (v, s) in b.vals.iter().zip(&b.seen) {
            s.store(v.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if !std::ptr::eq(b, mine) {
            b.in_use.store(false, Ordering::Release);
        }
    }
}

/// Tests that collect counts run one at a time (a collection takes every thread's).
#[cfg(test)]
pub(crate) static TEST_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_are_collected_once_and_survive_thread_exit() {
        let _s = TEST_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = [0u64; SLOTS];
        collect(&mut out);
        let hs: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        assert!(add(3, 2));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Blocks of exited threads are reused, not lost.
        std::thread::spawn(|| assert!(add(3, 1))).join().unwrap();
        let mut out = [0u64; SLOTS];
        collect(&mut out);
        assert_eq!(out[3], 8001);
        let mut again = [0u64; SLOTS];
        collect(&mut again);
        assert_eq!(again[3], 0);
        assert!(blocks().count() <= 6);
    }
}
