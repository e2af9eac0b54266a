//! Crash capture end to end: real C programs crash under `libscope.so`; the bundle is
//! complete, the backtrace names the crashing function, gdb loads the core with no
//! manual steps, and the process dies with its original signal.

mod crash_common;

use crash_common::*;
use scope_config::crash::{BundleKind, read_report};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// One crash mode: run, then check everything a user relies on.
fn crash_case(mode: &str, sig: i32, func: &str, opt: Opt) {
    crash_case_for(Libc::Glibc, mode, sig, func, opt)
}

/// [`crash_case`] for a program built against `libc`, under that libc's library build.
fn crash_case_for(libc: Libc, mode: &str, sig: i32, func: &str, opt: Opt) {
    let t = TestDir::new();
    let prog = program_for(libc, opt);
    let mut extra = vec![];
    let busfile = t.path().join("busfile");
    if mode == "bus" {
        extra.push(busfile.to_str().unwrap().to_string());
    }
    let mut args = vec![mode.to_string()];
    args.extend(extra);
    let (status, pid) = run_scoped_for(libc, &prog, &args, &t.snap(), &[], Duration::from_secs(60));
    assert_eq!(status.signal(), Some(sig), "{mode}: exit status {status:?}");
    let b = single_bundle(&t.snap().join(pid.to_string()));
    let rep = read_report(&b.dir, b.ts).expect("crash json parses");
    assert_eq!(rep.kind, BundleKind::Crash);
    assert_eq!(rep.pid, pid as i32);
    let s = rep.signal.as_ref().expect("signal");
    assert_eq!(s.number, sig);
    let bt = b.read("backtrace_");
    assert!(bt.starts_with("#0 0x"), "{bt}");
    assert!(bt.contains(func), "backtrace names {func}:\n{bt}");
    assert!(
        rep.frames.iter().any(|f| f.symbol.as_deref() == Some(func)),
        "{rep:?}"
    );
    let info = b.read("info_");
    for line in [
        "Scope Version:",
        "Unix Time:",
        "PID:",
        "Process name: crash",
        "Signal:",
    ] {
        assert!(info.contains(line), "info has {line}:\n{info}");
    }
    let core = b.file("core_");
    let out = gdb(&prog, &core, &["bt", "info sharedlibrary", "info threads"]);
    assert_gdb_frame(&out, func);
    // musl's libc.so is its dynamic loader.
    let libc_so = match libc {
        Libc::Glibc => "libc.so",
        Libc::Musl => "ld-musl-",
    };
    assert!(out.contains(libc_so), "gdb lists shared libraries:\n{out}");
    assert!(!out.contains("is truncated"), "{out}");
}

#[test]
fn null_dereference_sigsegv() {
    crash_case("null", libc::SIGSEGV, "crash_null_deref", Opt::Debug);
}

#[test]
fn divide_by_zero_sigfpe() {
    crash_case("fpe", libc::SIGFPE, "crash_divide", Opt::Debug);
}

#[test]
fn illegal_instruction_sigill() {
    crash_case("ill", libc::SIGILL, "crash_illegal", Opt::Debug);
}

#[test]
fn bus_error_truncated_mmap_sigbus() {
    crash_case("bus", libc::SIGBUS, "crash_bus", Opt::Debug);
}

#[test]
fn stack_overflow_is_captured_on_the_alternate_stack() {
    crash_case("stack", libc::SIGSEGV, "crash_recurse", Opt::Debug);
}

