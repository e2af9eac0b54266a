//! Writers that `write` never sees and the positional vectored calls:
//! - console events from `printf`/`fprintf`/`fputs`/`putchar` (libc's stdio flushes with an
//!   internal write the library cannot interpose), with the exact text, exactly once, in
//!   C programs built with and without `_FORTIFY_SOURCE` (`__printf_chk`), and from
//!   python3's `print` (which writes with `write`);
//! - `preadv`/`pwritev`/`preadv2`/`pwritev2` counted as file and socket I/O.

#[path = "events_support.rs"]
mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);

fn cc(dir: &Path, name: &str, src: &str, opt: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let bin = dir.join(name);
    let out = Command::new("cc")
        .arg(opt)
        .arg("-o")
        .arg(&bin)
        .arg(&c)
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "cc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn console(evs: &[Value]) -> Vec<(String, String)> {
    evs.iter()
        .filter(|e| e["body"]["sourcetype"] == "console")
        .map(|e| {
            (
                e["body"]["source"].as_str().unwrap_or("").to_string(),
                e["body"]["data"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

const STDIO_C: &str = r#"
#include <stdio.h>
#include <errno.h>
int main(void) {
    printf("hello %d from printf\n", 42);
    fflush(stdout);
    fputs("fputs to stderr\n", stderr);
    fprintf(stderr, "fprintf %s %.1f %d %d %d %d %d %d\n", "err", 2.5, 1, 2, 3, 4, 5, 6);
    errno = ENOENT;
    fprintf(stderr, "errno says %m\n");
    putchar('Z');
    putchar('\n');
    printf("%s\n", "last line");
    return 3;
}
"#;

#[test]
fn stdio_output_gives_console_events_with_the_exact_text_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for opt in ["-O0", "-O2"] {
        let bin = cc(dir, &format!("stdio{opt}"), STDIO_C, opt);
        let plain = run(Command::new(&bin), T);
        let tag = format!("stdio{opt}");
        let mut c = scoped(bin.to_str().unwrap(), dir, &tag);
        c.env("SCOPE_METRIC_ENABLE", "false")
            .env("SCOPE_EVENT_FS", "false")
            .env("SCOPE_EVENT_NET", "false");
        let out = run(c, T);
        assert_eq!(out.stdout, plain.stdout, "{opt}: stdout unchanged");
        assert_eq!(out.stderr, plain.stderr, "{opt}: stderr unchanged");
        assert_eq!(out.status.code(), Some(3));
        let got = console(&json_lines(&dir.join(format!("{tag}.events"))));
        let want: Vec<(String, String)> = [
            ("stdout", "hello 42 from printf"),
            ("stderr", "fputs to stderr"),
            ("stderr", "fprintf err 2.5 1 2 3 4 5 6"),
            ("stderr", "errno says No such file or directory"),
            ("stdout", "Z"),
            ("stdout", "last line"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want, "{opt}: console events, in order, each once");
    }
}

#[test]
fn python_print_gives_one_console_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = scoped(PY, dir, "py");
    c.env("SCOPE_METRIC_ENABLE", "false")
        .env("SCOPE_EVENT_FS", "false")
        .args([
            "-c",
            "import sys; print('py line', flush=True); sys.stderr.write('py err\\n')",
        ]);
    let out = run(c, T);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "py line\n");
    let got = console(&json_lines(&dir.join("py.events")));
    assert_eq!(
        got,
        vec![
            ("stdout".to_string(), "py line".to_string()),
            ("stderr".to_string(), "py err".to_string())
        ]
    );
}

const VECTORED_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0) return 1;
    struct iovec w[2] = {{"abc", 3}, {"defg", 4}};
    if (pwritev(fd, w, 2, 0) != 7) return 2;
    struct iovec w2[1] = {{"xyz", 3}};
    if (pwritev2(fd, w2, 1, 7, 0) != 3) return 3;
    char a[4], b[6];
    struct iovec r[2] = {{a, 4}, {b, 6}};
    if (preadv(fd, r, 2, 0) != 10) return 4;
    char c[5];
    struct iovec r2[1] = {{c, 5}};
    if (preadv2(fd, r2, 1, 5, 0) != 5) return 5;
    close(fd);
    printf("read back %.4s%.6s and %.5s\n", a, b, c);
    fflush(stdout);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[2]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) return 6;
    struct iovec n[2] = {{"hello ", 6}, {"vectored", 8}};
    if (pwritev2(s, n, 2, -1, 0) != 14) return 7;
    char back[3];
    struct iovec nr[1] = {{back, 3}};
    if (preadv2(s, nr, 1, -1, 0) != 3) return 8;
    close(s);
    return 0;
}
"#;

