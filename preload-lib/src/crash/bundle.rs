//! Bundle files, written from the handler with preallocated buffers.

use super::Prepared;
use super::capture::{Buf, Text};
use super::threads;
use crashdump::fmt::FixedBuf;
use crashdump::regs::REG_NAMES;
use crashdump::sys;
use crashdump::{CoreSpec, Maps, ProcessInfo, SelfMemory, ThreadRegs};
use std::ffi::c_int;
use std::fmt::Write;

/// Bundle creation failure (reported by `snapshot_now`; ignored in a crash).
#[derive(Debug)]
pub(crate) struct BundleErr(&'static str, sys::Errno);

impl std::fmt::Display for BundleErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

pub(crate) struct Ctx<'a> {
    pub p: &'a Prepared,
    pub pid: i32,
    pub tid: i32,
    pub secs: u64,
    pub ts: (u64, u32),
    pub dir_len: usize,
    pub sig: Option<(c_int, &'a libc::siginfo_t)>,
    pub lead: &'a ThreadRegs,
}

fn mkdir(path: &[u8], mode: u32) -> Result<(), sys::Errno> {
    // SAFETY: NUL-terminated path.
    if unsafe { libc::mkdir(path.as_ptr().cast(), mode) } == 0 {
        Ok(())
    } else {
        let e = sys::Errno::last();
        if e.0 == libc::EEXIST { Ok(()) } else { Err(e) }
    }
}

/// Creates `<dir>/<pid>/` and `info_<ts>` (O_EXCL, bumping the nanoseconds on a
/// collision). Leaves `<dir>/<pid>/` in `path`; returns its length, the ts and the fd.
pub(crate) fn create_bundle(
    p: &Prepared,
    pid: i32,
    secs: u64,
    mut nanos: u32,
    path: &mut FixedBuf<4096>,
) -> Result<(usize, (u64, u32), i32), BundleErr> {
    // mkdir -p <dir>: every prefix. The base directory is shared by processes of
    // different users, like /tmp: world-writable and sticky when we create it.
    path.clear();
    for (i, &c) in p.dir.iter().enumerate() {
        if c == b'/' && i > 0 {
            path.push_bytes(b"\0");
            let _ = mkdir(path.as_bytes(), 0o755);
            path.truncate(path.len() - 1);
        }
        path.push_bytes(&[c]);
    }
    path.push_bytes(b"\0");
    // SAFETY: NUL-terminated path.
    if unsafe { libc::mkdir(path.as_bytes().as_ptr().cast(), 0o777) } == 0 {
        // SAFETY: same path.
        unsafe { libc::chmod(path.as_bytes().as_ptr().cast(), 0o1777) };
    }
    path.truncate(path.len() - 1);
    let _ = write!(path, "/{pid}");
    path.push_bytes(b"\0");
    mkdir(path.as_bytes(), 0o755).map_err(|e| BundleErr("creating the bundle directory", e))?;
    path.truncate(path.len() - 1);
    path.push_bytes(b"/");
    let dir_len = path.len();
    let mut secs = secs;
    for _ in 0..10_000 {
        path.truncate(dir_len);
        let _ = write!(path, "info_{secs}.{nanos:09}\0");
        match sys::open(
            path.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o644,
        ) {
            Ok(fd) => return Ok((dir_len, (secs, nanos), fd)),
            Err(e) if e.0 == libc::EEXIST => {
                nanos += 1;
                if nanos >= 1_000_000_000 {
                    nanos = 0;
                    secs += 1;
                }
            }
            Err(e) => return Err(BundleErr("creating info file", e)),
        }
    }
    Err(BundleErr(
        "choosing a bundle timestamp",
        sys::Errno(libc::EEXIST),
    ))
}

fn set_path(ctx: &Ctx<'_>, path: &mut FixedBuf<4096>, prefix: &str, suffix: &str) {
    path.truncate(ctx.dir_len);
    let _ = write!(path, "{prefix}{}.{:09}{suffix}\0", ctx.ts.0, ctx.ts.1);
}

fn create(
    ctx: &Ctx<'_>,
    path: &mut FixedBuf<4096>,
    prefix: &str,
    suffix: &str,
    mode: u32,
) -> Option<i32> {
    set_path(ctx, path, prefix, suffix);
    sys::open(
        path.as_bytes(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        mode,
    )
    .ok()
}

/// Writes a file with fixed content.
pub(crate) fn write_simple(
    ctx: &Ctx<'_>,
    path: &mut FixedBuf<4096>,
    prefix: &str,
    suffix: &str,
    data: &[u8],
) {
    if let Some(fd) = create(ctx, path, prefix, suffix, 0o644) {
        let _ = sys::write_all(fd, data);
        sys::close(fd);
    }
}

pub(crate) fn signal_name(sig: c_int) -> &'static str {
    scope_config::crash::signal_name(sig)
}

/// `si_code` text as in `siginfo.h`.
pub(crate) fn code_reason(sig: c_int, code: c_int) -> &'static str {
    match (sig, code) {
        (_, 0) => "SI_USER: sent by kill",
        (_, -1) => "SI_QUEUE: sent by sigqueue",
        (_, -6) => "SI_TKILL: sent by tkill",
        (_, 0x80) => "SI_KERNEL: sent by the kernel",
        (libc::SIGSEGV, 1) => "SEGV_MAPERR: address not mapped to object",
        (libc::SIGSEGV, 2) => "SEGV_ACCERR: invalid permissions for mapped object",
        (libc::SIGSEGV, 3) => "SEGV_BNDERR: failed address bound checks",
        (libc::SIGSEGV, 4) => "SEGV_PKUERR: failed protection key checks",
        (libc::SIGBUS, 1) => "BUS_ADRALN: invalid address alignment",
        (libc::SIGBUS, 2) => "BUS_ADRERR: nonexistent physical address",
        (libc::SIGBUS, 3) => "BUS_OBJERR: object-specific hardware error",
        (libc::SIGBUS, 4) => "BUS_MCEERR_AR: hardware memory error, action required",
        (libc::SIGILL, 1) => "ILL_ILLOPC: illegal opcode",
        (libc::SIGILL, 2) => "ILL_ILLOPN: illegal operand",
        (libc::SIGILL, 3) => "ILL_ILLADR: illegal addressing mode",
        (libc::SIGILL, 4) => "ILL_ILLTRP: illegal trap",
        (libc::SIGILL, 5) => "ILL_PRVOPC: privileged opcode",
        (libc::SIGILL, 6) => "ILL_PRVREG: privileged register",
        (libc::SIGILL, 7) => "ILL_COPROC: coprocessor error",
        (libc::SIGILL, 8) => "ILL_BADSTK: internal stack error",
        (libc::SIGFPE, 1) => "FPE_INTDIV: integer divide by zero",
        (libc::SIGFPE, 2) => "FPE_INTOVF: integer overflow",
        (libc::SIGFPE, 3) => "FPE_FLTDIV: floating-point divide by zero",
        (libc::SIGFPE, 4) => "FPE_FLTOVF: floating-point overflow",
        (libc::SIGFPE, 5) => "FPE_FLTUND: floating-point underflow",
        (libc::SIGFPE, 6) => "FPE_FLTRES: floating-point inexact result",
        (libc::SIGFPE, 7) => "FPE_FLTINV: invalid floating-point operation",
        (libc::SIGFPE, 8) => "FPE_FLTSUB: subscript out of range",
        _ => "unknown",
    }
}

