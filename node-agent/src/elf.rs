//! Which C library a program runs with, from its ELF program headers: the interpreter
//! (`PT_INTERP`) names the dynamic loader, and the loader names the libc. That decides which
//! build of the preload library can load into it (glibc's `libscope.so` or musl's
//! `libscope-musl.so`), or that none can (a static binary ignores `LD_PRELOAD`).

use std::io::Read;
use std::path::{Path, PathBuf};

/// How a program is linked, as far as preloading is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// Dynamically linked against glibc (`ld-linux*.so`); the interpreter path.
    Glibc(String),
    /// Dynamically linked against musl (`ld-musl-*.so.1`); the interpreter path.
    Musl(String),
    /// No interpreter: the loader never runs, so `LD_PRELOAD` is ignored.
    Static,
    /// An interpreter of another libc, or a program for another architecture.
    Unsupported(String),
    /// Not an ELF file (nor a script naming one).
    NotElf,
}

impl Linkage {
    /// Why a process of this linkage cannot be scoped; `None` when a build fits it.
    pub fn unscoped_reason(&self) -> Option<String> {
        match self {
            Linkage::Glibc(_) | Linkage::Musl(_) => None,
            Linkage::Static => Some("static binary".into()),
            Linkage::Unsupported(why) => Some(format!("libc not supported: {why}")),
            Linkage::NotElf => Some("not an ELF program".into()),
        }
    }
}

const PT_INTERP: u32 = 3;
/// How much of a file [`program_linkage`] reads: the ELF header, the program headers and
/// the interpreter path sit at its start in every linker's output.
pub const HEAD_LEN: usize = 16 * 1024;

/// The `e_machine` of programs this build of the tools runs natively.
const fn host_machine() -> u16 {
    if cfg!(target_arch = "aarch64") {
        183 // EM_AARCH64
    } else {
        62 // EM_X86_64
    }
}

fn machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        40 => "arm".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("machine {other}"),
    }
}

/// Linkage of an ELF image from its first bytes (at least the headers and the interpreter
/// path; [`HEAD_LEN`] is enough in practice). Pure.
pub fn linkage(head: &[u8]) -> Linkage {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return Linkage::NotElf;
    }
    let class64 = match head[4] {
        1 => false,
        2 => true,
        _ => return Linkage::NotElf,
    };
    let le = match head[5] {
        1 => true,
        2 => false,
        _ => return Linkage::NotElf,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b: [u8; 2] = head.get(o..o.checked_add(2)?)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b: [u8; 4] = head.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = head.get(o..o.checked_add(8)?)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let word = |o: usize| -> Option<u64> {
        if class64 {
            u64_at(o)
        } else {
            u32_at(o).map(u64::from)
        }
    };
    let Some(machine) = u16_at(18) else {
        return Linkage::NotElf;
    };
    // e_phoff, e_phentsize, e_phnum.
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(32), u16_at(54), u16_at(56))
    } else {
        (u32_at(28).map(u64::from), u16_at(42), u16_at(44))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Linkage::NotElf;
    };
    let mut interp = None;
    for i in 0..usize::from(phnum) {
        let Some(ph) = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i.checked_mul(usize::from(phentsize))?))
        else {
            break;
        };
        let Some(ty) = u32_at(ph) else {
            return Linkage::Unsupported("program headers beyond the part read".into());
        };
        if ty != PT_INTERP {
            continue;
        }
        // p_offset and p_filesz.
        let (off, size) = if class64 {
            (
                ph.checked_add(8).and_then(u64_at),
                ph.checked_add(32).and_then(u64_at),
            )
        } else {
            (
                ph.checked_add(4).and_then(word),
                ph.checked_add(16).and_then(word),
            )
        };
        let path = off.zip(size).and_then(|(o, s)| {
            let o = usize::try_from(o).ok()?;
            let s = usize::try_from(s).ok()?;
            head.get(o..o.checked_add(s)?)
        });
        let Some(path) = path else {
            return Linkage::Unsupported("interpreter path beyond the part read".into());
        };
        let path = path.split(|b| *b == 0).next().unwrap_or_default();
        interp = Some(String::from_utf8_lossy(path).into_owned());
        break;
    }
    let Some(interp) = interp else {
        return Linkage::Static;
    };
    if machine != host_machine() {
        return Linkage::Unsupported(format!(
            "a {} program on {}",
            machine_name(machine),
            machine_name(host_machine())
        ));
    }
    let base = interp.rsplit('/').next().unwrap_or(&interp);
    if base.starts_with("ld-musl-") {
        Linkage::Musl(interp)
    } else if base.starts_with("ld-linux") {
        Linkage::Glibc(interp)
    } else {
        Linkage::Unsupported(format!("interpreter {interp}"))
    }
}

