//! StatsD traffic detection (`metric.watch[type=statsd]`, `SCOPE_METRIC_STATSD`): StatsD
//! lines a scoped python3 sends or receives over UDP are forwarded to the library's metric
//! destination (StatsD or NDJSON) with their dimensions and the process tags; other
//! datagrams are not; the switch turns it off; the application's own traffic is unchanged.

#[path = "events_support.rs"]
mod support;

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;
use support::*;

const SENDER: &str = r#"
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for d in [b"app.requests:5|c", b"app.latency:12.5|ms|#route:api,code:200",
          b"app.queue:7|g\napp.users:3|s\n", b"hello, not statsd", b"app.bad:x|c"]:
    s.sendto(d, ("127.0.0.1", port))
s.close()
print("sent")
"#;

/// A forwarded line: name, value, type, tags in order.
type Line = (String, f64, String, Vec<(String, String)>);

fn forwarded(dir: &std::path::Path, tag: &str) -> Vec<Line> {
    lines(&dir.join(format!("{tag}.metrics")))
        .iter()
        .filter_map(|l| parse_statsd(l))
        .filter(|(n, _, _, _)| n.starts_with("app.") || n.starts_with("rx."))
        .map(|(n, v, t, tags)| (n, v, t, tags.into_iter().collect()))
        .collect()
}

#[test]
fn statsd_sent_over_udp_is_forwarded_as_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let app_server = UdpCollector::start();
    let mut py = scoped(PY, dir, "snd");
    py.env("SCOPE_EVENT_ENABLE", "false")
        .args(["-c", SENDER, &app_server.port.to_string()]);
    let out = run(py, Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    // The application's own StatsD server got exactly what it was sent.
    assert!(wait_for(Duration::from_secs(5), || app_server
        .snapshot()
        .len()
        >= 6));
    assert_eq!(
        app_server.snapshot(),
        [
            "app.requests:5|c",
            "app.latency:12.5|ms|#route:api,code:200",
            "app.queue:7|g",
            "app.users:3|s",
            "hello, not statsd",
            "app.bad:x|c"
        ]
    );
    let got = forwarded(dir, "snd");
    let names: Vec<&str> = got.iter().map(|(n, _, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["app.requests", "app.latency", "app.queue", "app.users"],
        "each StatsD line once, nothing else: {got:?}"
    );
    let lat = &got[1];
    assert_eq!((lat.1, lat.2.as_str()), (12.5, "ms"));
    let tags: std::collections::BTreeMap<_, _> = lat.3.iter().cloned().collect();
    assert_eq!(tags.get("route").map(String::as_str), Some("api"));
    assert_eq!(tags.get("code").map(String::as_str), Some("200"));
    assert_eq!(tags.get("proc").map(String::as_str), Some("python3"));
    assert!(tags.contains_key("pid") && tags.contains_key("host"));
    assert_eq!((got[2].1, got[2].2.as_str()), (7.0, "g"));
    assert_eq!(got[3].2, "s");

    // NDJSON destination format.
    let mut py = scoped(PY, dir, "nd");
    py.env("SCOPE_EVENT_ENABLE", "false")
        .env("SCOPE_METRIC_FORMAT", "ndjson")
        .args(["-c", SENDER, &app_server.port.to_string()]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    let nd: Vec<Value> = json_lines(&dir.join("nd.metrics"))
        .into_iter()
        .filter(|v| {
            v["body"]["_metric"]
                .as_str()
                .is_some_and(|n| n.starts_with("app."))
        })
        .collect();
    assert_eq!(nd.len(), 4, "{nd:#?}");
    let b = &nd[1]["body"];
    assert_eq!(b["_metric"], "app.latency");
    assert_eq!(b["_metric_type"], "timer");
    assert_eq!(b["_value"], 12.5);
    assert_eq!(b["route"], "api");
    assert_eq!(b["proc"], "python3");

    // Switched off: nothing forwarded.
    let mut py = scoped(PY, dir, "off");
    py.env("SCOPE_EVENT_ENABLE", "false")
        .env("SCOPE_METRIC_STATSD", "false")
        .args(["-c", SENDER, &app_server.port.to_string()]);
    assert!(run(py, Duration::from_secs(30)).status.success());
    assert!(
        lines(&dir.join("off.metrics"))
            .iter()
            .any(|l| l.starts_with("proc.")),
        "the library's own metrics still flow"
    );
    assert!(forwarded(dir, "off").is_empty());
}

#[test]
fn statsd_received_over_udp_is_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
data, _ = s.recvfrom(2048)
print(data.decode(), flush=True)
"#;
    let mut py = scoped(PY, dir, "rcv");
    py.env("SCOPE_EVENT_ENABLE", "false")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped());
    let mut child = Guarded(py.spawn().unwrap());
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut port = String::new();
    std::io::BufRead::read_line(&mut out, &mut port).unwrap();
    let port: u16 = port.trim().parse().unwrap();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"rx.metric:1|c|#side:recv", ("127.0.0.1", port))
        .unwrap();
    assert_eq!(read_all(out).trim(), "rx.metric:1|c|#side:recv");
    assert!(child.0.wait().unwrap().success());
    let got = forwarded(dir, "rcv");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0.as_str(), got[0].1), ("rx.metric", 1.0));
    assert!(got[0].3.contains(&("side".to_string(), "recv".to_string())));
}
