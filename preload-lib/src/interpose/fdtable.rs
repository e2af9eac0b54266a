//! Per-fd state: a fixed table indexed by fd number holding lazily allocated slots that
//! are reused for the life of the process (never freed, so a reader racing a `close` never
//! touches freed memory). Hot-path fields are atomics; the rest (names, addresses, HTTP
//! parser state) sits behind a per-slot mutex taken only when events, verbose metrics or
//! protocol detection need it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{
    AtomicPtr, AtomicU8, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

use crate::proto::http::HttpStream;

/// Fds at or above this are not tracked (counted in aggregates only).
pub const MAX_FDS: usize = 65536;

/// What an fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Not known to us (not opened through an interposed call, or closed).
    Unknown = 0,
    File = 1,
    Tcp = 2,
    Udp = 3,
    UnixStream = 4,
    UnixDgram = 5,
    /// A socket of another family/type, a pipe, an eventfd...: not reported.
    Other = 6,
}

impl Kind {
    fn from_u8(v: u8) -> Kind {
        match v {
            1 => Kind::File,
            2 => Kind::Tcp,
            3 => Kind::Udp,
            4 => Kind::UnixStream,
            5 => Kind::UnixDgram,
            6 => Kind::Other,
            _ => Kind::Unknown,
        }
    }
    pub fn is_socket(self) -> bool {
        matches!(
            self,
            Kind::Tcp | Kind::Udp | Kind::UnixStream | Kind::UnixDgram
        )
    }
    /// Index into [`crate::metrics::CLASSES`].
    pub fn class(self) -> usize {
        match self {
            Kind::Tcp => 0,
            Kind::Udp => 1,
            Kind::UnixStream => 2,
            Kind::UnixDgram => 3,
            _ => 4,
        }
    }
    /// AppScope's `proto` tag.
    pub fn proto(self) -> &'static str {
        match self {
            Kind::Tcp | Kind::UnixStream => "TCP",
            Kind::Udp | Kind::UnixDgram => "UDP",
            _ => "OTHER",
        }
    }
    /// AppScope's `net_transport` field.
    pub fn transport(self) -> &'static str {
        match self {
            Kind::Tcp => "IP.TCP",
            Kind::Udp => "IP.UDP",
            Kind::UnixStream => "Unix.TCP",
            Kind::UnixDgram => "Unix.UDP",
            _ => "IP.RAW",
        }
    }
}

/// Slot flags.
pub const F_LISTEN: u8 = 1;
pub const F_LOGFILE: u8 = 2;
pub const F_LOGFILE_CHECKED: u8 = 4;
pub const F_NOT_HTTP: u8 = 8;
pub const F_ACCEPTED: u8 = 16;
/// Opened before us (`Info::op == "inherited"`): kept as a flag so the console check on
/// every write to fd 1/2 needs no lock.
pub const F_INHERITED: u8 = 32;

/// A pending HTTP request waiting for its response.
#[derive(Debug, Clone, Default)]
pub struct PendingReq {
    pub method: String,
    pub target: String,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub t0_ns: u64,
    pub content_length: Option<u64>,
    /// True when the request was received (we are the server).
    pub server: bool,
}

/// HTTP detector state of one connection.
#[derive(Debug, Default)]
pub struct HttpConn {
    pub tx: HttpStream,
    pub rx: HttpStream,
    pub pending: Option<PendingReq>,
}

/// Non-atomic details of an fd.
#[derive(Debug, Default)]
pub struct Info {
    /// File path, or the unix socket path.
    pub path: String,
    /// The operation that opened it (`open`, `openat`, `accept4`...).
    pub op: &'static str,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub http: Option<Box<HttpConn>>,
}

