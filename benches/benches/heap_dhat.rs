//! dhat-rs's heap profiler on the same pair loop and BTreeMap workload as
//! `heap_pairs` and `heap_realistic`, with far fewer iterations: dhat records
//! *every* allocation (a backtrace of up to 10 frames, a hash-map insert for
//! the live block, per-stack counters), under one global lock.
//!
//! dhat is meant as the global allocator (`dhat::Alloc`) with a
//! `dhat::Profiler` alive while it records; without a profiler `dhat::Alloc`
//! still takes its lock and forwards to `System`. Variants, all in this
//! process (ratios to `System` of the same group):
//!
//! - `System`: `System` directly (pairs) or through the switch (realistic);
//! - `dhat-idle`: `dhat::Alloc` with no profiler running;
//! - `dhat`: `dhat::Alloc` with `dhat::Profiler` running (built with
//!   `testing()`, which only stops it from writing `dhat-heap.json` when
//!   dropped; recording is the same). A profiler runs only around each
//!   measured batch and is checked to have recorded every allocation.
//!
//! Groups: `heap_pairs_1t_dhat`, `heap_pairs_2t_dhat`, `heap_realistic_dhat`.
//! The global allocator is [`DhatSwitch`]: `System` or `dhat::Alloc` by mode.
//!
//! After criterion, unless `--test`/`--list`: the interleaved cross-check
//! (`lowprof_benches::interleave`: pairs on one thread, 40 rounds, batches of
//! 2^18 pairs, 2^13 with dhat recording; the map, 8 rounds), written to
//! `interleaved.json` in the `heap_pairs_1t_dhat` and `heap_realistic_dhat`
//! folders.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use lowprof_benches::cpu::{Args, write_result};
use lowprof_benches::interleave::{self, Batch, interleave, report};
use lowprof_benches::switch::workload;
use lowprof_benches::{PairLoop, Pool, TimedPairs};

/// New allocations go to `System`.
const MODE_SYSTEM: u8 = 0;
/// New allocations go to `dhat::Alloc`.
const MODE_DHAT: u8 = 1;

static MODE: AtomicU8 = AtomicU8::new(MODE_SYSTEM);
/// Sticky: dhat mode was entered. From then on every free and realloc goes
/// through `dhat::Alloc`, so that a block dhat recorded is never freed behind
/// its back (its live-block table would keep a stale entry); dhat forwards
/// blocks it does not know to `System`. Before that, frees go to `System`
/// directly, so the `System` rows (measured first) pay no dhat lock.
static DHAT_EVER: AtomicBool = AtomicBool::new(false);

/// The global allocator: `System` or `dhat::Alloc` by [`MODE`].
struct DhatSwitch;

fn set_mode(mode: u8) {
    if mode == MODE_DHAT {
        DHAT_EVER.store(true, Ordering::SeqCst);
    }
    MODE.store(mode, Ordering::Release);
}

