//! Ring overflow end to end: a signal storm and an allocation storm overflow
//! the rings; every drop is counted (stats and the `lowprof::dropped` frame),
//! nothing is corrupted, and profiling carries on accurately afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use lowprof_tests::pprof_tool::{raw, require_go};
use lowprof_tests::stat;
use lowprof_tests::stats::{assert_within_4_sigma, sigma_bytes};

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

    // The profiles read back (no corrupt record made it through) and carry
    // every drop in the lowprof::dropped frame, as stats() counts them.
    let heap = raw(&go, &dir.path().join("heap.pb.gz"));
    let dropped = heap.total_for("alloc_objects", "lowprof::dropped") as u64;
    let counted = stat(&stdout, "heap_dropped_objects");
    assert!(dropped.abs_diff(counted) <= 1, "heap: profile {dropped}, stats {counted}");
    let cpu = raw(&go, &dir.path().join("cpu.pb.gz"));
    assert_eq!(
        cpu.total_for("samples", "lowprof::dropped") as u64,
        stat(&stdout, "cpu_dropped_periods"),
        "CPU periods dropped: profile vs stats"
    );

    // After the storms: a known site is estimated right ...
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
