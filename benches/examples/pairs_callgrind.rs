//! The `heap_pairs` loop and the `heap_realistic` workload as a plain
//! program, for instruction counts under callgrind (repeatable where
//! wall-clock numbers on a shared VM are not):
//!
//! ```text
//! cargo build --profile bench -p lowprof-benches --example pairs_callgrind
//! valgrind --tool=callgrind --toggle-collect='pairs_callgrind::measured_*' \
//!     target/release/examples/pairs_callgrind sampled-system 1000000
//! ```
//!
//! Only `measured_pairs` (the pairs themselves) or `measured_map` (one build
//! and drop of the map) is counted: warm-up, ring drains and start-up are not.
//! Instructions per op = collected Ir / ops. Sampling is on, as in the
//! criterion benches unless `STOP_SAMPLING` is set in the environment (then
//! `SampledAlloc` runs its fast paths but never samples); `MAX_SIZE=N` caps
//! the pair sizes at N bytes; `INTERVAL=N` sets the sampling interval;
//! `CONTEXT=1` sets a trace context (`lowprof::trace::set_context`) on the
//! measuring thread for the whole run, as the `+ctx` criterion variants do.
//! `benches/callgrind.sh` runs every variant; `benches/ladder.py` times them.
//!
//! Peers: `dhat-idle` / `dhat` run the pairs through a `dhat::Alloc` with no
//! profiler / with a `dhat::Profiler` recording; `jeprof` runs them through
//! `Jemalloc` with jemalloc's own profiler active at `lg_prof_sample:19`,
//! and exists only when built with `--features jemalloc-prof` (in such a
//! build the `jemalloc` variants measure that profiling build of jemalloc
//! with `prof.active` false, as in `heap_jemalloc_prof`).

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, System};

use lowprof_alloc::SampledAlloc;
use lowprof_benches::switch::{self, MODE_ATOMIC, MODE_FLOOR, MODE_SAMPLED, MODE_SYSTEM, Switch};
use lowprof_benches::{AtomicCounting, CHUNK, CountdownFreeTest, CountdownOnly, Drainer, PairLoop};
use tikv_jemallocator::Jemalloc;

/// As in `heap_jemalloc_prof`: jemalloc's profiler set up but inactive
/// (`jeprof` activates it).
#[cfg(feature = "jemalloc-prof")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static libc::c_char> = Some(
    // SAFETY: a pointer to the first byte of a static NUL-terminated string.
    unsafe { &*c"prof:true,prof_active:false,lg_prof_sample:19".as_ptr() },
);

/// As in `heap_realistic`: System mode unless a `realistic-*` variant runs.
#[global_allocator]
static GLOBAL: Switch = Switch::new(System);

static SYS: System = System;
static SYS_FLOOR: CountdownOnly<System> = CountdownOnly::new(System);
static SYS_FREE_TEST: CountdownFreeTest<System> = CountdownFreeTest::new(System);
static SYS_ATOMIC: AtomicCounting<System> = AtomicCounting::new(System);
static SYS_SAMPLED: SampledAlloc<System> = SampledAlloc::new(System);
static JE: Jemalloc = Jemalloc;
static JE_FLOOR: CountdownOnly<Jemalloc> = CountdownOnly::new(Jemalloc);
static JE_FREE_TEST: CountdownFreeTest<Jemalloc> = CountdownFreeTest::new(Jemalloc);
static JE_ATOMIC: AtomicCounting<Jemalloc> = AtomicCounting::new(Jemalloc);
static JE_SAMPLED: SampledAlloc<Jemalloc> = SampledAlloc::new(Jemalloc);
static DHAT: dhat::Alloc = dhat::Alloc;

const WARM_UP: u64 = 200_000;

/// The measured pairs: callgrind collects inside this function only.
#[inline(never)]
fn measured_pairs<A: GlobalAlloc + 'static>(pl: &mut PairLoop<A>, n: u64) {
    pl.run(n);
    // Not a tail call: callgrind must see this frame around `run`.
    std::hint::black_box(pl);
}

/// One measured build and drop of the realistic map.
#[inline(never)]
fn measured_map() {
    switch::workload();
    std::hint::black_box(());
}

