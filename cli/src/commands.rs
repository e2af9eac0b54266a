//! Local-mode commands: ps, inspect, update, snapshot, crashes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use node_agent::Error as AgentError;
use node_agent::cmdfile::{self, Setting};
use node_agent::collector::Sources;
use node_agent::render;
use node_agent::snapshot::{Progress, SnapshotOptions};
use node_agent::store::{self, Origin, ProcContext, Store, StoredReport};
use serde::Serialize;

use crate::{Cli, Cmd, exit};

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Exit code for an error (pure).
pub fn exit_code_for(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<AgentError>() {
        Some(
            AgentError::NoSuchProcess(_) | AgentError::NotScoped(_) | AgentError::ReportNotFound(_),
        ) => exit::NOT_FOUND,
        Some(AgentError::Timeout(_)) => exit::TIMEOUT,
        Some(AgentError::Invalid(_)) => exit::USAGE,
        _ => exit::FAILURE,
    }
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    let json = cli.json;
    match cli.cmd {
        Cmd::Run(a) => crate::run::run(a, json),
        Cmd::Ps { all } => ps(all, json),
        Cmd::Inspect { pid } => inspect(pid, json),
        Cmd::Update(a) => update(a, json),
        Cmd::Snapshot(a) => snapshot(a, json),
        Cmd::Crashes(a) => crashes(a, json),
        Cmd::Agent(a) => crate::agent::agent(a, json),
    }
}

fn ps(all: bool, json: bool) -> Result<i32> {
    let list = node_agent::procs::list_processes(all);
    if json {
        print_json(&list)?;
    } else if list.is_empty() && !all {
        println!(
            "No scoped processes. (`scope ps --all` lists every process; start one with `scope run -- CMD`.)"
        );
    } else {
        print!("{}", render::ps_table(&list));
    }
    Ok(exit::OK)
}

fn inspect(pid: i32, json: bool) -> Result<i32> {
    let i = node_agent::status::inspect(pid)?;
    if json {
        print_json(&i)?;
    } else {
        print!("{}", render::inspect_text(&i));
    }
    Ok(if !i.process.scoped {
        exit::NOT_FOUND
    } else {
        exit::OK
    })
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Host pid of a scoped process.
    pub pid: i32,
    /// A setting to change, NAME=VALUE (repeatable), e.g. SCOPE_METRIC_VERBOSITY=9.
    #[arg(long = "set", value_name = "NAME=VALUE", conflicts_with = "file")]
    pub set: Vec<String>,
    /// Read NAME=VALUE lines from FILE, or from stdin with `-`.
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Wait for the library to apply the settings and report the result.
    #[arg(short, long)]
    pub wait: bool,
    /// How long --wait waits, seconds (default: two summary periods of the process).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Settings as a trailing `-` reads stdin.
    #[arg(value_name = "-", hide = true)]
    pub stdin: Option<String>,
}

fn read_settings(a: &UpdateArgs) -> Result<Vec<Setting>> {
    let mut v = Vec::new();
    for s in &a.set {
        v.push(cmdfile::parse_setting(s)?);
    }
    let stdin = a.stdin.as_deref() == Some("-") || a.file.as_deref() == Some(Path::new("-"));
    if let Some(s) = a.stdin.as_deref().filter(|s| *s != "-") {
        bail!(AgentError::Invalid(format!(
            "unexpected argument `{s}` (use --set NAME=VALUE, -f FILE or -)"
        )));
    }
    if stdin {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .context("reading settings from stdin")?;
        v.extend(cmdfile::parse_command_text(&t)?);
    } else if let Some(f) = &a.file {
        let t = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        v.extend(cmdfile::parse_command_text(&t)?);
    }
    if v.is_empty() {
        bail!(AgentError::Invalid(
            "nothing to update: give --set NAME=VALUE, -f FILE or -".into()
        ));
    }
    Ok(v)
}

