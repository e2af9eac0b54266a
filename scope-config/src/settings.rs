//! The `SCOPE_*` settings: the table of every variable ([`ALL`]), and applying one
//! to a [`Config`] ([`Config::set`]), as env at start and from command files.

use std::path::PathBuf;

use crate::model::{
    Config, EventFormatType, EventWatchType, LogLevel, MetricFormatType, MetricWatchType,
};
use crate::transport::{Transport, TransportType};

/// Whose variable this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Honoured by AppScope 1.4's library; same name, values and default.
    AppScope,
    /// An appscope-k8s addition.
    Ours,
}

/// How a variable is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A config setting: applied from env at start and from command files.
    Config,
    /// Read once at start (env only); refused in command files.
    StartOnly,
    /// A command-file action (`SCOPE_CONF_RELOAD`, `SCOPE_CMD_SNAPSHOT`); ignored in env.
    Action,
}

/// One row of the settings table.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    /// Variable name; `SCOPE_TAG_<name>` stands for the whole `SCOPE_TAG_` family.
    pub name: &'static str,
    /// Where it lands in `scope.yml` ("" when it is not a config key).
    pub yaml_path: &'static str,
    /// Default value, as the variable would spell it ("" = none/unset).
    pub default: &'static str,
    pub origin: Origin,
    pub kind: Kind,
    /// One-line description with the accepted values.
    pub doc: &'static str,
}

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown setting {0:?}")]
    Unknown(String),
    #[error("invalid value for {name}: {reason}")]
    InvalidValue { name: String, reason: String },
    #[error("{name} is not accepted here: {reason}")]
    NotApplicable { name: String, reason: String },
}

/// Prefix of the tag family (`SCOPE_TAG_service=web` adds tag `service`).
pub const TAG_PREFIX: &str = "SCOPE_TAG_";

const fn s(
    name: &'static str,
    yaml_path: &'static str,
    default: &'static str,
    origin: Origin,
    kind: Kind,
    doc: &'static str,
) -> SettingSpec {
    SettingSpec {
        name,
        yaml_path,
        default,
        origin,
        kind,
        doc,
    }
}

use Kind::{Action as Act, Config as Cfg, StartOnly};
use Origin::{AppScope as A, Ours as O};