fn go<A: GlobalAlloc + 'static>(alloc: &'static A, pairs: u64) {
    // MAX_SIZE=N caps every size at N bytes (to see what the largest blocks
    // cost, e.g. sampled blocks in 64 KiB slots, which are released on free).
    let mut sizes = lowprof_benches::mixed_sizes();
    if let Some(max) = std::env::var("MAX_SIZE").ok().and_then(|v| v.parse::<usize>().ok()) {
        sizes.iter_mut().for_each(|s| *s = (*s).min(max));
    }
    let mut pl = PairLoop::with_sizes(alloc, &sizes);
    let mut drainer = Drainer::new();
    let mut run = |n: u64, measure: bool| {
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK);
            if measure {
                measured_pairs(&mut pl, k);
            } else {
                pl.run(k);
            }
            left -= k;
            drainer.drain();
        }
    };
    // At most as many warm-up pairs as measured ones (dhat under callgrind
    // is slow).
    run(WARM_UP.min(pairs), false);
    let before = lowprof_alloc::stats();
    run(pairs, true);
    let after = lowprof_alloc::stats();
    eprintln!(
        "{pairs} pairs; samples during measurement: {} (one per {:.0} pairs)",
        after.samples - before.samples,
        pairs as f64 / (after.samples - before.samples).max(1) as f64
    );
    let (drained, linked) = lowprof_benches::drained_samples();
    eprintln!("heap samples drained: {drained}, with the bench trace context: {linked}");
}

/// `iterations` builds and drops of the realistic map in `mode`.
fn realistic(mode: u8, iterations: u64) {
    let mut drainer = Drainer::new();
    switch::set_mode(mode);
    switch::workload();
    drainer.drain();
    let before = lowprof_alloc::stats();
    for _ in 0..iterations {
        measured_map();
        drainer.drain();
    }
    let after = lowprof_alloc::stats();
    switch::set_mode(MODE_SYSTEM);
    eprintln!(
        "{iterations} iterations; samples during measurement: {}",
        after.samples - before.samples
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let pairs: u64 = args.next().map(|s| s.parse().expect("pairs: a number")).unwrap_or(1_000_000);
    lowprof_benches::start_sampling();
    // INTERVAL=N samples once per N bytes instead (to amplify the per-sample
    // cost when timing natively).
    if let Some(n) = std::env::var("INTERVAL").ok().and_then(|v| v.parse::<u64>().ok()) {
        lowprof_alloc::set_interval(n).expect("INTERVAL in range");
    }
    // The wrapper's cost without any sample: countdown and counting only.
    if std::env::var_os("STOP_SAMPLING").is_some() {
        lowprof_alloc::stop();
    }
    // The bench trace context, held until the end of the run.
    let _ctx = std::env::var_os("CONTEXT").is_some().then(lowprof_benches::set_bench_context);
    match variant.as_str() {
        "system" => go(&SYS, pairs),
        "floor-system" => go(&SYS_FLOOR, pairs),
        "free-test-system" => go(&SYS_FREE_TEST, pairs),
        "atomic-system" => go(&SYS_ATOMIC, pairs),
        "sampled-system" => go(&SYS_SAMPLED, pairs),
        "jemalloc" => go(&JE, pairs),
        "floor-jemalloc" => go(&JE_FLOOR, pairs),
        "free-test-jemalloc" => go(&JE_FREE_TEST, pairs),
        "atomic-jemalloc" => go(&JE_ATOMIC, pairs),
        "sampled-jemalloc" => go(&JE_SAMPLED, pairs),
        "dhat-idle" => go(&DHAT, pairs),
        "dhat" => {
            let _profiler = dhat::Profiler::builder().testing().build();
            go(&DHAT, pairs);
        }
        #[cfg(feature = "jemalloc-prof")]
        "jeprof" => {
            // SAFETY: `prof.active` is a `bool` mallctl.
            unsafe { tikv_jemalloc_ctl::raw::write(b"prof.active\0", true) }.expect("prof.active");
            go(&JE, pairs);
        }
        "realistic-system" => realistic(MODE_SYSTEM, pairs),
        "realistic-floor" => realistic(MODE_FLOOR, pairs),
        "realistic-atomic" => realistic(MODE_ATOMIC, pairs),
        "realistic-sampled" => realistic(MODE_SAMPLED, pairs),
        _ => {
            eprintln!(
                "usage: pairs_callgrind VARIANT [OPS]\n  VARIANT: system, floor-system, free-test-system, atomic-system, \
                 sampled-system, jemalloc, floor-jemalloc, free-test-jemalloc, atomic-jemalloc, sampled-jemalloc, \
                 dhat-idle, dhat, jeprof \
                 (`--features jemalloc-prof` builds only) (OPS = pairs, default 1000000)\n  \
                 or realistic-system, realistic-floor, realistic-atomic, realistic-sampled (OPS = map builds)"
            );
            std::process::exit(2);
        }
    }
}
