//! `--certs self`: the webhook manages its own CA and serving certificate.
//!
//! Every replica runs [`reconcile_once`] periodically:
//! 1. Leader election on a `coordination.k8s.io/v1` Lease (`<lease_name>` in the
//!    webhook's namespace): take it when free or expired, renew it when held.
//! 2. The leader makes sure the Secret holds a CA and a serving certificate valid for
//!    at least `renew_before` (creating or replacing it, with optimistic concurrency),
//!    and that every webhook of the MutatingWebhookConfiguration that points at our
//!    Service carries the CA in `clientConfig.caBundle` (a JSON Patch guarded by `test`).
//! 3. Every replica returns the Secret's `tls.crt`/`tls.key` for the [`crate::tls::CertStore`].
//!
//! Secret data: `ca.crt` (current CA, followed by the previous one during a CA
//! rotation), `ca.key`, `tls.crt`, `tls.key`. Expiry times are kept in annotations so
//! renewal needs no X.509 parser.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;

/// Secret annotation: RFC 3339 expiry of the CA.
pub const ANN_CA_NOT_AFTER: &str = "appscope.dev/ca-not-after";
/// Secret annotation: RFC 3339 expiry of the serving certificate.
pub const ANN_CERT_NOT_AFTER: &str = "appscope.dev/cert-not-after";
/// Secret annotation: the DNS names the serving certificate covers (comma list).
pub const ANN_CERT_DNS: &str = "appscope.dev/cert-dns-names";
const CA_CN: &str = "appscope-webhook-ca";

#[derive(Debug, thiserror::Error)]
pub enum SelfCertError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("Secret {0} is missing {1}")]
    MissingKey(String, &'static str),
    #[error("time out of range: {0}")]
    Time(String),
}

/// Settings of the self-managed certificate mode.
#[derive(Debug, Clone)]
pub struct SelfCertConfig {
    pub namespace: String,
    pub secret_name: String,
    pub service_name: String,
    pub webhook_config_name: String,
    pub lease_name: String,
    /// This replica's identity in the Lease (pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
    /// Renew a certificate when it expires within this.
    pub renew_before: Duration,
}

impl SelfCertConfig {
    pub fn new(namespace: &str, identity: &str) -> Self {
        SelfCertConfig {
            namespace: namespace.to_string(),
            secret_name: "appscope-webhook-tls".into(),
            service_name: "appscope-webhook".into(),
            webhook_config_name: "appscope-webhook".into(),
            lease_name: "appscope-webhook-certs".into(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(30),
            ca_validity: Duration::from_secs(10 * 365 * 86400),
            cert_validity: Duration::from_secs(365 * 86400),
            renew_before: Duration::from_secs(30 * 86400),
        }
    }

    /// The names the API server uses to reach the Service.
    pub fn dns_names(&self) -> Vec<String> {
        let (s, n) = (&self.service_name, &self.namespace);
        vec![
            s.clone(),
            format!("{s}.{n}"),
            format!("{s}.{n}.svc"),
            format!("{s}.{n}.svc.cluster.local"),
        ]
    }
}

/// PEM material of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertMaterial {
    pub ca_crt: String,
    pub ca_key: String,
    pub tls_crt: String,
    pub tls_key: String,
    pub ca_not_after: Timestamp,
    pub cert_not_after: Timestamp,
}

fn to_offset(ts: Timestamp) -> Result<time::OffsetDateTime, SelfCertError> {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second())
        .map_err(|e| SelfCertError::Time(e.to_string()))
}

fn add(ts: Timestamp, d: Duration) -> Result<Timestamp, SelfCertError> {
    ts.checked_add(SignedDuration::try_from(d).map_err(|e| SelfCertError::Time(e.to_string()))?)
        .map_err(|e| SelfCertError::Time(e.to_string()))
}

fn ca_params(
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<CertificateParams, SelfCertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, "appscope");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = to_offset(not_before)?;
    p.not_after = to_offset(not_after)?;
    Ok(p)
}

fn serving_cert(
    cfg: &SelfCertConfig,
    issuer: &Issuer<'_, KeyPair>,
    now: Timestamp,
) -> Result<(String, String, Timestamp), SelfCertError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(cfg.dns_names())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{}.svc", cfg.service_name, cfg.namespace),
    );
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let not_after = add(now, cfg.cert_validity)?;
    p.not_before = to_offset(
        now.checked_sub(SignedDuration::from_secs(300))
            .unwrap_or(now),
    )?;
    p.not_after = to_offset(not_after)?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// A new CA and serving certificate.
