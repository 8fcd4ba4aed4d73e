//! What one CPU sample costs the sampled thread: lowprof's `SIGPROF` handler
//! taking a full sample against an empty handler, on the same signal path.
//!
//! A thread sits [`DEPTH`] frames deep (a recursion of `#[inline(never)]`
//! functions) and, at the bottom, sends itself signals one system call at a
//! time; the kernel delivers each on the way out of the call, so the time per
//! signal is system call + delivery (signal frame, `xsave`) + handler +
//! `sigreturn`. Variants (group `cpu_handler`, ns per signal):
//!
//! - `empty`: `SIGPROF` with the action swapped to an empty `SA_SIGINFO`
//!   handler that has *lowprof's own flags* (`SA_SIGINFO | SA_RESTART |
//!   SA_ONSTACK`) and mask, sent exactly as the `lowprof_sample` signals are
//!   (a forged timer `siginfo`): the same signal number, sender, flags and
//!   signal stack, only the handler differs. This is the floor.
//! - `lowprof_sample`: lowprof's handler (sampler started at 1 Hz, so its
//!   own timers barely fire) receives `rt_tgsigqueueinfo(SIGPROF)` with
//!   `si_code = SI_TIMER` and `si_value = lowprof_sampler::timer_cookie()`:
//!   the full sample path (classify, registers, frame-pointer walk of
//!   ~70 frames inside the published stack region, ring push).
//! - `lowprof_sample+ctx`: the same with a trace context
//!   (`lowprof::trace::set_context`) set on the deep thread while its
//!   signals arrive, so every sample also reads and records the context
//!   (issue 5: the handler must not get slower with a context).
//! - `lowprof_foreign`: the same signal with a wrong cookie: lowprof
//!   classifies it as someone else's and chains to the previous handler
//!   (the empty one, installed before lowprof started).
//! - `empty_rtsig`: the empty handler on `SIGRTMIN+1` (never touched by
//!   lowprof), same flags and forged `siginfo`: shows the floor does not
//!   depend on swapping `SIGPROF`'s action.
//!
//! Swapping the action (one `sigaction` outside the timed region) rather than
//! comparing against another signal keeps everything but the handler equal;
//! `empty_rtsig` checks that the two floors agree. The rings are drained
//! every [`CHUNK`] signals with the clock stopped, as the exporter's drainer
//! would, so pushes land in the thread's first ring as in production.
//!
//! After criterion, unless `--test`/`--list`: the "same storm" cross-check,
//! 20 000 signals per variant in interleaved batches of 250, medians written
//! to `target/criterion/cpu_handler/storm.json`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use criterion::Criterion;
use lowprof_benches::cpu::{
    Action, Args, CHUNK, DEPTH, DeepThread, FORGED_OVERRUN, Signal, StormVariant, empty_calls,
    interleaved_storm, storm, storm_json,
};
use lowprof_sampler::{Config, RECORD_WORDS, TimerMode};

/// Benchmark ids, in run order. `report.py` relies on these names.
const VARIANTS: [&str; 5] =
    ["empty", "lowprof_sample", "lowprof_sample+ctx", "lowprof_foreign", "empty_rtsig"];

/// Signals per variant in the interleaved cross-check, and per batch.
const STORM: u64 = 20_000;
const STORM_BATCH: u64 = 250;

/// Drains lowprof's rings on the calling thread, discarding the samples.
fn drain() {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u64>> =
            std::cell::RefCell::new(vec![0; RECORD_WORDS]);
    }
    SCRATCH.with_borrow_mut(|s| {
        lowprof_sampler::drain(s, |_| {});
    });
}

struct Setup {
    deep: DeepThread,
    /// (action to install, signal number, how to send) per variant.
    variants: Vec<StormVariant>,
}

fn setup() -> Setup {
    let rt = libc::SIGRTMIN() + 1;
    // The empty handler goes in first, so lowprof records it as the previous
    // SIGPROF handler and chains foreign signals to it.
    Action::empty(libc::SA_ONSTACK).install(libc::SIGPROF);
    Action::empty(libc::SA_ONSTACK).install(rt);
    // 1 Hz: the timers barely fire; the forged signals are the load.
    lowprof_sampler::start(Config { hz: 1, mode: TimerMode::PerThread })
        .expect("lowprof_sampler::start");
    let lowprof = Action::current(libc::SIGPROF);
    assert_ne!(
        lowprof.handler(),
        lowprof_benches::cpu::empty_handler as *const () as usize,
        "lowprof installed its handler"
    );
    let empty = lowprof.with_empty_handler();
    // Register lowprof's context reader before any variant runs, so that
    // `lowprof_sample` and `lowprof_sample+ctx` differ only in whether the
    // thread has a context (as on untraced and traced threads of a service).
    drop(lowprof_benches::set_bench_context());
    let deep = DeepThread::spawn("lp-deep");
    // The deep thread appeared after start(): publish its stack region and
    // arm its timer, as the drainer's next maintain() would.
    lowprof_sampler::maintain();
    let cookie = lowprof_sampler::timer_cookie();
    let prof = libc::SIGPROF;
    let variants = vec![
        StormVariant {
            name: VARIANTS[0],
            sig: prof,
            action: empty,
            signal: Signal::ForgedTimer { sig: prof, value: cookie },
            context: false,
        },
        StormVariant {
            name: VARIANTS[1],
            sig: prof,
            action: lowprof,
            signal: Signal::ForgedTimer { sig: prof, value: cookie },
            context: false,
        },
        StormVariant {
            name: VARIANTS[2],
            sig: prof,
            action: lowprof,
            signal: Signal::ForgedTimer { sig: prof, value: cookie },
            context: true,
        },
        StormVariant {
            name: VARIANTS[3],
            sig: prof,
            action: lowprof,
            signal: Signal::ForgedTimer { sig: prof, value: cookie ^ 1 },
            context: false,
        },
        StormVariant {
            name: VARIANTS[4],
            sig: rt,
            action: Action::current(rt),
            signal: Signal::ForgedTimer { sig: rt, value: cookie },
            context: false,
        },
    ];
    Setup { deep, variants }
}