/// One symbolized frame: module path (in the maps arena), ELF vaddr, symbol in
/// `work.symname[..len]` and offset.
struct FrameInfo {
    module: Option<(usize, usize)>,
    vaddr: u64,
    sym_len: usize,
    sym_off: u64,
}

fn describe(maps: &Maps<'_>, addr: u64, call_site: bool, work: &mut Buf) -> FrameInfo {
    let mut fi = FrameInfo {
        module: None,
        vaddr: 0,
        sym_len: 0,
        sym_off: 0,
    };
    let look = if call_site {
        addr.saturating_sub(1)
    } else {
        addr
    };
    let Some(m) = maps.find(look) else {
        return fi;
    };
    let name = maps.name(m);
    if name.is_empty() {
        return fi;
    }
    // Position of the name in the arena, to print it later without copying.
    let base_ptr = maps.name(&maps.as_slice()[0]).as_ptr() as usize;
    fi.module = Some((name.as_ptr() as usize - base_ptr, name.len()));
    if !maps.file_backed(m) {
        fi.vaddr = addr - m.start;
        return fi;
    }
    let mut p = FixedBuf::<4096>::new();
    p.push_bytes(name);
    p.push_bytes(b"\0");
    let file_off = look - m.start + m.offset;
    match crashdump::symbolize(
        p.as_bytes(),
        file_off,
        &mut work.scratch[..64 * 1024],
        &mut work.symname,
    ) {
        Some(si) => {
            let delta = addr - look;
            fi.vaddr = si.vaddr + delta;
            fi.sym_len = si.name_len;
            fi.sym_off = si.offset + delta;
            // Rust symbols readable (`scope::crash::...`), hash dropped.
            let mut tmp = [0u8; 1024];
            if let Some(n) = crashdump::sym::demangle_rust(&work.symname[..fi.sym_len], &mut tmp) {
                let n = n.min(work.symname.len());
                work.symname[..n].copy_from_slice(&tmp[..n]);
                fi.sym_len = n;
            }
        }
        None => fi.vaddr = addr - maps.module_base(m),
    }
    fi
}

