//! Metrics: lock-free aggregation per summary period, AppScope names and tags, StatsD or
//! NDJSON output.
//!
//! Interposers record through [`AGG`]'s counters into a block of the calling thread
//! ([`local`]: plain relaxed stores, no lock prefix, no allocation and no syscall of
//! ours on that path); the reporter sums the blocks once per period. Depending on `SCOPE_METRIC_VERBOSITY`, some groups are not
//! aggregated but sent as one metric line per call ([`individual`]), as AppScope does:
//! 5 errors, 6 fs open/close and DNS, 7 fs stat and net open/close, 8 seek,
//! 9 fs read/write and net send/recv. [`flush_period`] (called by the reporter thread)
//! formats the period's aggregates plus the `proc.*` gauges and sends them.

pub mod clock;
pub mod format;
pub mod local;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use format::{FormatSettings, Kind, Metric, ProcTags, Tag};

/// Watch bits (`SCOPE_METRIC_{FS,NET,HTTP,DNS,PROC}`).
pub const FS: u32 = 1;
pub const NET: u32 = 2;
pub const HTTP: u32 = 4;
pub const DNS: u32 = 8;
pub const PROC: u32 = 16;
pub const STATSD: u32 = 32;
pub const ALL: u32 = FS | NET | HTTP | DNS | PROC | STATSD;

/// Verbosity from which a group is no longer aggregated (one line per call).
pub const INDIV_ERR: u8 = 5;
pub const INDIV_FS_OPEN: u8 = 6;
pub const INDIV_DNS: u8 = 6;
pub const INDIV_STAT: u8 = 7;
pub const INDIV_NET_OPEN: u8 = 7;
pub const INDIV_SEEK: u8 = 8;
pub const INDIV_RW: u8 = 9;

/// Metric settings derived from the config in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    pub watch: u32,
    pub fmt: FormatSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            watch: ALL,
            fmt: FormatSettings::default(),
        }
    }
}

static ENABLED_MASK: AtomicU32 = AtomicU32::new(0);
static VERBOSITY: AtomicU8 = AtomicU8::new(4);
static SETTINGS: RwLock<Option<Arc<Settings>>> = RwLock::new(None);
static STARTED: AtomicBool = AtomicBool::new(false);

/// Apply new settings (called at start and after each config change; takes effect for
/// the very next call and period).
pub fn apply(s: Settings) {
    VERBOSITY.store(s.fmt.verbosity.min(9), Relaxed);
    ENABLED_MASK.store(if s.enabled { s.watch } else { 0 }, Relaxed);
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(s));
}

/// Map the config in effect to [`Settings`] and apply them.
pub fn on_config(cfg: &scope_config::Config) {
    apply(settings_from_config(cfg));
}

/// Pure mapping from the config model to metric settings.
pub fn settings_from_config(cfg: &scope_config::Config) -> Settings {
    let m = &cfg.metric;
    let w = &m.watch;
    let mut watch = 0;
    for (on, bit) in [
        (w.fs, FS),
        (w.net, NET),
        (w.http, HTTP),
        (w.dns, DNS),
        (w.process, PROC),
        (w.statsd, STATSD),
    ] {
        if on {
            watch |= bit;
        }
    }
    Settings {
        enabled: m.enable,
        watch,
        fmt: FormatSettings {
            format: match m.format.kind {
                scope_config::MetricFormatType::Ndjson => format::Format::Ndjson,
                scope_config::MetricFormatType::Statsd => format::Format::Statsd,
            },
            statsd_prefix: m.format.statsdprefix.clone(),
            statsd_maxlen: m.format.statsdmaxlen as usize,
            verbosity: m.format.verbosity.min(9),
        },
    }
}

/// The settings in effect.
pub fn settings() -> Arc<Settings> {
    SETTINGS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| Arc::new(Settings::default()))
}

/// Is the metric group `bit` on? (one relaxed load)
#[inline]
pub fn on(bit: u32) -> bool {
    ENABLED_MASK.load(Relaxed) & bit != 0
}

/// Should a call of a group with threshold `level` be sent individually?
#[inline]
pub fn indiv(level: u8) -> bool {
    VERBOSITY.load(Relaxed) >= level
}

/// Current verbosity.
pub fn verbosity() -> u8 {
    VERBOSITY.load(Relaxed)
}

