//! Cluster mode of the `scope` CLI (`kubectl scope ...`).
//!
//! [`run`] parses argv and drives [`execute`] on a current-thread runtime; [`execute`]
//! takes a [`kube::Client`] and a writer so every command is testable against a mocked
//! API server.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use node_agent::procs::ProcessInfo;
use node_agent::render;
use node_agent::status::Inspection;
use serde::Deserialize;

use crate::crd::{
    ReportFile, ScopeConfig, ScopeConfigSpec, ScopeCrashReport, ScopeSnapshot, ScopeSnapshotSpec,
    SnapshotPhase,
};

/// Server-side-apply field manager of `kubectl scope update`.
pub const FIELD_MANAGER: &str = "kubectl-scope";
/// Priority of the ScopeConfig `kubectl scope update` writes.
pub const UPDATE_PRIORITY: i32 = 100;
/// Label selector of the agent pods (chart: `appscope.labels` with component `agent`).
pub const AGENT_SELECTOR: &str =
    "app.kubernetes.io/part-of=appscope,app.kubernetes.io/component=agent";

/// Errors of cluster-mode commands. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// Bad arguments or input: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed (not found, timeout, refused...): exit code 1.
    #[error("{0}")]
    Failed(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("decoding agent reply from {what}: {source}")]
    Decode {
        what: String,
        source: serde_json::Error,
    },
}

impl Error {
    /// Exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// One clear line for a kube error (pure).
pub fn describe_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => format!(
            "forbidden by RBAC: {} (see docs/reference/operator.md, RBAC)",
            s.message
        ),
        kube::Error::Api(s) if s.is_not_found() => format!("not found: {}", s.message),
        kube::Error::Api(s) => format!("API server: {} ({} {})", s.message, s.code, s.reason),
        kube::Error::InferConfig(e) => format!("no usable kubeconfig: {e}"),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            format!("cannot reach the API server: {}", error_chain(e))
        }
        other => error_chain(other),
    }
}

/// `error: cause: cause...` on one line, without repeating a cause already shown (pure).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}

