//! The injection decision: a pure function from a pod (plus its namespace and the
//! webhook's settings) to a JSON Patch and admission warnings (design §4).
//!
//! No I/O here: the HTTP layer ([`crate::review`]) parses the request and serialises
//! the answer; everything a user relies on (selection, conflicts, names, env) is
//! decided in [`decide`] and tested directly and through the server.

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

/// Annotation that opts a pod in (`"true"`) or out (`"false"`).
pub const ANN_SCOPE: &str = "appscope.dev/scope";
/// Comma-separated container names to scope.
pub const ANN_CONTAINERS: &str = "appscope.dev/containers";
/// ConfigMap (in the pod's namespace) holding `scope.yml`.
pub const ANN_CONFIG: &str = "appscope.dev/config";
/// `"true"`/`"false"`: AppScope's `-b` (backtrace on crash).
pub const ANN_BACKTRACE: &str = "appscope.dev/backtrace";
/// `"true"`/`"false"`: AppScope's `-d` (core dump on crash).
pub const ANN_COREDUMP: &str = "appscope.dev/coredump";
/// Set by the webhook: `{"version":..,"containers":[..]}`.
pub const ANN_INJECTED: &str = "appscope.dev/injected";
/// Namespace label that scopes every pod in the namespace.
pub const NS_LABEL: &str = "appscope.dev/scope";

/// emptyDir volume shared by the init container and the scoped containers.
pub const VOLUME: &str = "appscope";
/// configMap volume holding `scope.yml`.
pub const CONFIG_VOLUME: &str = "appscope-config";
/// The init container that copies the library.
pub const INIT_CONTAINER: &str = "appscope-init";
/// Mount path of [`VOLUME`] in every container we touch.
pub const MOUNT_PATH: &str = "/appscope";
/// Mount path of [`CONFIG_VOLUME`].
pub const CONFIG_MOUNT_PATH: &str = "/etc/appscope";
/// The library inside app containers.
pub const LIB_PATH: &str = "/appscope/lib/libscope.so";
/// Default ConfigMap name.
pub const DEFAULT_CONFIGMAP: &str = "appscope";
/// Containers never scoped by default (service-mesh proxies and their init steps).
pub const KNOWN_SIDECARS: &[&str] = &[
    "istio-proxy",
    "istio-init",
    "istio-validation",
    "linkerd-proxy",
    "linkerd-init",
    "linkerd-network-validator",
];

/// Settings of the injection (from flags/env, see `docs/reference/webhook.md`).
#[derive(Debug, Clone)]
pub struct InjectConfig {
    /// Image of the init container (the operator image).
    pub init_image: String,
    /// `imagePullPolicy` of the init container; `None` leaves the cluster default.
    pub init_image_pull_policy: Option<String>,
    /// Namespaces where nothing is ever injected (kube-system and the operator's).
    pub excluded_namespaces: Vec<String>,
    /// `sizeLimit` of the `appscope` emptyDir.
    pub volume_size_limit: String,
    /// Version written into `appscope.dev/injected`.
    pub version: String,
    /// UID the init container runs as (non-root).
    pub init_run_as_user: i64,
}

impl InjectConfig {
    /// Settings with defaults, excluding `kube-system` and `operator_namespace`.
    pub fn new(init_image: impl Into<String>, operator_namespace: Option<&str>) -> Self {
        let mut excluded = vec!["kube-system".to_string()];
        if let Some(ns) = operator_namespace.filter(|ns| !ns.is_empty()) {
            excluded.push(ns.to_string());
        }
        InjectConfig {
            init_image: init_image.into(),
            init_image_pull_policy: None,
            excluded_namespaces: excluded,
            volume_size_limit: "512Mi".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            init_run_as_user: 65532,
        }
    }
}

/// Why a pod got no patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Neither the annotation nor the namespace label selects it (or it says `"false"`).
    NotSelected,
    /// kube-system or the operator's namespace.
    ExcludedNamespace,
    /// It carries `appscope.dev/injected` or our init container already.
    AlreadyInjected,
    /// `kubernetes.io/os: windows` or `spec.os.name: windows`.
    Windows,
    /// A user volume uses one of our names.
    VolumeConflict,
    /// Selection left no container to scope.
    NoContainers,
}

impl SkipReason {
    /// Stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::NotSelected => "not_selected",
            SkipReason::ExcludedNamespace => "excluded_namespace",
            SkipReason::AlreadyInjected => "already_injected",
            SkipReason::Windows => "windows",
            SkipReason::VolumeConflict => "volume_conflict",
            SkipReason::NoContainers => "no_containers",
        }
    }
}

