//! The typed AppScope 1.4 configuration (`scope.yml`), plus our additions.
//!
//! Field names follow `scope.yml` keys. [`Config::default`] equals AppScope's
//! documented defaults, i.e. the stock `compat/appscope/scope.yml`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::transport::{Buffering, Tls, Transport, TransportType};

/// Default crash-bundle directory (`SCOPE_SNAPSHOT_DIR`).
pub const DEFAULT_SNAPSHOT_DIR: &str = "/tmp/appscope";
/// Default command directory (`SCOPE_CMD_DIR`).
pub const DEFAULT_COMMAND_DIR: &str = "/tmp";
/// Default file-event name regex (`SCOPE_EVENT_LOGFILE_NAME`).
pub const DEFAULT_LOGFILE_NAME: &str = r"(\/logs?\/)|(\.log$)|(\.log[.\d])";
/// Default console-event name regex (`SCOPE_EVENT_CONSOLE_NAME`).
pub const DEFAULT_CONSOLE_NAME: &str = "(stdout)|(stderr)";
/// Match-everything regex used as the default name/field/value filter.
pub const MATCH_ALL: &str = ".*";

/// The full library configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub metric: MetricConfig,
    pub event: EventConfig,
    pub payload: PayloadConfig,
    pub libscope: LibscopeConfig,
    pub cribl: CriblConfig,
    /// `tags`: `key: value` fields added to events and metrics (`SCOPE_TAG_<key>`).
    pub tags: BTreeMap<String, String>,
    /// `protocol`: user protocol detectors, in file order.
    pub protocol: Vec<ProtocolDetector>,
    /// `custom`: per-process overrides, in file order (see [`Config::apply_custom`]).
    pub custom: Vec<CustomEntry>,
    /// Ours: where crash bundles go, as `<dir>/<pid>/` (`SCOPE_SNAPSHOT_DIR`,
    /// yaml `libscope > snapshot > dir`).
    pub snapshot_dir: PathBuf,
    /// Ours: where `<pid>.json` status files go; `None` = no status file
    /// (`SCOPE_STATUS_DIR`, yaml `libscope > statusdir`).
    pub status_dir: Option<PathBuf>,
    /// Ours: maximum core file size in bytes, 0 = unlimited
    /// (`SCOPE_SNAPSHOT_CORE_MAXSIZE`, yaml `libscope > snapshot > core_maxsize`).
    pub core_maxsize: u64,
}

/// `metric` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    pub enable: bool,
    pub format: MetricFormat,
    pub watch: MetricWatch,
    pub transport: Transport,
}

/// `metric > format`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFormat {
    pub kind: MetricFormatType,
    /// Prefix for StatsD metric names ("" = none).
    pub statsdprefix: String,
    /// Maximum length of one StatsD line (> 0).
    pub statsdmaxlen: u32,
    /// 0-9.
    pub verbosity: u8,
}

/// `metric > format > type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricFormatType {
    Statsd,
    Ndjson,
}

impl MetricFormatType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricFormatType::Statsd => "statsd",
            MetricFormatType::Ndjson => "ndjson",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "statsd" => Some(Self::Statsd),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

/// `metric > watch[*]`: which metric categories are enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricWatch {
    pub statsd: bool,
    pub fs: bool,
    pub net: bool,
    pub http: bool,
    pub dns: bool,
    pub process: bool,
}

/// A metric watch category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricWatchType {
    Statsd,
    Fs,
    Net,
    Http,
    Dns,
    Process,
}

impl MetricWatchType {
    /// AppScope's order in the config-in-effect JSON.
    pub const ALL: [MetricWatchType; 6] = [
        MetricWatchType::Fs,
        MetricWatchType::Net,
        MetricWatchType::Http,
        MetricWatchType::Dns,
        MetricWatchType::Process,
        MetricWatchType::Statsd,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Statsd => "statsd",
            Self::Fs => "fs",
            Self::Net => "net",
            Self::Http => "http",
            Self::Dns => "dns",
            Self::Process => "process",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s.trim())
    }
}

