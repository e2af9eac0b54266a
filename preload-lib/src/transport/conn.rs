//! One live connection of a channel: socket or file setup, TLS, non-blocking writes.
//! Used only from the library's background thread (and the bounded exit flush).

use std::ffi::CString;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::c_int;

use super::endpoint::{Endpoint, TlsSettings};
use super::fds::{self, SlotId};

/// Time allowed for one connection attempt (TCP connect plus TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Result of trying to write some bytes.
#[derive(Debug)]
pub enum WriteResult {
    /// This many bytes were taken (may be fewer than offered).
    Wrote(usize),
    /// The descriptor would block: try again later.
    WouldBlock,
    /// The connection is broken: close and reconnect.
    Broken(io::Error),
    /// The descriptor was closed (or closed and reused) under the library by a raw system
    /// call: nothing was written; reconnect and write the same bytes there.
    Lost,
}

enum Kind {
    /// Socket or file whose descriptor lives in our own-fd table.
    Owned(SlotId),
    /// The application's stdout (1) or stderr (2): not ours, never closed.
    Std(c_int),
}

pub struct Conn {
    kind: Kind,
    /// Datagram socket: every write is one datagram.
    datagram: bool,
    /// Regular file: writes may block briefly; no polling.
    file: bool,
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Kind::Owned(id) = self.kind {
            fds::release(id);
        }
    }
}

fn errno_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}: no address"),
        ));
    }
    Ok(addrs)
}

fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is a valid value; we fill the matching variant.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn unix_addr(path: &str, abstract_name: bool) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: zeroed sockaddr_un is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    let off = usize::from(abstract_name);
    if bytes.len() + off >= sun.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unix socket name too long",
        ));
    }
    for (i, b) in bytes.iter().enumerate() {
        sun.sun_path[i + off] = *b as libc::c_char;
    }
    let base = std::mem::size_of::<libc::sa_family_t>();
    let len = if abstract_name {
        base + 1 + bytes.len()
    } else {
        base + bytes.len() + 1
    };
    Ok((sun, len as libc::socklen_t))
}

/// Waits until `fd` is ready for `events` or `deadline` passes.
fn poll_until(fd: c_int, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        let ms = (deadline - now).as_millis().clamp(1, 60_000) as c_int;
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return Ok(());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Non-blocking connect bounded by `deadline`. Returns the registered slot.
fn connect_socket(
    domain: c_int,
    ty: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    deadline: Instant,
) -> io::Result<SlotId> {
    // SAFETY: socket(2).
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno_err("socket"));
    }
    let id = fds::adopt(fd).ok_or_else(|| io::Error::other("no free descriptor slot"))?;
    let fd = fds::current(id);
    // SAFETY: addr/len describe a valid socket address.
    let r = unsafe { libc::connect(fd, addr, len) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            fds::release(id);
            return Err(io::Error::new(e.kind(), format!("connect: {e}")));
        }
        if let Err(e) = poll_until(fd, libc::POLLOUT, deadline) {
            fds::release(id);
            return Err(io::Error::new(e.kind(), format!("connect: {e}")));
        }
        let mut err: c_int = 0;
        let mut l = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: SO_ERROR into an int.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut c_int as *mut libc::c_void,
                &mut l,
            )
        };
        if err != 0 {
            fds::release(id);
            let e = io::Error::from_raw_os_error(err);
            return Err(io::Error::new(e.kind(), format!("connect: {e}")));
        }
    }
    Ok(id)
}

/// Accepts any server certificate (`validateserver: false`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// System CA bundles tried when `cacertpath` is empty.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn tls_config(tls: &TlsSettings) -> io::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("tls: {e}")))?;
    if !tls.validate_server {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let paths: Vec<&str> = if tls.ca_cert_path.is_empty() {
        SYSTEM_CA_BUNDLES.to_vec()
    } else {
        vec![tls.ca_cert_path.as_str()]
    };
    let mut last_err = None;
    for p in paths {
        match CertificateDer::pem_file_iter(p) {
            Ok(iter) => {
                for c in iter.flatten() {
                    let _ = roots.add(c);
                }
                if !roots.is_empty() {
                    break;
                }
            }
            Err(e) => last_err = Some(format!("{p}: {e}")),
        }
    }
    if roots.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "tls: no CA certificate loaded ({})",
                last_err.unwrap_or_else(|| "no certificates in bundle".into())
            ),
        ));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Raw non-blocking I/O on a slot, for rustls.
