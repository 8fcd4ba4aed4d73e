//! `fork` while the profiler runs flat out (issue 7): every child, forked
//! from a thread holding sampled allocations while other threads are in the
//! allocator's slow path and the span-name table, runs normally and exits;
//! profiling is off in the child (the parent's profiler and `start()` both
//! answer `ForkedChild`, at once); the parent's profiler keeps working and
//! its profile is still accurate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use lowprof_tests::pprof_tool::{raw, require_go};
use lowprof_tests::stat;
use lowprof_tests::stats::{assert_within_4_sigma, sigma_bytes};

#[test]
fn forked_children_run_and_exit_and_the_parent_keeps_profiling() {
    let dir = tempfile::tempdir().unwrap();
    let forks = 40;
    let started = Instant::now();
    // The binary kills and reports a child that hangs for 10 s; a hang of
    // the parent itself shows as this test's timeout in `.ci/run`.
    let out = Command::new(env!("CARGO_BIN_EXE_fork_storm"))
        .arg(dir.path())
        .arg(forks.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "fork_storm failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stat(&stdout, "children_ok"), forks, "every child exited 0");
    // No child waited out anything: 40 forks at ~10 ms pace plus work.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());

    // The parent's heap profile reads back (the one part that needs go) and a site live across all the
    // forks is estimated right.
    let Some(go) = require_go() else { return };
    let heap = raw(&go, &dir.path().join("heap.pb.gz"));
    let (n, size) = (stat(&stdout, "known_blocks"), stat(&stdout, "known_size"));
    assert_within_4_sigma(
        "known_site inuse_space",
        heap.total_for("inuse_space", "fork_storm::known_site::{{closure}}") as f64,
        (n * size) as f64,
        sigma_bytes(n, size, 4096),
    );
}
