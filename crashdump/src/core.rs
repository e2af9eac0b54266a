//! The ELF core writer.

use crate::maps::{Mapping, Maps};
use crate::mem::MemorySource;
use crate::regs::{FPREGS_LEN, NREGS, RSP, ThreadRegs};
use crate::sys::{self, Errno, Result};

const EHDR_LEN: u64 = 64;
const PHDR_LEN: u64 = 56;
const PRSTATUS_LEN: usize = 336;
const PRPSINFO_LEN: usize = 136;
const SIGINFO_LEN: usize = 128;
const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// Largest number of program headers without the PN_XNUM extension.
const MAX_PHDRS: usize = 0xfffe;

/// Process-wide facts for NT_PRPSINFO / NT_PRSTATUS.
#[derive(Clone, Copy, Default)]
pub struct ProcessInfo<'a> {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub sid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Short command name (`/proc/<pid>/comm`), up to 15 bytes used.
    pub fname: &'a [u8],
    /// Command line with arguments separated by spaces, up to 79 bytes used.
    pub psargs: &'a [u8],
}

/// What to put in the core.
pub struct CoreSpec<'a> {
    pub process: ProcessInfo<'a>,
    /// Threads; the first is the crashing (or current) thread and gdb selects it.
    pub threads: &'a [ThreadRegs],
    /// The crashing thread's raw `siginfo_t` (128 bytes), for NT_SIGINFO.
    pub siginfo: Option<&'a [u8; SIGINFO_LEN]>,
    /// Raw `/proc/<pid>/auxv`.
    pub auxv: &'a [u8],
    /// Maximum core size in bytes, 0 = unlimited (`SCOPE_SNAPSHOT_CORE_MAXSIZE`).
    /// Memory of the threads' stacks is kept first, then other mappings in address
    /// order while they fit; left-out mappings keep their PT_LOAD with no file data.
    pub max_size: u64,
}

/// Result of [`write_core`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Size of the core file.
    pub bytes: u64,
    /// Bytes of memory data written (holes included).
    pub memory_bytes: u64,
    /// PT_LOAD segments.
    pub segments: u32,
    /// Some mappings were left out because of `max_size`.
    pub truncated: bool,
    /// Pages that could not be read and were left as zeros.
    pub unreadable_pages: u64,
}

/// How many bytes of mapping `m` a core should contain, before size limits: the
/// kernel's default `coredump_filter` (0x33) choices.
///
/// - not readable, `MADV_DONTDUMP`, device/PFN mappings, `[vvar]`: nothing;
/// - anonymous (private or shared, heap, stacks, `[vdso]`): all of it;
/// - file-backed private with copy-on-write pages (writable, or smaps `Anonymous:` > 0
///   such as relocated RELRO data holding `.dynamic`, which gdb needs to find the
///   shared libraries; without smaps: any read-only non-executable mapping at offset
///   > 0): all of it;
/// - file-backed read-only at offset 0: the first page (ELF header and build id), so gdb
///   can match the file it loads through NT_FILE;
/// - other file-backed mappings: nothing (gdb reads them from the file).
pub fn dump_policy(m: &Mapping, name: &[u8], file_backed: bool, page: u64) -> u64 {
    if !m.readable() || m.dontdump || m.io || name.starts_with(b"[vvar") {
        return 0;
    }
    if !file_backed {
        return m.len();
    }
    if m.shared() {
        return 0;
    }
    let cow = match m.anonymous {
        Some(a) => a > 0,
        None => m.offset > 0 && m.perms & crate::maps::PERM_X == 0,
    };
    if m.writable() || cow {
        return m.len();
    }
    if m.offset == 0 { page.min(m.len()) } else { 0 }
}