#[derive(Serialize)]
struct UpdateReport {
    pid: i32,
    command_file: PathBuf,
    settings: Vec<Setting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<node_agent::status::UpdateOutcome>,
}

fn update(a: UpdateArgs, json: bool) -> Result<i32> {
    let settings = read_settings(&a)?;
    let (proc_, env) = node_agent::procs::scoped_process(a.pid)?;
    let before = SystemTime::now();
    let loc = cmdfile::write_command_file(&proc_, &env, &settings)?;
    if !json {
        println!(
            "wrote {} ({} setting(s)) for pid {}",
            loc.in_process.display(),
            settings.len(),
            a.pid
        );
        if loc.host != loc.in_process {
            println!("  (through {})", loc.host.display());
        }
    }
    let mut report = UpdateReport {
        pid: a.pid,
        command_file: loc.in_process.clone(),
        settings: settings.clone(),
        outcome: None,
    };
    if !a.wait {
        if json {
            print_json(&report)?;
        } else {
            println!(
                "the library reads it within {}s (SCOPE_SUMMARY_PERIOD); use --wait to see the result",
                env.summary_period.as_secs()
            );
        }
        return Ok(exit::OK);
    }
    if env.status_dir.is_none() {
        bail!(AgentError::NoStatus {
            pid: a.pid,
            reason: "SCOPE_STATUS_DIR is not set, so --wait cannot see the result (the command file was written)".into()
        });
    }
    let timeout = a
        .timeout
        .map(Duration::from_secs_f64)
        .unwrap_or(env.summary_period * 2 + Duration::from_secs(1));
    let st = node_agent::status::wait_for_command_result(&proc_, &env, before, timeout).map_err(|e| {
        anyhow!(e).context(format!(
            "pid {} did not confirm the update within {:.0}s (two summary periods); is it hung, or is SCOPE_CMD_DIR not watched?",
            a.pid,
            timeout.as_secs_f64()
        ))
    });
    let st = st?;
    let last = st.doc.last_command.clone().unwrap_or_default();
    let outcome = node_agent::status::outcome(&settings, &last);
    let ok = outcome.all_applied();
    report.outcome = Some(outcome.clone());
    if json {
        print_json(&report)?;
    } else {
        print!("{}", render::update_text(&outcome));
    }
    Ok(if ok { exit::OK } else { exit::REJECTED })
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// Host pid of any process.
    pub pid: i32,
    /// Also write a gdb-loadable core of the live process.
    #[arg(long)]
    pub core: bool,
    /// Output directory (default ~/.scope/snapshots/<name>_<pid>_<time>).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Keep secret-looking environment values (*TOKEN*, *SECRET*, *PASSWORD*, *KEY*...).
    #[arg(long)]
    pub no_redact: bool,
    /// For a scoped process, how long to wait for the library's own bundle, seconds
    /// (default: one summary period + 2; 0 = do not ask).
    #[arg(long, value_name = "SECS")]
    pub library_wait: Option<f64>,
}

struct Bar {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl Progress for Bar {
    fn stage(&mut self, name: &str) {
        if let Some(b) = &self.bar {
            b.set_message(name.to_string());
        }
    }
    fn bytes(&mut self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let b = self.bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message("core");
            b
        });
        b.set_length(total);
        b.set_position(done);
    }
}

