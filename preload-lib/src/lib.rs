//! `libscope.so`: the LD_PRELOAD library.
//!
//! Module ownership (while the library is being built by several people at once):
//! - `runtime`, `transport`: library init/constructor, config load and live reload, the
//!   reporter thread (summary period), command directory, status file, start message,
//!   fork handling, transports and their bounded queues.
//! - `interpose`, `metrics`, `events`, `proto`: the interposed libc functions, per-thread
//!   counters and metric aggregation/formatting, event generation and filtering, and the
//!   protocol detectors (HTTP/1.x, DNS).
//! - `crash`: fatal-signal capture (see `crash/mod.rs` for its interface).
//!
//! Boundary between them (keep these names stable):
//! - `runtime::config() -> Arc<scope_config::Config>`: the config in effect (cheap to call).
//! - `runtime::proc_info() -> &'static runtime::ProcInfo`: pid, ppid, procname, cmd, host.
//! - `transport::send_event(line: Vec<u8>)` / `transport::send_metric(line: Vec<u8>)`:
//!   non-blocking enqueue of one complete NDJSON/StatsD line; drops and counts when full.
//! - `metrics::on_config(&Config)`, `events::on_config(&Config)`: called by the runtime at
//!   start and after each config change (off the application's threads).
//! - `metrics::flush_period()`: called by the reporter thread once per summary period; it
//!   formats the period's aggregates and sends them with `transport::send_metric`.
//! - `interpose::init()`: called once by the runtime after the config is loaded.
//! - `runtime::is_internal()` / `runtime::internal()`: re-entry guard; the library's own
//!   threads are always internal. `runtime::is_active()`: false before init and when init
//!   failed (pass-through).
//! - `transport::is_own_fd(fd)` / `transport::relocate_own_fd(fd)`: the library's own
//!   descriptors; call `relocate_own_fd` before the application's close/dup2/dup3 replaces
//!   one of them. `close_range`/`closefrom` are interposed in `transport::fds`.
//! - `metrics::reset_after_fork()`: called in a forked child (with `on_config` hooks after).

pub mod crash;
pub mod events;
pub mod interpose;
pub mod metrics;
pub mod proto;
pub mod runtime;
pub mod transport;
