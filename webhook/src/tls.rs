//! TLS: the serving certificate, swapped in place while the server runs.
//!
//! [`CertStore`] is a rustls certificate resolver holding the current
//! [`CertifiedKey`]. Every handshake takes the key that is current when it starts, so a
//! swap never breaks a handshake in progress. [`watch_files`] polls the PEM files and
//! swaps when their content changes (a rotated Secret volume changes both at once
//! through its `..data` symlink); a half-written or mismatched pair is reported and the
//! previous certificate stays in use until the next poll.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no PEM certificate found in the certificate data")]
    NoCert,
    #[error("no PEM private key found in the key data")]
    NoKey,
    #[error("parsing PEM: {0}")]
    Pem(std::io::Error),
    #[error("unusable private key: {0}")]
    Key(rustls::Error),
    #[error("certificate and key do not match: {0}")]
    Mismatch(rustls::Error),
    #[error("building the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The crypto provider used everywhere in this crate (ring; see tools.md).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide provider (idempotent). Call at startup: kube's
/// client and anything else using rustls's default then agree.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Parses a PEM certificate chain and private key into a checked [`CertifiedKey`].
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert);
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(TlsError::Pem)?
        .ok_or(TlsError::NoKey)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(TlsError::Key)?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(TlsError::Mismatch)?;
    Ok(ck)
}

/// The current serving certificate (none until the first successful load).
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<(Arc<CertifiedKey>, u64)>>,
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a certificate is loaded (`/readyz`).
    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Replaces the certificate if `cert_pem`/`key_pem` differ from the loaded ones.
    /// Returns `Ok(true)` when swapped, `Ok(false)` when unchanged.
    pub fn load_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, TlsError> {
        let fp = fingerprint(cert_pem, key_pem);
        if let Ok(cur) = self.current.read()
            && cur.as_ref().is_some_and(|(_, f)| *f == fp)
        {
            return Ok(false);
        }
        let ck = Arc::new(certified_key(cert_pem, key_pem)?);
        if let Ok(mut cur) = self.current.write() {
            *cur = Some((ck, fp));
        }
        Ok(true)
    }

    /// Reads both files and loads them (see [`CertStore::load_pem`]).
    pub fn load_files(&self, cert: &Path, key: &Path) -> Result<bool, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let c = read(cert)?;
        let k = read(key)?;
        self.load_pem(&c, &k)
    }
}

/// FNV-1a over both inputs: cheap change detection, not security.
fn fingerprint(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for byte in a.iter().chain([0xffu8].iter()).chain(b.iter()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(k, _)| k.clone()))
    }
}

/// A rustls server config serving whatever `store` holds (h2 and http/1.1).
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Polls `cert`/`key` every `interval` and swaps the certificate when they change,
/// until `stop` resolves.
pub async fn watch_files(
    store: Arc<CertStore>,
    metrics: Arc<Metrics>,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let (c, k, store2) = (cert.clone(), key.clone(), store.clone());
        let res = tokio::task::spawn_blocking(move || store2.load_files(&c, &k)).await;
        match res {
            Ok(Ok(true)) => {
                metrics.count_reload(true);
                last_error = None;
                tracing::info!(cert = %cert.display(), "serving certificate reloaded");
            }
            Ok(Ok(false)) => last_error = None,
            Ok(Err(e)) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(&msg) {
                    metrics.count_reload(false);
                    tracing::warn!(error = %msg, "certificate reload failed; keeping the previous certificate");
                    last_error = Some(msg);
                }
            }
            Err(e) => tracing::error!(error = %e, "certificate reload task failed"),
        }
    }
}