impl MetricWatch {
    pub fn none() -> Self {
        MetricWatch {
            statsd: false,
            fs: false,
            net: false,
            http: false,
            dns: false,
            process: false,
        }
    }
    pub fn get(&self, t: MetricWatchType) -> bool {
        match t {
            MetricWatchType::Statsd => self.statsd,
            MetricWatchType::Fs => self.fs,
            MetricWatchType::Net => self.net,
            MetricWatchType::Http => self.http,
            MetricWatchType::Dns => self.dns,
            MetricWatchType::Process => self.process,
        }
    }
    pub fn get_mut(&mut self, t: MetricWatchType) -> &mut bool {
        match t {
            MetricWatchType::Statsd => &mut self.statsd,
            MetricWatchType::Fs => &mut self.fs,
            MetricWatchType::Net => &mut self.net,
            MetricWatchType::Http => &mut self.http,
            MetricWatchType::Dns => &mut self.dns,
            MetricWatchType::Process => &mut self.process,
        }
    }
}

impl Default for MetricWatch {
    fn default() -> Self {
        MetricWatch {
            statsd: true,
            fs: true,
            net: true,
            http: true,
            dns: true,
            process: true,
        }
    }
}

/// `event` section.
#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    pub enable: bool,
    pub format: EventFormat,
    pub watch: EventWatches,
    pub transport: Transport,
}

/// `event > format`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFormat {
    /// Always ndjson in AppScope 1.4.
    pub kind: EventFormatType,
    /// Event rate limit; 0 = unlimited.
    pub maxeventpersec: u32,
    pub enhancefs: bool,
}

/// `event > format > type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormatType {
    Ndjson,
}

impl EventFormatType {
    pub fn as_str(self) -> &'static str {
        "ndjson"
    }
    pub fn parse(s: &str) -> Option<Self> {
        (s.trim().eq_ignore_ascii_case("ndjson")).then_some(Self::Ndjson)
    }
}

/// An event watch category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventWatchType {
    File,
    Console,
    Net,
    Fs,
    Dns,
    Http,
    Metric,
}

impl EventWatchType {
    /// Order used in the config-in-effect JSON (matches AppScope's start-message schema).
    pub const ALL: [EventWatchType; 7] = [
        EventWatchType::File,
        EventWatchType::Console,
        EventWatchType::Http,
        EventWatchType::Net,
        EventWatchType::Fs,
        EventWatchType::Dns,
        EventWatchType::Metric,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Console => "console",
            Self::Net => "net",
            Self::Fs => "fs",
            Self::Dns => "dns",
            Self::Http => "http",
            Self::Metric => "metric",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s.trim())
    }
    /// The `SCOPE_EVENT_<X>` stem for this category (file is `LOGFILE`).
    pub fn env_stem(self) -> &'static str {
        match self {
            Self::File => "LOGFILE",
            Self::Console => "CONSOLE",
            Self::Net => "NET",
            Self::Fs => "FS",
            Self::Dns => "DNS",
            Self::Http => "HTTP",
            Self::Metric => "METRIC",
        }
    }
    /// The default settings of this category (when listed in `event > watch`).
    pub fn default_watch(self) -> EventWatch {
        let name = match self {
            Self::File => DEFAULT_LOGFILE_NAME,
            Self::Console => DEFAULT_CONSOLE_NAME,
            _ => MATCH_ALL,
        };
        EventWatch {
            enable: self != Self::Metric,
            name: name.to_string(),
            field: MATCH_ALL.to_string(),
            value: MATCH_ALL.to_string(),
            headers: Vec::new(),
            allowbinary: true,
        }
    }
}

/// One `event > watch[*]` entry. Categories not listed are kept with `enable: false`
/// so that `SCOPE_EVENT_<X>=true` re-enables them with their filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWatch {
    pub enable: bool,
    /// Regex on the event name (file name, stream, ...).
    pub name: String,
    /// Regex on field names.
    pub field: String,
    /// Regex on field values.
    pub value: String,
    /// http only: regexes matched against whole header lines.
    pub headers: Vec<String>,
    /// console only: emit binary data.
    pub allowbinary: bool,
}

/// All event watch categories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWatches {
    pub file: EventWatch,
    pub console: EventWatch,
    pub net: EventWatch,
    pub fs: EventWatch,
    pub dns: EventWatch,
    pub http: EventWatch,
    pub metric: EventWatch,
}

