//! Every event and metric kind the library produces while scoping real programs (curl,
//! python3's http.server, a python3 script doing file, DNS, console and socket work, a
//! small C program) validates against AppScope's published JSON schemas
//! (`compat/appscope/schemas`), and every expected kind is produced.

#[path = "events_support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Maps AppScope's schema `$id`s (https://appscope.dev/docs/schemas/...) to local files.
struct LocalSchemas(PathBuf);

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let rel = s
            .strip_prefix("https://appscope.dev/docs/schemas/")
            .ok_or_else(|| format!("unexpected schema reference {s}"))?;
        let rel = rel.split('#').next().unwrap_or(rel);
        let text = std::fs::read_to_string(self.0.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        Ok(serde_json::from_str(&text)?)
    }
}

struct Validators {
    dir: PathBuf,
    cache: BTreeMap<String, jsonschema::Validator>,
}

impl Validators {
    fn new() -> Self {
        Validators {
            dir: testkit::compat_dir().join("schemas"),
            cache: BTreeMap::new(),
        }
    }

    /// Validate `v` against `file`; returns the error messages.
    fn check(&mut self, file: &str, v: &Value) -> Result<(), String> {
        if !self.cache.contains_key(file) {
            let path = self.dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("no schema {file} for this kind: {e}"))?;
            let schema: Value = serde_json::from_str(&text).unwrap();
            let val = jsonschema::options()
                .with_retriever(LocalSchemas(self.dir.clone()))
                .build(&schema)
                .unwrap_or_else(|e| panic!("schema {file} does not compile: {e}"));
            self.cache.insert(file.to_string(), val);
        }
        let val = &self.cache[file];
        let errs: Vec<String> = val
            .iter_errors(v)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

/// The schema file and kind name for an event or NDJSON metric line.
fn kind_of(v: &Value) -> (String, String) {
    if v.get("info").is_some() && v.get("type").is_none() {
        // The runtime's process-start message.
        return ("event_start_msg.schema.json".into(), "start message".into());
    }
    if v["type"] == "metric" {
        let name = v["body"]["_metric"].as_str().unwrap_or("?").to_string();
        (
            format!("metric_{}.schema.json", name.replace('.', "_")),
            format!("metric {name}"),
        )
    } else {
        let st = v["body"]["sourcetype"].as_str().unwrap_or("?");
        let src = v["body"]["source"].as_str().unwrap_or("?");
        let name = match st {
            "console" => "console".to_string(),
            "file" => "file".to_string(),
            _ => src.to_string(),
        };
        (
            format!("event_{}.schema.json", name.replace('.', "_")),
            format!("event {name}"),
        )
    }
}

fn compile_c(dir: &Path) -> PathBuf {
    let src = dir.join("prog.c");
    std::fs::write(
        &src,
        r#"
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(void) {
    char buf[64];
    int fd = open("c.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0) return 1;
    if (write(fd, "0123456789", 10) != 10) return 2;
    lseek(fd, 2, SEEK_SET);
    if (read(fd, buf, 4) != 4) return 3;
    close(fd);
    struct stat st;
    stat("c.txt", &st);
    FILE *f = fopen("c-app.log", "w");
    fputs("log line from C\n", f);
    fclose(f);
    /* A DNS query to the local resolver port (nothing answers; loopback only). */
    unsigned char q[] = {0x12,0x34,1,0,0,1,0,0,0,0,0,0,
                         7,'e','x','a','m','p','l','e',3,'c','o','m',0,0,1,0,1};
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a; memset(&a, 0, sizeof a);
    a.sin_family = AF_INET; a.sin_port = htons(53); a.sin_addr.s_addr = htonl(0x7f000001);
    sendto(u, q, sizeof q, 0, (struct sockaddr *)&a, sizeof a);
    close(u);
    unlink("c.txt");
    const char *msg = "hello from C\n";
    write(1, msg, strlen(msg));
    return 0;
}
"#,
    )
    .unwrap();
    let out = dir.join("prog");
    let st = std::process::Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc failed");
    out
}

const PY_WORK: &str = r#"
import os, socket, sys
with open('app.log', 'w') as f:
    f.write('hello log\n')
with open('data.txt', 'w') as f:
    f.write('x' * 100)
with open('data.txt') as f:
    f.seek(10)
    f.read()
os.stat('data.txt')
try:
    os.stat('does-not-exist')
except OSError:
    pass
socket.getaddrinfo('localhost', 80)
s = socket.socket()
try:
    s.connect(('127.0.0.1', int(sys.argv[1])))
except OSError:
    pass
s.close()
os.unlink('data.txt')
print('console line', flush=True)
"#;

#[test]
fn every_produced_event_and_metric_validates_against_appscope_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "<html>hello</html>\n").unwrap();

