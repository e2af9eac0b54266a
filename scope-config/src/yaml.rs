//! `scope.yml` parsing into [`Config`], with per-key diagnostics (never fatal).

use std::fmt;
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

use crate::model::{
    Config, CustomEntry, CustomFilter, EventFormatType, EventWatchType, LogLevel, MetricFormatType,
    MetricWatch, MetricWatchType, ProcessIdentity, ProtocolDetector,
};
use crate::settings::{check_regex, parse_bool, parse_size};
use crate::transport::{Buffering, Transport, TransportType};

/// A problem found while loading config. Never fatal: the key keeps its previous value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where: a file path, `env`, or a command file.
    pub source: String,
    /// Which key: a dotted yaml path (`metric.format.verbosity`) or a variable name.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.message)
        }
    }
}

/// Expand AppScope-style `$VAR` and `${VAR}` references. Names are letters, digits and
/// `_`; an unset variable is left as written (as AppScope does).
pub fn expand_vars(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if let Some(br) = after.strip_prefix('{') {
            if let Some(end) = br.find('}') {
                let name = &br[..end];
                if !name.is_empty() && name.chars().all(is_name) {
                    match env(name) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&rest[pos..pos + 1 + 1 + end + 1]),
                    }
                    rest = &br[end + 1..];
                    continue;
                }
            }
            out.push('$');
            rest = after;
            continue;
        }
        let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let name = &after[..len];
        match env(name) {
            Some(v) => out.push_str(&v),
            None => {
                out.push('$');
                out.push_str(name);
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Largest scope.yml we read (1 MiB).
pub const MAX_YAML_BYTES: usize = 1 << 20;

pub(crate) struct Walker<'a> {
    pub source: String,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub diags: Vec<Diagnostic>,
}

fn no_env(_: &str) -> Option<String> {
    None
}

impl Config {
    /// Parse a `scope.yml` text over the defaults. `$VAR` references are left as written
    /// (use [`Config::from_yaml_str_env`] to expand them).
    pub fn from_yaml_str(s: &str) -> (Config, Vec<Diagnostic>) {
        Self::from_yaml_str_env(s, "scope.yml", &no_env)
    }

    /// Parse a `scope.yml` text over the defaults, expanding `$VAR` from `env`.
    /// `source` names the file in diagnostics.
    pub fn from_yaml_str_env(
        s: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Config, Vec<Diagnostic>) {
        let mut cfg = Config::default();
        let diags = cfg.merge_yaml_str(s, source, env);
        (cfg, diags)
    }

    /// Parse a `scope.yml` text over this config (keys present override).
    pub fn merge_yaml_str(
        &mut self,
        s: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Diagnostic> {
        let mut w = Walker {
            source: source.to_string(),
            env,
            diags: Vec::new(),
        };
        if s.len() > MAX_YAML_BYTES {
            w.diag(
                "",
                format!("file larger than {MAX_YAML_BYTES} bytes; ignored"),
            );
            return w.diags;
        }
        match serde_yaml::from_str::<Value>(s) {
            Ok(v) => w.root(self, &v, true),
            Err(e) => w.diag("", format!("invalid YAML, file ignored: {e}")),
        }
        w.diags
    }

    /// Rebuild a config from AppScope's config-in-effect object (`{"current": {...}}`
    /// or the inner object), e.g. from a status file. Custom entries are not part of it.
    pub fn from_config_in_effect(v: &serde_json::Value) -> (Config, Vec<Diagnostic>) {
        let inner = v.get("current").unwrap_or(v);
        let mut cfg = Config::default();
        let mut w = Walker {
            source: "config-in-effect".into(),
            env: &no_env,
            diags: Vec::new(),
        };
        match serde_yaml::to_value(inner) {
            Ok(y) => w.root(&mut cfg, &y, false),
            Err(e) => w.diag("", format!("not convertible: {e}")),
        }
        (cfg, w.diags)
    }

    /// Apply every `custom` entry whose filter matches `p`, in file order.
    /// Returns the names of the entries applied and any diagnostics.
    pub fn apply_custom(&mut self, p: &ProcessIdentity) -> (Vec<String>, Vec<Diagnostic>) {
        self.apply_custom_env(p, &no_env)
    }

    /// [`Config::apply_custom`], expanding `$VAR` in the entries' values from `env`.
    pub fn apply_custom_env(
        &mut self,
        p: &ProcessIdentity,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Vec<String>, Vec<Diagnostic>) {
        let entries = self.custom.clone();
        let mut applied = Vec::new();
        let mut diags = Vec::new();
        for e in entries.iter().filter(|e| e.filter.matches(p)) {
            let mut w = Walker {
                source: format!("custom.{}", e.name),
                env,
                diags: Vec::new(),
            };
            w.root(self, &e.config, false);
            diags.extend(w.diags);
            applied.push(e.name.clone());
        }
        (applied, diags)
    }
}

fn key_str(k: &Value) -> Option<&str> {
    k.as_str()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

impl Walker<'_> {
    fn diag(&mut self, key: &str, msg: impl Into<String>) {
        self.diags.push(Diagnostic {
            source: self.source.clone(),
            key: key.to_string(),
            message: msg.into(),
        });
    }

    /// Iterate a mapping's string keys; non-mappings and non-string keys are reported.
    fn map<'v>(&mut self, path: &str, v: &'v Value) -> Vec<(String, &'v Value)> {
        match v {
            Value::Mapping(m) => self.entries(path, m),
            Value::Null => Vec::new(),
            other => {
                self.diag(
                    path,
                    format!("expected a mapping, got a {}", type_name(other)),
                );
                Vec::new()
            }
        }
    }

    fn entries<'v>(&mut self, path: &str, m: &'v Mapping) -> Vec<(String, &'v Value)> {
        let mut out = Vec::new();
        for (k, v) in m {
            match key_str(k) {
                Some(k) => out.push((k.to_string(), v)),
                None => self.diag(path, format!("non-string key of type {}", type_name(k))),
            }
        }
        out
    }

    fn unknown(&mut self, path: &str) {
        self.diag(path, "unknown key (ignored)");
    }

    /// A scalar as a string, `$VAR`-expanded. Null -> None.
    fn scalar(&mut self, path: &str, v: &Value) -> Result<Option<String>, ()> {
        let s = match v {
            Value::Null => return Ok(None),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                self.diag(
                    path,
                    format!("expected a scalar, got a {}", type_name(other)),
                );
                return Err(());
            }
        };
        Ok(Some(expand_vars(&s, self.env)))
    }

    fn set_string(&mut self, path: &str, v: &Value, slot: &mut String) {
        if let Ok(s) = self.scalar(path, v) {
            *slot = s.unwrap_or_default();
        }
    }

    fn set_regex(&mut self, path: &str, v: &Value, slot: &mut String) {
        if let Ok(Some(s)) = self.scalar(path, v) {
            match check_regex(path, &s) {
                Ok(()) => *slot = s,
                Err(e) => self.diag(path, e.to_string()),
            }
        }
    }

    fn set_path(&mut self, path: &str, v: &Value, slot: &mut PathBuf) {
        if let Ok(Some(s)) = self.scalar(path, v) {
            if s.trim().is_empty() || s.contains('\0') {
                self.diag(path, "expected a non-empty path");
            } else {
                *slot = PathBuf::from(s.trim());
            }
        }
    }

    fn set_bool(&mut self, path: &str, v: &Value, slot: &mut bool) {
        if let Ok(Some(s)) = self.scalar(path, v) {
            match parse_bool(&s) {
                Some(b) => *slot = b,
                None => self.diag(path, format!("expected true or false, got {s:?}")),
            }
        }
    }

    fn int(&mut self, path: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
        let s = self.scalar(path, v).ok()??;
        match s.trim().parse::<u64>() {
            Ok(n) if n >= min && n <= max => Some(n),
            _ => {
                self.diag(
                    path,
                    format!("expected an integer from {min} to {max}, got {s:?}"),
                );
                None
            }
        }
    }

    fn enum_of<T>(
        &mut self,
        path: &str,
        v: &Value,
        parse: fn(&str) -> Option<T>,
        expect: &str,
    ) -> Option<T> {
        let s = self.scalar(path, v).ok()??;
        let r = parse(&s);
        if r.is_none() {
            self.diag(path, format!("expected {expect}, got {s:?}"));
        }
        r
    }

    /// Top level. `allow_custom` is false inside `custom > x > config` and config-in-effect.
    pub(crate) fn root(&mut self, cfg: &mut Config, v: &Value, allow_custom: bool) {
        for (k, v) in self.map("", v) {
            match k.as_str() {
                "metric" => self.metric(cfg, v),
                "event" => self.event(cfg, v),
                "payload" => {
                    for (k2, v2) in self.map("payload", v) {
                        let p = format!("payload.{k2}");
                        match k2.as_str() {
                            "enable" => self.set_bool(&p, v2, &mut cfg.payload.enable),
                            "dir" => self.set_path(&p, v2, &mut cfg.payload.dir),
                            _ => self.unknown(&p),
                        }
                    }
                }
                "libscope" => self.libscope(cfg, v),
                "cribl" => {
                    for (k2, v2) in self.map("cribl", v) {
                        let p = format!("cribl.{k2}");
                        match k2.as_str() {
                            "enable" => self.set_bool(&p, v2, &mut cfg.cribl.enable),
                            "authtoken" => self.set_string(&p, v2, &mut cfg.cribl.authtoken),
                            "transport" => self.transport(&p, v2, &mut cfg.cribl.transport),
                            _ => self.unknown(&p),
                        }
                    }
                }
                "tags" => {
                    for (k2, v2) in self.map("tags", v) {
                        let p = format!("tags.{k2}");
                        if let Ok(s) = self.scalar(&p, v2) {
                            cfg.tags.insert(k2, s.unwrap_or_default());
                        }
                    }
                }
                "protocol" => self.protocol(cfg, v),
                "custom" if allow_custom => self.custom(cfg, v),
                "custom" => self.diag("custom", "not allowed here (ignored)"),
                _ => self.unknown(&k),
            }
        }
    }

    fn metric(&mut self, cfg: &mut Config, v: &Value) {
        for (k, v) in self.map("metric", v) {
            let p = format!("metric.{k}");
            match k.as_str() {
                "enable" => self.set_bool(&p, v, &mut cfg.metric.enable),
                "format" => {
                    for (k2, v2) in self.map(&p, v) {
                        let p2 = format!("{p}.{k2}");
                        let f = &mut cfg.metric.format;
                        match k2.as_str() {
                            "type" => {
                                if let Some(t) = self.enum_of(
                                    &p2,
                                    v2,
                                    MetricFormatType::parse,
                                    "statsd or ndjson",
                                ) {
                                    f.kind = t;
                                }
                            }
                            "statsdprefix" => self.set_string(&p2, v2, &mut f.statsdprefix),
                            "statsdmaxlen" => {
                                if let Some(n) = self.int(&p2, v2, 1, u32::MAX as u64) {
                                    f.statsdmaxlen = n as u32;
                                }
                            }
                            "verbosity" => {
                                if let Some(n) = self.int(&p2, v2, 0, 9) {
                                    f.verbosity = n as u8;
                                }
                            }
                            _ => self.unknown(&p2),
                        }
                    }
                }
                "watch" => {
                    let Value::Sequence(items) = v else {
                        if !v.is_null() {
                            self.diag(&p, format!("expected a list, got a {}", type_name(v)));
                        }
                        continue;
                    };
                    let mut watch = MetricWatch::none();
                    for (i, item) in items.iter().enumerate() {
                        let pi = format!("{p}[{i}]");
                        let mut kind = None;
                        for (k2, v2) in self.map(&pi, item) {
                            match k2.as_str() {
                                "type" => {
                                    kind = self.enum_of(
                                        &format!("{pi}.type"),
                                        v2,
                                        MetricWatchType::parse,
                                        "statsd, fs, net, http, dns or process",
                                    )
                                }
                                _ => self.unknown(&format!("{pi}.{k2}")),
                            }
                        }
                        match kind {
                            Some(t) => *watch.get_mut(t) = true,
                            None if item.get("type").is_none() => {
                                self.diag(&pi, "entry without type (ignored)")
                            }
                            None => {}
                        }
                    }
                    cfg.metric.watch = watch;
                }
                "transport" => self.transport(&p, v, &mut cfg.metric.transport),
                _ => self.unknown(&p),
            }
        }
    }

    fn event(&mut self, cfg: &mut Config, v: &Value) {
        for (k, v) in self.map("event", v) {
            let p = format!("event.{k}");
            match k.as_str() {
                "enable" => self.set_bool(&p, v, &mut cfg.event.enable),
                "format" => {
                    for (k2, v2) in self.map(&p, v) {
                        let p2 = format!("{p}.{k2}");
                        let f = &mut cfg.event.format;
                        match k2.as_str() {
                            "type" => {
                                if let Some(t) =
                                    self.enum_of(&p2, v2, EventFormatType::parse, "ndjson")
                                {
                                    f.kind = t;
                                }
                            }
                            "maxeventpersec" => {
                                if let Some(n) = self.int(&p2, v2, 0, u32::MAX as u64) {
                                    f.maxeventpersec = n as u32;
                                }
                            }
                            "enhancefs" => self.set_bool(&p2, v2, &mut f.enhancefs),
                            _ => self.unknown(&p2),
                        }
                    }
                }
                "watch" => {
                    let Value::Sequence(items) = v else {
                        if !v.is_null() {
                            self.diag(&p, format!("expected a list, got a {}", type_name(v)));
                        }
                        continue;
                    };
                    let mut watches = cfg.event.watch.clone();
                    for t in EventWatchType::ALL {
                        watches.get_mut(t).enable = false;
                    }
                    for (i, item) in items.iter().enumerate() {
                        let pi = format!("{p}[{i}]");
                        let Some(tv) = item.get("type") else {
                            self.diag(&pi, "entry without type (ignored)");
                            continue;
                        };
                        let Some(t) = self.enum_of(
                            &format!("{pi}.type"),
                            tv,
                            EventWatchType::parse,
                            "file, console, net, fs, dns, http or metric",
                        ) else {
                            continue;
                        };
                        let mut w = t.default_watch();
                        w.enable = true;
                        for (k2, v2) in self.map(&pi, item) {
                            let p2 = format!("{pi}.{k2}");
                            match k2.as_str() {
                                "type" => {}
                                "name" => self.set_regex(&p2, v2, &mut w.name),
                                "field" => self.set_regex(&p2, v2, &mut w.field),
                                "value" => self.set_regex(&p2, v2, &mut w.value),
                                "allowbinary" => self.set_bool(&p2, v2, &mut w.allowbinary),
                                "headers" => match v2 {
                                    Value::Null => w.headers.clear(),
                                    Value::Sequence(hs) => {
                                        let mut out = Vec::new();
                                        for (j, h) in hs.iter().enumerate() {
                                            let mut s = String::new();
                                            let ph = format!("{p2}[{j}]");
                                            let before = self.diags.len();
                                            self.set_regex(&ph, h, &mut s);
                                            if self.diags.len() == before && !s.is_empty() {
                                                out.push(s);
                                            }
                                        }
                                        w.headers = out;
                                    }
                                    other => self.diag(
                                        &p2,
                                        format!("expected a list, got a {}", type_name(other)),
                                    ),
                                },
                                _ => self.unknown(&p2),
                            }
                        }
                        *watches.get_mut(t) = w;
                    }
                    cfg.event.watch = watches;
                }
                "transport" => self.transport(&p, v, &mut cfg.event.transport),
                _ => self.unknown(&p),
            }
        }
    }

    fn libscope(&mut self, cfg: &mut Config, v: &Value) {
        for (k, v) in self.map("libscope", v) {
            let p = format!("libscope.{k}");
            let l = &mut cfg.libscope;
            match k.as_str() {
                "configevent" => self.set_bool(&p, v, &mut l.configevent),
                "summaryperiod" => {
                    if let Some(n) = self.int(&p, v, 1, 86_400) {
                        l.summaryperiod = n as u32;
                    }
                }
                "commanddir" => self.set_path(&p, v, &mut l.commanddir),
                "statusdir" => match self.scalar(&p, v) {
                    Ok(Some(s)) if !s.trim().is_empty() => {
                        cfg.status_dir = Some(PathBuf::from(s.trim()))
                    }
                    Ok(_) => cfg.status_dir = None,
                    Err(()) => {}
                },
                "log" => {
                    for (k2, v2) in self.map(&p, v) {
                        let p2 = format!("{p}.{k2}");
                        match k2.as_str() {
                            "level" => {
                                if let Some(lv) = self.enum_of(
                                    &p2,
                                    v2,
                                    LogLevel::parse,
                                    "debug, info, warning, error or none",
                                ) {
                                    cfg.libscope.log.level = lv;
                                }
                            }
                            "transport" => self.transport(&p2, v2, &mut cfg.libscope.log.transport),
                            _ => self.unknown(&p2),
                        }
                    }
                }
                "snapshot" => {
                    for (k2, v2) in self.map(&p, v) {
                        let p2 = format!("{p}.{k2}");
                        match k2.as_str() {
                            "coredump" => {
                                self.set_bool(&p2, v2, &mut cfg.libscope.snapshot.coredump)
                            }
                            "backtrace" => {
                                self.set_bool(&p2, v2, &mut cfg.libscope.snapshot.backtrace)
                            }
                            "dir" => self.set_path(&p2, v2, &mut cfg.snapshot_dir),
                            "core_maxsize" => {
                                if let Ok(Some(s)) = self.scalar(&p2, v2) {
                                    match parse_size(&s) {
                                        Some(n) => cfg.core_maxsize = n,
                                        None => self.diag(
                                            &p2,
                                            format!("expected bytes with an optional K, M or G suffix, got {s:?}"),
                                        ),
                                    }
                                }
                            }
                            _ => self.unknown(&p2),
                        }
                    }
                }
                _ => self.unknown(&p),
            }
        }
    }

    fn transport(&mut self, path: &str, v: &Value, t: &mut Transport) {
        for (k, v) in self.map(path, v) {
            let p = format!("{path}.{k}");
            match k.as_str() {
                "type" => {
                    if let Some(kind) =
                        self.enum_of(&p, v, TransportType::parse, "udp, tcp, unix, file or edge")
                    {
                        t.kind = kind;
                    }
                }
                "host" => self.set_string(&p, v, &mut t.host),
                "port" => {
                    if let Ok(s) = self.scalar(&p, v) {
                        let s = s.unwrap_or_default();
                        let ok = s.is_empty()
                            || matches!(s.parse::<u32>(), Ok(1..=65535))
                            || (!s.bytes().all(|b| b.is_ascii_digit())
                                && s.bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                        if ok {
                            t.port = s;
                        } else {
                            self.diag(
                                &p,
                                format!(
                                    "expected a port number 1-65535 or service name, got {s:?}"
                                ),
                            );
                        }
                    }
                }
                "path" => self.set_string(&p, v, &mut t.path),
                // AppScope's code reads `buffering`; its stock scope.yml spells `buffer`.
                "buffering" | "buffer" => {
                    if let Some(b) = self.enum_of(&p, v, Buffering::parse, "line or full") {
                        t.buffering = b;
                    }
                }
                "tls" => {
                    for (k2, v2) in self.map(&p, v) {
                        let p2 = format!("{p}.{k2}");
                        match k2.as_str() {
                            "enable" => self.set_bool(&p2, v2, &mut t.tls.enable),
                            "validateserver" => self.set_bool(&p2, v2, &mut t.tls.validateserver),
                            "cacertpath" => self.set_string(&p2, v2, &mut t.tls.cacertpath),
                            _ => self.unknown(&p2),
                        }
                    }
                }
                _ => self.unknown(&p),
            }
        }
    }

    fn protocol(&mut self, cfg: &mut Config, v: &Value) {
        let items = match v {
            Value::Null => return,
            Value::Sequence(s) => s,
            other => {
                self.diag(
                    "protocol",
                    format!("expected a list, got a {}", type_name(other)),
                );
                return;
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let pi = format!("protocol[{i}]");
            let mut d = ProtocolDetector::new("", "");
            let before = self.diags.len();
            for (k, v) in self.map(&pi, item) {
                let p = format!("{pi}.{k}");
                match k.as_str() {
                    "name" => self.set_string(&p, v, &mut d.name),
                    "regex" => self.set_regex(&p, v, &mut d.regex),
                    "binary" => self.set_bool(&p, v, &mut d.binary),
                    "detect" => self.set_bool(&p, v, &mut d.detect),
                    "payload" => self.set_bool(&p, v, &mut d.payload),
                    "len" => {
                        if let Some(n) = self.int(&p, v, 1, 65_536) {
                            d.len = n as u32;
                        }
                    }
                    _ => self.unknown(&p),
                }
            }
            if d.name.is_empty() || d.regex.is_empty() {
                if self.diags.len() == before {
                    self.diag(&pi, "entry needs both name and regex (ignored)");
                }
                continue;
            }
            if d.name.contains(['"', '\\']) {
                self.diag(&pi, "name must not contain quotes or backslashes (ignored)");
                continue;
            }
            out.push(d);
        }
        cfg.protocol = out;
    }

    fn custom(&mut self, cfg: &mut Config, v: &Value) {
        let mut out = Vec::new();
        for (name, entry) in self.map("custom", v) {
            let p = format!("custom.{name}");
            let mut filter = CustomFilter::default();
            let mut config = Value::Null;
            for (k, v) in self.map(&p, entry) {
                let pk = format!("{p}.{k}");
                match k.as_str() {
                    "filter" => {
                        for (fk, fv) in self.map(&pk, v) {
                            let pf = format!("{pk}.{fk}");
                            let Ok(Some(s)) = self.scalar(&pf, fv) else {
                                continue;
                            };
                            match fk.as_str() {
                                "procname" => filter.procname = Some(s),
                                "arg" => filter.arg = Some(s),
                                "hostname" => filter.hostname = Some(s),
                                "username" => filter.username = Some(s),
                                "env" => filter.env = Some(s),
                                "ancestor" => filter.ancestor = Some(s),
                                _ => self.unknown(&pf),
                            }
                        }
                    }
                    "config" => config = v.clone(),
                    _ => self.unknown(&pk),
                }
            }
            if filter == CustomFilter::default() {
                self.diag(&p, "entry needs at least one filter (ignored)");
                continue;
            }
            // Check the overrides now so mistakes show at load time.
            let mut scratch = Config::default();
            let new_source = format!("{} ({p}.config)", self.source);
            let saved = std::mem::replace(&mut self.source, new_source);
            self.root(&mut scratch, &config, false);
            self.source = saved;
            out.push(CustomEntry {
                name,
                filter,
                config,
            });
        }
        cfg.custom = out;
    }
}
