//! Prometheus metrics served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// All webhook metrics (names in `docs/reference/webhook.md`).
pub struct Metrics {
    registry: Registry,
    /// `appscope_webhook_requests_total{outcome}`
    pub requests: Family<OutcomeLabels, Counter>,
    /// `appscope_webhook_request_duration_seconds`
    pub latency: Histogram,
    /// `appscope_webhook_injected_pods_total`
    pub injected_pods: Counter,
    /// `appscope_webhook_warnings_total`
    pub warnings: Counter,
    /// `appscope_webhook_cert_reloads_total{result}`
    pub cert_reloads: Family<ResultLabels, Counter>,
    /// `appscope_webhook_cert_not_after_seconds` (Unix time the serving cert expires)
    pub cert_not_after: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("appscope_webhook");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests by outcome (injected, skipped, ignored, invalid, error)",
            requests.clone(),
        );
        // 50 µs .. ~200 ms
        let latency = Histogram::new([
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        ]);
        registry.register(
            "request_duration_seconds",
            "Time to handle one admission request, body read to response",
            latency.clone(),
        );
        let injected_pods = Counter::default();
        registry.register(
            "injected_pods",
            "Pods that received the AppScope injection patch",
            injected_pods.clone(),
        );
        let warnings = Counter::default();
        registry.register(
            "warnings",
            "Admission warnings returned to clients",
            warnings.clone(),
        );
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cert_reloads",
            "Serving certificate loads by result (ok, error)",
            cert_reloads.clone(),
        );
        let cert_not_after = Gauge::default();
        registry.register(
            "cert_not_after_seconds",
            "Expiry (Unix seconds) of the serving certificate in use",
            cert_not_after.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            injected_pods,
            warnings,
            cert_reloads,
            cert_not_after,
        }
    }

    pub fn count_request(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn count_reload(&self, ok: bool) {
        self.cert_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
