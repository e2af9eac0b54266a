//! Events: AppScope's NDJSON envelope, per-category switches and NAME/FIELD/VALUE regex
//! filters (compiled once per config change), and the `SCOPE_EVENT_MAXEPS` rate limiter
//! with its `notice` event.
//!
//! Interposers check [`on`] (one relaxed load) before building anything; building and
//! formatting an event happens only when its category is on.

pub mod fields;
pub mod ident;
pub mod sink;

pub use fields::{FVal, Fields};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::metrics::format::{Metric, Val};

/// Category bits (`SCOPE_EVENT_{LOGFILE,CONSOLE,NET,FS,DNS,HTTP,METRIC}`).
pub const FILE: u32 = 1;
pub const CONSOLE: u32 = 2;
pub const NET: u32 = 4;
pub const FS: u32 = 8;
pub const DNS: u32 = 16;
pub const HTTP: u32 = 32;
pub const METRIC: u32 = 64;

const CATS: [(u32, scope_config::EventWatchType); 7] = [
    (FILE, scope_config::EventWatchType::File),
    (CONSOLE, scope_config::EventWatchType::Console),
    (NET, scope_config::EventWatchType::Net),
    (FS, scope_config::EventWatchType::Fs),
    (DNS, scope_config::EventWatchType::Dns),
    (HTTP, scope_config::EventWatchType::Http),
    (METRIC, scope_config::EventWatchType::Metric),
];

/// Compiled filters of one category.
#[derive(Debug, Clone)]
pub struct Filter {
    pub name: Regex,
    pub field: Regex,
    pub value: Regex,
    /// http: extra header-line regexes whose matching headers are added to events.
    pub headers: Vec<Regex>,
    pub allowbinary: bool,
}

impl Filter {
    /// Match-everything filter.
    pub fn all() -> Self {
        let a = cached_regex(".*").expect("static regex");
        Filter {
            name: a.clone(),
            field: a.clone(),
            value: a,
            headers: Vec::new(),
            allowbinary: true,
        }
    }

    /// AppScope's rule: the name regex matches the event's source, and some data field's
    /// name matches the field regex while its value matches the value regex.
    pub fn matches(&self, source: &str, data: &Map<String, Value>) -> bool {
        self.matches_with(source, data.is_empty(), data.iter(), |v| match v {
            Value::String(s) => s.as_str().into(),
            other => other.to_string().into(),
        })
    }

    /// [`Filter::matches`] for data held as [`Fields`].
    pub fn matches_fields(&self, source: &str, data: &Fields<'_>) -> bool {
        let pairs = data.as_slice().iter().map(|(k, v)| (*k, v));
        self.matches_with(source, data.is_empty(), pairs, |v| v.text())
    }

    /// The rule over `(name, value)` pairs; `text` renders a value, only for fields whose
    /// name matched.
    fn matches_with<'d, K: AsRef<str>, V: 'd>(
        &self,
        source: &str,
        empty: bool,
        mut pairs: impl Iterator<Item = (K, &'d V)>,
        text: impl Fn(&'d V) -> std::borrow::Cow<'d, str>,
    ) -> bool {
        if !matches_all(&self.name) && !self.name.is_match(source) {
            return false;
        }
        if empty || matches_all(&self.field) && matches_all(&self.value) {
            // Any field's name and value match the defaults (`.*` matches every text).
            return true;
        }
        pairs.any(|(k, v)| self.field.is_match(k.as_ref()) && self.value.is_match(&text(v)))
    }
}

/// Does `r` match every text (the default `.*`, or the empty pattern)? Skips running it.
fn matches_all(r: &Regex) -> bool {
    matches!(r.as_str(), ".*" | "")
}

/// Event settings derived from the config in effect.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    /// Category bits switched on.
    pub watch: u32,
    /// Filters by category bit index (`FILE` = 0 ... `METRIC` = 6).
    pub filters: [Filter; 7],
    /// 0 = unlimited.
    pub maxeps: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let mut filters: [Filter; 7] = std::array::from_fn(|_| Filter::all());
        filters[0].name =
            cached_regex(scope_config::model::DEFAULT_LOGFILE_NAME).expect("static regex");
        filters[1].name =
            cached_regex(scope_config::model::DEFAULT_CONSOLE_NAME).expect("static regex");
        Settings {
            enabled: true,
            watch: FILE | CONSOLE | NET | FS | DNS | HTTP,
            filters,
            maxeps: 10000,
        }
    }
}

impl Settings {
    pub fn filter(&self, bit: u32) -> &Filter {
        &self.filters[bit.trailing_zeros() as usize]
    }
}

