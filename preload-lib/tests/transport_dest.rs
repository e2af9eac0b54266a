//! Transports against real listeners: tcp, udp, unix (path and abstract), file,
//! file://stdout, and an unreachable destination. The process-start message is the
//! first line on every events connection and validates against AppScope's schema.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);

/// Runs `sleep` under the library with events going to `dest`; returns the pid.
fn run_sleep(env: &Env, dest: &str, secs: &str) -> (u32, std::process::Output) {
    let mut c = env.scoped("/bin/sleep");
    c.arg(secs)
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", dest);
    let child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let g = Guarded(child);
    let mut g = g;
    let out = {
        let end = std::time::Instant::now() + T;
        loop {
            if g.0.try_wait().unwrap().is_some() {
                break;
            }
            assert!(std::time::Instant::now() < end, "sleep did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut s = Vec::new();
        use std::io::Read;
        g.0.stdout.take().unwrap().read_to_end(&mut s).unwrap();
        std::process::Output {
            status: g.0.wait().unwrap(),
            stdout: s,
            stderr: Vec::new(),
        }
    };
    (pid, out)
}

fn check_start(lines: &Lines, pid: u32) {
    lines.wait("start message", T, |l| !l.is_empty());
    let first: serde_json::Value =
        serde_json::from_str(&lines.all()[0]).expect("first line is JSON");
    assert_eq!(first["info"]["process"]["pid"], pid, "{first}");
    assert_eq!(first["info"]["process"]["procname"], "sleep");
    assert_eq!(first["format"], "ndjson");
    assert!(first["info"]["configuration"]["current"]["libscope"]["snapshot"].is_object());
    assert_valid_start_msg(&first);
}

#[test]
fn stream_and_datagram_destinations_get_the_start_message() {
    for col in [
        Collector::tcp(),
        Collector::udp(),
        Collector::unix(false),
        Collector::unix(true),
    ] {
        let env = Env::new();
        let (pid, out) = run_sleep(&env, &col.addr, "1.3");
        assert!(out.status.success());
        check_start(&col.lines, pid);
        let st = env.wait_status(pid, "events connected", T, |s| {
            iface(s, "events")["connected"] == true
        });
        let ev = iface(&st, "events");
        assert_eq!(ev["config"], col.addr.as_str());
        assert!(ev["sent"].as_u64().unwrap() >= 1, "{ev}");
    }
}

#[test]
fn file_destination_appends_and_stdout_goes_to_the_app_stdout() {
    let env = Env::new();
    let f = env.path().join("events.ndjson");
    std::fs::write(&f, "existing\n").unwrap();
    let (pid, out) = run_sleep(&env, &format!("file://{}", f.display()), "0.3");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&f).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "existing", "appends, never truncates");
    let start: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(start["info"]["process"]["pid"], pid);
    assert_valid_start_msg(&start);

    let (pid, out) = run_sleep(&env, "file://stdout", "0.3");
    let text = String::from_utf8(out.stdout).unwrap();
    let start: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line on stdout")).unwrap();
    assert_eq!(start["info"]["process"]["pid"], pid);
}

#[test]
fn unreachable_destination_costs_the_app_nothing_and_is_counted() {
    let env = Env::new();
    let port = closed_port();
    let mut c = env.scoped("/usr/bin/python3");
    c.args(["-c", "import time\nfor i in range(5):\n  print(i)\n  open('/etc/hostname').read()\n  time.sleep(0.5)\nprint('end')"])
        .env("SCOPE_METRIC_ENABLE", "true")
        .env("SCOPE_METRIC_DEST", format!("tcp://127.0.0.1:{port}"))
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", format!("tcp://127.0.0.1:{port}"));
    let t0 = std::time::Instant::now();
    let child = Guarded::spawn({
        c.stdout(std::process::Stdio::piped());
        c
    });
    let pid = child.pid();
    let st = env.wait_status(pid, "metrics dropped while destination is down", T, |s| {
        let m = iface(s, "metrics");
        m["connected"] == false
            && m["attempts"].as_u64().unwrap_or(0) >= 1
            && m["dropped"].as_u64().unwrap_or(0) >= 1
    });
    let m = iface(&st, "metrics");
    assert!(
        m["failure_details"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "failure details name the cause: {m}"
    );
    let mut child = child;
    let status = child.0.wait().unwrap();
    let mut out = String::new();
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success());
    assert_eq!(out, "0\n1\n2\n3\n4\nend\n");
    // 5 x 0.5 s of sleeping: the app must not have been slowed by connection attempts.
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_collector_that_comes_up_later_is_connected_with_backoff() {
    let env = Env::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let mut c = env.scoped("/bin/sleep");
    c.arg("15")
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", format!("tcp://127.0.0.1:{port}"));
    let child = Guarded::spawn(c);
    let pid = child.pid();
    env.wait_status(pid, "a failed attempt", T, |s| {
        iface(s, "events")["attempts"].as_u64().unwrap_or(0) >= 1
    });
    // Now the collector appears on the same port.
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    l.set_nonblocking(false).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            let mut line = String::new();
            use std::io::BufRead;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = std::io::BufReader::new(s);
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the connection and the listener open until the test ends.
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(l);
        }
    });
    struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let _stop = StopOnDrop(stop);
    let line = rx
        .recv_timeout(Duration::from_secs(40))
        .expect("reconnected within the backoff");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["info"]["process"]["pid"], pid);
    env.wait_status(pid, "events connected", T, |s| {
        iface(s, "events")["connected"] == true && iface(s, "events")["attempts"] == 0
    });
}