pub fn generate(cfg: &SelfCertConfig, now: Timestamp) -> Result<CertMaterial, SelfCertError> {
    let ca_key = KeyPair::generate()?;
    let ca_not_after = add(now, cfg.ca_validity)?;
    let nb = now
        .checked_sub(SignedDuration::from_secs(300))
        .unwrap_or(now);
    let params = ca_params(nb, ca_not_after)?;
    let ca_cert = params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (tls_crt, tls_key, cert_not_after) = serving_cert(cfg, &issuer, now)?;
    Ok(CertMaterial {
        ca_crt: ca_cert.pem(),
        ca_key: ca_key_pem,
        tls_crt,
        tls_key,
        ca_not_after,
        cert_not_after,
    })
}

/// A new serving certificate signed by the existing CA (`ca_key_pem`).
pub fn renew_serving(
    cfg: &SelfCertConfig,
    existing: &CertMaterial,
    now: Timestamp,
) -> Result<CertMaterial, SelfCertError> {
    let ca_key = KeyPair::from_pem(&existing.ca_key)?;
    // The issuer needs only the CA's name, key usages and key: rebuild them.
    let params = ca_params(now, existing.ca_not_after)?;
    let issuer = Issuer::new(params, ca_key);
    let (tls_crt, tls_key, cert_not_after) = serving_cert(cfg, &issuer, now)?;
    Ok(CertMaterial {
        tls_crt,
        tls_key,
        cert_not_after,
        ..existing.clone()
    })
}

/// What the leader must do with the Secret's current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertAction {
    Keep,
    RenewServing,
    RotateCa,
}

/// Pure decision: rotate the CA when it expires within `renew_before` (or is
/// unreadable), renew the serving cert when it does or when its DNS names changed.
pub fn plan(
    cfg: &SelfCertConfig,
    existing: Option<&CertMaterial>,
    dns_annotation: Option<&str>,
    now: Timestamp,
) -> CertAction {
    let Some(m) = existing else {
        return CertAction::RotateCa;
    };
    let Ok(horizon) = add(now, cfg.renew_before) else {
        return CertAction::RotateCa;
    };
    if m.ca_not_after <= horizon {
        return CertAction::RotateCa;
    }
    if m.cert_not_after <= horizon || dns_annotation != Some(cfg.dns_names().join(",").as_str()) {
        return CertAction::RenewServing;
    }
    CertAction::Keep
}

fn secret_str(s: &Secret, key: &'static str) -> Result<String, SelfCertError> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .ok_or_else(|| SelfCertError::MissingKey(s.metadata.name.clone().unwrap_or_default(), key))
}

/// Reads the material from a Secret; `None` when a piece is missing or malformed.
pub fn material_from_secret(s: &Secret) -> Option<CertMaterial> {
    let ann = s.metadata.annotations.as_ref()?;
    let ts = |k: &str| ann.get(k)?.parse::<Timestamp>().ok();
    Some(CertMaterial {
        ca_crt: secret_str(s, "ca.crt").ok()?,
        ca_key: secret_str(s, "ca.key").ok()?,
        tls_crt: secret_str(s, "tls.crt").ok()?,
        tls_key: secret_str(s, "tls.key").ok()?,
        ca_not_after: ts(ANN_CA_NOT_AFTER)?,
        cert_not_after: ts(ANN_CERT_NOT_AFTER)?,
    })
}

