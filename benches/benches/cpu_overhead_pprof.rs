//! `cpu_overhead`'s workload with pprof-rs instead of lowprof, in its own
//! process: no profiler, `pprof::ProfilerGuard` at 99 Hz and at 999 Hz
//! (group `cpu_overhead_pprof`; `cpu_overhead_pprof_fp` when built with
//! `--features pprof-frame-pointer`, pprof-rs's frame-pointer unwinder).
//! Ratios are taken against this process's own `none`.
//!
//! After criterion, unless `--test`/`--list`: the interleaved cross-check,
//! written to `target/criterion/<group>/interleaved.json`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use lowprof_benches::cpu::{
    Args, WORKLOAD_LEN, interleaved_overhead, overhead_report, workload, write_result,
};

/// One group per pprof-rs unwinder. `report.py` relies on these names.
const GROUP: &str = if cfg!(feature = "pprof-frame-pointer") {
    "cpu_overhead_pprof_fp"
} else {
    "cpu_overhead_pprof"
};
/// Benchmark ids and pprof-rs's frequency (0 = off), in run order.
const VARIANTS: [(&str, i32); 3] = [("none", 0), ("pprof-rs_99hz", 99), ("pprof-rs_999hz", 999)];

/// The profiler currently running, if any.
struct Switch {
    hz: i32,
    guard: Option<pprof::ProfilerGuard<'static>>,
}

impl Switch {
    fn set(&mut self, hz: i32) {
        if self.hz == hz {
            return;
        }
        // Dropping stops the timer; pprof-rs then sets SIGPROF to SIG_IGN.
        drop(self.guard.take());
        if hz > 0 {
            let g = pprof::ProfilerGuardBuilder::default().frequency(hz).build();
            self.guard = Some(g.expect("pprof::ProfilerGuard"));
        }
        self.hz = hz;
    }
}

fn main() {
    let args = Args::parse();
    let mut switch = Switch { hz: 0, guard: None };
    let mut buf = vec![0u64; WORKLOAD_LEN];
    let check = workload(&mut buf);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(12))
        .sample_size(30)
        .configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    group.sampling_mode(SamplingMode::Flat);
    for (name, hz) in VARIANTS {
        group.bench_function(name, |b| {
            switch.set(hz);
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let h = black_box(workload(black_box(&mut buf)));
                    spent += t.elapsed();
                    assert_eq!(h, check);
                }
                spent
            });
        });
    }
    group.finish();
    switch.set(0);
    c.final_summary();

    if args.run_extra("cpu_overhead_pprof") {
        let (rounds, per_batch) = (16, 8);
        let names: Vec<&'static str> = VARIANTS.iter().map(|v| v.0).collect();
        let results =
            interleaved_overhead(&names, rounds, per_batch, |i| switch.set(VARIANTS[i].1));
        switch.set(0);
        let json = overhead_report(&results, rounds, per_batch);
        write_result(GROUP, "interleaved.json", &json);
    }
}