fn module_bytes<'m>(maps: &'m Maps<'_>, fi: &FrameInfo) -> &'m [u8] {
    match fi.module {
        Some((off, len)) if !maps.is_empty() => {
            let first = maps.name(&maps.as_slice()[0]).as_ptr();
            // SAFETY: off/len were taken from the same arena above.
            unsafe { std::slice::from_raw_parts(first.add(off), len) }
        }
        _ => b"??",
    }
}

fn push_frame_line(
    out: &mut Text,
    i: usize,
    addr: u64,
    fi: &FrameInfo,
    maps: &Maps<'_>,
    sym: &[u8],
) {
    let _ = write!(out, "#{i} 0x{addr:016x} ");
    out.push_bytes(module_bytes(maps, fi));
    if fi.module.is_some() {
        let _ = write!(out, "+0x{:x}", fi.vaddr);
    }
    out.push_bytes(b" ");
    if fi.sym_len > 0 {
        out.push_bytes(sym);
        let _ = write!(out, "+0x{:x}", fi.sym_off);
    } else {
        out.push_bytes(b"??");
    }
    out.push_bytes(b"\n");
}

/// `info_<ts>`: AppScope's lines, then ours.
pub(crate) fn write_info(ctx: &Ctx<'_>, t: &mut Text, work: &mut Buf, maps: &Maps<'_>, fd: i32) {
    t.clear();
    t.push_bytes(b"Scope Version: ");
    t.push_bytes(&ctx.p.version);
    let _ = write!(
        t,
        "\nUnix Time: {} sec\nPID: {}\nProcess name: ",
        ctx.secs, ctx.pid
    );
    t.push_bytes(&work.comm[..work.comm_len]);
    let _ = write!(t, "\nThread: {} (", ctx.tid);
    t.push_bytes(&work.tname[..work.tname_len]);
    t.push_bytes(b")\n");
    match ctx.sig {
        Some((sig, info)) => {
            // SAFETY: si_addr is valid for fault signals (and harmless otherwise).
            let addr = unsafe { info.si_addr() } as u64;
            let _ = writeln!(t, "Signal: {sig} ({})", signal_name(sig));
            let _ = writeln!(
                t,
                "Signal code: {} ({})",
                info.si_code,
                code_reason(sig, info.si_code)
            );
            let _ = writeln!(t, "Fault address: 0x{addr:x}");
            let pc = ctx.lead.pc();
            let fi = describe(maps, pc, false, work);
            let _ = write!(t, "Faulting instruction: 0x{pc:x} ");
            t.push_bytes(module_bytes(maps, &fi));
            let _ = write!(t, "+0x{:x} ", fi.vaddr);
            if fi.sym_len > 0 {
                t.push_bytes(&work.symname[..fi.sym_len]);
                let _ = write!(t, "+0x{:x}", fi.sym_off);
            } else {
                t.push_bytes(b"??");
            }
            t.push_bytes(b"\n");
        }
        None => t.push_bytes(b"Snapshot: requested (SCOPE_CMD_SNAPSHOT), process alive\n"),
    }
    let _ = sys::write_all(fd, t.as_bytes());
}

