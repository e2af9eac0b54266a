//! The library's descriptors are not the application's business: a program that lists
//! its descriptors sees exactly those it would see without the library, one that closes
//! "all the others" gets what it would get without the library and the library keeps
//! sending, and one that closes ours behind the interposers' back (raw system calls,
//! the numbers then reused) never gets our data in its files: the library reconnects.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// Events over TCP and metrics over UDP: the library holds two sockets.
fn scoped_with_sockets(env: &Env, program: &str, ev: &Collector, me: &Collector) -> Command {
    let mut c = env.scoped(program);
    c.env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", &ev.addr)
        .env("SCOPE_EVENT_FS", "true")
        .env("SCOPE_METRIC_ENABLE", "true")
        .env("SCOPE_METRIC_DEST", &me.addr)
        .env("SCOPE_METRIC_FORMAT", "ndjson");
    c
}

const LIST_CHILD: &str = r#"
import os, subprocess, sys
r, w = os.pipe()
code = "import os; print(sorted(int(x) for x in os.listdir('/proc/self/fd')), sorted(int(x) for x in os.listdir('/dev/fd')))"
out = subprocess.run([sys.executable, "-c", code], close_fds=True, pass_fds=(w,), capture_output=True, text=True)
print("passed", w, "child sees", out.stdout.strip(), out.stderr.strip())
print("parent sees", sorted(int(x) for x in os.listdir("/proc/self/fd")))
"#;

#[test]
fn a_close_fds_child_sees_exactly_the_descriptors_it_was_given() {
    let env = Env::new();
    let ev = Collector::tcp();
    let me = Collector::udp();
    let py = "/usr/bin/python3";
    let mut plain = Command::new(py);
    plain.args(["-c", LIST_CHILD]);
    let plain = run(plain, T);
    let mut c = scoped_with_sockets(&env, py, &ev, &me);
    c.args(["-c", LIST_CHILD]);
    // The library is connected before the listings: the sockets exist.
    let scoped = run(c, T);
    let text = String::from_utf8_lossy(&scoped.stdout);
    assert_eq!(text, String::from_utf8_lossy(&plain.stdout));
    assert!(scoped.status.success(), "{scoped:?}");
    assert!(text.contains("child sees [0, 1, 2, 3, 4]"), "{text}");
    // The scoped parent and child did run the library: both sent their start message.
    ev.lines.wait("two start messages", T, |_| {
        ev.lines.start_messages().len() >= 2
    });
}

const CLOSER: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void line(const char *s) { if (write(1, s, strlen(s)) < 0) _exit(9); }

/* Descriptors the program itself finds open above 2, listing /proc/self/fd. */
static int listed(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) > 2 && atoi(e->d_name) != dirfd(d)) n++;
    closedir(d);
    return n;
}

static void touch(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
    char b[256];
    const char *mode = argv[1];
    /* Wait until the test says the library is connected. */
    line("started\n");
    if (fgets(b, sizeof b, stdin) == NULL) return 3;
    snprintf(b, sizeof b, "open above 2: %d\n", listed());
    line(b);
    if (!strcmp(mode, "close-all")) {
        /* A daemon's "close every other descriptor": a loop, closefrom, close_range. */
        int ok = 0;
        for (int fd = 3; fd < 4096; fd++) if (close(fd) == 0) ok++;
        closefrom(3);
        int rc = close_range(3, ~0U, 0);
        snprintf(b, sizeof b, "closed %d, close_range %d, fcntl on 960: %d\n", ok, rc,
                 fcntl(960, F_GETFD));
        line(b);
    } else {
        /* Behind the interposers: raw close_range, then the numbers reused for a file. */
        int rc = (int)syscall(SYS_close_range, 3, ~0U, 0);
        int f = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        long base = (long)rl.rlim_cur - 64;
        if (base > 960) base = 960;
        for (long fd = base; fd < base + 8; fd++) syscall(SYS_dup3, f, (int)fd, 0);
        if (write(f, "app-data\n", 9) != 9) return 4;
        snprintf(b, sizeof b, "raw close_range %d\n", rc);
        line(b);
    }
    /* Still recorded after that. */
    touch(argv[2]);
    line("marker opened\n");
    /* Until the test has seen what it waits for. */
    if (fgets(b, sizeof b, stdin) == NULL) return 5;
    return 0;
}
"#;