struct SlotIo(SlotId);

impl io::Read for SlotIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = fds::with_fd(self.0, |fd| {
            // SAFETY: buf is valid for buf.len() bytes.
            unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) }
        })
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}

impl io::Write for SlotIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = fds::with_fd(self.0, |fd| {
            // SAFETY: buf is valid for buf.len() bytes.
            unsafe {
                libc::send(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            }
        })
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_handshake(
    id: SlotId,
    host: &str,
    tls: &TlsSettings,
    deadline: Instant,
) -> io::Result<Box<rustls::ClientConnection>> {
    let cfg = tls_config(tls)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {e}")))?;
    let mut c = rustls::ClientConnection::new(Arc::new(cfg), name)
        .map_err(|e| io::Error::other(format!("tls: {e}")))?;
    let mut sio = SlotIo(id);
    while c.is_handshaking() {
        while c.wants_write() {
            match c.write_tls(&mut sio) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll_until(fds::current(id), libc::POLLOUT, deadline)?;
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("tls: {e}"))),
            }
        }
        if !c.is_handshaking() {
            break;
        }
        if c.wants_read() {
            match c.read_tls(&mut sio) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tls: server closed the connection during the handshake",
                    ));
                }
                Ok(_) => {
                    c.process_new_packets().map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("tls: {e}"))
                    })?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll_until(fds::current(id), libc::POLLIN, deadline)
                        .map_err(|e| io::Error::new(e.kind(), format!("tls handshake: {e}")))?;
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("tls: {e}"))),
            }
        }
    }
    Ok(Box::new(c))
}