/// Decides, for every mapping, how many bytes go into the core (sets `Mapping::dump`).
/// Returns whether something was left out because of `max_size`.
pub fn plan(maps: &mut Maps<'_>, spec: &CoreSpec<'_>, page: u64) -> bool {
    let n = maps.len();
    let header = headers_and_notes_len(maps, spec, page);
    let mut budget = if spec.max_size == 0 {
        u64::MAX
    } else {
        spec.max_size.saturating_sub(header)
    };
    let mut truncated = false;
    for i in 0..n {
        let m = maps.as_slice()[i];
        let fb = maps.file_backed(&m);
        let want = dump_policy(&m, maps.name(&m), fb, page);
        maps.entries_mut()[i].dump = want;
    }
    if spec.max_size == 0 {
        return false;
    }
    let is_stack = |m: &Mapping| {
        spec.threads
            .iter()
            .any(|t| t.regs[RSP] >= m.start && t.regs[RSP] < m.end)
    };
    // Stacks first, then everything else in address order.
    for pass in 0..2 {
        for i in 0..n {
            let m = maps.as_slice()[i];
            if (pass == 0) != is_stack(&m) || m.dump == 0 {
                continue;
            }
            if m.dump <= budget {
                budget -= m.dump;
            } else {
                maps.entries_mut()[i].dump = 0;
                truncated = true;
            }
        }
    }
    truncated
}

fn note_len(desc: usize) -> u64 {
    12 + 8 + align4(desc) as u64
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn nt_file_len(maps: &Maps<'_>) -> usize {
    let mut len = 16;
    for m in maps.as_slice().iter().take(MAX_PHDRS) {
        if maps.file_backed(m) {
            len += 24 + maps.name(m).len() + 1;
        }
    }
    len
}

fn notes_len(maps: &Maps<'_>, spec: &CoreSpec<'_>) -> u64 {
    let mut n = note_len(PRPSINFO_LEN) + note_len(spec.auxv.len()) + note_len(nt_file_len(maps));
    if spec.siginfo.is_some() {
        n += note_len(SIGINFO_LEN);
    }
    for t in spec.threads {
        n += note_len(PRSTATUS_LEN);
        if t.has_fpregs {
            n += note_len(FPREGS_LEN);
        }
    }
    n
}

fn nloads(maps: &Maps<'_>) -> usize {
    maps.len().min(MAX_PHDRS)
}

fn headers_and_notes_len(maps: &Maps<'_>, spec: &CoreSpec<'_>, page: u64) -> u64 {
    let raw = EHDR_LEN + PHDR_LEN * (1 + nloads(maps) as u64) + notes_len(maps, spec);
    raw.div_ceil(page) * page
}

/// Buffered sequential writer over an fd using a caller-provided buffer.
struct Out<'b> {
    fd: i32,
    buf: &'b mut [u8],
    len: usize,
    pos: u64,
}

impl Out<'_> {
    fn put(&mut self, mut b: &[u8]) -> Result<()> {
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush()?;
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            self.pos += n as u64;
            b = &b[n..];
        }
        Ok(())
    }
    fn u32(&mut self, v: u32) -> Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn u16(&mut self, v: u16) -> Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn zeros(&mut self, mut n: usize) -> Result<()> {
        const Z: [u8; 64] = [0; 64];
        while n > 0 {
            let k = n.min(64);
            self.put(&Z[..k])?;
            n -= k;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        sys::write_all(self.fd, &self.buf[..self.len])?;
        self.len = 0;
        Ok(())
    }
    fn note_header(&mut self, ty: u32, desc: usize) -> Result<()> {
        self.u32(5)?;
        self.u32(desc as u32)?;
        self.u32(ty)?;
        self.put(b"CORE\0\0\0\0")
    }
    fn pad4(&mut self, desc: usize) -> Result<()> {
        self.zeros(align4(desc) - desc)
    }
}

