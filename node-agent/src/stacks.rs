//! Stacks of live threads: registers from ptrace, unwinding through `.eh_frame` CFI
//! (frame-pointer walk as fallback), symbols from the modules' ELF symbol tables.
//! Modules are opened through `/proc/<pid>/map_files/`, so this works for processes in
//! other mount namespaces and for deleted binaries.
//!
//! To keep the target stopped only briefly, modules are parsed and indexed before the
//! threads are stopped ([`ProcessImage::prepare`]); while stopped, only registers and a
//! copy of each thread's stack ([`ProcessImage::copy_stack`]) are read; unwinding and
//! symbolization run on that copy after the threads resume.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, io_err};
use crate::symbols::{CfiContext, ElfModule, ModuleCache, SavedReg};

const MAX_FRAMES: usize = 128;
/// Most bytes of one thread's stack copied while it is stopped (from sp upwards).
pub const MAX_STACK_COPY: usize = 1 << 20;

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

/// A copy of a thread's stack, from its sp upwards, taken while it was stopped.
#[derive(Debug, Clone, Default)]
pub struct StackCopy {
    pub base: u64,
    pub data: Vec<u8>,
}

impl StackCopy {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let b = self.data.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}

/// A module mapped into the process: address range, parsed file, load bias.
struct ModMap {
    start: u64,
    end: u64,
    module: Arc<ElfModule>,
    bias: u64,
    path: String,
}

/// Memory and modules of one process, for unwinding.
pub struct ProcessImage {
    pid: i32,
    mem: File,
    /// Sorted by start (as /proc lists them).
    maps: Vec<Mapping>,
    cache: ModuleCache,
    /// Modules of mapped ranges looked up so far, sorted by start.
    modules: Vec<ModMap>,
    ctx: Box<CfiContext>,
}

impl ProcessImage {
    pub fn open(pid: i32) -> Result<ProcessImage> {
        let mp = PathBuf::from(format!("/proc/{pid}/maps"));
        let mut maps = parse_maps(&std::fs::read_to_string(&mp).map_err(io_err(&mp))?);
        maps.sort_by_key(|m| m.start);
        let memp = PathBuf::from(format!("/proc/{pid}/mem"));
        let mem = File::open(&memp).map_err(io_err(&memp))?;
        Ok(ProcessImage {
            pid,
            mem,
            maps,
            cache: ModuleCache::default(),
            modules: Vec::new(),
            ctx: Box::new(CfiContext::new()),
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
        let i = self.maps.partition_point(|m| m.start <= addr);
        self.maps[..i].last().filter(|m| addr < m.end)
    }

    /// Copy the stack of a stopped thread: from `sp` to the end of its mapping, at most
    /// [`MAX_STACK_COPY`] bytes. Empty when sp is not in a mapping.
    pub fn copy_stack(&self, sp: u64) -> StackCopy {
        let Some(m) = self.mapping(sp) else {
            return StackCopy {
                base: sp,
                data: Vec::new(),
            };
        };
        let len = usize::try_from(m.end - sp)
            .unwrap_or(MAX_STACK_COPY)
            .min(MAX_STACK_COPY);
        let mut data = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.mem.read_at(&mut data[got..], sp + got as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        data.truncate(got);
        StackCopy { base: sp, data }
    }

    /// The module mapped at `addr` with the address bias (avma - svma).
    fn module_at(&mut self, addr: u64) -> Option<(Arc<ElfModule>, u64, String)> {
        let i = self.modules.partition_point(|m| m.start <= addr);
        if let Some(mm) = self.modules[..i].last().filter(|m| addr < m.end) {
            return Some((mm.module.clone(), mm.bias, mm.path.clone()));
        }
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
        let i = self.modules.partition_point(|x| x.start <= m.start);
        self.modules.insert(
            i,
            ModMap {
                start: m.start,
                end: m.end,
                module: module.clone(),
                bias,
                path: m.path.clone(),
            },
        );
        Some((module, bias, m.path))
    }

    /// Parse and index every executable file mapping's module now, so that nothing but
    /// register and stack reads happens while the threads are stopped.
    pub fn prepare(&mut self) {
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

    /// Former name of [`ProcessImage::prepare`].
    pub fn preload_modules(&mut self) {
        self.prepare()
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

    /// Unwind from registers (ip, sp, fp) reading the live process's memory; x86_64
    /// System V.
    pub fn unwind(&mut self, ip: u64, sp: u64, fp: u64) -> Vec<LiveFrame> {
        self.unwind_with(ip, sp, fp, None)
    }

    /// Unwind from registers reading stack memory from `stack` (a copy taken while the
    /// thread was stopped), and from the live process only outside it.
    pub fn unwind_copy(&mut self, ip: u64, sp: u64, fp: u64, stack: &StackCopy) -> Vec<LiveFrame> {
        self.unwind_with(ip, sp, fp, Some(stack))
    }

    fn unwind_with(
        &mut self,
        ip: u64,
        sp: u64,
        fp: u64,
        stack: Option<&StackCopy>,
    ) -> Vec<LiveFrame> {
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
                .step_cfi(lookup, sp, fp, stack)
                .or_else(|| self.step_fp(sp, fp, stack));
            match next {
                Some((nip, nsp, nfp)) if nsp > sp || (nsp == sp && nip != ip) => {
                    (ip, sp, fp) = (nip, nsp, nfp);
                }
                _ => break,
            }
        }
        frames
    }

    fn read_stack(&self, stack: Option<&StackCopy>, addr: u64) -> Option<u64> {
        stack
            .and_then(|s| s.read_u64(addr))
            .or_else(|| self.read_u64(addr))
    }

    fn step_fp(&self, sp: u64, fp: u64, stack: Option<&StackCopy>) -> Option<(u64, u64, u64)> {
        if fp < sp || fp == 0 {
            return None;
        }
        let ra = self.read_stack(stack, fp.checked_add(8)?)?;
        let nfp = self.read_stack(stack, fp)?;
        Some((ra, fp + 16, nfp))
    }

    fn step_cfi(
        &mut self,
        ip: u64,
        sp: u64,
        fp: u64,
        stack: Option<&StackCopy>,
    ) -> Option<(u64, u64, u64)> {
        let (module, bias, _) = self.module_at(ip)?;
        let rule = module.unwind_rule(ip.wrapping_sub(bias), &mut self.ctx)?;
        let cfa_base = match gimli::Register(rule.cfa_reg) {
            gimli::X86_64::RSP => sp,
            gimli::X86_64::RBP => fp,
            _ => return None,
        };
        let cfa = (cfa_base as i64).wrapping_add(rule.cfa_offset) as u64;
        let at = |o: i64| (cfa as i64).wrapping_add(o) as u64;
        let ra = match rule.ra {
            SavedReg::At(o) => self.read_stack(stack, at(o))?,
            _ => return None,
        };
        let nfp = match rule.rbp {
            SavedReg::At(o) => self.read_stack(stack, at(o))?,
            SavedReg::Is(o) => at(o),
            SavedReg::Same => fp,
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
