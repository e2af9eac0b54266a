//! `appscope-webhook`: the mutating admission webhook that injects `libscope.so`,
//! the ConfigMap-backed `scope.yml` and the `SCOPE_*` env into pods (design §4).
//!
//! - [`inject`]: the pure injection decision (pod in, JSON Patch and warnings out).
//! - [`review`]: AdmissionReview bytes in, HTTP reply out (never panics; fuzzed).
//! - [`server`]: axum routes on a rustls listener with graceful shutdown.
//! - [`tls`]: hot-reloaded serving certificate.
//! - [`selfcert`]: `--certs self`: CA and serving cert in a Secret under leader election,
//!   and the `caBundle` of the MutatingWebhookConfiguration.
//! - [`metrics`]: Prometheus metrics.

pub mod inject;
pub mod metrics;
pub mod review;
pub mod selfcert;
pub mod server;
pub mod tls;
