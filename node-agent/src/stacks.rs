//! Stacks of live threads: registers from ptrace, unwinding through `.eh_frame` CFI
//! (frame-pointer walk as fallback), symbols from the modules' ELF symbol tables.
//! Modules are opened through `/proc/<pid>/map_files/`, so this works for processes in
//! other mount namespaces and for deleted binaries.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, io_err};
use crate::symbols::{ElfModule, ModuleCache};

const MAX_FRAMES: usize = 128;

/// One mapping of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub path: String,
}

/// Parse `/proc/<pid>/maps` (pure).
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?.to_string();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let _dev = it.next()?;
            let _inode = it.next()?;
            let path = it.collect::<Vec<_>>().join(" ");
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                perms,
                offset,
                path,
            })
        })
        .collect()
}

/// One symbolized frame of a live thread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LiveFrame {
    pub ip: u64,
    pub module: Option<String>,
    pub symbol: Option<String>,
}

impl LiveFrame {
    pub fn describe(&self) -> String {
        let m = self
            .module
            .as_deref()
            .map(|m| m.rsplit('/').next().unwrap_or(m));
        match (&self.symbol, m) {
            (Some(s), Some(m)) => format!("{:#018x} {s} ({m})", self.ip),
            (None, Some(m)) => format!("{:#018x} ?? ({m})", self.ip),
            (Some(s), None) => format!("{:#018x} {s}", self.ip),
            (None, None) => format!("{:#018x} ??", self.ip),
        }
    }
}

/// The stack of one thread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadStack {
    pub tid: i32,
    pub name: String,
    pub frames: Vec<LiveFrame>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Memory and modules of one process, for unwinding.
pub struct ProcessImage {
    pid: i32,
    mem: File,
    maps: Vec<Mapping>,
    cache: ModuleCache,
}

impl ProcessImage {
    pub fn open(pid: i32) -> Result<ProcessImage> {
        let mp = PathBuf::from(format!("/proc/{pid}/maps"));
        let maps = parse_maps(&std::fs::read_to_string(&mp).map_err(io_err(&mp))?);
        let memp = PathBuf::from(format!("/proc/{pid}/mem"));
        let mem = File::open(&memp).map_err(io_err(&memp))?;
        Ok(ProcessImage {
            pid,
            mem,
            maps,
            cache: ModuleCache::default(),
        })
    }

