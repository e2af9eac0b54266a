//! StatsD traffic detection (the `statsd` metric watch, `SCOPE_METRIC_STATSD`): StatsD
//! lines the application sends or receives on datagram sockets (UDP, unix datagram) are
//! captured and forwarded, once per summary period, to the library's metric destination
//! in its configured format, with the process tags added, as AppScope's metric capture
//! does. Extended StatsD (`|#key:value,...` dimensions) keeps its dimensions as tags.
//!
//! A line is `name:value|type`, then optionally `|@rate` and `|#dims`; `type` is one of
//! `c`, `g`, `ms`, `s`, `h` (AppScope's detector: a name without `:`, a value of digits
//! and dots, optionally signed here). A datagram may hold several lines.
//!
//! [`parse_line`] and [`format`] are pure; [`capture`] and [`take`] hold a small bounded
//! queue (one mutex, taken only for datagrams that contain StatsD lines).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::metrics::format::{
    Format, FormatSettings, ProcTags, push_statsd_tag, statsd_clean, tag_level,
};

/// Captured lines kept per period beyond which new ones are dropped (and counted).
pub const MAX_QUEUED: usize = 1024;
/// Longest line considered.
pub const MAX_LINE: usize = 1024;

/// One captured StatsD measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub name: String,
    /// The value as sent (digits, dots, optional sign).
    pub value: String,
    /// `c`, `g`, `ms`, `s` or `h`.
    pub kind: &'static str,
    /// Sample rate (`|@0.5`), as sent.
    pub rate: Option<String>,
    /// Extended StatsD dimensions, in order.
    pub dims: Vec<(String, String)>,
}

impl Captured {
    /// AppScope's `_metric_type` name.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            "c" => "counter",
            "g" => "gauge",
            "ms" => "timer",
            "s" => "set",
            _ => "histogram",
        }
    }
}

/// Parse one line (without its newline). `None` when it is not StatsD.
pub fn parse_line(line: &str) -> Option<Captured> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() || line.len() > MAX_LINE {
        return None;
    }
    let (name, rest) = line.split_once(':')?;
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '|') {
        return None;
    }
    let mut parts = rest.split('|');
    let value = parts.next()?;
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || !digits.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    let kind = match parts.next()? {
        "c" => "c",
        "g" => "g",
        "ms" => "ms",
        "s" => "s",
        "h" => "h",
        _ => return None,
    };
    let mut rate = None;
    let mut dims = Vec::new();
    for p in parts {
        if let Some(r) = p.strip_prefix('@') {
            if rate.is_some() || r.is_empty() || r.parse::<f64>().is_err() {
                return None;
            }
            rate = Some(r.to_string());
        } else if let Some(d) = p.strip_prefix('#') {
            if !dims.is_empty() {
                return None;
            }
            for kv in d.split(',') {
                let (k, v) = kv.split_once(':')?;
                if k.is_empty() || v.is_empty() {
                    return None;
                }
                dims.push((k.to_string(), v.to_string()));
            }
        } else {
            return None;
        }
    }
    Some(Captured {
        name: name.to_string(),
        value: value.to_string(),
        kind,
        rate,
        dims,
    })
}

/// Every StatsD line of one datagram (lines that are not StatsD are skipped).
pub fn parse_datagram(buf: &[u8]) -> Vec<Captured> {
    // Cheap rejection first: every StatsD line has a ':' and a '|'.
    if !buf.contains(&b'|') || !buf.contains(&b':') {
        return Vec::new();
    }
    let Ok(text) = std::str::from_utf8(buf) else {
        return Vec::new();
    };
    text.split('\n').filter_map(parse_line).collect()
}

/// One captured measurement as a metric line of the library's format, with the process
/// tags (`proc`, `pid`, `host`, from verbosity 4 as for the library's own metrics) after
/// the application's dimensions. StatsD lines respect `statsd_maxlen` by dropping tags.
pub fn format(c: &Captured, set: &FormatSettings, p: &ProcTags<'_>, time: f64) -> String {
    let pid = p.pid.to_string();
    let proc_tags: [(&str, &str); 3] = [("proc", p.proc), ("pid", &pid), ("host", p.host)];
    let proc_on = tag_level("proc") <= set.verbosity;
    match set.format {
        Format::Statsd => {
            let mut line = String::with_capacity(64 + c.name.len());
            line.push_str(&set.statsd_prefix);
            statsd_clean(&c.name, &mut line);
            line.push(':');
            line.push_str(&c.value);
            line.push('|');
            line.push_str(c.kind);
            if let Some(r) = &c.rate {
                line.push_str("|@");
                line.push_str(r);
            }
            let max = set.statsd_maxlen.max(1);
            let mut first = true;
            let dims = c.dims.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let procs = proc_tags.iter().copied().filter(|_| proc_on);
            for (k, v) in dims.chain(procs) {
                push_statsd_tag(&mut line, &mut first, max, k, |piece| {
                    statsd_clean(v, piece)
                });
            }
            line.push('\n');
            line
        }
        Format::Ndjson => {
            let mut body = serde_json::Map::new();
            body.insert("_metric".into(), c.name.clone().into());
            body.insert("_metric_type".into(), c.type_name().into());
            body.insert("_value".into(), value_json(&c.value));
            for (k, v) in &c.dims {
                body.insert(k.clone(), v.clone().into());
            }
            body.insert("proc".into(), p.proc.into());
            body.insert("pid".into(), p.pid.into());
            body.insert("host".into(), p.host.into());
            body.insert(
                "_time".into(),
                serde_json::Number::from_f64(time)
                    .map(serde_json::Value::Number)
                    .unwrap_or_default(),
            );
            let mut s = serde_json::json!({"type": "metric", "body": body}).to_string();
            s.push('\n');
            s
        }
    }
}