/// `backtrace_<ts>`.
pub(crate) fn write_backtrace(ctx: &Ctx<'_>, t: &mut Text, work: &mut Buf, maps: &Maps<'_>) {
    t.clear();
    for i in 0..work.nframes {
        let addr = work.frames[i];
        let fi = describe(maps, addr, i > 0, work);
        push_frame_line(t, i, addr, &fi, maps, &work.symname[..fi.sym_len]);
    }
    if let Some(fd) = create(ctx, &mut work.path, "backtrace_", "", 0o644) {
        let _ = sys::write_all(fd, t.as_bytes());
        sys::close(fd);
    }
}

pub(crate) struct CoreResult {
    pub bytes: u64,
    pub truncated: bool,
    pub threads: u32,
    pub missing: u32,
}

/// `core_<ts>`.
pub(crate) fn write_core_file(
    ctx: &Ctx<'_>,
    work: &mut Buf,
    maps: &mut Maps<'_>,
    collected: Option<(usize, u32)>,
) -> Option<CoreResult> {
    let (n, missing) = match collected {
        Some(c) => c,
        None => {
            work.threads[0] = *ctx.lead;
            work.threads[0].cursig = ctx.sig.map(|s| s.0).unwrap_or(0);
            threads::collect(
                &mut work.threads,
                Some(ctx.tid),
                &mut work.tids,
                &mut work.scratch[..64 * 1024],
            )
        }
    };
    work.auxv_len = sys::read_file(b"/proc/self/auxv\0", &mut work.auxv).unwrap_or(0);
    let fd = create(ctx, &mut work.path, "core_", "", 0o600)?;
    // SAFETY: plain getters.
    let (ppid, pgrp, sid, uid, gid) = unsafe {
        (
            libc::getppid(),
            libc::getpgrp(),
            libc::getsid(0),
            libc::getuid(),
            libc::getgid(),
        )
    };
    let spec = CoreSpec {
        process: ProcessInfo {
            pid: ctx.pid,
            ppid,
            pgrp,
            sid,
            uid,
            gid,
            fname: &work.comm[..work.comm_len],
            psargs: &work.cmdline[..work.cmdline_len],
        },
        threads: &work.threads[..n.max(1)],
        siginfo: if ctx.sig.is_some() {
            Some(&work.siginfo)
        } else {
            None
        },
        auxv: &work.auxv[..work.auxv_len],
        max_size: ctx.p.core_maxsize,
    };
    let r = crashdump::write_core(
        fd,
        &spec,
        maps,
        &mut SelfMemory::default(),
        &mut work.scratch,
    );
    sys::close(fd);
    let stats = r.ok()?;
    Some(CoreResult {
        bytes: stats.bytes,
        truncated: stats.truncated,
        threads: n as u32,
        missing,
    })
}

