//! `--certs self` against a mocked API server (tower-test, kube-rs controller-rs style):
//! every request the webhook makes is asserted, in order, with its body.

use std::sync::Arc;
use std::time::Duration;

use appscope_webhook::selfcert::{self, CertAction, SelfCertConfig};
use appscope_webhook::tls::{self, CertStore};
use base64::Engine as _;
use http::{Method, Request, Response};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "appscope-system";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/appscope-system/leases";
const SECRETS: &str = "/api/v1/namespaces/appscope-system/secrets";
const MWC: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/appscope-webhook";

fn client() -> (kube::Client, ApiServerVerifier) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, NS), ApiServerVerifier(handle))
}

fn cfg(identity: &str) -> SelfCertConfig {
    SelfCertConfig::new(NS, identity)
}

fn not_found(kind: &str, name: &str) -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound",
               "details": {"name": name, "kind": kind}, "code": 404}),
    )
}

struct ApiServerVerifier(Handle);

impl ApiServerVerifier {
    /// Takes the next request, checks method and path (query ignored), replies.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        reply: impl FnOnce(Option<Value>) -> (u16, Value),
    ) -> Option<Value> {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("client gone before {method} {path}"));
        assert_eq!(req.method(), method, "method of {}", req.uri());
        assert_eq!(req.uri().path(), path);
        let ct = req
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).unwrap())
        };
        if method == Method::PATCH {
            assert_eq!(ct.as_deref(), Some("application/json-patch+json"));
        }
        let (status, resp) = reply(body.clone());
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&resp).unwrap()))
                .unwrap(),
        );
        body
    }

    /// Asserts the client made no further request.
    async fn done(mut self) {
        if let Ok(Some((req, _))) =
            tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await
        {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

fn mwc(ca: Option<&str>) -> Value {
    let cc = |svc: &str, path: &str| {
        let mut c = json!({"service": {"name": svc, "namespace": NS, "path": path, "port": 443}});
        if let Some(ca) = ca {
            c["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(ca));
        }
        c
    };
    let hook = |name: &str, c: Value| {
        json!({"name": name, "clientConfig": c, "admissionReviewVersions": ["v1"], "sideEffects": "None",
               "failurePolicy": "Ignore", "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]})
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "appscope-webhook", "resourceVersion": "77"},
        "webhooks": [
            hook("pods.appscope.dev", cc("appscope-webhook", "/mutate")),
            hook("namespaces.appscope.dev", cc("appscope-webhook", "/mutate/namespace")),
            hook("other.example.com", json!({"service": {"name": "other", "namespace": "other", "path": "/x"}})),
        ]
    })
}

fn b64(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// A real TLS handshake: a server with the Secret's cert, a client trusting ca.crt,
/// connecting with the Service's in-cluster name.
async fn handshake(ca_pem: &str, crt: &str, key: &str, server_name: &str) -> Result<(), String> {
    tls::install_default_provider();
    let store = Arc::new(CertStore::new());
    store
        .load_pem(crt.as_bytes(), key.as_bytes())
        .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(store).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cc = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cc));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "timeout".to_string())
        .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
    srv.abort();
    res
}

#[tokio::test]
async fn fresh_cluster_leader_creates_secret_and_patches_ca_bundle() {
    let (client, mut api) = client();
    let c = cfg("webhook-7d9f-abcde");
    // Real time: the certificates are checked in real TLS handshakes below.
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let cert_until = (now + SignedDuration::from_hours(365 * 24)).to_string();
    let ca_until = (now + SignedDuration::from_hours(3650 * 24)).to_string();
    let now_prefix = now.to_string().trim_end_matches('Z').to_string();
    let verifier = tokio::spawn(async move {
        api.expect(
            Method::GET,
            &format!("{LEASE}/appscope-webhook-certs"),
            |_| not_found("leases", "appscope-webhook-certs"),
        )
        .await;
        let lease = api
            .expect(Method::POST, LEASE, |b| (201, b.unwrap()))
            .await
            .unwrap();
        assert_eq!(lease["metadata"]["name"], "appscope-webhook-certs");
        assert_eq!(lease["spec"]["holderIdentity"], "webhook-7d9f-abcde");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 30);
        assert!(
            lease["spec"]["renewTime"]
                .as_str()
                .unwrap()
                .starts_with(&now_prefix),
            "{lease}"
        );
        api.expect(
            Method::GET,
            &format!("{SECRETS}/appscope-webhook-tls"),
            |_| not_found("secrets", "appscope-webhook-tls"),
        )
        .await;
        let secret = api
            .expect(Method::POST, SECRETS, |b| {
                let mut s = b.unwrap();
                s["metadata"]["resourceVersion"] = json!("1");
                (201, s)
            })
            .await
            .unwrap();
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(secret["metadata"]["name"], "appscope-webhook-tls");
        assert!(
            secret["metadata"].get("resourceVersion").is_none(),
            "create carries no resourceVersion"
        );
        let ann = &secret["metadata"]["annotations"];
        assert_eq!(ann["appscope.dev/cert-not-after"], json!(cert_until));
        assert_eq!(ann["appscope.dev/ca-not-after"], json!(ca_until));
        let ca = b64(&secret["data"]["ca.crt"]);
        let patch = api.expect(Method::GET, MWC, |_| (200, mwc(None))).await;
        assert!(patch.is_none());
        let ops = api
            .expect(Method::PATCH, MWC, |_| (200, mwc(Some("patched"))))
            .await
            .unwrap();
        // Only our two webhooks, each guarded by a test on its name.
        let ops = ops.as_array().unwrap();
        assert_eq!(ops.len(), 4, "{ops:?}");
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/webhooks/0/name", "value": "pods.appscope.dev"})
        );
        assert_eq!(ops[1]["op"], "add");
        assert_eq!(ops[1]["path"], "/webhooks/0/clientConfig/caBundle");
        assert_eq!(
            b64(&ops[1]["value"]),
            ca,
            "caBundle is the Secret's CA, base64"
        );
        assert_eq!(
            ops[2],
            json!({"op": "test", "path": "/webhooks/1/name", "value": "namespaces.appscope.dev"})
        );
        assert_eq!(ops[3]["path"], "/webhooks/1/clientConfig/caBundle");
        api.done().await;
        secret
    });
    let got = selfcert::reconcile_once(&client, &c, now).await.unwrap();
    drop(client);
    let secret = verifier.await.unwrap();
    let (crt, key) = got.expect("serving cert returned");
    assert_eq!(crt, b64(&secret["data"]["tls.crt"]));
    assert_eq!(key, b64(&secret["data"]["tls.key"]));
    // The API server, trusting caBundle, accepts the cert for the Service's DNS name.
    let ca = b64(&secret["data"]["ca.crt"]);
    handshake(&ca, &crt, &key, "appscope-webhook.appscope-system.svc")
        .await
        .unwrap();
    handshake(
        &ca,
        &crt,
        &key,
        "appscope-webhook.appscope-system.svc.cluster.local",
    )
    .await
    .unwrap();
    assert!(
        handshake(&ca, &crt, &key, "evil.example.com")
            .await
            .is_err(),
        "only our names"
    );
    let other = selfcert::generate(&c, now).unwrap();
    assert!(
        handshake(
            &other.ca_crt,
            &crt,
            &key,
            "appscope-webhook.appscope-system.svc"
        )
        .await
        .is_err(),
        "another CA does not verify it"
    );
}