/// One chunk per variant: the signals reach the handler they are meant for,
/// and lowprof's samples are complete.
fn check(s: &Setup) {
    let me = s.deep.tid();
    for v in &s.variants {
        v.action.install(v.sig);
        let (signal, context) = (v.signal, v.context);
        let (calls0, stats0) = (empty_calls(), lowprof_sampler::stats());
        let (depths, threads, contexts) = s.deep.run(move || {
            let ctx = context.then(lowprof_benches::set_bench_context);
            drain();
            signal.send(CHUNK);
            drop(ctx);
            let mut scratch = vec![0u64; RECORD_WORDS];
            let (mut depths, mut threads, mut contexts) = (Vec::new(), Vec::new(), Vec::new());
            lowprof_sampler::drain(&mut scratch, |smp| {
                // The forged signals' samples only: the 1 Hz timer may fire
                // during the chunk too.
                if smp.weight == 1 + FORGED_OVERRUN as u64 {
                    depths.push(smp.frames.len());
                    threads.push(smp.thread);
                    contexts.push(smp.context);
                }
            });
            (depths, threads, contexts)
        });
        let (calls, stats) = (empty_calls() - calls0, lowprof_sampler::stats());
        let samples = threads.iter().filter(|&&t| t == me).count() as u64;
        let linked = threads
            .iter()
            .zip(&contexts)
            .filter(|&(&t, &c)| t == me && c == lowprof_benches::bench_context_words())
            .count() as u64;
        let min_depth = depths.iter().copied().min().unwrap_or(0);
        eprintln!(
            "check {}: {CHUNK} signals → {calls} empty-handler calls, {samples} lowprof samples \
             (frames ≥ {min_depth}, {linked} with the bench trace context), {} foreign, {} dropped",
            v.name,
            stats.foreign - stats0.foreign,
            stats.dropped - stats0.dropped,
        );
        match v.name {
            "lowprof_sample" | "lowprof_sample+ctx" => {
                assert_eq!(samples, CHUNK, "every forged timer signal is a sample");
                assert!(min_depth > DEPTH as usize, "the whole deep stack is walked: {min_depth}");
                assert_eq!(stats.dropped, stats0.dropped);
                let want = if v.context { CHUNK } else { 0 };
                assert_eq!(linked, want, "samples carry the context exactly when one is set");
            }
            "lowprof_foreign" => {
                assert_eq!(calls, CHUNK, "foreign signals are chained to the empty handler");
                assert_eq!(stats.foreign - stats0.foreign, CHUNK);
            }
            "empty" => {
                // Plus at most one expiry of the thread's real 1 Hz timer,
                // which also reaches the empty handler in this variant.
                assert!(
                    (CHUNK..=CHUNK + 1).contains(&calls),
                    "the empty handler got every signal: {calls}"
                );
            }
            _ => assert_eq!(calls, CHUNK, "the empty handler got every signal"),
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .configure_from_args()
}

fn main() {
    let args = Args::parse();
    let s = setup();
    check(&s);
    let mut c = config();
    let mut group = c.benchmark_group("cpu_handler");
    for v in &s.variants {
        let (sig, action, signal, context) = (v.sig, v.action, v.signal, v.context);
        group.bench_function(v.name, |b| {
            action.install(sig);
            b.iter_custom(|iters| {
                s.deep.run(move || {
                    let _ctx = context.then(lowprof_benches::set_bench_context);
                    storm(signal, iters, drain)
                })
            });
        });
    }
    group.finish();
    c.final_summary();
    if args.run_extra("cpu_handler") {
        let before = lowprof_sampler::stats();
        let results = interleaved_storm(&s.deep, &s.variants, STORM, STORM_BATCH, drain);
        let after = lowprof_sampler::stats();
        eprintln!(
            "same storm, {STORM} signals per variant {DEPTH}+ frames deep, interleaved batches \
             of {STORM_BATCH} (ns per signal, median / best batch):"
        );
        for r in &results {
            eprintln!("  {:<16} {:>7.0} / {:>7.0}", r.name, r.median(), r.best());
        }
        let floor = results[0].median();
        let lowprof = results[1].median();
        let with_ctx = results[2].median();
        eprintln!(
            "  lowprof above the floor: {:.0} ns ({:.3}× the floor), with a trace context {:.0} ns; \
             dropped during the storm: {}",
            lowprof - floor,
            (lowprof - floor) / floor,
            with_ctx - floor,
            after.dropped - before.dropped
        );
        let json = storm_json(
            &results,
            STORM_BATCH,
            &[
                ("signals_per_variant", STORM.to_string()),
                ("depth", DEPTH.to_string()),
                ("dropped", (after.dropped - before.dropped).to_string()),
            ],
        );
        lowprof_benches::cpu::write_result("cpu_handler", "storm.json", &json);
    }
    // Leave lowprof's handler installed (it stays for the process anyway).
    s.variants[1].action.install(libc::SIGPROF);
    lowprof_sampler::stop();
    eprintln!("{:?}", lowprof_sampler::stats());
}