/// A regex from the config that does not compile: the category keeps working with the
/// match-everything default and the problem is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRegex {
    pub category: &'static str,
    pub which: &'static str,
    pub error: String,
}

/// Pure: compile the config's event settings. Bad regexes are returned, not fatal.
pub fn settings_from_config(cfg: &scope_config::Config) -> (Settings, Vec<BadRegex>) {
    let e = &cfg.event;
    let mut bad = Vec::new();
    let mut s = Settings {
        enabled: e.enable,
        watch: 0,
        maxeps: e.format.maxeventpersec,
        ..Settings::default()
    };
    for (i, (bit, t)) in CATS.iter().enumerate() {
        let w = e.watch.get(*t);
        if w.enable {
            s.watch |= bit;
        }
        let mut compile = |which: &'static str, pat: &str, dflt: &Regex| match cached_regex(pat) {
            Ok(r) => r,
            Err(err) => {
                bad.push(BadRegex {
                    category: t.as_str(),
                    which,
                    error: err.to_string(),
                });
                dflt.clone()
            }
        };
        let d = s.filters[i].clone();
        let f = Filter {
            name: compile("name", &w.name, &d.name),
            field: compile("field", &w.field, &d.field),
            value: compile("value", &w.value, &d.value),
            headers: w
                .headers
                .iter()
                .filter_map(|h| match cached_regex(h) {
                    Ok(r) => Some(r),
                    Err(err) => {
                        bad.push(BadRegex {
                            category: t.as_str(),
                            which: "headers",
                            error: err.to_string(),
                        });
                        None
                    }
                })
                .collect(),
            allowbinary: w.allowbinary,
        };
        s.filters[i] = f;
    }
    (s, bad)
}

/// Compiled regexes by pattern (the default config repeats `.*` and a few names; a
/// `Regex` clone shares the compiled program). Bounded: cleared when it grows large.
static REGEX_CACHE: Mutex<Vec<(String, Regex)>> = Mutex::new(Vec::new());
const REGEX_CACHE_MAX: usize = 64;

fn cached_regex(pat: &str) -> Result<Regex, regex::Error> {
    if let Ok(c) = REGEX_CACHE.lock()
        && let Some((_, r)) = c.iter().find(|(p, _)| p == pat)
    {
        return Ok(r.clone());
    }
    let r = Regex::new(pat)?;
    if let Ok(mut c) = REGEX_CACHE.lock() {
        if c.len() >= REGEX_CACHE_MAX {
            c.clear();
        }
        c.push((pat.to_string(), r.clone()));
    }
    Ok(r)
}

static MASK: AtomicU32 = AtomicU32::new(0);

/// The settings in effect: compiled on first use (regex compilation costs milliseconds,
/// so the constructor only records the config and the category switches).
enum Slot {
    Empty,
    Pending(Box<scope_config::Config>),
    Ready(Arc<Settings>),
}

static SETTINGS: RwLock<Slot> = RwLock::new(Slot::Empty);
/// Bumped on every `apply`/`on_config`, so a compilation that raced a newer config is
/// not installed over it.
static SETTINGS_GEN: AtomicU64 = AtomicU64::new(0);

/// Apply new settings (takes effect for the very next call).
pub fn apply(s: Settings) {
    crate::proto::http::set_keep_headers(!s.filter(HTTP).headers.is_empty());
    crate::proto::http::set_detail(s.enabled && s.watch & HTTP != 0);
    MASK.store(if s.enabled { s.watch } else { 0 }, Relaxed);
    MAXEPS.store(s.maxeps, Relaxed);
    let mut slot = SETTINGS.write().unwrap_or_else(|e| e.into_inner());
    SETTINGS_GEN.fetch_add(1, Relaxed);
    *slot = Slot::Ready(Arc::new(s));
}

/// The category switches of `cfg` (cheap: no regex compiled).
pub fn watch_mask(cfg: &scope_config::Config) -> u32 {
    CATS.iter()
        .filter(|(_, t)| cfg.event.watch.get(*t).enable)
        .fold(0, |m, (bit, _)| m | bit)
}

/// Record the config's event settings. The switches and the rate limit take effect at
/// once; the regex filters are compiled on first use (see [`settings`]). Bad regexes
/// are reported by [`settings_from_config`] (the match-everything default is used).
pub fn on_config(cfg: &scope_config::Config) {
    let e = &cfg.event;
    crate::proto::http::set_keep_headers(!e.watch.http.headers.is_empty());
    let mask = if e.enable { watch_mask(cfg) } else { 0 };
    crate::proto::http::set_detail(mask & HTTP != 0);
    MASK.store(mask, Relaxed);
    MAXEPS.store(e.format.maxeventpersec, Relaxed);
    let mut slot = SETTINGS.write().unwrap_or_else(|e| e.into_inner());
    SETTINGS_GEN.fetch_add(1, Relaxed);
    *slot = Slot::Pending(Box::new(cfg.clone()));
}

