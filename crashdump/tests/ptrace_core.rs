//! A core of a live process written from outside with ptrace loads in gdb with the
//! right threads, frames and memory.

use crashdump::{CoreSpec, Mapping, Maps, ProcMem, ProcessInfo, ThreadRegs, write_core};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cc(src: &str, out: &Path) {
    let st = Command::new("gcc")
        .args(["-g", "-O0", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(out)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/c")
                .join(src),
        )
        .status()
        .expect("gcc");
    assert!(st.success());
}

fn snapshot(pid: i32, out: &std::fs::File) -> crashdump::CoreStats {
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut threads = Vec::new();
    // Main thread first, so gdb selects it.
    let mut order = tids.clone();
    order.sort_by_key(|&t| t != pid);
    for &tid in &order {
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0),
                0,
                "seize {tid}"
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
            let mut st = 0;
            assert_eq!(libc::waitpid(tid, &mut st, libc::__WALL), tid);
            let mut regs: libc::user_regs_struct = std::mem::zeroed();
            let mut fp: libc::user_fpregs_struct = std::mem::zeroed();
            assert_eq!(libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs), 0);
            assert_eq!(libc::ptrace(libc::PTRACE_GETFPREGS, tid, 0, &mut fp), 0);
            threads.push(ThreadRegs::from_ptrace(tid, &regs, Some(&fp)));
        }
    }
    let mut slots = vec![Mapping::default(); 4096];
    let mut names = vec![0u8; 1 << 20];
    let mut scratch = vec![0u8; 1 << 20];
    let mut maps = Maps::new(&mut slots, &mut names);
    maps.read_pid(pid, true, &mut scratch).unwrap();
    let auxv = std::fs::read(format!("/proc/{pid}/auxv")).unwrap();
    let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
    let spec = CoreSpec {
        process: ProcessInfo {
            pid,
            ppid: std::process::id() as i32,
            pgrp: pid,
            sid: pid,
            uid: 0,
            gid: 0,
            fname: comm.trim_ascii_end(),
            psargs: b"sleeper",
        },
        threads: &threads,
        siginfo: None,
        auxv: &auxv,
        max_size: 0,
    };
    let mut mem = ProcMem::open(pid).unwrap();
    let stats = write_core(out.as_raw_fd(), &spec, &mut maps, &mut mem, &mut scratch).unwrap();
    for &tid in &order {
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    }
    stats
}

fn gdb(prog: &Path, core: &Path, cmds: &[&str]) -> String {
    let mut c = Command::new("timeout");
    c.args(["60", "gdb", "-nx", "-batch"]);
    for x in cmds {
        c.args(["-ex", x]);
    }
    let out = c.arg(prog).arg(core).output().expect("gdb");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn ptrace_core_loads_in_gdb() {
    let dir = tempfile::tempdir().unwrap();
    let prog: PathBuf = dir.path().join("sleeper");
    cc("sleeper.c", &prog);
    let mut child = Kill(Command::new(&prog).stdout(Stdio::piped()).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready 0x"), "{line}");
    let heap = line.trim().strip_prefix("ready ").unwrap().to_string();
    // Let the worker reach pause().
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.0.id() as i32;
    let core = dir.path().join("core");
    let f = std::fs::File::create(&core).unwrap();
    let stats = snapshot(pid, &f);
    assert!(stats.memory_bytes > 1 << 20, "{stats:?}");
    assert_eq!(stats.bytes, std::fs::metadata(&core).unwrap().len());
    // The process goes on after the snapshot.
    assert!(child.0.try_wait().unwrap().is_none());

    let out = gdb(
        &prog,
        &core,
        &[
            "info sharedlibrary",
            "thread apply all bt",
            &format!("x/s {heap}"),
        ],
    );
    assert!(out.contains("main_parked_here"), "{out}");
    assert!(out.contains("worker_parked_here"), "{out}");
    assert!(out.contains("libc.so"), "shared libraries listed: {out}");
    assert!(out.contains("heap-marker-31337"), "heap readable: {out}");
    assert!(
        !out.contains("warning: Unexpected size of section"),
        "{out}"
    );
}