/// A counter of [`AGG`]. Adding counts into the calling thread's block (see [`local`]);
/// the atomic itself takes only what threads without a block count, and counters that
/// are not part of `AGG`.
#[derive(Debug, Default)]
pub struct Ctr(AtomicU64);

impl Ctr {
    pub const fn new() -> Self {
        Ctr(AtomicU64::new(0))
    }
    /// This counter's slot in a per-thread block, when it is a field of [`AGG`].
    #[inline]
    fn slot(&self) -> Option<usize> {
        let off = (self as *const Ctr as usize).wrapping_sub(&AGG as *const Agg as usize);
        (off < std::mem::size_of::<Agg>()).then_some(off / 8)
    }
    #[inline]
    pub fn add(&self, n: u64) {
        if let Some(i) = self.slot()
            && local::add(i, n)
        {
            return;
        }
        self.0.fetch_add(n, Relaxed);
    }
    /// [`Ctr::add`] into a block already looked up with [`local::mine`].
    #[inline]
    pub fn add_in(&self, b: Option<&local::Block>, n: u64) {
        match (b, self.slot()) {
            (Some(b), Some(i)) => b.add(i, n),
            _ => {
                self.0.fetch_add(n, Relaxed);
            }
        }
    }
    /// Takes what was counted since the last take (the global part plus `threads`, the
    /// per-thread totals collected by [`local::collect`]).
    fn take_with(&self, threads: &[u64; local::SLOTS]) -> u64 {
        let t = self.slot().map_or(0, |i| threads[i]);
        self.0.swap(0, Relaxed).wrapping_add(t)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Net traffic classes (`class` tag of net.rx/net.tx).
pub const CLASSES: [&str; 5] = ["inet_tcp", "inet_udp", "unix_tcp", "unix_udp", "other"];
/// fs.error classes.
pub const FS_ERR_CLASSES: [&str; 3] = ["open_close", "read_write", "stat"];
/// net.error classes.
pub const NET_ERR_CLASSES: [&str; 2] = ["connection", "rx_tx"];

/// The period's aggregates. `repr(C)` with 8-byte fields only: field `i` is slot `i` of a
/// per-thread block ([`local`]).
#[derive(Debug)]
#[repr(C)]
pub struct Agg {
    pub fs_open: Ctr,
    pub fs_close: Ctr,
    pub fs_read_bytes: Ctr,
    pub fs_read_ops: Ctr,
    pub fs_write_bytes: Ctr,
    pub fs_write_ops: Ctr,
    pub fs_seek: Ctr,
    pub fs_stat: Ctr,
    pub fs_dur_us: Ctr,
    /// Durations measured in [`clock`] ticks (converted when the period is reported).
    pub fs_dur_ticks: Ctr,
    pub fs_dur_ops: Ctr,
    pub fs_err: [Ctr; 3],
    pub net_open: Ctr,
    pub net_close: Ctr,
    pub net_rx_bytes: [Ctr; 5],
    pub net_rx_ops: [Ctr; 5],
    pub net_tx_bytes: [Ctr; 5],
    pub net_tx_ops: [Ctr; 5],
    pub net_dur_ms: Ctr,
    pub net_dur_ops: Ctr,
    pub net_err: [Ctr; 2],
    pub dns_req: Ctr,
    /// Gauges: currently open TCP / UDP sockets.
    pub tcp_open: AtomicI64,
    pub udp_open: AtomicI64,
}

/// The global aggregates.
pub static AGG: Agg = Agg {
    fs_open: Ctr::new(),
    fs_close: Ctr::new(),
    fs_read_bytes: Ctr::new(),
    fs_read_ops: Ctr::new(),
    fs_write_bytes: Ctr::new(),
    fs_write_ops: Ctr::new(),
    fs_seek: Ctr::new(),
    fs_stat: Ctr::new(),
    fs_dur_us: Ctr::new(),
    fs_dur_ticks: Ctr::new(),
    fs_dur_ops: Ctr::new(),
    fs_err: [Ctr::new(), Ctr::new(), Ctr::new()],
    net_open: Ctr::new(),
    net_close: Ctr::new(),
    net_rx_bytes: [Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new()],
    net_rx_ops: [Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new()],
    net_tx_bytes: [Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new()],
    net_tx_ops: [Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new(), Ctr::new()],
    net_dur_ms: Ctr::new(),
    net_dur_ops: Ctr::new(),
    net_err: [Ctr::new(), Ctr::new()],
    dns_req: Ctr::new(),
    tcp_open: AtomicI64::new(0),
    udp_open: AtomicI64::new(0),
};

/// HTTP aggregate for one (target, status) pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpAgg {
    pub target: String,
    pub status: u16,
    pub reqs: u64,
    pub server_ms: f64,
    pub server_ops: u64,
    pub client_ms: f64,
    pub client_ops: u64,
    pub req_len: u64,
    pub req_len_ops: u64,
    pub resp_len: u64,
    pub resp_len_ops: u64,
}

/// Distinct (target, status) pairs kept per period; more are folded into target `other`.
pub const HTTP_AGG_MAX: usize = 64;
static HTTP_AGG: Mutex<Vec<HttpAgg>> = Mutex::new(Vec::new());

/// One completed HTTP exchange as seen by the library.
#[derive(Debug, Clone, Default)]
pub struct HttpSample<'a> {
    pub target: &'a str,
    pub status: u16,
    pub server_ms: Option<f64>,
    pub client_ms: Option<f64>,
    pub req_len: Option<u64>,
    pub resp_len: Option<u64>,
}