/// The settings in effect (compiles the pending config's filters on first call).
pub fn settings() -> Arc<Settings> {
    let (cfg, generation) = {
        let slot = SETTINGS.read().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Slot::Ready(s) => return s.clone(),
            Slot::Empty => return Arc::new(Settings::default()),
            Slot::Pending(c) => (c.clone(), SETTINGS_GEN.load(Relaxed)),
        }
    };
    let s = Arc::new(settings_from_config(&cfg).0);
    let mut slot = SETTINGS.write().unwrap_or_else(|e| e.into_inner());
    if SETTINGS_GEN.load(Relaxed) == generation && matches!(&*slot, Slot::Pending(_)) {
        *slot = Slot::Ready(s.clone());
    }
    s
}

/// Is event category `bit` on? (one relaxed load)
#[inline]
pub fn on(bit: u32) -> bool {
    MASK.load(Relaxed) & bit != 0
}

static MAXEPS: AtomicU32 = AtomicU32::new(10000);

/// Is category `bit` on and the rate limit not yet used up this second? Interposers
/// check this before building an event.
#[inline]
pub fn want(bit: u32) -> bool {
    on(bit) && !LIMITER.saturated(crate::metrics::now_f64() as u64, MAXEPS.load(Relaxed))
}

/// One event before formatting.
#[derive(Debug, Clone)]
pub struct Event {
    pub sourcetype: &'static str,
    /// Event name (`net.open`, ...) or, for console/file events, the stream/file name.
    pub source: String,
    pub channel: u64,
    pub data: Map<String, Value>,
    pub time: f64,
}

/// Bytes of a JSON string that need an escape: 0 = none, else the letter after `\\`
/// (`u` = `\\u00XX`), as `serde_json` writes them.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Does any byte of `w` need an escape (below 0x20, `"` or `\\`)? May only err towards
/// yes when some byte does (borrows run upwards from a true hit).
fn word_needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    (below_space | zero(w ^ (LO * u64::from(b'"'))) | zero(w ^ (LO * u64::from(b'\\')))) != 0
}

/// Does any byte of `b` need an escape in a JSON string?
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    if b.len() < 8 {
        return b.iter().any(|&c| ESCAPE[c as usize] != 0);
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        word_needs_escape(u64::from_le_bytes(w))
    };
    let mut i = 0;
    while i + 8 <= b.len() {
        if word(i) {
            return true;
        }
        i += 8;
    }
    // The last few bytes: the last eight (the ones before them are clean).
    i < b.len() && word(b.len() - 8)
}

/// `s` as a JSON string literal, byte for byte what `serde_json` writes.
#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if needs_escape(b) {
        put_str_escaped(out, b);
    } else {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }
}

/// [`put_str`] of a string with bytes to escape.
#[cold]
#[inline(never)]
fn put_str_escaped(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() + 8);
    out.push(b'"');
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let e = ESCAPE[c as usize];
        if e != 0 {
            out.extend_from_slice(&b[run..i]);
            run = i + 1;
            if e == b'u' {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 0xf) as usize]);
            } else {
                out.push(b'\\');
                out.push(e);
            }
        }
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

/// Any serializable value through `serde_json` (a value that cannot be serialized
/// becomes null; writing to a Vec cannot fail otherwise).
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A JSON value: strings, numbers and literals written directly, nested values via
/// `serde_json`.
fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => put_str(out, s),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                put_u64(out, u);
            } else {
                put(out, n);
            }
        }
        other => put(out, other),
    }
}

/// Decimal digits of `n`.
#[inline]
fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A data map as a JSON object, in the map's own order (what `serde_json` writes).
fn put_map(out: &mut Vec<u8>, m: &Map<String, Value>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_str(out, k);
        out.push(b':');
        put_value(out, v);
    }
    out.push(b'}');
}