/// Writes an ELF core of the process described by `spec` and `maps` to `fd` (a new
/// empty file, written from offset 0), reading memory through `mem`. `scratch` is the
/// I/O buffer (64 KiB or more is best; at least 4 KiB). Sets `Mapping::dump`.
///
/// Nothing is allocated and only async-signal-safe calls are made (`write`, `lseek`,
/// `ftruncate`, plus whatever `mem` calls), so this runs inside a signal handler.
pub fn write_core(
    fd: i32,
    spec: &CoreSpec<'_>,
    maps: &mut Maps<'_>,
    mem: &mut dyn MemorySource,
    scratch: &mut [u8],
) -> Result<CoreStats> {
    if scratch.len() < 4096 || spec.threads.is_empty() {
        return Err(Errno(libc::EINVAL));
    }
    let page = sys::page_size();
    let truncated = plan(maps, spec, page);
    let nload = nloads(maps);
    let phnum = 1 + nload;
    let notes_off = EHDR_LEN + PHDR_LEN * phnum as u64;
    let notes_size = notes_len(maps, spec);
    let data_off = headers_and_notes_len(maps, spec, page);

    let mut o = Out {
        fd,
        buf: scratch,
        len: 0,
        pos: 0,
    };
    // ELF header.
    o.put(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0])?;
    o.zeros(8)?;
    o.u16(4)?; // ET_CORE
    o.u16(62)?; // EM_X86_64
    o.u32(1)?;
    o.u64(0)?; // entry
    o.u64(EHDR_LEN)?; // phoff
    o.u64(0)?; // shoff
    o.u32(0)?; // flags
    o.u16(EHDR_LEN as u16)?;
    o.u16(PHDR_LEN as u16)?;
    o.u16(phnum as u16)?;
    o.u16(64)?; // shentsize
    o.u16(0)?;
    o.u16(0)?;
    // PT_NOTE.
    o.u32(PT_NOTE)?;
    o.u32(0)?;
    o.u64(notes_off)?;
    o.u64(0)?;
    o.u64(0)?;
    o.u64(notes_size)?;
    o.u64(0)?;
    o.u64(4)?;
    // PT_LOADs.
    let mut off = data_off;
    for m in maps.as_slice().iter().take(nload) {
        let mut flags = 0;
        if m.readable() {
            flags |= PF_R;
        }
        if m.writable() {
            flags |= PF_W;
        }
        if m.perms & crate::maps::PERM_X != 0 {
            flags |= PF_X;
        }
        o.u32(PT_LOAD)?;
        o.u32(flags)?;
        o.u64(off)?;
        o.u64(m.start)?;
        o.u64(0)?;
        o.u64(m.dump)?;
        o.u64(m.len())?;
        o.u64(page)?;
        off += m.dump;
    }
    let total = off;

    // Notes: first thread's PRSTATUS, then process notes, then its FPREGSET, then the
    // other threads (the kernel's order; gdb selects the first thread).
    let first = &spec.threads[0];
    write_prstatus(&mut o, spec, first)?;
    write_prpsinfo(&mut o, &spec.process)?;
    if let Some(si) = spec.siginfo {
        o.note_header(NT_SIGINFO, SIGINFO_LEN)?;
        o.put(si)?;
    }
    o.note_header(NT_AUXV, spec.auxv.len())?;
    o.put(spec.auxv)?;
    o.pad4(spec.auxv.len())?;
    write_nt_file(&mut o, maps, page)?;
    if first.has_fpregs {
        o.note_header(NT_FPREGSET, FPREGS_LEN)?;
        o.put(&first.fpregs)?;
    }
    for t in &spec.threads[1..] {
        write_prstatus(&mut o, spec, t)?;
        if t.has_fpregs {
            o.note_header(NT_FPREGSET, FPREGS_LEN)?;
            o.put(&t.fpregs)?;
        }
    }
    debug_assert_eq!(o.pos, notes_off + notes_size);
    o.flush()?;
    let scratch = o.buf;

    // Memory.
    let mut stats = CoreStats {
        bytes: total,
        segments: nload as u32,
        truncated,
        ..Default::default()
    };
    let mut off = data_off;
    for m in maps.as_slice().iter().take(nload) {
        if m.dump == 0 {
            continue;
        }
        let anon = !maps.file_backed(m);
        sys::lseek(fd, off as i64, libc::SEEK_SET)?;
        let mut done = 0u64;
        while done < m.dump {
            let addr = m.start + done;
            let want = m.dump - done;
            let got = match mem.copy_to_fd(fd, addr, want, anon, scratch) {
                Ok(n) => n.min(want),
                Err(Errno(libc::EFAULT | libc::EIO | libc::ENOMEM | libc::ESRCH)) => 0,
                Err(e) => return Err(e),
            };
            if got == 0 {
                // Unreadable page: leave a hole.
                let skip = (page - addr % page).min(want);
                sys::lseek(fd, skip as i64, libc::SEEK_CUR)?;
                stats.unreadable_pages += 1;
                done += skip;
            } else {
                done += got;
            }
        }
        stats.memory_bytes += m.dump;
        off += m.dump;
    }
    // Trailing holes do not extend the file by themselves.
    // SAFETY: plain syscall on our fd.
    if unsafe { libc::ftruncate(fd, total as i64) } != 0 {
        return Err(Errno::last());
    }
    Ok(stats)
}

