//! Command files `<SCOPE_CMD_DIR>/scope.<pid>` (design §2): AppScope's dynamic
//! configuration, hardened.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::Config;
use crate::settings::{self, Action, Kind, SettingError};

/// Largest command file accepted (64 KiB).
pub const MAX_CMDFILE_BYTES: u64 = 64 * 1024;

/// Longest line text kept in a [`Rejected`].
const MAX_TEXT: usize = 200;

/// The command file of process `pid` in `dir`: `<dir>/scope.<pid>`.
pub fn path_for(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("scope.{pid}"))
}

/// A line that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line number.
    pub line: usize,
    /// The line as written (trimmed, at most 200 characters, lossy UTF-8).
    pub text: String,
    pub reason: String,
}

/// A parsed command file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandFile {
    /// Valid `NAME=value` settings, in file order (later ones win).
    pub settings: Vec<(String, String)>,
    /// Line number of each entry of `settings`.
    pub lines: Vec<usize>,
    pub rejected: Vec<Rejected>,
}

/// What [`CommandFile::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// Names applied, in order.
    pub applied: Vec<String>,
    /// Lines refused at parse time plus any refused while applying.
    pub rejected: Vec<Rejected>,
    /// `SCOPE_CONF_RELOAD` was given: reload the config file, then apply this
    /// file's settings again on top (see [`CommandFile::apply`]).
    pub reload: Option<Reload>,
    /// `SCOPE_CMD_SNAPSHOT=true` was given: write a snapshot bundle now.
    pub snapshot: bool,
}

/// Which file `SCOPE_CONF_RELOAD` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// `true`: the scope.yml search order.
    SearchOrder,
    /// `<path>`: this file.
    Path(PathBuf),
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_TEXT).collect();
        t.push('…');
        t
    }
}

/// Parse a command file. Each line is `NAME=value`; surrounding whitespace is
/// trimmed (around the line, the name and the value), blank lines and `#` comments
/// are skipped. Non-UTF-8 lines, lines without `=`, unknown names, start-only
/// variables and invalid values are rejected with a reason.
pub fn parse(bytes: &[u8]) -> CommandFile {
    let mut out = CommandFile::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let reject = |out: &mut CommandFile, text: &str, reason: String| {
            out.rejected.push(Rejected {
                line: line_no,
                text: truncate(text),
                reason,
            })
        };
        let line = match std::str::from_utf8(raw) {
            Ok(s) => s.trim(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(raw);
                reject(&mut out, lossy.trim(), "not valid UTF-8".into());
                continue;
            }
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            reject(&mut out, line, "expected NAME=value".into());
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            reject(&mut out, line, "empty name".into());
            continue;
        }
        let Some(spec) = settings::spec(name) else {
            reject(&mut out, line, format!("unknown setting {name}"));
            continue;
        };
        if spec.kind == Kind::StartOnly {
            reject(
                &mut out,
                line,
                format!("{name} is only read at process start"),
            );
            continue;
        }
        if let Err(e) = settings::validate(name, value) {
            reject(&mut out, line, e.to_string());
            continue;
        }
        out.settings.push((name.to_string(), value.to_string()));
        out.lines.push(line_no);
    }
    out
}

impl CommandFile {
    /// Apply the settings to `cfg` in order, then AppScope's cribl forcing.
    /// Actions are reported in the result, not performed: on `reload`, the caller
    /// loads the config again (`load::load_with` with `path_override` for a path)
    /// and calls `apply` on the new config, so this file's settings win over the
    /// reloaded file.
    pub fn apply(&self, cfg: &mut Config) -> Applied {
        let mut res = Applied {
            rejected: self.rejected.clone(),
            ..Applied::default()
        };
        for (idx, (name, value)) in self.settings.iter().enumerate() {
            let line = self.lines.get(idx).copied().unwrap_or(0);
            let outcome = match settings::spec(name).map(|s| s.kind) {
                Some(Kind::Action) => settings::parse_action(name, value).map(|a| match a {
                    Action::Reload => res.reload = Some(Reload::SearchOrder),
                    Action::ReloadFrom(p) => res.reload = Some(Reload::Path(p)),
                    Action::Snapshot => res.snapshot = true,
                    Action::Nothing => {}
                }),
                _ => cfg.set(name, value),
            };
            match outcome {
                Ok(()) => res.applied.push(name.clone()),
                Err(e) => res.rejected.push(Rejected {
                    line,
                    text: truncate(&format!("{name}={value}")),
                    reason: e.to_string(),
                }),
            }
        }
        res.rejected.sort_by_key(|r| r.line);
        cfg.explicit_dest_overrides_cribl(res.applied.iter().map(String::as_str));
        cfg.apply_cribl_forcing();
        res
    }
}