/// Every `SCOPE_*` variable, in the order env is applied at start.
#[rustfmt::skip]
pub static ALL: &[SettingSpec] = &[
    // --- not config keys ---
    s("SCOPE_CONF_PATH", "", "", A, StartOnly, "Path of the scope.yml to load; first in the search order."),
    s("SCOPE_HOME", "", "", A, StartOnly, "Directory searched for conf/scope.yml and scope.yml (2nd and 3rd in the search order)."),
    // --- metric ---
    s("SCOPE_METRIC_ENABLE", "metric.enable", "true", A, Cfg, "Enable metrics: true|false."),
    s("SCOPE_METRIC_FORMAT", "metric.format.type", "statsd", A, Cfg, "Metric format: statsd|ndjson (forced to ndjson when cribl is enabled)."),
    s("SCOPE_STATSD_PREFIX", "metric.format.statsdprefix", "", A, Cfg, "Prefix prepended to StatsD metric names."),
    s("SCOPE_STATSD_MAXLEN", "metric.format.statsdmaxlen", "512", A, Cfg, "Maximum length of a StatsD line: integer > 0."),
    s("SCOPE_METRIC_VERBOSITY", "metric.format.verbosity", "4", A, Cfg, "Metric tag cardinality and aggregation: 0-9."),
    s("SCOPE_METRIC_STATSD", "metric.watch[type=statsd]", "true", A, Cfg, "Enable the statsd metric category: true|false."),
    s("SCOPE_METRIC_FS", "metric.watch[type=fs]", "true", A, Cfg, "Enable the fs metric category: true|false."),
    s("SCOPE_METRIC_NET", "metric.watch[type=net]", "true", A, Cfg, "Enable the net metric category: true|false."),
    s("SCOPE_METRIC_HTTP", "metric.watch[type=http]", "true", A, Cfg, "Enable the http metric category: true|false."),
    s("SCOPE_METRIC_DNS", "metric.watch[type=dns]", "true", A, Cfg, "Enable the dns metric category: true|false."),
    s("SCOPE_METRIC_PROC", "metric.watch[type=process]", "true", A, Cfg, "Enable the process metric category: true|false."),
    s("SCOPE_METRIC_DEST", "metric.transport", "udp://127.0.0.1:8125", A, Cfg, "Metric destination URL: udp://host:port, tcp://host:port, unix:///path, unix://@abstract, file:///path, file://stdout, file://stderr, edge."),
    s("SCOPE_METRIC_TLS_ENABLE", "metric.transport.tls.enable", "false", A, Cfg, "TLS for a tcp metric transport: true|false."),
    s("SCOPE_METRIC_TLS_VALIDATE_SERVER", "metric.transport.tls.validateserver", "true", A, Cfg, "Validate the metric server's certificate: true|false."),
    s("SCOPE_METRIC_TLS_CA_CERT_PATH", "metric.transport.tls.cacertpath", "", A, Cfg, "PEM CA file for the metric transport (\"\" = OS trust store)."),
    // --- event ---
    s("SCOPE_EVENT_ENABLE", "event.enable", "true", A, Cfg, "Enable events: true|false."),
    s("SCOPE_EVENT_FORMAT", "event.format.type", "ndjson", A, Cfg, "Event format: ndjson."),
    s("SCOPE_EVENT_MAXEPS", "event.format.maxeventpersec", "10000", A, Cfg, "Event rate limit per second: integer >= 0 (0 = no limit)."),
    s("SCOPE_ENHANCE_FS", "event.format.enhancefs", "true", A, Cfg, "Add uid, gid and mode to fs open events: true|false."),
    s("SCOPE_EVENT_LOGFILE", "event.watch[type=file]", "true", A, Cfg, "Enable file (log file write) events: true|false."),
    s("SCOPE_EVENT_LOGFILE_NAME", "event.watch[type=file].name", r"(\/logs?\/)|(\.log$)|(\.log[.\d])", A, Cfg, "Regex on file names for file events."),
    s("SCOPE_EVENT_LOGFILE_VALUE", "event.watch[type=file].value", ".*", A, Cfg, "Regex on written data for file events."),
    s("SCOPE_EVENT_CONSOLE", "event.watch[type=console]", "true", A, Cfg, "Enable console (stdout/stderr) events: true|false."),
    s("SCOPE_EVENT_CONSOLE_NAME", "event.watch[type=console].name", "(stdout)|(stderr)", A, Cfg, "Regex on the stream name for console events."),
    s("SCOPE_EVENT_CONSOLE_VALUE", "event.watch[type=console].value", ".*", A, Cfg, "Regex on written data for console events."),
    s("SCOPE_ALLOW_BINARY_CONSOLE", "event.watch[type=console].allowbinary", "true", A, Cfg, "Emit binary console data: true|false."),
    s("SCOPE_EVENT_NET", "event.watch[type=net]", "true", A, Cfg, "Enable net events: true|false."),
    s("SCOPE_EVENT_NET_NAME", "event.watch[type=net].name", ".*", A, Cfg, "Regex on net event names."),
    s("SCOPE_EVENT_NET_FIELD", "event.watch[type=net].field", ".*", A, Cfg, "Regex on net event field names."),
    s("SCOPE_EVENT_NET_VALUE", "event.watch[type=net].value", ".*", A, Cfg, "Regex on net event field values."),
    s("SCOPE_EVENT_FS", "event.watch[type=fs]", "true", A, Cfg, "Enable fs events: true|false."),
    s("SCOPE_EVENT_FS_NAME", "event.watch[type=fs].name", ".*", A, Cfg, "Regex on fs event names."),
    s("SCOPE_EVENT_FS_FIELD", "event.watch[type=fs].field", ".*", A, Cfg, "Regex on fs event field names."),
    s("SCOPE_EVENT_FS_VALUE", "event.watch[type=fs].value", ".*", A, Cfg, "Regex on fs event field values."),
    s("SCOPE_EVENT_DNS", "event.watch[type=dns]", "true", A, Cfg, "Enable dns events: true|false."),
    s("SCOPE_EVENT_DNS_NAME", "event.watch[type=dns].name", ".*", A, Cfg, "Regex on dns event names."),
    s("SCOPE_EVENT_DNS_FIELD", "event.watch[type=dns].field", ".*", A, Cfg, "Regex on dns event field names."),
    s("SCOPE_EVENT_DNS_VALUE", "event.watch[type=dns].value", ".*", A, Cfg, "Regex on dns event field values."),
    s("SCOPE_EVENT_HTTP", "event.watch[type=http]", "true", A, Cfg, "Enable http events: true|false."),
    s("SCOPE_EVENT_HTTP_NAME", "event.watch[type=http].name", ".*", A, Cfg, "Regex on http event names."),
    s("SCOPE_EVENT_HTTP_FIELD", "event.watch[type=http].field", ".*", A, Cfg, "Regex on http event field names."),
    s("SCOPE_EVENT_HTTP_VALUE", "event.watch[type=http].value", ".*", A, Cfg, "Regex on http event field values."),
    s("SCOPE_EVENT_HTTP_HEADER", "event.watch[type=http].headers", "", A, Cfg, "One regex on header lines to include in http events (sets a single headers entry; \"\" = none)."),
    s("SCOPE_EVENT_METRIC", "event.watch[type=metric]", "false", A, Cfg, "Send unaggregated metrics as events: true|false."),
    s("SCOPE_EVENT_METRIC_NAME", "event.watch[type=metric].name", ".*", A, Cfg, "Regex on metric event names."),
    s("SCOPE_EVENT_METRIC_FIELD", "event.watch[type=metric].field", ".*", A, Cfg, "Regex on metric event field names."),
    s("SCOPE_EVENT_METRIC_VALUE", "event.watch[type=metric].value", ".*", A, Cfg, "Regex on metric event field values."),
    s("SCOPE_EVENT_DEST", "event.transport", "tcp://127.0.0.1:9109", A, Cfg, "Event destination URL (same forms as SCOPE_METRIC_DEST)."),
    s("SCOPE_EVENT_TLS_ENABLE", "event.transport.tls.enable", "false", A, Cfg, "TLS for a tcp event transport: true|false."),
    s("SCOPE_EVENT_TLS_VALIDATE_SERVER", "event.transport.tls.validateserver", "true", A, Cfg, "Validate the event server's certificate: true|false."),
    s("SCOPE_EVENT_TLS_CA_CERT_PATH", "event.transport.tls.cacertpath", "", A, Cfg, "PEM CA file for the event transport (\"\" = OS trust store)."),
    // --- payload ---
    s("SCOPE_PAYLOAD_ENABLE", "payload.enable", "false", A, Cfg, "Capture network payloads: true|false."),
    s("SCOPE_PAYLOAD_DIR", "payload.dir", "/tmp", A, Cfg, "Directory for payload files."),
    // --- libscope ---
    s("SCOPE_CONFIG_EVENT", "libscope.configevent", "true", A, Cfg, "Send the process-start (config) message first on each connection: true|false."),
    s("SCOPE_SUMMARY_PERIOD", "libscope.summaryperiod", "10", A, Cfg, "Metric summary and command-file poll period, seconds: integer >= 1."),
    s("SCOPE_CMD_DIR", "libscope.commanddir", "/tmp", A, Cfg, "Directory polled for command files scope.<pid>."),
    s("SCOPE_LOG_LEVEL", "libscope.log.level", "warning", A, Cfg, "Library log level: debug|info|warning|error|none."),
    s("SCOPE_LOG_DEST", "libscope.log.transport", "file:///tmp/scope.log", A, Cfg, "Library log destination URL (same forms as SCOPE_METRIC_DEST)."),
    s("SCOPE_LOG_TLS_ENABLE", "libscope.log.transport.tls.enable", "false", A, Cfg, "TLS for a tcp log transport: true|false."),
    s("SCOPE_LOG_TLS_VALIDATE_SERVER", "libscope.log.transport.tls.validateserver", "true", A, Cfg, "Validate the log server's certificate: true|false."),
    s("SCOPE_LOG_TLS_CA_CERT_PATH", "libscope.log.transport.tls.cacertpath", "", A, Cfg, "PEM CA file for the log transport (\"\" = OS trust store)."),
    s("SCOPE_SNAPSHOT_COREDUMP", "libscope.snapshot.coredump", "false", A, Cfg, "Write core_<ts> on a fatal signal: true|false (takes effect at runtime)."),
    s("SCOPE_SNAPSHOT_BACKTRACE", "libscope.snapshot.backtrace", "false", A, Cfg, "Write backtrace_<ts> on a fatal signal: true|false (takes effect at runtime)."),
    // --- cribl ---
    s("SCOPE_CRIBL", "cribl.transport", "edge", A, Cfg, "Cribl destination URL (tcp://host[:port], port 10090 when omitted; unix:///path, unix://@abstract, edge); setting it enables cribl."),
    s("SCOPE_CRIBL_CLOUD", "cribl.transport", "", A, Cfg, "Like SCOPE_CRIBL, and also sets TLS on with server validation and the OS trust store."),
    s("SCOPE_CRIBL_EDGE_PATH", "", "/var/run/appscope/appscope.sock", O, StartOnly, "Unix socket path the edge transport connects to (read by the library at start)."),
    s("SCOPE_CRIBL_ENABLE", "cribl.enable", "true", A, Cfg, "Enable the cribl backend (forces metrics+events on, ndjson, log level warning, configevent): true|false."),
    s("SCOPE_CRIBL_AUTHTOKEN", "cribl.authtoken", "", A, Cfg, "Token added to the start message sent to Cribl."),
    s("SCOPE_CRIBL_TLS_ENABLE", "cribl.transport.tls.enable", "false", A, Cfg, "TLS for a tcp cribl transport: true|false."),
    s("SCOPE_CRIBL_TLS_VALIDATE_SERVER", "cribl.transport.tls.validateserver", "true", A, Cfg, "Validate the cribl server's certificate: true|false."),
    s("SCOPE_CRIBL_TLS_CA_CERT_PATH", "cribl.transport.tls.cacertpath", "", A, Cfg, "PEM CA file for the cribl transport (\"\" = OS trust store)."),
    // --- tags ---
    s("SCOPE_TAG_<name>", "tags.<name>", "", A, Cfg, "Adds tag <name> to every event and metric; $VAR in the value is expanded."),
    // --- ours ---
    s("SCOPE_SNAPSHOT_DIR", "libscope.snapshot.dir", "/tmp/appscope", O, Cfg, "Where crash and snapshot bundles go, as <dir>/<pid>/."),
    s("SCOPE_STATUS_DIR", "libscope.statusdir", "", O, Cfg, "Where <pid>.json status files go; unset or \"\" = no status file."),
    s("SCOPE_SNAPSHOT_CORE_MAXSIZE", "libscope.snapshot.core_maxsize", "0", O, Cfg, "Largest core file to write, bytes with optional K/M/G suffix (1024-based); 0 = unlimited."),
    // --- command-file actions ---
    s("SCOPE_CONF_RELOAD", "", "", A, Act, "Command file only: true reloads scope.yml by the search order, an absolute path loads that file; SCOPE_* env is re-applied, then the command file's other settings."),
    s("SCOPE_CMD_SNAPSHOT", "", "", O, Act, "Command file only: true writes a snapshot bundle of the live process into SCOPE_SNAPSHOT_DIR/<pid>/ now."),
];

