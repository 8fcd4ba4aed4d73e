//! A realistic allocation-heavy workload through the *global* allocator:
//! build a `BTreeMap<String, Vec<u8>>` of 200 000 entries (keys
//! `key00000000`…, inserted in a scrambled order; values 0–255 bytes) and
//! drop it, per iteration.
//!
//! The bench binary's `#[global_allocator]` is [`Switch`], which dispatches
//! every call to `System`, `CountdownOnly<System>`, `AtomicCounting<System>`
//! (one shared atomic per op, the reference) or `SampledAlloc<System>`
//! according to a global mode, so the four are measured in one process and
//! one criterion group (`heap_realistic`). Sampling is on for the whole run.
//! `SampledAlloc<System>+ctx` is the sampled mode again with a trace context
//! (`lowprof::trace::set_context`) set on the thread for the whole batch
//! (issue 5: the fast path must not get slower with a context).
//! Which allocator frees which block, and why the sampled mode runs last, is
//! explained in `lowprof_benches::switch`.
//!
//! After criterion, unless `--test`/`--list`: the interleaved cross-check
//! (`lowprof_benches::interleave`; 12 rounds of one map build per mode,
//! thread CPU and wall), written to
//! `target/criterion/heap_realistic/interleaved.json`. After each sampled
//! batch the frees go back to the inner allocator once no sampled block is
//! live (`switch::leave_sampled_route`; the count of batches where that was
//! not possible is in the file and should be 0).

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use lowprof_benches::cpu::{Args, write_result};
use lowprof_benches::interleave::{Batch, Variant, interleave, report};
use lowprof_benches::switch::{
    MODE_ATOMIC, MODE_FLOOR, MODE_SAMPLED, MODE_SYSTEM, Switch, leave_sampled_route, set_mode,
    workload,
};
use lowprof_benches::{CTX_SUFFIX, Drainer, set_bench_context};

#[global_allocator]
static GLOBAL: Switch = Switch::new(System);

/// Benchmark ids and modes, in run order (sampled last: see `lowprof_benches::switch`).
/// `report.py` relies on these names.
const MODES: [(&str, u8); 5] = [
    ("System", MODE_SYSTEM),
    ("CountdownOnly<System>", MODE_FLOOR),
    ("AtomicCounting<System>", MODE_ATOMIC),
    ("SampledAlloc<System>", MODE_SAMPLED),
    ("SampledAlloc<System>+ctx", MODE_SAMPLED),
];

/// The bench trace context for the variants whose name ends in `+ctx`.
fn context_for(name: &str) -> Option<lowprof::trace::ContextGuard> {
    name.ends_with(CTX_SUFFIX).then(set_bench_context)
}

fn realistic(c: &mut Criterion) {
    let mut drainer = Drainer::new();
    let mut group = c.benchmark_group("heap_realistic");
    // One iteration takes ~0.3 s: a fixed number of iterations per sample.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(40);
    group.measurement_time(Duration::from_secs(14));
    for (name, mode) in MODES {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let _ctx = context_for(name);
                set_mode(mode);
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    workload();
                    spent += t.elapsed();
                    drainer.drain();
                }
                spent
            });
        });
        set_mode(MODE_SYSTEM);
    }
    group.finish();
}

/// Rounds of the interleaved cross-check.
const ROUNDS: usize = 12;

/// The interleaved cross-check (see `lowprof_benches::interleave`).
fn interleaved() {
    let variants: Vec<Variant> =
        MODES.iter().map(|&(name, _)| Variant { name, inner: "System" }).collect();
    let mut drainer = Drainer::new();
    let mut stuck = 0u32;
    let results = interleave(&variants, ROUNDS, |i| {
        let (name, mode) = MODES[i];
        let _ctx = context_for(name);
        set_mode(mode);
        if !leave_sampled_route() {
            stuck += u32::from(mode != MODE_SAMPLED);
        }
        let b = Batch::time(1, workload);
        set_mode(MODE_SYSTEM);
        drainer.drain();
        b
    });
    leave_sampled_route();
    let json = report(
        "heap_realistic",
        &results,
        "1 map build",
        &[("batches_on_sampled_free_route", stuck.to_string())],
    );
    write_result("heap_realistic", "interleaved.json", &json);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40)
        .configure_from_args()
}

fn main() {
    let args = Args::parse();
    lowprof_benches::start_sampling();
    let mut c = config();
    realistic(&mut c);
    c.final_summary();
    if args.run_extra("heap_realistic") {
        interleaved();
    }
    lowprof_benches::check_context_samples(!args.test && !args.list);
    eprintln!("{}", lowprof_benches::stats_line());
}
