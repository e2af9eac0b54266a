//! A scripted tower-test API server for kube::Client, in the kube-rs controller-rs style:
//! each test lists the exact requests it expects (method, path, query, content type, body)
//! and the replies. Shared by the operator's API and `kubectl scope` tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::pin::pin;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// One scripted exchange.
pub struct Exp {
    pub method: &'static str,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub content_type: Option<&'static str>,
    pub check: Box<dyn Fn(&Value) + Send>,
    pub status: u16,
    pub reply: Value,
}

pub fn exp(method: &'static str, path: &str, status: u16, reply: Value) -> Exp {
    Exp {
        method,
        path: path.into(),
        query: vec![],
        content_type: None,
        check: Box::new(|_| {}),
        status,
        reply,
    }
}

impl Exp {
    pub fn query(mut self, k: &'static str, v: &str) -> Exp {
        self.query.push((k, v.into()));
        self
    }
    pub fn ctype(mut self, c: &'static str) -> Exp {
        self.content_type = Some(c);
        self
    }
    pub fn body(mut self, f: impl Fn(&Value) + Send + 'static) -> Exp {
        self.check = Box::new(f);
        self
    }
}

pub fn decode(s: &str) -> String {
    // Enough percent-decoding for label selectors (`=`, `,`, `/`).
    s.replace("%3D", "=")
        .replace("%2C", ",")
        .replace("%2F", "/")
        .replace("%3A", ":")
}

/// A client whose server plays `script` in order; anything after it gets no answer
/// and the script task reports what it saw.
pub fn scripted(script: Vec<Exp>) -> (Client, tokio::task::JoinHandle<()>) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut handle = pin!(handle);
        for (i, e) in script.into_iter().enumerate() {
            let (req, send) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("request {i} ({} {}) never came", e.method, e.path));
            assert_eq!(req.method().as_str(), e.method, "request {i} {}", req.uri());
            assert_eq!(req.uri().path(), e.path, "request {i}");
            let q: BTreeMap<String, String> = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|s| !s.is_empty())
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), decode(v))))
                .collect();
            for (k, v) in &e.query {
                assert_eq!(
                    q.get(*k),
                    Some(v),
                    "request {i} query {k} in {:?}",
                    req.uri()
                );
            }
            if let Some(ct) = e.content_type {
                assert_eq!(
                    req.headers().get("content-type").unwrap().to_str().unwrap(),
                    ct,
                    "request {i}"
                );
            }
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            (e.check)(&body);
            send.send_response(
                Response::builder()
                    .status(e.status)
                    .body(Body::from(serde_json::to_vec(&e.reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(svc, "default"), task)
}

pub async fn done(task: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("mock server timed out")
        .expect("mock server assertion failed");
}

/// A Kubernetes `Status` error body.
pub fn status_reply(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}
