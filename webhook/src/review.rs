//! AdmissionReview in, AdmissionReview out: the request handler without the HTTP server.
//!
//! [`review`] never panics on any input (it is the fuzz target) and never denies a pod:
//! an internal problem yields `allowed: true`, a warning and no patch. Bodies that are
//! not an AdmissionReview at all get HTTP 400 with an explanation.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, TypeMeta};
use serde_json::Value;

use crate::inject::{self, Decision, InjectConfig, Outcome};

/// Largest request body accepted (the API server's own objects are at most ~1.5 MiB;
/// a review carries at most two of them).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How a request ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A patch was returned.
    Injected,
    /// Allowed without a patch (not selected, already injected, conflicts...).
    Skipped,
    /// Not a pod CREATE (another kind, operation or a subresource): allowed untouched.
    Ignored,
    /// The body was not a usable AdmissionReview: HTTP 400/413.
    Invalid,
    /// Our own failure: allowed with a warning, no patch.
    Error,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Injected => "injected",
            RequestOutcome::Skipped => "skipped",
            RequestOutcome::Ignored => "ignored",
            RequestOutcome::Invalid => "invalid",
            RequestOutcome::Error => "error",
        }
    }
}

/// The HTTP answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub outcome: RequestOutcome,
    pub warnings: Vec<String>,
    /// Injected container names, when a patch was returned.
    pub containers: Vec<String>,
    /// For logs: namespace, pod name or generateName, request uid, skip reason.
    pub detail: String,
}

/// A body for HTTP errors: an AdmissionReview whose response carries the message.
pub fn error_reply(status: u16, message: &str) -> Reply {
    let resp = AdmissionResponse::invalid(message);
    let body = serde_json::to_vec(&resp.into_review()).unwrap_or_else(|_| b"{}".to_vec());
    Reply {
        status,
        body,
        outcome: RequestOutcome::Invalid,
        warnings: Vec::new(),
        containers: Vec::new(),
        detail: message.to_string(),
    }
}

/// Serialises a response the way the API server decodes it: `patch` as a base64 string
/// (Go's `[]byte`), not kube-core's default array of numbers.
fn encode(resp: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    let patch = resp.patch.clone();
    let mut v = serde_json::to_value(resp.into_review())?;
    if let (Some(p), Some(r)) = (patch, v.get_mut("response").and_then(Value::as_object_mut)) {
        r.insert(
            "patch".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(p)),
        );
    }
    serde_json::to_vec(&v)
}

fn allowed_with(
    req: &AdmissionRequest<DynamicObject>,
    outcome: RequestOutcome,
    warnings: Vec<String>,
    detail: String,
) -> Reply {
    let mut resp = AdmissionResponse::from(req);
    if !warnings.is_empty() {
        resp.warnings = Some(warnings.clone());
    }
    match encode(resp) {
        Ok(body) => Reply {
            status: 200,
            body,
            outcome,
            warnings,
            containers: Vec::new(),
            detail,
        },
        Err(e) => error_reply(500, &format!("serialising the response: {e}")),
    }
}

/// Handles one `/mutate` body. `namespace_enabled` is true on `/mutate/namespace`
/// (the webhook entry whose namespaceSelector matches `appscope.dev/scope=enabled`).
pub fn review(body: &[u8], namespace_enabled: bool, cfg: &InjectConfig) -> Reply {
    review_with(body, namespace_enabled, cfg, |p, n, e, c| {
        Ok(inject::decide(p, n, e, c))
    })
}

