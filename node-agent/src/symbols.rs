//! ELF modules for symbolization and unwinding: symbol tables (`.symtab` and `.dynsym`),
//! load segments, and `.eh_frame` with a sorted FDE index (from `.eh_frame_hdr`'s
//! binary-search table when present, else built by walking `.eh_frame` once), so finding
//! the unwind rule of an address is a binary search instead of a walk over every entry.
//! Used for live-process stacks and to symbolize crash frames given as module + offset.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, EhFrame, EhFrameHdr, LittleEndian, RegisterRule,
    UnwindContext, UnwindSection, X86_64,
};
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
    /// (initial vaddr, offset in `.eh_frame`) of every FDE, sorted by vaddr.
    fde_index: Vec<(u64, usize)>,
}

/// Where the caller's value of a register is, relative to the CFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedReg {
    /// Unchanged from the callee.
    Same,
    /// Saved in memory at CFA + offset.
    At(i64),
    /// Equal to CFA + offset.
    Is(i64),
}

/// The x86_64 unwind rule at one address: CFA = register + offset, the return address
/// and the caller's rbp. Register numbers are DWARF's (6 = rbp, 7 = rsp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnwindRule {
    pub cfa_reg: u16,
    pub cfa_offset: i64,
    pub ra: SavedReg,
    pub rbp: SavedReg,
}