impl Conn {
    /// Opens a connection to `ep`, giving up at `deadline` (connect and TLS handshake).
    pub fn open(ep: &Endpoint, deadline: Instant) -> io::Result<Conn> {
        match ep {
            Endpoint::Disabled => Err(io::Error::new(io::ErrorKind::Unsupported, "disabled")),
            Endpoint::Stdout => Ok(Conn::std(1)),
            Endpoint::Stderr => Ok(Conn::std(2)),
            Endpoint::File { path } => {
                let c = CString::new(path.as_str())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
                // SAFETY: open(2) with a valid C string.
                let fd = unsafe {
                    libc::open(
                        c.as_ptr(),
                        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                        0o666 as libc::c_uint,
                    )
                };
                if fd < 0 {
                    return Err(errno_err(&format!("open {path}")));
                }
                let id =
                    fds::adopt(fd).ok_or_else(|| io::Error::other("no free descriptor slot"))?;
                Ok(Conn {
                    kind: Kind::Owned(id),
                    datagram: false,
                    file: true,
                    tls: None,
                })
            }
            Endpoint::Unix {
                path,
                abstract_name,
            } => {
                let (sun, len) = unix_addr(path, *abstract_name)?;
                let id = connect_socket(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM,
                    &sun as *const libc::sockaddr_un as *const libc::sockaddr,
                    len,
                    deadline,
                )?;
                Ok(Conn {
                    kind: Kind::Owned(id),
                    datagram: false,
                    file: false,
                    tls: None,
                })
            }
            Endpoint::Udp { host, port } => {
                let mut last = None;
                for a in resolve(host, *port)? {
                    let (ss, len) = sockaddr_of(&a);
                    let dom = if a.is_ipv4() {
                        libc::AF_INET
                    } else {
                        libc::AF_INET6
                    };
                    match connect_socket(
                        dom,
                        libc::SOCK_DGRAM,
                        &ss as *const libc::sockaddr_storage as *const libc::sockaddr,
                        len,
                        deadline,
                    ) {
                        Ok(id) => {
                            return Ok(Conn {
                                kind: Kind::Owned(id),
                                datagram: true,
                                file: false,
                                tls: None,
                            });
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("no address")))
            }
            Endpoint::Tcp { host, port, tls } => {
                let mut last = None;
                for a in resolve(host, *port)? {
                    let (ss, len) = sockaddr_of(&a);
                    let dom = if a.is_ipv4() {
                        libc::AF_INET
                    } else {
                        libc::AF_INET6
                    };
                    match connect_socket(
                        dom,
                        libc::SOCK_STREAM,
                        &ss as *const libc::sockaddr_storage as *const libc::sockaddr,
                        len,
                        deadline,
                    ) {
                        Ok(id) => {
                            let tls_conn = match tls {
                                Some(t) => match tls_handshake(id, host, t, deadline) {
                                    Ok(c) => Some(c),
                                    Err(e) => {
                                        fds::release(id);
                                        return Err(e);
                                    }
                                },
                                None => None,
                            };
                            return Ok(Conn {
                                kind: Kind::Owned(id),
                                datagram: false,
                                file: false,
                                tls: tls_conn,
                            });
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("no address")))
            }
        }
    }

    fn std(fd: c_int) -> Conn {
        Conn {
            kind: Kind::Std(fd),
            datagram: false,
            file: true,
            tls: None,
        }
    }

    pub fn is_datagram(&self) -> bool {
        self.datagram
    }

    /// The descriptor to poll for writability, or -1.
    pub fn poll_fd(&self) -> c_int {
        match self.kind {
            Kind::Owned(id) => fds::current(id),
            Kind::Std(fd) => fd,
        }
    }

    /// True when the descriptor was closed or replaced under the library (see
    /// [`WriteResult::Lost`]).
    pub fn is_lost(&self) -> bool {
        match self.kind {
            Kind::Owned(id) => fds::with_fd(id, |_| ()).is_none(),
            Kind::Std(_) => false,
        }
    }

    /// True when the peer has closed a stream connection (checked without blocking), so a
    /// dead collector is noticed even when nothing is being sent.
    pub fn peer_closed(&self) -> bool {
        if self.datagram || self.file {
            return false;
        }
        let Kind::Owned(id) = self.kind else {
            return false;
        };
        let mut b = [0u8; 256];
        let r = fds::with_fd(id, |fd| {
            // SAFETY: recv into a local buffer. Data the collector sends is discarded.
            unsafe { libc::recv(fd, b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) }
        });
        match r {
            None => true,
            Some(0) => true,
            Some(n) if n > 0 => false,
            Some(_) => {
                let e = io::Error::last_os_error();
                e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted
            }
        }
    }

    fn raw_write(&mut self, buf: &[u8]) -> WriteResult {
        let r = match self.kind {
            Kind::Std(fd) => {
                // SAFETY: write(2) of a valid buffer.
                unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
            }
            Kind::Owned(id) => {
                let file = self.file;
                match fds::with_fd(id, |fd| {
                    // SAFETY: write/send of a valid buffer.
                    unsafe {
                        if file {
                            libc::write(fd, buf.as_ptr().cast(), buf.len())
                        } else {
                            libc::send(
                                fd,
                                buf.as_ptr().cast(),
                                buf.len(),
                                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                            )
                        }
                    }
                }) {
                    Some(r) => r,
                    None => return WriteResult::Lost,
                }
            }
        };
        if r >= 0 {
            return WriteResult::Wrote(r as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => WriteResult::WouldBlock,
            _ => WriteResult::Broken(e),
        }
    }

    /// Writes as much of `buf` as the descriptor takes now. For datagram sockets `buf` is
    /// one datagram (all or nothing). For TLS, bytes are taken into the TLS session and
    /// flushed as the socket allows.
    pub fn write(&mut self, buf: &[u8]) -> WriteResult {
        if self.tls.is_some() {
            return self.tls_write(buf);
        }
        self.raw_write(buf)
    }

    fn tls_write(&mut self, buf: &[u8]) -> WriteResult {
        let Kind::Owned(id) = self.kind else {
            return WriteResult::Broken(io::Error::other("tls on std stream"));
        };
        let Some(tls) = self.tls.as_mut() else {
            return WriteResult::Broken(io::Error::other("no tls session"));
        };
        // Flush what the session holds first, so its buffer stays bounded.
        let mut sio = SlotIo(id);
        while tls.wants_write() {
            match tls.write_tls(&mut sio) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteResult::WouldBlock,
                Err(e) => return WriteResult::Broken(e),
            }
        }
        if buf.is_empty() {
            return WriteResult::Wrote(0);
        }
        let n = match io::Write::write(&mut tls.writer(), buf) {
            Ok(n) => n,
            Err(e) => return WriteResult::Broken(e),
        };
        while tls.wants_write() {
            match tls.write_tls(&mut sio) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return WriteResult::Broken(e),
            }
        }
        WriteResult::Wrote(n)
    }

    /// True when bytes accepted earlier still wait in the TLS session.
    pub fn has_buffered(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Pushes bytes buffered in the TLS session.
    pub fn flush_buffered(&mut self) -> WriteResult {
        if self.tls.is_some() {
            self.tls_write(&[])
        } else {
            WriteResult::Wrote(0)
        }
    }
}
