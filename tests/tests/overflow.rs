//! Ring overflow end to end: a signal storm and an allocation storm overflow
//! the rings; every drop is counted (the `lowprof::dropped` frame holds what
//! the rings lost, checked against what the storms really did), nothing is
//! corrupted, and profiling carries on accurately afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use lowprof_tests::pprof_tool::{raw, require_go};
use lowprof_tests::stats::{assert_within_4_sigma, sigma_bytes, sigma_objects};
use lowprof_tests::{stat, stat_as};

/// The binary's CPU rate: one timer period is 1 ms of a thread's CPU time.
const HZ: u64 = 1000;
/// Allocations at the storm profile's edges that one count has and the
/// other not: made in `Profiler::start` before sampling is on (counted
/// exactly, never sampled), and in `heap_profile` between the exact count's
/// read and its drain (possibly sampled, not counted). A few dozen at most.
const EDGE_ALLOCS: f64 = 256.0;

#[test]
fn storms_overflow_count_every_drop_and_profiling_continues() {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_overflow")).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Both storms overflowed the rings.
    assert!(stat(&stdout, "heap_dropped") > 0, "{stdout}");
    assert!(stat(&stdout, "cpu_dropped") > 0, "{stdout}");

    // CPU: each forged signal weighs one period (overrun 0) and is handled
    // on the thread that sent it before the next is sent, so it is either a
    // sample on that thread or a dropped period: the two add up to every
    // signal forged. (Counted by thread, not by stack: a forged sample's
    // leaf is in libc's `syscall`, which keeps no frame pointer, so the
    // walk may skip `signal_storm` itself.) The sum also holds the real
    // timer expiries taken on those threads or dropped anywhere: at most
    // one per millisecond of CPU the process used, plus one per thread for
    // its timer's random phase.
    let cpu = raw(&go, &dir.path().join("cpu.pb.gz"));
    let samples = cpu.index("samples");
    let tids: Vec<String> =
        stat_as::<String>(&stdout, "signal_tids").split(',').map(str::to_owned).collect();
    let on_storm_threads: i64 = cpu
        .samples
        .iter()
        .filter(|s| s.labels.iter().any(|(k, v)| k == "thread_id" && tids.contains(v)))
        .map(|s| s.values[samples])
        .sum();
    let dropped_periods = cpu.total_for("samples", "lowprof::dropped");
    let forged = stat(&stdout, "forged");
    let accounted = (on_storm_threads + dropped_periods) as u64;
    let real_ticks_max = stat(&stdout, "process_cpu_ns") * HZ / 1_000_000_000 + 16;
    eprintln!(
        "cpu: {on_storm_threads} periods sampled on the storm threads {tids:?} + \
         {dropped_periods} dropped = {accounted}; {forged} forged, real expiries at most \
         {real_ticks_max} (storms used {:.2} CPU-s)",
        stat(&stdout, "storm_cpu_ns") as f64 / 1e9
    );
    assert!(
        accounted >= forged,
        "{} forged signals neither sampled nor counted as dropped",
        forged - accounted
    );
    assert!(
        accounted <= forged + real_ticks_max,
        "{accounted} periods sampled or dropped: more than {forged} forged + {real_ticks_max} \
         timer expiries"
    );

    // Heap: the storm profile (taken right after the storms, everything in
    // it sampled at 64 bytes) estimates every allocation of its window,
    // with the dropped samples' weight in `lowprof::dropped` standing in for
    // the sampled records the rings lost. The truth: the storm's counted
    // 64-byte blocks, plus the rest of the process's allocations in the
    // window (the exact count beyond the storm's; sizes unknown, so their
    // variance is bounded by the smallest size, (1-p)/p <= 64 for 1 byte).
    let storm = raw(&go, &dir.path().join("heap_storm.pb.gz"));
    let storm_allocs = stat(&stdout, "storm_allocs");
    let window_allocs = stat(&stdout, "storm_window_allocs");
    assert!(window_allocs >= storm_allocs, "{stdout}");
    let others = window_allocs - storm_allocs;
    assert!(others < storm_allocs / 100, "the storm is the window's work: {stdout}");
    let estimate = storm.total("alloc_objects") as f64;
    let at_site = storm.total_for("alloc_objects", "overflow::alloc_storm") as f64;
    let dropped = storm.total_for("alloc_objects", "lowprof::dropped") as f64;
    let sigma_storm = sigma_objects(storm_allocs, 64, 64);
    let sigma = (sigma_storm.powi(2) + sigma_objects(others, 1, 64).powi(2)).sqrt();
    // Besides the sampling noise: each profile row is rounded on its own
    // (rows the encoder merged add their errors), the edges above, and each
    // dropped sample's weight is counted in 1/1024ths of an object, rounded
    // down.
    let slack =
        storm.samples.len() as f64 + EDGE_ALLOCS + stat(&stdout, "heap_dropped") as f64 / 1024.0;
    let truth = window_allocs as f64;
    let off = estimate - truth;
    eprintln!(
        "heap storm: alloc_objects {estimate:.0} ({at_site:.0} at alloc_storm, {dropped:.0} \
         dropped) vs {truth:.0} allocated ({storm_allocs} by alloc_storm): off by {off:.0} = \
         {:.2} sigma (sigma {sigma:.0}, slack {slack:.0})",
        off / sigma
    );
    assert!(
        off.abs() <= 4.0 * sigma + slack,
        "heap storm: alloc_objects {estimate:.0} vs {truth:.0} allocations: off by {off:.0}, \
         more than 4 sigma ({sigma:.0}) + {slack:.0}"
    );
    // Drops only take samples away from the site.
    assert!(
        at_site <= storm_allocs as f64 + 4.0 * sigma_storm + slack,
        "alloc_storm: {at_site:.0} objects for {storm_allocs} allocations"
    );

    // After the storms: a known site is estimated right ...
    let heap = raw(&go, &dir.path().join("heap.pb.gz"));
    let (n, size) = (stat(&stdout, "after_blocks"), stat(&stdout, "after_size"));
    assert_within_4_sigma(
        "after_site inuse_space",
        heap.total_for("inuse_space", "overflow::after_site") as f64,
        (n * size) as f64,
        sigma_bytes(n, size, 512 * 1024),
    );
    // ... and CPU time is sampled again (0.5 s burnt).
    let after = cpu.total_for("cpu", "overflow::after_cpu") as f64 / 1e9;
    eprintln!("after_cpu: {after:.3} s of 0.5 s");
    // Under: the tail after a thread's last noticed timer expiry is lost,
    // and on a loaded machine expiries are noticed late. Over: never.
    assert!((0.40..=0.55).contains(&after), "after_cpu sampled {after:.3} s of 0.5 s");
}
