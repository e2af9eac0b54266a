//! `/proc/<pid>/maps` and `/proc/<pid>/smaps` parsing into caller-provided buffers.

use crate::sys::{self, Errno, Result};

pub const PERM_R: u8 = 1;
pub const PERM_W: u8 = 2;
pub const PERM_X: u8 = 4;
/// `s` in the maps perms (shared mapping); private otherwise.
pub const PERM_SHARED: u8 = 8;

/// One mapping. The path is stored in the [`Maps`] name arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub inode: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `PERM_*` bits.
    pub perms: u8,
    /// `VmFlags` has `dd` (`madvise(MADV_DONTDUMP)`); only known from smaps.
    pub dontdump: bool,
    /// `VmFlags` has `io` or `pf` (device/PFN mappings: never read).
    pub io: bool,
    /// `Anonymous:` bytes from smaps (copy-on-write pages of a file mapping, such as
    /// relocated RELRO data); `None` when read from plain maps.
    pub anonymous: Option<u64>,
    /// Bytes of this mapping the core writer dumps (set by [`crate::core::plan`]).
    pub dump: u64,
    pub(crate) name_off: u32,
    pub(crate) name_len: u32,
}

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn readable(&self) -> bool {
        self.perms & PERM_R != 0
    }
    pub fn writable(&self) -> bool {
        self.perms & PERM_W != 0
    }
    pub fn shared(&self) -> bool {
        self.perms & PERM_SHARED != 0
    }
}

/// A maps snapshot held in caller-provided storage: `entries` for the mappings and
/// `names` for their paths. Nothing is allocated.
pub struct Maps<'a> {
    entries: &'a mut [Mapping],
    len: usize,
    names: &'a mut [u8],
    names_len: usize,
    /// Mappings dropped because `entries` was full.
    pub dropped: usize,
}

impl<'a> Maps<'a> {
    pub fn new(entries: &'a mut [Mapping], names: &'a mut [u8]) -> Self {
        Maps {
            entries,
            len: 0,
            names,
            names_len: 0,
            dropped: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.names_len = 0;
        self.dropped = 0;
    }

    pub fn as_slice(&self) -> &[Mapping] {
        &self.entries[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path (or `[heap]`, `[stack]`, ...; empty for anonymous) of a mapping.
    pub fn name(&self, m: &Mapping) -> &[u8] {
        let s = m.name_off as usize;
        &self.names[s..s + m.name_len as usize]
    }

    /// True when the mapping is backed by a file (its name is an absolute path).
    pub fn file_backed(&self, m: &Mapping) -> bool {
        m.inode != 0 && self.name(m).first() == Some(&b'/')
    }

    /// The mapping containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let s = self.as_slice();
        // maps are sorted by address.
        let i = s.partition_point(|m| m.end <= addr);
        s.get(i).filter(|m| m.start <= addr)
    }

    /// Load base of the module mapped at `m`: the start of the first mapping of the
    /// same file (same inode and device) with offset 0.
    pub fn module_base(&self, m: &Mapping) -> u64 {
        self.as_slice()
            .iter()
            .find(|o| {
                o.inode == m.inode
                    && o.dev_major == m.dev_major
                    && o.dev_minor == m.dev_minor
                    && o.offset == 0
                    && o.start <= m.start
            })
            .map(|o| o.start)
            .unwrap_or(m.start - m.offset)
    }

    fn push(&mut self, mut m: Mapping, name: &[u8]) {
        if self.len == self.entries.len() {
            self.dropped += 1;
            return;
        }
        let room = self.names.len() - self.names_len;
        let n = name.len().min(room);
        self.names[self.names_len..self.names_len + n].copy_from_slice(&name[..n]);
        m.name_off = self.names_len as u32;
        m.name_len = n as u32;
        self.names_len += n;
        self.entries[self.len] = m;
        self.len += 1;
    }

    pub(crate) fn entries_mut(&mut self) -> &mut [Mapping] {
        &mut self.entries[..self.len]
    }

    fn last_mut(&mut self) -> Option<&mut Mapping> {
        if self.len == 0 {
            None
        } else {
            Some(&mut self.entries[self.len - 1])
        }
    }

    /// Reads `/proc/<pid>/smaps` (or `maps`) from an open fd, using `scratch` for I/O
    /// (4 KiB or more). Replaces the current contents.
    pub fn read_from_fd(&mut self, fd: i32, scratch: &mut [u8]) -> Result<()> {
        if scratch.len() < 512 {
            return Err(Errno(libc::EINVAL));
        }
        self.clear();
        let mut have = 0usize;
        loop {
            let n = sys::read(fd, &mut scratch[have..])?;
            let eof = n == 0;
            have += n;
            // Process complete lines.
            let mut start = 0;
            while let Some(nl) = scratch[start..have].iter().position(|&c| c == b'\n') {
                let (line_start, line_end) = (start, start + nl);
                start = line_end + 1;
                self.parse_line_at(scratch, line_start, line_end);
            }
            if eof {
                if start < have {
                    self.parse_line_at(scratch, start, have);
                }
                return Ok(());
            }
            if start == 0 && have == scratch.len() {
                // A line longer than scratch: drop it.
                have = 0;
                continue;
            }
            scratch.copy_within(start..have, 0);
            have -= start;
        }
    }

    fn parse_line_at(&mut self, scratch: &[u8], a: usize, b: usize) {
        self.parse_line(&scratch[a..b]);
    }

    /// Opens and reads `/proc/<pid>/smaps` (`pid` 0 = self).
    pub fn read_pid(&mut self, pid: i32, smaps: bool, scratch: &mut [u8]) -> Result<()> {
        let mut path = crate::fmt::FixedBuf::<64>::new();
        use core::fmt::Write;
        if pid == 0 {
            let _ = write!(path, "/proc/self/");
        } else {
            let _ = write!(path, "/proc/{pid}/");
        }
        let _ = write!(path, "{}\0", if smaps { "smaps" } else { "maps" });
        let fd = sys::open(path.as_bytes(), libc::O_RDONLY, 0)?;
        let r = self.read_from_fd(fd, scratch);
        sys::close(fd);
        r
    }

    /// Parses one line of maps/smaps.
    pub fn parse_line(&mut self, line: &[u8]) {
        let mut it = Fields { s: line, i: 0 };
        let Some(first) = it.next() else { return };
        if first.last() == Some(&b':') {
            if first == b"Anonymous:"
                && let Some(last) = self.last_mut()
            {
                last.anonymous = it.next().and_then(dec).map(|kb| kb * 1024);
            } else if first == b"VmFlags:"
                && let Some(last) = self.last_mut()
            {
                for f in it.by_ref() {
                    match f {
                        b"dd" => last.dontdump = true,
                        b"io" | b"pf" => last.io = true,
                        _ => {}
                    }
                }
            }
            return;
        }
        let Some(dash) = first.iter().position(|&c| c == b'-') else {
            return;
        };
        let (Some(start), Some(end)) = (hex(&first[..dash]), hex(&first[dash + 1..])) else {
            return;
        };
        let (Some(perms), Some(off), Some(dev), Some(inode)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return;
        };
        let mut p = 0u8;
        for (i, &c) in perms.iter().enumerate() {
            match (i, c) {
                (0, b'r') => p |= PERM_R,
                (1, b'w') => p |= PERM_W,
                (2, b'x') => p |= PERM_X,
                (3, b's') => p |= PERM_SHARED,
                _ => {}
            }
        }
        let (maj, min) = match dev.iter().position(|&c| c == b':') {
            Some(c) => (
                hex(&dev[..c]).unwrap_or(0) as u32,
                hex(&dev[c + 1..]).unwrap_or(0) as u32,
            ),
            None => (0, 0),
        };
        // The name is the rest of the line after the inode, leading spaces removed.
        let mut rest = &line[it.i..];
        while let [b' ' | b'\t', tail @ ..] = rest {
            rest = tail;
        }
        self.push(
            Mapping {
                start,
                end,
                offset: hex(off).unwrap_or(0),
                inode: dec(inode).unwrap_or(0),
                dev_major: maj,
                dev_minor: min,
                perms: p,
                ..Mapping::default()
            },
            rest,
        );
    }
}

struct Fields<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        while self.i < self.s.len() && (self.s[self.i] == b' ' || self.s[self.i] == b'\t') {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return None;
        }
        let st = self.i;
        while self.i < self.s.len() && self.s[self.i] != b' ' && self.s[self.i] != b'\t' {
            self.i += 1;
        }
        Some(&self.s[st..self.i])
    }
}

