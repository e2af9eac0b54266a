//! The http watch's `headers` filter (`SCOPE_EVENT_HTTP_HEADER`): header lines matching
//! one of its regexes are added to http.req/http.resp events under their own names, the
//! `x-appscope` header always is, and nothing else is; the events stay valid against
//! AppScope's http schemas. curl against python3's http.server, both scoped.

#[path = "events_support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn schema_errors(file: &str, v: &Value) -> Vec<String> {
    let dir = testkit::compat_dir().join("schemas");
    let load = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let mut reg = jsonschema::Registry::new();
    for d in ["data", "body", "envelope"] {
        let def = load(&dir.join("definitions").join(format!("{d}.schema.json")));
        let uri = format!("https://appscope.dev/docs/schemas/definitions/{d}.schema.json");
        reg = reg.add(uri, def).unwrap();
    }
    let reg = reg.prepare().unwrap();
    let val = jsonschema::options()
        .with_registry(&reg)
        .build(&load(&dir.join(file)))
        .expect("schema compiles");
    val.iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn assert_valid(ev: &Value) {
    let file = match ev["body"]["source"].as_str() {
        Some("http.req") => "event_http_req.schema.json",
        Some("http.resp") => "event_http_resp.schema.json",
        other => panic!("not an http event: {other:?}"),
    };
    let errs = schema_errors(file, ev);
    assert!(errs.is_empty(), "{file}: {errs:?}\n{ev}");
}

fn one<'a>(evs: &'a [Value], source: &str) -> &'a Value {
    let v = events_of(evs, source);
    assert_eq!(v.len(), 1, "one {source}: {evs:#?}");
    &v[0]["body"]["data"]
}

#[test]
fn matching_headers_are_added_to_http_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "<p>hi</p>").unwrap();
    let port = free_port();
    let header_re = "(?i)^(x-req-id|content-type):";
    let mut srv = http_server(
        dir,
        &root,
        port,
        "srv",
        &[("SCOPE_EVENT_HTTP_HEADER", header_re)],
    );
    let url = format!("http://127.0.0.1:{port}/index.html");
    let curl = |tag: &str, header: Option<&str>| {
        let mut c = scoped("curl", dir, tag);
        if let Some(h) = header {
            c.env("SCOPE_EVENT_HTTP_HEADER", h);
        }
        c.args([
            "-s",
            "-H",
            "X-Req-Id: 42",
            "-H",
            "X-AppScope: tagA",
            "-H",
            "X-Other: no",
            &url,
        ]);
        let out = run(c, Duration::from_secs(30));
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "<p>hi</p>");
        json_lines(&dir.join(format!("{tag}.events")))
    };

    // With the filter: the matching request and response headers, as sent.
    let evs = curl("with", Some(header_re));
    let req = one(&evs, "http.req");
    assert_eq!(req["X-Req-Id"], "42", "{req}");
    assert_eq!(req["x-appscope"], "tagA", "{req}");
    assert!(req.get("X-Other").is_none(), "{req}");
    assert_eq!(req["http_host"], format!("127.0.0.1:{port}"));
    let resp = one(&evs, "http.resp");
    assert_eq!(resp["Content-type"], "text/html", "{resp}");
    assert!(resp.get("Server").is_none(), "{resp}");
    for e in evs.iter().filter(|e| e["body"]["sourcetype"] == "http") {
        assert_valid(e);
    }

    // Without it: only x-appscope, which AppScope always adds.
    let evs = curl("without", None);
    let req = one(&evs, "http.req");
    assert_eq!(req["x-appscope"], "tagA");
    assert!(req.get("X-Req-Id").is_none() && req.get("X-Other").is_none());
    let resp = one(&evs, "http.resp");
    assert!(resp.get("Content-type").is_none(), "{resp}");

    // The server side (python3) sees the request headers the same way.
    let ok = wait_for(Duration::from_secs(10), || {
        events_of(&json_lines(&dir.join("srv.events")), "http.req").len() >= 2
    });
    srv.stop(Duration::from_secs(10));
    assert!(ok, "server http.req events");
    let sev = json_lines(&dir.join("srv.events"));
    let sreq = events_of(&sev, "http.req");
    assert!(
        sreq.iter().all(|e| e["body"]["data"]["X-Req-Id"] == "42"
            && e["body"]["data"]["x-appscope"] == "tagA"
            && e["body"]["data"].get("X-Other").is_none()),
        "{sreq:#?}"
    );
    for e in sev.iter().filter(|e| e["body"]["sourcetype"] == "http") {
        assert_valid(e);
    }
}