/// Add an HTTP exchange to the period's aggregate.
pub fn record_http(s: &HttpSample<'_>) {
    if !on(HTTP) {
        return;
    }
    let mut v = HTTP_AGG.lock().unwrap_or_else(|e| e.into_inner());
    http_merge(&mut v, s);
}

/// Pure: merge a sample into a bounded aggregate list.
pub fn http_merge(v: &mut Vec<HttpAgg>, s: &HttpSample<'_>) {
    let target = if v.len() >= HTTP_AGG_MAX
        && !v
            .iter()
            .any(|a| a.target == s.target && a.status == s.status)
    {
        "other"
    } else {
        s.target
    };
    let idx = match v
        .iter()
        .position(|a| a.target == target && a.status == s.status)
    {
        Some(i) => i,
        None => {
            v.push(HttpAgg {
                target: target.to_string(),
                status: s.status,
                ..Default::default()
            });
            v.len() - 1
        }
    };
    let a = &mut v[idx];
    a.reqs += 1;
    if let Some(d) = s.server_ms {
        a.server_ms += d;
        a.server_ops += 1;
    }
    if let Some(d) = s.client_ms {
        a.client_ms += d;
        a.client_ops += 1;
    }
    if let Some(n) = s.req_len {
        a.req_len += n;
        a.req_len_ops += 1;
    }
    if let Some(n) = s.resp_len {
        a.resp_len += n;
        a.resp_len_ops += 1;
    }
}

/// Pure: the metric lines for the HTTP aggregates.
pub fn http_metrics(v: &[HttpAgg]) -> Vec<Metric<'_>> {
    let mut out = Vec::new();
    for a in v {
        let base = |numops: Option<u64>| {
            let mut t = vec![Tag::s("http_target", &a.target).req()];
            if let Some(n) = numops {
                t.push(Tag::i("numops", n as i64).req());
            }
            t
        };
        let mut t = base(None);
        t.push(Tag::i("http_status_code", i64::from(a.status)).req());
        out.push(Metric {
            name: "http.req",
            kind: Kind::Counter,
            value: a.reqs as f64,
            unit: "request",
            tags: t,
            summary: true,
        });
        if a.server_ops > 0 {
            out.push(Metric {
                name: "http.duration.server",
                kind: Kind::Timer,
                value: (a.server_ms / a.server_ops as f64).round(),
                unit: "millisecond",
                tags: base(Some(a.server_ops)),
                summary: true,
            });
        }
        if a.client_ops > 0 {
            out.push(Metric {
                name: "http.duration.client",
                kind: Kind::Timer,
                value: (a.client_ms / a.client_ops as f64).round(),
                unit: "millisecond",
                tags: base(Some(a.client_ops)),
                summary: true,
            });
        }
        if a.req_len_ops > 0 {
            out.push(Metric {
                name: "http.req.content_length",
                kind: Kind::Counter,
                value: a.req_len as f64,
                unit: "byte",
                tags: base(Some(a.req_len_ops)),
                summary: true,
            });
        }
        if a.resp_len_ops > 0 {
            out.push(Metric {
                name: "http.resp.content_length",
                kind: Kind::Counter,
                value: a.resp_len as f64,
                unit: "byte",
                tags: base(Some(a.resp_len_ops)),
                summary: true,
            });
        }
    }
    out
}