/// Runs the closer in `mode`, scoped or not; returns its stdout.
fn closer(
    bin: &Path,
    mode: &str,
    marker: &Path,
    file: &Path,
    scoped: Option<(&Env, &Collector, &Collector)>,
) -> String {
    let mut c = match scoped {
        Some((env, ev, me)) => scoped_with_sockets(env, bin.to_str().unwrap(), ev, me),
        None => Command::new(bin),
    };
    std::fs::write(marker, "marker").unwrap();
    c.args([mode, marker.to_str().unwrap(), file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Guarded(c.spawn().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut text = String::new();
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    assert_eq!(l, "started\n");
    if let Some((_, ev, me)) = scoped {
        // Both sockets are in use: the start message and a metrics period arrived.
        ev.lines.wait("start message", T, |_| {
            !ev.lines.start_messages().is_empty()
        });
        me.lines.wait("a metric", T, |l| !l.is_empty());
    }
    stdin.write_all(b"go\n").unwrap();
    loop {
        l.clear();
        if out.read_line(&mut l).unwrap() == 0 {
            break;
        }
        text.push_str(&l);
        if l == "marker opened\n" {
            break;
        }
    }
    if let Some((_, ev, me)) = scoped {
        let file = format!("\"file\":\"{}\"", marker.display());
        ev.lines
            .wait("the open event after the closing", T, |lines| {
                lines
                    .iter()
                    .any(|l| l.contains("\"op\":\"open") && l.contains(&file))
            });
        let before = me.lines.all().len();
        me.lines
            .wait("metrics after the closing", T, |l| l.len() > before);
    }
    stdin.write_all(b"done\n").unwrap();
    drop(stdin);
    let st = child.0.wait().unwrap();
    assert!(st.success(), "{mode}: {st:?}");
    text
}

#[test]
fn a_daemon_closing_every_other_descriptor_keeps_being_recorded() {
    let env = Env::new();
    let bin = cc(env.path(), "closer", CLOSER, &[]);
    let (ev, me) = (Collector::tcp(), Collector::udp());
    let marker = env.path().join("marker-close-all");
    let file = env.path().join("unused");
    let plain = closer(&bin, "close-all", &marker, &file, None);
    let scoped = closer(&bin, "close-all", &marker, &file, Some((&env, &ev, &me)));
    assert_eq!(scoped, plain);
    // (The counts include descriptors the test harness leaves open, the same in both.)
    assert!(
        plain.contains(", close_range 0, fcntl on 960: -1"),
        "{plain}"
    );
    // The library's sockets were never closed: one connection for the whole run.
    assert_eq!(*ev.conns.lock().unwrap(), 1);
}

#[test]
fn descriptors_closed_and_reused_behind_the_library_get_none_of_its_data() {
    let env = Env::new();
    let bin = cc(env.path(), "closer", CLOSER, &[]);
    let (ev, me) = (Collector::tcp(), Collector::udp());
    let marker = env.path().join("marker-raw");
    let file = env.path().join("app-file");
    let plain = closer(&bin, "raw", &marker, &file, None);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "app-data\n");
    let scoped = closer(&bin, "raw", &marker, &file, Some((&env, &ev, &me)));
    assert_eq!(scoped, plain);
    // Nothing of the library's went into the application's file on the reused numbers.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "app-data\n");
    // The events link was reconnected.
    assert!(*ev.conns.lock().unwrap() >= 2);
}

/// With events and metrics off (crash capture only) and nothing logged, the library holds
/// no descriptor at all: seen from outside, `/proc/PID/fd` of a scoped process lists what
/// the same unscoped process has.
#[test]
fn crash_capture_only_holds_no_descriptor() {
    let env = Env::new();
    // An empty config file: nothing to complain about, so nothing is logged.
    let yml = env.path().join("scope.yml");
    std::fs::write(&yml, "").unwrap();
    let fds_of = |c: &mut Command, wait: &dyn Fn(u32)| {
        c.arg("30").stdout(Stdio::null()).stderr(Stdio::null());
        let g = Guarded::spawn(std::mem::replace(c, Command::new("true")));
        wait(g.pid());
        let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{}/fd", g.pid()))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect();
        fds.sort();
        fds
    };
    let mut scoped = env.scoped("/bin/sleep");
    scoped
        .env("SCOPE_CONF_PATH", &yml)
        .env("SCOPE_SNAPSHOT_BACKTRACE", "true")
        .env("SCOPE_SNAPSHOT_COREDUMP", "true");
    // The library has started and done its first period's work.
    let with = fds_of(&mut scoped, &|pid| {
        env.wait_status(pid, "first status", T, |_| true);
    });
    // The same program once it runs (after exec: the spawn's own pipe is closed then).
    let without = fds_of(&mut Command::new("/bin/sleep"), &|pid| {
        let end = std::time::Instant::now() + T;
        while std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_or(true, |c| !c.starts_with(b"/bin/sleep\0"))
        {
            assert!(std::time::Instant::now() < end, "sleep did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    assert_eq!(with, without);
    assert!(!env.log_path().exists(), "the library log was opened");
}
