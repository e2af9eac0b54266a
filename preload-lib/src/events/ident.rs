//! Process identity used in every event envelope and metric: procname, cmd, host, id.
//! It comes from the runtime's `proc_info()` (refreshed in forked children).

/// Identity of the scoped process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub procname: String,
    pub cmd: String,
    pub host: String,
    /// AppScope's event `id`: `<host>-<procname>-<cmd>`.
    pub id: String,
}

/// The process's identity.
pub fn ident() -> Ident {
    let p = crate::runtime::proc_info();
    Ident {
        procname: p.procname.clone(),
        cmd: p.cmd.clone(),
        host: p.host.clone(),
        id: format!("{}-{}-{}", p.host, p.procname, p.cmd),
    }
}

/// The current pid (changes in forked children).
pub fn pid() -> i64 {
    // SAFETY: getpid has no preconditions.
    i64::from(unsafe { libc::getpid() })
}
