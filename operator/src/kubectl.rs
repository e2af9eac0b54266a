//! Cluster mode of the `scope` CLI (`kubectl scope ...`).

/// Entry point used by the `scope` binary when it runs in cluster mode (invoked as
/// `kubectl-scope`, or with `--k8s`). `args` are the full argv. Returns the exit code.
pub fn run(args: Vec<std::ffi::OsString>) -> i32 {
    let _ = args;
    eprintln!("scope: cluster mode is not available in this build");
    2
}