/// The interpreter named by a `#!` line (pure): `#!/bin/sh -e` gives `/bin/sh`.
pub fn shebang(head: &[u8]) -> Option<PathBuf> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let prog = line.split_whitespace().next()?;
    Some(PathBuf::from(prog))
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(HEAD_LEN);
    f.take(HEAD_LEN as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Linkage of the program at `path`; a script is judged by its interpreter (`#!`, up to
/// four levels, as the kernel does).
pub fn program_linkage(path: &Path) -> std::io::Result<Linkage> {
    let mut p = path.to_path_buf();
    for _ in 0..5 {
        let head = read_head(&p)?;
        match shebang(&head) {
            Some(next) => p = next,
            None => return Ok(linkage(&head)),
        }
    }
    Ok(Linkage::NotElf)
}

/// Resolves a command name as `execvp` does (pure over the `PATH` value and a file test):
/// a name with a `/` is taken as is, otherwise the first `PATH` entry holding it.
pub fn resolve_in_path(
    name: &str,
    path_var: Option<&str>,
    is_exec: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path_var
        .split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exec(p))
}

/// Whether `p` is a regular file someone may execute.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 little-endian image: header, `phnum` program headers, and the
    /// interpreter string when `interp` is set.
    fn elf64(machine: u16, interp: Option<&str>) -> Vec<u8> {
        let mut v = vec![0u8; 64];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[5] = 1;
        v[18..20].copy_from_slice(&machine.to_le_bytes());
        v[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        v[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        v[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
        let mut load = vec![0u8; 56];
        load[..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let mut ph = vec![0u8; 56];
        let s = interp.map(|s| format!("{s}\0")).unwrap_or_default();
        ph[..4].copy_from_slice(&(if interp.is_some() { PT_INTERP } else { 6 }).to_le_bytes());
        ph[8..16].copy_from_slice(&(64u64 + 112).to_le_bytes());
        ph[32..40].copy_from_slice(&(s.len() as u64).to_le_bytes());
        v.extend(load);
        v.extend(ph);
        v.extend(s.as_bytes());
        v
    }

    #[test]
    fn interpreters_name_the_libc() {
        let m = host_machine();
        assert_eq!(
            linkage(&elf64(m, Some("/lib64/ld-linux-x86-64.so.2"))),
            Linkage::Glibc("/lib64/ld-linux-x86-64.so.2".into())
        );
        assert_eq!(
            linkage(&elf64(m, Some("/lib/ld-musl-x86_64.so.1"))),
            Linkage::Musl("/lib/ld-musl-x86_64.so.1".into())
        );
        assert_eq!(linkage(&elf64(m, None)), Linkage::Static);
        let other = linkage(&elf64(m, Some("/lib/ld-uClibc.so.0")));
        assert_eq!(
            other.unscoped_reason().unwrap(),
            "libc not supported: interpreter /lib/ld-uClibc.so.0"
        );
        assert_eq!(
            linkage(&elf64(m, None)).unscoped_reason().unwrap(),
            "static binary"
        );
        let foreign = if m == 62 { 183 } else { 62 };
        assert!(matches!(
            linkage(&elf64(foreign, Some("/lib/ld-linux-aarch64.so.1"))),
            Linkage::Unsupported(w) if w.contains("program on")
        ));
    }

    #[test]
    fn bad_input_is_not_elf_or_unsupported_never_a_panic() {
        assert_eq!(linkage(b""), Linkage::NotElf);
        assert_eq!(linkage(b"#!/bin/sh\n"), Linkage::NotElf);
        let full = elf64(host_machine(), Some("/lib/ld-musl-x86_64.so.1"));
        // Every truncation: some answer, no panic.
        for n in 0..full.len() {
            let _ = linkage(&full[..n]);
        }
        assert!(matches!(
            linkage(&full[..full.len() - 10]),
            Linkage::Unsupported(_)
        ));
        let mut huge = full.clone();
        huge[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            linkage(&huge),
            Linkage::Static | Linkage::Unsupported(_)
        ));
    }

    #[test]
    fn shebang_and_path_lookup() {
        assert_eq!(
            shebang(b"#!/bin/sh -e\necho"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            shebang(b"#! /usr/bin/env python3\n"),
            Some("/usr/bin/env".into())
        );
        assert_eq!(shebang(b"\x7fELF"), None);
        let exists = |p: &Path| p == Path::new("/b/prog");
        assert_eq!(
            resolve_in_path("prog", Some("/a:/b"), exists),
            Some(PathBuf::from("/b/prog"))
        );
        assert_eq!(resolve_in_path("nope", Some("/a:/b"), exists), None);
        assert_eq!(
            resolve_in_path("./x", Some("/a"), exists),
            Some(PathBuf::from("./x"))
        );
    }

    #[test]
    fn real_programs() {
        // /bin/sh on this host is dynamically linked against glibc or musl.
        let sh = program_linkage(Path::new("/bin/sh")).unwrap();
        assert!(matches!(sh, Linkage::Glibc(_) | Linkage::Musl(_)), "{sh:?}");
    }
}