/// One fd's state.
#[derive(Debug)]
pub struct Slot {
    kind: AtomicU8,
    pub flags: AtomicU8,
    pub channel: AtomicU64,
    pub opened_ns: AtomicU64,
    pub rd_bytes: AtomicU64,
    pub rd_ops: AtomicU64,
    pub wr_bytes: AtomicU64,
    pub wr_ops: AtomicU64,
    pub info: Mutex<Info>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            kind: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            channel: AtomicU64::new(0),
            opened_ns: AtomicU64::new(0),
            rd_bytes: AtomicU64::new(0),
            rd_ops: AtomicU64::new(0),
            wr_bytes: AtomicU64::new(0),
            wr_ops: AtomicU64::new(0),
            info: Mutex::new(Info::default()),
        }
    }

    #[inline]
    pub fn kind(&self) -> Kind {
        Kind::from_u8(self.kind.load(Acquire))
    }

    pub fn has_flag(&self, f: u8) -> bool {
        self.flags.load(Relaxed) & f != 0
    }

    pub fn set_flag(&self, f: u8) {
        self.flags.fetch_or(f, Relaxed);
    }

    /// Lock the details (recovering from a poisoned lock).
    pub fn info(&self) -> std::sync::MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start tracking a newly opened fd.
    pub fn reset(&self, kind: Kind, info: Info, now_ns: u64) {
        self.kind.store(Kind::Unknown as u8, Release);
        let inherited = info.op == "inherited";
        self.flags
            .store(if inherited { F_INHERITED } else { 0 }, Relaxed);
        self.channel.store(crate::events::new_channel(), Relaxed);
        self.opened_ns.store(now_ns, Relaxed);
        for c in [&self.rd_bytes, &self.rd_ops, &self.wr_bytes, &self.wr_ops] {
            c.store(0, Relaxed);
        }
        *self.info() = info;
        self.kind.store(kind as u8, Release);
    }

    /// Stop tracking (on close); returns the kind it had.
    pub fn clear(&self) -> Kind {
        Kind::from_u8(self.kind.swap(Kind::Unknown as u8, AcqRel))
    }

    /// Snapshot of the counters: (read bytes, read ops, write bytes, write ops).
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        (
            self.rd_bytes.load(Relaxed),
            self.rd_ops.load(Relaxed),
            self.wr_bytes.load(Relaxed),
            self.wr_ops.load(Relaxed),
        )
    }
}

use std::sync::atomic::Ordering::AcqRel;

static TABLE: [AtomicPtr<Slot>; MAX_FDS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_FDS];
/// One past the highest fd whose slot was ever allocated: scans stop there instead of
/// walking (and faulting in) the whole 512 KiB table.
static HIGH: AtomicUsize = AtomicUsize::new(0);

/// The slot of `fd` if one was ever allocated.
#[inline]
pub fn get(fd: i32) -> Option<&'static Slot> {
    let p = TABLE.get(usize::try_from(fd).ok()?)?.load(Acquire);
    // SAFETY: slots are leaked boxes, never freed.
    unsafe { p.as_ref() }
}

/// The slot of `fd`, allocating it on first use.
pub fn get_or_alloc(fd: i32) -> Option<&'static Slot> {
    let cell = TABLE.get(usize::try_from(fd).ok()?)?;
    let p = cell.load(Acquire);
    if !p.is_null() {
        // SAFETY: as above.
        return unsafe { p.as_ref() };
    }
    let fresh = Box::into_raw(Box::new(Slot::new()));
    // fd >= 0 here (the table lookup succeeded).
    HIGH.fetch_max(fd as usize + 1, AcqRel);
    match cell.compare_exchange(std::ptr::null_mut(), fresh, AcqRel, Acquire) {
        // SAFETY: we just published it; it is never freed.
        Ok(_) => unsafe { fresh.as_ref() },
        Err(existing) => {
            // SAFETY: `fresh` was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: as above.
            unsafe { existing.as_ref() }
        }
    }
}

/// Forgets every descriptor (recording is switched back on after a time off, when the
/// application's opens and closes were not seen: what the table knew may be stale).
pub fn forget_all() {
    for cell in TABLE.iter().take(HIGH.load(Acquire)) {
        // SAFETY: as above.
        if let Some(s) = unsafe { cell.load(Acquire).as_ref() } {
            s.clear();
        }
    }
}

/// The kind of `fd` (Unknown when untracked).
#[inline]
pub fn kind(fd: i32) -> Kind {
    get(fd).map_or(Kind::Unknown, |s| s.kind())
}

/// Copy `old`'s identity to `new` (dup family). Counters start from zero.
pub fn dup(old: i32, new: i32, now_ns: u64) {
    let Some(o) = get(old) else { return };
    let k = o.kind();
    if k == Kind::Unknown {
        if let Some(n) = get(new) {
            n.clear();
        }
        return;
    }
    let info = {
        let i = o.info();
        Info {
            path: i.path.clone(),
            op: i.op,
            local: i.local,
            peer: i.peer,
            http: None,
        }
    };
    if let Some(n) = get_or_alloc(new) {
        n.reset(k, info, now_ns);
        n.flags.store(o.flags.load(Relaxed), Relaxed);
    }
}

