//! Malloc/free pairs of mixed sizes, calling `GlobalAlloc::alloc`/`dealloc`
//! directly on allocator instances in this process (the bench binary's own
//! global allocator stays the default), so that every variant runs in the
//! same process and machine noise largely cancels in the ratios:
//!
//! - `System` vs `CountdownOnly<System>` (the floor) vs
//!   `CountdownFreeTest<System>` (the floor plus lowprof's free test: the
//!   floor of a wrapper that recognises its own blocks on free that way) vs
//!   `AtomicCounting<System>` (one shared atomic per op, the reference) vs
//!   `SampledAlloc<System>`
//! - the same five over `Jemalloc`
//! - `SampledAlloc<System>+ctx`, `SampledAlloc<Jemalloc>+ctx`: the same
//!   wrapper with a trace context (`lowprof::trace::set_context`) set on
//!   every benchmarking thread for the whole batch, right after the run
//!   without one (issue 5: the fast path must not get slower with a context)
//!
//! on one thread (`heap_pairs_1t`) and on two threads running the same loop
//! on their own blocks, started together (`heap_pairs_2t`; time per pair per
//! thread). Sampling is on (`lowprof_alloc::start(Some(524288))`) for the
//! whole run.
//!
//! After criterion, unless `--test`/`--list`: the interleaved cross-check
//! on one thread (`lowprof_benches::interleave`; 64 rounds, batches of 2^18
//! pairs per variant), written to `target/criterion/heap_pairs_1t/interleaved.json`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::time::Duration;

use criterion::Criterion;
use lowprof_alloc::SampledAlloc;
use lowprof_benches::cpu::{Args, write_result};
use lowprof_benches::interleave::{Variant, interleave, report};
use lowprof_benches::{
    AtomicCounting, CountdownFreeTest, CountdownOnly, PairLoop, Pool, TimedPairs, WithContext,
};
use tikv_jemallocator::Jemalloc;

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

/// Benchmark ids, in the order they run (each wrapper right after its
/// inner allocator). `report.py` relies on these names.
const VARIANTS: [&str; 12] = [
    "System",
    "CountdownOnly<System>",
    "CountdownFreeTest<System>",
    "AtomicCounting<System>",
    "SampledAlloc<System>",
    "SampledAlloc<System>+ctx",
    "Jemalloc",
    "CountdownOnly<Jemalloc>",
    "CountdownFreeTest<Jemalloc>",
    "AtomicCounting<Jemalloc>",
    "SampledAlloc<Jemalloc>",
    "SampledAlloc<Jemalloc>+ctx",
];

/// One pair loop per variant, in [`VARIANTS`] order. Each thread has its own.
fn loops() -> Vec<Box<dyn TimedPairs>> {
    vec![
        Box::new(PairLoop::new(&SYS)),
        Box::new(PairLoop::new(&SYS_FLOOR)),
        Box::new(PairLoop::new(&SYS_FREE_TEST)),
        Box::new(PairLoop::new(&SYS_ATOMIC)),
        Box::new(PairLoop::new(&SYS_SAMPLED)),
        Box::new(WithContext(PairLoop::new(&SYS_SAMPLED))),
        Box::new(PairLoop::new(&JE)),
        Box::new(PairLoop::new(&JE_FLOOR)),
        Box::new(PairLoop::new(&JE_FREE_TEST)),
        Box::new(PairLoop::new(&JE_ATOMIC)),
        Box::new(PairLoop::new(&JE_SAMPLED)),
        Box::new(WithContext(PairLoop::new(&JE_SAMPLED))),
    ]
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40)
        .configure_from_args()
}

fn pairs_1t(c: &mut Criterion) {
    let mut loops = loops();
    let mut group = c.benchmark_group("heap_pairs_1t");
    for (variant, name) in VARIANTS.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| loops[variant].run_timed(iters));
        });
    }
    group.finish();
}

fn pairs_2t(c: &mut Criterion) {
    let pool = Pool::new(2, loops);
    let mut group = c.benchmark_group("heap_pairs_2t");
    for (variant, name) in VARIANTS.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| pool.run(variant, iters));
        });
    }
    group.finish();
}

/// Rounds and pairs per batch of the interleaved cross-check.
const ROUNDS: usize = 64;
const BATCH: u64 = 1 << 18;

/// The interleaved cross-check on one thread (see `lowprof_benches::interleave`).
fn interleaved() {
    let variants: Vec<Variant> = VARIANTS
        .iter()
        .map(|&name| Variant {
            name,
            inner: if name.contains("Jemalloc") { "Jemalloc" } else { "System" },
        })
        .collect();
    let mut loops = loops();
    let results = interleave(&variants, ROUNDS, |i| loops[i].run_batch(BATCH));
    let json = report("heap_pairs_1t", &results, &format!("{BATCH} pairs"), &[]);
    write_result("heap_pairs_1t", "interleaved.json", &json);
}

fn main() {
    let args = Args::parse();
    lowprof_benches::start_sampling();
    eprintln!(
        "heap_pairs: mean size {:.0} bytes, sampling interval {} bytes",
        lowprof_benches::mean_size(),
        lowprof_benches::INTERVAL
    );
    let mut c = config();
    pairs_1t(&mut c);
    pairs_2t(&mut c);
    c.final_summary();
    if args.run_extra("heap_pairs_1t") {
        interleaved();
    }
    lowprof_benches::check_context_samples(!args.test && !args.list);
    eprintln!("{}", lowprof_benches::stats_line());
}