fn describe(e: &Error) -> String {
    match e {
        Error::Kube(k) => describe_kube_error(k),
        other => other.to_string(),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-scope",
    bin_name = "kubectl scope",
    about = "AppScope in a Kubernetes cluster: scoped processes, config, snapshots, crashes"
)]
pub struct Cli {
    /// Namespace of the AppScope agent DaemonSet.
    #[arg(
        long,
        global = true,
        default_value = "appscope",
        env = "APPSCOPE_AGENT_NAMESPACE"
    )]
    pub agent_namespace: String,
    /// Port of the agent API on the agent pods.
    #[arg(long, global = true, default_value_t = 9464)]
    pub agent_port: u16,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct NsArgs {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PodArgs {
    /// Pod name.
    pub pod: String,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Container (default: every scoped container of the pod).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pods with scoped processes, from the node agents.
    Ps(NsArgs),
    /// Scoped processes of a pod: config in effect, transports, status.
    Inspect(PodArgs),
    /// Change settings of a pod's scoped processes (ScopeConfig `scope-<pod>`).
    Update {
        #[command(flatten)]
        target: PodArgs,
        /// NAME=VALUE (SCOPE_* setting); repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE", required = true)]
        set: Vec<String>,
    },
    /// Snapshot a process of a pod (ScopeSnapshot) and wait for the result.
    Snapshot {
        #[command(flatten)]
        target: PodArgs,
        /// Pid as seen inside the container (default: the main scoped process).
        #[arg(long)]
        pid: Option<i64>,
        /// Also write a core file.
        #[arg(long)]
        core: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Poll interval in milliseconds.
        #[arg(long, default_value_t = 1000, hide = true)]
        poll_ms: u64,
    },
    /// Crash reports (ScopeCrashReport); `crashes show NAME` for one.
    Crashes {
        #[command(flatten)]
        ns: NsArgs,
        #[command(subcommand)]
        show: Option<CrashesCmd>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CrashesCmd {
    /// One crash report with its frames and files.
    Show {
        name: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
}

/// Drop argv\[0\] handling differences and the `--k8s` switch (pure).
pub fn clean_args(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = vec![OsString::from("kubectl-scope")];
    out.extend(args.into_iter().skip(1).filter(|a| a != "--k8s"));
    out
}

/// Entry point used by the `scope` binary when it runs in cluster mode (invoked as
/// `kubectl-scope`, or with `--k8s`). `args` are the full argv. Returns the exit code.
pub fn run(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(clean_args(args)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl scope: cannot start runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async {
        check_args(&cli)?;
        let mut config = kube::Config::infer()
            .await
            .map_err(|e| Error::Kube(kube::Error::InferConfig(e)))?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(60));
        let client = Client::try_from(config)?;
        let mut out = std::io::stdout().lock();
        execute(&cli, client, &mut out).await
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl scope: {}", describe(&e));
            e.exit_code()
        }
    }
}

/// Checks of the arguments that need no API server (usage errors, exit code 2).
pub fn check_args(cli: &Cli) -> Result<(), Error> {
    match &cli.command {
        Command::Update { set, .. } => parse_sets(set).map(|_| ()),
        Command::Snapshot { pid: Some(p), .. } if *p < 1 => {
            Err(Error::Usage("--pid must be at least 1".into()))
        }
        _ => Ok(()),
    }
}

/// Run one parsed command against `client`, writing human output to `out`.
/// Returns the exit code on success (0, or 1 for a failed snapshot).
pub async fn execute(cli: &Cli, client: Client, out: &mut dyn Write) -> Result<i32, Error> {
    let agents = Agents {
        client: client.clone(),
        namespace: cli.agent_namespace.clone(),
        port: cli.agent_port,
    };
    match &cli.command {
        Command::Ps(ns) => ps(&agents, ns, out).await,
        Command::Inspect(t) => inspect(&agents, t, out).await,
        Command::Update { target, set } => update(client, target, set, out).await,
        Command::Snapshot {
            target,
            pid,
            core,
            timeout,
            poll_ms,
        } => {
            snapshot(
                client,
                target,
                *pid,
                *core,
                Duration::from_secs(*timeout),
                Duration::from_millis(*poll_ms),
                out,
            )
            .await
        }
        Command::Crashes { ns, show: None } => crashes(client, ns, out).await,
        Command::Crashes {
            ns,
            show: Some(CrashesCmd::Show { name, namespace }),
        } => {
            // `crashes -n NS show NAME` and `crashes show NAME -n NS` both work.
            let n = namespace.as_deref().or(ns.namespace.as_deref());
            crash_show(client, n, name, out).await
        }
    }
}

fn ns_or_default<'a>(client: &'a Client, ns: Option<&'a str>) -> &'a str {
    ns.unwrap_or_else(|| client.default_namespace())
}

// ------------------------------------------------------------------ agents

/// One scoped process as the agent's `/v1/pods` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct PodProcessView {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Pid as the process sees itself.
    pub pid: i64,
    #[serde(default)]
    pub procname: String,
    #[serde(default)]
    pub cmd: String,
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub config_state: String,
}

struct Agents {
    client: Client,
    namespace: String,
    port: u16,
}

impl Agents {
    /// Running agent pods, optionally only the one on `node`.
    async fn pods(&self, node: Option<&str>) -> Result<Vec<Pod>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut lp = ListParams::default().labels(AGENT_SELECTOR);
        if let Some(n) = node {
            lp = lp.fields(&format!("spec.nodeName={n}"));
        }
        let list = api.list(&lp).await?;
        let pods: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        if pods.is_empty() {
            return Err(Error::Failed(match node {
                Some(n) => format!(
                    "no running AppScope agent on node {n} in namespace {} (label {AGENT_SELECTOR})",
                    self.namespace
                ),
                None => format!(
                    "no running AppScope agent in namespace {} (label {AGENT_SELECTOR}); is the chart installed? (--agent-namespace)",
                    self.namespace
                ),
            }));
        }
        Ok(pods)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        agent_pod: &str,
        path: &str,
    ) -> Result<T, Error> {
        // kube's request builder appends `/<name>` to the collection path.
        let req = kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", self.namespace))
            .get(
                &format!("{agent_pod}:{}/proxy{path}", self.port),
                &kube::api::GetParams::default(),
            )
            .map_err(|e| Error::Failed(format!("building request {path}: {e}")))?;
        let text = self.client.request_text(req).await?;
        serde_json::from_str(&text).map_err(|source| Error::Decode {
            what: format!("agent {agent_pod} {path}"),
            source,
        })
    }
}

/// `ps` rows: NAMESPACE, POD, CONTAINER, PID, CONNECTED, COMMAND (pure).
pub fn ps_rows(procs: &[PodProcessView]) -> Vec<Vec<String>> {
    procs
        .iter()
        .map(|p| {
            vec![
                p.namespace.clone(),
                p.pod.clone(),
                p.container.clone(),
                p.pid.to_string(),
                if p.connected { "yes" } else { "no" }.to_string(),
                if p.cmd.is_empty() {
                    p.procname.clone()
                } else {
                    p.cmd.clone()
                },
            ]
        })
        .collect()
}

async fn ps(agents: &Agents, ns: &NsArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let want_ns = if ns.all_namespaces {
        None
    } else {
        Some(ns_or_default(&agents.client, ns.namespace.as_deref()).to_string())
    };
    let mut all = Vec::new();
    let mut unreachable = Vec::new();
    for ap in agents.pods(None).await? {
        let name = ap.name_any();
        match agents.get::<Vec<PodProcessView>>(&name, "/v1/pods").await {
            Ok(v) => all.extend(v),
            Err(e) => unreachable.push(format!("{name}: {}", describe(&e))),
        }
    }
    all.retain(|p| want_ns.as_deref().is_none_or(|n| p.namespace == n));
    all.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container, a.pid).cmp(&(
            &b.namespace,
            &b.pod,
            &b.container,
            b.pid,
        ))
    });
    if all.is_empty() {
        match &want_ns {
            Some(n) => writeln!(out, "No scoped processes in namespace {n}.")?,
            None => writeln!(out, "No scoped processes.")?,
        }
    } else {
        out.write_all(
            render::table(
                &[
                    "NAMESPACE",
                    "POD",
                    "CONTAINER",
                    "PID",
                    "CONNECTED",
                    "COMMAND",
                ],
                &ps_rows(&all),
            )
            .as_bytes(),
        )?;
    }
    for u in &unreachable {
        writeln!(out, "warning: agent {u}")?;
    }
    Ok(0)
}