/// The value as a JSON number (integer when it has no fraction).
pub fn value_json(v: &str) -> serde_json::Value {
    if let Ok(i) = v.parse::<i64>() {
        return i.into();
    }
    v.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| v.into(), serde_json::Value::Number)
}

// ---- the capture queue ----------------------------------------------------------------

struct Queue {
    /// The process the entries belong to (a forked child starts empty).
    pid: i64,
    items: Vec<Captured>,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    pid: 0,
    items: Vec::new(),
});
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Look at one datagram the application sent or received; queue its StatsD lines.
pub fn capture(buf: &[u8]) {
    let found = parse_datagram(buf);
    if found.is_empty() {
        return;
    }
    let pid = crate::events::ident::pid();
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if q.pid != pid {
        q.pid = pid;
        q.items.clear();
    }
    for c in found {
        if q.items.len() >= MAX_QUEUED {
            DROPPED.fetch_add(1, Relaxed);
        } else {
            q.items.push(c);
        }
    }
}

/// Take this process's captured lines (called once per period).
pub fn take() -> Vec<Captured> {
    let pid = crate::events::ident::pid();
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if q.pid != pid {
        q.pid = pid;
        q.items.clear();
        return Vec::new();
    }
    std::mem::take(&mut q.items)
}

/// Lines dropped because the queue was full (since start).
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// Send the period's captured lines to the metric destination, and as `metric` events
/// when those are on. Called by the reporter once per period (and at exit).
pub fn flush(set: &FormatSettings) {
    let items = take();
    if items.is_empty() {
        return;
    }
    let id = crate::events::ident::ident();
    let p = ProcTags {
        proc: &id.procname,
        pid: crate::events::ident::pid(),
        host: &id.host,
    };
    let time = crate::metrics::now_f64();
    for c in &items {
        crate::events::sink::send_metric(format(c, set, &p, time).into_bytes());
        crate::events::statsd_event(c, time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> ProcTags<'static> {
        ProcTags {
            proc: "app",
            pid: 7,
            host: "box",
        }
    }

    #[test]
    fn plain_and_extended_lines() {
        let c = parse_line("orders.placed:3|c").unwrap();
        assert_eq!(
            (c.name.as_str(), c.value.as_str(), c.kind),
            ("orders.placed", "3", "c")
        );
        assert!(c.dims.is_empty() && c.rate.is_none());
        let c = parse_line("lat:12.5|ms|@0.5|#region:eu,tier:web").unwrap();
        assert_eq!(c.kind, "ms");
        assert_eq!(c.rate.as_deref(), Some("0.5"));
        assert_eq!(
            c.dims,
            vec![
                ("region".into(), "eu".into()),
                ("tier".into(), "web".into())
            ]
        );
        assert_eq!(parse_line("temp:-4|g").unwrap().value, "-4");
        assert_eq!(parse_line("users:42|s").unwrap().type_name(), "set");
    }

    #[test]
    fn non_statsd_is_rejected() {
        for l in [
            "",
            "no value",
            "name:|c",
            "name:abc|c",
            "name:1|x",
            "name:1",
            ":1|c",
            "GET / HTTP/1.1",
            "Host: example.com",
            "a:1|c|#broken",
            "a:1|c|junk",
            "a:1|c|@x",
        ] {
            assert!(parse_line(l).is_none(), "{l:?}");
        }
    }

    #[test]
    fn datagram_with_several_lines() {
        let v = parse_datagram(b"a:1|c\nb:2|g\n\nnot statsd\nc:3|h\n");
        let names: Vec<_> = v.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(parse_datagram(b"\x00\x01\x02binary").is_empty());
        // A DNS query is not StatsD.
        assert!(parse_datagram(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01").is_empty());
    }

    #[test]
    fn statsd_output_keeps_dims_then_adds_process_tags() {
        let c = parse_line("lat:12|ms|#region:eu").unwrap();
        let mut s = FormatSettings::default();
        assert_eq!(
            format(&c, &s, &p(), 0.0),
            "lat:12|ms|#region:eu,proc:app,pid:7,host:box\n"
        );
        s.verbosity = 0;
        s.statsd_prefix = "app.".into();
        assert_eq!(format(&c, &s, &p(), 0.0), "app.lat:12|ms|#region:eu\n");
        s.statsd_maxlen = 12;
        assert_eq!(format(&c, &s, &p(), 0.0), "app.lat:12|ms\n");
    }

    #[test]
    fn ndjson_output() {
        let c = parse_line("q.depth:5|g|#queue:a").unwrap();
        let s = FormatSettings {
            format: Format::Ndjson,
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&format(&c, &s, &p(), 1.5)).unwrap();
        assert_eq!(v["type"], "metric");
        assert_eq!(v["body"]["_metric"], "q.depth");
        assert_eq!(v["body"]["_metric_type"], "gauge");
        assert_eq!(v["body"]["_value"], 5);
        assert_eq!(v["body"]["queue"], "a");
        assert_eq!(v["body"]["pid"], 7);
        assert_eq!(v["body"]["_time"], 1.5);
    }
}
