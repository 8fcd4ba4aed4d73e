//! What `Profiler::stop` returns when a periodic consumer took the CPU
//! samples: an empty CPU profile that says why, and after a first
//! `cpu_profile()` call, the CPU since that call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use lowprof_tests::cpu::burn_cpu;
use lowprof_tests::total_through;

#[inline(never)]
fn report_spin(ns: u64) {
    let mut x = 3u64;
    burn_cpu(ns, || x = black_box(x.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 5));
}

fn start(dir: &std::path::Path) -> lowprof::Profiler {
    lowprof::Profiler::builder()
        .heap(false)
        .cpu_hz(999)
        .write_dir(dir)
        .export_interval(Duration::from_secs(3600))
        .start()
        .unwrap()
}

#[test]
fn the_final_cpu_profile_says_where_the_samples_went() {
    let dir = tempfile::tempdir().unwrap();

    // Never asked: empty, and the comments say why.
    let profiler = start(dir.path());
    report_spin(200_000_000);
    let report = profiler.stop().unwrap();
    let cpu = report.cpu.unwrap();
    assert!(cpu.samples.is_empty(), "{} samples", cpu.samples.len());
    assert!(
        cpu.comments.iter().any(|c| c.contains("cpu_profile() was never called")),
        "{:?}",
        cpu.comments
    );
    // The samples went to the files: the final round wrote a CPU profile.
    let written = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("cpu-"))
        .count();
    assert!(written >= 1, "no cpu file in {}", dir.path().display());

    // Asked once: the final profile holds the CPU since that call.
    let profiler = start(dir.path());
    assert!(profiler.cpu_profile().unwrap().samples.is_empty());
    report_spin(200_000_000);
    let cpu = profiler.stop().unwrap().cpu.unwrap();
    let spin = total_through(&cpu, "cpu", "report_spin");
    assert!(spin >= 100_000_000, "report_spin: {spin} ns of 200 ms");
    assert!(cpu.comments.iter().all(|c| !c.contains("never called")), "{:?}", cpu.comments);
}