#[test]
fn preadv_pwritev_count_as_file_and_socket_io() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bin = cc(dir, "vectored", VECTORED_C, "-O1");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 14];
        s.read_exact(&mut buf).unwrap();
        use std::io::Write;
        s.write_all(b"ok!").unwrap();
        buf
    });
    let data = dir.join("data.bin");
    let mut c = scoped(bin.to_str().unwrap(), dir, "vec");
    c.env("SCOPE_METRIC_VERBOSITY", "9")
        .arg(&data)
        .arg(port.to_string());
    let out = run(c, T);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "read back abcdefgxyz and fgxyz\n"
    );
    assert_eq!(&server.join().unwrap(), b"hello vectored");
    assert_eq!(std::fs::read(&data).unwrap(), b"abcdefgxyz");

    let evs = json_lines(&dir.join("vec.events"));
    let close = events_of(&evs, "fs.close")
        .into_iter()
        .find(|e| e["body"]["data"]["file"] == data.to_str().unwrap())
        .unwrap_or_else(|| panic!("fs.close of the data file: {evs:#?}"));
    let d = &close["body"]["data"];
    assert_eq!(d["file_write_bytes"], 10, "{d}");
    assert_eq!(d["file_write_ops"], 2, "{d}");
    assert_eq!(d["file_read_bytes"], 15, "{d}");
    assert_eq!(d["file_read_ops"], 2, "{d}");
    let net = events_of(&evs, "net.close")
        .into_iter()
        .find(|e| e["body"]["data"]["net_peer_port"] == port)
        .unwrap_or_else(|| panic!("net.close of the connection: {evs:#?}"));
    assert_eq!(net["body"]["data"]["net_bytes_sent"], 14);
    assert_eq!(net["body"]["data"]["net_bytes_recv"], 3);

    // Verbosity 9: one metric line per call, named by its function.
    let metrics = lines(&dir.join("vec.metrics"));
    let ops = |name: &str| -> Vec<(String, f64)> {
        metrics
            .iter()
            .filter_map(|l| parse_statsd(l))
            .filter(|(n, _, _, _)| n == name)
            .filter_map(|(_, v, _, t)| Some((t.get("op")?.clone(), v)))
            .collect()
    };
    let w = ops("fs.write");
    assert!(w.contains(&("pwritev".into(), 7.0)), "fs.write: {w:?}");
    assert!(w.contains(&("pwritev2".into(), 3.0)), "fs.write: {w:?}");
    let r = ops("fs.read");
    assert!(r.contains(&("preadv".into(), 10.0)), "fs.read: {r:?}");
    assert!(r.contains(&("preadv2".into(), 5.0)), "fs.read: {r:?}");
    let tx: Vec<f64> = metrics
        .iter()
        .filter_map(|l| parse_statsd(l))
        .filter(|(n, _, _, t)| n == "net.tx" && t.get("remotep") == Some(&port.to_string()))
        .map(|(_, v, _, _)| v)
        .collect();
    assert_eq!(tx, vec![14.0], "net.tx of the pwritev2 on the socket");
}