// SAFETY: `dhat::Alloc` allocates and frees through `System` and ignores
// blocks it did not record, so every block can be freed by `System` until
// dhat has been used and by `dhat::Alloc` at any time.
unsafe impl GlobalAlloc for DhatSwitch {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_SYSTEM => System.alloc(layout),
                _ => dhat::Alloc.alloc(layout),
            }
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if DHAT_EVER.load(Ordering::Relaxed) {
            // SAFETY: dhat frees every block through `System`, which made it.
            unsafe { dhat::Alloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: dhat never ran, so `System` made it.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if DHAT_EVER.load(Ordering::Relaxed) {
            // SAFETY: as `dealloc`.
            unsafe { dhat::Alloc.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: as `dealloc`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static GLOBAL: DhatSwitch = DhatSwitch;

static SYS: System = System;
static DHAT: dhat::Alloc = dhat::Alloc;

/// A pair variant: which loop, and whether a dhat profiler runs.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    /// Index into [`loops`].
    pairs: usize,
    profile: bool,
}

/// Benchmark ids in run order. `report.py` relies on these names.
const VARIANTS: [Variant; 3] = [
    Variant { name: "System", pairs: 0, profile: false },
    Variant { name: "dhat-idle", pairs: 1, profile: false },
    Variant { name: "dhat", pairs: 1, profile: true },
];

fn loops() -> Vec<Box<dyn TimedPairs>> {
    vec![Box::new(PairLoop::new(&SYS)), Box::new(PairLoop::new(&DHAT))]
}

/// Runs `f` with a dhat profiler recording if `profile`, and checks that it
/// recorded at least `min_blocks` allocations.
fn with_dhat<R>(profile: bool, min_blocks: u64, f: impl FnOnce() -> R) -> R {
    if !profile {
        return f();
    }
    let profiler = dhat::Profiler::builder().testing().build();
    let r = f();
    let stats = dhat::HeapStats::get();
    assert!(
        stats.total_blocks >= min_blocks,
        "dhat recorded {} blocks, expected ≥ {min_blocks}",
        stats.total_blocks
    );
    drop(profiler);
    r
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args()
}

fn pairs_1t(c: &mut Criterion) {
    let mut loops = loops();
    let mut group = c.benchmark_group("heap_pairs_1t_dhat");
    for v in VARIANTS {
        group.bench_function(v.name, |b| {
            b.iter_custom(|iters| with_dhat(v.profile, iters, || loops[v.pairs].run_timed(iters)));
        });
    }
    group.finish();
}

fn pairs_2t(c: &mut Criterion) {
    let pool = Pool::new(2, loops);
    let mut group = c.benchmark_group("heap_pairs_2t_dhat");
    for v in VARIANTS {
        group.bench_function(v.name, |b| {
            b.iter_custom(|iters| with_dhat(v.profile, 2 * iters, || pool.run(v.pairs, iters)));
        });
    }
    group.finish();
}

/// Realistic variants in run order: name, allocator mode, profiler.
const MODES: [(&str, u8, bool); 3] =
    [("System", MODE_SYSTEM, false), ("dhat-idle", MODE_DHAT, false), ("dhat", MODE_DHAT, true)];

fn realistic(c: &mut Criterion) {
    let mut group = c.benchmark_group("heap_realistic_dhat");
    // One dhat iteration takes seconds: criterion's minimum of 10 samples,
    // one iteration each.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (name, mode, profile) in MODES {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                set_mode(mode);
                // ≥ 1 allocation per entry (its key).
                let min = iters * u64::from(lowprof_benches::switch::ENTRIES);
                let spent = with_dhat(profile, min, || {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        workload();
                        spent += t.elapsed();
                    }
                    spent
                });
                set_mode(MODE_SYSTEM);
                spent
            });
        });
    }
    group.finish();
}

/// The interleaved cross-check (see `lowprof_benches::interleave`).
fn interleaved() {
    let variants: Vec<interleave::Variant> =
        VARIANTS.iter().map(|v| interleave::Variant { name: v.name, inner: "System" }).collect();
    let mut loops = loops();
    let results = interleave(&variants, 40, |i| {
        let v = VARIANTS[i];
        let n = if v.profile { 1 << 13 } else { 1 << 18 };
        with_dhat(v.profile, n, || loops[v.pairs].run_batch(n))
    });
    let json =
        report("heap_pairs_1t_dhat", &results, "262144 pairs (8192 with dhat recording)", &[]);
    write_result("heap_pairs_1t_dhat", "interleaved.json", &json);

    let variants: Vec<interleave::Variant> =
        MODES.iter().map(|&(name, _, _)| interleave::Variant { name, inner: "System" }).collect();
    let results = interleave(&variants, 8, |i| {
        let (_, mode, profile) = MODES[i];
        set_mode(mode);
        let b = with_dhat(profile, u64::from(lowprof_benches::switch::ENTRIES), || {
            Batch::time(1, workload)
        });
        set_mode(MODE_SYSTEM);
        b
    });
    let json = report("heap_realistic_dhat", &results, "1 map build", &[]);
    write_result("heap_realistic_dhat", "interleaved.json", &json);
}

fn main() {
    let args = Args::parse();
    let mut c = config();
    pairs_1t(&mut c);
    pairs_2t(&mut c);
    realistic(&mut c);
    c.final_summary();
    if args.run_extra("heap_dhat") {
        interleaved();
    }
}