/// What [`decide`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The patch injects these containers (regular and native-sidecar names).
    Injected { containers: Vec<String> },
    /// Nothing to do; the patch is empty.
    Skipped(SkipReason),
}

/// The patch and warnings for one pod.
#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    pub patch: Patch,
    /// Human-readable admission warnings (already prefixed with `appscope: `).
    pub warnings: Vec<String>,
}

impl Decision {
    fn skip(reason: SkipReason, warnings: Vec<String>) -> Self {
        Decision {
            outcome: Outcome::Skipped(reason),
            patch: Patch(Vec::new()),
            warnings,
        }
    }
}

fn warn(warnings: &mut Vec<String>, msg: impl Into<String>) {
    warnings.push(format!("appscope: {}", msg.into()));
}

/// Parses a `"true"`/`"false"` annotation; anything else is reported.
fn parse_bool_annotation(
    annotations: &std::collections::BTreeMap<String, String>,
    key: &str,
    warnings: &mut Vec<String>,
) -> Option<bool> {
    let raw = annotations.get(key)?;
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            warn(
                warnings,
                format!("annotation {key}: {raw:?} is not \"true\" or \"false\"; ignored"),
            );
            None
        }
    }
}

/// A DNS-1123 subdomain (what a ConfigMap name must be).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn ptr<'t>(tokens: impl IntoIterator<Item: Into<Token<'t>>>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Where a candidate container lives in the pod spec.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Container,
    NativeSidecar,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Container => "containers",
            Kind::NativeSidecar => "initContainers",
        }
    }
}

fn is_windows(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let by_selector = spec
        .node_selector
        .as_ref()
        .and_then(|s| s.get("kubernetes.io/os"))
        .is_some_and(|os| os.eq_ignore_ascii_case("windows"));
    let by_os = spec
        .os
        .as_ref()
        .is_some_and(|os| os.name.eq_ignore_ascii_case("windows"));
    by_selector || by_os
}

