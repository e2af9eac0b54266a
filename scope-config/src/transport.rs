//! Transports (`metric/event/cribl > transport`, `libscope > log > transport`)
//! and AppScope's destination URLs (`SCOPE_*_DEST`, `SCOPE_CRIBL`).

use std::fmt;
use std::path::PathBuf;

use crate::settings::SettingError;

/// `transport > type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportType {
    Udp,
    Tcp,
    Unix,
    File,
    Edge,
}

impl TransportType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Unix => "unix",
            Self::File => "file",
            Self::Edge => "edge",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udp" => Some(Self::Udp),
            "tcp" => Some(Self::Tcp),
            "unix" => Some(Self::Unix),
            "file" => Some(Self::File),
            "edge" => Some(Self::Edge),
            _ => None,
        }
    }
}

impl fmt::Display for TransportType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `transport > buffering` (file transports only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Buffering {
    #[default]
    Line,
    Full,
}

impl Buffering {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Full => "full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "line" => Some(Self::Line),
            "full" => Some(Self::Full),
            _ => None,
        }
    }
}

/// `transport > tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub enable: bool,
    pub validateserver: bool,
    /// "" = the OS trust store.
    pub cacertpath: String,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            enable: false,
            validateserver: true,
            cacertpath: String::new(),
        }
    }
}

/// One transport, stored as AppScope stores it (type, host, port, path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub kind: TransportType,
    /// udp/tcp host ("" = none).
    pub host: String,
    /// udp/tcp port number or service name ("" = none).
    pub port: String,
    /// file path (or `stdout`/`stderr`), unix socket path (`@name` = abstract); "" = none.
    pub path: String,
    pub buffering: Buffering,
    pub tls: Tls,
}

/// Where a unix transport connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnixAddr {
    Path(PathBuf),
    /// Abstract namespace name, without the leading `@`.
    Abstract(String),
}

/// Where a file transport writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileTarget {
    Path(PathBuf),
    Stdout,
    Stderr,
}

/// A resolved destination, as given by a `SCOPE_*_DEST` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Udp { host: String, port: String },
    Tcp { host: String, port: String },
    Unix(UnixAddr),
    File(FileTarget),
    Edge,
}

impl Endpoint {
    pub fn kind(&self) -> TransportType {
        match self {
            Endpoint::Udp { .. } => TransportType::Udp,
            Endpoint::Tcp { .. } => TransportType::Tcp,
            Endpoint::Unix(_) => TransportType::Unix,
            Endpoint::File(_) => TransportType::File,
            Endpoint::Edge => TransportType::Edge,
        }
    }
}

