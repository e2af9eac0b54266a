//! `scope run` picks the library build from the program's ELF interpreter: a musl program
//! gets `libscope-musl.so` and is scoped (library in its maps, status file written), a
//! static program runs unscoped with a one-line notice; both behave exactly as unscoped.
//! `scope ps` / `scope inspect` say why a static process is not scoped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Prints to stdout and stderr, writes which libscope build is mapped into it to
/// `argv[1]`, sleeps 1.5 s (the status file is written each 1 s period), exits 5.
const PROBE_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("hello from the probe\n");
    fprintf(stderr, "probe stderr line\n");
    char line[1024], found[1024] = "none";
    FILE *m = fopen("/proc/self/maps", "r");
    while (m && fgets(line, sizeof line, m)) {
        char *p = strstr(line, "/libscope");
        if (p) { snprintf(found, sizeof found, "%s", strrchr(line, '/') + 1); found[strcspn(found, "\n")] = 0; break; }
    }
    if (m) fclose(m);
    FILE *o = fopen(argv[1], "w");
    fprintf(o, "mapped: %s\n", found);
    fclose(o);
    usleep(1500 * 1000);
    return 5;
}
"#;

fn compile(compiler: &str, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let src = dir.join("probe.c");
    std::fs::write(&src, PROBE_C).unwrap();
    let bin = dir.join(name);
    let out = Command::new(compiler)
        .args(extra)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .expect(compiler);
    assert!(out.status.success(), "{compiler}: {}", text(&out.stderr));
    bin
}

/// stderr without `scope run`'s own `scope: ` lines.
fn program_stderr(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("scope: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `bin` plainly and through `scope run --period 1`; asserts the same stdout, exit
/// code and program stderr; returns (scope's output, what the probe found mapped).
fn compare(s: &Scope, bin: &Path, dir: &Path) -> (Output, String) {
    let plain = Command::new(bin)
        .arg(dir.join("plain.txt"))
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("plain.txt")).unwrap(),
        "mapped: none\n"
    );
    let scoped = s.run(&[
        "run",
        "--period",
        "1",
        "--",
        bin.to_str().unwrap(),
        dir.join("scoped.txt").to_str().unwrap(),
    ]);
    assert_eq!(text(&scoped.stdout), text(&plain.stdout));
    assert_eq!(scoped.status.code(), plain.status.code());
    assert_eq!(plain.status.code(), Some(5));
    assert_eq!(
        program_stderr(&scoped),
        text(&plain.stderr),
        "no loader message: {}",
        text(&scoped.stderr)
    );
    let mapped = std::fs::read_to_string(dir.join("scoped.txt")).unwrap();
    (scoped, mapped)
}

#[test]
fn musl_program_gets_the_musl_build_and_is_scoped() {
    // Builds target/debug/libscope-musl.so next to the libscope.so that Scope::scoped uses.
    let musl = testkit::libscope_musl_path();
    let s = Scope::scoped();
    assert_eq!(
        s.lib.as_ref().unwrap().with_file_name("libscope-musl.so"),
        musl
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("musl-gcc", dir.path(), "probe-musl", &[]);
    let (out, mapped) = compare(&s, &bin, dir.path());
    assert_eq!(
        mapped,
        "mapped: libscope-musl.so\n",
        "{}",
        text(&out.stderr)
    );
    // The library ran: its status file is in the run directory.
    let run_dir = std::fs::read_dir(s.history())
        .unwrap()
        .flatten()
        .next()
        .expect("a run directory")
        .path();
    let statuses: Vec<_> = std::fs::read_dir(run_dir.join("status"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(
        statuses.len(),
        1,
        "one status file in {}",
        run_dir.display()
    );
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(statuses[0].path()).unwrap()).unwrap();
    assert_eq!(st["procname"], "probe-musl", "{st}");
    assert!(
        text(&out.stderr).contains("libscope-musl.so"),
        "scope run names the build it preloads: {}",
        text(&out.stderr)
    );
}

#[test]
fn glibc_program_gets_the_glibc_build() {
    let s = Scope::scoped();
    let dir = tempfile::tempdir().unwrap();
    let bin = compile("cc", dir.path(), "probe-glibc", &[]);
    let (_, mapped) = compare(&s, &bin, dir.path());
    assert_eq!(mapped, "mapped: libscope.so\n");
}

fn static_case(compiler: &str) {
    let s = Scope::scoped();
    let dir = tempfile::tempdir().unwrap();
    let bin = compile(compiler, dir.path(), "probe-static", &["-static"]);
    let (out, mapped) = compare(&s, &bin, dir.path());
    assert_eq!(mapped, "mapped: none\n");
    let notices: Vec<String> = text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("scope: "))
        .map(str::to_string)
        .collect();
    assert_eq!(notices.len(), 1, "one notice: {notices:?}");
    assert!(
        notices[0].contains("static binary") && notices[0].contains("unscoped"),
        "{notices:?}"
    );
    assert!(
        !s.history().exists() || std::fs::read_dir(s.history()).unwrap().next().is_none(),
        "no run directory for an unscoped run"
    );
}

#[test]
fn static_glibc_program_runs_unscoped_with_a_notice() {
    static_case("cc");
}

#[test]
fn static_musl_program_runs_unscoped_with_a_notice() {
    static_case("musl-gcc");
}

#[test]
fn ps_and_inspect_say_a_static_process_is_a_static_binary() {
    let s = Scope::new();
    // Build `scope` before starting the sleepers (the build may take longer than they sleep).
    let _ = scope_bin();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sleeper.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\nint main(void) { sleep(300); return 0; }\n",
    )
    .unwrap();
    let bin = dir.path().join("sleeper");
    let st = Command::new("cc")
        .args(["-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let p = Proc::spawn(&mut Command::new(&bin));
    let pid = p.pid();
    // The executable is readable as soon as it is exec'd; wait for the exec to happen.
    wait_for("exec of the sleeper", Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .filter(|e| e == &bin)
    });
    let mut p = p;
    let i = s.json(&["inspect", &pid.to_string()]);
    assert_eq!(
        p.0.try_wait().unwrap(),
        None,
        "the sleeper is still running: {i}"
    );
    assert_eq!(i["process"]["scoped"], false);
    assert_eq!(i["process"]["unscoped_reason"], "static binary", "{i}");
    let out = s.run(&["inspect", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("scoped:   false (static binary)"),
        "{}",
        text(&out.stdout)
    );
    let ps = s.run(&["ps", "--all"]);
    let row = text(&ps.stdout)
        .lines()
        .find(|l| l.contains(bin.to_str().unwrap()))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("sleeper in ps --all:\n{}", text(&ps.stdout)));
    assert!(row.contains("false (static binary)"), "{row}");
    // A dynamically linked unscoped process has no reason: a build would fit it.
    let sleep = Proc::spawn(Command::new("/bin/sleep").arg("300"));
    let spid = sleep.pid();
    wait_for("exec of sleep", Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{spid}/exe"))
            .ok()
            .filter(|e| e.ends_with("sleep"))
    });
    let i = s.json(&["inspect", &spid.to_string()]);
    assert!(i["process"].get("unscoped_reason").is_none(), "{i}");
}
