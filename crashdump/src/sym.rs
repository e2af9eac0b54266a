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

/// Writes the readable form of a Rust legacy-mangled symbol (`_ZN...E`) into `out`
/// (`scope::crash::signals::thread_trampoline`, hash dropped). Returns the length, or
/// `None` when `name` is not such a symbol (print it as is). No allocation.
pub fn demangle_rust(name: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut s = name.strip_prefix(b"_ZN")?;
    let mut n = 0usize;
    let mut first = true;
    let push = |out: &mut [u8], n: &mut usize, b: &[u8]| {
        let k = b.len().min(out.len().saturating_sub(*n));
        out[*n..*n + k].copy_from_slice(&b[..k]);
        *n += k;
    };
    loop {
        if s.first() == Some(&b'E') {
            return if first { None } else { Some(n) };
        }
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let len: usize = core::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
        s = &s[digits..];
        if s.len() < len {
            return None;
        }
        let ident = &s[..len];
        s = &s[len..];
        // The trailing hash element `h` + 16 hex digits.
        let is_hash = s.first() == Some(&b'E')
            && len == 17
            && ident[0] == b'h'
            && ident[1..].iter().all(|c| c.is_ascii_hexdigit());
        if is_hash {
            continue;
        }
        if !first {
            push(out, &mut n, b"::");
        }
        first = false;
        let mut i = if ident.starts_with(b"_$") { 1 } else { 0 };
        while i < ident.len() {
            let rest = &ident[i..];
            if rest.starts_with(b"..") {
                push(out, &mut n, b"::");
                i += 2;
            } else if rest[0] == b'$' {
                let Some(end) = rest[1..].iter().position(|&c| c == b'$') else {
                    push(out, &mut n, &rest[..1]);
                    i += 1;
                    continue;
                };
                let code = &rest[1..1 + end];
                let rep: &[u8] = match code {
                    b"SP" => b"@",
                    b"BP" => b"*",
                    b"RF" => b"&",
                    b"LT" => b"<",
                    b"GT" => b">",
                    b"LP" => b"(",
                    b"RP" => b")",
                    b"C" => b",",
                    b"u7e" => b"~",
                    b"u20" => b" ",
                    b"u27" => b"'",
                    b"u5b" => b"[",
                    b"u5d" => b"]",
                    b"u7b" => b"{",
                    b"u7d" => b"}",
                    b"u3b" => b";",
                    b"u2b" => b"+",
                    b"u22" => b"\"",
                    _ => code,
                };
                push(out, &mut n, rep);
                i += end + 2;
            } else {
                push(out, &mut n, &rest[..1]);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<String> {
        let mut out = [0u8; 256];
        demangle_rust(s.as_bytes(), &mut out)
            .map(|n| String::from_utf8_lossy(&out[..n]).into_owned())
    }

    #[test]
    fn demangles_legacy_rust_symbols() {
        assert_eq!(
            d("_ZN5scope5crash7signals17thread_trampoline17heed705c2eabdee95E").as_deref(),
            Some("scope::crash::signals::thread_trampoline")
        );
        assert_eq!(
            d("_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$..$u7b$$u7b$closure$u7d$$u7d$$GT$17h0123456789abcdefE").as_deref(),
            Some("core::ptr::drop_in_place<std::rt::lang_start<()>::{{closure}}>")
        );
        assert_eq!(d("main"), None);
        assert_eq!(d("_ZN3fooE").as_deref(), Some("foo"));
        assert_eq!(d("_ZNK3Foo3barEv"), None);
    }

    #[test]
    fn symbolizes_own_function() {
        // This test binary has a .symtab: find this very function from its file offset.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mut path = exe.to_str().unwrap().as_bytes().to_vec();
        path.push(0);
        let mut e = vec![crate::Mapping::default(); 4096];
        let mut n = vec![0u8; 1 << 20];
        let mut scratch = vec![0u8; 1 << 16];
        let mut m = crate::Maps::new(&mut e, &mut n);
        m.read_pid(0, false, &mut scratch).unwrap();
        let addr = symbolizes_own_function as *const () as usize as u64;
        let map = *m.find(addr).unwrap();
        let mut name = [0u8; 512];
        let si = symbolize(
            &path,
            addr - map.start + map.offset,
            &mut scratch,
            &mut name,
        )
        .unwrap();
        let mut out = [0u8; 512];
        let n = demangle_rust(&name[..si.name_len], &mut out).unwrap();
        let s = std::str::from_utf8(&out[..n]).unwrap();
        assert!(s.ends_with("symbolizes_own_function"), "{s}");
        assert_eq!(si.offset, 0);
    }
}
