//! What happens after an interposed call: fd tracking, metric counting, events and HTTP
//! detection. Called by the wrappers in `libc_fns.rs` with the guard held, after the real
//! call, with `errno` saved by the caller.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use super::fdtable::{
    self, F_ACCEPTED, F_LISTEN, F_LOGFILE, F_LOGFILE_CHECKED, F_NOT_HTTP, HttpConn, Info, Kind,
    PendingReq, Slot,
};
use crate::events::{self, Fields};
use crate::metrics::format::{Kind as MK, Metric, Tag};
use crate::metrics::{self, AGG};
use crate::proto::http::Message;

/// Gives the bytes of a transfer, chunk by chunk, to the closure it is called with.
pub type Bytes<'a> = &'a dyn Fn(&mut dyn FnMut(&[u8]));

/// Direction of a data transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

/// Is `fd` one of the library's own descriptors?
#[inline]
pub fn own_fd(fd: i32) -> bool {
    crate::transport::is_own_fd(fd)
}

/// Should the wrapper time this call? (fs.duration needs it; one relaxed load)
#[inline]
pub fn want_timing(fd: i32) -> bool {
    metrics::on(metrics::FS) && fdtable::kind(fd) == Kind::File
}

/// Kind of `fd`, classifying an fd we have not seen open (inherited, or created by a
/// call we do not interpose) once with `fstat`/`getsockopt`.
pub fn classify(fd: i32) -> Kind {
    if let Some(s) = fdtable::get(fd) {
        let k = s.kind();
        if k != Kind::Unknown {
            return k;
        }
    }
    if fd < 0 || fd as usize >= fdtable::MAX_FDS || own_fd(fd) {
        return Kind::Unknown;
    }
    // SAFETY: fstat with a valid out-pointer; the fd may be invalid, which fstat reports.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Kind::Unknown;
    }
    let fmt = st.st_mode & libc::S_IFMT;
    let (kind, info) = if fmt == libc::S_IFSOCK {
        let (k, local, peer) = socket_identity(fd);
        (
            k,
            Info {
                op: "inherited",
                local,
                peer,
                ..Default::default()
            },
        )
    } else if fmt == libc::S_IFREG || fmt == libc::S_IFCHR && fd > 2 {
        let path = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            Kind::File,
            Info {
                path,
                op: "inherited",
                ..Default::default()
            },
        )
    } else {
        (Kind::Other, Info::default())
    };
    if let Some(s) = fdtable::get_or_alloc(fd) {
        s.reset(kind, info, metrics::mono_ns());
    }
    kind
}

fn socket_identity(fd: i32) -> (Kind, Option<SocketAddr>, Option<SocketAddr>) {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt with valid out-pointers.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid buffer and length.
    let fam = if unsafe {
        libc::getsockname(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut sl)
    } == 0
    {
        i32::from(ss.ss_family)
    } else {
        -1
    };
    // SAFETY: ss holds sl bytes.
    let local = unsafe { fdtable::sockaddr_to((&ss as *const libc::sockaddr_storage).cast(), sl) };
    let kind = kind_of(fam, ty);
    let peer = if kind.is_socket() { peer_of(fd) } else { None };
    (kind, local, peer)
}

fn kind_of(family: i32, ty: i32) -> Kind {
    let ty = ty & 0xf;
    match (family, ty) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => Kind::Tcp,
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => Kind::Udp,
        (libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_SEQPACKET) => Kind::UnixStream,
        (libc::AF_UNIX, libc::SOCK_DGRAM) => Kind::UnixDgram,
        _ => Kind::Other,
    }
}

fn local_of(fd: i32) -> Option<SocketAddr> {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid buffer and length.
    if unsafe { libc::getsockname(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut sl) }
        != 0
    {
        return None;
    }
    // SAFETY: ss holds sl bytes.
    unsafe { fdtable::sockaddr_to((&ss as *const libc::sockaddr_storage).cast(), sl) }
}

fn peer_of(fd: i32) -> Option<SocketAddr> {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid buffer and length.
    if unsafe { libc::getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut sl) }
        != 0
    {
        return None;
    }
    // SAFETY: ss holds sl bytes.
    unsafe { fdtable::sockaddr_to((&ss as *const libc::sockaddr_storage).cast(), sl) }
}

fn fs_error(op: &'static str, class: usize, file: &str) {
    if !metrics::on(metrics::FS) {
        return;
    }
    if metrics::indiv(metrics::INDIV_ERR) {
        metrics::individual(&Metric {
            name: "fs.error",
            kind: MK::Counter,
            value: 1.0,
            unit: "operation",
            tags: vec![
                Tag::s("op", op),
                Tag::s("file", file),
                Tag::s("class", metrics::FS_ERR_CLASSES[class]).req(),
            ],
            summary: false,
        });
    } else {
        AGG.fs_err[class].add(1);
    }
}

