//! Events from real programs: HTTP events on both sides of curl -> python3 http.server,
//! net/fs/dns/console events, the per-category switches, NAME/FIELD/VALUE filters, and the
//! SCOPE_EVENT_MAXEPS notice. Events go to TCP and file destinations the tests own.

#[path = "events_support.rs"]
mod support;

mod common;

use std::time::Duration;

use serde_json::Value;
use support::*;

fn www(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "0123456789").unwrap();
    root
}

#[test]
fn http_events_on_client_and_server_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = www(dir);
    let port = free_port();
    // The server's events go over TCP to a listener we own.
    let tcp = TcpCollector::start();
    let dest = format!("tcp://127.0.0.1:{}", tcp.port);
    let mut srv = http_server(
        dir,
        &root,
        port,
        "srv",
        &[("SCOPE_EVENT_DEST", dest.as_str())],
    );
    let mut curl = scoped("curl", dir, "curl");
    curl.args([
        "-s",
        "-A",
        "scope-test/1.0",
        &format!("http://127.0.0.1:{port}/index.html"),
    ]);
    let out = run(curl, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0123456789",
        "curl's output is unchanged"
    );

    // Client side (curl, file destination).
    let evs = json_lines(&dir.join("curl.events"));
    let req = events_of(&evs, "http.req");
    let resp = events_of(&evs, "http.resp");
    assert_eq!(req.len(), 1, "one http.req from curl: {evs:#?}");
    assert_eq!(resp.len(), 1, "one http.resp from curl");
    let d = &req[0]["body"]["data"];
    assert_eq!(d["http_method"], "GET");
    assert_eq!(d["http_target"], "/index.html");
    assert_eq!(d["http_host"], format!("127.0.0.1:{port}"));
    assert_eq!(d["http_user_agent"], "scope-test/1.0");
    assert_eq!(d["net_peer_port"], port);
    assert_eq!(d["net_peer_ip"], "127.0.0.1");
    assert_eq!(d["net_transport"], "IP.TCP");
    let client_port = d["net_host_port"].as_u64().expect("client port");
    let r = &resp[0]["body"]["data"];
    assert_eq!(r["http_status_code"], 200);
    assert_eq!(r["http_status_text"], "OK");
    assert_eq!(r["http_response_content_length"], 10);
    assert_eq!(r["http_target"], "/index.html");
    assert!(
        r["http_client_duration"].is_number(),
        "client duration: {r}"
    );
    assert_eq!(resp[0]["body"]["proc"], "curl");
    assert_eq!(resp[0]["type"], "evt");
    assert!(resp[0]["id"].as_str().unwrap().contains("curl"));
    // net.open/net.close for the connection, with byte counts.
    let close = events_of(&evs, "net.close");
    assert!(
        close
            .iter()
            .any(|e| e["body"]["data"]["net_peer_port"] == port
                && e["body"]["data"]["net_bytes_recv"].as_u64().unwrap_or(0) > 10),
        "net.close with bytes: {close:#?}"
    );
    assert!(!events_of(&evs, "net.open").is_empty());

    // Server side (python3, TCP destination).
    let ok = wait_for(Duration::from_secs(10), || {
        tcp.snapshot().iter().any(|l| l.contains("\"http.resp\""))
    });
    srv.stop(Duration::from_secs(10));
    assert!(
        ok,
        "server http.resp never arrived over TCP: {:?}",
        tcp.snapshot()
    );
    let sev: Vec<Value> = tcp
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sreq = events_of(&sev, "http.req");
    let sresp = events_of(&sev, "http.resp");
    assert_eq!(sreq.len(), 1, "{sev:#?}");
    let d = &sreq[0]["body"]["data"];
    assert_eq!(d["http_target"], "/index.html");
    assert_eq!(
        d["net_peer_port"], client_port,
        "server sees curl's port as peer"
    );
    assert_eq!(d["net_host_port"], port);
    let r = &sresp[0]["body"]["data"];
    assert_eq!(r["http_status_code"], 200);
    assert!(
        r["http_server_duration"].is_number(),
        "server duration: {r}"
    );
    assert_eq!(sresp[0]["body"]["pid"], srv.0.id());
}