/// Look up a variable's row (`SCOPE_TAG_*` names map to the tag row).
pub fn spec(name: &str) -> Option<&'static SettingSpec> {
    if name.starts_with(TAG_PREFIX) {
        return ALL.iter().find(|s| s.name == "SCOPE_TAG_<name>");
    }
    ALL.iter().find(|s| s.name == name)
}

/// Check a `NAME=value` pair without applying it (the operator validates
/// `ScopeConfig.spec.env` with this). Accepts every [`Kind`].
pub fn validate(name: &str, value: &str) -> Result<(), SettingError> {
    let sp = spec(name).ok_or_else(|| SettingError::Unknown(name.to_string()))?;
    match sp.kind {
        Kind::Config => {
            let mut c = Config::default();
            c.set(name, value)
        }
        Kind::StartOnly => {
            if value.trim().is_empty() {
                Err(invalid(name, "must not be empty"))
            } else {
                Ok(())
            }
        }
        Kind::Action => parse_action(name, value).map(|_| ()),
    }
}

/// A command-file action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `SCOPE_CONF_RELOAD=true`: reload the scope.yml found by the search order.
    Reload,
    /// `SCOPE_CONF_RELOAD=/path`: load this file.
    ReloadFrom(PathBuf),
    /// `SCOPE_CMD_SNAPSHOT=true`.
    Snapshot,
    /// `SCOPE_CONF_RELOAD=false` / `SCOPE_CMD_SNAPSHOT=false`.
    Nothing,
}