fn write_prstatus(o: &mut Out<'_>, spec: &CoreSpec<'_>, t: &ThreadRegs) -> Result<()> {
    o.note_header(NT_PRSTATUS, PRSTATUS_LEN)?;
    // pr_info {si_signo, si_code, si_errno}
    o.u32(t.cursig as u32)?;
    o.u32(0)?;
    o.u32(0)?;
    o.u16(t.cursig as u16)?; // pr_cursig
    o.zeros(2)?;
    o.u64(0)?; // pr_sigpend
    o.u64(t.sighold)?;
    o.u32(t.tid as u32)?;
    o.u32(spec.process.ppid as u32)?;
    o.u32(spec.process.pgrp as u32)?;
    o.u32(spec.process.sid as u32)?;
    o.zeros(64)?; // utime, stime, cutime, cstime
    for i in 0..NREGS {
        o.u64(t.regs[i])?;
    }
    o.u32(t.has_fpregs as u32)?;
    o.zeros(4)
}

fn write_prpsinfo(o: &mut Out<'_>, p: &ProcessInfo<'_>) -> Result<()> {
    o.note_header(NT_PRPSINFO, PRPSINFO_LEN)?;
    o.put(&[0, b'R', 0, 0])?; // state, sname, zomb, nice
    o.zeros(4)?;
    o.u64(0)?; // flag
    o.u32(p.uid)?;
    o.u32(p.gid)?;
    o.u32(p.pid as u32)?;
    o.u32(p.ppid as u32)?;
    o.u32(p.pgrp as u32)?;
    o.u32(p.sid as u32)?;
    let f = &p.fname[..p.fname.len().min(15)];
    o.put(f)?;
    o.zeros(16 - f.len())?;
    let a = &p.psargs[..p.psargs.len().min(79)];
    o.put(a)?;
    o.zeros(80 - a.len())
}

fn write_nt_file(o: &mut Out<'_>, maps: &Maps<'_>, page: u64) -> Result<()> {
    let len = nt_file_len(maps);
    o.note_header(NT_FILE, len)?;
    let files = maps
        .as_slice()
        .iter()
        .take(MAX_PHDRS)
        .filter(|m| maps.file_backed(m));
    o.u64(files.clone().count() as u64)?;
    o.u64(page)?;
    for m in files.clone() {
        o.u64(m.start)?;
        o.u64(m.end)?;
        o.u64(m.offset / page)?;
    }
    for m in files {
        o.put(maps.name(m))?;
        o.put(&[0])?;
    }
    o.pad4(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{PERM_R, PERM_SHARED, PERM_W};

    fn m(perms: u8, offset: u64) -> Mapping {
        Mapping {
            start: 0x1000,
            end: 0x5000,
            offset,
            inode: 1,
            perms,
            ..Default::default()
        }
    }

    #[test]
    fn policy_follows_kernel_defaults() {
        assert_eq!(
            dump_policy(&m(PERM_R | PERM_W, 0), b"", false, 4096),
            0x4000
        );
        assert_eq!(dump_policy(&m(PERM_R, 0), b"/lib/x.so", true, 4096), 4096);
        let mut relro = m(PERM_R, 0x2000);
        relro.anonymous = Some(0);
        assert_eq!(dump_policy(&relro, b"/lib/x.so", true, 4096), 0);
        relro.anonymous = Some(4096);
        assert_eq!(dump_policy(&relro, b"/lib/x.so", true, 4096), 0x4000);
        relro.anonymous = None;
        assert_eq!(dump_policy(&relro, b"/lib/x.so", true, 4096), 0x4000);
        assert_eq!(
            dump_policy(&m(PERM_R | PERM_W, 0x2000), b"/lib/x.so", true, 4096),
            0x4000
        );
        assert_eq!(
            dump_policy(&m(PERM_R | PERM_W | PERM_SHARED, 0), b"/f", true, 4096),
            0
        );
        assert_eq!(dump_policy(&m(0, 0), b"", false, 4096), 0);
        assert_eq!(dump_policy(&m(PERM_R, 0), b"[vvar]", false, 4096), 0);
        let mut dd = m(PERM_R | PERM_W, 0);
        dd.dontdump = true;
        assert_eq!(dump_policy(&dd, b"", false, 4096), 0);
    }
}
