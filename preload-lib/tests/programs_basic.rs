//! Real programs behave exactly as unscoped under the library (same stdout, same exit
//! code), with events and metrics on: bash, /usr/bin/python3, curl against a local
//! server, java, a multi-threaded C program, a fork/exec storm, vfork, posix_spawn,
//! daemon() and close_range/dup2 over the library's own descriptors.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

/// Runs `make()` unscoped and scoped (events + metrics to files) and compares.
fn same_as_unscoped(
    env: &Env,
    make: impl Fn(Command) -> Command,
    program: &str,
) -> std::process::Output {
    compare_with_unscoped(env, make, program).1
}

/// As [`same_as_unscoped`], for a C program built against `env.libc`: stderr is identical
/// too (no loader message), and the library really ran in the program (its start message
/// is in the events file; a library that failed to load would leave none).
fn c_program_same_as_unscoped(env: &Env, make: impl Fn(Command) -> Command, program: &Path) {
    let (plain, scoped) = compare_with_unscoped(env, make, program.to_str().unwrap());
    assert_eq!(
        String::from_utf8_lossy(&scoped.stderr),
        String::from_utf8_lossy(&plain.stderr),
        "{}: stderr differs under the {:?} library",
        program.display(),
        env.libc
    );
    let name = program.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(env.path().join("events.ndjson")).unwrap_or_default();
    assert!(
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["info"]["process"]["procname"] == name.as_str()),
        "{name}: no start message, the {:?} library did not run in it",
        env.libc
    );
}

