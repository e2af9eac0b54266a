//! Where a channel's data goes: a pure description, parsed from AppScope's destination
//! URLs and from the config model. No I/O here.

use std::fmt;

/// TLS settings of a tcp endpoint (`*.transport.tls` in scope.yml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `validateserver`: check the server's certificate chain and name.
    pub validate_server: bool,
    /// `cacertpath`: PEM bundle of trusted CAs; empty = the system bundle.
    pub ca_cert_path: String,
}

/// A destination for one channel (metrics, events or the library log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Nothing is sent; queued data is dropped and counted.
    Disabled,
    Tcp {
        host: String,
        port: u16,
        tls: Option<TlsSettings>,
    },
    Udp {
        host: String,
        port: u16,
    },
    /// A unix stream socket; `abstract_name` means the Linux abstract namespace
    /// (`unix://@name`), where `path` holds the name without the leading NUL.
    Unix {
        path: String,
        abstract_name: bool,
    },
    /// A file opened for append (created 0666 minus umask when missing).
    File {
        path: String,
    },
    Stdout,
    Stderr,
}

/// The unix socket AppScope's `edge` transport connects to when `SCOPE_CRIBL_EDGE_PATH`
/// is not set.
pub const EDGE_DEFAULT_PATH: &str = "/var/run/appscope/appscope.sock";

/// Why a destination string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination {dest:?}: {reason}")]
pub struct BadDest {
    pub dest: String,
    pub reason: String,
}

fn bad(dest: &str, reason: &str) -> BadDest {
    BadDest {
        dest: dest.to_string(),
        reason: reason.to_string(),
    }
}

