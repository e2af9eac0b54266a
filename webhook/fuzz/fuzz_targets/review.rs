//! Fuzzes the admission request handler: arbitrary bytes, and arbitrary bytes spliced
//! into a real AdmissionReview's pod (so the injection rules are reached, not only the
//! JSON parser). The handler must never panic and must always answer with JSON.
#![no_main]

use appscope_webhook::inject::InjectConfig;
use appscope_webhook::review;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn cfg() -> &'static InjectConfig {
    static CFG: OnceLock<InjectConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        InjectConfig::new(
            "ghcr.io/appscope/appscope-operator:fuzz",
            Some("appscope-system"),
        )
    })
}

const TEMPLATE: &str = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"ns","operation":"CREATE","userInfo":{},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"x-","annotations":{"appscope.dev/scope":"true"}},"spec":FUZZ}}}"#;

fuzz_target!(|data: &[u8]| {
    let ns_enabled = data.first().is_some_and(|b| b & 1 == 1);
    for body in [
        data.to_vec(),
        TEMPLATE
            .replace("FUZZ", &String::from_utf8_lossy(data))
            .into_bytes(),
    ] {
        let r = review::review(&body, ns_enabled, cfg());
        assert!(
            serde_json::from_slice::<serde_json::Value>(&r.body).is_ok(),
            "reply is JSON"
        );
        assert!(matches!(r.status, 200 | 400 | 413), "status {}", r.status);
        if r.status == 200 {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["response"]["allowed"], true, "never denies");
        }
    }
});