#[test]
fn switches_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = www(dir);
    let port = free_port();
    let mut srv = http_server(dir, &root, port, "srv", &[]);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    // HTTP events off: no http.*, net events still there.
    let mut c = scoped("curl", dir, "off");
    c.env("SCOPE_EVENT_HTTP", "false")
        .args(["-s", "-o", "/dev/null", &url("/index.html")]);
    assert!(run(c, Duration::from_secs(30)).status.success());
    let evs = json_lines(&dir.join("off.events"));
    assert!(events_of(&evs, "http.req").is_empty() && events_of(&evs, "http.resp").is_empty());
    assert!(
        !events_of(&evs, "net.open").is_empty(),
        "net events stay on"
    );

    // Field/value filter: only events with a field http_status_code matching 404.
    let mut c = scoped("curl", dir, "flt");
    c.env("SCOPE_EVENT_HTTP_FIELD", "^http_status_code$")
        .env("SCOPE_EVENT_HTTP_VALUE", "^404$")
        .args([
            "-s",
            "-o",
            "/dev/null",
            &url("/index.html"),
            "-o",
            "/dev/null",
            &url("/missing"),
        ]);
    assert!(run(c, Duration::from_secs(30)).status.success());
    let evs = json_lines(&dir.join("flt.events"));
    let http: Vec<_> = evs
        .iter()
        .filter(|e| e["body"]["sourcetype"] == "http")
        .collect();
    assert_eq!(http.len(), 1, "only the 404 response passes: {http:#?}");
    assert_eq!(http[0]["body"]["data"]["http_status_code"], 404);
    assert_eq!(http[0]["body"]["data"]["http_target"], "/missing");

    // Name filter on net events: only net.close.
    let mut c = scoped("curl", dir, "name");
    c.env("SCOPE_EVENT_NET_NAME", "^net\\.close$").args([
        "-s",
        "-o",
        "/dev/null",
        &url("/index.html"),
    ]);
    assert!(run(c, Duration::from_secs(30)).status.success());
    let evs = json_lines(&dir.join("name.events"));
    assert!(events_of(&evs, "net.open").is_empty());
    assert!(!events_of(&evs, "net.close").is_empty());

    // All events off.
    let mut c = scoped("curl", dir, "none");
    c.env("SCOPE_EVENT_ENABLE", "false")
        .args(["-s", "-o", "/dev/null", &url("/index.html")]);
    assert!(run(c, Duration::from_secs(30)).status.success());
    let evs = json_lines(&dir.join("none.events"));
    assert!(
        evs.iter()
            .all(|e| e["body"]["sourcetype"] != "net" && e["body"]["sourcetype"] != "http"),
        "{evs:#?}"
    );
    srv.stop(Duration::from_secs(10));
}

#[test]
fn fs_dns_console_and_logfile_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = r#"
import os, socket
with open('svc.log', 'w') as f:
    f.write('started ok\n')
with open('plain.txt', 'w') as f:
    f.write('not a log\n')
socket.getaddrinfo('localhost', 80)
os.unlink('plain.txt')
print('to stdout', flush=True)
"#;
    let mut py = scoped(PY, dir, "py");
    py.args(["-c", script]);
    let out = run(py, Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to stdout\n");
    let evs = json_lines(&dir.join("py.events"));
    let opens = events_of(&evs, "fs.open");
    assert!(
        opens.iter().any(|e| e["body"]["data"]["file"] == "svc.log"),
        "fs.open svc.log"
    );
    let closes = events_of(&evs, "fs.close");
    let c = closes
        .iter()
        .find(|e| e["body"]["data"]["file"] == "svc.log")
        .expect("fs.close svc.log");
    assert_eq!(c["body"]["data"]["file_write_bytes"], 11);
    assert!(
        events_of(&evs, "dns.req")
            .iter()
            .any(|e| e["body"]["data"]["domain"] == "localhost")
    );
    assert!(
        events_of(&evs, "fs.delete")
            .iter()
            .any(|e| e["body"]["data"]["file"] == "plain.txt")
    );
    let console: Vec<_> = evs
        .iter()
        .filter(|e| e["body"]["sourcetype"] == "console")
        .collect();
    assert!(console.iter().any(|e| e["body"]["source"] == "stdout" && e["body"]["data"]["message"] == "to stdout"), "{console:#?}");
    let files: Vec<_> = evs
        .iter()
        .filter(|e| e["body"]["sourcetype"] == "file")
        .collect();
    assert_eq!(
        files.len(),
        1,
        "only the .log file matches the default name filter: {files:#?}"
    );
    assert_eq!(files[0]["body"]["source"], "svc.log");
    assert_eq!(files[0]["body"]["data"]["message"], "started ok");
}

#[test]
fn maxeps_drops_and_sends_one_notice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut py = scoped(PY, dir, "noisy");
    py.env("SCOPE_EVENT_MAXEPS", "10")
        .env("SCOPE_EVENT_FS", "false")
        .env("SCOPE_EVENT_NET", "false")
        .args(["-c", "for i in range(300): print(i, flush=True)"]);
    let out = run(py, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        300,
        "the app's output is never dropped"
    );
    let evs = json_lines(&dir.join("noisy.events"));
    let console = evs
        .iter()
        .filter(|e| e["body"]["sourcetype"] == "console")
        .count();
    let notices = events_of(&evs, "notice");
    // 300 prints run well within a second or two: at most 10 per second pass.
    assert!((10..=40).contains(&console), "console events: {console}");
    assert!(
        !notices.is_empty() && notices.len() <= 4,
        "notices: {notices:#?}"
    );
    assert!(notices[0]["body"]["data"].as_str().unwrap().contains("10"));
}