    // 1. curl -> python3 http.server, both scoped, NDJSON metrics.
    let port = free_port();
    let mut srv = http_server(
        dir,
        &root,
        port,
        "srv",
        &[("SCOPE_METRIC_FORMAT", "ndjson")],
    );
    let mut curl = scoped("curl", dir, "curl");
    curl.env("SCOPE_METRIC_FORMAT", "ndjson").args([
        "-s",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/index.html"),
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/missing"),
    ]);
    let out = run(curl, Duration::from_secs(30));
    assert!(out.status.success(), "curl failed: {out:?}");
    let mut post = scoped("curl", dir, "curl2");
    post.env("SCOPE_METRIC_FORMAT", "ndjson").args([
        "-s",
        "-o",
        "/dev/null",
        "--data",
        "a=1&b=2",
        &format!("http://127.0.0.1:{port}/post"),
    ]);
    let out = run(post, Duration::from_secs(30));
    assert!(out.status.success(), "curl --data failed: {out:?}");
    // Let the server report a period, then stop it cleanly (its exit flush runs too).
    std::thread::sleep(Duration::from_millis(1500));
    srv.stop(Duration::from_secs(10));

    // 2. python3 doing file, DNS, socket and console work at verbosity 9.
    let closed = free_port();
    std::fs::write(dir.join("work.py"), PY_WORK).unwrap();
    let mut py = scoped(PY, dir, "py");
    py.env("SCOPE_METRIC_FORMAT", "ndjson")
        .env("SCOPE_METRIC_VERBOSITY", "9")
        .arg("work.py")
        .arg(closed.to_string());
    let out = run(py, Duration::from_secs(30));
    assert!(out.status.success(), "python3 failed: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "console line\n",
        "scoped output must be unchanged"
    );

    // 3. Rate limiting: many console lines with a tiny SCOPE_EVENT_MAXEPS -> notice.
    let mut noisy = scoped(PY, dir, "noisy");
    noisy
        .env("SCOPE_EVENT_MAXEPS", "5")
        .env("SCOPE_METRIC_FORMAT", "ndjson")
        .args([
            "-c",
            "import sys\nfor i in range(200): print(i, flush=True)",
        ]);
    let out = run(noisy, Duration::from_secs(30));
    assert!(out.status.success());

    // 4. A small C program.
    let prog = compile_c(dir);
    let mut c = scoped(prog.to_str().unwrap(), dir, "c");
    c.env("SCOPE_METRIC_FORMAT", "ndjson");
    let out = run(c, Duration::from_secs(30));
    assert!(out.status.success(), "C program failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from C\n");

    // Validate everything produced.
    let mut v = Validators::new();
    let mut produced = BTreeSet::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for tag in ["srv", "curl", "curl2", "py", "noisy", "c"] {
        for file in [format!("{tag}.events"), format!("{tag}.metrics")] {
            for line in json_lines(&dir.join(&file)) {
                total += 1;
                let (schema, kind) = kind_of(&line);
                if let Err(e) = v.check(&schema, &line)
                    && failures.len() < 20
                {
                    failures.push(format!("{file}: {kind}: {e}\n    {line}"));
                }
                produced.insert(kind);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} lines failed validation:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let expected_events = [
        "fs.open",
        "fs.close",
        "fs.delete",
        "net.open",
        "net.close",
        "http.req",
        "http.resp",
        "dns.req",
        "console",
        "file",
        "notice",
    ];
    let expected_metrics = [
        "proc.start",
        "proc.cpu",
        "proc.cpu_perc",
        "proc.mem",
        "proc.thread",
        "proc.fd",
        "proc.child",
        "fs.open",
        "fs.close",
        "fs.read",
        "fs.write",
        "fs.seek",
        "fs.stat",
        "fs.duration",
        "fs.error",
        "net.open",
        "net.close",
        "net.rx",
        "net.tx",
        "net.tcp",
        "net.udp",
        "net.duration",
        "net.error",
        "net.port",
        "dns.req",
        "http.req",
        "http.duration.client",
        "http.duration.server",
        "http.req.content_length",
        "http.resp.content_length",
    ];
    let missing: Vec<String> = expected_events
        .iter()
        .map(|k| format!("event {k}"))
        .chain(expected_metrics.iter().map(|k| format!("metric {k}")))
        .filter(|k| !produced.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "kinds never produced: {missing:?}\nproduced: {produced:?}"
    );
    eprintln!("validated {total} lines of {} kinds", produced.len());
}