/// Unwind state reused across lookups (it holds heap buffers).
pub type CfiContext = UnwindContext<usize>;

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
        let hdr = file.section_by_name(".eh_frame_hdr").and_then(|s| {
            let d = s.data().ok()?;
            let start = d.as_ptr() as usize - base;
            Some((s.address(), start..start + d.len()))
        });
        let mut m = ElfModule {
            data,
            syms,
            loads,
            eh_frame,
            text_addr,
            fde_index: Vec::new(),
        };
        m.fde_index = m.build_fde_index(hdr);
        Some(m)
    }

    fn bases(&self) -> Option<(EhFrame<gimli::EndianSlice<'_, LittleEndian>>, BaseAddresses)> {
        let (eh_addr, range) = self.eh_frame.clone()?;
        let eh = EhFrame::new(&self.data[range], LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(eh_addr)
            .set_text(self.text_addr);
        Some((eh, bases))
    }

    /// The sorted FDE index: `.eh_frame_hdr`'s table when it is usable (no FDE parsed),
    /// else one walk over `.eh_frame`.
    fn build_fde_index(&self, hdr: Option<(u64, std::ops::Range<usize>)>) -> Vec<(u64, usize)> {
        let Some((eh, bases)) = self.bases() else {
            return Vec::new();
        };
        let eh_addr = self.eh_frame.as_ref().map(|e| e.0).unwrap_or(0);
        let from_hdr = hdr.and_then(|(hdr_addr, range)| {
            let bases = bases.clone().set_eh_frame_hdr(hdr_addr);
            let parsed = EhFrameHdr::new(&self.data[range], LittleEndian)
                .parse(&bases, 8)
                .ok()?;
            if parsed.eh_frame_ptr().direct().ok()? != eh_addr {
                return None;
            }
            let table = parsed.table()?;
            let mut it = table.iter(&bases);
            let mut idx = Vec::new();
            while let Some((loc, fde)) = it.next().ok()? {
                let off = fde.direct().ok()?.checked_sub(eh_addr)?;
                idx.push((loc.direct().ok()?, usize::try_from(off).ok()?));
            }
            Some(idx)
        });
        let mut idx = from_hdr.unwrap_or_else(|| {
            let mut idx = Vec::new();
            let mut entries = eh.entries(&bases);
            while let Ok(Some(e)) = entries.next() {
                if let CieOrFde::Fde(partial) = e
                    && let Ok(fde) = partial.parse(EhFrame::cie_from_offset)
                {
                    idx.push((fde.initial_address(), fde.offset()));
                }
            }
            idx
        });
        idx.sort_unstable();
        idx
    }

    /// Number of FDEs indexed.
    pub fn fde_count(&self) -> usize {
        self.fde_index.len()
    }

    /// The unwind rule at ELF vaddr `vaddr` (binary search in the FDE index).
    pub fn unwind_rule(&self, vaddr: u64, ctx: &mut CfiContext) -> Option<UnwindRule> {
        let (eh, bases) = self.bases()?;
        let i = self.fde_index.partition_point(|e| e.0 <= vaddr);
        // The FDE starting last at or below `vaddr`; a couple before it in case of
        // empty or overlapping entries.
        for &(_, off) in self.fde_index[..i].iter().rev().take(3) {
            let Ok(fde) = eh.fde_from_offset(&bases, off.into(), EhFrame::cie_from_offset) else {
                continue;
            };
            if !fde.contains(vaddr) {
                continue;
            }
            let row = fde.unwind_info_for_address(&eh, &bases, ctx, vaddr).ok()?;
            return rule_of_row(row);
        }
        None
    }

    /// The unwind rule found by gimli's linear walk over `.eh_frame` (reference for
    /// tests of the index).
    #[cfg(test)]
    fn unwind_rule_linear(&self, vaddr: u64, ctx: &mut CfiContext) -> Option<UnwindRule> {
        let (eh, bases) = self.bases()?;
        let row = eh
            .unwind_info_for_address(&bases, ctx, vaddr, EhFrame::cie_from_offset)
            .ok()?;
        rule_of_row(row)
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

fn rule_of_row(row: &gimli::UnwindTableRow<usize>) -> Option<UnwindRule> {
    let (cfa_reg, cfa_offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => (register.0, *offset),
        CfaRule::Expression(_) => return None,
    };
    let saved = |r: Option<&RegisterRule<usize>>| match r {
        None | Some(RegisterRule::SameValue) => Some(SavedReg::Same),
        Some(RegisterRule::Offset(o)) => Some(SavedReg::At(*o)),
        Some(RegisterRule::ValOffset(o)) => Some(SavedReg::Is(*o)),
        _ => None,
    };
    Some(UnwindRule {
        cfa_reg,
        cfa_offset,
        ra: match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(o)) => SavedReg::At(o),
            _ => return None,
        },
        rbp: saved(row.register(X86_64::RBP).as_ref()).unwrap_or(SavedReg::Same),
    })
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

    /// The FDE index finds the same rule as gimli's linear walk, at the start, middle
    /// and end of every FDE and between FDEs, in this binary and in libc (which has an
    /// `.eh_frame_hdr`), and also when the index is built by walking `.eh_frame`.
    #[test]
    fn fde_index_matches_linear_search() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
            .map(std::path::PathBuf::from);
        let mut paths = vec![exe];
        paths.extend(libc);
        for p in paths {
            let m = ElfModule::load(&p).unwrap();
            assert!(
                m.fde_count() > 100,
                "{}: {} FDEs",
                p.display(),
                m.fde_count()
            );
            let walked = m.build_fde_index(None);
            assert_eq!(
                walked,
                m.fde_index,
                "{}: hdr table and walk agree",
                p.display()
            );
            let mut ctx = CfiContext::new();
            let mut ctx2 = CfiContext::new();
            let (eh, bases) = m.bases().unwrap();
            // Sample ~60 FDEs evenly (the linear search is slow in debug builds).
            let step = (m.fde_index.len() / 60).max(1);
            let mut found = 0;
            for &(start, off) in m.fde_index.iter().step_by(step) {
                let fde = eh
                    .fde_from_offset(&bases, off.into(), EhFrame::cie_from_offset)
                    .unwrap();
                let len = fde.len();
                for a in [
                    start,
                    start + len / 2,
                    start + len.saturating_sub(1),
                    start + len,
                ] {
                    let fast = m.unwind_rule(a, &mut ctx);
                    let slow = m.unwind_rule_linear(a, &mut ctx2);
                    assert_eq!(fast, slow, "{} at {a:#x}", p.display());
                    found += fast.is_some() as usize;
                }
            }
            assert!(found > 120, "{}: only {found} rules found", p.display());
            assert_eq!(m.unwind_rule(0, &mut ctx), None);
        }
    }

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
