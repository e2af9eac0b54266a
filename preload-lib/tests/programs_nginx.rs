//! nginx (master + 2 workers, its own temp prefix, 127.0.0.1 high port) under the
//! library: same responses as unscoped, every process reports with its own pid, and a
//! graceful stop exits 0.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn conf(prefix: &Path, port: u16) -> String {
    format!(
        r#"
worker_processes 2;
daemon off;
master_process on;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp;
    proxy_temp_path {p}/tmp;
    fastcgi_temp_path {p}/tmp;
    uwsgi_temp_path {p}/tmp;
    scgi_temp_path {p}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {p}/www; }}
        location /hello {{ return 200 "hello from nginx\n"; }}
    }}
}}
"#,
        p = prefix.display()
    )
}

fn is_root() -> bool {
    // SAFETY: trivial syscall.
    unsafe { libc::geteuid() == 0 }
}

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

fn wait_port(port: u16) {
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts nginx (scoped or not), fetches the pages, stops it gracefully.
fn serve(env: &Env, scoped: bool) -> (Vec<String>, Option<i32>, u32) {
    let prefix = env.path().join(if scoped { "scoped" } else { "plain" });
    std::fs::create_dir_all(prefix.join("tmp")).unwrap();
    std::fs::create_dir_all(prefix.join("www")).unwrap();
    std::fs::write(
        prefix.join("www").join("index.html"),
        "<h1>index</h1>\n".repeat(200),
    )
    .unwrap();
    let port = closed_port();
    std::fs::write(prefix.join("nginx.conf"), conf(&prefix, port)).unwrap();
    let mut c = if scoped {
        // As root, nginx's workers run as `nobody`: let them reach the test directory,
        // and let the library create the status and command directories itself, as in
        // a fresh emptyDir.
        if is_root() {
            std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::remove_dir(env.status_dir()).unwrap();
        std::fs::remove_dir(env.cmd_dir()).unwrap();
        let mut c = env.scoped("/usr/sbin/nginx");
        c.env("SCOPE_EVENT_ENABLE", "true")
            .env(
                "SCOPE_EVENT_DEST",
                format!("file://{}", env.path().join("events.ndjson").display()),
            )
            .env("SCOPE_METRIC_ENABLE", "true")
            .env(
                "SCOPE_METRIC_DEST",
                format!("file://{}", env.path().join("metrics.txt").display()),
            );
        c
    } else {
        Command::new("/usr/sbin/nginx")
    };
    c.arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"));
    let mut g = Guarded::spawn(c);
    let master = g.pid();
    wait_port(port);
    let mut bodies = Vec::new();
    for i in 0..20 {
        bodies.push(get(port, if i % 2 == 0 { "/hello" } else { "/index.html" }));
    }
    if scoped {
        // Master and both workers report, each with its own pid.
        env.wait_status(master, "master status", Duration::from_secs(15), |_| true);
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let workers: Vec<u32> = env
                .statuses()
                .into_iter()
                .filter(|(pid, s)| {
                    *pid != master && s["ppid"] == master && s["procname"] == "nginx"
                })
                .map(|(pid, _)| pid)
                .collect();
            if workers.len() >= 2 {
                break;
            }
            assert!(Instant::now() < end, "worker status files: {workers:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mode = std::fs::metadata(env.status_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o777, "status dir mode {mode:o}");
        // Every status keeps being replaced, also by workers that dropped root after
        // their first write.
        let before = env.statuses();
        for (pid, s) in before {
            let first = s["updated"].clone();
            env.wait_status(pid, "a newer status", Duration::from_secs(10), |s| {
                s["updated"] != first
            });
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(master as i32, libc::SIGQUIT) };
    let end = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = g.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < end, "nginx did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    (bodies, code, master)
}

#[test]
fn nginx_multi_process_same_as_unscoped() {
    let env = Env::new();
    let (plain, plain_code, _) = serve(&env, false);
    let (scoped, scoped_code, _) = serve(&env, true);
    assert_eq!(plain[0], "hello from nginx\n");
    assert_eq!(scoped, plain);
    assert_eq!(scoped_code, plain_code);
    assert_eq!(scoped_code, Some(0));
}
