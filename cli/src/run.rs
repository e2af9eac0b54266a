//! `scope run`: preload libscope.so into a command, with a per-run history directory.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Write a backtrace when the process crashes (SCOPE_SNAPSHOT_BACKTRACE=true).
    #[arg(short = 'b', long)]
    pub backtrace: bool,
    /// Write a core file when the process crashes (SCOPE_SNAPSHOT_COREDUMP=true).
    #[arg(short = 'd', long)]
    pub coredump: bool,
    /// Metrics destination URL (default: file <run dir>/metrics.json).
    #[arg(long, value_name = "URL")]
    pub metricdest: Option<String>,
    /// Events destination URL (default: file <run dir>/events.json).
    #[arg(long, value_name = "URL")]
    pub eventdest: Option<String>,
    /// Summary period in seconds (SCOPE_SUMMARY_PERIOD): how often status is written
    /// and command files are read.
    #[arg(long, value_name = "SECS")]
    pub period: Option<u64>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// Where to find libscope.so: `$SCOPE_LIB_PATH` (file or dir), next to the binary, or
/// the install prefix `<bin>/../lib/appscope/libscope.so`.
pub fn find_libscope(env_path: Option<&Path>, exe: Option<&Path>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(p) = env_path {
        let c = if p.is_dir() {
            p.join("libscope.so")
        } else {
            p.to_path_buf()
        };
        if c.is_file() {
            return Ok(c);
        }
        bail!("SCOPE_LIB_PATH={} does not name libscope.so", p.display());
    }
    if let Some(dir) = exe.and_then(|e| e.parent()) {
        for c in [
            dir.join("libscope.so"),
            dir.join("../lib/appscope/libscope.so"),
        ] {
            if c.is_file() {
                return Ok(c.canonicalize().unwrap_or(c));
            }
            tried.push(c);
        }
    }
    for c in [
        "/usr/local/lib/appscope/libscope.so",
        "/usr/lib/appscope/libscope.so",
    ] {
        let c = PathBuf::from(c);
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c);
    }
    bail!(
        "libscope.so not found (tried {}); set SCOPE_LIB_PATH, or build it with `cargo build -p preload-lib`",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// File name of the musl build, installed next to `libscope.so`.
pub const MUSL_LIB_NAME: &str = "libscope-musl.so";

/// What `scope run` does with a program.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Preload this build.
    Preload(PathBuf),
    /// Run it unscoped; the one-line notice to print says why.
    Unscoped(String),
}

/// The library build that fits a program of `linkage`, or why none does (pure). `glibc` is
/// the `libscope.so` found (or the error finding it); the musl build is looked for next to
/// it by `musl_exists`.
pub fn choose_library(
    prog: &str,
    linkage: &node_agent::elf::Linkage,
    glibc: Result<&Path, String>,
    musl_exists: impl Fn(&Path) -> bool,
) -> Result<Choice> {
    use node_agent::elf::Linkage;
    Ok(match linkage {
        Linkage::Glibc(_) => Choice::Preload(glibc.map_err(anyhow::Error::msg)?.into()),
        Linkage::Musl(_) => {
            let glibc = glibc.map_err(anyhow::Error::msg)?;
            let musl = glibc.with_file_name(MUSL_LIB_NAME);
            if musl_exists(&musl) {
                Choice::Preload(musl)
            } else {
                Choice::Unscoped(format!(
                    "scope: {prog} is a musl program and {} is not installed: running it unscoped",
                    musl.display()
                ))
            }
        }
        other => Choice::Unscoped(format!(
            "scope: {prog}: {}: running it unscoped (no build of libscope.so can load into it)",
            other.unscoped_reason().unwrap_or_default()
        )),
    })
}

/// Name of a run directory (pure): `<procname>_<id>_<pid>_<unix time>`.
pub fn run_dir_name(procname: &str, id: u64, pid: u32, time: i64) -> String {
    let name = node_agent::store::sanitize(procname);
    format!("{name}_{id}_{pid}_{time}")
}

/// Next run id: one more than the largest id in the history dir.
fn next_id(history: &Path) -> u64 {
    std::fs::read_dir(history)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    let parts: Vec<&str> = n.rsplitn(4, '_').collect();
                    parts.get(2)?.parse::<u64>().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
        + 1
}