/// Pure: AppScope's envelope as one NDJSON line.
///
/// Written straight into one buffer (no `Value` tree, no copy of `data`, strings escaped
/// by hand); the bytes are those `serde_json` produces for the envelope as a `Value`
/// (keys in sorted order).
pub fn format_event(ev: &Event, id: &ident::Ident, pid: i64) -> String {
    let out = format_event_bytes(ev, id, pid);
    // Only UTF-8 text and ASCII went in.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`format_event`] as the bytes the sink takes (no UTF-8 re-validation of the line).
fn format_event_bytes(ev: &Event, id: &ident::Ident, pid: i64) -> Vec<u8> {
    format_envelope(
        ev.channel,
        ev.time,
        Escape(ev.sourcetype),
        Escape(&ev.source),
        id,
        pid,
        ev.data.len(),
        |out| put_map(out, &ev.data),
    )
}

/// A string of the envelope: one to escape, or a name from the source written as it is.
enum Text<'a> {
    Escape(&'a str),
    Static(&'static str),
}
use Text::{Escape, Static};

impl Text<'_> {
    fn len(&self) -> usize {
        match self {
            Escape(s) | Static(s) => s.len(),
        }
    }
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Escape(s) => put_str(out, s),
            Static(s) => {
                debug_assert!(!needs_escape(s.as_bytes()), "{s}");
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
        }
    }
}

/// The envelope around a `data` object written by `data` (with `n_fields` fields, a
/// capacity hint).
#[allow(clippy::too_many_arguments)]
#[inline]
fn format_envelope(
    channel: u64,
    time: f64,
    sourcetype: Text<'_>,
    source: Text<'_>,
    id: &ident::Ident,
    pid: i64,
    n_fields: usize,
    data: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        200 + id.id.len() + id.cmd.len() + id.host.len() + source.len() + 64 * n_fields,
    );
    out.extend_from_slice(b"{\"_channel\":\"");
    put_u64(&mut out, channel);
    out.extend_from_slice(b"\",\"body\":{\"_time\":");
    put(&mut out, &time);
    out.extend_from_slice(b",\"cmd\":");
    out.extend_from_slice(id.cmd_json().as_bytes());
    out.extend_from_slice(b",\"data\":");
    data(&mut out);
    out.extend_from_slice(b",\"host\":");
    out.extend_from_slice(id.host_json().as_bytes());
    out.extend_from_slice(b",\"pid\":");
    out.extend_from_slice(itoa::Buffer::new().format(pid).as_bytes());
    out.extend_from_slice(b",\"proc\":");
    out.extend_from_slice(id.procname_json().as_bytes());
    out.extend_from_slice(b",\"source\":");
    source.put(&mut out);
    out.extend_from_slice(b",\"sourcetype\":");
    sourcetype.put(&mut out);
    out.extend_from_slice(b"},\"id\":");
    out.extend_from_slice(id.id_json().as_bytes());
    out.extend_from_slice(b",\"type\":\"evt\"}\n");
    out
}

/// The rate limiter's state for one second.
#[derive(Debug, Default)]
pub struct RateLimiter {
    sec: AtomicU64,
    count: AtomicU64,
}

/// Limiter verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// First event over the limit in this second: drop it and send a notice.
    DropNotice,
    Drop,
}

