//! `scope`: AppScope troubleshooting on one Linux host (local mode), and `kubectl scope`
//! (cluster mode, handed to `appscope_operator::kubectl`) when invoked as `kubectl-scope`
//! or with `--k8s`.

mod agent;
mod commands;
mod run;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit codes (documented in docs/reference/cli.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    /// The process does not exist or is not scoped.
    pub const NOT_FOUND: i32 = 3;
    /// Timed out waiting for the library.
    pub const TIMEOUT: i32 = 4;
    /// The library rejected some settings.
    pub const REJECTED: i32 = 5;
}

#[derive(Parser, Debug)]
#[command(
    name = "scope",
    version,
    about = "AppScope troubleshooting: run scoped programs, inspect and reconfigure them live, snapshot any process, collect crash reports",
    after_help = "Cluster mode: run as `kubectl scope ...` (or `scope --k8s ...`)."
)]
pub struct Cli {
    /// Machine-readable JSON output.
    #[arg(short, long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a command with libscope.so preloaded, in a per-run history directory.
    Run(run::RunArgs),
    /// List processes and whether they are scoped.
    Ps {
        /// Show unscoped processes too.
        #[arg(short, long)]
        all: bool,
    },
    /// Show the config in effect, transport status and last command result of a process.
    Inspect {
        /// Host pid.
        pid: i32,
    },
    /// Change the config of a running scoped process (writes a command file).
    Update(commands::UpdateArgs),
    /// Capture debug information about any running process (scoped or not).
    Snapshot(commands::SnapshotArgs),
    /// Crash reports: list (default), show one, print its directory.
    Crashes(commands::CrashesArgs),
    /// The node agent without Kubernetes: collect crash bundles, serve /metrics.
    Agent(agent::AgentArgs),
}

/// `~/.scope` (or `$SCOPE_HOME_DIR`).
pub fn scope_home() -> PathBuf {
    if let Some(d) = std::env::var_os("SCOPE_HOME_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".scope")
}

/// Is this invocation cluster mode? (pure)
pub fn is_cluster_mode(args: &[OsString]) -> bool {
    let argv0 = args
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    argv0 == "kubectl-scope"
        || argv0.starts_with("kubectl-scope")
        || args.iter().skip(1).any(|a| a == "--k8s")
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if is_cluster_mode(&args) {
        std::process::exit(appscope_operator::kubectl::run(args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCOPE_CLI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scope: {e:#}");
            commands::exit_code_for(&e)
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_detection() {
        let v = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(is_cluster_mode(&v(&["/usr/local/bin/kubectl-scope", "ps"])));
        assert!(is_cluster_mode(&v(&["scope", "--k8s", "ps"])));
        assert!(!is_cluster_mode(&v(&["scope", "ps"])));
        assert!(!is_cluster_mode(&v(&["scope", "run", "--", "echo", "k8s"])));
    }
}