/// A small HTTP/1.1 server in C: `httpd PORT N` answers N requests (one per connection)
/// with a fixed 10-byte body, then prints how many it served.
const HTTPD_C: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int port = atoi(argv[1]), n = atoi(argv[2]), one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a; memset(&a, 0, sizeof a);
    a.sin_family = AF_INET; a.sin_port = htons(port); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16)) { perror("listen"); return 1; }
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
                       "Connection: close\r\n\r\n0123456789";
    for (int i = 0; i < n; i++) {
        int c = accept(l, 0, 0);
        if (c < 0) { perror("accept"); return 1; }
        char req[4096]; size_t got = 0; ssize_t k;
        while (got < sizeof req - 1 && (k = read(c, req + got, sizeof req - 1 - got)) > 0) {
            got += k; req[got] = 0;
            if (strstr(req, "\r\n\r\n")) break;
        }
        write(c, resp, strlen(resp));
        close(c);
    }
    printf("served %d\n", n);
    return 0;
}
"#;

/// Serves three curl requests, unscoped then scoped; returns (stdout, stderr, exit code).
fn serve_three(httpd: std::process::Command, port: u16) -> (String, String, Option<i32>) {
    let mut httpd = httpd;
    httpd
        .args([port.to_string(), "3".into()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = httpd.spawn().expect("start httpd");
    let g = Guarded(child);
    wait_port(port, Duration::from_secs(15));
    // wait_port's probe connection was the first of the three.
    for path in ["/a", "/b"] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-A", "scope-test/1.0"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .env_remove("LD_PRELOAD")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0123456789");
    }
    let mut g = g;
    let start = std::time::Instant::now();
    while g.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "httpd did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = g.0.wait().unwrap();
    let stdout = read_all(g.0.stdout.take().unwrap());
    let stderr = read_all(g.0.stderr.take().unwrap());
    (stdout, stderr, status.code())
}

/// A musl-built HTTP server under the musl library build: it serves exactly as unscoped
/// (output, exit code, no loader message), and its http.req / http.resp events arrive.
#[test]
fn musl_http_server_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bin = common::cc_for(testkit::Libc::Musl, dir, "httpd", HTTPD_C, &[]);
    let plain = serve_three(std::process::Command::new(&bin), free_port());
    let tcp = TcpCollector::start();
    let mut c = scoped_with(
        &testkit::libscope_musl_path(),
        bin.to_str().unwrap(),
        dir,
        "httpd",
    );
    c.env("SCOPE_EVENT_DEST", format!("tcp://127.0.0.1:{}", tcp.port));
    let port = free_port();
    let scoped = serve_three(c, port);
    assert_eq!(scoped, plain, "the musl server behaves as unscoped");
    assert_eq!(plain.0, "served 3\n");
    let ok = wait_for(Duration::from_secs(10), || {
        tcp.snapshot()
            .iter()
            .filter(|l| l.contains("\"http.resp\""))
            .count()
            >= 2
    });
    assert!(ok, "http.resp events over TCP: {:?}", tcp.snapshot());
    let evs: Vec<Value> = tcp
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let reqs = events_of(&evs, "http.req");
    let targets: Vec<&str> = reqs
        .iter()
        .filter_map(|e| e["body"]["data"]["http_target"].as_str())
        .collect();
    assert!(
        targets.contains(&"/a") && targets.contains(&"/b"),
        "{targets:?}"
    );
    let a = reqs
        .iter()
        .find(|e| e["body"]["data"]["http_target"] == "/a")
        .unwrap();
    assert_eq!(a["body"]["data"]["http_method"], "GET");
    assert_eq!(a["body"]["data"]["http_user_agent"], "scope-test/1.0");
    assert_eq!(a["body"]["data"]["net_host_port"], port);
    assert_eq!(a["body"]["proc"], "httpd");
    // The probe connection sent no request: only /a and /b have a matched response.
    let resp = events_of(&evs, "http.resp");
    for t in ["/a", "/b"] {
        assert!(
            resp.iter().any(|e| e["body"]["data"]["http_target"] == t
                && e["body"]["data"]["http_status_code"] == 200
                && e["body"]["data"]["http_response_content_length"] == 10
                && e["body"]["data"]["http_server_duration"].is_number()),
            "http.resp for {t}: {resp:#?}"
        );
    }
}