impl EventWatches {
    pub fn get(&self, t: EventWatchType) -> &EventWatch {
        match t {
            EventWatchType::File => &self.file,
            EventWatchType::Console => &self.console,
            EventWatchType::Net => &self.net,
            EventWatchType::Fs => &self.fs,
            EventWatchType::Dns => &self.dns,
            EventWatchType::Http => &self.http,
            EventWatchType::Metric => &self.metric,
        }
    }
    pub fn get_mut(&mut self, t: EventWatchType) -> &mut EventWatch {
        match t {
            EventWatchType::File => &mut self.file,
            EventWatchType::Console => &mut self.console,
            EventWatchType::Net => &mut self.net,
            EventWatchType::Fs => &mut self.fs,
            EventWatchType::Dns => &mut self.dns,
            EventWatchType::Http => &mut self.http,
            EventWatchType::Metric => &mut self.metric,
        }
    }
}

impl Default for EventWatches {
    fn default() -> Self {
        EventWatches {
            file: EventWatchType::File.default_watch(),
            console: EventWatchType::Console.default_watch(),
            net: EventWatchType::Net.default_watch(),
            fs: EventWatchType::Fs.default_watch(),
            dns: EventWatchType::Dns.default_watch(),
            http: EventWatchType::Http.default_watch(),
            metric: EventWatchType::Metric.default_watch(),
        }
    }
}

/// `payload` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadConfig {
    pub enable: bool,
    pub dir: PathBuf,
}

/// `libscope` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LibscopeConfig {
    pub configevent: bool,
    /// Seconds, >= 1.
    pub summaryperiod: u32,
    pub commanddir: PathBuf,
    pub log: LogConfig,
    pub snapshot: SnapshotConfig,
}

/// `libscope > log`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub transport: Transport,
}

/// `libscope > log > level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    None,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `libscope > snapshot`: what to capture on a fatal signal (runtime-changeable).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotConfig {
    pub coredump: bool,
    pub backtrace: bool,
}

/// `cribl` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CriblConfig {
    pub enable: bool,
    /// "" = none.
    pub authtoken: String,
    pub transport: Transport,
}

/// One `protocol[*]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolDetector {
    pub name: String,
    pub regex: String,
    pub binary: bool,
    pub len: u32,
    pub detect: bool,
    pub payload: bool,
}

impl ProtocolDetector {
    pub fn new(name: &str, regex: &str) -> Self {
        ProtocolDetector {
            name: name.to_string(),
            regex: regex.to_string(),
            binary: false,
            len: 256,
            detect: true,
            payload: false,
        }
    }
}

/// One `custom > <name>` entry: `config` applies when every `filter` matches.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomEntry {
    pub name: String,
    pub filter: CustomFilter,
    /// Raw `config` mapping (same schema as the top level, without `custom`).
    pub config: serde_yaml::Value,
}

/// `custom > <name> > filter`. At least one is set; all set ones must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomFilter {
    pub procname: Option<String>,
    pub arg: Option<String>,
    pub hostname: Option<String>,
    pub username: Option<String>,
    /// `NAME` or `NAME=value`.
    pub env: Option<String>,
    pub ancestor: Option<String>,
}

/// What a `custom` filter is matched against.
#[derive(Debug, Clone, Default)]
pub struct ProcessIdentity {
    /// Basename of the executable.
    pub procname: String,
    /// Full command line, arguments separated by spaces.
    pub cmdline: String,
    pub hostname: String,
    pub username: String,
    /// The process environment.
    pub env: Vec<(String, String)>,
    /// Basenames of parent, grandparent, ...
    pub ancestors: Vec<String>,
}

