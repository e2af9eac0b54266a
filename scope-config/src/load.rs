//! Loading the config at start: defaults < scope.yml < `SCOPE_*` env (design §2).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::{Config, ProcessIdentity};
use crate::settings::{ALL, Kind, TAG_PREFIX};
use crate::yaml::{Diagnostic, MAX_YAML_BYTES, expand_vars};

/// The result of [`load`].
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The scope.yml used, if any.
    pub path: Option<PathBuf>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The scope.yml search order (design §2), for the given env. Entries whose variable
/// is unset are skipped. `~` is `$HOME`.
pub fn search_paths(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let nonempty = |n: &str| env(n).filter(|v| !v.is_empty());
    if let Some(p) = nonempty("SCOPE_CONF_PATH") {
        out.push(PathBuf::from(p));
    }
    if let Some(h) = nonempty("SCOPE_HOME") {
        out.push(Path::new(&h).join("conf/scope.yml"));
        out.push(Path::new(&h).join("scope.yml"));
    }
    out.push(PathBuf::from("/etc/scope/scope.yml"));
    if let Some(h) = nonempty("HOME") {
        out.push(Path::new(&h).join("conf/scope.yml"));
        out.push(Path::new(&h).join("scope.yml"));
    }
    out.push(PathBuf::from("./conf/scope.yml"));
    out.push(PathBuf::from("./scope.yml"));
    out
}

/// Read a config file: regular files only, at most [`MAX_YAML_BYTES`].
pub fn read_config_file(path: &Path) -> std::io::Result<String> {
    let f = std::fs::File::open(path)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    f.take(MAX_YAML_BYTES as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > MAX_YAML_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_YAML_BYTES} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// What [`load_with`] reads.
pub struct LoadInput<'a> {
    /// Looks up one environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Names of the `SCOPE_TAG_*` variables present (a lookup cannot enumerate them).
    pub tag_vars: Vec<String>,
    /// When given, matching `custom` entries are applied after the file, before env.
    pub identity: Option<&'a ProcessIdentity>,
    /// Use this file instead of the search order (`SCOPE_CONF_RELOAD=<path>`).
    pub path_override: Option<PathBuf>,
}

/// Load with defaults < scope.yml < `SCOPE_*` env, expanding `$VAR`/`${VAR}` in
/// file and env values, then apply AppScope's cribl forcing.
/// `SCOPE_TAG_*` variables are not seen (a lookup cannot list them): use
/// [`load_vars`] or [`load_with`] for those.
pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    load_with(&LoadInput {
        env,
        tag_vars: Vec::new(),
        identity: None,
        path_override: None,
    })
}

/// [`load`] from a list of environment variables (e.g. `std::env::vars()`), tags included.
pub fn load_vars(vars: &[(String, String)]) -> Loaded {
    let lookup = |n: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let tag_vars = vars
        .iter()
        .filter(|(k, _)| k.starts_with(TAG_PREFIX))
        .map(|(k, _)| k.clone())
        .collect();
    load_with(&LoadInput {
        env: &lookup,
        tag_vars,
        identity: None,
        path_override: None,
    })
}

/// [`load_vars`] over this process's environment (non-UTF-8 entries skipped).
pub fn load_process_env() -> Loaded {
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_vars(&vars)
}

/// The full loader.
pub fn load_with(input: &LoadInput<'_>) -> Loaded {
    let env = input.env;
    let mut config = Config::default();
    let mut diagnostics = Vec::new();
    let mut used = None;

    let candidates = match &input.path_override {
        Some(p) => vec![p.clone()],
        None => search_paths(env),
    };
    let explicit =
        input.path_override.is_some() || env("SCOPE_CONF_PATH").is_some_and(|v| !v.is_empty());
    for (i, path) in candidates.iter().enumerate() {
        match read_config_file(path) {
            Ok(text) => {
                let src = path.display().to_string();
                diagnostics.extend(config.merge_yaml_str(&text, &src, env));
                used = Some(path.clone());
                break;
            }
            Err(e) => {
                // Missing files are normal in the search order; anything else, or a
                // missing explicitly named file, is worth reporting.
                if e.kind() != std::io::ErrorKind::NotFound || (i == 0 && explicit) {
                    diagnostics.push(Diagnostic {
                        source: path.display().to_string(),
                        key: String::new(),
                        message: format!("cannot read config file ({e}); skipped"),
                    });
                }
            }
        }
    }

    if let Some(id) = input.identity {
        let (_, d) = config.apply_custom_env(id, env);
        diagnostics.extend(d);
    }

    for sp in ALL {
        if sp.kind != Kind::Config || sp.name.starts_with(TAG_PREFIX) {
            continue;
        }
        if let Some(raw) = env(sp.name) {
            let value = expand_vars(&raw, env);
            if let Err(e) = config.set(sp.name, &value) {
                diagnostics.push(Diagnostic {
                    source: "env".into(),
                    key: sp.name.into(),
                    message: e.to_string(),
                });
            }
        }
    }
    let mut tags = input.tag_vars.clone();
    tags.sort();
    tags.dedup();
    for name in tags {
        if let Some(raw) = env(&name) {
            let value = expand_vars(&raw, env);
            if let Err(e) = config.set(&name, &value) {
                diagnostics.push(Diagnostic {
                    source: "env".into(),
                    key: name.clone(),
                    message: e.to_string(),
                });
            }
        }
    }
    let given: Vec<&str> = ALL
        .iter()
        .map(|sp| sp.name)
        .filter(|n| env(n).is_some_and(|v| !v.is_empty()))
        .collect();
    config.explicit_dest_overrides_cribl(given);
    config.apply_cribl_forcing();
    Loaded {
        config,
        path: used,
        diagnostics,
    }
}