/// Runs `make()` unscoped and scoped; returns both outputs after comparing stdout and
/// exit code.
fn compare_with_unscoped(
    env: &Env,
    make: impl Fn(Command) -> Command,
    program: &str,
) -> (std::process::Output, std::process::Output) {
    let plain = run(make(Command::new(program)), T);
    let mut c = env.scoped(program);
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
    let scoped = run(make(c), T);
    assert_eq!(
        String::from_utf8_lossy(&scoped.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "{program}: stdout differs under the library; scoped stderr: {}",
        String::from_utf8_lossy(&scoped.stderr)
    );
    assert_eq!(
        scoped.status.code(),
        plain.status.code(),
        "{program}: exit code differs"
    );
    assert!(
        !plain.stdout.is_empty(),
        "{program}: the comparison needs output"
    );
    (plain, scoped)
}

fn start_pids(env: &Env) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(env.path().join("events.ndjson")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["info"]["process"].is_object())
        .map(|v| {
            (
                v["info"]["process"]["pid"].as_u64().unwrap(),
                v["info"]["process"]["ppid"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn bash_pipeline() {
    let env = Env::new();
    same_as_unscoped(
        &env,
        |mut c| {
            c.args(["-c", "for i in $(seq 1 30); do echo line $i; done | sort -r | head -5; ls /etc >/dev/null; echo err >&2; exit 7"]);
            c
        },
        "/bin/bash",
    );
    // bash, seq, sort, head, ls: each exec'd image reported with its own pid.
    let pids = start_pids(&env);
    let distinct: std::collections::BTreeSet<u64> = pids.iter().map(|p| p.0).collect();
    assert!(
        distinct.len() >= 4,
        "start messages from the exec'd children: {pids:?}"
    );
}

#[test]
fn python3_threads_files_sockets_subprocess() {
    let env = Env::new();
    let script = r#"
import threading, socket, subprocess, os, sys, tempfile
d = tempfile.mkdtemp()
def work(n):
    p = os.path.join(d, f"f{n}")
    with open(p, "w") as f:
        f.write("x" * (n * 100))
    with open(p) as f:
        assert len(f.read()) == n * 100
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
a, b = socket.socketpair()
a.sendall(b"ping"); print(b.recv(4).decode())
print(subprocess.run(["/bin/echo", "from child"], capture_output=True, text=True).stdout.strip())
print(sorted(os.listdir(d)))
sys.exit(3)
"#;
    same_as_unscoped(
        &env,
        |mut c| {
            c.args(["-c", script]);
            c
        },
        "/usr/bin/python3",
    );
}

#[test]
fn curl_against_a_local_scoped_server() {
    let env = Env::new();
    let www = env.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from the server\n".repeat(50)).unwrap();
    let port = closed_port();
    let mut srv = env.scoped("/usr/bin/python3");
    srv.args([
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        &port.to_string(),
        "--directory",
    ])
    .arg(&www)
    .env("SCOPE_EVENT_ENABLE", "true")
    .env(
        "SCOPE_EVENT_DEST",
        format!(
            "file://{}",
            env.path().join("server-events.ndjson").display()
        ),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let _srv = Guarded::spawn(srv);
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < end, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = same_as_unscoped(
        &env,
        |mut c| {
            c.args(["-s", "-S", &url]);
            c
        },
        "/usr/bin/curl",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the server\n".repeat(50)
    );
}

#[test]
fn java_hello() {
    let env = Env::new();
    let dir = env.path().join("java");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Hello.java"),
        r#"
import java.nio.file.*;
public class Hello {
    public static void main(String[] a) throws Exception {
        Thread t = new Thread(() -> System.out.println("from a thread"));
        t.start(); t.join();
        String s = new String(Files.readAllBytes(Paths.get("/etc/hostname"))).trim();
        System.out.println("hostname length " + s.length());
        long sum = 0; for (int i = 0; i < 1000000; i++) sum += i;
        System.out.println("sum " + sum);
        System.exit(5);
    }
}
"#,
    )
    .unwrap();
    let out = Command::new("javac")
        .arg("-d")
        .arg(&dir)
        .arg(dir.join("Hello.java"))
        .output()
        .expect("javac");
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_as_unscoped(
        &env,
        |mut c| {
            c.arg("-Xshare:auto").arg("-cp").arg(&dir).arg("Hello");
            c
        },
        "/usr/bin/java",
    );
}

const THREADS_C: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
static char dir[256];
static void *work(void *arg) {
    long n = (long)arg; char p[300]; char buf[64]; long total = 0;
    snprintf(p, sizeof p, "%s/t%ld", dir, n);
    for (int r = 0; r < 50; r++) {
        int fd = open(p, O_CREAT | O_TRUNC | O_RDWR, 0600);
        for (int i = 0; i < 100; i++) { int l = snprintf(buf, sizeof buf, "%ld:%d\n", n, i); write(fd, buf, l); }
        lseek(fd, 0, SEEK_SET);
        ssize_t k; while ((k = read(fd, buf, sizeof buf)) > 0) total += k;
        close(fd);
    }
    return (void *)total;
}
int main(int argc, char **argv) {
    snprintf(dir, sizeof dir, "%s", argv[1]);
    pthread_t t[8]; long sum = 0;
    for (long i = 0; i < 8; i++) pthread_create(&t[i], 0, work, (void *)i);
    for (int i = 0; i < 8; i++) { void *r; pthread_join(t[i], &r); sum += (long)r; }
    printf("bytes %ld\n", sum);
    return 0;
}
"#;

fn multithreaded_c_program_with(libc: Libc) {
    let env = Env::for_libc(libc);
    let bin = cc_for(libc, env.path(), "threads", THREADS_C, &["-pthread"]);
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    c_program_same_as_unscoped(
        &env,
        |mut c| {
            c.arg(&work);
            c
        },
        &bin,
    );
}

#[test]
fn multithreaded_c_program() {
    multithreaded_c_program_with(Libc::Glibc);
}

#[test]
fn musl_multithreaded_c_program() {
    multithreaded_c_program_with(Libc::Musl);
}

/// Forks 60 times; every other child execs `ECHO` (a compile-time path, `/bin/echo` unless
/// set: a musl program execs a musl echo).
const STORM_C: &str = r#"
#ifndef ECHO
#define ECHO "/bin/echo"
#endif
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    int ok = 0;
    for (int i = 0; i < 60; i++) {
        fflush(stdout);
        pid_t p = fork();
        if (p == 0) {
            if (i % 2) { char n[16]; snprintf(n, sizeof n, "%d", i); execl(ECHO, "echo", "exec", n, (char *)0); _exit(127); }
            printf("forked %d\n", i); fflush(stdout); _exit(i % 7);
        }
        int st; waitpid(p, &st, 0);
        if (WIFEXITED(st)) ok += WEXITSTATUS(st);
    }
    printf("sum of exit codes %d\n", ok);
    return 0;
}
"#;

/// `echo` built against `env.libc` (`/bin/echo` for glibc), for the programs that exec one.
fn echo_for(env: &Env) -> String {
    match env.libc {
        Libc::Glibc => "/bin/echo".into(),
        Libc::Musl => cc_for(env.libc, env.path(), "echo", ECHO_C, &[])
            .display()
            .to_string(),
    }
}

const ECHO_C: &str = r#"
#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("%s%s", i > 1 ? " " : "", argv[i]);
    printf("\n");
    return 0;
}
"#;

fn fork_exec_storm_with(libc: Libc) {
    let env = Env::for_libc(libc);
    let echo = format!("-DECHO=\"{}\"", echo_for(&env));
    let bin = cc_for(libc, env.path(), "storm", STORM_C, &[&echo]);
    c_program_same_as_unscoped(&env, |c| c, &bin);
    // The exec'd echo images are scoped too: each has a start message of its own.
    let pids = start_pids(&env);
    assert!(
        pids.len() >= 31,
        "start messages of storm and 30 echos: {pids:?}"
    );
}

#[test]
fn fork_exec_storm() {
    fork_exec_storm_with(Libc::Glibc);
}

#[test]
fn musl_fork_exec_storm() {
    fork_exec_storm_with(Libc::Musl);
}

const SPAWN_C: &str = r#"
#define _GNU_SOURCE
#ifndef ECHO
#define ECHO "/bin/echo"
#endif
#include <spawn.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
extern char **environ;
int main(void) {
    fflush(stdout);
    pid_t p = vfork();
    if (p == 0) { execl(ECHO, "echo", "from vfork", (char *)0); _exit(127); }
    int st; waitpid(p, &st, 0);
    printf("vfork child exit %d\n", WEXITSTATUS(st)); fflush(stdout);
    char *argv[] = {"echo", "from posix_spawn", 0};
    posix_spawn_file_actions_t fa; posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, 0);
    if (posix_spawn(&p, ECHO, &fa, 0, argv, environ) != 0) return 2;
    waitpid(p, &st, 0);
    printf("posix_spawn child exit %d\n", WEXITSTATUS(st));
    return 0;
}
"#;

fn vfork_and_posix_spawn_with(libc: Libc) {
    let env = Env::for_libc(libc);
    let echo = format!("-DECHO=\"{}\"", echo_for(&env));
    let bin = cc_for(libc, env.path(), "spawn", SPAWN_C, &[&echo]);
    c_program_same_as_unscoped(&env, |c| c, &bin);
}

#[test]
fn vfork_and_posix_spawn() {
    vfork_and_posix_spawn_with(Libc::Glibc);
}

#[test]
fn musl_vfork_and_posix_spawn() {
    vfork_and_posix_spawn_with(Libc::Musl);
}

const DAEMON_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <fcntl.h>
int main(int argc, char **argv) {
    printf("before daemon\n"); fflush(stdout);
    if (daemon(1, 1) != 0) return 1;
    char tmp[512]; snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    usleep(1500 * 1000);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "daemon ok ppid-is-not-us=%d\n", getppid() != 0);
    fclose(f);
    rename(tmp, argv[1]);
    return 0;
}
"#;

fn wait_file(p: &Path) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            return s;
        }
        assert!(
            std::time::Instant::now() < end,
            "{} not written",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon() child's parent exits right after fork, so the child is reparented at once:
/// its `ppid` must come from the pid the library had before fork, not from getppid()
/// (which raced the parent's exit and was the cause of this test failing under load).
/// Status file and start message are polled for, bounded, not read once.
#[test]
fn daemon_child_keeps_working_and_reports_with_its_own_pid() {
    let env = Env::new();
    let bin = cc(env.path(), "daemon", DAEMON_C, &[]);
    let plain_out = env.path().join("plain.txt");
    let scoped_out = env.path().join("scoped.txt");
    let plain = run(
        {
            let mut c = Command::new(&bin);
            c.arg(&plain_out);
            c
        },
        T,
    );
    let mut c = env.scoped(bin.to_str().unwrap());
    c.arg(&scoped_out).env("SCOPE_EVENT_ENABLE", "true").env(
        "SCOPE_EVENT_DEST",
        format!("file://{}", env.path().join("events.ndjson").display()),
    );
    let parent = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let parent_pid = parent.id();
    let scoped = parent.wait_with_output().unwrap();
    assert_eq!(scoped.stdout, plain.stdout);
    assert_eq!(scoped.status.code(), plain.status.code());
    assert_eq!(wait_file(&scoped_out), wait_file(&plain_out));
    // The daemon (a forked child) wrote its own status file and start message. It writes
    // them from its own reporter thread, so wait for them (bounded) rather than reading once.
    let end = std::time::Instant::now() + T;
    let (child_pid, child) = loop {
        let statuses = env.statuses();
        if let Some((pid, s)) = statuses
            .iter()
            .find(|(pid, s)| **pid != parent_pid && s["procname"] == "daemon")
        {
            break (*pid, s.clone());
        }
        assert!(
            std::time::Instant::now() < end,
            "no status file of the daemon child within {T:?}; have {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        child["ppid"], parent_pid,
        "the daemon child names the process that forked it as its parent: {child}"
    );
    let starts = loop {
        let starts = start_pids(&env);
        if starts.iter().any(|(pid, _)| *pid == u64::from(child_pid))
            || std::time::Instant::now() >= end
        {
            break starts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        starts
            .iter()
            .any(|(pid, ppid)| *pid == u64::from(child_pid) && *ppid == u64::from(parent_pid)),
        "start message of the daemon child: {starts:?}"
    );
}

const CLOSE_RANGE_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <fcntl.h>
#include <dirent.h>
#include <sys/resource.h>
#include <linux/close_range.h>
int main(int argc, char **argv) {
    for (int i = 0; i < 5; i++) open("/etc/hostname", O_RDONLY);
    if (close_range(3, ~0U, 0) != 0) { perror("close_range"); return 1; }
    int fd = open(argv[1], O_CREAT | O_TRUNC | O_RDWR, 0600);
    printf("lowest fd after close_range: %d\n", fd);
    usleep(1200 * 1000);
    /* Take over the numbers where the library keeps its descriptors (64 below the soft
       RLIMIT_NOFILE, at most 960; they are not listed in /proc/self/fd) with dup2 and
       write the application's own data through them. */
    int n = 0;
    struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl);
    long base = (long)rl.rlim_cur - 64; if (base > 960) base = 960;
    int fds[8]; int k = 0;
    for (long x = base; x < base + 8; x++) fds[k++] = (int)x;
    for (int i = 0; i < k; i++) {
        if (dup2(fd, fds[i]) == fds[i]) { write(fds[i], "app data\n", 9); close(fds[i]); n++; }
    }
    lseek(fd, 0, SEEK_SET);
    char buf[4096]; ssize_t r = read(fd, buf, sizeof buf);
    int lines = 0; for (ssize_t i = 0; i < r; i++) lines += buf[i] == '\n';
    printf("the app file got exactly its own data: %d\n", lines == n);
    fprintf(stderr, "took over %d high fds\n", n);
    usleep(1500 * 1000);
    printf("done\n");
    return 0;
}
"#;

#[test]
fn close_range_and_dup2_over_library_fds() {
    let env = Env::new();
    let bin = cc(env.path(), "closer", CLOSE_RANGE_C, &[]);
    let col = Collector::tcp();
    let plain = run(
        {
            let mut c = Command::new(&bin);
            c.arg(env.path().join("plain.dat"));
            c
        },
        T,
    );
    let mut c = env.scoped(bin.to_str().unwrap());
    c.arg(env.path().join("scoped.dat"))
        .env("SCOPE_EVENT_ENABLE", "true")
        .env("SCOPE_EVENT_DEST", &col.addr);
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let scoped = child.wait_with_output().unwrap();
    let took = String::from_utf8_lossy(&scoped.stderr);
    assert!(
        !took.contains("took over 0 "),
        "the library's descriptors were taken over by dup2: {took}"
    );
    assert_eq!(
        String::from_utf8_lossy(&scoped.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert!(String::from_utf8_lossy(&scoped.stdout).contains("lowest fd after close_range: 3"));
    // The library kept its connection through close_range and dup2: one connection, and
    // none of the application's bytes on it.
    col.lines
        .wait("start message", Duration::from_secs(10), |l| !l.is_empty());
    assert_eq!(
        *col.conns.lock().unwrap(),
        1,
        "the events connection survived close_range"
    );
    assert!(
        !col.lines.all().iter().any(|l| l.contains("app data")),
        "application data leaked into the library's connection"
    );
    let st = env.status(pid).expect("status file");
    assert_eq!(iface(&st, "events")["attempts"], 0, "{st}");
}

/// TCP (a server thread and a client), UDP, a socketpair and a name lookup in one
/// program; prints what each exchange returned.
const SOCKETS_C: &str = r#"
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static int lfd;
static void *server(void *arg) {
    (void)arg;
    int c = accept(lfd, 0, 0);
    char buf[64]; ssize_t n = recv(c, buf, sizeof buf, 0);
    if (n > 0) { for (ssize_t i = 0; i < n; i++) buf[i] = buf[i] == 'i' ? 'o' : buf[i]; send(c, buf, n, 0); }
    close(c);
    return 0;
}
int main(void) {
    struct sockaddr_in a; socklen_t al = sizeof a;
    memset(&a, 0, sizeof a); a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4)) { perror("listen"); return 1; }
    getsockname(lfd, (struct sockaddr *)&a, &al);
    pthread_t t; pthread_create(&t, 0, server, 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
    write(s, "ping ping ping", 14);
    char buf[64] = {0}; ssize_t n = 0, k;
    while (n < 14 && (k = read(s, buf + n, sizeof buf - 1 - n)) > 0) n += k;
    printf("tcp reply: %s\n", buf);
    close(s); pthread_join(t, 0); close(lfd);

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&a, 0, sizeof a); a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    al = sizeof a; bind(u2, (struct sockaddr *)&a, sizeof a); getsockname(u2, (struct sockaddr *)&a, &al);
    sendto(u1, "datagram", 8, 0, (struct sockaddr *)&a, sizeof a);
    memset(buf, 0, sizeof buf); recvfrom(u2, buf, sizeof buf - 1, 0, 0, 0);
    printf("udp got: %s\n", buf);
    close(u1); close(u2);

    int sp[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
    write(sp[0], "pair", 4); memset(buf, 0, sizeof buf); read(sp[1], buf, 4);
    printf("socketpair got: %s\n", buf);
    close(sp[0]); close(sp[1]);

    struct addrinfo hints, *res = 0; memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET; hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo("localhost", "80", &hints, &res);
    printf("localhost resolves: %s\n", rc == 0 && res ? "yes" : gai_strerror(rc));
    if (res) freeaddrinfo(res);
    return 4;
}
"#;

fn sockets_with(libc: Libc) {
    let env = Env::for_libc(libc);
    let bin = cc_for(libc, env.path(), "sockets", SOCKETS_C, &["-pthread"]);
    c_program_same_as_unscoped(&env, |c| c, &bin);
    let evs: Vec<serde_json::Value> = std::fs::read_to_string(env.path().join("events.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |src: &str| -> Vec<&serde_json::Value> {
        evs.iter().filter(|e| e["body"]["source"] == src).collect()
    };
    // The TCP exchange, seen by the interposed socket calls on both ends: the client's
    // connection closed with 14 bytes each way.
    assert!(
        of("net.close").iter().any(|e| {
            let d = &e["body"]["data"];
            d["net_transport"] == "IP.TCP" && d["net_bytes_sent"] == 14 && d["net_bytes_recv"] == 14
        }),
        "{:?}: net.close of the TCP connection with its byte counts: {:#?}",
        libc,
        of("net.close")
    );
    assert!(!of("net.open").is_empty(), "{libc:?}: net.open events");
    // Metrics of the same program: its process metrics and the network counters.
    let metrics = std::fs::read_to_string(env.path().join("metrics.txt")).unwrap_or_default();
    let ours = |m: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with(m) && l.contains("proc:sockets"))
    };
    assert!(
        ours("proc.start") && ours("net."),
        "{libc:?}: process and net metrics of sockets:\n{metrics}"
    );
}

#[test]
fn sockets_tcp_udp_socketpair_and_lookup() {
    sockets_with(Libc::Glibc);
}

#[test]
fn musl_sockets_tcp_udp_socketpair_and_lookup() {
    sockets_with(Libc::Musl);
}
