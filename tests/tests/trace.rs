//! Trace-linked samples end to end: requests of two kinds with known CPU and
//! allocation costs, their profiles read back with `go tool pprof`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use lowprof_tests::pprof_tool::{RawProfile, RawSample, pprof, raw, require_go};

const BIN: &str = env!("CARGO_BIN_EXE_trace_spans");

fn run(dir: &Path, mode: &str) -> String {
    let out = Command::new(BIN).arg(dir).arg(mode).output().expect("run trace_spans");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "trace_spans {mode} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn label<'a>(s: &'a RawSample, key: &str) -> Option<&'a str> {
    s.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// span id → (kind, trace id), from the binary's `span` lines.
fn spans(stdout: &str) -> HashMap<String, (String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("span "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2].to_owned(), (f[0].to_owned(), f[1].to_owned()))
        })
        .collect()
}

/// Checks every linked sample of `sample_type` in the work function against
/// the spans the binary reported; returns the per-kind sums and per-span
/// sums.
fn attribute(
    p: &RawProfile,
    sample_type: &str,
    spans: &HashMap<String, (String, String)>,
) -> (HashMap<String, f64>, HashMap<String, i64>) {
    let i = p.index(sample_type);
    let (mut by_kind, mut by_span) = (HashMap::new(), HashMap::new());
    let (mut linked, mut unlinked) = (0i64, 0i64);
    for s in p.samples.iter().filter(|s| p.has_function(s, "trace_spans::work")) {
        let Some(span) = label(s, "span_id") else {
            unlinked += s.values[i];
            continue;
        };
        let (kind, trace) =
            spans.get(span).unwrap_or_else(|| panic!("{sample_type}: unknown span id {span}"));
        assert_eq!(
            label(s, "trace_id"),
            Some(trace.as_str()),
            "{sample_type}: trace of span {span}"
        );
        assert_eq!(
            label(s, "span_name"),
            Some(kind.as_str()),
            "{sample_type}: name of span {span}"
        );
        *by_kind.entry(kind.clone()).or_insert(0.0) += s.values[i] as f64;
        *by_span.entry(span.to_owned()).or_insert(0) += s.values[i];
        linked += s.values[i];
    }
    // Everything the work function did ran inside a context.
    assert!(linked > 0, "{sample_type}: no linked samples");
    assert_eq!(unlinked, 0, "{sample_type}: {unlinked} of the work is not linked to a span");
    (by_kind, by_span)
}

fn assert_share(what: &str, by_kind: &HashMap<String, f64>) {
    let total: f64 = by_kind.values().sum();
    let checkout = 100.0 * by_kind.get("checkout").copied().unwrap_or(0.0) / total;
    eprintln!("{what}: checkout {checkout:.1}%, search {:.1}%", 100.0 - checkout);
    assert!((checkout - 75.0).abs() <= 5.0, "{what}: checkout has {checkout:.1}%, want 75 ± 5");
}

/// `-tagfocus span_id=<id>` keeps exactly that span's samples.
fn assert_tagfocus_isolates(
    go: &Path,
    file: &Path,
    sample_type: &str,
    by_span: &HashMap<String, i64>,
) {
    let (span, &expected) = by_span.iter().max_by_key(|(_, v)| **v).unwrap();
    let focused = lowprof_tests::pprof_tool::parse_raw(&pprof(
        go,
        // Anchored: a regular expression, never read as a numeric range
        // (tracing's small span ids are all digits).
        &["-raw", &format!("-tagfocus=span_id=^{span}$"), &file.to_string_lossy()],
    ));
    assert!(!focused.samples.is_empty());
    for s in &focused.samples {
        assert_eq!(label(s, "span_id"), Some(span.as_str()), "tagfocus let another span through");
    }
    assert_eq!(focused.total(sample_type), expected, "tagfocus kept all of span {span}");
}