/// Environment for the scoped command (pure).
pub fn scope_env(
    a: &RunArgs,
    dir: &Path,
    lib: &Path,
    existing_preload: Option<&str>,
) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let preload = match existing_preload.filter(|s| !s.trim().is_empty()) {
        Some(e) => format!("{}:{e}", lib.display()),
        None => lib.display().to_string(),
    };
    v.push(("LD_PRELOAD".into(), preload));
    v.push((
        "SCOPE_CMD_DIR".into(),
        dir.join("cmd").display().to_string(),
    ));
    v.push((
        "SCOPE_STATUS_DIR".into(),
        dir.join("status").display().to_string(),
    ));
    v.push((
        "SCOPE_SNAPSHOT_DIR".into(),
        dir.join("crash").display().to_string(),
    ));
    v.push((
        "SCOPE_METRIC_DEST".into(),
        a.metricdest
            .clone()
            .unwrap_or_else(|| format!("file://{}", dir.join("metrics.json").display())),
    ));
    v.push((
        "SCOPE_EVENT_DEST".into(),
        a.eventdest
            .clone()
            .unwrap_or_else(|| format!("file://{}", dir.join("events.json").display())),
    ));
    // AppScope enables the Cribl (edge) transport by default, which would override the
    // event and metric destinations; `scope run` sends them where it says.
    v.push(("SCOPE_CRIBL_ENABLE".into(), "false".into()));
    if a.backtrace {
        v.push(("SCOPE_SNAPSHOT_BACKTRACE".into(), "true".into()));
    }
    if a.coredump {
        v.push(("SCOPE_SNAPSHOT_COREDUMP".into(), "true".into()));
    }
    if let Some(p) = a.period {
        v.push(("SCOPE_SUMMARY_PERIOD".into(), p.to_string()));
    }
    v
}

