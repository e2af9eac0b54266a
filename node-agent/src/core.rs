//! Core files of live processes, driven from outside: every thread is stopped with
//! ptrace (see [`crate::ptrace`]) for the whole write so the memory is consistent, its
//! registers go into NT_PRSTATUS/NT_FPREGSET, memory is read through `/proc/<pid>/mem`,
//! and the ELF file is written by the `crashdump` crate (the same writer the library
//! uses in its crash handler). The threads are resumed as soon as the file is written.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crashdump::{CoreSpec, Mapping, Maps, ProcMem, ThreadRegs};

use crate::error::{Error, Result, io_err};
use crate::procs;
use crate::snapshot::Progress;

/// What a live core contains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveCoreStats {
    pub bytes: u64,
    pub threads: usize,
    pub segments: u32,
    pub unreadable_pages: u64,
    /// How long the process was stopped, seconds.
    pub stopped_secs: f64,
}

/// Write a gdb-loadable ELF core of live process `pid` to `path`.
pub fn write_live_core(
    pid: i32,
    path: &Path,
    progress: &mut dyn Progress,
) -> Result<LiveCoreStats> {
    if pid == std::process::id() as i32 {
        return Err(Error::Invalid(
            "cannot write a core of the agent itself".into(),
        ));
    }
    let info = procs::read_process(pid)?;
    let status = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // pgrp and session: fields 5 and 6 of /proc/<pid>/stat, after the ")" of comm.
    let after = status.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let pgrp = f.get(2).and_then(|s| s.parse().ok()).unwrap_or(pid);
    let sid = f.get(3).and_then(|s| s.parse().ok()).unwrap_or(pid);
    let auxv =
        fs::read(format!("/proc/{pid}/auxv")).map_err(io_err(format!("/proc/{pid}/auxv")))?;
    let psargs = info.cmdline.join(" ");

    let tids = procs::threads(pid)?;
    let started = std::time::Instant::now();
    let attached = crate::ptrace::Attached::stop_threads(&tids)?;
    let mut threads = Vec::new();
    for &tid in attached.tids() {
        match attached.regs(tid) {
            Ok(r) => {
                let fp = attached.fpregs(tid).ok();
                threads.push(ThreadRegs::from_ptrace(tid, &r.raw, fp.as_ref()));
            }
            Err(_) => threads.push(ThreadRegs {
                tid,
                ..Default::default()
            }),
        }
    }
    // Main thread first, so gdb selects it.
    threads.sort_by_key(|t| (t.tid != pid, t.tid));

    let mut slots = vec![Mapping::default(); 16384];
    let mut names = vec![0u8; 2 << 20];
    let mut scratch = vec![0u8; 1 << 20];
    let mut maps = Maps::new(&mut slots, &mut names);
    maps.read_pid(pid, true, &mut scratch)
        .map_err(|e| Error::Other(format!("reading maps of {pid}: {e}")))?;
    let spec = CoreSpec {
        process: crashdump::ProcessInfo {
            pid: info.nspid,
            ppid: info.ppid,
            pgrp,
            sid,
            uid: info.uid,
            gid: info.gid,
            fname: info.comm.as_bytes(),
            psargs: psargs.as_bytes(),
        },
        threads: &threads,
        siginfo: None,
        auxv: &auxv,
        max_size: 0,
    };
    // Expected size, for the progress bar.
    crashdump::core::plan(&mut maps, &spec, crashdump::sys::page_size());
    let total: u64 = maps.as_slice().iter().map(|m| m.dump).sum();
    let mut mem =
        ProcMem::open(pid).map_err(|e| Error::Other(format!("opening /proc/{pid}/mem: {e}")))?;
    let file = fs::File::create(path).map_err(io_err(path))?;
    let done = AtomicBool::new(false);
    let stats = std::thread::scope(|s| {
        // Reading /proc/<pid>/mem needs no tracer: write on a helper thread, report
        // progress here. (ptrace calls stay on this thread.)
        let h = s.spawn(|| {
            let r =
                crashdump::write_core(file.as_raw_fd(), &spec, &mut maps, &mut mem, &mut scratch);
            done.store(true, Ordering::Release);
            r
        });
        progress.bytes(0, total);
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
            let n = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            progress.bytes(n.min(total), total);
        }
        h.join()
    });
    drop(attached);
    let stopped_secs = started.elapsed().as_secs_f64();
    let stats = stats
        .map_err(|_| Error::Other("core writer panicked".into()))?
        .map_err(|e| Error::Other(format!("writing core {}: {e}", path.display())))?;
    progress.bytes(total, total);
    file.sync_all().map_err(io_err(path))?;
    Ok(LiveCoreStats {
        bytes: stats.bytes,
        threads: threads.len(),
        segments: stats.segments,
        unreadable_pages: stats.unreadable_pages,
        stopped_secs,
    })
}