fn net_error(op: &'static str, class: usize) {
    if !metrics::on(metrics::NET) {
        return;
    }
    if metrics::indiv(metrics::INDIV_ERR) {
        metrics::individual(&Metric {
            name: "net.error",
            kind: MK::Counter,
            value: 1.0,
            unit: "operation",
            tags: vec![
                Tag::s("op", op),
                Tag::s("class", metrics::NET_ERR_CLASSES[class]).req(),
            ],
            summary: false,
        });
    } else {
        AGG.net_err[class].add(1);
    }
}

/// A file was opened (`ret` is the fd, or -1 with `err`).
pub fn open(ret: i32, mut path: String, op: &'static str, err: i32) {
    if ret < 0 {
        let _ = err;
        fs_error(op, 0, &path);
        return;
    }
    if own_fd(ret) {
        return;
    }
    let now = metrics::mono_ns();
    let Some(s) = fdtable::get_or_alloc(ret) else {
        if metrics::on(metrics::FS) {
            AGG.fs_open.add(1);
        }
        return;
    };
    // The slot takes the path; a copy only when a metric line or an event names it.
    let named = events::on(events::FS)
        || metrics::on(metrics::FS) && metrics::indiv(metrics::INDIV_FS_OPEN);
    let path_for_slot = if named {
        path.clone()
    } else {
        std::mem::take(&mut path)
    };
    let path = path.as_str();
    s.reset(
        Kind::File,
        Info {
            path: path_for_slot,
            op,
            ..Default::default()
        },
        now,
    );
    if metrics::on(metrics::FS) {
        if metrics::indiv(metrics::INDIV_FS_OPEN) {
            metrics::individual(&Metric {
                name: "fs.open",
                kind: MK::Counter,
                value: 1.0,
                unit: "operation",
                tags: vec![
                    Tag::i("fd", i64::from(ret)),
                    Tag::s("op", op),
                    Tag::s("file", path),
                ],
                summary: false,
            });
        } else {
            AGG.fs_open.add(1);
        }
    }
    if let Some(time) = events::want_at(events::FS) {
        // Fields in key order (no sorting needed).
        let mut d = Fields::new();
        let id = events::ident::ident();
        d.add("file", path);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        if unsafe { libc::fstat(ret, &mut st) } == 0 {
            d.add("file_group", st.st_gid);
            d.add("file_owner", st.st_uid);
            d.add("file_perms", st.st_mode & 0o7777);
        }
        d.add("host", id.host_field());
        d.add("op", op);
        d.add("pid", events::ident::pid());
        d.add("proc", id.procname_field());
        // SAFETY: getters without preconditions.
        d.add("proc_gid", unsafe { libc::getgid() });
        d.add("proc_uid", unsafe { libc::getuid() });
        events::emit_fields(
            events::FS,
            "fs",
            "fs.open",
            s.channel.load(Relaxed),
            time,
            &mut d,
        );
    }
}

/// `fd` is about to be closed by the application (`close`, `fclose`, or replaced by
/// `dup2`/`dup3`, reported as `close`): stop tracking it and report.
pub fn close(fd: i32, op: &'static str) {
    let op = if op == "fclose" { "fclose" } else { "close" };
    let Some(s) = fdtable::get(fd) else { return };
    let kind = s.clear();
    if kind == Kind::Unknown || kind == Kind::Other {
        return;
    }
    let now = metrics::mono_ns();
    let dur_ns = now.saturating_sub(s.opened_ns.load(Relaxed));
    let (rb, ro, wb, wo) = s.counters();
    let (path, local, peer) = {
        let mut i = s.info();
        i.http = None;
        (std::mem::take(&mut i.path), i.local, i.peer)
    };
    if kind == Kind::File {
        if metrics::on(metrics::FS) {
            if metrics::indiv(metrics::INDIV_FS_OPEN) {
                metrics::individual(&Metric {
                    name: "fs.close",
                    kind: MK::Counter,
                    value: 1.0,
                    unit: "operation",
                    tags: vec![
                        Tag::i("fd", i64::from(fd)),
                        Tag::s("op", op),
                        Tag::s("file", &path),
                    ],
                    summary: false,
                });
            } else {
                AGG.fs_close.add(1);
            }
        }
        if let Some(time) = events::want_at(events::FS) {
            let id = events::ident::ident();
            let mut d = Fields::new();
            d.add("duration", dur_ns / 1_000_000);
            d.add("file", &path);
            d.add("file_read_bytes", rb);
            d.add("file_read_ops", ro);
            d.add("file_write_bytes", wb);
            d.add("file_write_ops", wo);
            d.add("host", id.host_field());
            d.add("op", op);
            d.add("pid", events::ident::pid());
            d.add("proc", id.procname_field());
            events::emit_fields(
                events::FS,
                "fs",
                "fs.close",
                s.channel.load(Relaxed),
                time,
                &mut d,
            );
        }
        return;
    }
    // A socket.
    match kind {
        Kind::Tcp => {
            AGG.tcp_open.fetch_sub(1, Relaxed);
        }
        Kind::Udp => {
            AGG.udp_open.fetch_sub(1, Relaxed);
        }
        _ => {}
    }
    let connected = peer.is_some() || !path.is_empty();
    if metrics::on(metrics::NET) && connected {
        if metrics::indiv(metrics::INDIV_NET_OPEN) {
            connection_metric("net.close", fd, op, kind, local);
        } else {
            AGG.net_close.add(1);
        }
        AGG.net_dur_ms.add(dur_ns / 1_000_000);
        AGG.net_dur_ops.add(1);
    }
    if connected && let Some(time) = events::want_at(events::NET) {
        let mut d = Fields::new();
        d.add("duration", dur_ns / 1_000_000);
        d.add("net_bytes_recv", rb);
        d.add("net_bytes_sent", wb);
        d.add("net_close_reason", "local");
        net_data(&mut d, kind, local, peer);
        events::emit_fields(
            events::NET,
            "net",
            "net.close",
            s.channel.load(Relaxed),
            time,
            &mut d,
        );
    }
}

