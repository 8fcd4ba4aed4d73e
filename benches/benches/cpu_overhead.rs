//! What CPU profiling costs a CPU-bound program: the deterministic
//! [`workload`] (fill 2^20 `u64`s from a fixed xorshift sequence, sort them,
//! hash them, 16 frames below the benchmark loop) timed with no profiler and
//! with lowprof at 99 and 999 Hz, in one process (group `cpu_overhead`).
//! A fourth variant, `timer_floor_999hz`, is the floor of any signal-based
//! sampler: a bare per-thread CPU timer at 999 Hz sending `SIGRTMIN+2` to
//! an empty handler (kernel timer checks, delivery, `sigreturn`; no stack
//! walk, no drainer).
//!
//! lowprof runs as in production: `lowprof::Profiler` (heap off, CPU on,
//! per-thread timers, the drainer thread emptying the rings every 20 ms).
//! Criterion measures the variants one after the other; the profiler is
//! switched when a variant's first closure call starts (before its warm-up),
//! and dropped before `none`. pprof-rs is measured by `cpu_overhead_pprof`
//! in its own process (two `SIGPROF` profilers in one process would take
//! each other's signals).
//!
//! After criterion, unless `--test`/`--list`: an interleaved cross-check
//! (16 rounds × 8 calls per variant, switching the profiler between
//! batches) that also reports the thread's and the process's CPU time per
//! call, written to `target/criterion/cpu_overhead/interleaved.json`; and
//! the CPU lowprof's own threads use while the program is idle (profiler at
//! 99 Hz, main thread asleep for 3 s), per thread, written to
//! `target/criterion/cpu_overhead/idle.json`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use lowprof_benches::cpu::{
    Action, Args, BareTimer, WORKLOAD_LEN, interleaved_overhead, overhead_report, process_cpu,
    thread_cpu_of, threads, workload, write_result,
};

const GROUP: &str = "cpu_overhead";

/// What runs while the workload does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    /// A bare per-thread CPU timer at this rate, to an empty handler.
    TimerFloor(u32),
    /// lowprof at this rate.
    Lowprof(u32),
}

/// Benchmark ids and modes, in run order. `report.py` relies on these names.
const VARIANTS: [(&str, Mode); 4] = [
    ("none", Mode::None),
    ("timer_floor_999hz", Mode::TimerFloor(999)),
    ("lowprof_99hz", Mode::Lowprof(99)),
    ("lowprof_999hz", Mode::Lowprof(999)),
];

/// The signal of the bare timer (never touched by lowprof).
fn floor_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

/// What is running now. The bare timer is armed on the calling thread's
/// CPU clock, so `set` must be called on the workload's thread.
struct Switch {
    mode: Mode,
    profiler: Option<lowprof::Profiler>,
    timer: Option<BareTimer>,
}

impl Switch {
    fn set(&mut self, mode: Mode) {
        if self.mode == mode {
            return;
        }
        // Dropping stops sampling and the drainer (no final profile built).
        drop(self.profiler.take());
        drop(self.timer.take());
        match mode {
            Mode::None => {}
            Mode::TimerFloor(hz) => self.timer = Some(BareTimer::start(floor_signal(), hz)),
            Mode::Lowprof(hz) => {
                let p = lowprof::Profiler::builder().heap(false).cpu_hz(hz).start();
                self.profiler = Some(p.expect("lowprof::Profiler::start"));
            }
        }
        self.mode = mode;
    }
}

/// lowprof's background cost: the profiler at 99 Hz while the program
/// sleeps for `span`. Returns JSON; prints a summary.
fn idle(span: Duration) -> String {
    let profiler = lowprof::Profiler::builder().heap(false).cpu_hz(99).start();
    let profiler = profiler.expect("lowprof::Profiler::start");
    std::thread::sleep(Duration::from_millis(200));
    let before: Vec<(u64, String, u64)> = threads()
        .into_iter()
        .filter_map(|(tid, name)| Some((tid, name, thread_cpu_of(tid)?)))
        .collect();
    let (p0, w0) = (process_cpu(), Instant::now());
    std::thread::sleep(span);
    let (p1, wall) = (process_cpu(), w0.elapsed().as_secs_f64());
    let mut per_thread = Vec::new();
    for (tid, name, c0) in before {
        if let Some(c1) = thread_cpu_of(tid) {
            per_thread.push((name, (c1 - c0) as f64 / wall));
        }
    }
    drop(profiler);
    let total = (p1 - p0) as f64 / wall;
    eprintln!(
        "idle program, lowprof at 99 Hz: process CPU {:.3} ms per second ({:.3} % of a core)",
        total / 1e6,
        total / 1e7
    );
    let mut fields = Vec::new();
    for (name, ns) in &per_thread {
        eprintln!("  thread {name:<16} {:.3} ms/s", ns / 1e6);
        fields.push(format!("\"{name}\": {ns:.0}"));
    }
    format!(
        "{{\n  \"seconds\": {wall:.3},\n  \"process_cpu_ns_per_s\": {total:.0},\n           \"threads_cpu_ns_per_s\": {{{}}}\n}}\n",
        fields.join(", ")
    )
}

fn main() {
    let args = Args::parse();
    Action::empty(libc::SA_ONSTACK).install(floor_signal());
    let mut switch = Switch { mode: Mode::None, profiler: None, timer: None };
    let mut buf = vec![0u64; WORKLOAD_LEN];
    let check = workload(&mut buf);
    assert_eq!(check, workload(&mut buf), "the workload is deterministic");

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(12))
        .sample_size(30)
        .configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    group.sampling_mode(SamplingMode::Flat);
    for (name, mode) in VARIANTS {
        group.bench_function(name, |b| {
            switch.set(mode);
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
    switch.set(Mode::None);
    c.final_summary();

    if args.run_extra(GROUP) {
        let (rounds, per_batch) = (16, 8);
        let names: Vec<&'static str> = VARIANTS.iter().map(|v| v.0).collect();
        let results =
            interleaved_overhead(&names, rounds, per_batch, |i| switch.set(VARIANTS[i].1));
        switch.set(Mode::None);
        let json = overhead_report(&results, rounds, per_batch);
        write_result(GROUP, "interleaved.json", &json);
        write_result(GROUP, "idle.json", &idle(Duration::from_secs(3)));
    }
    eprintln!("{:?}", lowprof_sampler::stats());
}