/// Shell convention for an exit status (pure): code, or 128 + signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub fn run(a: RunArgs, json: bool) -> Result<i32> {
    let exe = std::env::current_exe().ok();
    let found = find_libscope(
        std::env::var_os("SCOPE_LIB_PATH").as_deref().map(Path::new),
        exe.as_deref(),
    );
    let path_var = std::env::var("PATH").ok();
    let program = node_agent::elf::resolve_in_path(
        &a.cmd[0],
        path_var.as_deref(),
        node_agent::elf::is_executable,
    );
    let choice = match &program {
        // Not found: spawning it reports the error.
        None => Choice::Preload(found?),
        Some(p) => match node_agent::elf::program_linkage(p) {
            Ok(linkage) => choose_library(
                &a.cmd[0],
                &linkage,
                found.as_deref().map_err(|e| e.to_string()),
                |p| p.is_file(),
            )?,
            Err(e) => Choice::Unscoped(format!(
                "scope: cannot read {} to tell its libc ({e}): running it unscoped",
                p.display()
            )),
        },
    };
    let lib = match choice {
        Choice::Preload(lib) => lib,
        Choice::Unscoped(notice) => {
            eprintln!("{notice}");
            let mut child = Command::new(&a.cmd[0])
                .args(&a.cmd[1..])
                .spawn()
                .with_context(|| format!("starting {}", a.cmd[0]))?;
            let status =
                ignore_terminal_signals(|| child.wait()).context("waiting for the command")?;
            return Ok(exit_code(status));
        }
    };
    let history = crate::scope_home().join("history");
    std::fs::create_dir_all(&history).with_context(|| format!("creating {}", history.display()))?;
    let procname = Path::new(&a.cmd[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = history.join(run_dir_name(
        &procname,
        next_id(&history),
        std::process::id(),
        chrono::Utc::now().timestamp(),
    ));
    for sub in ["cmd", "status", "crash"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let env = scope_env(&a, &dir, &lib, std::env::var("LD_PRELOAD").ok().as_deref());
    let mut cmd = Command::new(&a.cmd[0]);
    cmd.args(&a.cmd[1..]).envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", a.cmd[0]))?;
    let info = serde_json::json!({
        "cmd": a.cmd, "pid": child.id(), "libscope": lib, "dir": dir,
        "started": chrono::Utc::now().to_rfc3339(), "env": env.iter().cloned().collect::<std::collections::BTreeMap<_,_>>(),
    });
    let _ = std::fs::write(
        dir.join("info.json"),
        serde_json::to_vec_pretty(&info).unwrap_or_default(),
    );
    eprintln!(
        "scope: running {} (pid {}) with {}",
        a.cmd.join(" "),
        child.id(),
        lib.display()
    );
    eprintln!("scope: run directory {}", dir.display());
    // Let Ctrl-C and Ctrl-\ reach the child only; we report its exit.
    let status = ignore_terminal_signals(|| child.wait()).context("waiting for the command")?;
    let code = exit_code(status);
    let bundles = node_agent::bundle::scan_crashes(&dir.join("crash"));
    if json {
        let out = serde_json::json!({"dir": dir, "exit_code": code, "signal": status.signal(),
            "crash_bundles": bundles.iter().map(|b| b.key.clone()).collect::<Vec<_>>()});
        eprintln!("{out}");
    } else {
        let how = match status.signal() {
            Some(s) => format!("killed by {}", node_agent::bundle::signal_name(s)),
            None => format!("exited with {code}"),
        };
        eprintln!("scope: {} {how}", a.cmd[0]);
        if a.eventdest.is_none() || a.metricdest.is_none() {
            eprintln!(
                "scope: events and metrics: {}/{{events,metrics}}.json",
                dir.display()
            );
        }
        if !bundles.is_empty() {
            eprintln!(
                "scope: {} crash bundle(s) in {}: see `scope crashes show`",
                bundles.len(),
                dir.join("crash").display()
            );
        }
    }
    Ok(code)
}

/// Run `f` with SIGINT and SIGQUIT caught (and dropped) in this process, so Ctrl-C
/// reaches only the child and we still report its exit. Uses tokio's signal handling
/// (safe code); the child was spawned before, with default dispositions.
fn ignore_terminal_signals<T>(f: impl FnOnce() -> T) -> T {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok();
    let _guards = rt.as_ref().map(|rt| {
        let _e = rt.enter();
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::quit()).ok(),
        )
    });
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_for_run() {
        let a = RunArgs {
            backtrace: true,
            coredump: false,
            metricdest: Some("udp://127.0.0.1:8125".into()),
            eventdest: None,
            period: Some(1),
            cmd: vec!["x".into()],
        };
        let env = scope_env(
            &a,
            Path::new("/h/r"),
            Path::new("/l/libscope.so"),
            Some("/other.so"),
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("LD_PRELOAD").unwrap(), "/l/libscope.so:/other.so");
        assert_eq!(get("SCOPE_STATUS_DIR").unwrap(), "/h/r/status");
        assert_eq!(get("SCOPE_EVENT_DEST").unwrap(), "file:///h/r/events.json");
        assert_eq!(get("SCOPE_METRIC_DEST").unwrap(), "udp://127.0.0.1:8125");
        assert_eq!(get("SCOPE_SNAPSHOT_BACKTRACE").unwrap(), "true");
        assert_eq!(get("SCOPE_SNAPSHOT_COREDUMP"), None);
        assert_eq!(get("SCOPE_SUMMARY_PERIOD").unwrap(), "1");
        assert_eq!(
            run_dir_name("my prog", 3, 42, 1700000000),
            "my_prog_3_42_1700000000"
        );
    }

    #[test]
    fn library_by_linkage() {
        use node_agent::elf::Linkage;
        let glibc = Path::new("/opt/lib/libscope.so");
        let yes = |_: &Path| true;
        let no = |_: &Path| false;
        let pick = |l: &Linkage, exists: &dyn Fn(&Path) -> bool| {
            choose_library("prog", l, Ok(glibc), exists).unwrap()
        };
        assert_eq!(
            pick(&Linkage::Glibc("/lib64/ld-linux-x86-64.so.2".into()), &yes),
            Choice::Preload(glibc.into())
        );
        assert_eq!(
            pick(&Linkage::Musl("/lib/ld-musl-x86_64.so.1".into()), &yes),
            Choice::Preload("/opt/lib/libscope-musl.so".into())
        );
        // Never the glibc build for a musl program: unscoped when the musl one is missing.
        let Choice::Unscoped(n) = pick(&Linkage::Musl("/lib/ld-musl-x86_64.so.1".into()), &no)
        else {
            panic!("musl without its build must run unscoped");
        };
        assert!(
            n.contains("musl program") && n.contains("libscope-musl.so"),
            "{n}"
        );
        let Choice::Unscoped(n) = pick(&Linkage::Static, &yes) else {
            panic!("static runs unscoped");
        };
        assert_eq!(
            n,
            "scope: prog: static binary: running it unscoped (no build of libscope.so can load into it)"
        );
        assert!(!n.contains('\n'), "one line");
        assert!(matches!(
            pick(&Linkage::Unsupported("interpreter /lib/ld-uClibc.so.0".into()), &yes),
            Choice::Unscoped(n) if n.contains("libc not supported")
        ));
        // A static program needs no library at all; a glibc one reports the lookup error.
        assert!(choose_library("p", &Linkage::Static, Err("not found".into()), yes).is_ok());
        assert!(
            choose_library(
                "p",
                &Linkage::Glibc("x".into()),
                Err("not found".into()),
                yes
            )
            .is_err()
        );
    }

    #[test]
    fn lib_lookup() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir_all(d.path().join("lib/appscope")).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        assert!(
            find_libscope(None, Some(&bin.join("scope"))).is_err()
                || Path::new("/usr/lib/appscope/libscope.so").exists()
        );
        std::fs::write(d.path().join("lib/appscope/libscope.so"), b"x").unwrap();
        let got = find_libscope(None, Some(&bin.join("scope"))).unwrap();
        assert!(got.ends_with("lib/appscope/libscope.so"));
        assert!(find_libscope(Some(&d.path().join("nope")), None).is_err());
        assert_eq!(
            find_libscope(Some(&d.path().join("lib/appscope")), None).unwrap(),
            d.path().join("lib/appscope/libscope.so")
        );
    }
}
