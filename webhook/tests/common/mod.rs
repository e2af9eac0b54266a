//! Shared helpers for the webhook's integration tests: certificates, the server
//! process, and a small blocking HTTPS client (rustls over std TCP).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

pub const INIT_IMAGE: &str = "ghcr.io/appscope/appscope-operator:0.1.0-test";

/// A test CA plus a serving cert for 127.0.0.1/localhost, as PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_pki(cn: &str) -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{cn} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.signed_by(&key, &issuer).unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes cert/key like a mounted Secret: `..data` symlink to a timestamped dir, and
/// `tls.crt`/`tls.key` symlinks through it; [`rotate_secret_dir`] swaps atomically.
pub fn write_secret_dir(dir: &Path, pki: &TestPki, generation: u32) {
    let data = dir.join(format!("..gen{generation}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &pki.key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

/// The running `appscope-webhook` binary; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary with `--certs files` on an ephemeral port and waits until it
    /// logs its address.
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Server {
        let bin = testkit::bin_path("appscope-webhook", "appscope-webhook");
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--certs",
            "files",
            "--init-image",
            INIT_IMAGE,
        ])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args([
            "--cert-reload-interval",
            "1",
            "--namespace",
            "appscope-system",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("APPSCOPE_INIT_IMAGE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning appscope-webhook");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let logs2 = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(l) = v.get("listen").and_then(Value::as_str)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(l.to_string());
                }
                logs2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("webhook did not start; logs: {:?}", logs.lock().unwrap());
            }
        };
        Server { child, addr, logs }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

pub fn client_config(ca_pems: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Full handshakes only: a resumed session would report the old peer certificate.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// One HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer_cert: Option<CertificateDer<'static>>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub fn tls_connect(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(15)))?;
    let conn = rustls::ClientConnection::new(
        cfg.clone(),
        ServerName::try_from("localhost").unwrap().to_owned(),
    )
    .map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Status, headers (lower-case names), body.
pub type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

pub fn read_response<R: Read>(r: R) -> std::io::Result<RawResponse> {
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    let mut len = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                len = v.parse::<usize>().ok();
            }
            headers.push((k, v));
        }
    }
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    Ok((status, headers, body))
}

/// A request over a fresh TLS connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = tls_connect(addr, cfg)?;
    let peer_cert = s
        .conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .map(|c| c.into_owned());
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()?;
    let (status, headers, body) = read_response(&mut s)?;
    Ok(Resp {
        status,
        headers,
        body,
        peer_cert,
    })
}

pub fn post(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, path: &str, body: &[u8]) -> Resp {
    request(addr, cfg, "POST", path, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

pub fn get(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, path: &str) -> Resp {
    request(addr, cfg, "GET", path, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The patch of an admission response, accepting the base64 string the API server
/// expects and kube-core's array-of-bytes form.
pub fn patch_of(resp: &Value) -> Option<json_patch::Patch> {
    let p = resp.get("response")?.get("patch")?;
    let bytes = match p {
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("patch is not base64"),
        Value::Array(a) => a
            .iter()
            .map(|b| b.as_u64().expect("patch byte") as u8)
            .collect(),
        Value::Null => return None,
        other => panic!("unexpected patch form {other}"),
    };
    Some(serde_json::from_slice(&bytes).expect("patch is not a JSON Patch"))
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub struct Fixture {
    pub name: String,
    pub review: Value,
    pub expect: Value,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn load_fixtures() -> Vec<Fixture> {
    let mut v: Vec<Fixture> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_string();
            if !name.ends_with(".json") || name.ends_with(".expect.json") {
                return None;
            }
            let stem = name.trim_end_matches(".json").to_string();
            let review = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            let expect = serde_json::from_slice(
                &std::fs::read(fixtures_dir().join(format!("{stem}.expect.json"))).ok()?,
            )
            .ok()?;
            Some(Fixture {
                name: stem,
                review,
                expect,
            })
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Runs `kubernetes-validate --strict -k VERSION files...`. Returns None (after a loud
/// message) when the tool is missing outside CI; panics when it is missing in CI.
pub fn kubernetes_validate(version: &str, files: &[PathBuf]) -> Option<(bool, String)> {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output();
    match out {
        Ok(o) => Some((
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "kubernetes-validate is required in CI (.ci/setup.d/40-webhook.sh installs it): {e}"
                );
            }
            eprintln!(
                "\n!!!!!!!! kubernetes-validate not found ({e}); SKIPPING OpenAPI validation of mutated pods.\n!!!!!!!! Install it: /usr/bin/python3 -m pip install kubernetes-validate\n"
            );
            None
        }
    }
}
