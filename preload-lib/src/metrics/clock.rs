//! A cheap clock for call durations (`fs.duration`).
//!
//! On x86_64 with an invariant TSC (the CPU says so, and the kernel uses it as its
//! clocksource on such machines) a duration is two `rdtsc` instructions: no
//! `clock_gettime` per call. Ticks become time only when a period is reported, with the
//! ratio measured between the library's start and then (both clocks read once each).
//! Elsewhere ticks are `CLOCK_MONOTONIC` nanoseconds.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

const UNKNOWN: u8 = 0;
const TSC: u8 = 1;
const MONO: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Both clocks read at the same moment (at start), for the tick ratio.
static BASE_TICKS: AtomicU64 = AtomicU64::new(0);
static BASE_NS: AtomicU64 = AtomicU64::new(0);

#[cfg(target_arch = "x86_64")]
fn invariant_tsc() -> bool {
    use std::arch::x86_64::__cpuid;
    // cpuid is available on every x86_64 CPU.
    let max_ext = __cpuid(0x8000_0000).eax;
    if max_ext < 0x8000_0007 {
        return false;
    }
    // CPUID.80000007H:EDX[8]: the TSC runs at a constant rate in all states.
    __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Chooses the clock and records the base. Called once at start (idempotent).
pub fn init() {
    if MODE.load(Relaxed) != UNKNOWN {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if invariant_tsc() {
            BASE_NS.store(super::mono_ns(), Relaxed);
            BASE_TICKS.store(rdtsc(), Relaxed);
            MODE.store(TSC, Relaxed);
            return;
        }
    }
    MODE.store(MONO, Relaxed);
}

/// Now, in ticks (never 0, so 0 can mean "not timed").
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if MODE.load(Relaxed) == TSC {
            return rdtsc() | 1;
        }
    }
    ticks_slow()
}

#[cold]
#[inline(never)]
fn ticks_slow() -> u64 {
    if MODE.load(Relaxed) == UNKNOWN {
        init();
        return ticks();
    }
    super::mono_ns() | 1
}

/// Nanoseconds per tick as (numerator, denominator), measured from the base to now.
fn ratio() -> (u128, u128) {
    if MODE.load(Relaxed) != TSC {
        return (1, 1);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ns = super::mono_ns().saturating_sub(BASE_NS.load(Relaxed));
        let t = rdtsc().saturating_sub(BASE_TICKS.load(Relaxed));
        if ns > 0 && t > 0 {
            return (u128::from(ns), u128::from(t));
        }
    }
    (1, 1)
}

/// A tick count as microseconds.
pub fn ticks_to_us(t: u64) -> u64 {
    let (n, d) = ratio();
    (u128::from(t) * n / d / 1000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_measure_time() {
        init();
        let a = ticks();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let us = ticks_to_us(ticks() - a);
        assert!((15_000..500_000).contains(&us), "{us} us");
        assert_ne!(ticks(), 0);
    }
}