#[test]
fn optimized_without_frame_pointers_still_unwinds() {
    let t = TestDir::new();
    let prog = program(Opt::O2NoFp);
    let (status, pid) = run_scoped(
        &prog,
        &["null".into()],
        &t.snap(),
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    let b = single_bundle(&t.snap().join(pid.to_string()));
    let bt = b.read("backtrace_");
    assert!(bt.contains("crash_null_deref"), "{bt}");
    // Unwound past the crashing function by CFI, not frame pointers.
    assert!(bt.contains(" main+"), "frames beyond the crash:\n{bt}");
    let out = gdb(&prog, &b.file("core_"), &["bt"]);
    assert_gdb_frame(&out, "crash_null_deref");
    assert!(out.contains("main"), "{out}");
}

#[test]
fn musl_null_dereference_sigsegv() {
    crash_case_for(
        Libc::Musl,
        "null",
        libc::SIGSEGV,
        "crash_null_deref",
        Opt::Debug,
    );
}

#[test]
fn musl_optimized_without_frame_pointers_sigfpe() {
    crash_case_for(Libc::Musl, "fpe", libc::SIGFPE, "crash_divide", Opt::O2NoFp);
}

#[test]
fn crash_in_a_thread_while_others_run() {
    crash_in_a_thread_for(Libc::Glibc);
}

#[test]
fn musl_crash_in_a_worker_thread_while_others_run() {
    crash_in_a_thread_for(Libc::Musl);
}

fn crash_in_a_thread_for(libc: Libc) {
    let t = TestDir::new();
    let prog = program_for(libc, Opt::Debug);
    let (status, pid) = run_scoped_for(
        libc,
        &prog,
        &["thread".into()],
        &t.snap(),
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    let b = single_bundle(&t.snap().join(pid.to_string()));
    let rep = read_report(&b.dir, b.ts).unwrap();
    assert_ne!(
        rep.tid, pid as i32,
        "crashing thread is not the main thread"
    );
    let core = rep.core.as_ref().expect("core info");
    assert!(core.threads >= 4, "{core:?}");
    // The application's threads all answer the register collection. Only the library's
    // own background thread may lack registers: it blocks every asynchronous signal and
    // is not in a syscall when it is busy.
    assert!(core.threads_without_registers <= 1, "{core:?}");
    let bt = b.read("backtrace_");
    assert!(
        bt.contains("crash_null_deref") && bt.contains("crashing_thread"),
        "{bt}"
    );
    let out = gdb(
        &prog,
        &b.file("core_"),
        &["bt", "info threads", "thread apply all bt"],
    );
    assert_gdb_frame(&out, "crash_null_deref");
    assert!(
        out.lines()
            .any(|l| l.starts_with("#1 ") && l.contains(" crashing_thread (")),
        "the crashing thread unwinds into its start function:\n{out}"
    );
    match libc {
        Libc::Glibc => {
            // Every other thread has real registers: gdb unwinds them into the program.
            assert!(out.matches("spinner").count() >= 2, "{out}");
            assert!(out.contains("in main"), "main thread unwinds:\n{out}");
        }
        Libc::Musl => {
            // The other threads sleep inside musl's libc. Debian's musl has no unwind
            // tables for its syscall stubs, so gdb stops there, exactly as on the kernel's
            // own core of the same program; their registers are real: each thread's
            // frame #0 is inside the musl loader/libc, none at address 0.
            let in_libc = out
                .lines()
                .filter(|l| l.starts_with("#0 ") && l.contains("from /lib/ld-musl-"))
                .count();
            assert!(
                in_libc >= 3,
                "three sleeping threads in musl's libc:\n{out}"
            );
            assert!(!out.contains("#0  0x0000000000000000"), "{out}");
        }
    }
}

#[test]
fn own_handler_recovers_and_no_bundle_is_written() {
    let t = TestDir::new();
    let prog = program(Opt::Debug);
    let (status, pid) = run_scoped(
        &prog,
        &["recover".into()],
        &t.snap(),
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        !t.snap().join(pid.to_string()).exists(),
        "no bundle for a handled SIGSEGV"
    );
}

#[test]
fn core_maxsize_keeps_the_crashing_stack() {
    let t = TestDir::new();
    let prog = program(Opt::Debug);
    let max = 1u64 << 20;
    let (status, pid) = run_scoped(
        &prog,
        &["null".into()],
        &t.snap(),
        &[("SCOPE_SNAPSHOT_CORE_MAXSIZE", "1M")],
        Duration::from_secs(60),
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    let b = single_bundle(&t.snap().join(pid.to_string()));
    let core = b.file("core_");
    let len = std::fs::metadata(&core).unwrap().len();
    assert!(len <= max, "core {len} bytes > {max}");
    let rep = read_report(&b.dir, b.ts).unwrap();
    assert!(rep.core.as_ref().unwrap().truncated);
    let out = gdb(&prog, &core, &["bt"]);
    assert_gdb_frame(&out, "crash_null_deref");
}

#[test]
fn kill_sent_sigsegv_is_not_a_crash() {
    let t = TestDir::new();
    let prog = program(Opt::Debug);
    let mut child = spawn_scoped(&prog, &["sleep".into()], &t.snap(), &[]);
    wait_line(&mut child, "sleeping", Duration::from_secs(30));
    let pid = child.0.id();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGSEGV) };
    let status = wait_timeout(&mut child.0, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    assert!(!t.snap().join(pid.to_string()).exists());
}

#[test]
fn two_threads_crashing_at_once_make_one_bundle_with_both_faults() {
    let t = TestDir::new();
    let prog = program(Opt::Debug);
    let (status, pid) = run_scoped(
        &prog,
        &["twins".into()],
        &t.snap(),
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    // One bundle: the second crash waited for the first capture and is folded into it.
    let b = single_bundle(&t.snap().join(pid.to_string()));
    let out = gdb(&prog, &b.file("core_"), &["thread apply all bt"]);
    let at_fault = |f: &str| {
        out.lines()
            .any(|l| l.starts_with("#0 ") && l.contains(&format!(" {f} (")))
    };
    assert!(
        at_fault("crash_null_deref") && at_fault("crash_second_thread"),
        "both threads at their faulting instruction:\n{out}"
    );
}