/// The env ops for one container, or the reason it must be skipped.
fn container_ops(
    c: &Container,
    base: &PointerBuf,
    snapshot_env: &[(&'static str, &'static str)],
    ops: &mut Vec<PatchOperation>,
) -> Result<(), String> {
    // Mount-path conflicts: a user mount at our paths would shadow or be shadowed.
    if let Some(m) = c.volume_mounts.iter().flatten().find(|m| {
        let p = m.mount_path.trim_end_matches('/');
        p == MOUNT_PATH || p == CONFIG_MOUNT_PATH
    }) {
        return Err(format!(
            "container {:?} already mounts {} (volume {:?}); not scoped",
            c.name, m.mount_path, m.name
        ));
    }
    let env = c.env.as_deref().unwrap_or(&[]);
    // The last LD_PRELOAD wins in Kubernetes; valueFrom anywhere means we cannot append.
    if env
        .iter()
        .any(|e| e.name == "LD_PRELOAD" && e.value_from.is_some())
    {
        return Err(format!(
            "container {:?} sets LD_PRELOAD with valueFrom; cannot append {LIB_PATH}, not scoped",
            c.name
        ));
    }
    let user_has = |name: &str| env.iter().any(|e| e.name == name);
    let dir = |what: &str| format!("{MOUNT_PATH}/run/{}/{what}", c.name);
    let mut new_env: Vec<Value> = Vec::new();
    let mut ld_op: Option<PatchOperation> = None;
    match env.iter().rposition(|e| e.name == "LD_PRELOAD") {
        None => new_env.push(json!({"name": "LD_PRELOAD", "value": LIB_PATH})),
        Some(i) => {
            let cur = env[i].value.as_deref().unwrap_or("");
            let already = cur
                .split([':', ' '])
                .any(|p| p == LIB_PATH || p.ends_with("/appscope/lib/libscope.so"));
            if !already {
                let v = if cur.trim().is_empty() {
                    LIB_PATH.to_string()
                } else {
                    format!("{}:{LIB_PATH}", cur.trim_end_matches(':'))
                };
                let mut p = base.clone();
                p.push_back("env");
                p.push_back(i);
                p.push_back("value");
                ld_op = Some(add(p, Value::String(v)));
            }
        }
    }
    let literal: [(&str, String); 5] = [
        ("SCOPE_CONF_PATH", format!("{CONFIG_MOUNT_PATH}/scope.yml")),
        ("SCOPE_CMD_DIR", dir("cmd")),
        ("SCOPE_STATUS_DIR", dir("status")),
        ("SCOPE_SNAPSHOT_DIR", dir("crash")),
        ("SCOPE_TAG_container", c.name.clone()),
    ];
    for (name, value) in literal {
        if !user_has(name) {
            new_env.push(json!({"name": name, "value": value}));
        }
    }
    for (name, field) in [
        ("SCOPE_TAG_pod", "metadata.name"),
        ("SCOPE_TAG_namespace", "metadata.namespace"),
        ("SCOPE_TAG_node", "spec.nodeName"),
    ] {
        if !user_has(name) {
            new_env.push(json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field}}}));
        }
    }
    for (name, value) in snapshot_env {
        if !user_has(name) {
            new_env.push(json!({"name": name, "value": value}));
        }
    }
    if let Some(op) = ld_op {
        ops.push(op);
    }
    if c.env.is_none() {
        let mut p = base.clone();
        p.push_back("env");
        ops.push(add(p, Value::Array(new_env)));
    } else {
        for v in new_env {
            let mut p = base.clone();
            p.push_back("env");
            p.push_back("-");
            ops.push(add(p, v));
        }
    }
    let mounts = [
        json!({"name": VOLUME, "mountPath": MOUNT_PATH}),
        json!({"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT_PATH, "readOnly": true}),
    ];
    if c.volume_mounts.is_none() {
        let mut p = base.clone();
        p.push_back("volumeMounts");
        ops.push(add(p, Value::Array(mounts.to_vec())));
    } else {
        for m in mounts {
            let mut p = base.clone();
            p.push_back("volumeMounts");
            p.push_back("-");
            ops.push(add(p, m));
        }
    }
    Ok(())
}

/// The init container spec (restricted Pod Security profile).
pub fn init_container(cfg: &InjectConfig) -> Value {
    let mut c = json!({
        "name": INIT_CONTAINER,
        "image": cfg.init_image,
        "command": ["appscope-operator", "copy-lib", "--to", format!("{MOUNT_PATH}/lib")],
        "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT_PATH}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "200m", "memory": "64Mi"}
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": cfg.init_run_as_user,
            "runAsGroup": cfg.init_run_as_user,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "terminationMessagePolicy": "FallbackToLogsOnError"
    });
    if let (Some(policy), Some(obj)) = (&cfg.init_image_pull_policy, c.as_object_mut()) {
        obj.insert("imagePullPolicy".into(), Value::String(policy.clone()));
    }
    c
}

/// Decides the patch for `pod` created in `namespace`. `namespace_enabled` is true when
/// the request came through the namespace-label webhook entry (`/mutate/namespace`).
pub fn decide(pod: &Pod, namespace: &str, namespace_enabled: bool, cfg: &InjectConfig) -> Decision {
    let mut warnings = Vec::new();
    let empty = std::collections::BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let spec = pod.spec.as_ref();

    // Idempotence first: a reinvocation or a pod copied from an injected one.
    let has_init = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|ics| ics.iter().any(|c| c.name == INIT_CONTAINER));
    if annotations.contains_key(ANN_INJECTED) || has_init {
        return Decision::skip(SkipReason::AlreadyInjected, warnings);
    }

    let requested = parse_bool_annotation(annotations, ANN_SCOPE, &mut warnings);
    let selected = requested.unwrap_or(namespace_enabled);
    if !selected {
        return Decision::skip(SkipReason::NotSelected, warnings);
    }
    if cfg.excluded_namespaces.iter().any(|n| n == namespace) {
        if requested == Some(true) {
            warn(
                &mut warnings,
                format!("namespace {namespace:?} is excluded from injection; pod not scoped"),
            );
        }
        return Decision::skip(SkipReason::ExcludedNamespace, warnings);
    }
    if is_windows(pod) {
        warn(
            &mut warnings,
            "Windows pods are not supported (libscope.so is a Linux library); pod not scoped",
        );
        return Decision::skip(SkipReason::Windows, warnings);
    }
    let Some(spec) = spec else {
        warn(&mut warnings, "pod has no spec; nothing injected");
        return Decision::skip(SkipReason::NoContainers, warnings);
    };
    if let Some(v) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == VOLUME || v.name == CONFIG_VOLUME)
    {
        warn(
            &mut warnings,
            format!(
                "the pod already has a volume named {:?}; rename it to use AppScope. Pod not scoped",
                v.name
            ),
        );
        return Decision::skip(SkipReason::VolumeConflict, warnings);
    }

    let backtrace = parse_bool_annotation(annotations, ANN_BACKTRACE, &mut warnings);
    let coredump = parse_bool_annotation(annotations, ANN_COREDUMP, &mut warnings);
    let mut snapshot_env: Vec<(&'static str, &'static str)> = Vec::new();
    if let Some(b) = backtrace {
        snapshot_env.push(("SCOPE_SNAPSHOT_BACKTRACE", if b { "true" } else { "false" }));
    }
    if let Some(d) = coredump {
        snapshot_env.push(("SCOPE_SNAPSHOT_COREDUMP", if d { "true" } else { "false" }));
    }

    let configmap = match annotations.get(ANN_CONFIG).map(|s| s.trim()) {
        None => DEFAULT_CONFIGMAP.to_string(),
        Some(name) if is_dns_subdomain(name) => name.to_string(),
        Some(name) => {
            warn(
                &mut warnings,
                format!(
                    "annotation {ANN_CONFIG}: {name:?} is not a valid ConfigMap name; using {DEFAULT_CONFIGMAP:?}"
                ),
            );
            DEFAULT_CONFIGMAP.to_string()
        }
    };

    // Candidates: regular containers, and native sidecars (restartPolicy Always init
    // containers), which are only scoped when named explicitly.
    let mut candidates: Vec<(Kind, usize, &Container)> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (Kind::Container, i, c))
        .collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        if c.restart_policy.as_deref() == Some("Always") {
            candidates.push((Kind::NativeSidecar, i, c));
        }
    }
    let chosen: Vec<(Kind, usize, &Container)> = match annotations.get(ANN_CONTAINERS) {
        Some(list) => {
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            for n in &names {
                if !candidates.iter().any(|(_, _, c)| c.name == *n) {
                    let is_plain_init = spec.init_containers.iter().flatten().any(|c| c.name == *n);
                    let why = if is_plain_init {
                        "is an init container that runs to completion (only containers and native sidecars can be scoped)"
                    } else {
                        "matches no container in the pod"
                    };
                    warn(
                        &mut warnings,
                        format!("annotation {ANN_CONTAINERS}: {n:?} {why}; ignored"),
                    );
                }
            }
            if names.is_empty() {
                warn(
                    &mut warnings,
                    format!("annotation {ANN_CONTAINERS} is empty; scoping the default containers"),
                );
                default_selection(&candidates)
            } else {
                candidates
                    .iter()
                    .filter(|(_, _, c)| names.contains(&c.name.as_str()))
                    .copied()
                    .collect()
            }
        }
        None => default_selection(&candidates),
    };

    let mut ops = Vec::new();
    let mut injected = Vec::new();
    for (kind, i, c) in &chosen {
        let base = ptr(["spec", kind.field()].map(Token::from)).concat_index(*i);
        match container_ops(c, &base, &snapshot_env, &mut ops) {
            Ok(()) => injected.push(c.name.clone()),
            Err(msg) => warn(&mut warnings, msg),
        }
    }
    if injected.is_empty() {
        if chosen.is_empty() {
            warn(
                &mut warnings,
                "no container selected for scoping; pod not scoped",
            );
        } else {
            warn(
                &mut warnings,
                "no selected container can be scoped; pod not scoped",
            );
        }
        return Decision::skip(SkipReason::NoContainers, warnings);
    }

    let volumes = [
        json!({"name": VOLUME, "emptyDir": {"sizeLimit": cfg.volume_size_limit}}),
        json!({"name": CONFIG_VOLUME, "configMap": {"name": configmap, "optional": true}}),
    ];
    if spec.volumes.is_none() {
        ops.push(add(
            ptr(["spec", "volumes"]),
            Value::Array(volumes.to_vec()),
        ));
    } else {
        for v in volumes {
            ops.push(add(ptr(["spec", "volumes", "-"]), v));
        }
    }
    // The init container goes first, so it runs before any native sidecar we scope.
    // Its op comes after the per-container ops, whose indexes refer to the original pod.
    let init = init_container(cfg);
    if spec.init_containers.is_none() {
        ops.push(add(
            ptr(["spec", "initContainers"]),
            Value::Array(vec![init]),
        ));
    } else {
        ops.push(add(
            ptr(["spec", "initContainers"].map(Token::from)).concat_index(0),
            init,
        ));
    }
    let marker = json!({"version": cfg.version, "containers": injected}).to_string();
    if pod.metadata.annotations.is_none() {
        ops.push(add(
            ptr(["metadata", "annotations"]),
            json!({ ANN_INJECTED: marker }),
        ));
    } else {
        ops.push(add(
            ptr(["metadata", "annotations", ANN_INJECTED]),
            Value::String(marker),
        ));
    }
    Decision {
        outcome: Outcome::Injected {
            containers: injected,
        },
        patch: Patch(ops),
        warnings,
    }
}