impl fmt::Display for Endpoint {
    /// The AppScope URL form (`udp://h:p`, `unix://@x`, `file:///p`, `edge`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Udp { host, port } => write!(f, "udp://{}:{port}", bracket(host)),
            Endpoint::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
            Endpoint::Unix(UnixAddr::Path(p)) => write!(f, "unix://{}", p.display()),
            Endpoint::Unix(UnixAddr::Abstract(n)) => write!(f, "unix://@{n}"),
            Endpoint::File(FileTarget::Path(p)) => write!(f, "file://{}", p.display()),
            Endpoint::File(FileTarget::Stdout) => f.write_str("file://stdout"),
            Endpoint::File(FileTarget::Stderr) => f.write_str("file://stderr"),
            Endpoint::Edge => f.write_str("edge"),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Why a destination URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestError {
    #[error("empty destination")]
    Empty,
    #[error("unsupported scheme {0:?} (expected tcp://, udp://, unix://, file:// or edge)")]
    Scheme(String),
    #[error("missing host in {0:?}")]
    MissingHost(String),
    #[error("missing or invalid port in {0:?} (expected host:port, IPv6 as [addr]:port)")]
    BadPort(String),
    #[error("missing path in {0:?}")]
    MissingPath(String),
    #[error("file path must be absolute (file:///path) in {0:?}")]
    RelativePath(String),
    #[error("destination contains a control character")]
    Control,
}

impl Transport {
    /// Parse an AppScope destination URL: `tcp://host:port`, `udp://host:port`,
    /// `unix:///path`, `unix://@abstract`, `file:///path`, `file://stdout`,
    /// `file://stderr`, `edge`. IPv6 hosts go in brackets: `tcp://[::1]:9109`.
    pub fn parse_dest(url: &str) -> Result<Endpoint, DestError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DestError::Empty);
        }
        if url.chars().any(|c| c.is_control()) {
            return Err(DestError::Control);
        }
        if url.eq_ignore_ascii_case("edge") || url.eq_ignore_ascii_case("edge://") {
            return Ok(Endpoint::Edge);
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(DestError::Scheme(url.to_string()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "udp" => {
                let (host, port) = split_host_port(rest).ok_or_else(|| {
                    if rest.is_empty() || (rest.starts_with(':') && rest.matches(':').count() == 1)
                    {
                        DestError::MissingHost(url.to_string())
                    } else {
                        DestError::BadPort(url.to_string())
                    }
                })?;
                if scheme.eq_ignore_ascii_case("tcp") {
                    Ok(Endpoint::Tcp { host, port })
                } else {
                    Ok(Endpoint::Udp { host, port })
                }
            }
            "unix" => {
                if let Some(name) = rest.strip_prefix('@') {
                    if name.is_empty() {
                        return Err(DestError::MissingPath(url.to_string()));
                    }
                    Ok(Endpoint::Unix(UnixAddr::Abstract(name.to_string())))
                } else if rest.starts_with('/') && rest.len() > 1 {
                    Ok(Endpoint::Unix(UnixAddr::Path(PathBuf::from(rest))))
                } else if rest.is_empty() || rest == "/" {
                    Err(DestError::MissingPath(url.to_string()))
                } else {
                    Err(DestError::RelativePath(url.to_string()))
                }
            }
            "file" => match rest {
                "stdout" => Ok(Endpoint::File(FileTarget::Stdout)),
                "stderr" => Ok(Endpoint::File(FileTarget::Stderr)),
                "" | "/" => Err(DestError::MissingPath(url.to_string())),
                p if p.starts_with('/') => Ok(Endpoint::File(FileTarget::Path(PathBuf::from(p)))),
                _ => Err(DestError::RelativePath(url.to_string())),
            },
            "edge" if rest.is_empty() => Ok(Endpoint::Edge),
            other => Err(DestError::Scheme(other.to_string())),
        }
    }

    /// Apply a parsed destination: sets type, host, port and path; keeps tls and buffering.
    pub fn set_endpoint(&mut self, ep: &Endpoint) {
        self.kind = ep.kind();
        match ep {
            Endpoint::Udp { host, port } | Endpoint::Tcp { host, port } => {
                self.host = host.clone();
                self.port = port.clone();
                self.path.clear();
            }
            Endpoint::Unix(UnixAddr::Path(p)) | Endpoint::File(FileTarget::Path(p)) => {
                self.path = p.to_string_lossy().into_owned();
            }
            Endpoint::Unix(UnixAddr::Abstract(n)) => self.path = format!("@{n}"),
            Endpoint::File(FileTarget::Stdout) => self.path = "stdout".into(),
            Endpoint::File(FileTarget::Stderr) => self.path = "stderr".into(),
            Endpoint::Edge => {}
        }
    }

    /// Parse `url` and apply it (see [`Transport::set_endpoint`]).
    pub fn set_dest(&mut self, url: &str) -> Result<(), SettingError> {
        let ep = Transport::parse_dest(url).map_err(|e| SettingError::InvalidValue {
            name: String::new(),
            reason: e.to_string(),
        })?;
        self.set_endpoint(&ep);
        Ok(())
    }

    /// The destination this transport names, or why it is incomplete.
    pub fn endpoint(&self) -> Result<Endpoint, DestError> {
        match self.kind {
            TransportType::Udp | TransportType::Tcp => {
                if self.host.is_empty() {
                    return Err(DestError::MissingHost(self.kind.to_string()));
                }
                if self.port.is_empty() {
                    return Err(DestError::BadPort(self.kind.to_string()));
                }
                let (host, port) = (self.host.clone(), self.port.clone());
                Ok(if self.kind == TransportType::Tcp {
                    Endpoint::Tcp { host, port }
                } else {
                    Endpoint::Udp { host, port }
                })
            }
            TransportType::Unix => match self.path.strip_prefix('@') {
                Some(n) if !n.is_empty() => Ok(Endpoint::Unix(UnixAddr::Abstract(n.to_string()))),
                Some(_) => Err(DestError::MissingPath("unix".into())),
                None if self.path.is_empty() => Err(DestError::MissingPath("unix".into())),
                None => Ok(Endpoint::Unix(UnixAddr::Path(PathBuf::from(&self.path)))),
            },
            TransportType::File => match self.path.as_str() {
                "" => Err(DestError::MissingPath("file".into())),
                "stdout" => Ok(Endpoint::File(FileTarget::Stdout)),
                "stderr" => Ok(Endpoint::File(FileTarget::Stderr)),
                p => Ok(Endpoint::File(FileTarget::Path(PathBuf::from(p)))),
            },
            TransportType::Edge => Ok(Endpoint::Edge),
        }
    }

    /// The URL form of this transport (as `SCOPE_*_DEST` takes it), used in status
    /// files' `interfaces[].config`. Incomplete transports render as `type://`.
    pub fn url(&self) -> String {
        match self.endpoint() {
            Ok(ep) => ep.to_string(),
            Err(_) => format!("{}://", self.kind),
        }
    }
}

/// Split `host:port` / `[v6]:port`; the port is a number 1-65535 or a service name.
fn split_host_port(s: &str) -> Option<(String, String)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':')?)
    } else {
        let (h, p) = s.rsplit_once(':')?;
        if h.contains(':') {
            return None;
        }
        (h, p)
    };
    if host.is_empty() || port.is_empty() || host.contains('/') {
        return None;
    }
    let port_ok = if port.bytes().all(|b| b.is_ascii_digit()) {
        matches!(port.parse::<u32>(), Ok(1..=65535))
    } else {
        port.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    port_ok.then(|| (host.to_string(), port.to_string()))
}