/// Host processes of `procs` that are the pod's scoped processes: same namespaced pid
/// and same command line as the status file reports (pure).
pub fn match_host_processes<'a>(
    pod_procs: &[PodProcessView],
    host: &'a [ProcessInfo],
) -> Vec<(PodProcessView, Option<&'a ProcessInfo>)> {
    pod_procs
        .iter()
        .map(|pp| {
            let cands: Vec<&ProcessInfo> = host
                .iter()
                .filter(|h| h.scoped && i64::from(h.nspid) == pp.pid)
                .collect();
            let best = cands
                .iter()
                .find(|h| !pp.cmd.is_empty() && h.command() == pp.cmd)
                .or_else(|| cands.iter().find(|h| h.comm == pp.procname))
                .or(if cands.len() == 1 {
                    cands.first()
                } else {
                    None
                })
                .copied();
            (pp.clone(), best)
        })
        .collect()
}

async fn inspect(agents: &Agents, t: &PodArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let ns = ns_or_default(&agents.client, t.namespace.as_deref()).to_string();
    let pod = Api::<Pod>::namespaced(agents.client.clone(), &ns)
        .get(&t.pod)
        .await?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| {
            Error::Failed(format!("pod {ns}/{} is not scheduled on a node yet", t.pod))
        })?;
    let agent = agents.pods(Some(&node)).await?.remove(0).name_any();
    let mut mine: Vec<PodProcessView> = agents
        .get::<Vec<PodProcessView>>(&agent, "/v1/pods")
        .await?
        .into_iter()
        .filter(|p| p.namespace == ns && p.pod == t.pod)
        .filter(|p| t.container.as_ref().is_none_or(|c| &p.container == c))
        .collect();
    mine.sort_by_key(|p| (p.container.clone(), p.pid));
    if mine.is_empty() {
        return Err(Error::Failed(format!(
            "no scoped process in pod {ns}/{}{} (agent {agent} on node {node})",
            t.pod,
            t.container
                .as_ref()
                .map(|c| format!(" container {c}"))
                .unwrap_or_default()
        )));
    }
    let host: Vec<ProcessInfo> = agents.get(&agent, "/v1/ps").await?;
    for (pp, hp) in match_host_processes(&mine, &host) {
        writeln!(
            out,
            "== {}/{} container {} pid {} (node {node})",
            pp.namespace, pp.pod, pp.container, pp.pid
        )?;
        match hp {
            Some(h) => {
                let i: Inspection = agents
                    .get(&agent, &format!("/v1/inspect/{}", h.pid))
                    .await?;
                out.write_all(render::inspect_text(&i).as_bytes())?;
            }
            None => writeln!(
                out,
                "  (process not found on the node any more; connected: {}, config: {})",
                pp.connected, pp.config_state
            )?,
        }
    }
    Ok(0)
}