/// Listening socket reported as `net.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub fd: i32,
    pub proto: &'static str,
    pub port: u16,
}

/// Snapshot of the period's counters (taken and reset atomically per counter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub fs_open: u64,
    pub fs_close: u64,
    pub fs_read: (u64, u64),
    pub fs_write: (u64, u64),
    pub fs_seek: u64,
    pub fs_stat: u64,
    pub fs_dur: (u64, u64),
    pub fs_err: [u64; 3],
    pub net_open: u64,
    pub net_close: u64,
    pub net_rx: [(u64, u64); 5],
    pub net_tx: [(u64, u64); 5],
    pub net_dur: (u64, u64),
    pub net_err: [u64; 2],
    pub dns_req: u64,
    pub tcp_open: i64,
    pub udp_open: i64,
}

/// Serialises takers of the period's counters (the reporter's tick and the exit flush
/// already exclude each other; this also covers tests). A flag, not a mutex: a forked
/// child resets it.
static TAKING: AtomicBool = AtomicBool::new(false);

struct Taking;

impl Taking {
    fn lock() -> Taking {
        while TAKING
            .compare_exchange_weak(false, true, std::sync::atomic::Ordering::Acquire, Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        Taking
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        TAKING.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Take (and reset) the period's counters.
pub fn take_snapshot() -> Snapshot {
    let _t = Taking::lock();
    let mut th = [0u64; local::SLOTS];
    local::collect(&mut th);
    let a = &AGG;
    let t = |c: &Ctr| c.take_with(&th);
    let pair = |b: &Ctr, o: &Ctr| (t(b), t(o));
    Snapshot {
        fs_open: t(&a.fs_open),
        fs_close: t(&a.fs_close),
        fs_read: pair(&a.fs_read_bytes, &a.fs_read_ops),
        fs_write: pair(&a.fs_write_bytes, &a.fs_write_ops),
        fs_seek: t(&a.fs_seek),
        fs_stat: t(&a.fs_stat),
        fs_dur: (
            t(&a.fs_dur_us).wrapping_add(clock::ticks_to_us(t(&a.fs_dur_ticks))),
            t(&a.fs_dur_ops),
        ),
        fs_err: [t(&a.fs_err[0]), t(&a.fs_err[1]), t(&a.fs_err[2])],
        net_open: t(&a.net_open),
        net_close: t(&a.net_close),
        net_rx: std::array::from_fn(|i| pair(&a.net_rx_bytes[i], &a.net_rx_ops[i])),
        net_tx: std::array::from_fn(|i| pair(&a.net_tx_bytes[i], &a.net_tx_ops[i])),
        net_dur: pair(&a.net_dur_ms, &a.net_dur_ops),
        net_err: [t(&a.net_err[0]), t(&a.net_err[1])],
        dns_req: t(&a.dns_req),
        tcp_open: a.tcp_open.load(Relaxed).max(0),
        udp_open: a.udp_open.load(Relaxed).max(0),
    }
}

/// Process figures read at the end of a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcFigures {
    pub cpu_us: u64,
    pub cpu_perc: f64,
    pub mem_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub children: u64,
}

fn c(name: &'static str, v: u64, unit: &'static str, tags: Vec<Tag<'static>>) -> Metric<'static> {
    Metric {
        name,
        kind: Kind::Counter,
        value: v as f64,
        unit,
        tags,
        summary: true,
    }
}

/// Pure: the metric lines of one period, for the groups switched on in `watch`.
/// Counters that are zero are skipped, as AppScope does; gauges are always sent.
pub fn period_metrics(
    s: &Snapshot,
    p: Option<&ProcFigures>,
    listeners: &[Listener],
    watch: u32,
) -> Vec<Metric<'static>> {
    let mut out = Vec::new();
    if watch & PROC != 0
        && let Some(p) = p
    {
        let g = |name, v: f64, unit| Metric {
            name,
            kind: Kind::Gauge,
            value: v,
            unit,
            tags: vec![],
            summary: false,
        };
        out.push(Metric {
            name: "proc.cpu",
            kind: Kind::Counter,
            value: p.cpu_us as f64,
            unit: "microsecond",
            tags: vec![],
            summary: false,
        });
        out.push(g(
            "proc.cpu_perc",
            (p.cpu_perc * 100.0).round() / 100.0,
            "percent",
        ));
        out.push(g("proc.mem", p.mem_kib as f64, "kibibyte"));
        out.push(g("proc.thread", p.threads as f64, "thread"));
        out.push(g("proc.fd", p.fds as f64, "file"));
        out.push(g("proc.child", p.children as f64, "process"));
    }
    if watch & FS != 0 {
        if s.fs_open > 0 {
            out.push(c("fs.open", s.fs_open, "operation", vec![]));
        }
        if s.fs_close > 0 {
            out.push(c("fs.close", s.fs_close, "operation", vec![]));
        }
        if s.fs_read.1 > 0 {
            out.push(c(
                "fs.read",
                s.fs_read.0,
                "byte",
                vec![Tag::i("numops", s.fs_read.1 as i64)],
            ));
        }
        if s.fs_write.1 > 0 {
            out.push(c(
                "fs.write",
                s.fs_write.0,
                "byte",
                vec![Tag::i("numops", s.fs_write.1 as i64)],
            ));
        }
        if s.fs_seek > 0 {
            out.push(c("fs.seek", s.fs_seek, "operation", vec![]));
        }
        if s.fs_stat > 0 {
            out.push(c("fs.stat", s.fs_stat, "operation", vec![]));
        }
        if let Some(mean) = s.fs_dur.0.checked_div(s.fs_dur.1) {
            out.push(Metric {
                name: "fs.duration",
                kind: Kind::Histogram,
                value: mean as f64,
                unit: "microsecond",
                tags: vec![Tag::i("numops", s.fs_dur.1 as i64)],
                summary: true,
            });
        }
        for (i, n) in s.fs_err.iter().enumerate() {
            if *n > 0 {
                out.push(c(
                    "fs.error",
                    *n,
                    "operation",
                    vec![Tag::s("class", FS_ERR_CLASSES[i]).req()],
                ));
            }
        }
    }
    if watch & NET != 0 {
        if s.net_open > 0 {
            out.push(c("net.open", s.net_open, "connection", vec![]));
        }
        if s.net_close > 0 {
            out.push(c("net.close", s.net_close, "connection", vec![]));
        }
        for (i, (b, n)) in s.net_rx.iter().enumerate() {
            if *n > 0 {
                out.push(c(
                    "net.rx",
                    *b,
                    "byte",
                    vec![Tag::s("class", CLASSES[i]), Tag::i("numops", *n as i64)],
                ));
            }
        }
        for (i, (b, n)) in s.net_tx.iter().enumerate() {
            if *n > 0 {
                out.push(c(
                    "net.tx",
                    *b,
                    "byte",
                    vec![Tag::s("class", CLASSES[i]), Tag::i("numops", *n as i64)],
                ));
            }
        }
        if let Some(mean) = s.net_dur.0.checked_div(s.net_dur.1) {
            out.push(Metric {
                name: "net.duration",
                kind: Kind::Timer,
                value: mean as f64,
                unit: "millisecond",
                tags: vec![Tag::i("numops", s.net_dur.1 as i64)],
                summary: true,
            });
        }
        for (i, n) in s.net_err.iter().enumerate() {
            if *n > 0 {
                out.push(c(
                    "net.error",
                    *n,
                    "operation",
                    vec![Tag::s("class", NET_ERR_CLASSES[i]).req()],
                ));
            }
        }
        let g = |name, v: i64, tags| Metric {
            name,
            kind: Kind::Gauge,
            value: v as f64,
            unit: "connection",
            tags,
            summary: false,
        };
        out.push(g("net.tcp", s.tcp_open, vec![Tag::s("proto", "TCP")]));
        out.push(g(
            "net.udp",
            s.udp_open,
            vec![
                Tag::i("fd", -1).req(),
                Tag::s("proto", "UDP").req(),
                Tag::i("port", 0).req(),
            ],
        ));
        for l in listeners {
            out.push(Metric {
                name: "net.port",
                kind: Kind::Gauge,
                value: 1.0,
                unit: "instance",
                tags: vec![
                    Tag::i("fd", i64::from(l.fd)),
                    Tag::s("proto", l.proto),
                    Tag::i("port", i64::from(l.port)),
                ],
                summary: false,
            });
        }
    }
    if watch & DNS != 0 && s.dns_req > 0 {
        out.push(c("dns.req", s.dns_req, "request", vec![]));
    }
    out
}

/// Now as UNIX seconds with microseconds.
pub fn now_f64() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as f64 + (ts.tv_nsec / 1000) as f64 / 1e6
}

/// Monotonic nanoseconds.
#[inline]
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Format and send one metric now (non-aggregated path; also mirrored to the event
/// channel when `SCOPE_EVENT_METRIC` is on).
pub fn individual(m: &Metric<'_>) {
    let set = settings();
    if !set.enabled {
        return;
    }
    let id = crate::events::ident::ident();
    let p = ProcTags {
        proc: &id.procname,
        pid: crate::events::ident::pid(),
        host: &id.host,
    };
    let t = now_f64();
    let line = format::format_line(m, &set.fmt, &p, t);
    crate::events::sink::send_metric(line.into_bytes());
    crate::events::metric_event(m, t);
}

fn send_all(ms: &[Metric<'_>], set: &Settings) {
    let id = crate::events::ident::ident();
    let p = ProcTags {
        proc: &id.procname,
        pid: crate::events::ident::pid(),
        host: &id.host,
    };
    let t = now_f64();
    for m in ms {
        let line = format::format_line(m, &set.fmt, &p, t);
        crate::events::sink::send_metric(line.into_bytes());
    }
}

static LAST_CPU: Mutex<Option<(u64, u64)>> = Mutex::new(None);

fn read_proc_figures() -> ProcFigures {
    // SAFETY: ru is a valid rusage out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let cpu_total = tv(ru.ru_utime) + tv(ru.ru_stime);
    let now = mono_ns() / 1000;
    let (cpu_us, cpu_perc) = {
        let mut last = LAST_CPU.lock().unwrap_or_else(|e| e.into_inner());
        let (pc, pt) = last.unwrap_or_else(|| {
            // First period: measure from the process start.
            let age_us =
                ((now_f64() - crate::runtime::proc_info().started).max(0.001) * 1e6) as u64;
            (0, now.saturating_sub(age_us))
        });
        *last = Some((cpu_total, now));
        let d = cpu_total.saturating_sub(pc);
        let wall = now.saturating_sub(pt).max(1);
        (d, d as f64 * 100.0 / wall as f64)
    };
    let page_kib = {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 { p as u64 / 1024 } else { 4 }
    };
    let mem_kib = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * page_kib;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1);
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let children = crate::runtime::procinfo::children_count(&status);
    ProcFigures {
        cpu_us,
        cpu_perc,
        mem_kib,
        threads,
        fds,
        children,
    }
}

fn proc_start_metric(args: &str) -> Metric<'_> {
    // SAFETY: these getters have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let pi = crate::runtime::proc_info();
    let (user, group): (&'static str, &'static str) = if (uid, gid) == (pi.uid, pi.gid) {
        // Shared with the start message (read once per process).
        let n = crate::runtime::procinfo::user_group_cached();
        (&n.0, &n.1)
    } else {
        let (u, g) = crate::runtime::procinfo::user_group(uid, gid);
        (Box::leak(u.into_boxed_str()), Box::leak(g.into_boxed_str()))
    };
    Metric {
        name: "proc.start",
        kind: Kind::Counter,
        value: 1.0,
        unit: "process",
        tags: vec![
            Tag::i("uid", i64::from(uid)).req(),
            Tag::s("username", user).req(),
            Tag::i("gid", i64::from(gid)).req(),
            Tag::s("groupname", group).req(),
            Tag::s("args", args).req(),
        ],
        summary: false,
    }
}

/// Format the period's aggregates and the `proc.*` figures and send them. Called by the
/// reporter thread once per summary period.
pub fn flush_period() {
    let _g = crate::interpose::guard::Guard::enter();
    let set = settings();
    let snap = take_snapshot();
    let http = std::mem::take(&mut *HTTP_AGG.lock().unwrap_or_else(|e| e.into_inner()));
    if !set.enabled {
        return;
    }
    let mut ms = Vec::new();
    let id = crate::events::ident::ident();
    if set.watch & PROC != 0 && !STARTED.swap(true, Relaxed) {
        ms.push(proc_start_metric(&id.cmd));
    }
    let pf = (set.watch & PROC != 0).then(read_proc_figures);
    let listeners = if set.watch & NET != 0 {
        crate::interpose::fdtable::listeners(16)
    } else {
        Vec::new()
    };
    ms.extend(period_metrics(&snap, pf.as_ref(), &listeners, set.watch));
    if set.watch & HTTP != 0 {
        ms.extend(http_metrics(&http));
    }
    send_all(&ms, &set);
    if set.watch & STATSD != 0 {
        crate::proto::statsd::flush(&set.fmt);
    }
}

/// After fork in the child: forget the parent's period so nothing is reported twice,
/// and report `proc.start` again for the new process.
pub fn reset_after_fork() {
    // Only this thread exists now: a taker the parent had in progress is gone.
    TAKING.store(false, Relaxed);
    local::after_fork_child();
    let _ = take_snapshot();
    if let Ok(mut v) = HTTP_AGG.try_lock() {
        v.clear();
    }
    STARTED.store(false, Relaxed);
    if let Ok(mut l) = LAST_CPU.try_lock() {
        *l = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_metrics_respect_switches_and_skip_zero_counters() {
        let mut s = Snapshot {
            fs_read: (100, 2),
            net_tx: [(0, 0); 5],
            dns_req: 3,
            tcp_open: 2,
            ..Default::default()
        };
        s.net_tx[0] = (50, 1);
        let p = ProcFigures {
            cpu_us: 10,
            mem_kib: 1000,
            threads: 1,
            fds: 4,
            ..Default::default()
        };
        let names = |w| {
            period_metrics(&s, Some(&p), &[], w)
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
        };
        let all = names(ALL);
        assert!(all.contains(&"fs.read") && all.contains(&"net.tx") && all.contains(&"dns.req"));
        assert!(all.contains(&"proc.mem") && all.contains(&"net.tcp"));
        assert!(!all.contains(&"fs.write"), "zero counters are skipped");
        let no_fs = names(ALL & !FS);
        assert!(!no_fs.iter().any(|n| n.starts_with("fs.")));
        assert!(names(ALL & !PROC).iter().all(|n| !n.starts_with("proc.")));
        assert!(names(ALL & !DNS).iter().all(|n| *n != "dns.req"));
        assert!(names(ALL & !NET).iter().all(|n| !n.starts_with("net.")));
    }

    #[test]
    fn http_aggregates_by_target_and_status_and_is_bounded() {
        let mut v = Vec::new();
        for i in 0..3 {
            http_merge(
                &mut v,
                &HttpSample {
                    target: "/a",
                    status: 200,
                    server_ms: Some(2.0 * i as f64),
                    resp_len: Some(10),
                    ..Default::default()
                },
            );
        }
        http_merge(
            &mut v,
            &HttpSample {
                target: "/a",
                status: 404,
                client_ms: Some(5.0),
                ..Default::default()
            },
        );
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].reqs, v[0].server_ops, v[0].resp_len), (3, 3, 30));
        let ms = http_metrics(&v);
        let names: Vec<_> = ms.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "http.req",
                "http.duration.server",
                "http.resp.content_length",
                "http.req",
                "http.duration.client"
            ]
        );
        assert_eq!(ms[1].value, 2.0); // average of 0, 2, 4
        for i in 0..200 {
            http_merge(
                &mut v,
                &HttpSample {
                    target: &format!("/t{i}"),
                    status: 200,
                    ..Default::default()
                },
            );
        }
        assert!(v.len() <= HTTP_AGG_MAX + 1);
        assert!(v.iter().any(|a| a.target == "other" && a.reqs > 100));
    }

    #[test]
    fn counters_are_taken_and_reset() {
        let _s = local::TEST_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        AGG.fs_seek.add(3);
        let s = take_snapshot();
        assert!(s.fs_seek >= 3);
        assert_eq!(take_snapshot().fs_seek, 0);
    }
}