fn default_selection<'a>(
    candidates: &[(Kind, usize, &'a Container)],
) -> Vec<(Kind, usize, &'a Container)> {
    candidates
        .iter()
        .filter(|(k, _, c)| *k == Kind::Container && !KNOWN_SIDECARS.contains(&c.name.as_str()))
        .copied()
        .collect()
}

trait ConcatIndex {
    fn concat_index(self, i: usize) -> PointerBuf;
}

impl ConcatIndex for PointerBuf {
    fn concat_index(mut self, i: usize) -> PointerBuf {
        self.push_back(i);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn apply(p: &Pod, d: &Decision) -> Value {
        let mut v = serde_json::to_value(p).unwrap();
        json_patch::patch(&mut v, &d.patch).unwrap();
        v
    }

    fn cfg() -> InjectConfig {
        InjectConfig::new("img:1", Some("appscope-system"))
    }

    #[test]
    fn ld_preload_already_naming_our_library_is_left_alone() {
        let p = pod(
            json!({"metadata": {"annotations": {ANN_SCOPE: "true"}}, "spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "LD_PRELOAD", "value": "/x.so:/appscope/lib/libscope.so"}]}]}}),
        );
        let d = decide(&p, "ns", false, &cfg());
        let v = apply(&p, &d);
        let env = v["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(env.iter().filter(|e| e["name"] == "LD_PRELOAD").count(), 1);
        assert_eq!(env[0]["value"], "/x.so:/appscope/lib/libscope.so");
    }

    #[test]
    fn container_mounting_our_path_is_skipped_others_injected() {
        let p = pod(
            json!({"metadata": {"annotations": {ANN_SCOPE: "true"}}, "spec": {
            "volumes": [{"name": "mine", "emptyDir": {}}],
            "containers": [
                {"name": "a", "image": "x", "volumeMounts": [{"name": "mine", "mountPath": "/appscope/"}]},
                {"name": "b", "image": "x"}]}}),
        );
        let d = decide(&p, "ns", false, &cfg());
        assert_eq!(
            d.outcome,
            Outcome::Injected {
                containers: vec!["b".into()]
            }
        );
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("\"a\" already mounts /appscope/")),
            "{:?}",
            d.warnings
        );
        let v = apply(&p, &d);
        assert_eq!(
            v["spec"]["containers"][0],
            serde_json::to_value(&p.spec.as_ref().unwrap().containers[0]).unwrap()
        );
    }

    #[test]
    fn extra_excluded_namespace_and_operator_namespace() {
        let p = pod(
            json!({"metadata": {"annotations": {ANN_SCOPE: "true"}}, "spec": {"containers": [{"name": "a"}]}}),
        );
        let mut c = cfg();
        c.excluded_namespaces.push("batch".into());
        for ns in ["kube-system", "appscope-system", "batch"] {
            let d = decide(&p, ns, true, &c);
            assert_eq!(
                d.outcome,
                Outcome::Skipped(SkipReason::ExcludedNamespace),
                "{ns}"
            );
            assert!(d.patch.0.is_empty());
        }
        // Namespace-enabled pods without the annotation in an excluded namespace: silent.
        let quiet = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        assert!(decide(&quiet, "kube-system", true, &c).warnings.is_empty());
    }

    #[test]
    fn containers_annotation_edge_cases() {
        let p = pod(
            json!({"metadata": {"annotations": {ANN_SCOPE: "true", ANN_CONTAINERS: " , "}}, "spec": {
            "initContainers": [{"name": "migrate", "image": "x"}],
            "containers": [{"name": "a"}, {"name": "istio-proxy"}]}}),
        );
        let d = decide(&p, "ns", false, &cfg());
        assert_eq!(
            d.outcome,
            Outcome::Injected {
                containers: vec!["a".into()]
            }
        );
        assert!(d.warnings.iter().any(|w| w.contains("is empty")));

        let p = pod(
            json!({"metadata": {"annotations": {ANN_SCOPE: "true", ANN_CONTAINERS: "migrate"}}, "spec": {
            "initContainers": [{"name": "migrate", "image": "x"}],
            "containers": [{"name": "a"}]}}),
        );
        let d = decide(&p, "ns", false, &cfg());
        assert_eq!(d.outcome, Outcome::Skipped(SkipReason::NoContainers));
        assert!(
            d.warnings.iter().any(|w| w.contains("runs to completion")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn init_container_pull_policy_and_user_from_settings() {
        let mut c = cfg();
        c.init_image_pull_policy = Some("Always".into());
        c.init_run_as_user = 4242;
        let i = init_container(&c);
        assert_eq!(i["imagePullPolicy"], "Always");
        assert_eq!(i["securityContext"]["runAsUser"], 4242);
        assert!(init_container(&cfg()).get("imagePullPolicy").is_none());
    }
}