// ------------------------------------------------------------------ update

/// Parse and validate `--set NAME=VALUE` items (pure).
pub fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut env = BTreeMap::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--set {s:?}: expected NAME=VALUE")))?;
        scope_config::settings::validate(k, v)
            .map_err(|e| Error::Usage(format!("--set {k}: {e}")))?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

/// The ScopeConfig `kubectl scope update` applies (pure).
pub fn update_object(
    namespace: &str,
    pod: &str,
    labels: &BTreeMap<String, String>,
    container: Option<&str>,
    env: BTreeMap<String, String>,
) -> ScopeConfig {
    let mut sc = ScopeConfig::new(
        &format!("scope-{pod}"),
        ScopeConfigSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            containers: container.map(|c| vec![c.to_string()]),
            env,
            priority: UPDATE_PRIORITY,
        },
    );
    sc.metadata.namespace = Some(namespace.to_string());
    sc
}

async fn update(
    client: Client,
    t: &PodArgs,
    sets: &[String],
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let new_env = parse_sets(sets)?;
    let ns = ns_or_default(&client, t.namespace.as_deref()).to_string();
    let pod = Api::<Pod>::namespaced(client.clone(), &ns)
        .get(&t.pod)
        .await?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.is_empty() {
        return Err(Error::Failed(format!(
            "pod {ns}/{} has no labels, so no ScopeConfig can select it; add a label (kubectl label pod {} -n {ns} app=...) and retry",
            t.pod, t.pod
        )));
    }
    let api: Api<ScopeConfig> = Api::namespaced(client, &ns);
    let name = format!("scope-{}", t.pod);
    // Keep the settings of earlier `update`s: this command adds to them.
    let mut env = match api.get_opt(&name).await? {
        Some(existing) => existing.spec.env,
        None => BTreeMap::new(),
    };
    env.extend(new_env.clone());
    let obj = update_object(&ns, &t.pod, &labels, t.container.as_deref(), env);
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
    writeln!(
        out,
        "scopeconfig {ns}/{} applied (priority {UPDATE_PRIORITY}, selector {})",
        applied.name_any(),
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    )?;
    for (k, v) in &applied.spec.env {
        let mark = if new_env.contains_key(k) {
            "set"
        } else {
            "kept"
        };
        writeln!(out, "  {mark:<4}  {k}={v}")?;
    }
    writeln!(
        out,
        "Progress: kubectl get scopeconfig {} -n {ns} (Applied column)",
        applied.name_any()
    )?;
    Ok(0)
}

// ---------------------------------------------------------------- snapshot

fn files_table(files: &[ReportFile]) -> String {
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.size.to_string(),
                f.sha256[..f.sha256.len().min(16)].to_string(),
            ]
        })
        .collect();
    render::table(&["NAME", "SIZE", "SHA256"], &rows)
}