/// Why a command file was refused (and left in place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no command file")]
    NotFound,
    #[error("refused: is a symbolic link")]
    Symlink,
    #[error("refused: not a regular file ({0})")]
    NotRegular(&'static str),
    #[error("refused: owned by uid {owner}, expected uid {expected} or root")]
    Owner { owner: u32, expected: u32 },
    #[error("refused: {size} bytes, larger than the 64 KiB limit")]
    TooLarge { size: u64 },
    #[error("refused: file changed while being opened")]
    Raced,
    #[error("cannot read: {0}")]
    Io(String),
}

fn file_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "unknown type"
    }
}

/// Read a command file safely: refuses symlinks (checked with lstat and opened with
/// `O_NOFOLLOW`), non-regular files, files owned by anyone but `process_uid` or root,
/// and files over 64 KiB. Never blocks on FIFOs. The caller deletes the file only
/// after a successful read.
pub fn read_checked(path: &Path, process_uid: u32) -> Result<Vec<u8>, Refused> {
    let lmd = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refused::NotFound),
        Err(e) => return Err(Refused::Io(e.to_string())),
    };
    let ft = lmd.file_type();
    if ft.is_symlink() {
        return Err(Refused::Symlink);
    }
    if !ft.is_file() {
        return Err(Refused::NotRegular(file_kind(&ft)));
    }
    check_owner_size(&lmd, process_uid)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Refused::Symlink,
            _ if e.kind() == std::io::ErrorKind::NotFound => Refused::NotFound,
            _ => Refused::Io(e.to_string()),
        })?;
    let md = file.metadata().map_err(|e| Refused::Io(e.to_string()))?;
    if md.dev() != lmd.dev() || md.ino() != lmd.ino() {
        return Err(Refused::Raced);
    }
    if !md.file_type().is_file() {
        return Err(Refused::NotRegular(file_kind(&md.file_type())));
    }
    check_owner_size(&md, process_uid)?;
    let mut buf = Vec::new();
    file.take(MAX_CMDFILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Refused::Io(e.to_string()))?;
    if buf.len() as u64 > MAX_CMDFILE_BYTES {
        return Err(Refused::TooLarge {
            size: buf.len() as u64,
        });
    }
    Ok(buf)
}

fn check_owner_size(md: &std::fs::Metadata, process_uid: u32) -> Result<(), Refused> {
    if md.uid() != process_uid && md.uid() != 0 {
        return Err(Refused::Owner {
            owner: md.uid(),
            expected: process_uid,
        });
    }
    if md.len() > MAX_CMDFILE_BYTES {
        return Err(Refused::TooLarge { size: md.len() });
    }
    Ok(())
}

/// Write a command file for a process as the CLI/agent do: `NAME=value` lines to a
/// temp file in `dir`, then renamed to `scope.<pid>` so the library never reads a
/// partial file. Values are validated first; nothing is written on error.
pub fn write(dir: &Path, pid: u32, settings: &[(String, String)]) -> Result<PathBuf, WriteError> {
    let mut text = String::new();
    for (name, value) in settings {
        settings::validate(name, value).map_err(WriteError::Invalid)?;
        if value.contains('\n') || value.contains('\r') {
            return Err(WriteError::Invalid(settings::invalid(
                name,
                "contains a line break",
            )));
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    if text.len() as u64 > MAX_CMDFILE_BYTES {
        return Err(WriteError::TooLarge);
    }
    let dest = path_for(dir, pid);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".scope.{pid}.tmp.{}.{seq}", std::process::id()));
    let res = (|| {
        use std::io::Write;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::Io(e));
    }
    Ok(dest)
}

/// Why [`write`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Invalid(SettingError),
    #[error("command file would exceed 64 KiB")]
    TooLarge,
    #[error("cannot write command file: {0}")]
    Io(#[from] std::io::Error),
}
