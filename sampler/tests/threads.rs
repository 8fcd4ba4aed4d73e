//! Per-thread timers see every thread: four equally busy threads get a
//! quarter of the samples each and each thread's sampled CPU time matches its
//! own CPU clock; threads that come and go during profiling get timers, names,
//! samples, and have their timers deleted when they end.

// Linux-only: the sampler does nothing elsewhere.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::Duration;

use common::Collector;
use lowprof_sampler::Config;

#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x: u64 = black_box(0x9e37_79b9_7f4a_7c15);
    let mut i = 0u64;
    while i < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
    }
    x
}

fn iterations_for(target_ns: u64) -> u64 {
    let mut n = 100_000u64;
    loop {
        let t = common::thread_cpu_nanos();
        black_box(spin(black_box(n)));
        let spent = common::thread_cpu_nanos() - t;
        if spent > 5_000_000 {
            return (n as u128 * target_ns as u128 / spent as u128) as u64;
        }
        n *= 2;
    }
}

/// Polls `cond` every millisecond for up to 30 s (a liveness bound: a
/// loaded machine may not schedule the threads it waits on for a while).
fn wait_for(cond: impl Fn() -> bool) -> bool {
    let t = std::time::Instant::now();
    while !cond() {
        if t.elapsed() > Duration::from_secs(30) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Spends `cpu_ns` of this thread's CPU time in `spin`.
fn busy_for(cpu_ns: u64, chunk: u64) {
    let start = common::thread_cpu_nanos();
    while common::thread_cpu_nanos() - start < cpu_ns {
        black_box(spin(black_box(chunk)));
    }
}

#[test]
fn four_threads_and_churn() {
    let chunk = iterations_for(1_000_000);
    let collector = Collector::spawn();
    lowprof_sampler::start(Config::default()).unwrap();
    let period = lowprof_sampler::period_nanos(lowprof_sampler::DEFAULT_HZ) as u64;

    // Four equally busy threads (each 0.75 CPU-s, sharing two cores). A new
    // thread is timed from the first maintain() after it appears; the
    // workers wait (asleep) until all four are timed, so that their CPU clocks
    // and their samples cover the same span.
    let before = lowprof_sampler::stats().threads_timed;
    let workers: Vec<_> = (0..4)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let tid = common::gettid();
                    assert!(
                        wait_for(|| lowprof_sampler::stats().threads_timed >= before + 4),
                        "never timed"
                    );
                    let t0 = common::thread_cpu_nanos();
                    busy_for(750_000_000, chunk);
                    (tid, common::thread_cpu_nanos() - t0)
                })
                .unwrap()
        })
        .collect();
    let workers: Vec<(u64, u64)> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    // Let maintain() notice they are gone, then measure the baseline.
    let baseline = before;
    assert!(
        wait_for(|| lowprof_sampler::stats().threads_timed == baseline),
        "worker timers deleted"
    );

    // Churn: 50 short threads in batches of 10. Odd batches run free (they
    // burn 5 ms and exit, often before any maintain() sees them: that races
    // timer_create against thread exit). Even batches wait, asleep, until
    // all ten are timed, burn 25 ms of CPU (at least two periods, so each
    // must be sampled) and linger 20 ms. Between batches every timer of the
    // previous batch must be gone.
    let mut short_tids = BTreeSet::new();
    let mut waiting_tids = BTreeSet::new();
    let mut peak = baseline;
    for batch in 0..5 {
        assert!(
            wait_for(|| lowprof_sampler::stats().threads_timed == baseline),
            "batch {batch}: timers deleted"
        );
        let waits = batch % 2 == 0;
        let handles: Vec<_> = (0..10)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("short-{}", batch * 10 + i))
                    .spawn(move || {
                        let tid = common::gettid();
                        if waits {
                            wait_for(|| lowprof_sampler::stats().threads_timed >= baseline + 10);
                            busy_for(25_000_000, chunk / 4);
                            std::thread::sleep(Duration::from_millis(20));
                        } else {
                            busy_for(5_000_000, chunk / 4);
                        }
                        tid
                    })
                    .unwrap()
            })
            .collect();
        if waits {
            // The peak is taken while waiting: once the condition holds the
            // short threads run ~45 ms and exit, and a stalled main thread
            // reading afterwards would see their timers gone.
            let seen = std::cell::Cell::new(0);
            wait_for(|| {
                let timed = lowprof_sampler::stats().threads_timed;
                seen.set(seen.get().max(timed));
                timed >= baseline + 10
            });
            peak = peak.max(seen.get());
        }
        peak = peak.max(lowprof_sampler::stats().threads_timed);
        for h in handles {
            let tid = h.join().unwrap();
            short_tids.insert(tid);
            if waits {
                waiting_tids.insert(tid);
            }
        }
    }
    let cleaned = wait_for(|| lowprof_sampler::stats().threads_timed == baseline);
    let after = lowprof_sampler::stats().threads_timed;
    lowprof_sampler::stop();
    let samples = collector.finish();
    let stats = lowprof_sampler::stats();
    eprintln!("{stats:?}; threads_timed baseline {baseline}, peak {peak}, after churn {after}");

    // Shares of the four workers.
    let mut weight_by_thread: BTreeMap<u64, u64> = BTreeMap::new();
    for s in &samples {
        *weight_by_thread.entry(s.thread).or_default() += s.weight;
    }
    let total: u64 =
        workers.iter().map(|(tid, _)| weight_by_thread.get(tid).copied().unwrap_or(0)).sum();
    let total_cpu: u64 = workers.iter().map(|(_, cpu)| cpu).sum();
    for (tid, cpu) in &workers {
        let w = weight_by_thread.get(tid).copied().unwrap_or(0);
        let share = w as f64 / total as f64;
        let cpu_share = *cpu as f64 / total_cpu as f64;
        let sampled_cpu = w * period;
        eprintln!(
            "worker {tid}: {w} periods, share {:.1}% (of CPU {:.1}%), sampled {:.3} s of {:.3} s CPU",
            100.0 * share,
            100.0 * cpu_share,
            sampled_cpu as f64 / 1e9,
            *cpu as f64 / 1e9
        );
        // Each thread's samples are its own, in proportion to its CPU time.
        // The bound allows what the per-thread floor below allows: one
        // thread captured at 100 % and three at 50 % give it 0.4 of the
        // samples for 0.25 of the CPU, 0.15 off (0.172 at worst with unequal
        // CPU times).
        assert!(
            (share - cpu_share).abs() <= 0.18,
            "thread {tid} share {share:.3} of {cpu_share:.3}"
        );
        // A per-thread CPU timer expires once per period of that thread's CPU
        // time, and `1 + si_overrun` counts every expiry up to the last
        // delivered signal. What is lost is the tail after it. The kernel
        // checks CPU timers only on a scheduler tick that finds the thread
        // running, so the tail is normally under a period (99% measured on a
        // quiet machine), but on a machine shared with busy neighbours whose
        // wake-ups preempt our threads between ticks, expiries were seen to be
        // noticed 30 periods late (40% of this run). Hence the 50% floor per
        // thread; process-wide capture is held to 95% by the split test and
        // to ≥ 98% by the benchmarks on a quiet machine.
        assert!(sampled_cpu <= cpu + period, "thread {tid}: {sampled_cpu} > {cpu}");
        assert!(sampled_cpu * 2 >= *cpu, "thread {tid}: {sampled_cpu} of {cpu}");
        assert_eq!(
            lowprof_sampler::thread_name(*tid).as_deref(),
            Some(format!("worker-{}", workers.iter().position(|w| w.0 == *tid).unwrap()).as_str())
        );
    }

    // Churn: timers were made for the short threads and deleted after them.
    assert!(peak >= baseline + 10, "short threads got timers (peak {peak}, baseline {baseline})");
    assert!(cleaned, "every short thread's timer was deleted: {after} timed, baseline {baseline}");
    assert_eq!(stats.threads_timed, 0, "stop deletes every timer");
    let sampled_short: BTreeSet<u64> =
        samples.iter().map(|s| s.thread).filter(|t| short_tids.contains(t)).collect();
    let sampled_waiting = sampled_short.intersection(&waiting_tids).count();
    eprintln!(
        "{} of 50 short threads were sampled, {sampled_waiting} of the {} that waited to be timed",
        sampled_short.len(),
        waiting_tids.len()
    );
    // Each waiting thread ran ~2.5 periods while timed, but whether a signal
    // arrives before it exits depends on a tick finding it running (see the
    // worker check above): on a quiet machine 29–30 of 30 are sampled; with
    // busy neighbours as few as 6 were. Only "some" is asserted.
    assert!(sampled_waiting >= 1, "timed short threads were sampled: {sampled_waiting}");
    let named = sampled_short
        .iter()
        .filter(|&&t| lowprof_sampler::thread_name(t).is_some_and(|n| n.starts_with("short-")))
        .count();
    assert!(
        named * 10 >= sampled_short.len() * 9,
        "{named} of {} sampled short threads named",
        sampled_short.len()
    );
    assert_eq!(stats.dropped, 0);

    // Names of exited threads are kept until forgotten.
    lowprof_sampler::forget_exited_threads();
    for t in &sampled_short {
        assert_eq!(lowprof_sampler::thread_name(*t), None, "thread {t} forgotten");
    }
}
