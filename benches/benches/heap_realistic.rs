//! A realistic allocation-heavy workload through the *global* allocator:
//! build a `BTreeMap<String, Vec<u8>>` of 200 000 entries (keys
//! `key00000000`…, inserted in a scrambled order; values 0–255 bytes) and
//! drop it, per iteration.
//!
//! The bench binary's `#[global_allocator]` is [`Switch`], which dispatches
//! every call to `System`, `CountdownOnly<System>` or `SampledAlloc<System>`
//! according to a global mode, so the three are measured in one process and
//! one criterion group (`heap_realistic`). Sampling is on for the whole run.
//! Which allocator frees which block, and why the sampled mode runs last, is
//! explained in `lowprof_benches::switch`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use lowprof_benches::Drainer;
use lowprof_benches::switch::{MODE_FLOOR, MODE_SAMPLED, MODE_SYSTEM, Switch, set_mode, workload};

#[global_allocator]
static GLOBAL: Switch = Switch;

/// Benchmark ids and modes, in run order (sampled last: see `lowprof_benches::switch`).
/// `report.py` relies on these names.
const MODES: [(&str, u8); 3] = [
    ("System", MODE_SYSTEM),
    ("CountdownOnly<System>", MODE_FLOOR),
    ("SampledAlloc<System>", MODE_SAMPLED),
];

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

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40)
        .configure_from_args()
}

fn main() {
    lowprof_benches::start_sampling();
    let mut c = config();
    realistic(&mut c);
    c.final_summary();
    eprintln!("{}", lowprof_benches::stats_line());
}