impl RateLimiter {
    pub const fn new() -> Self {
        RateLimiter {
            sec: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// True when the limit for second `sec` is already used up (cheap pre-check, so
    /// callers can skip building events that would be dropped).
    pub fn saturated(&self, sec: u64, max: u32) -> bool {
        max != 0 && self.sec.load(Relaxed) == sec && self.count.load(Relaxed) > u64::from(max)
    }

    /// Count one event at wall-clock second `sec` against `max` per second (0 = no limit).
    pub fn check(&self, sec: u64, max: u32) -> Verdict {
        if max == 0 {
            return Verdict::Pass;
        }
        if self.sec.load(Relaxed) != sec {
            // New second: whoever swaps first resets the count.
            let old = self.sec.swap(sec, Relaxed);
            if old != sec {
                self.count.store(0, Relaxed);
            }
        }
        let n = self.count.fetch_add(1, Relaxed) + 1;
        if n <= u64::from(max) {
            Verdict::Pass
        } else if n == u64::from(max) + 1 {
            Verdict::DropNotice
        } else {
            Verdict::Drop
        }
    }
}

static LIMITER: RateLimiter = RateLimiter::new();
static CHANNEL: AtomicU64 = AtomicU64::new(0);

/// A new `_channel` value (unique per process and operation).
pub fn new_channel() -> u64 {
    let c = CHANNEL.fetch_add(1, Relaxed);
    if c == 0 {
        // Seed with the clock so channels differ across processes.
        let seed = crate::metrics::mono_ns() | 1;
        let _ = CHANNEL.compare_exchange(1, seed + 1, Relaxed, Relaxed);
        return seed;
    }
    c
}

/// Filter, rate-limit, format and send an event of category `bit`.
pub fn emit(bit: u32, ev: Event) {
    if !on(bit) {
        return;
    }
    let set = settings();
    if !set.filter(bit).matches(&ev.source, &ev.data) {
        return;
    }
    send_limited(&set, &ev);
}

/// Is category `bit` on and the rate limit not yet used up? Then the time to give the
/// event (read once, for the rate limit and the event).
#[inline]
pub fn want_at(bit: u32) -> Option<f64> {
    if !on(bit) {
        return None;
    }
    let t = crate::metrics::now_f64();
    (!LIMITER.saturated(t as u64, MAXEPS.load(Relaxed))).then_some(t)
}

/// [`emit`] for data held as [`Fields`]: filtered, rate-limited, then written straight
/// into the line (the same bytes as the event built with a `Map`).
pub fn emit_fields(
    bit: u32,
    sourcetype: &'static str,
    source: &'static str,
    channel: u64,
    time: f64,
    data: &mut Fields<'_>,
) {
    if !on(bit) {
        return;
    }
    let set = settings();
    if !set.filter(bit).matches_fields(source, data) {
        return;
    }
    data.sort();
    let data = &*data;
    send_with(&set, channel, time, |id, pid| {
        format_envelope(
            channel,
            time,
            Static(sourcetype),
            Static(source),
            id,
            pid,
            data.len(),
            |out| data.write(out),
        )
    });
}

fn send_limited(set: &Settings, ev: &Event) {
    send_with(set, ev.channel, ev.time, |id, pid| {
        format_event_bytes(ev, id, pid)
    })
}

/// Rate-limits one event of `channel` at `time`, formatted by `line` when it passes.
fn send_with(
    set: &Settings,
    channel: u64,
    time: f64,
    line: impl FnOnce(&ident::Ident, i64) -> Vec<u8>,
) {
    let id = ident::ident();
    let id = &id;
    let pid = ident::pid();
    match LIMITER.check(time as u64, set.maxeps) {
        Verdict::Pass => sink::send_event(line(id, pid)),
        Verdict::DropNotice => {
            let notice = Event {
                sourcetype: "metric",
                source: "notice".into(),
                channel,
                data: Map::new(),
                time,
            };
            let mut line = format_event(&notice, id, pid);
            // `data` of a notice is a string (AppScope's schema).
            let msg = format!(
                "Truncated events. Your rate exceeded {} events per second",
                set.maxeps
            );
            line = line.replacen("\"data\":{}", &format!("\"data\":{}", Value::from(msg)), 1);
            sink::send_event(line.into_bytes());
        }
        Verdict::Drop => {}
    }
}

/// Add the header lines of an HTTP message to its event's `data`, as AppScope does: the
/// `x-appscope` header always (field `x-appscope`), any other header whose whole line
/// (`Name: value`) matches one of the http watch's `headers` regexes
/// (`SCOPE_EVENT_HTTP_HEADER`) under its own name as sent. `lines` are the message's kept
/// header lines ([`crate::proto::http::Request::headers`]); fields already set (method,
/// host, ...) are not overwritten.
pub fn http_headers<'a>(d: &mut Fields<'a>, lines: &'a [String]) {
    if lines.is_empty() {
        return;
    }
    let set = settings();
    let f = set.filter(HTTP);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            continue;
        }
        let key = if name.eq_ignore_ascii_case("x-appscope") {
            "x-appscope"
        } else if f.headers.iter().any(|r| r.is_match(line)) {
            name
        } else {
            continue;
        };
        d.insert_if_absent(key, value);
    }
}

/// Mirror an individual metric to the event channel (`SCOPE_EVENT_METRIC`).
pub fn metric_event(m: &Metric<'_>, time: f64) {
    if !on(METRIC) {
        return;
    }
    let mut data = Map::new();
    data.insert("_metric".into(), m.name.into());
    data.insert("_metric_type".into(), m.kind.name().into());
    data.insert("_value".into(), Value::from(m.value));
    for t in &m.tags {
        let v = match t.val {
            Val::Str(s) => Value::from(s),
            Val::Int(i) => Value::from(i),
        };
        data.insert(t.name.into(), v);
    }
    data.insert("unit".into(), m.unit.into());
    emit(
        METRIC,
        Event {
            sourcetype: "metric",
            source: m.name.to_string(),
            channel: new_channel(),
            data,
            time,
        },
    );
}