/// Listening sockets (at most `max`), for `net.port`.
pub fn listeners(max: usize) -> Vec<crate::metrics::Listener> {
    let mut v = Vec::new();
    let high = HIGH.load(Acquire).min(MAX_FDS);
    for (fd, cell) in TABLE[..high].iter().enumerate() {
        if v.len() >= max {
            break;
        }
        // SAFETY: leaked boxes.
        let Some(s) = (unsafe { cell.load(Acquire).as_ref() }) else {
            continue;
        };
        if s.kind().is_socket() && s.has_flag(F_LISTEN) {
            let port = s.info().local.map_or(0, |a| a.port());
            v.push(crate::metrics::Listener {
                fd: fd as i32,
                proto: s.kind().proto(),
                port,
            });
        }
    }
    v
}

/// Decode a `sockaddr` (IPv4/IPv6; `None` for other families or short lengths).
///
/// # Safety
/// `sa` must be null or point to `len` readable bytes.
pub unsafe fn sockaddr_to(sa: *const libc::sockaddr, len: libc::socklen_t) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: caller guarantees `len` bytes; we check the family's size first.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
                let a = &*(sa as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
                let a = &*(sa as *const libc::sockaddr_in6);
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
            }
            _ => None,
        }
    }
}

/// The unix socket path in a `sockaddr_un` (`@name` for abstract), if any.
///
/// # Safety
/// As [`sockaddr_to`].
pub unsafe fn sockaddr_un_path(sa: *const libc::sockaddr, len: libc::socklen_t) -> Option<String> {
    if sa.is_null() || (len as usize) <= std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: family read is within `len`.
    unsafe {
        if i32::from((*sa).sa_family) != libc::AF_UNIX {
            return None;
        }
        let base = (sa as *const u8).add(std::mem::size_of::<libc::sa_family_t>());
        let n = (len as usize - std::mem::size_of::<libc::sa_family_t>()).min(108);
        let bytes = std::slice::from_raw_parts(base, n);
        if bytes.first() == Some(&0) {
            let end = bytes
                .iter()
                .skip(1)
                .position(|b| *b == 0)
                .map_or(n, |p| p + 1);
            Some(format!("@{}", String::from_utf8_lossy(&bytes[1..end])))
        } else {
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(n);
            Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_allocated_once_reused_and_dup_copies_identity() {
        let s = get_or_alloc(60000).unwrap();
        assert!(std::ptr::eq(s, get_or_alloc(60000).unwrap()));
        s.reset(
            Kind::Tcp,
            Info {
                path: String::new(),
                op: "connect",
                local: None,
                peer: "127.0.0.1:80".parse().ok(),
                http: None,
            },
            1,
        );
        s.rd_bytes.fetch_add(10, Relaxed);
        dup(60000, 60001, 2);
        let d = get(60001).unwrap();
        assert_eq!(d.kind(), Kind::Tcp);
        assert_eq!(d.counters().0, 0);
        assert_eq!(d.info().peer.unwrap().port(), 80);
        assert_eq!(s.clear(), Kind::Tcp);
        assert_eq!(kind(60000), Kind::Unknown);
        assert!(get(70000).is_none() && get(-1).is_none());
    }

    #[test]
    fn sockaddr_decoding() {
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_port = 8080u16.to_be();
        a.sin_addr.s_addr = u32::from(Ipv4Addr::new(127, 0, 0, 1)).to_be();
        let got = unsafe {
            sockaddr_to(
                (&a as *const libc::sockaddr_in).cast(),
                std::mem::size_of_val(&a) as u32,
            )
        };
        assert_eq!(got, Some("127.0.0.1:8080".parse().unwrap()));
        let mut u: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        u.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in b"\0abs".iter().enumerate() {
            u.sun_path[i] = *b as libc::c_char;
        }
        let p = unsafe { sockaddr_un_path((&u as *const libc::sockaddr_un).cast(), 2 + 4) };
        assert_eq!(p.as_deref(), Some("@abs"));
    }
}