/// Like [`review`], with the decision function supplied (the server passes one that
/// catches panics, so a bug in a rule still admits the pod).
pub fn review_with<F>(body: &[u8], namespace_enabled: bool, cfg: &InjectConfig, decide: F) -> Reply
where
    F: FnOnce(&Pod, &str, bool, &InjectConfig) -> Result<Decision, String>,
{
    if body.len() > MAX_BODY_BYTES {
        return error_reply(
            413,
            &format!(
                "request body of {} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
                body.len()
            ),
        );
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error_reply(400, &format!("body is not an AdmissionReview: {e}")),
    };
    let types: TypeMeta = review.types.clone();
    if types.kind != "AdmissionReview"
        || !matches!(
            types.api_version.as_str(),
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
    {
        return error_reply(
            400,
            &format!(
                "expected kind AdmissionReview, apiVersion admission.k8s.io/v1; got kind {:?}, apiVersion {:?}",
                types.kind, types.api_version
            ),
        );
    }
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => return error_reply(400, "AdmissionReview has no request"),
    };
    let ns = req.namespace.clone().unwrap_or_default();
    let detail = format!("uid={} namespace={ns}", req.uid);
    if !req.kind.group.is_empty() || req.kind.kind != "Pod" || req.sub_resource.is_some() {
        let what = if req.kind.group.is_empty() {
            format!("{} {}", req.kind.version, req.kind.kind)
        } else {
            format!("{}/{} {}", req.kind.group, req.kind.version, req.kind.kind)
        };
        let sub = req
            .sub_resource
            .as_deref()
            .map(|s| format!(" (subresource {s})"))
            .unwrap_or_default();
        return allowed_with(
            &req,
            RequestOutcome::Ignored,
            vec![format!(
                "appscope: the webhook only mutates pods; got {what}{sub}. Check the MutatingWebhookConfiguration rules. Allowed unchanged"
            )],
            detail,
        );
    }
    if req.operation != Operation::Create {
        return allowed_with(&req, RequestOutcome::Ignored, Vec::new(), detail);
    }
    let Some(obj) = req.object.as_ref() else {
        return allowed_with(
            &req,
            RequestOutcome::Error,
            vec!["appscope: CREATE request without an object; allowed unchanged".into()],
            detail,
        );
    };
    let pod: Pod = match serde_json::to_value(obj).and_then(serde_json::from_value) {
        Ok(p) => p,
        Err(e) => {
            return allowed_with(
                &req,
                RequestOutcome::Error,
                vec![format!(
                    "appscope: could not read the pod ({e}); allowed without injection"
                )],
                detail,
            );
        }
    };
    let ns = req
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let name = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone().map(|g| format!("{g}*")))
        .unwrap_or_else(|| "<unnamed>".into());
    let detail = format!("uid={} namespace={ns} pod={name}", req.uid);
    let decision = match decide(&pod, &ns, namespace_enabled, cfg) {
        Ok(d) => d,
        Err(e) => {
            return allowed_with(
                &req,
                RequestOutcome::Error,
                vec![format!(
                    "appscope: internal error ({e}); allowed without injection"
                )],
                detail,
            );
        }
    };
    let Decision {
        outcome,
        patch,
        warnings,
    } = decision;
    match outcome {
        Outcome::Skipped(reason) => allowed_with(
            &req,
            RequestOutcome::Skipped,
            warnings,
            format!("{detail} skipped={}", reason.as_str()),
        ),
        Outcome::Injected { containers } => {
            let resp = AdmissionResponse::from(&req);
            let resp = match resp.with_patch(patch) {
                Ok(r) => r,
                Err(e) => {
                    let mut w = warnings;
                    w.push(format!(
                        "appscope: internal error serialising the patch ({e}); allowed without injection"
                    ));
                    return allowed_with(&req, RequestOutcome::Error, w, detail);
                }
            };
            let mut resp = resp;
            if !warnings.is_empty() {
                resp.warnings = Some(warnings.clone());
            }
            match encode(resp) {
                Ok(body) => Reply {
                    status: 200,
                    body,
                    outcome: RequestOutcome::Injected,
                    warnings,
                    containers,
                    detail,
                },
                Err(e) => {
                    let mut w = warnings;
                    w.push(format!(
                        "appscope: internal error serialising the response ({e}); allowed without injection"
                    ));
                    allowed_with(&req, RequestOutcome::Error, w, detail)
                }
            }
        }
    }
}

/// Decision function that turns a panic in the rules into an error (server default).
pub fn decide_catching(
    pod: &Pod,
    ns: &str,
    ns_enabled: bool,
    cfg: &InjectConfig,
) -> Result<Decision, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inject::decide(pod, ns, ns_enabled, cfg)
    }))
    .map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        format!("injection rules panicked: {msg}")
    })
}