/// Mirror a captured StatsD measurement ([`crate::proto::statsd`]) to the event channel
/// (`SCOPE_EVENT_METRIC`), like the library's own individual metrics.
pub fn statsd_event(c: &crate::proto::statsd::Captured, time: f64) {
    if !on(METRIC) {
        return;
    }
    let mut data = Map::new();
    data.insert("_metric".into(), c.name.clone().into());
    data.insert("_metric_type".into(), c.type_name().into());
    data.insert("_value".into(), crate::proto::statsd::value_json(&c.value));
    for (k, v) in &c.dims {
        data.entry(k.clone()).or_insert_with(|| v.clone().into());
    }
    emit(
        METRIC,
        Event {
            sourcetype: "metric",
            source: c.name.clone(),
            channel: new_channel(),
            data,
            time,
        },
    );
}

/// Console (`stdout`/`stderr`) or file write event: `data.message` is the text written
/// (lossy UTF-8, at most `MAX_MESSAGE` bytes). The value filter applies to the message.
pub const MAX_MESSAGE: usize = 4096;

/// Emit a console or log-file event for `buf` written to `name`.
pub fn emit_write(bit: u32, name: &str, channel: u64, buf: &[u8]) {
    if !on(bit) || buf.is_empty() {
        return;
    }
    let set = settings();
    let f = set.filter(bit);
    if !f.name.is_match(name) {
        return;
    }
    let slice = &buf[..buf.len().min(MAX_MESSAGE)];
    if bit == CONSOLE && !f.allowbinary && std::str::from_utf8(slice).is_err() {
        return;
    }
    let msg = String::from_utf8_lossy(slice);
    let msg = msg.trim_end_matches('\n');
    if msg.is_empty() || !f.value.is_match(msg) {
        return;
    }
    let mut data = Map::new();
    data.insert("message".into(), msg.into());
    let ev = Event {
        sourcetype: if bit == CONSOLE { "console" } else { "file" },
        source: name.to_string(),
        channel,
        data,
        time: crate::metrics::now_f64(),
    };
    send_limited(&set, &ev);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ident::Ident {
        ident::Ident::new(
            "curl".into(),
            "curl -s x".into(),
            "h".into(),
            "h-curl-curl -s x".into(),
        )
    }

    #[test]
    fn envelope_shape() {
        let mut data = Map::new();
        data.insert("net_peer_port".into(), 80.into());
        let ev = Event {
            sourcetype: "net",
            source: "net.open".into(),
            channel: 7,
            data,
            time: 1.5,
        };
        let v: Value = serde_json::from_str(&format_event(&ev, &id(), 12)).unwrap();
        assert_eq!(v["type"], "evt");
        assert_eq!(v["id"], "h-curl-curl -s x");
        assert_eq!(v["_channel"], "7");
        assert_eq!(v["body"]["sourcetype"], "net");
        assert_eq!(v["body"]["source"], "net.open");
        assert_eq!(v["body"]["pid"], 12);
        assert_eq!(v["body"]["cmd"], "curl -s x");
        assert_eq!(v["body"]["data"]["net_peer_port"], 80);
    }

    #[test]
    fn filters_need_name_and_a_matching_field_value_pair() {
        let f = Filter {
            name: Regex::new("^http\\.").unwrap(),
            field: Regex::new("^http_target$").unwrap(),
            value: Regex::new("^/api").unwrap(),
            headers: vec![],
            allowbinary: true,
        };
        let mut d = Map::new();
        d.insert("http_method".into(), "GET".into());
        d.insert("http_target".into(), "/api/x".into());
        assert!(f.matches("http.req", &d));
        assert!(!f.matches("net.open", &d));
        d.insert("http_target".into(), "/other".into());
        assert!(!f.matches("http.req", &d));
        // Match-everything patterns are not run but give the same answers.
        for pat in [".*", ""] {
            let all = Regex::new(pat).unwrap();
            let f = Filter {
                name: all.clone(),
                field: all.clone(),
                value: all.clone(),
                headers: vec![],
                allowbinary: true,
            };
            assert!(matches_all(&all));
            assert!(f.matches("net.open", &d) && f.matches("", &Map::new()));
            assert!(all.is_match("") && all.is_match("a\nb"));
        }
        assert!(!matches_all(&Regex::new(".+").unwrap()));
    }

    #[test]
    fn http_headers_follow_the_headers_regexes() {
        let mut cfg = scope_config::Config::default();
        cfg.event.watch.http.headers = vec!["(?i)^accept:".into(), "x-req-.*: 7".into()];
        let (s, bad) = settings_from_config(&cfg);
        assert!(bad.is_empty());
        let f = s.filter(HTTP);
        assert_eq!(f.headers.len(), 2);
        let lines: Vec<String> = [
            "ACCEPT: */*",
            "X-AppScope: t1",
            "x-req-id: 7",
            "x-req-no: 8",
            "Cookie: c",
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        // Exercise the matching rule directly (the global settings belong to other tests).
        let picked: Vec<&str> = lines
            .iter()
            .filter(|l| f.headers.iter().any(|r| r.is_match(l)))
            .map(String::as_str)
            .collect();
        assert_eq!(picked, ["ACCEPT: */*", "x-req-id: 7"]);
        cfg.event.watch.http.headers = vec!["(".into()];
        let (s, bad) = settings_from_config(&cfg);
        assert!(s.filter(HTTP).headers.is_empty());
        assert_eq!((bad[0].category, bad[0].which), ("http", "headers"));
    }

    #[test]
    fn rate_limiter_passes_max_then_one_notice_then_resets() {
        let l = RateLimiter::new();
        let v: Vec<_> = (0..5).map(|_| l.check(100, 3)).collect();
        assert_eq!(
            v,
            [
                Verdict::Pass,
                Verdict::Pass,
                Verdict::Pass,
                Verdict::DropNotice,
                Verdict::Drop
            ]
        );
        assert!(l.saturated(100, 3));
        assert!(!l.saturated(101, 3));
        assert_eq!(l.check(101, 3), Verdict::Pass);
        assert_eq!(l.check(102, 0), Verdict::Pass);
    }

    #[test]
    fn config_mapping_switches_and_bad_regex() {
        let mut cfg = scope_config::Config::default();
        cfg.event.watch.http.enable = false;
        cfg.event.watch.fs.name = "(".into();
        cfg.event.format.maxeventpersec = 5;
        let (s, bad) = settings_from_config(&cfg);
        assert_eq!(s.watch & HTTP, 0);
        assert_ne!(s.watch & NET, 0);
        assert_eq!(s.watch & METRIC, 0, "metric events are off by default");
        assert_eq!(s.maxeps, 5);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].category, bad[0].which), ("fs", "name"));
        assert!(s.filter(FS).name.is_match("anything"));
    }

    /// The envelope as a `serde_json::Value` (the straightforward formulation).
    fn format_event_via_value(ev: &Event, id: &ident::Ident, pid: i64) -> String {
        let v = serde_json::json!({
            "type": "evt",
            "id": id.id,
            "_channel": ev.channel.to_string(),
            "body": {
                "sourcetype": ev.sourcetype,
                "_time": ev.time,
                "source": ev.source,
                "host": id.host,
                "proc": id.procname,
                "cmd": id.cmd,
                "pid": pid,
                "data": Value::Object(ev.data.clone()),
            }
        });
        format!("{v}\n")
    }

    #[test]
    fn direct_envelope_matches_value_serialization() {
        let id = ident::Ident::new(
            "ngi\"nx".into(),
            "nginx -g 'daemon off;' \u{7f}\t\u{e9}".into(),
            "h\\ost".into(),
            "h\\ost-ngi\"nx-nginx".into(),
        );
        let mut data = Map::new();
        data.insert("net_peer_port".into(), Value::from(8080));
        data.insert("http_target".into(), Value::from("/a?b=\"c\"\n"));
        data.insert("duration".into(), Value::from(1.5));
        data.insert("neg".into(), Value::from(-3));
        data.insert("big".into(), Value::from(u64::MAX));
        data.insert("zero".into(), Value::from(0));
        data.insert("flags".into(), Value::from(true));
        data.insert("none".into(), Value::Null);
        let ctl: String = (0u8..0x80).map(char::from).collect();
        for n in 0..40 {
            // Escapes at every offset of the word-at-a-time scan.
            let k = format!("s{n:02}");
            let v = format!(
                "{}\"{}\\\u{1}{}",
                "a".repeat(n),
                "\u{e9}".repeat(n % 5),
                "z".repeat(n % 9)
            );
            data.insert(k, Value::from(v));
        }
        data.insert(
            format!("k{ctl}"),
            Value::from(format!("{ctl}\u{e9}\u{2028}\u{1f600}")),
        );
        data.insert(
            "nested".into(),
            serde_json::json!({"z": [1, null, true], "a": {}}),
        );
        for (time, data) in [
            (1_764_147_600.123_456, data),
            (0.0, Map::new()),
            (f64::NAN, Map::new()),
            (1e21, Map::new()),
        ] {
            let ev = Event {
                sourcetype: "http",
                source: "http.req\u{0}".into(),
                channel: u64::MAX,
                data,
                time,
            };
            assert_eq!(
                format_event(&ev, &id, -7),
                format_event_via_value(&ev, &id, -7)
            );
        }
    }

    /// Data of an http.resp event as the interposers add it, for the tests below.
    fn http_fields<'a>(lines: &'a [String]) -> Fields<'a> {
        let mut d = Fields::new();
        d.add("net_transport", "IP.TCP");
        d.add("net_peer_ip", std::net::IpAddr::from([127, 0, 0, 1]));
        d.add("net_peer_port", 55656u16);
        d.add(
            "net_host_ip",
            "::ffff:10.1.2.3".parse::<std::net::IpAddr>().unwrap(),
        );
        d.add("net_host_port", 80u16);
        d.add("http_method", "GET");
        d.add("http_target", "/a?b=\"c\"\n");
        d.add("http_scheme", "http");
        d.add("http_flavor", "1.1");
        d.add("http_status_code", 200u16);
        d.add("http_status_text", "OK");
        d.add("http_server_duration", 3u64);
        d.add("http_response_content_length", 612u64);
        d.add("pid", -7i64);
        d.add("proc_uid", 0u32);
        d.add("_value", FVal::F64(0.25));
        for l in lines {
            let (k, v) = l.split_once(':').unwrap();
            d.insert_if_absent(k, v.trim());
        }
        d
    }

    #[test]
    fn fields_envelope_matches_value_serialization() {
        let id = ident::Ident::new(
            "ngi\"nx".into(),
            "nginx -g 'daemon off;' \u{7f}\t\u{e9}".into(),
            "h\\ost".into(),
            "h\\ost-ngi\"nx-nginx".into(),
        );
        let lines: Vec<String> = ["X-AppScope: t1", "http_method: POST", "Zed: z", "a: \u{1}"]
            .iter()
            .map(|l| l.to_string())
            .collect();
        for (time, mut d) in [
            (1_764_147_600.123_456, http_fields(&lines)),
            (2.0, http_fields(&[])),
            (0.5, Fields::new()),
        ] {
            let ev = Event {
                sourcetype: "http",
                source: "http.resp".into(),
                channel: 42,
                data: d.to_map(),
                time,
            };
            d.sort();
            let line = format_envelope(
                ev.channel,
                ev.time,
                Static(ev.sourcetype),
                Static("http.resp"),
                &id,
                -7,
                d.len(),
                |o| d.write(o),
            );
            assert_eq!(
                String::from_utf8(line).unwrap(),
                format_event_via_value(&ev, &id, -7)
            );
            assert_eq!(
                format_event(&ev, &id, -7),
                format_event_via_value(&ev, &id, -7)
            );
        }
    }

    #[test]
    fn fields_filter_like_map_filter() {
        let lines = vec!["x-appscope: t1".to_string()];
        let d = http_fields(&lines);
        let m = d.to_map();
        for (name, field, value) in [
            (".*", ".*", ".*"),
            ("^http\\.", ".*", ".*"),
            ("^net\\.", ".*", ".*"),
            (".*", "^http_target$", "^/a"),
            (".*", "^http_target$", "^/b"),
            (".*", "^net_peer_ip$", "^127\\.0"),
            (".*", "^net_host_ip$", "^::ffff:10"),
            (".*", "^http_status_code$", "^200$"),
            (".*", "^pid$", "^-7$"),
            (".*", "^_value$", "^0\\.25$"),
            (".*", "^x-appscope$", "t1"),
            (".*", "nomatch", ".*"),
        ] {
            let f = Filter {
                name: Regex::new(name).unwrap(),
                field: Regex::new(field).unwrap(),
                value: Regex::new(value).unwrap(),
                headers: vec![],
                allowbinary: true,
            };
            for src in ["http.resp", "net.open"] {
                assert_eq!(
                    f.matches_fields(src, &d),
                    f.matches(src, &m),
                    "{name} {field} {value} {src}"
                );
            }
        }
    }

    #[test]
    fn maxeps_sends_notice_once() {
        let mut s = Settings {
            maxeps: 2,
            ..Default::default()
        };
        // HTTP stays on: `apply` is global, and http parser tests running meanwhile
        // expect the event-only fields (see `proto::http::set_detail`).
        s.watch = NET | HTTP;
        apply(s);
        let _ = sink::take_captured();
        let t = 4_000_000_000.0;
        for _ in 0..5 {
            emit(
                NET,
                Event {
                    sourcetype: "net",
                    source: "net.open".into(),
                    channel: 1,
                    data: Map::new(),
                    time: t,
                },
            );
        }
        let (ev, _) = sink::take_captured();
        assert_eq!(ev.len(), 3, "{ev:?}");
        let n: Value = serde_json::from_str(&ev[2]).unwrap();
        assert_eq!(n["body"]["source"], "notice");
        assert!(n["body"]["data"].as_str().unwrap().contains("exceeded 2"));
        apply(Settings::default());
    }
}
