//! CPU profiling end to end: real binaries under `lowprof::Profiler`, their
//! pprof files read back with `go tool pprof -raw`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use lowprof_tests::pprof_tool::{RawProfile, raw, require_go};
use lowprof_tests::stat;

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} {args:?} failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn profile(go: &Path, bin: &str, extra: &[&str]) -> (RawProfile, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![dir.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    let stdout = run(bin, &args);
    (raw(go, &dir.path().join("cpu.pb.gz")), stdout)
}

#[test]
fn split_75_25_at_99_hz() {
    let Some(go) = require_go() else { return };
    let (p, stdout) = profile(&go, env!("CARGO_BIN_EXE_cpu_split"), &["99"]);
    assert_eq!(stat(&stdout, "dropped"), 0);
    assert_eq!(p.sample_types, ["samples", "cpu"]);
    let total = p.total("cpu") as f64;
    let a = 100.0 * p.total_for("cpu", "cpu_split::work_a") as f64 / total;
    let b = 100.0 * p.total_for("cpu", "cpu_split::work_b") as f64 / total;
    eprintln!("work_a {a:.1}%, work_b {b:.1}% of {:.2} s sampled", total / 1e9);
    assert!((a - 75.0).abs() <= 3.0, "work_a has {a:.1}% of cpu, want 75 ± 3");
    assert!((b - 25.0).abs() <= 3.0, "work_b has {b:.1}% of cpu, want 25 ± 3");
    // Four CPU-seconds of work were done.
    assert!(total >= 3.8e9, "sampled {total} ns of 4 s");
}

fn thread_shares_and_coverage(hz: &str) {
    let Some(go) = require_go() else { return };
    let (p, stdout) = profile(&go, env!("CARGO_BIN_EXE_cpu_threads"), &[hz]);
    let cpu = p.index("cpu");
    let mut by_thread: HashMap<String, i64> = HashMap::new();
    for s in &p.samples {
        if let Some((_, name)) = s.labels.iter().find(|(k, _)| k == "thread_name") {
            if name.starts_with("busy-") {
                *by_thread.entry(name.clone()).or_default() += s.values[cpu];
            }
        }
    }
    assert_eq!(by_thread.len(), 4, "four busy threads labelled by name: {by_thread:?}");
    let busy: i64 = by_thread.values().sum();
    for (name, v) in &by_thread {
        let share = 100.0 * *v as f64 / busy as f64;
        eprintln!("{hz} Hz: {name} {share:.1}%");
        assert!((share - 25.0).abs() <= 5.0, "{name} has {share:.1}% at {hz} Hz, want 25 ± 5");
    }
    let sampled = p.total("cpu") as f64;
    let used = stat(&stdout, "process_cpu_ns") as f64;
    let coverage = sampled / used;
    eprintln!(
        "{hz} Hz: sampled {:.3} s of {:.3} s process CPU = {:.1}%",
        sampled / 1e9,
        used / 1e9,
        100.0 * coverage
    );
    assert!(
        coverage >= 0.95,
        "sampled CPU is {:.1}% of the process's at {hz} Hz, want ≥ 95%",
        100.0 * coverage
    );
    assert!(
        coverage <= 1.05,
        "sampled CPU is {:.1}% of the process's: more than was used",
        100.0 * coverage
    );
}

#[test]
fn four_threads_fair_and_fully_counted_at_99_hz() {
    thread_shares_and_coverage("99");
}

#[test]
fn four_threads_fair_and_fully_counted_at_1000_hz() {
    thread_shares_and_coverage("1000");
}

#[test]
fn stacks_keep_the_interrupted_leaf_and_call_order() {
    let Some(go) = require_go() else { return };
    let (p, _) = profile(&go, env!("CARGO_BIN_EXE_cpu_stacks"), &[]);
    let cpu = p.index("cpu");
    let (mut in_c, mut leaf_c, mut ordered) = (0i64, 0i64, 0i64);
    for s in &p.samples {
        let text = p.stack_text(s);
        let pos = |f: &str| text.iter().position(|l| l.contains(f));
        let Some(c) = pos("cpu_stacks::chain_c") else { continue };
        in_c += s.values[cpu];
        let leaf = p.locations.get(&s.locations[0]).unwrap();
        if leaf.iter().any(|l| l.contains("cpu_stacks::chain_c")) {
            leaf_c += s.values[cpu];
        }
        if let (Some(b), Some(a)) = (pos("cpu_stacks::chain_b"), pos("cpu_stacks::chain_a")) {
            if c < b && b < a {
                ordered += s.values[cpu];
            }
        }
        assert!(
            !leaf.iter().any(|l| l.contains("cpu_stacks::chain_b")),
            "the leaf is never the caller of the interrupted function: {text:#?}"
        );
    }
    assert!(in_c > 0);
    eprintln!("chain_c: {in_c} ns; leaf in chain_c {leaf_c}; ordered c<b<a {ordered}");
    assert!(ordered as f64 >= 0.99 * in_c as f64, "c → b → a order in {ordered} of {in_c}");
    // The spin loop and its clock reads are the only code there: the leaf is
    // chain_c itself (with its inlined helpers) most of the time.
    assert!(leaf_c as f64 >= 0.5 * in_c as f64, "leaf inside chain_c in {leaf_c} of {in_c}");

    let (mut in_sorter, mut leaf_in_sort) = (0i64, 0i64);
    for s in &p.samples {
        if !p.has_function(s, "cpu_stacks::sorter") {
            continue;
        }
        in_sorter += s.values[cpu];
        let leaf = p.locations.get(&s.locations[0]).unwrap();
        if leaf.iter().any(|l| l.contains("sort"))
            && !leaf.last().unwrap().contains("cpu_stacks::sorter")
        {
            leaf_in_sort += s.values[cpu];
        }
    }
    eprintln!("sorter: {in_sorter} ns; leaf inside std's sort {leaf_in_sort}");
    // sorter burns 1 s of its thread's CPU time: most of it is sampled with
    // sorter on the stack (else the share below would hold vacuously).
    assert!(in_sorter >= 500_000_000, "sorter: {in_sorter} ns sampled of 1 s burnt");
    assert!(
        leaf_in_sort as f64 >= 0.3 * in_sorter as f64,
        "the leaf is inside std's sort (not sorter) in {leaf_in_sort} of {in_sorter}"
    );
}

#[test]
fn heap_and_cpu_together_with_thread_churn_and_restarts() {
    let stdout = run(env!("CARGO_BIN_EXE_cpu_lifecycle"), &[]);
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}
