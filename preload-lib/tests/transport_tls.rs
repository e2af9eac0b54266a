//! TLS over tcp against a real rustls server with a test CA made by rcgen: the CA path is
//! honoured, an untrusted server is refused (and the reason reported in the status
//! file), and `validateserver: false` accepts it.

mod common;

use std::io::BufRead;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const T: Duration = Duration::from_secs(15);

struct TlsCollector {
    port: u16,
    lines: Lines,
    handshake_errors: Arc<Mutex<Vec<String>>>,
    ca_pem: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn tls_collector() -> TlsCollector {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "scope test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lines = Lines::default();
    let errs = Arc::new(Mutex::new(Vec::new()));
    let (lines2, errs2) = (lines.clone(), errs.clone());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let cfg = cfg.clone();
            let lines = lines2.clone();
            let errs = errs2.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let stream = rustls::StreamOwned::new(conn, s);
                let mut r = std::io::BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => lines.0.lock().unwrap().push(line.trim_end().to_string()),
                        Err(e) => {
                            errs.lock().unwrap().push(e.to_string());
                            break;
                        }
                    }
                }
            });
        }
    });
    TlsCollector {
        port,
        lines,
        handshake_errors: errs,
        ca_pem,
        _dir: dir,
    }
}

fn scoped_sleep(env: &Env, port: u16, extra: &[(&str, String)]) -> Guarded {
    let mut c = env.scoped(env.sleep_program());
    c.arg("20")
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", format!("tcp://localhost:{port}"))
        .env("SCOPE_EVENT_TLS_ENABLE", "true");
    for (k, v) in extra {
        c.env(k, v);
    }
    Guarded::spawn(c)
}

#[test]
fn tls_with_the_test_ca_delivers_the_start_message() {
    tls_with_the_test_ca_for(Libc::Glibc);
}

#[test]
fn musl_tls_with_the_test_ca_delivers_the_start_message() {
    tls_with_the_test_ca_for(Libc::Musl);
}

fn tls_with_the_test_ca_for(libc: Libc) {
    let col = tls_collector();
    let env = Env::for_libc(libc);
    let child = scoped_sleep(
        &env,
        col.port,
        &[
            ("SCOPE_EVENT_TLS_VALIDATE_SERVER", "true".into()),
            (
                "SCOPE_EVENT_TLS_CA_CERT_PATH",
                col.ca_pem.display().to_string(),
            ),
        ],
    );
    col.lines
        .wait("start message over TLS", T, |l| !l.is_empty());
    let v: serde_json::Value = serde_json::from_str(&col.lines.all()[0]).unwrap();
    assert_eq!(v["info"]["process"]["pid"], child.pid());
    assert_valid_start_msg(&v);
    let st = env.wait_status(child.pid(), "tls connected", T, |s| {
        iface(s, "events")["connected"] == true
    });
    assert_eq!(
        iface(&st, "events")["config"],
        format!("tls://localhost:{}", col.port)
    );
}

#[test]
fn untrusted_server_is_refused_and_the_reason_reported() {
    let col = tls_collector();
    let env = Env::new();
    // Validation on, no CA path: the system bundle does not know the test CA.
    let child = scoped_sleep(
        &env,
        col.port,
        &[("SCOPE_EVENT_TLS_VALIDATE_SERVER", "true".into())],
    );
    let st = env.wait_status(child.pid(), "a failed tls attempt", T, |s| {
        iface(s, "events")["attempts"].as_u64().unwrap_or(0) >= 1
    });
    let ev = iface(&st, "events");
    assert_eq!(ev["connected"], false);
    let why = ev["failure_details"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        why.contains("certificate") || why.contains("issuer"),
        "{ev}"
    );
    assert!(
        col.lines.all().is_empty(),
        "nothing delivered to an untrusted server"
    );
}

#[test]
fn validateserver_false_accepts_any_certificate() {
    let col = tls_collector();
    let env = Env::new();
    let child = scoped_sleep(
        &env,
        col.port,
        &[("SCOPE_EVENT_TLS_VALIDATE_SERVER", "false".into())],
    );
    col.lines
        .wait("start message over unvalidated TLS", T, |l| !l.is_empty());
    let v: serde_json::Value = serde_json::from_str(&col.lines.all()[0]).unwrap();
    assert_eq!(v["info"]["process"]["pid"], child.pid());
    assert!(col.handshake_errors.lock().unwrap().is_empty());
}
