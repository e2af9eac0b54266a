//! Transports: bounded per-channel queues filled by application threads, drained by the
//! library's background thread into tcp, tls, udp, unix or file destinations.
//!
//! Application threads only ever take a short mutex to append one line to a bounded
//! queue (a full queue drops the line and counts it) and, when the background thread is
//! idle, unpark it. They never touch the network.
//!
//! The background thread ([`service`]) connects with backoff, writes non-blockingly and
//! keeps per-channel status (`connected`, `attempts`, `failure_details`, `sent`,
//! `dropped`). While a destination is down (after a failed attempt), queued lines are
//! dropped and counted, so an unreachable destination costs memory for at most one queue.

pub mod conn;
pub mod endpoint;
pub mod fds;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use conn::{CONNECT_TIMEOUT, Conn, WriteResult};
pub use endpoint::{BadDest, Endpoint, TlsSettings};
pub use fds::{is_own_fd, relocate_own_fd};

/// A data channel of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Metrics = 0,
    Events = 1,
    Log = 2,
}

pub const CHANNELS: [Channel; 3] = [Channel::Metrics, Channel::Events, Channel::Log];

impl Channel {
    /// The interface name in the status file (AppScope's names).
    pub fn name(self) -> &'static str {
        match self {
            Channel::Metrics => "metrics",
            Channel::Events => "events",
            Channel::Log => "log",
        }
    }
}

/// Most lines one channel's queue holds.
pub const QUEUE_MAX_LINES: usize = 16_384;
/// Most bytes one channel's queue holds.
pub const QUEUE_MAX_BYTES: usize = 4 << 20;
/// Bytes taken from the queue per write batch on a stream.
const BATCH_BYTES: usize = 64 << 10;
/// Largest datagram we pack several lines into.
const DATAGRAM_PACK: usize = 1400;
/// First and longest reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct QueueInner {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
}

struct Queue {
    inner: Mutex<QueueInner>,
    dropped: AtomicU64,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            inner: Mutex::new(QueueInner::default()),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one line; false (and counted) when full.
    fn push(&self, line: Vec<u8>) -> bool {
        let mut q = self.lock();
        if q.lines.len() >= QUEUE_MAX_LINES || q.bytes + line.len() > QUEUE_MAX_BYTES {
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.bytes += line.len();
        q.lines.push_back(line);
        true
    }

    fn is_empty(&self) -> bool {
        self.lock().lines.is_empty()
    }

    /// Removes and returns up to `max_bytes` worth of lines (at least one if any).
    fn take(&self, max_bytes: usize) -> Vec<Vec<u8>> {
        let mut q = self.lock();
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(front) = q.lines.front() {
            if !out.is_empty() && n + front.len() > max_bytes {
                break;
            }
            n += front.len();
            let l = q.lines.pop_front().unwrap_or_default();
            q.bytes -= l.len();
            out.push(l);
        }
        out
    }

    fn clear(&self) -> u64 {
        let mut q = self.lock();
        let n = q.lines.len() as u64;
        q.lines.clear();
        q.bytes = 0;
        n
    }
}

/// Status of one channel, as the status file shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub name: &'static str,
    /// The destination in URL form.
    pub config: String,
    pub connected: bool,
    /// Failed connection attempts since the last successful one.
    pub attempts: u64,
    /// Why the last attempt or connection failed (empty when connected).
    pub failure_details: String,
    /// Lines written to the destination.
    pub sent: u64,
    /// Lines dropped: queue full, destination down or connection lost mid-write.
    pub dropped: u64,
}

struct Link {
    channel: Channel,
    endpoint: Endpoint,
    conn: Option<Conn>,
    /// Bytes taken from the queue, not yet written (whole lines).
    pending: Vec<u8>,
    pending_lines: u64,
    next_attempt: Instant,
    backoff: Duration,
    /// Failed attempts since the last success.
    attempts: u64,
    /// At least one attempt failed since the last success (the destination is down).
    down: bool,
    failure: String,
    sent: u64,
    dropped: u64,
    /// Sent first on every new connection (the process-start message), with its newline.
    greeting: Option<Vec<u8>>,
}

impl Link {
    fn new(channel: Channel) -> Link {
        Link {
            channel,
            endpoint: Endpoint::Disabled,
            conn: None,
            pending: Vec::new(),
            pending_lines: 0,
            next_attempt: Instant::now(),
            backoff: BACKOFF_MIN,
            attempts: 0,
            down: false,
            failure: String::new(),
            sent: 0,
            dropped: 0,
            greeting: None,
        }
    }

