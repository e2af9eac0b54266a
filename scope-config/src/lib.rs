//! AppScope-compatible configuration model: `scope.yml`, `SCOPE_*` env, command files,
//! config-in-effect JSON, status-file and crash-bundle types. No kube, no tokio:
//! the preload library links it.
//!
//! - [`Config`]: the typed AppScope 1.4 config; [`Config::default`] = stock scope.yml.
//! - [`load`] / [`load_vars`] / [`load_with`]: defaults < scope.yml < `SCOPE_*` env.
//! - [`Config::set`] / [`settings::ALL`] / [`settings::validate`]: the `SCOPE_*` variables.
//! - [`cmdfile`]: command files `scope.<pid>` (parse, hardened read, apply, write).
//! - [`Config::config_in_effect`], [`effect::start_message`]: AppScope's JSON.
//! - [`status`]: the `<pid>.json` status file.

pub mod cmdfile;
pub mod crash;
pub mod effect;
pub mod load;
pub mod model;
pub mod render;
pub mod settings;
pub mod status;
pub mod transport;
pub mod yaml;

pub use load::{LoadInput, Loaded, load, load_process_env, load_vars, load_with, search_paths};
pub use model::*;
pub use settings::{Origin, SettingError, SettingSpec};
pub use transport::{
    Buffering, DestError, Endpoint, FileTarget, Tls, Transport, TransportType, UnixAddr,
};
pub use yaml::{Diagnostic, expand_vars};