fn check_mode(mode: &str) {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stdout = run(dir.path(), mode);
    let spans = spans(&stdout);
    assert_eq!(spans.len(), 16, "{stdout}");
    let cpu_file = dir.path().join("cpu.pb.gz");
    let cpu = raw(&go, &cpu_file);
    let (by_kind, by_span) = attribute(&cpu, "cpu", &spans);
    assert_share(&format!("{mode} cpu"), &by_kind);
    assert_tagfocus_isolates(&go, &cpu_file, "cpu", &by_span);
    let heap_file = dir.path().join("heap.pb.gz");
    let heap = raw(&go, &heap_file);
    let (by_kind, by_span) = attribute(&heap, "alloc_space", &spans);
    assert_share(&format!("{mode} alloc_space"), &by_kind);
    assert_tagfocus_isolates(&go, &heap_file, "alloc_space", &by_span);
}

#[test]
fn samples_link_to_the_right_spans_in_the_known_ratio() {
    check_mode("api");
}

#[test]
fn tracing_layer_links_samples_to_the_entered_span() {
    check_mode("tracing");
}

/// OpenTelemetry's `TraceIdRatioBased` decision, written out independently.
fn otel_ratio_decision(trace_hex: &str, ratio: f64) -> bool {
    let low = u64::from_str_radix(&trace_hex[16..32], 16).unwrap();
    (low >> 1) < (ratio * 2f64.powi(63)) as u64
}

#[test]
fn probabilistic_sampler_links_a_quarter_and_agrees_across_processes() {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stdout = run(dir.path(), "ratio");
    let traces: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("trace ")).collect();
    assert_eq!(traces.len(), 2000);
    // What another process deciding by the same rule links.
    let expected: BTreeSet<&str> =
        traces.iter().copied().filter(|t| otel_ratio_decision(t, 0.25)).collect();
    // What this one linked: every allocation was sampled (interval 1).
    let heap = raw(&go, &dir.path().join("heap.pb.gz"));
    let linked: BTreeSet<&str> = heap
        .samples
        .iter()
        .filter(|s| heap.has_function(s, "trace_spans::one_allocation"))
        .filter_map(|s| label(s, "trace_id"))
        .collect();
    assert_eq!(linked, expected, "the profiler and the OpenTelemetry rule disagree");
    // A binomial share: 2000 traces at p = 0.25.
    let (n, p) = (traces.len() as f64, 0.25);
    let sigma = (n * p * (1.0 - p)).sqrt();
    let count = linked.len() as f64;
    eprintln!("linked {count} of {n} traces (expected {:.0} ± {sigma:.1})", n * p);
    assert!((count - n * p).abs() <= 4.0 * sigma, "{count} linked, want {} ± 4σ", n * p);
    // Unlinked traces' samples are still there, without ids.
    let all = heap.samples.iter().filter(|s| heap.has_function(s, "trace_spans::one_allocation"));
    let objects: i64 = all.map(|s| s.values[heap.index("alloc_objects")]).sum();
    assert_eq!(objects, 2000, "every allocation is in the profile, linked or not");
    assert_eq!(heap.total_for("alloc_objects", "lowprof::dropped"), 0, "no sample was dropped");
}

#[test]
fn context_switches_never_tear_under_signals() {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), "flip");
    let a = ("aa".repeat(16), "a1".repeat(8));
    let b = ("bb".repeat(16), "b2".repeat(8));
    for (file, sample_type) in [("cpu.pb.gz", "samples"), ("heap.pb.gz", "alloc_objects")] {
        let p = raw(&go, &dir.path().join(file));
        let i = p.index(sample_type);
        let mut seen = HashMap::new();
        for s in &p.samples {
            let pair = (label(s, "trace_id"), label(s, "span_id"));
            let whole = match pair {
                (None, None) => "none",
                (Some(t), Some(sp)) if (t, sp) == (a.0.as_str(), a.1.as_str()) => "a",
                (Some(t), Some(sp)) if (t, sp) == (b.0.as_str(), b.1.as_str()) => "b",
                other => panic!("{file}: torn or foreign context {other:?}"),
            };
            *seen.entry(whole).or_insert(0i64) += s.values[i];
        }
        eprintln!("{file}: {seen:?}");
        // The switching thread spends its time in both contexts.
        assert!(seen.get("a").copied().unwrap_or(0) > 0, "{file}: {seen:?}");
        assert!(seen.get("b").copied().unwrap_or(0) > 0, "{file}: {seen:?}");
    }
}