pub(crate) fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

pub(crate) fn dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smaps_lines() {
        let mut e = [Mapping::default(); 4];
        let mut n = [0u8; 256];
        let mut m = Maps::new(&mut e, &mut n);
        m.parse_line(b"55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234   /usr/bin/cat");
        m.parse_line(b"Size:                  4 kB");
        m.parse_line(b"Anonymous:             8 kB");
        m.parse_line(b"VmFlags: rd mr mw me dd sd");
        m.parse_line(b"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0    [stack]");
        m.parse_line(b"7f0000000000-7f0000001000 rw-s 00001000 00:05 99 /dev/shm/a b (deleted)");
        m.parse_line(b"7f0000002000-7f0000003000 ---p 00000000 00:00 0 ");
        assert_eq!(m.len(), 4);
        let s = m.as_slice();
        assert_eq!(s[0].start, 0x55d0c0a00000);
        assert_eq!(s[0].perms, PERM_R);
        assert!(s[0].dontdump);
        assert_eq!(s[0].anonymous, Some(8192));
        assert_eq!(s[1].anonymous, None);
        assert_eq!(s[0].inode, 1234);
        assert_eq!((s[0].dev_major, s[0].dev_minor), (8, 1));
        assert_eq!(m.name(&s[0]), b"/usr/bin/cat");
        assert!(m.file_backed(&s[0]));
        assert_eq!(m.name(&s[1]), b"[stack]");
        assert!(!s[1].dontdump);
        assert!(s[2].shared() && s[2].writable());
        assert_eq!(s[2].offset, 0x1000);
        assert_eq!(m.name(&s[2]), b"/dev/shm/a b (deleted)");
        assert_eq!(m.name(&s[3]), b"");
        assert!(!s[3].readable());
        m.parse_line(b"1-2 r--p 0 0:0 0");
        assert_eq!(m.dropped, 1);
    }

    #[test]
    fn reads_own_smaps() {
        let mut e = vec![Mapping::default(); 4096];
        let mut n = vec![0u8; 1 << 20];
        let mut scratch = vec![0u8; 4096];
        let mut m = Maps::new(&mut e, &mut n);
        m.read_pid(0, true, &mut scratch).unwrap();
        assert!(m.len() > 5);
        let here = reads_own_smaps as *const () as usize as u64;
        let mine = m.find(here).expect("own code mapped");
        assert!(mine.perms & PERM_X != 0);
        assert!(m.file_backed(mine));
        assert!(m.as_slice().windows(2).all(|w| w[0].end <= w[1].start));
    }
}
