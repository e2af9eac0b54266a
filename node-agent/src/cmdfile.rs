//! Command files (design §2): `<SCOPE_CMD_DIR>/scope.<nspid>`, lines `NAME=value`,
//! written atomically (temp file + rename in the same directory) and owned by the
//! process's uid, so the library accepts it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};
use crate::procs::{ProcessInfo, ScopeEnv};

/// Largest command file the library accepts (design §2).
pub const MAX_COMMAND_FILE: usize = 64 * 1024;

/// One `NAME=value` setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
}

/// Parse one `NAME=VALUE` (as given to `--set`). Names must look like `SCOPE_*`.
pub fn parse_setting(s: &str) -> Result<Setting> {
    let s = s.trim();
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| Error::Invalid(format!("`{s}` is not NAME=VALUE")))?;
    let name = name.trim();
    let valid = name.starts_with("SCOPE_")
        && name.len() > 6
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(Error::Invalid(format!(
            "`{name}` is not a SCOPE_* setting name (expected e.g. SCOPE_METRIC_VERBOSITY)"
        )));
    }
    if value.contains('\n') || value.contains('\0') {
        return Err(Error::Invalid(format!(
            "value of {name} contains a newline or NUL"
        )));
    }
    Ok(Setting {
        name: name.to_string(),
        value: value.trim().to_string(),
    })
}

/// Parse command-file text (`-f FILE` or stdin): blank lines and `#` comments skipped.
pub fn parse_command_text(text: &str) -> Result<Vec<Setting>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| parse_setting(l).map_err(|e| Error::Invalid(format!("line {}: {e}", i + 1))))
        .collect()
}

/// The file's contents (pure).
pub fn render_command_file(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{}={}\n", s.name, s.value))
        .collect()
}

/// Where a command file for this process goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandFileLocation {
    /// Path as the process sees it.
    pub in_process: PathBuf,
    /// Path the agent writes (through `/proc/<pid>/root` when needed).
    pub host: PathBuf,
}

/// Decide the command file's location (pure).
pub fn command_file_location(proc_: &ProcessInfo, env: &ScopeEnv) -> CommandFileLocation {
    let in_process = env.cmd_dir.join(format!("scope.{}", proc_.nspid));
    CommandFileLocation {
        host: proc_.host_path(&in_process),
        in_process,
    }
}

/// Write the command file atomically, owned by the process's uid/gid, mode 0600.
pub fn write_command_file(
    proc_: &ProcessInfo,
    env: &ScopeEnv,
    settings: &[Setting],
) -> Result<CommandFileLocation> {
    if settings.is_empty() {
        return Err(Error::Invalid("no settings to send".into()));
    }
    let body = render_command_file(settings);
    if body.len() > MAX_COMMAND_FILE {
        return Err(Error::Invalid(format!(
            "command file would be {} bytes; the library refuses more than {MAX_COMMAND_FILE}",
            body.len()
        )));
    }
    let loc = command_file_location(proc_, env);
    write_atomic(
        &loc.host,
        body.as_bytes(),
        Some((proc_.uid, proc_.gid)),
        0o600,
    )?;
    Ok(loc)
}

/// Write `data` to `path` atomically: temp file in the same directory, fsync, optional
/// chown, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8], owner: Option<(u32, u32)>, mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{} has no parent directory", path.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_err(&tmp))?;
        }
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_reject() {
        let s = parse_setting(" SCOPE_METRIC_VERBOSITY = 9 ").unwrap();
        assert_eq!(
            s,
            Setting {
                name: "SCOPE_METRIC_VERBOSITY".into(),
                value: "9".into()
            }
        );
        assert!(parse_setting("SCOPE_X").is_err());
        assert!(parse_setting("PATH=/bin").is_err());
        assert!(parse_setting("scope_x=1").is_err());
        let v = parse_command_text("# hi\n\nSCOPE_A=1\n  SCOPE_B=two words\n").unwrap();
        assert_eq!(render_command_file(&v), "SCOPE_A=1\nSCOPE_B=two words\n");
        let e = parse_command_text("SCOPE_A=1\nbad\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("scope.42");
        write_atomic(&p, b"SCOPE_A=1\n", None, 0o600).unwrap();
        write_atomic(&p, b"SCOPE_A=2\n", None, 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "SCOPE_A=2\n");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