fn secret_for(cfg: &SelfCertConfig, m: &CertMaterial, resource_version: Option<String>) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", &m.ca_crt),
        ("ca.key", &m.ca_key),
        ("tls.crt", &m.tls_crt),
        ("tls.key", &m.tls_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(cfg.secret_name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version,
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "appscope-webhook".to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (ANN_CA_NOT_AFTER.to_string(), m.ca_not_after.to_string()),
                (ANN_CERT_NOT_AFTER.to_string(), m.cert_not_after.to_string()),
                (ANN_CERT_DNS.to_string(), cfg.dns_names().join(",")),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Takes or renews the Lease. Returns whether this replica leads.
pub async fn acquire_lease(
    client: &kube::Client,
    cfg: &SelfCertConfig,
    now: Timestamp,
) -> Result<bool, SelfCertError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    match api.get_opt(&cfg.lease_name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.lease_name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 409) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
            let dur = i64::from(spec.lease_duration_seconds.unwrap_or(secs).max(1));
            let expired = match &spec.renew_time {
                Some(MicroTime(t)) => t
                    .checked_add(SignedDuration::from_secs(dur))
                    .map(|e| e <= now)
                    .unwrap_or(true),
                None => true,
            };
            if !mine && !expired {
                return Ok(false);
            }
            if !mine {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(secs);
            spec.renew_time = Some(MicroTime(now));
            match api
                .replace(&cfg.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 409) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Makes every webhook of the configuration that targets our Service trust `ca_pem`.
/// Returns how many webhooks were patched.
pub async fn ensure_ca_bundle(
    client: &kube::Client,
    cfg: &SelfCertConfig,
    ca_pem: &str,
) -> Result<usize, SelfCertError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(mwc) = api.get_opt(&cfg.webhook_config_name).await? else {
        tracing::warn!(name = %cfg.webhook_config_name, "MutatingWebhookConfiguration not found; caBundle not set");
        return Ok(0);
    };
    let mut ops = Vec::new();
    for (i, w) in mwc.webhooks.iter().flatten().enumerate() {
        let ours = w
            .client_config
            .service
            .as_ref()
            .is_some_and(|s| s.name == cfg.service_name && s.namespace == cfg.namespace);
        let current = w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
        if ours && current != Some(ca_pem.as_bytes()) {
            ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
            ops.push(json!({
                "op": "add",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": ByteString(ca_pem.as_bytes().to_vec()),
            }));
        }
    }
    if ops.is_empty() {
        return Ok(0);
    }
    let n = ops.len() / 2;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| SelfCertError::Time(format!("building the caBundle patch: {e}")))?;
    api.patch(
        &cfg.webhook_config_name,
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(n)
}

/// One round: lease, Secret, caBundle. Returns the serving cert and key PEM when the
/// Secret holds them.
pub async fn reconcile_once(
    client: &kube::Client,
    cfg: &SelfCertConfig,
    now: Timestamp,
) -> Result<Option<(String, String)>, SelfCertError> {
    let leader = acquire_lease(client, cfg, now).await?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut secret = api.get_opt(&cfg.secret_name).await?;
    if leader {
        let existing = secret.as_ref().and_then(material_from_secret);
        let dns = secret
            .as_ref()
            .and_then(|s| s.metadata.annotations.as_ref())
            .and_then(|a| a.get(ANN_CERT_DNS))
            .map(String::as_str);
        let action = plan(cfg, existing.as_ref(), dns, now);
        let new = match (&action, &existing) {
            (CertAction::Keep, _) => None,
            (CertAction::RenewServing, Some(m)) => Some(renew_serving(cfg, m, now)?),
            _ => {
                let mut m = generate(cfg, now)?;
                // Keep trusting the previous CA until its certificates are replaced.
                if let Some(old) = &existing {
                    let prev = old
                        .ca_crt
                        .split("-----END CERTIFICATE-----")
                        .next()
                        .unwrap_or("");
                    if !prev.trim().is_empty() {
                        m.ca_crt = format!("{}{prev}-----END CERTIFICATE-----\n", m.ca_crt);
                    }
                }
                Some(m)
            }
        };
        if let Some(m) = new {
            tracing::info!(action = ?action, secret = %cfg.secret_name, "writing webhook certificates");
            let rv = secret
                .as_ref()
                .and_then(|s| s.metadata.resource_version.clone());
            let body = secret_for(cfg, &m, rv.clone());
            let res = if rv.is_some() {
                api.replace(&cfg.secret_name, &PostParams::default(), &body)
                    .await
            } else {
                api.create(&PostParams::default(), &body).await
            };
            secret = match res {
                Ok(s) => Some(s),
                // Another writer won the race: use what it wrote.
                Err(e) if is_status(&e, 409) => api.get_opt(&cfg.secret_name).await?,
                Err(e) => return Err(e.into()),
            };
        }
        if let Some(m) = secret.as_ref().and_then(material_from_secret) {
            ensure_ca_bundle(client, cfg, &m.ca_crt).await?;
        }
    }
    Ok(secret
        .as_ref()
        .and_then(material_from_secret)
        .map(|m| (m.tls_crt, m.tls_key)))
}
