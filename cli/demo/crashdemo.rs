//! `scope-crash-demo`: a program that crashes on purpose, for trying `scope run -b -d`.
//!
//! `scope-crash-demo [--threads N] [--wait] [--after SECS]`
//! - default: starts N (default 2) worker threads, then dereferences a null pointer in
//!   `crash_here` (SIGSEGV);
//! - `--wait`: does not crash; the threads sleep in `worker_loop` until killed (for
//!   `scope snapshot`);
//! - `--after SECS`: crash after sleeping SECS seconds.

use std::time::Duration;

#[inline(never)]
fn worker_loop(id: usize) {
    loop {
        std::thread::sleep(Duration::from_millis(200 + id as u64));
    }
}

#[inline(never)]
fn crash_here(p: *mut u64) {
    // SAFETY: none: this is the demo's deliberate crash (a write through a null pointer,
    // hidden from the optimizer so it stays a real memory access).
    unsafe { std::ptr::write_volatile(p, 0xdead) };
}

#[inline(never)]
fn handle_request(n: u64) {
    println!("scope-crash-demo: handling request {n}, about to dereference NULL in crash_here()");
    crash_here(std::hint::black_box(std::ptr::null_mut()));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let threads = arg("--threads").unwrap_or(2.0) as usize;
    for i in 0..threads {
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker_loop(i))
            .expect("spawning a worker thread");
    }
    println!(
        "scope-crash-demo: pid {} with {threads} worker threads",
        std::process::id()
    );
    if args.iter().any(|a| a == "--wait") {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if let Some(s) = arg("--after") {
        std::thread::sleep(Duration::from_secs_f64(s));
    }
    handle_request(42);
}