/// Parse the value of an action variable.
pub fn parse_action(name: &str, value: &str) -> Result<Action, SettingError> {
    let v = value.trim();
    match name {
        "SCOPE_CONF_RELOAD" => match parse_bool(v) {
            Some(true) => Ok(Action::Reload),
            Some(false) => Ok(Action::Nothing),
            None if v.starts_with('/') => Ok(Action::ReloadFrom(PathBuf::from(v))),
            None => Err(invalid(name, "expected true, false or an absolute path")),
        },
        "SCOPE_CMD_SNAPSHOT" => match parse_bool(v) {
            Some(true) => Ok(Action::Snapshot),
            Some(false) => Ok(Action::Nothing),
            None => Err(invalid(name, "expected true or false")),
        },
        _ => Err(SettingError::Unknown(name.to_string())),
    }
}

pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> SettingError {
    SettingError::InvalidValue {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// `true`/`false`, case-insensitive, surrounding whitespace ignored.
pub fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A byte size: digits with an optional K, M or G suffix (1024-based, optional
/// trailing `B`/`iB`, case-insensitive). `0` = unlimited where used.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = t[..digits_end].parse().ok()?;
    let suffix = t[digits_end..].trim().to_ascii_lowercase();
    let mult: u64 = match suffix.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn bool_of(name: &str, v: &str) -> Result<bool, SettingError> {
    parse_bool(v)
        .ok_or_else(|| invalid(name, format!("expected true or false, got {:?}", v.trim())))
}

fn int_of(name: &str, v: &str, min: u64, max: u64) -> Result<u64, SettingError> {
    let t = v.trim();
    match t.parse::<u64>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(invalid(
            name,
            format!("expected an integer from {min} to {max}, got {t:?}"),
        )),
    }
}

/// Check that a filter regex compiles (the library matches with the `regex` crate).
pub fn check_regex(name: &str, v: &str) -> Result<(), SettingError> {
    regex::Regex::new(v)
        .map(|_| ())
        .map_err(|e| invalid(name, format!("bad regex: {}", one_line(&e.to_string()))))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn path_of(name: &str, v: &str) -> Result<PathBuf, SettingError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    if t.contains('\0') {
        return Err(invalid(name, "contains a NUL byte"));
    }
    Ok(PathBuf::from(t))
}

fn dest_of(
    name: &str,
    t: &mut Transport,
    v: &str,
    allowed: &[TransportType],
) -> Result<(), SettingError> {
    let ep = Transport::parse_dest(v).map_err(|e| invalid(name, e.to_string()))?;
    if !allowed.contains(&ep.kind()) {
        return Err(invalid(
            name,
            format!("{} is not supported here", ep.kind()),
        ));
    }
    t.set_endpoint(&ep);
    Ok(())
}

const ALL_TRANSPORTS: &[TransportType] = &[
    TransportType::Udp,
    TransportType::Tcp,
    TransportType::Unix,
    TransportType::File,
    TransportType::Edge,
];
const CRIBL_TRANSPORTS: &[TransportType] =
    &[TransportType::Tcp, TransportType::Unix, TransportType::Edge];

/// AppScope connects `SCOPE_CRIBL=tcp://host` to port 10090.
fn cribl_default_port(v: &str) -> String {
    let t = v.trim();
    if let Some(rest) = t
        .strip_prefix("tcp://")
        .or_else(|| t.strip_prefix("TCP://"))
    {
        let has_port = if rest.starts_with('[') {
            rest.contains("]:")
        } else {
            rest.contains(':')
        };
        if !has_port && !rest.is_empty() {
            return format!("{t}:10090");
        }
    }
    t.to_string()
}

fn metric_watch_of(name: &str) -> Option<MetricWatchType> {
    Some(match name {
        "SCOPE_METRIC_STATSD" => MetricWatchType::Statsd,
        "SCOPE_METRIC_FS" => MetricWatchType::Fs,
        "SCOPE_METRIC_NET" => MetricWatchType::Net,
        "SCOPE_METRIC_HTTP" => MetricWatchType::Http,
        "SCOPE_METRIC_DNS" => MetricWatchType::Dns,
        "SCOPE_METRIC_PROC" => MetricWatchType::Process,
        _ => return None,
    })
}

/// `SCOPE_EVENT_<STEM>[_NAME|_FIELD|_VALUE|_HEADER]` -> (category, suffix).
fn event_watch_of(name: &str) -> Option<(EventWatchType, &str)> {
    let rest = name.strip_prefix("SCOPE_EVENT_")?;
    for t in EventWatchType::ALL {
        if let Some(sfx) = rest.strip_prefix(t.env_stem()) {
            let ok = match t {
                EventWatchType::File | EventWatchType::Console => {
                    matches!(sfx, "" | "_NAME" | "_VALUE")
                }
                EventWatchType::Http => {
                    matches!(sfx, "" | "_NAME" | "_FIELD" | "_VALUE" | "_HEADER")
                }
                _ => matches!(sfx, "" | "_NAME" | "_FIELD" | "_VALUE"),
            };
            if ok {
                return Some((t, sfx));
            }
        }
    }
    None
}

impl Config {
    /// Apply one `SCOPE_*` setting. On error the config is unchanged.
    /// Start-only and action variables are refused with [`SettingError::NotApplicable`].
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        if let Some(tag) = name.strip_prefix(TAG_PREFIX) {
            if tag.is_empty()
                || tag
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '=')
            {
                return Err(invalid(
                    name,
                    "tag name must be non-empty, without spaces or '='",
                ));
            }
            if value.contains('\0') {
                return Err(invalid(name, "contains a NUL byte"));
            }
            self.tags.insert(tag.to_string(), value.to_string());
            return Ok(());
        }
        if let Some(t) = metric_watch_of(name) {
            *self.metric.watch.get_mut(t) = bool_of(name, value)?;
            return Ok(());
        }
        if let Some((t, sfx)) = event_watch_of(name) {
            let w = self.event.watch.get_mut(t);
            match sfx {
                "" => w.enable = bool_of(name, value)?,
                "_NAME" => {
                    check_regex(name, value)?;
                    w.name = value.to_string();
                }
                "_FIELD" => {
                    check_regex(name, value)?;
                    w.field = value.to_string();
                }
                "_VALUE" => {
                    check_regex(name, value)?;
                    w.value = value.to_string();
                }
                _ => {
                    if value.is_empty() {
                        w.headers.clear();
                    } else {
                        check_regex(name, value)?;
                        w.headers = vec![value.to_string()];
                    }
                }
            }
            return Ok(());
        }
        match name {
            "SCOPE_METRIC_ENABLE" => self.metric.enable = bool_of(name, value)?,
            "SCOPE_METRIC_FORMAT" => {
                self.metric.format.kind = MetricFormatType::parse(value)
                    .ok_or_else(|| invalid(name, "expected statsd or ndjson"))?
            }
            "SCOPE_STATSD_PREFIX" => self.metric.format.statsdprefix = value.to_string(),
            "SCOPE_STATSD_MAXLEN" => {
                self.metric.format.statsdmaxlen = int_of(name, value, 1, u32::MAX as u64)? as u32
            }
            "SCOPE_METRIC_VERBOSITY" => {
                self.metric.format.verbosity = int_of(name, value, 0, 9)? as u8
            }
            "SCOPE_METRIC_DEST" => {
                dest_of(name, &mut self.metric.transport, value, ALL_TRANSPORTS)?
            }
            "SCOPE_METRIC_TLS_ENABLE" => self.metric.transport.tls.enable = bool_of(name, value)?,
            "SCOPE_METRIC_TLS_VALIDATE_SERVER" => {
                self.metric.transport.tls.validateserver = bool_of(name, value)?
            }
            "SCOPE_METRIC_TLS_CA_CERT_PATH" => {
                self.metric.transport.tls.cacertpath = value.trim().to_string()
            }
            "SCOPE_EVENT_ENABLE" => self.event.enable = bool_of(name, value)?,
            "SCOPE_EVENT_FORMAT" => {
                self.event.format.kind =
                    EventFormatType::parse(value).ok_or_else(|| invalid(name, "expected ndjson"))?
            }
            "SCOPE_EVENT_MAXEPS" => {
                self.event.format.maxeventpersec = int_of(name, value, 0, u32::MAX as u64)? as u32
            }
            "SCOPE_ENHANCE_FS" => self.event.format.enhancefs = bool_of(name, value)?,
            "SCOPE_ALLOW_BINARY_CONSOLE" => {
                self.event.watch.console.allowbinary = bool_of(name, value)?
            }
            "SCOPE_EVENT_DEST" => dest_of(name, &mut self.event.transport, value, ALL_TRANSPORTS)?,
            "SCOPE_EVENT_TLS_ENABLE" => self.event.transport.tls.enable = bool_of(name, value)?,
            "SCOPE_EVENT_TLS_VALIDATE_SERVER" => {
                self.event.transport.tls.validateserver = bool_of(name, value)?
            }
            "SCOPE_EVENT_TLS_CA_CERT_PATH" => {
                self.event.transport.tls.cacertpath = value.trim().to_string()
            }
            "SCOPE_PAYLOAD_ENABLE" => self.payload.enable = bool_of(name, value)?,
            "SCOPE_PAYLOAD_DIR" => self.payload.dir = path_of(name, value)?,
            "SCOPE_CONFIG_EVENT" => self.libscope.configevent = bool_of(name, value)?,
            "SCOPE_SUMMARY_PERIOD" => {
                self.libscope.summaryperiod = int_of(name, value, 1, 86_400)? as u32
            }
            "SCOPE_CMD_DIR" => self.libscope.commanddir = path_of(name, value)?,
            "SCOPE_LOG_LEVEL" => {
                self.libscope.log.level = LogLevel::parse(value)
                    .ok_or_else(|| invalid(name, "expected debug, info, warning, error or none"))?
            }
            "SCOPE_LOG_DEST" => dest_of(
                name,
                &mut self.libscope.log.transport,
                value,
                ALL_TRANSPORTS,
            )?,
            "SCOPE_LOG_TLS_ENABLE" => {
                self.libscope.log.transport.tls.enable = bool_of(name, value)?
            }
            "SCOPE_LOG_TLS_VALIDATE_SERVER" => {
                self.libscope.log.transport.tls.validateserver = bool_of(name, value)?
            }
            "SCOPE_LOG_TLS_CA_CERT_PATH" => {
                self.libscope.log.transport.tls.cacertpath = value.trim().to_string()
            }
            "SCOPE_SNAPSHOT_COREDUMP" => self.libscope.snapshot.coredump = bool_of(name, value)?,
            "SCOPE_SNAPSHOT_BACKTRACE" => self.libscope.snapshot.backtrace = bool_of(name, value)?,
            "SCOPE_CRIBL" => {
                dest_of(
                    name,
                    &mut self.cribl.transport,
                    &cribl_default_port(value),
                    CRIBL_TRANSPORTS,
                )?;
                self.cribl.enable = true;
            }
            "SCOPE_CRIBL_CLOUD" => {
                dest_of(
                    name,
                    &mut self.cribl.transport,
                    &cribl_default_port(value),
                    CRIBL_TRANSPORTS,
                )?;
                self.cribl.enable = true;
                self.cribl.transport.tls.enable = true;
                self.cribl.transport.tls.validateserver = true;
                self.cribl.transport.tls.cacertpath.clear();
            }
            "SCOPE_CRIBL_ENABLE" => self.cribl.enable = bool_of(name, value)?,
            "SCOPE_CRIBL_AUTHTOKEN" => self.cribl.authtoken = value.trim().to_string(),
            "SCOPE_CRIBL_TLS_ENABLE" => self.cribl.transport.tls.enable = bool_of(name, value)?,
            "SCOPE_CRIBL_TLS_VALIDATE_SERVER" => {
                self.cribl.transport.tls.validateserver = bool_of(name, value)?
            }
            "SCOPE_CRIBL_TLS_CA_CERT_PATH" => {
                self.cribl.transport.tls.cacertpath = value.trim().to_string()
            }
            "SCOPE_SNAPSHOT_DIR" => self.snapshot_dir = path_of(name, value)?,
            "SCOPE_STATUS_DIR" => {
                self.status_dir = if value.trim().is_empty() {
                    None
                } else {
                    Some(path_of(name, value)?)
                }
            }
            "SCOPE_SNAPSHOT_CORE_MAXSIZE" => {
                self.core_maxsize = parse_size(value).ok_or_else(|| {
                    invalid(
                        name,
                        "expected bytes with an optional K, M or G suffix (0 = unlimited)",
                    )
                })?
            }
            _ => {
                return match spec(name) {
                    Some(sp) if sp.kind == Kind::StartOnly => Err(SettingError::NotApplicable {
                        name: name.to_string(),
                        reason: "only read at process start".into(),
                    }),
                    Some(sp) if sp.kind == Kind::Action => Err(SettingError::NotApplicable {
                        name: name.to_string(),
                        reason: "an action, only honoured in command files".into(),
                    }),
                    _ => Err(SettingError::Unknown(name.to_string())),
                };
            }
        }
        Ok(())
    }

    /// The current value of a config setting, spelled as [`Config::set`] takes it
    /// (`None` for start-only/action variables, unknown names, `SCOPE_CRIBL_CLOUD`,
    /// and unset tags). `set(name, get(name))` is a no-op.
    pub fn get(&self, name: &str) -> Option<String> {
        let b = |v: bool| Some(v.to_string());
        if let Some(tag) = name.strip_prefix(TAG_PREFIX) {
            return self.tags.get(tag).cloned();
        }
        if let Some(t) = metric_watch_of(name) {
            return b(self.metric.watch.get(t));
        }
        if let Some((t, sfx)) = event_watch_of(name) {
            let w = self.event.watch.get(t);
            return match sfx {
                "" => b(w.enable),
                "_NAME" => Some(w.name.clone()),
                "_FIELD" => Some(w.field.clone()),
                "_VALUE" => Some(w.value.clone()),
                _ => Some(w.headers.first().cloned().unwrap_or_default()),
            };
        }
        match name {
            "SCOPE_METRIC_ENABLE" => b(self.metric.enable),
            "SCOPE_METRIC_FORMAT" => Some(self.metric.format.kind.as_str().into()),
            "SCOPE_STATSD_PREFIX" => Some(self.metric.format.statsdprefix.clone()),
            "SCOPE_STATSD_MAXLEN" => Some(self.metric.format.statsdmaxlen.to_string()),
            "SCOPE_METRIC_VERBOSITY" => Some(self.metric.format.verbosity.to_string()),
            "SCOPE_METRIC_DEST" => Some(self.metric.transport.url()),
            "SCOPE_METRIC_TLS_ENABLE" => b(self.metric.transport.tls.enable),
            "SCOPE_METRIC_TLS_VALIDATE_SERVER" => b(self.metric.transport.tls.validateserver),
            "SCOPE_METRIC_TLS_CA_CERT_PATH" => Some(self.metric.transport.tls.cacertpath.clone()),
            "SCOPE_EVENT_ENABLE" => b(self.event.enable),
            "SCOPE_EVENT_FORMAT" => Some(self.event.format.kind.as_str().into()),
            "SCOPE_EVENT_MAXEPS" => Some(self.event.format.maxeventpersec.to_string()),
            "SCOPE_ENHANCE_FS" => b(self.event.format.enhancefs),
            "SCOPE_ALLOW_BINARY_CONSOLE" => b(self.event.watch.console.allowbinary),
            "SCOPE_EVENT_DEST" => Some(self.event.transport.url()),
            "SCOPE_EVENT_TLS_ENABLE" => b(self.event.transport.tls.enable),
            "SCOPE_EVENT_TLS_VALIDATE_SERVER" => b(self.event.transport.tls.validateserver),
            "SCOPE_EVENT_TLS_CA_CERT_PATH" => Some(self.event.transport.tls.cacertpath.clone()),
            "SCOPE_PAYLOAD_ENABLE" => b(self.payload.enable),
            "SCOPE_PAYLOAD_DIR" => Some(self.payload.dir.to_string_lossy().into_owned()),
            "SCOPE_CONFIG_EVENT" => b(self.libscope.configevent),
            "SCOPE_SUMMARY_PERIOD" => Some(self.libscope.summaryperiod.to_string()),
            "SCOPE_CMD_DIR" => Some(self.libscope.commanddir.to_string_lossy().into_owned()),
            "SCOPE_LOG_LEVEL" => Some(self.libscope.log.level.as_str().into()),
            "SCOPE_LOG_DEST" => Some(self.libscope.log.transport.url()),
            "SCOPE_LOG_TLS_ENABLE" => b(self.libscope.log.transport.tls.enable),
            "SCOPE_LOG_TLS_VALIDATE_SERVER" => b(self.libscope.log.transport.tls.validateserver),
            "SCOPE_LOG_TLS_CA_CERT_PATH" => {
                Some(self.libscope.log.transport.tls.cacertpath.clone())
            }
            "SCOPE_SNAPSHOT_COREDUMP" => b(self.libscope.snapshot.coredump),
            "SCOPE_SNAPSHOT_BACKTRACE" => b(self.libscope.snapshot.backtrace),
            "SCOPE_CRIBL" => Some(self.cribl.transport.url()),
            "SCOPE_CRIBL_ENABLE" => b(self.cribl.enable),
            "SCOPE_CRIBL_AUTHTOKEN" => Some(self.cribl.authtoken.clone()),
            "SCOPE_CRIBL_TLS_ENABLE" => b(self.cribl.transport.tls.enable),
            "SCOPE_CRIBL_TLS_VALIDATE_SERVER" => b(self.cribl.transport.tls.validateserver),
            "SCOPE_CRIBL_TLS_CA_CERT_PATH" => Some(self.cribl.transport.tls.cacertpath.clone()),
            "SCOPE_SNAPSHOT_DIR" => Some(self.snapshot_dir.to_string_lossy().into_owned()),
            "SCOPE_STATUS_DIR" => Some(
                self.status_dir
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            "SCOPE_SNAPSHOT_CORE_MAXSIZE" => Some(self.core_maxsize.to_string()),
            _ => None,
        }
    }
}

/// Render docs/reference/env-vars.md from [`ALL`].
pub fn render_env_vars_md() -> String {
    let mut out = String::new();
    out.push_str("# Environment variables (`SCOPE_*`)\n\n");
    out.push_str(
        "<!-- Generated from scope-config/src/settings.rs (settings::ALL). Do not edit by hand:\n     \
         run `UPDATE_DOCS=1 cargo test -p scope-config --test docs` after changing the table. -->\n\n",
    );
    out.push_str(
        "Every variable the library honours. **Origin** `AppScope` means AppScope 1.4's library \
         honours it with the same name, values and default; `ours` marks an appscope-k8s addition. \
         **Use** says where it is read: `config` = env at start and command files, `start` = env at \
         start only, `command` = command files only. Precedence and the command-file protocol are \
         in [config.md](config.md). Booleans are `true`/`false` (case-insensitive).\n\n",
    );
    out.push_str("| Variable | scope.yml key | Default | Origin | Use | Description |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for sp in ALL {
        let origin = match sp.origin {
            Origin::AppScope => "AppScope",
            Origin::Ours => "ours",
        };
        let kind = match sp.kind {
            Kind::Config => "config",
            Kind::StartOnly => "start",
            Kind::Action => "command",
        };
        let cell = |v: &str| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                format!("`{}`", v.replace('|', "\\|"))
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            sp.name,
            if sp.yaml_path.is_empty() {
                "-".to_string()
            } else {
                format!("`{}`", sp.yaml_path)
            },
            cell(sp.default),
            origin,
            kind,
            sp.doc
                .replace('|', "\\|")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
        ));
    }
    out
}