impl CustomFilter {
    /// True when at least one filter is set and all set filters match.
    pub fn matches(&self, p: &ProcessIdentity) -> bool {
        let mut any = false;
        let mut check = |opt: &Option<String>, f: &dyn Fn(&str) -> bool| -> bool {
            match opt {
                Some(v) => {
                    any = true;
                    f(v)
                }
                None => true,
            }
        };
        let ok = check(&self.procname, &|v| p.procname == v)
            && check(&self.arg, &|v| p.cmdline.contains(v))
            && check(&self.hostname, &|v| p.hostname == v)
            && check(&self.username, &|v| p.username == v)
            && check(&self.env, &|v| match v.split_once('=') {
                Some((n, val)) => p.env.iter().any(|(k, x)| k == n && x == val),
                None => p.env.iter().any(|(k, _)| k == v),
            })
            && check(&self.ancestor, &|v| p.ancestors.iter().any(|a| a == v));
        ok && any
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metric: MetricConfig {
                enable: true,
                format: MetricFormat {
                    kind: MetricFormatType::Statsd,
                    statsdprefix: String::new(),
                    statsdmaxlen: 512,
                    verbosity: 4,
                },
                watch: MetricWatch::default(),
                transport: Transport {
                    kind: TransportType::Udp,
                    host: "127.0.0.1".into(),
                    port: "8125".into(),
                    path: String::new(),
                    buffering: Buffering::Line,
                    tls: Tls::default(),
                },
            },
            event: EventConfig {
                enable: true,
                format: EventFormat {
                    kind: EventFormatType::Ndjson,
                    maxeventpersec: 10000,
                    enhancefs: true,
                },
                watch: EventWatches::default(),
                transport: Transport {
                    kind: TransportType::Tcp,
                    host: "127.0.0.1".into(),
                    port: "9109".into(),
                    path: String::new(),
                    buffering: Buffering::Line,
                    tls: Tls::default(),
                },
            },
            payload: PayloadConfig {
                enable: false,
                dir: PathBuf::from("/tmp"),
            },
            libscope: LibscopeConfig {
                configevent: true,
                summaryperiod: 10,
                commanddir: PathBuf::from(DEFAULT_COMMAND_DIR),
                log: LogConfig {
                    level: LogLevel::Warning,
                    transport: Transport {
                        kind: TransportType::File,
                        host: String::new(),
                        port: String::new(),
                        path: "/tmp/scope.log".into(),
                        buffering: Buffering::Line,
                        tls: Tls::default(),
                    },
                },
                snapshot: SnapshotConfig::default(),
            },
            cribl: CriblConfig {
                enable: true,
                authtoken: String::new(),
                transport: Transport {
                    kind: TransportType::Edge,
                    host: "127.0.0.1".into(),
                    port: "10090".into(),
                    path: String::new(),
                    buffering: Buffering::Line,
                    tls: Tls::default(),
                },
            },
            tags: BTreeMap::new(),
            protocol: Vec::new(),
            custom: Vec::new(),
            snapshot_dir: PathBuf::from(DEFAULT_SNAPSHOT_DIR),
            status_dir: None,
            core_maxsize: 0,
        }
    }
}

impl Config {
    /// An explicit destination wins over the cribl default.
    ///
    /// AppScope 1.4's stock config enables `cribl` (transport `edge`), which
    /// silently routes metrics and events away from `SCOPE_EVENT_DEST` /
    /// `SCOPE_METRIC_DEST`. A user who names a destination means it: when the
    /// settings given together (the process env, or one command file) include
    /// `SCOPE_EVENT_DEST` or `SCOPE_METRIC_DEST` and none of `SCOPE_CRIBL_ENABLE`,
    /// `SCOPE_CRIBL` or `SCOPE_CRIBL_CLOUD`, cribl is turned off. Setting a cribl
    /// variable alongside keeps AppScope's behaviour. Returns whether it changed.
    pub fn explicit_dest_overrides_cribl<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let (mut dest, mut cribl) = (false, false);
        for n in names {
            match n {
                "SCOPE_EVENT_DEST" | "SCOPE_METRIC_DEST" => dest = true,
                "SCOPE_CRIBL_ENABLE" | "SCOPE_CRIBL" | "SCOPE_CRIBL_CLOUD" => cribl = true,
                _ => {}
            }
        }
        if dest && !cribl && self.cribl.enable {
            self.cribl.enable = false;
            return true;
        }
        false
    }

    /// AppScope's `cribl` forcing: when `cribl > enable` is true, metrics and
    /// events are forced on, metrics to ndjson, log level to warning and
    /// configevent to true (both then go over the cribl transport; see
    /// [`Config::metric_transport`]). Called by [`crate::load`] after env and
    /// by [`crate::cmdfile::CommandFile::apply`].
    pub fn apply_cribl_forcing(&mut self) {
        if self.cribl.enable {
            self.metric.enable = true;
            self.metric.format.kind = MetricFormatType::Ndjson;
            self.event.enable = true;
            self.libscope.log.level = LogLevel::Warning;
            self.libscope.configevent = true;
        }
    }

    /// The transport metrics actually use: the cribl one when cribl is enabled.
    pub fn metric_transport(&self) -> &Transport {
        if self.cribl.enable {
            &self.cribl.transport
        } else {
            &self.metric.transport
        }
    }

    /// The transport events actually use: the cribl one when cribl is enabled.
    pub fn event_transport(&self) -> &Transport {
        if self.cribl.enable {
            &self.cribl.transport
        } else {
            &self.event.transport
        }
    }
}