fn snapshot(a: SnapshotArgs, json: bool) -> Result<i32> {
    let info = node_agent::procs::read_process(a.pid)?;
    let out = a.output.clone().unwrap_or_else(|| {
        crate::scope_home().join("snapshots").join(format!(
            "{}_{}_{}",
            store::sanitize(&info.comm),
            a.pid,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    let library_wait = match a.library_wait {
        Some(s) => Duration::from_secs_f64(s.max(0.0)),
        None if info.scoped => node_agent::procs::scope_env(a.pid)
            .map(|e| e.summary_period + Duration::from_secs(2))
            .unwrap_or(Duration::ZERO),
        None => Duration::ZERO,
    };
    let opts = SnapshotOptions {
        out_dir: out,
        redact: !a.no_redact,
        core: a.core,
        library_wait,
    };
    let mut bar = Bar {
        bar: None,
        enabled: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let r = node_agent::snapshot::take_snapshot(a.pid, &opts, &mut bar)?;
    if let Some(b) = bar.bar {
        b.finish_and_clear();
    }
    if json {
        print_json(&r)?;
    } else {
        print!("{}", render::snapshot_text(&r));
    }
    if a.core && r.core.is_none() {
        return Ok(exit::FAILURE);
    }
    Ok(exit::OK)
}

#[derive(Args, Debug)]
pub struct CrashesArgs {
    #[command(subcommand)]
    pub action: Option<CrashAction>,
    /// Crash-report store to read (default ~/.scope/store, as `scope agent --local`).
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum CrashAction {
    /// List crash reports, newest first.
    List,
    /// Show one report (default: the newest) with its backtrace and files.
    Show {
        /// Report ID (or a unique prefix of it).
        id: Option<String>,
    },
    /// Print the directory holding a report's files.
    Path {
        /// Report ID (default: the newest).
        id: Option<String>,
    },
}

/// The default local store (`~/.scope/store`).
pub fn default_store() -> PathBuf {
    crate::scope_home().join("store")
}

/// Reports in the store plus complete bundles not collected yet, read in place from
/// this user's `scope run` history dirs; newest first.
pub fn all_reports(store_dir: &Path) -> Vec<StoredReport> {
    let mut out = if store_dir.is_dir() {
        Store::open(store_dir).map(|s| s.list()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let sources = Sources {
        history_dirs: vec![crate::scope_home().join("history")],
        ..Default::default()
    };
    let dirs = sources.expand();
    for dir in dirs {
        for b in node_agent::bundle::scan_crashes(&dir) {
            let crash = b.crash_json();
            let procname = crash
                .get("procname")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| node_agent::collector::procname_from_history(&b.dir))
                .unwrap_or_else(|| "unknown".into());
            let mut r = store::build_report(
                &b,
                &Origin::local(&procname),
                &ProcContext {
                    procname,
                    ..Default::default()
                },
            );
            let id = store::report_dir_name(&r.time, b.pid, &r.signal_name);
            r.id = id.clone();
            out.push(StoredReport {
                id,
                dir: b.dir.clone(),
                bytes: r.files.iter().map(|f| f.size).sum(),
                report: r,
            });
        }
    }
    out.sort_by(|a, b| b.report.time.cmp(&a.report.time).then(b.id.cmp(&a.id)));
    out
}

fn pick(list: Vec<StoredReport>, id: Option<&str>) -> Result<StoredReport> {
    match id {
        Some(id) => Ok(store::find_report(list, id)?),
        None => list
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!(AgentError::ReportNotFound("no crash reports yet".into()))),
    }
}

fn crashes(a: CrashesArgs, json: bool) -> Result<i32> {
    let store_dir = a.store.clone().unwrap_or_else(default_store);
    let list = all_reports(&store_dir);
    match a.action.unwrap_or(CrashAction::List) {
        CrashAction::List => {
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!(
                    "No crash reports. (Run a program with `scope run -b -d -- CMD`; store: {})",
                    store_dir.display()
                );
            } else {
                print!("{}", render::crashes_table(&list));
            }
        }
        CrashAction::Show { id } => {
            let r = pick(list, id.as_deref())?;
            if json {
                print_json(&r)?;
            } else {
                let mut rep = r.report.clone();
                rep.path = r.dir.display().to_string();
                print!("{}", render::crash_detail(&rep));
            }
        }
        CrashAction::Path { id } => {
            let r = pick(list, id.as_deref())?;
            if json {
                print_json(&serde_json::json!({"id": r.id, "path": r.dir}))?;
            } else {
                println!("{}", r.dir.display());
            }
        }
    }
    Ok(exit::OK)
}
