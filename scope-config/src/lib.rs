//! AppScope-compatible configuration model: `scope.yml`, `SCOPE_*` env, command files,
//! config-in-effect JSON, status-file and crash-bundle types. No kube, no tokio:
//! the preload library links it.

pub mod crash;