    pub fn maps(&self) -> &[Mapping] {
        &self.maps
    }

    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.mem.read_exact_at(&mut b, addr).ok()?;
        Some(u64::from_le_bytes(b))
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.mem.read_exact_at(buf, addr)
    }

    fn mapping(&self, addr: u64) -> Option<&Mapping> {
        self.maps.iter().find(|m| addr >= m.start && addr < m.end)
    }

    /// The module mapped at `addr` with the address bias (avma - svma).
    fn module_at(&mut self, addr: u64) -> Option<(Arc<ElfModule>, u64, String)> {
        let m = self.mapping(addr)?.clone();
        if !m.path.starts_with('/') {
            return None;
        }
        let pid = self.pid;
        let mf = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        let root = format!("/proc/{pid}/root{}", m.path);
        let key = m.path.clone();
        let module = self.cache.get(&key, || {
            ElfModule::load(std::path::Path::new(&mf))
                .or_else(|| ElfModule::load(std::path::Path::new(&root)))
        })?;
        // Load bias: the file's offset-0 mapping holds its lowest load segment.
        let bias = match self.maps.iter().find(|x| x.path == m.path && x.offset == 0) {
            Some(first) => first.start.wrapping_sub(module.base_vaddr()),
            None => m.start.wrapping_sub(module.vaddr_of_file_offset(m.offset)),
        };
        Some((module, bias, m.path))
    }

    /// Parse every executable file mapping's module now, so that less work happens
    /// while the threads are stopped.
    pub fn preload_modules(&mut self) {
        let starts: Vec<u64> = self
            .maps
            .iter()
            .filter(|m| m.perms.contains('x') && m.path.starts_with('/'))
            .map(|m| m.start)
            .collect();
        for s in starts {
            let _ = self.module_at(s);
        }
    }

    /// Symbolize one address.
    pub fn symbolize(&mut self, ip: u64) -> LiveFrame {
        match self.module_at(ip) {
            Some((m, bias, path)) => LiveFrame {
                ip,
                symbol: m.symbolize(ip.wrapping_sub(bias)),
                module: Some(path),
            },
            None => LiveFrame {
                ip,
                module: self
                    .mapping(ip)
                    .map(|m| m.path.clone())
                    .filter(|p| !p.is_empty()),
                symbol: None,
            },
        }
    }

    /// Unwind from registers (ip, sp, fp); x86_64 System V.
    pub fn unwind(&mut self, ip: u64, sp: u64, fp: u64) -> Vec<LiveFrame> {
        let (mut ip, mut sp, mut fp) = (ip, sp, fp);
        let mut frames = Vec::new();
        for depth in 0..MAX_FRAMES {
            if ip == 0 || self.mapping(ip).is_none() {
                break;
            }
            frames.push(self.symbolize(ip));
            // Return addresses point after the call: look up ip-1 for callers.
            let lookup = if depth == 0 { ip } else { ip - 1 };
            let next = self
                .step_cfi(lookup, sp, fp)
                .or_else(|| self.step_fp(sp, fp));
            match next {
                Some((nip, nsp, nfp)) if nsp > sp || (nsp == sp && nip != ip) => {
                    (ip, sp, fp) = (nip, nsp, nfp);
                }
                _ => break,
            }
        }
        frames
    }

    fn step_fp(&self, sp: u64, fp: u64) -> Option<(u64, u64, u64)> {
        if fp < sp || fp == 0 {
            return None;
        }
        let ra = self.read_u64(fp.checked_add(8)?)?;
        let nfp = self.read_u64(fp)?;
        Some((ra, fp + 16, nfp))
    }

    fn step_cfi(&mut self, ip: u64, sp: u64, fp: u64) -> Option<(u64, u64, u64)> {
        use gimli::{
            BaseAddresses, CfaRule, EhFrame, LittleEndian, RegisterRule, UnwindContext,
            UnwindSection, X86_64,
        };
        let (module, bias, _) = self.module_at(ip)?;
        let (eh_addr, range) = module.eh_frame.clone()?;
        let eh = EhFrame::new(&module.data[range], LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(eh_addr)
            .set_text(module.text_addr);
        let mut ctx = UnwindContext::new();
        let row = eh
            .unwind_info_for_address(
                &bases,
                &mut ctx,
                ip.wrapping_sub(bias),
                EhFrame::cie_from_offset,
            )
            .ok()?;
        let reg = |r: gimli::Register| -> Option<u64> {
            if r == X86_64::RSP {
                Some(sp)
            } else if r == X86_64::RBP {
                Some(fp)
            } else {
                None
            }
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                (reg(*register)? as i64).wrapping_add(*offset) as u64
            }
            CfaRule::Expression(_) => return None,
        };
        let ra = match row.register(X86_64::RA)? {
            RegisterRule::Offset(o) => self.read_u64((cfa as i64).wrapping_add(o) as u64)?,
            _ => return None,
        };
        let nfp = match row.register(X86_64::RBP) {
            Some(RegisterRule::Offset(o)) => self.read_u64((cfa as i64).wrapping_add(o) as u64)?,
            Some(RegisterRule::ValOffset(o)) => (cfa as i64).wrapping_add(o) as u64,
            _ => fp,
        };
        Some((ra, cfa, nfp))
    }
}

/// Name of a thread (`/proc/<pid>/task/<tid>/comm`).
pub fn thread_name(pid: i32, tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse() {
        let m = parse_maps(
            "55d0c0000000-55d0c0001000 r-xp 00001000 08:01 42 /usr/bin/my prog\n7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].start, 0x55d0c0000000);
        assert_eq!(m[0].offset, 0x1000);
        assert_eq!(m[0].path, "/usr/bin/my prog");
        assert_eq!(m[1].path, "[stack]");
    }
}
