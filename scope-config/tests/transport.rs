//! Destination URL parsing (SCOPE_*_DEST), table-driven.

use std::path::PathBuf;

use scope_config::{DestError, Endpoint, FileTarget, Transport, TransportType, UnixAddr};

fn hp(h: &str, p: &str) -> (String, String) {
    (h.to_string(), p.to_string())
}

#[test]
fn parse_dest_accepts_every_appscope_form() {
    let cases: Vec<(&str, Endpoint)> = vec![
        ("tcp://127.0.0.1:9109", {
            let (host, port) = hp("127.0.0.1", "9109");
            Endpoint::Tcp { host, port }
        }),
        ("udp://localhost:8125", {
            let (host, port) = hp("localhost", "8125");
            Endpoint::Udp { host, port }
        }),
        ("TCP://example.com:https", {
            let (host, port) = hp("example.com", "https");
            Endpoint::Tcp { host, port }
        }),
        ("tcp://[::1]:10090", {
            let (host, port) = hp("::1", "10090");
            Endpoint::Tcp { host, port }
        }),
        ("  udp://10.1.2.3:1  ", {
            let (host, port) = hp("10.1.2.3", "1");
            Endpoint::Udp { host, port }
        }),
        (
            "unix:///var/run/scope.sock",
            Endpoint::Unix(UnixAddr::Path(PathBuf::from("/var/run/scope.sock"))),
        ),
        (
            "unix://@abstractname",
            Endpoint::Unix(UnixAddr::Abstract("abstractname".into())),
        ),
        (
            "file:///tmp/output.log",
            Endpoint::File(FileTarget::Path(PathBuf::from("/tmp/output.log"))),
        ),
        ("file://stdout", Endpoint::File(FileTarget::Stdout)),
        ("file://stderr", Endpoint::File(FileTarget::Stderr)),
        ("edge", Endpoint::Edge),
        ("EDGE", Endpoint::Edge),
    ];
    for (url, want) in cases {
        let got = Transport::parse_dest(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(got, want, "{url}");
        // Display gives back a URL that parses to the same endpoint.
        assert_eq!(
            Transport::parse_dest(&got.to_string()).unwrap(),
            want,
            "{url} via {got}"
        );
    }
}

#[test]
fn parse_dest_rejects_bad_urls_with_reasons() {
    type Check = fn(&DestError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| *e == DestError::Empty),
        ("   ", |e| *e == DestError::Empty),
        ("tls://host:443", |e| matches!(e, DestError::Scheme(_))),
        ("http://host:80", |e| matches!(e, DestError::Scheme(_))),
        ("127.0.0.1:8125", |e| matches!(e, DestError::Scheme(_))),
        ("tcp://:9109", |e| matches!(e, DestError::MissingHost(_))),
        ("tcp://", |e| matches!(e, DestError::MissingHost(_))),
        ("tcp://host", |e| matches!(e, DestError::BadPort(_))),
        ("tcp://host:0", |e| matches!(e, DestError::BadPort(_))),
        ("tcp://host:70000", |e| matches!(e, DestError::BadPort(_))),
        ("udp://host:", |e| matches!(e, DestError::BadPort(_))),
        ("tcp://::1:80", |e| matches!(e, DestError::BadPort(_))),
        ("unix://", |e| matches!(e, DestError::MissingPath(_))),
        ("unix://@", |e| matches!(e, DestError::MissingPath(_))),
        ("unix://relative/sock", |e| {
            matches!(e, DestError::RelativePath(_))
        }),
        ("file://", |e| matches!(e, DestError::MissingPath(_))),
        ("file://tmp/x.log", |e| {
            matches!(e, DestError::RelativePath(_))
        }),
        ("file:///tmp/a\nb", |e| *e == DestError::Control),
    ];
    for (url, check) in cases {
        match Transport::parse_dest(url) {
            Ok(ep) => panic!("{url:?} accepted as {ep:?}"),
            Err(e) => {
                assert!(check(&e), "{url:?}: unexpected error {e:?}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn set_endpoint_keeps_tls_and_buffering() {
    let mut t = scope_config::Config::default().metric.transport;
    t.tls.enable = true;
    t.tls.cacertpath = "/ca.pem".into();
    t.set_dest("tcp://collector:9000").unwrap();
    assert_eq!(
        (t.kind, t.host.as_str(), t.port.as_str()),
        (TransportType::Tcp, "collector", "9000")
    );
    assert!(t.tls.enable);
    assert_eq!(t.tls.cacertpath, "/ca.pem");
    assert_eq!(t.url(), "tcp://collector:9000");
    t.set_dest("unix://@sock").unwrap();
    assert_eq!(t.path, "@sock");
    assert_eq!(t.url(), "unix://@sock");
    assert!(t.set_dest("bogus").is_err());
    assert_eq!(
        t.url(),
        "unix://@sock",
        "a bad URL leaves the transport unchanged"
    );
}