    fn disconnect(&mut self, why: String, now: Instant) {
        if self.conn.take().is_some() {
            // Lines partly or not written on the lost connection.
            let lost = self.pending_lines;
            self.dropped += lost;
            self.sent = self.sent.saturating_sub(lost);
        }
        self.pending.clear();
        self.pending_lines = 0;
        self.failure = why;
        self.down = true;
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn try_connect(&mut self, now: Instant, deadline: Instant) {
        match Conn::open(&self.endpoint, deadline) {
            Ok(c) => {
                self.conn = Some(c);
                self.attempts = 0;
                self.down = false;
                self.failure.clear();
                self.backoff = BACKOFF_MIN;
                if let Some(g) = &self.greeting {
                    self.pending.extend_from_slice(g);
                    self.pending_lines += 1;
                    self.sent += 1;
                }
            }
            Err(e) => {
                self.attempts += 1;
                self.down = true;
                self.failure = e.to_string();
                self.next_attempt = now + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Moves data toward the destination. Returns true when work remains (data pending
    /// or queued on a connected link).
    fn service(&mut self, q: &Queue, now: Instant, deadline: Instant, connect_by: Instant) -> bool {
        if self.endpoint == Endpoint::Disabled {
            self.dropped += q.clear();
            return false;
        }
        if self.conn.is_none() {
            if now >= self.next_attempt {
                self.try_connect(now, connect_by);
            }
            if self.conn.is_none() {
                if self.down {
                    self.dropped += q.clear();
                }
                return false;
            }
        }
        if self.conn.as_ref().is_some_and(|c| c.is_datagram()) {
            return self.service_datagram(q, now);
        }
        // Stream or file: keep whole lines in `pending`, write as the fd allows.
        loop {
            if self.pending.is_empty() {
                let lines = q.take(BATCH_BYTES);
                if lines.is_empty() {
                    break;
                }
                for l in &lines {
                    self.pending.extend_from_slice(l);
                }
                self.pending_lines += lines.len() as u64;
                self.sent += lines.len() as u64;
            }
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            match conn.write(&self.pending) {
                WriteResult::Wrote(0) => return true,
                WriteResult::Wrote(n) => {
                    // Usually the whole buffer went out: no need to count its lines.
                    let done = if n >= self.pending.len() {
                        self.pending_lines
                    } else {
                        self.pending[..n].iter().filter(|b| **b == b'\n').count() as u64
                    };
                    self.pending_lines = self.pending_lines.saturating_sub(done);
                    self.pending.drain(..n);
                    if self.pending.is_empty() {
                        self.pending_lines = 0;
                    }
                }
                WriteResult::WouldBlock => return true,
                WriteResult::Broken(e) => {
                    self.disconnect(e.to_string(), now);
                    return false;
                }
            }
            if Instant::now() >= deadline {
                return true;
            }
        }
        if let Some(conn) = self.conn.as_mut()
            && conn.has_buffered()
        {
            if let WriteResult::Broken(e) = conn.flush_buffered() {
                self.disconnect(e.to_string(), now);
                return false;
            }
            return conn.has_buffered();
        }
        false
    }

    fn service_datagram(&mut self, q: &Queue, now: Instant) -> bool {
        // Pending holds at most one packed datagram that would have blocked.
        loop {
            if self.pending.is_empty() {
                let lines = q.take(DATAGRAM_PACK);
                if lines.is_empty() {
                    return false;
                }
                for l in &lines {
                    self.pending.extend_from_slice(l);
                }
                self.pending_lines = lines.len() as u64;
            }
            let Some(conn) = self.conn.as_mut() else {
                return false;
            };
            match conn.write(&self.pending) {
                WriteResult::Wrote(_) => {
                    self.sent += self.pending_lines;
                }
                WriteResult::WouldBlock => return true,
                WriteResult::Broken(e) => {
                    // ECONNREFUSED from an earlier datagram: nobody listens. The socket
                    // stays usable; count the loss and report it.
                    self.dropped += self.pending_lines;
                    self.failure = e.to_string();
                    if e.raw_os_error() != Some(libc::ECONNREFUSED) {
                        self.pending.clear();
                        self.pending_lines = 0;
                        self.disconnect(self.failure.clone(), now);
                        return false;
                    }
                }
            }
            self.pending.clear();
            self.pending_lines = 0;
        }
    }

    fn status(&self, q: &Queue) -> LinkStatus {
        LinkStatus {
            name: self.channel.name(),
            config: self.endpoint.to_string(),
            connected: self.conn.is_some(),
            attempts: self.attempts,
            failure_details: self.failure.clone(),
            sent: self.sent,
            dropped: self.dropped + q.dropped.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    queues: [Queue; 3],
    links: Mutex<[Link; 3]>,
    /// Set while the background thread sleeps with nothing to do.
    idle: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

fn shared() -> Option<&'static Shared> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: SHARED only ever holds leaked, never-freed Boxes.
    unsafe { p.as_ref() }
}

fn new_shared() -> &'static Shared {
    let s = Box::leak(Box::new(Shared {
        queues: [Queue::new(), Queue::new(), Queue::new()],
        links: Mutex::new([
            Link::new(Channel::Metrics),
            Link::new(Channel::Events),
            Link::new(Channel::Log),
        ]),
        idle: AtomicBool::new(false),
        thread: OnceLock::new(),
    }));
    SHARED.store(s, Ordering::Release);
    s
}

/// Creates the transport state (once per process image, and again in a forked child).
pub fn init() {
    if shared().is_none() {
        new_shared();
    }
}

/// In a forked child: forget the parent's descriptors and queued data (the parent sends
/// its own), start empty. The old state is leaked on purpose: a lock in it may be held
/// by a parent thread that does not exist in the child.
pub fn after_fork_child() {
    fds::forget_all_in_child();
    let old = shared();
    let s = new_shared();
    if let Some(old) = old {
        // Keep the destinations (not the connections) so the child reconnects at once.
        if let Ok(links) = old.links.try_lock() {
            let mut mine = s.links.lock().unwrap_or_else(|e| e.into_inner());
            for (m, o) in mine.iter_mut().zip(links.iter()) {
                m.endpoint = o.endpoint.clone();
                m.greeting = o.greeting.clone();
            }
            // The parent's connections are not ours: never drop them as ours.
            std::mem::forget(links);
        }
    }
}

/// Registers the background thread to wake when data arrives.
pub fn set_worker(t: std::thread::Thread) {
    if let Some(s) = shared() {
        let _ = s.thread.set(t);
    }
}

fn enqueue(ch: Channel, line: Vec<u8>) {
    let Some(s) = shared() else {
        return;
    };
    s.queues[ch as usize].push(line);
    if s.idle.load(Ordering::Relaxed)
        && s.idle.swap(false, Ordering::AcqRel)
        && let Some(t) = s.thread.get()
    {
        t.unpark();
    }
}

/// Enqueues one complete event line (NDJSON). Never blocks on I/O; drops and counts when
/// the queue is full. A trailing newline is added when missing.
pub fn send_event(mut line: Vec<u8>) {
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    enqueue(Channel::Events, line)
}

/// Enqueues one complete metric line (StatsD or NDJSON); see [`send_event`].
pub fn send_metric(mut line: Vec<u8>) {
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    enqueue(Channel::Metrics, line)
}

/// Enqueues one line of the library's own log.
pub fn send_log(mut line: Vec<u8>) {
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    enqueue(Channel::Log, line)
}

fn lock_links(s: &Shared) -> MutexGuard<'_, [Link; 3]> {
    s.links.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the destinations. A channel whose destination changed is disconnected and
/// reconnects at once. `greeting` (the process-start message) is sent first on every new
/// events connection; when `resend_greeting` is set it is also sent now on a live one.
pub fn configure(endpoints: [Endpoint; 3], greeting: Option<Vec<u8>>, resend_greeting: bool) {
    let Some(s) = shared() else {
        return;
    };
    let now = Instant::now();
    let mut links = lock_links(s);
    for (link, ep) in links.iter_mut().zip(endpoints) {
        if link.endpoint != ep {
            if link.conn.is_some() {
                link.disconnect(String::new(), now);
            }
            link.endpoint = ep;
            link.attempts = 0;
            link.down = false;
            link.failure.clear();
            link.backoff = BACKOFF_MIN;
            link.next_attempt = now;
        }
    }
    let ev = &mut links[Channel::Events as usize];
    ev.greeting = greeting.map(|mut g| {
        if g.last() != Some(&b'\n') {
            g.push(b'\n');
        }
        g
    });
    if resend_greeting
        && ev.conn.is_some()
        && let Some(g) = ev.greeting.clone()
    {
        // After whatever is pending, so lines stay whole.
        ev.pending.extend_from_slice(&g);
        ev.pending_lines += 1;
        ev.sent += 1;
    }
}

/// Drains queues into the destinations until they are empty, the sockets would block or
/// `deadline` passes. Returns true when more work remains soon (the caller should come
/// back within a few milliseconds).
pub fn service(deadline: Instant) -> bool {
    let Some(s) = shared() else {
        return false;
    };
    let now = Instant::now();
    let mut links = lock_links(s);
    let mut more = false;
    for (i, link) in links.iter_mut().enumerate() {
        more |= link.service(&s.queues[i], now, deadline, now + CONNECT_TIMEOUT);
    }
    more
}

/// Checks live stream connections for a peer that went away (once per period).
pub fn check_peers() {
    let Some(s) = shared() else {
        return;
    };
    let now = Instant::now();
    let mut links = lock_links(s);
    for link in links.iter_mut() {
        if link.conn.as_ref().is_some_and(|c| c.peer_closed()) {
            link.disconnect("connection closed by peer".into(), now);
        }
    }
}

/// The next instant a disconnected link wants to retry, if any.
pub fn next_attempt() -> Option<Instant> {
    let s = shared()?;
    let links = lock_links(s);
    links
        .iter()
        .filter(|l| l.conn.is_none() && l.endpoint != Endpoint::Disabled)
        .map(|l| l.next_attempt)
        .min()
}

/// True when any queue holds data.
pub fn has_queued() -> bool {
    shared().is_some_and(|s| s.queues.iter().any(|q| !q.is_empty()))
}

/// Marks the background thread idle (it is about to sleep). Returns false when data
/// arrived meanwhile (do not sleep).
pub fn go_idle() -> bool {
    let Some(s) = shared() else {
        return true;
    };
    s.idle.store(true, Ordering::SeqCst);
    if s.queues.iter().any(|q| !q.is_empty()) {
        s.idle.store(false, Ordering::SeqCst);
        return false;
    }
    true
}

/// Clears the idle mark after waking.
pub fn wake() {
    if let Some(s) = shared() {
        s.idle.store(false, Ordering::SeqCst);
    }
}

/// Status of every channel.
pub fn status() -> Vec<LinkStatus> {
    let Some(s) = shared() else {
        return Vec::new();
    };
    let links = lock_links(s);
    links
        .iter()
        .enumerate()
        .map(|(i, l)| l.status(&s.queues[i]))
        .collect()
}

/// Status of every channel, or `None` when the background thread holds the state.
pub fn try_status() -> Option<Vec<LinkStatus>> {
    let s = shared()?;
    let links = s.links.try_lock().ok()?;
    Some(
        links
            .iter()
            .enumerate()
            .map(|(i, l)| l.status(&s.queues[i]))
            .collect(),
    )
}

/// How often the exit flush re-checks a busy lock or a pending write: short, because
/// a short-lived process waits here (a 1 ms sleep became several ms on a loaded machine).
pub const EXIT_POLL: Duration = Duration::from_micros(100);

/// Bounded final flush (process exit): waits at most until `deadline` for the lock,
/// then drains what it can.
pub fn flush_until(deadline: Instant) {
    let Some(s) = shared() else {
        return;
    };
    loop {
        match s.links.try_lock() {
            Ok(mut links) => {
                loop {
                    let now = Instant::now();
                    let mut more = false;
                    for (i, link) in links.iter_mut().enumerate() {
                        // One connection attempt at exit even if the backoff says later.
                        if link.conn.is_none() && !link.down {
                            link.next_attempt = now;
                        }
                        more |= link.service(&s.queues[i], now, deadline, deadline);
                    }
                    let queued = s
                        .queues
                        .iter()
                        .enumerate()
                        .any(|(i, q)| !q.is_empty() && links[i].conn.is_some());
                    if (!more && !queued) || Instant::now() >= deadline {
                        return;
                    }
                    std::thread::sleep(EXIT_POLL);
                }
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                drop(p);
                return;
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return;
                }
                std::thread::sleep(EXIT_POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_and_counts_drops() {
        let q = Queue::new();
        for i in 0..QUEUE_MAX_LINES + 10 {
            q.push(format!("{i}\n").into_bytes());
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 10);
        let big = vec![b'x'; QUEUE_MAX_BYTES];
        assert!(!q.push(big));
        let first = q.take(10);
        assert_eq!(
            first,
            vec![
                b"0\n".to_vec(),
                b"1\n".to_vec(),
                b"2\n".to_vec(),
                b"3\n".to_vec(),
                b"4\n".to_vec()
            ]
        );
    }

    #[test]
    fn take_returns_at_least_one_line() {
        let q = Queue::new();
        q.push(vec![b'a'; 100]);
        assert_eq!(q.take(10).len(), 1);
        assert!(q.is_empty());
    }
}
