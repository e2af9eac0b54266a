//! Process identity used in every event envelope and metric: procname, cmd, host, id.
//! It comes from the runtime's `proc_info()` (refreshed in forked children).

use std::sync::{Arc, RwLock};

/// Identity of the scoped process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub procname: String,
    pub cmd: String,
    pub host: String,
    /// AppScope's event `id`: `<host>-<procname>-<cmd>`.
    pub id: String,
}

type Cached = Option<(u32, Arc<Ident>)>;

static CACHE: RwLock<Cached> = RwLock::new(None);

/// The process's identity (built once per process; rebuilt in a forked child).
pub fn ident() -> Arc<Ident> {
    let p = crate::runtime::proc_info();
    if let Some((pid, id)) = &*CACHE.read().unwrap_or_else(|e| e.into_inner())
        && *pid == p.pid
    {
        return id.clone();
    }
    let id = Arc::new(Ident {
        procname: p.procname.clone(),
        cmd: p.cmd.clone(),
        host: p.host.clone(),
        id: format!("{}-{}-{}", p.host, p.procname, p.cmd),
    });
    *CACHE.write().unwrap_or_else(|e| e.into_inner()) = Some((p.pid, id.clone()));
    id
}

/// The current pid (the runtime's view, updated in forked children; no syscall).
pub fn pid() -> i64 {
    i64::from(crate::runtime::proc_info().pid)
}
