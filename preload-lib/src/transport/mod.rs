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

    /// The channel opens its destination only once it has a line to write: the library's
    /// log is usually empty, and a process should not carry a descriptor for it.
    /// Metrics and events connect at start, so the status file tells at once whether
    /// their destination is reachable and the start message goes out.
    pub fn on_demand(self) -> bool {
        self == Channel::Log
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
    /// Times the descriptor was closed or replaced under the library (then reopened).
    pub lost_descriptors: u64,
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
    /// The background thread is connecting (without holding this link's lock).
    connecting: bool,
    /// Descriptors of this link closed or replaced under the library.
    lost: u64,
}

/// Failure details of a link whose descriptor the application closed under the library.
const LOST_DESCRIPTOR: &str = "descriptor closed by the application; reconnected";

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
            connecting: false,
            lost: 0,
        }
    }

    /// Should a connection attempt start now?
    fn wants_connect(&self, now: Instant) -> bool {
        self.endpoint != Endpoint::Disabled
            && self.conn.is_none()
            && !self.connecting
            && now >= self.next_attempt
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

    /// The descriptor was closed or replaced under us (see [`WriteResult::Lost`]):
    /// nothing pending was written, so it is kept for the next connection, made at once.
    fn lost_descriptor(&mut self, now: Instant) {
        // Dropping the connection does not close the number: it is no longer ours.
        self.conn = None;
        self.failure = LOST_DESCRIPTOR.into();
        self.next_attempt = now;
        self.lost += 1;
    }

    /// Records the result of a connection attempt.
    fn connect_result(&mut self, r: std::io::Result<Conn>, now: Instant) {
        match r {
            Ok(c) => {
                self.conn = Some(c);
                self.attempts = 0;
                self.down = false;
                self.failure.clear();
                self.backoff = BACKOFF_MIN;
                if let Some(g) = &self.greeting {
                    // First on the connection, before lines kept from a lost descriptor.
                    self.pending.splice(0..0, g.iter().copied());
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

    /// Moves data toward the destination (never connects: see [`connect_step`]). Returns
    /// true when work remains (data pending or queued on a connected link).
    fn service(&mut self, q: &Queue, now: Instant, deadline: Instant) -> bool {
        if self.endpoint == Endpoint::Disabled {
            self.dropped += q.clear();
            return false;
        }
        if self.conn.is_none() {
            if self.down {
                self.dropped += q.clear();
            }
            return false;
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
                WriteResult::Lost => {
                    self.lost_descriptor(now);
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
            match conn.flush_buffered() {
                WriteResult::Broken(e) => {
                    self.disconnect(e.to_string(), now);
                    return false;
                }
                // Bytes of the TLS session are lost with it.
                WriteResult::Lost => {
                    self.disconnect(LOST_DESCRIPTOR.into(), now);
                    return false;
                }
                _ => {}
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
                WriteResult::Lost => {
                    // Nothing was sent: the same datagram goes out on the new socket.
                    self.lost_descriptor(now);
                    return false;
                }
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
            lost_descriptors: self.lost,
        }
    }
}

struct Shared {
    queues: [Queue; 3],
    /// One lock per channel: the background thread holds one only across non-blocking
    /// writes (never across a connection attempt), so the exit flush of one channel
    /// never waits for another channel's connect.
    links: [Mutex<Link>; 3],
    /// Set while the background thread sleeps with nothing to do.
    idle: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// [`configure`] ran at least once (the destinations are known).
    configured: AtomicBool,
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
        links: [
            Mutex::new(Link::new(Channel::Metrics)),
            Mutex::new(Link::new(Channel::Events)),
            Mutex::new(Link::new(Channel::Log)),
        ],
        idle: AtomicBool::new(false),
        thread: OnceLock::new(),
        configured: AtomicBool::new(false),
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
        for (mine, theirs) in s.links.iter().zip(old.links.iter()) {
            if let Ok(o) = theirs.try_lock() {
                let mut m = mine.lock().unwrap_or_else(|e| e.into_inner());
                m.endpoint = o.endpoint.clone();
                m.greeting = o.greeting.clone();
                // The parent's connections are not ours: never drop them as ours.
                std::mem::forget(o);
            }
        }
        s.configured
            .store(old.configured.load(Ordering::Acquire), Ordering::Release);
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

fn lock_link(m: &Mutex<Link>) -> MutexGuard<'_, Link> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lock of one link, waiting for it at most until `deadline` (exit path). The
/// background thread holds it only across a non-blocking write, so the first waits
/// only yield the CPU (a sleep, however short, costs a scheduler round trip).
fn lock_link_until(m: &Mutex<Link>, deadline: Instant) -> Option<MutexGuard<'_, Link>> {
    let mut tries = 0u32;
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return None;
                }
                exit_wait(&mut tries);
            }
        }
    }
}

/// One wait step of the exit path: yield for the first few, then sleep [`EXIT_POLL`].
fn exit_wait(tries: &mut u32) {
    *tries += 1;
    if *tries <= 50 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(EXIT_POLL);
    }
}

/// True once [`configure`] has set the destinations.
pub fn is_configured() -> bool {
    shared().is_some_and(|s| s.configured.load(Ordering::Acquire))
}

/// Sets the destinations. A channel whose destination changed is disconnected and
/// reconnects at once. `greeting` (the process-start message) is sent first on every new
/// events connection; when `resend_greeting` is set it is also sent now on a live one.
pub fn configure(endpoints: [Endpoint; 3], greeting: Option<Vec<u8>>, resend_greeting: bool) {
    let Some(s) = shared() else {
        return;
    };
    let now = Instant::now();
    for (m, ep) in s.links.iter().zip(endpoints) {
        let mut link = lock_link(m);
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
    let mut ev = lock_link(&s.links[Channel::Events as usize]);
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
    drop(ev);
    s.configured.store(true, Ordering::Release);
}

/// One connection attempt on link `i` if it is due, made without holding the link's
/// lock (a TCP connect or TLS handshake can take up to [`CONNECT_TIMEOUT`]).
fn connect_step(s: &Shared, i: usize) {
    let now = Instant::now();
    let ep = {
        let mut l = lock_link(&s.links[i]);
        if !l.wants_connect(now) || (l.channel.on_demand() && s.queues[i].is_empty()) {
            return;
        }
        l.connecting = true;
        l.endpoint.clone()
    };
    let r = Conn::open(&ep, now + CONNECT_TIMEOUT);
    let mut l = lock_link(&s.links[i]);
    l.connecting = false;
    if l.endpoint == ep && l.conn.is_none() {
        l.connect_result(r, Instant::now());
    }
    // Otherwise the destination changed meanwhile: `r` is dropped (and closed).
}

/// Drains queues into the destinations until they are empty, the sockets would block or
/// `deadline` passes, connecting links that are due first. Returns true when more work
/// remains soon (the caller should come back within a few milliseconds).
pub fn service(deadline: Instant) -> bool {
    let Some(s) = shared() else {
        return false;
    };
    let mut more = false;
    for i in 0..s.links.len() {
        connect_step(s, i);
        let mut l = lock_link(&s.links[i]);
        more |= l.service(&s.queues[i], Instant::now(), deadline);
    }
    more
}

/// Checks live stream connections for a peer that went away (once per period).
pub fn check_peers() {
    let Some(s) = shared() else {
        return;
    };
    let now = Instant::now();
    for m in s.links.iter() {
        let mut link = lock_link(m);
        if link.conn.as_ref().is_some_and(|c| c.is_lost()) {
            link.lost_descriptor(now);
        } else if link.conn.as_ref().is_some_and(|c| c.peer_closed()) {
            link.disconnect("connection closed by peer".into(), now);
        }
    }
}

/// The next instant a disconnected link wants to retry, if any.
pub fn next_attempt() -> Option<Instant> {
    let s = shared()?;
    s.links
        .iter()
        .filter_map(|m| {
            let l = lock_link(m);
            (l.conn.is_none() && l.endpoint != Endpoint::Disabled).then_some(l.next_attempt)
        })
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

/// Wakes the background thread now (whether or not data is queued).
pub fn unpark_worker() {
    if let Some(t) = shared().and_then(|s| s.thread.get()) {
        t.unpark();
    }
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
    s.links
        .iter()
        .enumerate()
        .map(|(i, m)| lock_link(m).status(&s.queues[i]))
        .collect()
}

/// Status of every channel, or `None` when the background thread holds the state.
pub fn try_status() -> Option<Vec<LinkStatus>> {
    let s = shared()?;
    let mut v = Vec::with_capacity(s.links.len());
    for (i, m) in s.links.iter().enumerate() {
        v.push(m.try_lock().ok()?.status(&s.queues[i]));
    }
    Some(v)
}

/// How often the exit flush re-checks a busy lock or a pending write: short, because
/// a short-lived process waits here (a 1 ms sleep became several ms on a loaded machine).
pub const EXIT_POLL: Duration = Duration::from_micros(100);

/// Can `ch` still deliver at process exit? True when it is connected, or when its
/// destination is local (file, stdout/stderr, unix socket, UDP to an IP address) and
/// not known to be down: the exit path connects to those itself, and never to a TCP or
/// TLS destination or a name that needs resolving.
pub fn can_deliver_at_exit(ch: Channel) -> bool {
    let Some(s) = shared() else {
        return false;
    };
    match s.links[ch as usize].try_lock() {
        Ok(l) => l.conn.is_some() || (!l.down && l.endpoint.exit_connectable()),
        // The background thread is writing to it right now.
        Err(std::sync::TryLockError::WouldBlock) => true,
        Err(std::sync::TryLockError::Poisoned(_)) => false,
    }
}

/// Bounded final flush (process exit): delivers what is queued on connected links, and
/// on links whose destination is local (see [`can_deliver_at_exit`]) after one connection
/// attempt. Never connects to a network destination and never waits for the
/// background thread's connection attempt to a network destination. Gives up at
/// `deadline`.
///
/// `greeting` makes the start message when the exit path itself connects the events
/// link and none is set yet (the background thread never ran): only then is it built.
pub fn flush_until(deadline: Instant, greeting: &dyn Fn() -> Vec<u8>) {
    let Some(s) = shared() else {
        return;
    };
    for (i, m) in s.links.iter().enumerate() {
        let q = &s.queues[i];
        let Some(mut l) = lock_link_until(m, deadline) else {
            return;
        };
        if l.conn.is_none() {
            if l.down || !l.endpoint.exit_connectable() || (l.channel.on_demand() && q.is_empty()) {
                continue;
            }
            // A local destination the background thread is connecting to right now:
            // that takes microseconds; wait for it rather than connect twice.
            let mut tries = 0u32;
            while l.connecting && Instant::now() < deadline {
                drop(l);
                exit_wait(&mut tries);
                match lock_link_until(m, deadline) {
                    Some(g) => l = g,
                    None => return,
                }
            }
            if l.conn.is_none() && !l.connecting && !l.down {
                let ep = l.endpoint.clone();
                let r = Conn::open(&ep, deadline);
                if r.is_ok() && i == Channel::Events as usize && l.greeting.is_none() {
                    let mut g = greeting();
                    if g.last() != Some(&b'\n') {
                        g.push(b'\n');
                    }
                    l.greeting = Some(g);
                }
                l.connect_result(r, Instant::now());
            }
            if l.conn.is_none() {
                continue;
            }
        }
        let mut tries = 0u32;
        loop {
            let more = l.service(q, Instant::now(), deadline);
            let queued = !q.is_empty() && l.conn.is_some();
            if (!more && !queued) || Instant::now() >= deadline {
                break;
            }
            exit_wait(&mut tries);
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
