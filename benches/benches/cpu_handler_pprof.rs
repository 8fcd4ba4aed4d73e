//! pprof-rs's `SIGPROF` handler measured the way `cpu_handler` measures
//! lowprof's, in its own process (pprof-rs installs its own `SIGPROF`
//! handler; lowprof's stays installed for the life of a process, so the two
//! never share one).
//!
//! pprof-rs arms a process-wide `setitimer(ITIMER_PROF)` (here at 1 Hz, so
//! it barely fires) and samples on *every* `SIGPROF`: its handler does not
//! look at `si_code` (pprof 0.15 `profiler.rs`, `perf_signal_handler`). The
//! deep thread ([`DEPTH`] frames) therefore sends itself `tgkill(SIGPROF)`
//! (`si_code = SI_TKILL`). Variants (group `cpu_handler_pprof`, or
//! `cpu_handler_pprof_fp` when built with `--features pprof-frame-pointer`):
//!
//! - `empty`: the action swapped to an empty handler with pprof-rs's own
//!   flags (`SA_SIGINFO | SA_RESTART`, no `SA_ONSTACK`) and mask, same
//!   `tgkill`: the floor;
//! - `pprof-rs`: pprof-rs's handler: `try_write` on its global lock, unwind
//!   (backtrace-rs / libgcc by default; with `frame-pointer`, a walk that
//!   probes every frame through a pipe), `pthread_getname_np`, hash into its
//!   fixed table.
//!
//! After criterion, unless `--test`/`--list`: the interleaved "same storm"
//! cross-check (20 000 signals each), written to
//! `target/criterion/<group>/storm.json`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use criterion::Criterion;
use lowprof_benches::cpu::{
    Action, Args, CHUNK, DEPTH, DeepThread, Signal, StormVariant, empty_calls, interleaved_storm,
    storm, storm_json,
};

/// The criterion group: one per pprof-rs unwinder, so that runs with and
/// without the feature keep their own results. `report.py` relies on it.
const GROUP: &str = if cfg!(feature = "pprof-frame-pointer") {
    "cpu_handler_pprof_fp"
} else {
    "cpu_handler_pprof"
};

const STORM: u64 = 20_000;
const STORM_BATCH: u64 = 250;

fn nothing() {}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .configure_from_args()
}

/// Samples pprof-rs holds now: (total count, shallowest stack).
fn pprof_counts(guard: &pprof::ProfilerGuard<'_>) -> (i64, usize) {
    let report = guard.report().build_unresolved().expect("pprof-rs report");
    let total = report.data.values().map(|&c| c as i64).sum();
    let min_depth = report.data.keys().map(|f| f.frames.len()).min().unwrap_or(0);
    (total, min_depth)
}

fn main() {
    let args = Args::parse();
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(1)
        .build()
        .expect("pprof::ProfilerGuard at 1 Hz");
    let pprof_action = Action::current(libc::SIGPROF);
    let empty = pprof_action.with_empty_handler();
    let deep = DeepThread::spawn("lp-deep");
    let sig = libc::SIGPROF;
    let variants = [
        StormVariant {
            name: "empty",
            sig,
            action: empty,
            signal: Signal::Tkill { sig },
            context: false,
        },
        StormVariant {
            name: "pprof-rs",
            sig,
            action: pprof_action,
            signal: Signal::Tkill { sig },
            context: false,
        },
    ];
    eprintln!(
        "pprof-rs unwinder: {}; handler flags {:#x}",
        if cfg!(feature = "pprof-frame-pointer") { "frame-pointer" } else { "default" },
        pprof_action.flags()
    );

    // Check: the signals reach the handler they are meant for.
    empty.install(sig);
    let calls0 = empty_calls();
    deep.run(|| Signal::Tkill { sig: libc::SIGPROF }.send(CHUNK));
    assert_eq!(empty_calls() - calls0, CHUNK, "the empty handler got every signal");
    pprof_action.install(sig);
    let (n0, _) = pprof_counts(&guard);
    deep.run(|| Signal::Tkill { sig: libc::SIGPROF }.send(CHUNK));
    let (n1, min_depth) = pprof_counts(&guard);
    eprintln!("check pprof-rs: {CHUNK} signals → {} samples, stacks ≥ {min_depth} frames", n1 - n0);
    assert!(n1 - n0 >= CHUNK as i64 - 2, "pprof-rs sampled the signals");

    let mut c = config();
    let mut group = c.benchmark_group(GROUP);
    for v in &variants {
        let (action, signal) = (v.action, v.signal);
        group.bench_function(v.name, |b| {
            action.install(sig);
            b.iter_custom(|iters| deep.run(move || storm(signal, iters, nothing)));
        });
    }
    group.finish();
    c.final_summary();
    if args.run_extra("cpu_handler_pprof") {
        let results = interleaved_storm(&deep, &variants, STORM, STORM_BATCH, nothing);
        eprintln!(
            "same storm, {STORM} signals per variant {DEPTH}+ frames deep, interleaved batches \
             of {STORM_BATCH} (ns per signal, median / best batch):"
        );
        for r in &results {
            eprintln!("  {:<16} {:>7.0} / {:>7.0}", r.name, r.median(), r.best());
        }
        let (floor, p) = (results[0].median(), results[1].median());
        eprintln!(
            "  pprof-rs above the floor: {:.0} ns ({:.2}× the floor)",
            p - floor,
            (p - floor) / floor
        );
        let json = storm_json(
            &results,
            STORM_BATCH,
            &[("signals_per_variant", STORM.to_string()), ("depth", DEPTH.to_string())],
        );
        lowprof_benches::cpu::write_result(GROUP, "storm.json", &json);
    }
    pprof_action.install(sig);
    drop(guard);
}