async fn snapshot(
    client: Client,
    t: &PodArgs,
    pid: Option<i64>,
    core: bool,
    timeout: Duration,
    poll: Duration,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    if pid.is_some_and(|p| p < 1) {
        return Err(Error::Usage("--pid must be at least 1".into()));
    }
    let ns = ns_or_default(&client, t.namespace.as_deref()).to_string();
    let api: Api<ScopeSnapshot> = Api::namespaced(client, &ns);
    let mut obj = ScopeSnapshot::new(
        "",
        ScopeSnapshotSpec {
            pod: t.pod.clone(),
            container: t.container.clone(),
            pid,
            core,
        },
    );
    obj.metadata = ObjectMeta {
        generate_name: Some(format!("{}-", t.pod)),
        namespace: Some(ns.clone()),
        ..ObjectMeta::default()
    };
    let created = api.create(&PostParams::default(), &obj).await?;
    let name = created.name_any();
    writeln!(out, "scopesnapshot {ns}/{name} created")?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<SnapshotPhase> = None;
    loop {
        let cur = api.get(&name).await?;
        let st = cur.status.clone().unwrap_or_default();
        if last != Some(st.phase) {
            writeln!(
                out,
                "  {:?}{}",
                st.phase,
                st.node
                    .as_ref()
                    .map(|n| format!(" (node {n})"))
                    .unwrap_or_default()
            )?;
            out.flush()?;
            last = Some(st.phase);
        }
        match st.phase {
            SnapshotPhase::Complete => {
                writeln!(
                    out,
                    "reportPath: {}",
                    st.report_path.as_deref().unwrap_or("-")
                )?;
                out.write_all(files_table(&st.files).as_bytes())?;
                return Ok(0);
            }
            SnapshotPhase::Failed => {
                writeln!(
                    out,
                    "snapshot failed: {}",
                    st.message.as_deref().unwrap_or("(no message)")
                )?;
                return Ok(1);
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "scopesnapshot {ns}/{name} still {:?} after {}s (kubectl get scopesnapshot {name} -n {ns})",
                st.phase,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

// ----------------------------------------------------------------- crashes

/// `crashes` rows: TIME, NAMESPACE, POD, CONTAINER, PID, SIGNAL, TOP FRAME, NAME,
/// newest first (pure).
pub fn crash_rows(reports: &[ScopeCrashReport]) -> Vec<Vec<String>> {
    let mut v: Vec<&ScopeCrashReport> = reports.iter().collect();
    v.sort_by(|a, b| b.spec.time.cmp(&a.spec.time));
    v.into_iter()
        .map(|r| {
            vec![
                r.spec.time.clone(),
                r.namespace().unwrap_or_default(),
                r.spec.pod.clone(),
                r.spec.container.clone(),
                r.spec.pid.to_string(),
                r.spec.signal.clone(),
                if r.spec.top_frame.is_empty() {
                    "?".into()
                } else {
                    r.spec.top_frame.clone()
                },
                r.name_any(),
            ]
        })
        .collect()
}

async fn crashes(client: Client, ns: &NsArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let api: Api<ScopeCrashReport> = if ns.all_namespaces {
        Api::all(client)
    } else {
        let n = ns_or_default(&client, ns.namespace.as_deref()).to_string();
        Api::namespaced(client, &n)
    };
    let list = api.list(&ListParams::default()).await?;
    if list.items.is_empty() {
        writeln!(out, "No crash reports.")?;
        return Ok(0);
    }
    out.write_all(
        render::table(
            &[
                "TIME",
                "NAMESPACE",
                "POD",
                "CONTAINER",
                "PID",
                "SIGNAL",
                "TOP FRAME",
                "NAME",
            ],
            &crash_rows(&list.items),
        )
        .as_bytes(),
    )?;
    Ok(0)
}

/// `crashes show` detail (pure).
pub fn crash_detail(r: &ScopeCrashReport) -> String {
    let s = &r.spec;
    let mut o = String::new();
    o.push_str(&format!(
        "Crash {}/{}\n",
        r.namespace().unwrap_or_default(),
        r.name_any()
    ));
    o.push_str(&format!("  time:       {}\n", s.time));
    o.push_str(&format!("  pod:        {} (uid {})\n", s.pod, s.pod_uid));
    o.push_str(&format!("  container:  {}\n", s.container));
    if !s.image.is_empty() {
        o.push_str(&format!("  image:      {}\n", s.image));
    }
    o.push_str(&format!("  node:       {}\n", s.node));
    o.push_str(&format!("  pid:        {}\n", s.pid));
    o.push_str(&format!("  signal:     {}\n", s.signal));
    o.push_str(&format!("  reportPath: {}\n", s.path));
    o.push_str("Frames:\n");
    if s.top_frames.is_empty() {
        o.push_str("  (none)\n");
    }
    for (i, f) in s.top_frames.iter().enumerate() {
        o.push_str(&format!("  #{i:<2} {f}\n"));
    }
    o.push_str("Files:\n");
    o.push_str(
        &files_table(&s.files)
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>(),
    );
    o
}

async fn crash_show(
    client: Client,
    ns: Option<&str>,
    name: &str,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let n = ns_or_default(&client, ns).to_string();
    let r = Api::<ScopeCrashReport>::namespaced(client, &n)
        .get(name)
        .await?;
    out.write_all(crash_detail(&r).as_bytes())?;
    Ok(0)
}