/// The connection fields of net and http events, in key order (callers add theirs
/// before, to keep the fields sorted). A unix socket's path is not in AppScope's net
/// schemas as a field of its own.
fn net_data(d: &mut Fields<'_>, kind: Kind, local: Option<SocketAddr>, peer: Option<SocketAddr>) {
    if let Some(l) = local {
        d.add("net_host_ip", l.ip());
        d.add("net_host_port", l.port());
    }
    if let Some(p) = peer {
        d.add("net_peer_ip", p.ip());
        d.add("net_peer_port", p.port());
    }
    d.add("net_transport", kind.transport());
}

/// A socket was created.
pub fn socket(fd: i32, domain: i32, ty: i32) {
    if fd < 0 {
        net_error("socket", 0);
        return;
    }
    if own_fd(fd) {
        return;
    }
    let kind = kind_of(domain, ty);
    if let Some(s) = fdtable::get_or_alloc(fd) {
        s.reset(
            kind,
            Info {
                op: "socket",
                ..Default::default()
            },
            metrics::mono_ns(),
        );
    }
    match kind {
        Kind::Tcp => {
            AGG.tcp_open.fetch_add(1, Relaxed);
        }
        Kind::Udp => {
            AGG.udp_open.fetch_add(1, Relaxed);
        }
        _ => {}
    }
}

/// The per-connection `net.open` / `net.close` metric line (verbosity that reports
/// connections individually).
fn connection_metric(
    name: &'static str,
    fd: i32,
    op: &'static str,
    kind: Kind,
    local: Option<SocketAddr>,
) {
    metrics::individual(&Metric {
        name,
        kind: MK::Counter,
        value: 1.0,
        unit: "connection",
        tags: vec![
            Tag::i("fd", i64::from(fd)),
            Tag::s("op", op),
            Tag::s("proto", kind.proto()),
            Tag::i("port", local.map_or(0, |a| i64::from(a.port()))),
        ],
        summary: false,
    });
}

fn net_open_report(s: &Slot, fd: i32, kind: Kind, op: &'static str) {
    let (local, peer) = {
        let i = s.info();
        (i.local, i.peer)
    };
    if metrics::on(metrics::NET) {
        if metrics::indiv(metrics::INDIV_NET_OPEN) {
            connection_metric("net.open", fd, op, kind, local);
        } else {
            AGG.net_open.add(1);
        }
    }
    if let Some(time) = events::want_at(events::NET) {
        let mut d = Fields::new();
        net_data(&mut d, kind, local, peer);
        events::emit_fields(
            events::NET,
            "net",
            "net.open",
            s.channel.load(Relaxed),
            time,
            &mut d,
        );
    }
}

/// `connect` returned `ret` (0, or -1 with `err`).
///
/// # Safety
/// `addr` must be null or point to `len` readable bytes.
pub unsafe fn connect(
    fd: i32,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    ret: i32,
    err: i32,
) {
    if own_fd(fd) {
        return;
    }
    if ret != 0 && err != libc::EINPROGRESS {
        net_error("connect", 0);
        return;
    }
    let kind = classify(fd);
    if !kind.is_socket() {
        return;
    }
    let Some(s) = fdtable::get(fd) else { return };
    {
        let mut i = s.info();
        // SAFETY: caller's contract.
        i.peer = unsafe { fdtable::sockaddr_to(addr, len) };
        if let Some(p) = unsafe { fdtable::sockaddr_un_path(addr, len) } {
            i.path = p;
        }
        i.local = local_of(fd);
    }
    net_open_report(s, fd, kind, "connect");
}

/// `accept`/`accept4` on `lfd` returned `newfd`.
pub fn accept(lfd: i32, newfd: i32, op: &'static str) {
    accept_from(lfd, newfd, None, op)
}