#[tokio::test]
async fn follower_only_reads_the_secret() {
    let (client, mut api) = client();
    let c = cfg("webhook-b");
    let now: Timestamp = "2026-11-26T08:00:00Z".parse().unwrap();
    let material = selfcert::generate(&c, now).unwrap();
    let existing = secret_json(&c, &material, "42");
    let verifier = tokio::spawn(async move {
        api.expect(
            Method::GET,
            &format!("{LEASE}/appscope-webhook-certs"),
            |_| {
                (
                    200,
                    lease_json("webhook-a", "2026-11-26T07:59:50.000000Z", 3),
                )
            },
        )
        .await;
        api.expect(
            Method::GET,
            &format!("{SECRETS}/appscope-webhook-tls"),
            |_| (200, existing),
        )
        .await;
        api.done().await;
    });
    let got = selfcert::reconcile_once(&client, &c, now).await.unwrap();
    drop(client);
    verifier.await.unwrap();
    assert_eq!(got, Some((material.tls_crt, material.tls_key)));
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_expiring_cert_renewed_with_same_ca() {
    let (client, mut api) = client();
    let c = cfg("webhook-b");
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let issued = now - SignedDuration::from_hours(360 * 24);
    let expired_renew = (now - SignedDuration::from_secs(60)).to_string();
    let cert_until = (now + SignedDuration::from_hours(365 * 24)).to_string();
    let material = selfcert::generate(&c, issued).unwrap();
    assert_eq!(
        selfcert::plan(&c, Some(&material), Some(&c.dns_names().join(",")), now),
        CertAction::RenewServing
    );
    let existing = secret_json(&c, &material, "42");
    let old = material.clone();
    let verifier = tokio::spawn(async move {
        api.expect(
            Method::GET,
            &format!("{LEASE}/appscope-webhook-certs"),
            |_| {
                // webhook-a stopped renewing a minute ago: the lease (30 s) has expired.
                (200, lease_json("webhook-a", &expired_renew, 3))
            },
        )
        .await;
        let lease = api
            .expect(
                Method::PUT,
                &format!("{LEASE}/appscope-webhook-certs"),
                |b| (200, b.unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "webhook-b");
        assert_eq!(lease["spec"]["leaseTransitions"], 4);
        assert_eq!(
            lease["metadata"]["resourceVersion"], "9",
            "optimistic concurrency on the lease"
        );
        api.expect(
            Method::GET,
            &format!("{SECRETS}/appscope-webhook-tls"),
            |_| (200, existing),
        )
        .await;
        let put = api
            .expect(
                Method::PUT,
                &format!("{SECRETS}/appscope-webhook-tls"),
                |b| (200, b.unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(put["metadata"]["resourceVersion"], "42");
        assert_eq!(b64(&put["data"]["ca.crt"]), old.ca_crt, "CA kept");
        assert_eq!(b64(&put["data"]["ca.key"]), old.ca_key, "CA key kept");
        assert_ne!(
            b64(&put["data"]["tls.crt"]),
            old.tls_crt,
            "serving cert renewed"
        );
        assert_eq!(
            put["metadata"]["annotations"]["appscope.dev/cert-not-after"],
            json!(cert_until)
        );
        // caBundle already right: no patch.
        let ca = old.ca_crt.clone();
        api.expect(Method::GET, MWC, move |_| (200, mwc(Some(&ca))))
            .await;
        api.done().await;
        put
    });
    let got = selfcert::reconcile_once(&client, &c, now).await.unwrap();
    drop(client);
    let put = verifier.await.unwrap();
    let (crt, key) = got.unwrap();
    assert_eq!(crt, b64(&put["data"]["tls.crt"]));
    // The renewed cert chains to the unchanged CA, so the caBundle stays valid.
    handshake(
        &material.ca_crt,
        &crt,
        &key,
        "appscope-webhook.appscope-system.svc",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn lease_conflict_means_not_leader_and_api_errors_are_reported() {
    let (client, mut api) = client();
    let c = cfg("webhook-b");
    let now: Timestamp = "2026-11-26T08:00:00Z".parse().unwrap();
    let verifier = tokio::spawn(async move {
        api.expect(
            Method::GET,
            &format!("{LEASE}/appscope-webhook-certs"),
            |_| not_found("leases", "appscope-webhook-certs"),
        )
        .await;
        api.expect(Method::POST, LEASE, |_| {
            (409, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists",
                         "message": "leases \"appscope-webhook-certs\" already exists", "code": 409}))
        })
        .await;
        api.expect(Method::GET, &format!("{SECRETS}/appscope-webhook-tls"), |_| {
            (403, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                         "message": "secrets \"appscope-webhook-tls\" is forbidden", "code": 403}))
        })
        .await;
        api.done().await;
    });
    let err = selfcert::reconcile_once(&client, &c, now)
        .await
        .unwrap_err();
    drop(client);
    verifier.await.unwrap();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[test]
fn plan_rotates_ca_before_it_expires_and_on_dns_change() {
    let c = cfg("x");
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let m = selfcert::generate(&c, t0).unwrap();
    let dns = c.dns_names().join(",");
    assert_eq!(selfcert::plan(&c, None, None, t0), CertAction::RotateCa);
    assert_eq!(
        selfcert::plan(&c, Some(&m), Some(&dns), t0),
        CertAction::Keep
    );
    assert_eq!(
        selfcert::plan(&c, Some(&m), Some("other"), t0),
        CertAction::RenewServing
    );
    let late = m
        .ca_not_after
        .checked_sub(SignedDuration::from_hours(24))
        .unwrap();
    assert_eq!(
        selfcert::plan(&c, Some(&m), Some(&dns), late),
        CertAction::RotateCa
    );
}

fn secret_json(c: &SelfCertConfig, m: &selfcert::CertMaterial, rv: &str) -> Value {
    let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": c.secret_name, "namespace": NS, "resourceVersion": rv,
                     "annotations": {"appscope.dev/ca-not-after": m.ca_not_after.to_string(),
                                     "appscope.dev/cert-not-after": m.cert_not_after.to_string(),
                                     "appscope.dev/cert-dns-names": c.dns_names().join(",")}},
        "data": {"ca.crt": e(&m.ca_crt), "ca.key": e(&m.ca_key), "tls.crt": e(&m.tls_crt), "tls.key": e(&m.tls_key)}
    })
}

fn lease_json(holder: &str, renew: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "appscope-webhook-certs", "namespace": NS, "resourceVersion": "9"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30, "acquireTime": "2026-11-26T07:00:00.000000Z",
                 "renewTime": renew, "leaseTransitions": transitions}
    })
}
