//! Metric line formatting: StatsD (AppScope's `name:value|type|#tag:val,...`) and NDJSON
//! (`{"type":"metric","body":{...}}`, AppScope's metric schemas). Pure functions.

use std::fmt::Write as _;

/// StatsD metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Timer,
    Histogram,
}

impl Kind {
    pub fn statsd(self) -> &'static str {
        match self {
            Kind::Counter => "c",
            Kind::Gauge => "g",
            Kind::Timer => "ms",
            Kind::Histogram => "h",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
            Kind::Histogram => "histogram",
        }
    }
}

/// A tag value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
}

/// One tag. `required` tags are always present in NDJSON output (AppScope's schemas
/// require them); other tags follow the verbosity's cardinality rule ([`tag_level`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tag<'a> {
    pub name: &'static str,
    pub val: Val<'a>,
    pub required: bool,
}

impl<'a> Tag<'a> {
    pub fn s(name: &'static str, v: &'a str) -> Self {
        Tag {
            name,
            val: Val::Str(v),
            required: false,
        }
    }
    pub fn i(name: &'static str, v: i64) -> Self {
        Tag {
            name,
            val: Val::Int(v),
            required: false,
        }
    }
    pub fn req(mut self) -> Self {
        self.required = true;
        self
    }
}

/// One metric measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    pub name: &'static str,
    pub kind: Kind,
    pub value: f64,
    pub unit: &'static str,
    pub tags: Vec<Tag<'a>>,
    /// Aggregated over the period (adds `summary:true`).
    pub summary: bool,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Statsd,
    Ndjson,
}

/// Formatting knobs taken from the config in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSettings {
    pub format: Format,
    pub statsd_prefix: String,
    pub statsd_maxlen: usize,
    pub verbosity: u8,
}

impl Default for FormatSettings {
    fn default() -> Self {
        FormatSettings {
            format: Format::Statsd,
            statsd_prefix: String::new(),
            statsd_maxlen: 512,
            verbosity: 4,
        }
    }
}

/// The process tags every metric may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcTags<'a> {
    pub proc: &'a str,
    pub pid: i64,
    pub host: &'a str,
}

/// The lowest verbosity at which a tag is added (AppScope's `scope.yml` table):
/// 1 data, unit; 2 class, proto; 3 op; 4 pid, host, proc, http_status; 5 domain, file;
/// 6 localip, remoteip, localp, port, remotep; 7 fd, args; 8 duration, numops,
/// req_per_sec, req, resp, protocol. `summary` (aggregated lines) appears from 1 on, like
/// `unit`; tags not in the table are always added.
pub fn tag_level(name: &str) -> u8 {
    match name {
        "data" | "unit" | "summary" => 1,
        "class" | "proto" => 2,
        "op" => 3,
        "pid" | "host" | "proc" | "http_status_code" | "http_status" | "uid" | "gid"
        | "username" | "groupname" => 4,
        "domain" | "file" | "http_target" => 5,
        "localip" | "remoteip" | "localp" | "port" | "remotep" | "localn" | "remoten" => 6,
        "fd" | "args" => 7,
        "duration" | "numops" | "req_per_sec" | "req" | "resp" | "protocol" => 8,
        _ => 0,
    }
}

fn fmt_num(v: f64, out: &mut String) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v:.3}");
    }
}

/// Sanitise a StatsD tag value: `,`, `|`, `#`, `:` and control characters would break
/// the line, so they become `_`.
pub(crate) fn statsd_clean(s: &str, out: &mut String) {
    for c in s.chars() {
        out.push(if matches!(c, ',' | '|' | '#' | ':') || c.is_control() {
            '_'
        } else {
            c
        });
    }
}

/// Append one StatsD tag (`|#name:value` first, `,name:value` after) unless the line
/// would then exceed `max` bytes with its newline: such a tag is dropped. `name` is
/// cleaned; `value` writes the value (cleaned by the caller where it is free text).
pub(crate) fn push_statsd_tag(
    line: &mut String,
    first: &mut bool,
    max: usize,
    name: &str,
    value: impl FnOnce(&mut String),
) {
    let mut piece = String::from(if *first { "|#" } else { "," });
    statsd_clean(name, &mut piece);
    piece.push(':');
    value(&mut piece);
    if line.len() + piece.len() + 1 > max {
        return;
    }
    line.push_str(&piece);
    *first = false;
}

/// Format `m` as one line (with trailing newline) in the configured format.
pub fn format_line(m: &Metric<'_>, set: &FormatSettings, p: &ProcTags<'_>, time: f64) -> String {
    match set.format {
        Format::Statsd => format_statsd(m, set, p),
        Format::Ndjson => format_ndjson(m, set, p, time),
    }
}

fn all_tags<'a>(m: &'a Metric<'a>, p: &'a ProcTags<'a>) -> impl Iterator<Item = Tag<'a>> + 'a {
    let lead = [
        Tag::s("proc", p.proc).req(),
        Tag::i("pid", p.pid).req(),
        Tag::s("host", p.host).req(),
    ];
    lead.into_iter()
        .chain(m.tags.iter().cloned())
        .chain(std::iter::once(Tag::s("unit", m.unit).req()))
        .chain(m.summary.then(|| Tag::s("summary", "true")))
}

