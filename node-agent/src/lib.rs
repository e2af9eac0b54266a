//! Node agent core shared by `scope agent --local` and `appscope-operator agent`.
//!
//! Sync, Kubernetes-free building blocks; callers add their own I/O loop:
//! - [`procs`]: process discovery (`/proc/<pid>/maps` names libscope.so), host and
//!   namespaced pids, uid, cmdline, and the AppScope dirs from the process environment.
//! - [`status`]: reading the library's status file; [`cmdfile`]: writing command files.
//! - [`bundle`]: complete crash bundles in snapshot dirs; [`store`]: the crash-report store
//!   (crash-safe move, `report.json`, retention).
//! - [`snapshot`]: live snapshots of any process (proc files, per-thread stacks by
//!   ptrace, optional core); [`stacks`], [`symbols`], [`ptrace`] underneath.
//! - [`collector`]: one scan pass of the crash collector (find bundles, ingest, retain).
//! - [`elf`]: which libc a program runs with (`PT_INTERP`), so which library build fits.
//! - [`render`]: tables and JSON shared by local and cluster mode.
//! - [`api`]: the agent's HTTP API (axum router: ps, inspect, snapshot, healthz, metrics).
//! - [`cgroup`]: host pid -> pod/container (owned by the operator side).

pub mod api;
pub mod bundle;
pub mod cgroup;
pub mod cmdfile;
pub mod collector;
pub mod core;
pub mod elf;
pub mod error;
pub mod procs;
pub mod ptrace;
pub mod render;
pub mod snapshot;
pub mod stacks;
pub mod status;
pub mod store;
pub mod symbols;

pub use error::{Error, Result};