/// [`accept`] with the peer address accept returned, when the caller asked for it.
pub fn accept_from(lfd: i32, newfd: i32, peer: Option<SocketAddr>, op: &'static str) {
    if newfd < 0 {
        let e = super::real::errno();
        if e != libc::EAGAIN && e != libc::EWOULDBLOCK && e != libc::EINTR {
            net_error(op, 0);
        }
        return;
    }
    if own_fd(lfd) || own_fd(newfd) {
        return;
    }
    // What the listener and accept's own output tell, without three more syscalls: the
    // type and the local address (when bound to a specific one) are the listener's.
    let known = peer.and_then(|p| {
        let l = fdtable::get(lfd)?;
        let k = l.kind();
        if !matches!(k, Kind::Tcp) || !l.has_flag(F_LISTEN) {
            return None;
        }
        let local = l.info().local.filter(|a| !a.ip().is_unspecified())?;
        Some((k, Some(local), Some(p)))
    });
    let (kind, local, peer) = known.unwrap_or_else(|| socket_identity(newfd));
    let Some(s) = fdtable::get_or_alloc(newfd) else {
        return;
    };
    let path = if matches!(kind, Kind::UnixStream) {
        fdtable::get(lfd)
            .map(|l| l.info().path.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    s.reset(
        kind,
        Info {
            op,
            local,
            peer,
            path,
            ..Default::default()
        },
        metrics::mono_ns(),
    );
    s.set_flag(F_ACCEPTED);
    if kind == Kind::Tcp {
        AGG.tcp_open.fetch_add(1, Relaxed);
    }
    net_open_report(s, newfd, kind, op);
}

/// `bind` succeeded: remember the local address / unix path.
///
/// # Safety
/// As [`connect`].
pub unsafe fn bind(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t) {
    if own_fd(fd) || !classify(fd).is_socket() {
        return;
    }
    if let Some(s) = fdtable::get(fd) {
        let mut i = s.info();
        // SAFETY: caller's contract.
        i.local = unsafe { fdtable::sockaddr_to(addr, len) }.or_else(|| local_of(fd));
        if let Some(p) = unsafe { fdtable::sockaddr_un_path(addr, len) } {
            i.path = p;
        }
    }
}

/// `listen` succeeded.
pub fn listen(fd: i32) {
    if own_fd(fd) || !classify(fd).is_socket() {
        return;
    }
    if let Some(s) = fdtable::get(fd) {
        s.set_flag(F_LISTEN);
        let mut i = s.info();
        if i.local.is_none() {
            i.local = local_of(fd);
        }
    }
}

/// How a transfer was timed.
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Not timed.
    None,
    /// Started at this `metrics::mono_ns()`.
    Mono(u64),
    /// Started at this `metrics::clock::ticks()`.
    Ticks(u64),
}

/// Data moved on `fd`: `ret` bytes (or -1), `bufs` the bytes themselves when the caller
/// can provide them (for protocol detection and console/file events), `t0` the start time
/// (`metrics::mono_ns()`) when timed (0 otherwise).
pub fn data(fd: i32, dir: Dir, ret: isize, bufs: Bytes<'_>, t0: u64, op: &'static str) {
    let t = if t0 > 0 { Timer::Mono(t0) } else { Timer::None };
    data_timed(fd, dir, ret, bufs, t, op)
}

/// [`data`] with the start time in `metrics::clock::ticks()` (what the read/write
/// wrappers use: no `clock_gettime` per call).
#[inline]
pub fn data_ticks(fd: i32, dir: Dir, ret: isize, bufs: Bytes<'_>, t0: u64, op: &'static str) {
    let t = if t0 > 0 {
        Timer::Ticks(t0)
    } else {
        Timer::None
    };
    data_timed(fd, dir, ret, bufs, t, op)
}

/// Adds `n` to a per-fd counter. Plain load + store (no lock prefix): an fd is nearly
/// always written by one thread at a time; two threads racing on one fd can lose an
/// update of these per-connection totals (the period metrics are exact).
#[inline]
fn bump(c: &std::sync::atomic::AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

#[inline]
fn data_timed(fd: i32, dir: Dir, ret: isize, bufs: Bytes<'_>, t0: Timer, op: &'static str) {
    if ret >= 0 && data_fast(fd, dir, ret as u64, t0) {
        return;
    }
    data_slow(fd, dir, ret, bufs, t0, op)
}

/// The common case, with nothing to look at but the byte count: a known file or socket
/// that is not console output, aggregated metrics, no event or protocol detection
/// wanting the bytes. Returns false when the full path must run instead.
#[inline]
fn data_fast(fd: i32, dir: Dir, n: u64, t0: Timer) -> bool {
    let Some(s) = fdtable::get(fd) else {
        return false;
    };
    let kind = s.kind();
    let fs = match kind {
        Kind::File => true,
        Kind::Tcp | Kind::UnixStream | Kind::Udp | Kind::UnixDgram => false,
        _ => return false,
    };
    if metrics::indiv(metrics::INDIV_RW) || own_fd(fd) {
        return false;
    }
    if fs {
        if (fd == 1 || fd == 2) && dir == Dir::Write && s.has_flag(fdtable::F_INHERITED) {
            // The process's own stdout/stderr file: console output.
            return false;
        }
        if dir == Dir::Write && n > 0 && events::on(events::FILE) {
            // Log-file events need the bytes, unless this file is known not to be one.
            let f = s.flags.load(Relaxed);
            if f & F_LOGFILE_CHECKED == 0 || f & F_LOGFILE != 0 {
                return false;
            }
        }
    } else {
        if n > 0
            && matches!(kind, Kind::Tcp | Kind::UnixStream)
            && !s.has_flag(F_NOT_HTTP)
            && (events::on(events::HTTP) || metrics::on(metrics::HTTP))
        {
            return false;
        }
        if kind == Kind::Udp
            && dir == Dir::Write
            && (events::on(events::DNS) || metrics::on(metrics::DNS))
        {
            return false;
        }
        if n > 0 && matches!(kind, Kind::Udp | Kind::UnixDgram) && metrics::on(metrics::STATSD) {
            // StatsD detection looks at every datagram.
            return false;
        }
    }
    let (bytes, ops) = if dir == Dir::Read {
        (&s.rd_bytes, &s.rd_ops)
    } else {
        (&s.wr_bytes, &s.wr_ops)
    };
    bump(bytes, n);
    bump(ops, 1);
    if fs {
        if metrics::on(metrics::FS) {
            let b = metrics::local::mine();
            if dir == Dir::Read {
                AGG.fs_read_bytes.add_in(b, n);
                AGG.fs_read_ops.add_in(b, 1);
            } else {
                AGG.fs_write_bytes.add_in(b, n);
                AGG.fs_write_ops.add_in(b, 1);
            }
            match t0 {
                Timer::Ticks(t) => AGG
                    .fs_dur_ticks
                    .add_in(b, metrics::clock::ticks().saturating_sub(t)),
                Timer::Mono(t) => AGG
                    .fs_dur_us
                    .add_in(b, metrics::mono_ns().saturating_sub(t) / 1000),
                Timer::None => {}
            }
            AGG.fs_dur_ops.add_in(b, 1);
        }
    } else if metrics::on(metrics::NET) {
        let b = metrics::local::mine();
        let c = kind.class();
        if dir == Dir::Read {
            AGG.net_rx_bytes[c].add_in(b, n);
            AGG.net_rx_ops[c].add_in(b, 1);
        } else {
            AGG.net_tx_bytes[c].add_in(b, n);
            AGG.net_tx_ops[c].add_in(b, 1);
        }
    }
    true
}

#[inline(never)]
fn data_slow(fd: i32, dir: Dir, ret: isize, bufs: Bytes<'_>, t0: Timer, op: &'static str) {
    if own_fd(fd) {
        return;
    }
    // One table lookup for the common case of a known fd.
    let (slot, kind) = match fdtable::get(fd) {
        Some(s) if s.kind() != Kind::Unknown => (Some(s), s.kind()),
        _ => {
            let k = classify(fd);
            (fdtable::get(fd), k)
        }
    };
    if kind == Kind::Other || kind == Kind::Unknown {
        // Pipes, eventfds, ttys on 0-2...: only console output is of interest.
        if !((fd == 1 || fd == 2) && dir == Dir::Write && ret > 0) {
            return;
        }
    }
    if ret < 0 {
        let e = super::real::errno();
        if e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR {
            return;
        }
        match kind {
            Kind::File => {
                let path = slot.map(|s| s.info().path.clone()).unwrap_or_default();
                fs_error(op, 1, &path);
            }
            k if k.is_socket() => net_error(op, 1),
            _ => {}
        }
        return;
    }
    let n = ret as u64;
    let console = (fd == 1 || fd == 2) && dir == Dir::Write && !kind.is_socket() && {
        kind != Kind::File || slot.is_none_or(|s| s.has_flag(fdtable::F_INHERITED))
    };
    if console && n > 0 && events::want(events::CONSOLE) {
        let name = if fd == 1 { "stdout" } else { "stderr" };
        let mut left = n as usize;
        bufs(&mut |b| {
            let take = b.len().min(left);
            left -= take;
            if take > 0 {
                events::emit_write(events::CONSOLE, name, 0, &b[..take]);
            }
        });
    }
    let Some(s) = slot else { return };
    match kind {
        Kind::File => {
            let (bytes, ops) = if dir == Dir::Read {
                (&s.rd_bytes, &s.rd_ops)
            } else {
                (&s.wr_bytes, &s.wr_ops)
            };
            bump(bytes, n);
            bump(ops, 1);
            if metrics::on(metrics::FS) {
                let name = if dir == Dir::Read {
                    "fs.read"
                } else {
                    "fs.write"
                };
                // (microseconds, clock ticks) of the call
                let (dur_us, dur_ticks) = match t0 {
                    Timer::None => (0, 0),
                    Timer::Mono(t) => (metrics::mono_ns().saturating_sub(t) / 1000, 0),
                    Timer::Ticks(t) => (0, metrics::clock::ticks().saturating_sub(t)),
                };
                if metrics::indiv(metrics::INDIV_RW) {
                    let dur_us = dur_us + metrics::clock::ticks_to_us(dur_ticks);
                    let path = s.info().path.clone();
                    metrics::individual(&Metric {
                        name,
                        kind: MK::Counter,
                        value: n as f64,
                        unit: "byte",
                        tags: vec![
                            Tag::i("fd", i64::from(fd)),
                            Tag::s("op", op),
                            Tag::s("file", &path),
                            Tag::i("numops", 1),
                        ],
                        summary: false,
                    });
                    metrics::individual(&Metric {
                        name: "fs.duration",
                        kind: MK::Histogram,
                        value: dur_us as f64,
                        unit: "microsecond",
                        tags: vec![
                            Tag::i("fd", i64::from(fd)),
                            Tag::s("op", op),
                            Tag::s("file", &path),
                            Tag::i("numops", 1),
                        ],
                        summary: false,
                    });
                } else {
                    if dir == Dir::Read {
                        AGG.fs_read_bytes.add(n);
                        AGG.fs_read_ops.add(1);
                    } else {
                        AGG.fs_write_bytes.add(n);
                        AGG.fs_write_ops.add(1);
                    }
                    if dur_ticks > 0 {
                        AGG.fs_dur_ticks.add(dur_ticks);
                    } else {
                        AGG.fs_dur_us.add(dur_us);
                    }
                    AGG.fs_dur_ops.add(1);
                }
            }
            if dir == Dir::Write && !console && events::on(events::FILE) && n > 0 {
                let flags = s.flags.load(Relaxed);
                let is_log = if flags & F_LOGFILE_CHECKED != 0 {
                    flags & F_LOGFILE != 0
                } else {
                    let path = s.info().path.clone();
                    let m = events::settings().filter(events::FILE).name.is_match(&path);
                    s.set_flag(F_LOGFILE_CHECKED | if m { F_LOGFILE } else { 0 });
                    m
                };
                if is_log && events::want(events::FILE) {
                    let path = s.info().path.clone();
                    let ch = s.channel.load(Relaxed);
                    let mut left = n as usize;
                    bufs(&mut |b| {
                        let take = b.len().min(left);
                        left -= take;
                        if take > 0 {
                            events::emit_write(events::FILE, &path, ch, &b[..take]);
                        }
                    });
                }
            }
        }
        k if k.is_socket() => {
            let (bytes, ops) = if dir == Dir::Read {
                (&s.rd_bytes, &s.rd_ops)
            } else {
                (&s.wr_bytes, &s.wr_ops)
            };
            bump(bytes, n);
            bump(ops, 1);
            if metrics::on(metrics::NET) {
                if metrics::indiv(metrics::INDIV_RW) {
                    let (local, peer) = {
                        let i = s.info();
                        (i.local, i.peer)
                    };
                    let lip = local.map(|a| a.ip().to_string()).unwrap_or_default();
                    let rip = peer.map(|a| a.ip().to_string()).unwrap_or_default();
                    metrics::individual(&Metric {
                        name: if dir == Dir::Read { "net.rx" } else { "net.tx" },
                        kind: MK::Counter,
                        value: n as f64,
                        unit: "byte",
                        tags: vec![
                            Tag::i("fd", i64::from(fd)),
                            Tag::s("proto", k.proto()),
                            Tag::s("localip", &lip),
                            Tag::i("localp", local.map_or(0, |a| i64::from(a.port()))),
                            Tag::s("remoteip", &rip),
                            Tag::i("remotep", peer.map_or(0, |a| i64::from(a.port()))),
                            Tag::s("data", "clear"),
                            Tag::i("numops", 1),
                            Tag::s("class", metrics::CLASSES[k.class()]),
                        ],
                        summary: false,
                    });
                } else if dir == Dir::Read {
                    AGG.net_rx_bytes[k.class()].add(n);
                    AGG.net_rx_ops[k.class()].add(1);
                } else {
                    AGG.net_tx_bytes[k.class()].add(n);
                    AGG.net_tx_ops[k.class()].add(1);
                }
            }
            if n > 0
                && matches!(k, Kind::Tcp | Kind::UnixStream)
                && !s.has_flag(F_NOT_HTTP)
                && (events::on(events::HTTP) || metrics::on(metrics::HTTP))
            {
                http_feed(s, k, dir, n as usize, bufs);
            }
            if k == Kind::Udp
                && dir == Dir::Write
                && (events::on(events::DNS) || metrics::on(metrics::DNS))
            {
                let is_dns = s.info().peer.is_some_and(|p| p.port() == 53);
                if is_dns {
                    let mut name = None;
                    bufs(&mut |b| {
                        if name.is_none() {
                            name = crate::proto::dns::query_name(b);
                        }
                    });
                    if let Some(name) = name {
                        dns(&name);
                    }
                }
            }
            if n > 0 && matches!(k, Kind::Udp | Kind::UnixDgram) && metrics::on(metrics::STATSD) {
                let mut left = n as usize;
                bufs(&mut |b| {
                    let take = b.len().min(left);
                    left -= take;
                    crate::proto::statsd::capture(&b[..take]);
                });
            }
        }
        _ => {}
    }
}

/// `sendfile`-like transfer of `n` bytes we do not see.
pub fn opaque_write(fd: i32, n: isize, op: &'static str) {
    if n <= 0 || own_fd(fd) {
        return;
    }
    let kind = classify(fd);
    let Some(s) = fdtable::get(fd) else { return };
    if kind.is_socket() {
        s.wr_bytes.fetch_add(n as u64, Relaxed);
        s.wr_ops.fetch_add(1, Relaxed);
        if metrics::on(metrics::NET) {
            AGG.net_tx_bytes[kind.class()].add(n as u64);
            AGG.net_tx_ops[kind.class()].add(1);
        }
        let mut i = s.info();
        if let Some(h) = i.http.as_mut() {
            h.tx.skip(n as u64);
        }
    } else if kind == Kind::File {
        let _ = op;
        data(fd, Dir::Write, n, &|_| {}, 0, "write");
    }
}

fn http_feed(s: &Slot, kind: Kind, dir: Dir, n: usize, bufs: Bytes<'_>) {
    // One message per call is the rule: it is kept inline, any more in a Vec.
    let mut first = None;
    let mut more = Vec::new();
    let (local, peer, not_http) = {
        let mut i = s.info();
        let h = i.http.get_or_insert_with(|| Box::new(HttpConn::default()));
        let stream = if dir == Dir::Read {
            &mut h.rx
        } else {
            &mut h.tx
        };
        let mut left = n;
        bufs(&mut |b| {
            let take = b.len().min(left);
            left -= take;
            if take > 0 {
                stream.feed(&b[..take], &mut |m| {
                    if first.is_none() {
                        first = Some(m);
                    } else {
                        more.push(m);
                    }
                });
            }
        });
        let not_http = h.rx.is_not_http() && h.tx.is_not_http()
            || (h.rx.is_not_http() && dir == Dir::Read && h.pending.is_none())
            || (h.tx.is_not_http() && dir == Dir::Write && h.pending.is_none());
        (i.local, i.peer, not_http)
    };
    let Some(m) = first else {
        if not_http {
            s.set_flag(F_NOT_HTTP);
            s.info().http = None;
        }
        return;
    };
    http_message(s, kind, dir, m, local, peer);
    for m in more {
        http_message(s, kind, dir, m, local, peer);
    }
}

fn http_message(
    s: &Slot,
    kind: Kind,
    dir: Dir,
    m: Message,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
) {
    let now = metrics::mono_ns();
    let channel = s.channel.load(Relaxed);
    match m {
        Message::Request(r) => {
            let server = dir == Dir::Read;
            if let Some(time) = events::want_at(events::HTTP) {
                // Fields in key order (headers may add others, then they get sorted).
                let mut d = Fields::new();
                if let Some(x) = &r.x_forwarded_for {
                    d.add("http_client_ip", x);
                }
                d.add("http_flavor", &r.flavor);
                if let Some(h) = &r.host {
                    d.add("http_host", h);
                }
                d.add("http_method", &r.method);
                d.add("http_scheme", "http");
                d.add("http_target", &r.target);
                if let Some(u) = &r.user_agent {
                    d.add("http_user_agent", u);
                }
                net_data(&mut d, kind, local, peer);
                events::http_headers(&mut d, &r.headers);
                events::emit_fields(events::HTTP, "http", "http.req", channel, time, &mut d);
            }
            let mut i = s.info();
            if let Some(h) = i.http.as_mut() {
                h.pending = Some(PendingReq {
                    method: r.method,
                    target: r.target,
                    host: r.host,
                    user_agent: r.user_agent,
                    t0_ns: now,
                    content_length: r.content_length,
                    server,
                });
            }
        }
        Message::Response(r) => {
            let pending = s.info().http.as_mut().and_then(|h| h.pending.take());
            let dur_ms = pending
                .as_ref()
                .map(|p| now.saturating_sub(p.t0_ns) as f64 / 1e6);
            let server = pending.as_ref().map_or(dir == Dir::Write, |p| p.server);
            if let Some(time) = events::want_at(events::HTTP) {
                // Fields in key order (headers may add others, then they get sorted).
                let mut d = Fields::new();
                let dur = dur_ms.map(|ms| ms.round() as u64);
                if let Some(ms) = dur.filter(|_| !server) {
                    d.add("http_client_duration", ms);
                }
                d.add("http_flavor", &r.flavor);
                let p = pending.as_ref();
                if let Some(h) = p.and_then(|p| p.host.as_ref()) {
                    d.add("http_host", h);
                }
                if let Some(p) = p {
                    d.add("http_method", &p.method);
                }
                if let Some(cl) = r.content_length {
                    d.add("http_response_content_length", cl);
                }
                d.add("http_scheme", "http");
                if let Some(ms) = dur.filter(|_| server) {
                    d.add("http_server_duration", ms);
                }
                d.add("http_status_code", r.status);
                let text =
                    crate::proto::http::reason_phrase(r.status).unwrap_or(r.status_text.as_str());
                d.add("http_status_text", text);
                if let Some(p) = p {
                    d.add("http_target", &p.target);
                }
                if let Some(u) = p.and_then(|p| p.user_agent.as_ref()) {
                    d.add("http_user_agent", u);
                }
                net_data(&mut d, kind, local, peer);
                events::http_headers(&mut d, &r.headers);
                events::emit_fields(events::HTTP, "http", "http.resp", channel, time, &mut d);
            }
            let target = pending.as_ref().map_or("", |p| p.target.as_str());
            metrics::record_http(&metrics::HttpSample {
                target: if target.is_empty() { "/" } else { target },
                status: r.status,
                server_ms: if server { dur_ms } else { None },
                client_ms: if server { None } else { dur_ms },
                req_len: pending.as_ref().and_then(|p| p.content_length),
                resp_len: r.content_length,
            });
        }
    }
}

/// A name was resolved (`getaddrinfo`, `gethostbyname`, or a DNS query we saw).
pub fn dns(name: &str) {
    if name.is_empty() {
        return;
    }
    if metrics::on(metrics::DNS) {
        if metrics::indiv(metrics::INDIV_DNS) {
            metrics::individual(&Metric {
                name: "dns.req",
                kind: MK::Counter,
                value: 1.0,
                unit: "request",
                tags: vec![Tag::s("domain", name)],
                summary: false,
            });
        } else {
            AGG.dns_req.add(1);
        }
    }
    if let Some(time) = events::want_at(events::DNS) {
        let mut d = Fields::new();
        d.add("domain", name);
        events::emit_fields(
            events::DNS,
            "dns",
            "dns.req",
            events::new_channel(),
            time,
            &mut d,
        );
    }
}

/// `lseek` family.
pub fn seek(fd: i32, ret: i64, op: &'static str) {
    if own_fd(fd) || classify(fd) != Kind::File || !metrics::on(metrics::FS) {
        return;
    }
    if ret < 0 {
        let path = fdtable::get(fd)
            .map(|s| s.info().path.clone())
            .unwrap_or_default();
        fs_error(op, 1, &path);
        return;
    }
    if metrics::indiv(metrics::INDIV_SEEK) {
        let path = fdtable::get(fd)
            .map(|s| s.info().path.clone())
            .unwrap_or_default();
        metrics::individual(&Metric {
            name: "fs.seek",
            kind: MK::Counter,
            value: 1.0,
            unit: "operation",
            tags: vec![
                Tag::i("fd", i64::from(fd)),
                Tag::s("op", op),
                Tag::s("file", &path),
            ],
            summary: false,
        });
    } else {
        AGG.fs_seek.add(1);
    }
}

/// `stat` family on `path` (empty for fd-based calls).
pub fn stat(path: &str, ret: i32, op: &'static str) {
    stat_lazy(|| path.to_string(), ret, op)
}

/// [`stat`] with the path made only when a metric line names it (the aggregated count,
/// the common case, needs no copy of the path).
pub fn stat_lazy(path: impl FnOnce() -> String, ret: i32, op: &'static str) {
    if !metrics::on(metrics::FS) {
        return;
    }
    if ret != 0 {
        if metrics::indiv(metrics::INDIV_ERR) {
            fs_error(op, 2, &path());
        } else {
            fs_error(op, 2, "");
        }
        return;
    }
    if metrics::indiv(metrics::INDIV_STAT) {
        let path = path();
        let path = path.as_str();
        metrics::individual(&Metric {
            name: "fs.stat",
            kind: MK::Counter,
            value: 1.0,
            unit: "operation",
            tags: vec![Tag::s("op", op), Tag::s("file", path)],
            summary: false,
        });
    } else {
        AGG.fs_stat.add(1);
    }
}

/// `unlink` family succeeded: `fs.delete` event.
pub fn unlink(path: &str, op: &'static str) {
    if !events::on(events::FS) {
        return;
    }
    let id = events::ident::ident();
    let mut d = Fields::new();
    d.add("file", path);
    d.add("host", id.host_field());
    d.add("op", op);
    d.add("pid", events::ident::pid());
    d.add("proc", id.procname_field());
    d.add("unit", "operation");
    events::emit_fields(
        events::FS,
        "fs",
        "fs.delete",
        events::new_channel(),
        metrics::now_f64(),
        &mut d,
    );
}