/// `crash_<ts>.json` or `snapshot_<ts>.json` (`scope_config::crash::CrashReport`).
pub(crate) fn write_json(
    ctx: &Ctx<'_>,
    t: &mut Text,
    work: &mut Buf,
    maps: &Maps<'_>,
    core: Option<&CoreResult>,
) {
    t.clear();
    let (secs, nanos) = ctx.ts;
    let kind = if ctx.sig.is_some() {
        "crash"
    } else {
        "snapshot"
    };
    let _ = write!(
        t,
        "{{\"schema\":{},\"kind\":\"{kind}\",\"ts\":\"{secs}.{nanos:09}\",\"time\":{},\"pid\":{},\"ppid\":{},\"procname\":\"",
        scope_config::crash::BUNDLE_SCHEMA,
        ctx.secs,
        ctx.pid,
        // SAFETY: plain getter.
        unsafe { libc::getppid() },
    );
    t.push_json_escaped(&work.comm[..work.comm_len]);
    t.push_bytes(b"\",\"cmd\":\"");
    t.push_json_escaped(&work.cmdline[..work.cmdline_len]);
    let _ = write!(t, "\",\"tid\":{},\"thread_name\":\"", ctx.tid);
    t.push_json_escaped(&work.tname[..work.tname_len]);
    t.push_bytes(b"\",\"libscope_version\":\"");
    t.push_json_escaped(&ctx.p.version);
    t.push_bytes(b"\"");
    if let Some((sig, info)) = ctx.sig {
        // SAFETY: see write_info.
        let addr = unsafe { info.si_addr() } as u64;
        let _ = write!(
            t,
            ",\"signal\":{{\"number\":{sig},\"name\":\"{}\",\"code\":{},\"reason\":\"{}\",\"fault_addr\":\"0x{addr:x}\"}}",
            signal_name(sig),
            info.si_code,
            code_reason(sig, info.si_code)
        );
    }
    t.push_bytes(b",\"registers\":{");
    for (i, name) in REG_NAMES.iter().enumerate() {
        let _ = write!(
            t,
            "{}\"{name}\":\"0x{:x}\"",
            if i > 0 { "," } else { "" },
            ctx.lead.regs[i]
        );
    }
    t.push_bytes(b"},\"frames\":[");
    for i in 0..work.nframes {
        let addr = work.frames[i];
        let fi = describe(maps, addr, i > 0, work);
        let _ = write!(
            t,
            "{}{{\"index\":{i},\"addr\":\"0x{addr:x}\"",
            if i > 0 { "," } else { "" }
        );
        if fi.module.is_some() {
            t.push_bytes(b",\"module\":\"");
            t.push_json_escaped(module_bytes(maps, &fi));
            let _ = write!(t, "\",\"offset\":\"0x{:x}\"", fi.vaddr);
        }
        if fi.sym_len > 0 {
            t.push_bytes(b",\"symbol\":\"");
            t.push_json_escaped(&work.symname[..fi.sym_len]);
            let _ = write!(t, "\",\"symbol_offset\":{}", fi.sym_off);
        }
        t.push_bytes(b"}");
    }
    let _ = write!(
        t,
        "],\"files\":[\"info_{secs}.{nanos:09}\",\"cfg_{secs}.{nanos:09}\""
    );
    if ctx.p.backtrace {
        let _ = write!(t, ",\"backtrace_{secs}.{nanos:09}\"");
    }
    if core.is_some() {
        let _ = write!(t, ",\"core_{secs}.{nanos:09}\"");
    }
    t.push_bytes(b"]");
    if let Some(c) = core {
        let _ = write!(
            t,
            ",\"core\":{{\"file\":\"core_{secs}.{nanos:09}\",\"bytes\":{},\"truncated\":{},\"threads\":{},\"threads_without_registers\":{}}}",
            c.bytes, c.truncated, c.threads, c.missing
        );
    }
    t.push_bytes(b"}\n");
    let prefix = if ctx.sig.is_some() {
        "crash_"
    } else {
        "snapshot_"
    };
    if let Some(fd) = create(ctx, &mut work.path, prefix, ".json", 0o644) {
        let _ = sys::write_all(fd, t.as_bytes());
        sys::close(fd);
    }
}
