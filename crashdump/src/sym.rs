//! Allocation-free ELF symbol lookup from a module file on disk (`.symtab`, else
//! `.dynsym`), usable in a signal handler (only `open`, `pread`, `close`).

use crate::sys;

/// Result of [`symbolize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SymInfo {
    /// The address as an ELF virtual address of the module file (what `addr2line -e`
    /// and `gdb`'s `info symbol` on the file expect).
    pub vaddr: u64,
    /// Length of the symbol name written to the caller's name buffer (0: no symbol).
    pub name_len: usize,
    /// `vaddr - symbol start`.
    pub offset: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Maps offset `file_off` in the ELF file `path` (NUL-terminated) to its virtual
/// address and finds the function symbol containing it. The name goes to `name`
/// (truncated to its size). `scratch` should be 4 KiB or more. `None` when the file is
/// not a readable ELF64 file or the offset is in no loadable segment.
pub fn symbolize(
    path: &[u8],
    file_off: u64,
    scratch: &mut [u8],
    name: &mut [u8],
) -> Option<SymInfo> {
    let fd = sys::open(path, libc::O_RDONLY, 0).ok()?;
    let r = symbolize_fd(fd, file_off, scratch, name);
    sys::close(fd);
    r
}

/// [`symbolize`] on an open file.
pub fn symbolize_fd(
    fd: i32,
    file_off: u64,
    scratch: &mut [u8],
    name: &mut [u8],
) -> Option<SymInfo> {
    if scratch.len() < 1024 {
        return None;
    }
    let mut eh = [0u8; 64];
    if sys::pread_full(fd, &mut eh, 0).ok()? != 64
        || eh[..4] != [0x7f, b'E', b'L', b'F']
        || eh[4] != 2
    {
        return None;
    }
    let phoff = u64_at(&eh, 0x20);
    let shoff = u64_at(&eh, 0x28);
    let phentsize = u16_at(&eh, 0x36) as usize;
    let phnum = u16_at(&eh, 0x38) as usize;
    let shentsize = u16_at(&eh, 0x3a) as usize;
    let shnum = u16_at(&eh, 0x3c) as usize;

    // Offset -> vaddr through the PT_LOAD that contains it.
    let mut vaddr = None;
    if phentsize >= 56 {
        for i in 0..phnum {
            let mut ph = [0u8; 56];
            if sys::pread_full(fd, &mut ph, phoff + (i * phentsize) as u64).ok()? != 56 {
                break;
            }
            if u32_at(&ph, 0) != 1 {
                continue;
            }
            let (p_off, p_vaddr, p_filesz, p_memsz) = (
                u64_at(&ph, 8),
                u64_at(&ph, 16),
                u64_at(&ph, 32),
                u64_at(&ph, 40),
            );
            let span = p_filesz.max(p_memsz);
            if file_off >= p_off && file_off < p_off + span {
                vaddr = Some(file_off - p_off + p_vaddr);
                break;
            }
        }
    }
    let vaddr = vaddr?;
    let mut info = SymInfo {
        vaddr,
        ..Default::default()
    };
    if shentsize < 64 || shoff == 0 {
        return Some(info);
    }
    // Find .symtab (type 2), else .dynsym (11), and its string table.
    let mut tabs = [(0u64, 0u64, 0u64, 0u32); 2]; // (offset, size, entsize, link)
    for i in 0..shnum {
        let mut sh = [0u8; 64];
        if sys::pread_full(fd, &mut sh, shoff + (i * shentsize) as u64).ok()? != 64 {
            break;
        }
        let ty = u32_at(&sh, 4);
        let slot = match ty {
            2 => 0,
            11 => 1,
            _ => continue,
        };
        tabs[slot] = (
            u64_at(&sh, 0x18),
            u64_at(&sh, 0x20),
            u64_at(&sh, 0x38),
            u32_at(&sh, 0x28),
        );
    }
    for (off, size, entsize, link) in tabs {
        if size == 0 || entsize < 24 {
            continue;
        }
        let mut sh = [0u8; 64];
        if sys::pread_full(fd, &mut sh, shoff + link as u64 * shentsize as u64).ok()? != 64 {
            continue;
        }
        let stroff = u64_at(&sh, 0x18);
        let strsize = u64_at(&sh, 0x20);
        // Best: (st_value, st_size, st_name)
        let mut best: Option<(u64, u64, u32)> = None;
        let per = (scratch.len() / entsize as usize).max(1);
        let count = size / entsize;
        let mut idx = 0u64;
        while idx < count {
            let k = (per as u64).min(count - idx) as usize;
            let bytes = k * entsize as usize;
            let got = sys::pread_full(fd, &mut scratch[..bytes], off + idx * entsize).ok()?;
            if got < bytes {
                break;
            }
            for j in 0..k {
                let s = &scratch[j * entsize as usize..];
                let st_type = s[4] & 0xf;
                let shndx = u16_at(s, 6);
                let value = u64_at(s, 8);
                let sz = u64_at(s, 16);
                if !(st_type == 2 || st_type == 10) || shndx == 0 || value > vaddr {
                    continue;
                }
                let inside = vaddr < value.saturating_add(sz.max(1));
                let better = match best {
                    None => true,
                    Some((bv, bs, _)) => {
                        let b_inside = vaddr < bv.saturating_add(bs.max(1));
                        (inside && !b_inside) || (inside == b_inside && value > bv)
                    }
                };
                if better {
                    best = Some((value, sz, u32_at(s, 0)));
                }
            }
            idx += k as u64;
        }
        if let Some((value, sz, st_name)) = best {
            // A sized symbol must contain vaddr (otherwise the address is in a local
            // function missing from this table: better `??` than a wrong name); an
            // unsized one (assembly label) is accepted when close by.
            let inside = vaddr < value.saturating_add(sz.max(1));
            if !inside && (sz > 0 || vaddr - value > 0x1000) {
                continue;
            }
            if (st_name as u64) < strsize {
                let n = name.len().min((strsize - st_name as u64) as usize);
                let got = sys::pread_full(fd, &mut name[..n], stroff + st_name as u64).unwrap_or(0);
                let len = name[..got].iter().position(|&c| c == 0).unwrap_or(got);
                info.name_len = len;
                info.offset = vaddr - value;
                return Some(info);
            }
        }
    }
    Some(info)
}