fn host_port(dest: &str, rest: &str) -> Result<(String, u16), BadDest> {
    // [v6]:port or host:port
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let end = stripped
            .find(']')
            .ok_or_else(|| bad(dest, "missing ']' after IPv6 address"))?;
        let host = &stripped[..end];
        let port = stripped[end + 1..]
            .strip_prefix(':')
            .ok_or_else(|| bad(dest, "missing :port"))?;
        (host, port)
    } else {
        rest.rsplit_once(':')
            .ok_or_else(|| bad(dest, "missing :port"))?
    };
    if host.is_empty() {
        return Err(bad(dest, "empty host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad(dest, "port is not a number in 1..65535"))?;
    if port == 0 {
        return Err(bad(dest, "port 0"));
    }
    Ok((host.to_string(), port))
}

impl Endpoint {
    /// Can the process-exit path connect to this destination without waiting on the
    /// network? Files, stdout/stderr and unix sockets are local; a UDP "connection" to
    /// an IP address sends nothing and never blocks. TCP (and TLS) needs a handshake
    /// with the peer, and a host name needs resolving: never at exit.
    pub fn exit_connectable(&self) -> bool {
        match self {
            Endpoint::File { .. } | Endpoint::Stdout | Endpoint::Stderr => true,
            Endpoint::Unix { .. } => true,
            Endpoint::Udp { host, .. } => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok(),
            Endpoint::Tcp { .. } | Endpoint::Disabled => false,
        }
    }

    /// Parses AppScope's destination form: `tcp://host:port`, `udp://host:port`,
    /// `unix:///path`, `unix://@abstract`, `file:///path`, `file://stdout`, `file://stderr`.
    /// `tls` applies to tcp only.
    pub fn parse(dest: &str, tls: Option<TlsSettings>) -> Result<Endpoint, BadDest> {
        let d = dest.trim();
        let (scheme, rest) = d
            .split_once("://")
            .ok_or_else(|| bad(dest, "expected scheme://..."))?;
        match scheme.to_ascii_lowercase().as_str() {
            "tcp" => {
                let (host, port) = host_port(dest, rest)?;
                Ok(Endpoint::Tcp { host, port, tls })
            }
            "udp" => {
                let (host, port) = host_port(dest, rest)?;
                Ok(Endpoint::Udp { host, port })
            }
            "unix" => {
                if let Some(name) = rest.strip_prefix('@') {
                    if name.is_empty() {
                        return Err(bad(dest, "empty abstract socket name"));
                    }
                    Ok(Endpoint::Unix {
                        path: name.to_string(),
                        abstract_name: true,
                    })
                } else if rest.starts_with('/') {
                    if rest.len() >= 108 {
                        return Err(bad(dest, "unix socket path longer than 107 bytes"));
                    }
                    Ok(Endpoint::Unix {
                        path: rest.to_string(),
                        abstract_name: false,
                    })
                } else {
                    Err(bad(dest, "unix path must be absolute or @abstract"))
                }
            }
            "file" => match rest {
                "stdout" => Ok(Endpoint::Stdout),
                "stderr" => Ok(Endpoint::Stderr),
                p if p.starts_with('/') => Ok(Endpoint::File {
                    path: p.to_string(),
                }),
                _ => Err(bad(dest, "file path must be absolute, stdout or stderr")),
            },
            "edge" => Ok(Endpoint::Unix {
                path: EDGE_DEFAULT_PATH.to_string(),
                abstract_name: false,
            }),
            _ => Err(bad(dest, "unknown scheme (tcp, udp, unix, file)")),
        }
    }

    /// True for endpoints that are a byte stream (line boundaries must be kept whole).
    pub fn is_stream(&self) -> bool {
        matches!(self, Endpoint::Tcp { .. } | Endpoint::Unix { .. })
    }
}

impl fmt::Display for Endpoint {
    /// The URL form shown in the status file's `interfaces[].config`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Disabled => write!(f, "disabled"),
            Endpoint::Tcp { host, port, tls } => {
                let h = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match tls {
                    Some(_) => write!(f, "tls://{h}:{port}"),
                    None => write!(f, "tcp://{h}:{port}"),
                }
            }
            Endpoint::Udp { host, port } => {
                if host.contains(':') {
                    write!(f, "udp://[{host}]:{port}")
                } else {
                    write!(f, "udp://{host}:{port}")
                }
            }
            Endpoint::Unix {
                path,
                abstract_name: true,
            } => write!(f, "unix://@{path}"),
            Endpoint::Unix { path, .. } => write!(f, "unix://{path}"),
            Endpoint::File { path } => write!(f, "file://{path}"),
            Endpoint::Stdout => write!(f, "file://stdout"),
            Endpoint::Stderr => write!(f, "file://stderr"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases: &[(&str, Endpoint)] = &[
            (
                "tcp://127.0.0.1:9109",
                Endpoint::Tcp {
                    host: "127.0.0.1".into(),
                    port: 9109,
                    tls: None,
                },
            ),
            (
                "udp://localhost:8125",
                Endpoint::Udp {
                    host: "localhost".into(),
                    port: 8125,
                },
            ),
            (
                "tcp://[::1]:10",
                Endpoint::Tcp {
                    host: "::1".into(),
                    port: 10,
                    tls: None,
                },
            ),
            (
                "unix:///var/run/x.sock",
                Endpoint::Unix {
                    path: "/var/run/x.sock".into(),
                    abstract_name: false,
                },
            ),
            (
                "unix://@scope",
                Endpoint::Unix {
                    path: "scope".into(),
                    abstract_name: true,
                },
            ),
            (
                "file:///tmp/m.log",
                Endpoint::File {
                    path: "/tmp/m.log".into(),
                },
            ),
            ("file://stdout", Endpoint::Stdout),
            ("file://stderr", Endpoint::Stderr),
        ];
        for (s, want) in cases {
            let got = Endpoint::parse(s, None).unwrap();
            assert_eq!(&got, want, "{s}");
            assert_eq!(got.to_string(), *s, "display round-trips");
        }
    }

    #[test]
    fn rejects_bad_destinations() {
        for s in [
            "tcp://host",
            "tcp://:80",
            "tcp://h:0",
            "tcp://h:99999",
            "udp://h:x",
            "unix://rel/path",
            "unix://@",
            "file://rel",
            "http://h:1",
            "nonsense",
        ] {
            assert!(Endpoint::parse(s, None).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn tls_shows_in_display() {
        let e = Endpoint::parse(
            "tcp://h:1",
            Some(TlsSettings {
                validate_server: true,
                ca_cert_path: String::new(),
            }),
        )
        .unwrap();
        assert_eq!(e.to_string(), "tls://h:1");
    }
}