/// StatsD: `<prefix><name>:<value>|<type>|#tag:val,...`, tags filtered by verbosity and
/// dropped from the end until the line fits `statsd_maxlen`.
pub fn format_statsd(m: &Metric<'_>, set: &FormatSettings, p: &ProcTags<'_>) -> String {
    let mut line = String::with_capacity(128);
    line.push_str(&set.statsd_prefix);
    line.push_str(m.name);
    line.push(':');
    fmt_num(m.value, &mut line);
    line.push('|');
    line.push_str(m.kind.statsd());
    let max = set.statsd_maxlen.max(1);
    let mut first = true;
    for t in all_tags(m, p) {
        if tag_level(t.name) > set.verbosity {
            continue;
        }
        push_statsd_tag(&mut line, &mut first, max, t.name, |piece| match t.val {
            Val::Str(s) => statsd_clean(s, piece),
            Val::Int(i) => {
                let _ = write!(piece, "{i}");
            }
        });
    }
    line.push('\n');
    line
}

/// NDJSON: `{"type":"metric","body":{"_metric","_metric_type","_value",tags...,"_time"}}`.
pub fn format_ndjson(m: &Metric<'_>, set: &FormatSettings, p: &ProcTags<'_>, time: f64) -> String {
    let mut body = serde_json::Map::new();
    body.insert("_metric".into(), m.name.into());
    body.insert("_metric_type".into(), m.kind.name().into());
    body.insert("_value".into(), json_num(m.value));
    for t in all_tags(m, p) {
        if !t.required && tag_level(t.name) > set.verbosity {
            continue;
        }
        let v = match t.val {
            Val::Str(s) => serde_json::Value::from(s),
            Val::Int(i) => serde_json::Value::from(i),
        };
        body.insert(t.name.into(), v);
    }
    body.insert("_time".into(), json_num(time));
    let v = serde_json::json!({"type": "metric", "body": body});
    let mut s = v.to_string();
    s.push('\n');
    s
}

fn json_num(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::from(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> ProcTags<'static> {
        ProcTags {
            proc: "curl",
            pid: 42,
            host: "box",
        }
    }

    fn m() -> Metric<'static> {
        Metric {
            name: "fs.read",
            kind: Kind::Counter,
            value: 4096.0,
            unit: "byte",
            tags: vec![
                Tag::s("op", "read"),
                Tag::s("file", "/etc/passwd"),
                Tag::i("fd", 3),
                Tag::i("numops", 2),
            ],
            summary: false,
        }
    }

    #[test]
    fn statsd_tags_follow_verbosity() {
        let mut s = FormatSettings {
            verbosity: 0,
            ..Default::default()
        };
        assert_eq!(format_statsd(&m(), &s, &p()), "fs.read:4096|c\n");
        s.verbosity = 4;
        assert_eq!(
            format_statsd(&m(), &s, &p()),
            "fs.read:4096|c|#proc:curl,pid:42,host:box,op:read,unit:byte\n"
        );
        s.verbosity = 9;
        assert_eq!(
            format_statsd(&m(), &s, &p()),
            "fs.read:4096|c|#proc:curl,pid:42,host:box,op:read,file:/etc/passwd,fd:3,numops:2,unit:byte\n"
        );
    }

    #[test]
    fn statsd_prefix_maxlen_and_escaping() {
        let s = FormatSettings {
            statsd_prefix: "app.".into(),
            statsd_maxlen: 40,
            verbosity: 9,
            ..Default::default()
        };
        let line = format_statsd(&m(), &s, &p());
        assert!(line.starts_with("app.fs.read:4096|c|#proc:curl"), "{line}");
        assert!(line.len() <= 41, "{line} is {} long", line.len());
        let mut mm = m();
        mm.tags = vec![Tag::s("file", "/a,b|c:d#e")];
        let s = FormatSettings {
            verbosity: 9,
            ..Default::default()
        };
        assert!(format_statsd(&mm, &s, &p()).contains("file:/a_b_c_d_e,"));
    }

    #[test]
    fn summary_and_kinds() {
        let mut mm = m();
        mm.summary = true;
        mm.kind = Kind::Timer;
        mm.tags.clear();
        mm.value = 1.5;
        let s = FormatSettings::default();
        assert_eq!(
            format_statsd(&mm, &s, &p()),
            "fs.read:1.500|ms|#proc:curl,pid:42,host:box,unit:byte,summary:true\n"
        );
    }

    #[test]
    fn ndjson_keeps_required_tags_at_low_verbosity() {
        let mut mm = m();
        mm.tags.push(Tag::s("class", "read_write").req());
        let s = FormatSettings {
            format: Format::Ndjson,
            verbosity: 0,
            ..Default::default()
        };
        let line = format_ndjson(&mm, &s, &p(), 1700000000.25);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "metric");
        let b = &v["body"];
        assert_eq!(b["_metric"], "fs.read");
        assert_eq!(b["_metric_type"], "counter");
        assert_eq!(b["_value"], 4096);
        assert_eq!(b["proc"], "curl");
        assert_eq!(b["pid"], 42);
        assert_eq!(b["unit"], "byte");
        assert_eq!(b["class"], "read_write");
        assert_eq!(b["_time"], 1700000000.25);
        assert!(b.get("file").is_none() && b.get("fd").is_none());
        assert!(line.ends_with('\n'));
    }
}
