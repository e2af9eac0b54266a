//! ELF modules for symbolization and unwinding: symbol tables (`.symtab` and `.dynsym`),
//! load segments, and `.eh_frame`. Used for live-process stacks and to symbolize crash
//! frames given as module + offset.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::bundle::Frame;

/// One symbol: ELF virtual address, size, demangled name.
#[derive(Debug, Clone)]
struct Sym {
    addr: u64,
    size: u64,
    name: String,
}

/// A loaded ELF file.
#[derive(Debug)]
pub struct ElfModule {
    pub data: Vec<u8>,
    syms: Vec<Sym>,
    /// (file offset, vaddr, file size) of each load segment.
    loads: Vec<(u64, u64, u64)>,
    /// `.eh_frame` (vaddr, byte range in `data`).
    pub eh_frame: Option<(u64, std::ops::Range<usize>)>,
    pub text_addr: u64,
}

impl ElfModule {
    /// Parse an ELF file. Returns None when it is not ELF.
    pub fn load(path: &Path) -> Option<ElfModule> {
        let data = std::fs::read(path).ok()?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Option<ElfModule> {
        let file = object::File::parse(&*data).ok()?;
        let mut syms: Vec<Sym> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| matches!(s.kind(), SymbolKind::Text) && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some(Sym {
                    addr: s.address(),
                    size: s.size(),
                    name: demangle(name),
                })
            })
            .collect();
        syms.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
        syms.dedup_by(|a, b| a.addr == b.addr);
        let loads = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, s.address(), size)
            })
            .collect();
        let base = data.as_ptr() as usize;
        let eh_frame = file.section_by_name(".eh_frame").and_then(|s| {
            let d = s.data().ok()?;
            let start = d.as_ptr() as usize - base;
            Some((s.address(), start..start + d.len()))
        });
        let text_addr = file
            .section_by_name(".text")
            .map(|s| s.address())
            .unwrap_or(0);
        Some(ElfModule {
            data,
            syms,
            loads,
            eh_frame,
            text_addr,
        })
    }

    /// ELF vaddr of a file offset (through the load segments).
    pub fn vaddr_of_file_offset(&self, off: u64) -> u64 {
        self.loads
            .iter()
            .find(|(o, _, sz)| off >= *o && off < o + sz.max(&1))
            .map(|(o, v, _)| off - o + v)
            .unwrap_or(off)
    }

    /// Lowest load vaddr, page aligned (the vaddr of the module's base address).
    pub fn base_vaddr(&self) -> u64 {
        self.loads.iter().map(|l| l.1).min().unwrap_or(0) & !0xfff
    }

    /// Symbol containing `vaddr`, as `name+0xoff`.
    pub fn symbolize(&self, vaddr: u64) -> Option<String> {
        let i = self.syms.partition_point(|s| s.addr <= vaddr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        // Accept a zero-size symbol only for a short distance.
        let within = if s.size > 0 {
            vaddr < s.addr + s.size
        } else {
            vaddr - s.addr < 4096
        };
        within.then(|| {
            let off = vaddr - s.addr;
            if off == 0 {
                s.name.clone()
            } else {
                format!("{}+{off:#x}", s.name)
            }
        })
    }
}

/// Demangle Rust symbols (without the hash); others unchanged.
pub fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_string(),
    }
}

/// Cache of parsed modules keyed by path.
#[derive(Default)]
pub struct ModuleCache {
    map: HashMap<String, Option<Arc<ElfModule>>>,
}

impl ModuleCache {
    pub fn get(
        &mut self,
        key: &str,
        open: impl FnOnce() -> Option<ElfModule>,
    ) -> Option<Arc<ElfModule>> {
        self.map
            .entry(key.to_string())
            .or_insert_with(|| open().map(Arc::new))
            .clone()
    }
}

/// Fill in missing symbols of frames given as module + offset (offset from the module's
/// base address, as `dladdr` reports it). Modules are read from the host's filesystem;
/// frames whose module cannot be read keep module + offset.
pub fn symbolize_frames(frames: &mut [Frame]) {
    let mut cache = ModuleCache::default();
    for f in frames.iter_mut().filter(|f| f.symbol.is_none()) {
        let (Some(m), Some(off)) = (f.module.clone(), f.offset) else {
            continue;
        };
        let Some(module) = cache.get(&m, || ElfModule::load(Path::new(&m))) else {
            continue;
        };
        let vaddr = module.base_vaddr() + off;
        f.symbol = module.symbolize(vaddr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_own_binary() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let m = ElfModule::load(&exe).expect("test binary is ELF");
        assert!(m.eh_frame.is_some());
        // Find the vaddr of this function through the symbol table by name.
        let s = m
            .syms
            .iter()
            .find(|s| s.name.ends_with("tests::symbolizes_own_binary"))
            .expect("symbol");
        let got = m.symbolize(s.addr + 1).unwrap();
        assert_eq!(got, format!("{}+0x1", s.name));
        assert_eq!(m.symbolize(s.addr).unwrap(), s.name);
    }
}
