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
    /// Query keys that must not be there.
    pub absent: Vec<&'static str>,
    pub content_type: Option<&'static str>,
    pub check: Box<dyn Fn(&Value) + Send>,
    pub status: u16,
    pub reply: Value,
    /// Reply body as is instead of `reply` (a watch stream: one JSON event a line).
    pub raw: Option<String>,
}

pub fn exp(method: &'static str, path: &str, status: u16, reply: Value) -> Exp {
    Exp {
        method,
        path: path.into(),
        query: vec![],
        absent: vec![],
        content_type: None,
        check: Box::new(|_| {}),
        status,
        reply,
        raw: None,
    }
}

/// A watch reply: the events, one JSON object a line, then the end of the stream.
pub fn watch_stream(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(t, o)| format!("{}\n", json!({"type": t, "object": o})))
        .collect()
}

impl Exp {
    pub fn query(mut self, k: &'static str, v: &str) -> Exp {
        self.query.push((k, v.into()));
        self
    }
    pub fn absent(mut self, k: &'static str) -> Exp {
        self.absent.push(k);
        self
    }
    pub fn raw(mut self, body: String) -> Exp {
        self.raw = Some(body);
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
    scripted_inner(script, None)
}

/// Like [`scripted`], and after the script the server fails the test on any request
/// that comes within `quiet` (the code under test must make no further calls).
pub fn scripted_then_quiet(
    script: Vec<Exp>,
    quiet: std::time::Duration,
) -> (Client, tokio::task::JoinHandle<()>) {
    scripted_inner(script, Some(quiet))
}

fn scripted_inner(
    script: Vec<Exp>,
    quiet: Option<std::time::Duration>,
) -> (Client, tokio::task::JoinHandle<()>) {
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
            for k in &e.absent {
                assert!(!q.contains_key(*k), "request {i} has {k}: {:?}", req.uri());
            }
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
            let body = match e.raw {
                Some(raw) => raw.into_bytes(),
                None => serde_json::to_vec(&e.reply).unwrap(),
            };
            send.send_response(
                Response::builder()
                    .status(e.status)
                    .body(Body::from(body))
                    .unwrap(),
            );
        }
        if let Some(quiet) = quiet
            && let Ok(Some((req, _))) = tokio::time::timeout(quiet, handle.next_request()).await
        {
            panic!(
                "unexpected request after the script: {} {}",
                req.method(),
                req.uri()
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
