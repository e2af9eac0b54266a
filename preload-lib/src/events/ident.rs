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
    /// The four fields above as JSON string literals (quoted, escaped), built once so
    /// every event envelope copies them instead of escaping them again.
    json: [String; 4],
}

impl Ident {
    pub fn new(procname: String, cmd: String, host: String, id: String) -> Ident {
        let q = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        let json = [q(&procname), q(&cmd), q(&host), q(&id)];
        Ident {
            procname,
            cmd,
            host,
            id,
            json,
        }
    }
    /// `procname` as a JSON string literal.
    pub fn procname_json(&self) -> &str {
        &self.json[0]
    }
    /// `cmd` as a JSON string literal.
    pub fn cmd_json(&self) -> &str {
        &self.json[1]
    }
    /// `host` as a JSON string literal.
    pub fn host_json(&self) -> &str {
        &self.json[2]
    }
    /// `id` as a JSON string literal.
    pub fn id_json(&self) -> &str {
        &self.json[3]
    }
    /// `host` as an event field value.
    pub fn host_field(&self) -> super::FVal<'_> {
        super::FVal::Quoted {
            text: &self.host,
            json: self.host_json(),
        }
    }
    /// `procname` as an event field value.
    pub fn procname_field(&self) -> super::FVal<'_> {
        super::FVal::Quoted {
            text: &self.procname,
            json: self.procname_json(),
        }
    }
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
    let id = Arc::new(Ident::new(
        p.procname.clone(),
        p.cmd.clone(),
        p.host.clone(),
        format!("{}-{}-{}", p.host, p.procname, p.cmd),
    ));
    *CACHE.write().unwrap_or_else(|e| e.into_inner()) = Some((p.pid, id.clone()));
    id
}

/// The current pid (the runtime's view, updated in forked children; no syscall).
pub fn pid() -> i64 {
    i64::from(crate::runtime::proc_info().pid)
}
