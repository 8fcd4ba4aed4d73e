//! Heap profiling end to end: real binaries with `#[global_allocator]`,
//! profiles read back with `go tool pprof`, estimates checked against the
//! known truth within 4 standard errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use lowprof_tests::pprof_tool::{RawProfile, raw, require_go};
use lowprof_tests::sites::SITES;
use lowprof_tests::stat;
use lowprof_tests::stats::{assert_within_4_sigma, sigma_bytes, sigma_objects};

const MEAN: u64 = 524_288;

fn run(bin: &str, dir: &Path) -> String {
    let out = Command::new(bin).arg(dir).output().expect("run test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn label_is(sample: &lowprof_tests::pprof_tool::RawSample, key: &str, value: u64) -> bool {
    sample
        .labels
        .iter()
        .any(|(k, v)| k == key && v.split_whitespace().next() == Some(&value.to_string()))
}

/// Sum of `sample_type` over samples with `function` in the stack and block
/// size `size`.
fn site_total(p: &RawProfile, sample_type: &str, function: &str, size: u64) -> f64 {
    let i = p.index(sample_type);
    p.samples
        .iter()
        .filter(|s| label_is(s, "bytes", size) && p.has_function(s, function))
        .map(|s| s.values[i] as f64)
        .sum()
}

fn check_sites(bin: &str) {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stdout = run(bin, dir.path());
    assert!(stdout.contains("dropped=0"), "{stdout}");
    let p = raw(&go, &dir.path().join("heap.pb.gz"));
    assert_eq!(p.sample_types, ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
    for site in SITES {
        let f = site.function;
        let (s, n, live) = (site.size, site.allocated, site.live);
        assert_within_4_sigma(
            &format!("{f} alloc_space"),
            site_total(&p, "alloc_space", f, s),
            (n * s) as f64,
            sigma_bytes(n, s, MEAN),
        );
        assert_within_4_sigma(
            &format!("{f} alloc_objects"),
            site_total(&p, "alloc_objects", f, s),
            n as f64,
            sigma_objects(n, s, MEAN),
        );
        assert_within_4_sigma(
            &format!("{f} inuse_space"),
            site_total(&p, "inuse_space", f, s),
            (live * s) as f64,
            sigma_bytes(live, s, MEAN),
        );
    }
    // Every sample of a site's block size outside the sites is accounted
    // for: at most a few stray samples of those sizes from the runtime and
    // the profiler itself. A site sample that lost its site frame would show
    // up here.
    for site in SITES {
        let strays: Vec<_> = p
            .samples
            .iter()
            .filter(|s| {
                label_is(s, "bytes", site.size)
                    && !SITES.iter().any(|x| p.has_function(s, x.function))
            })
            .collect();
        assert!(
            strays.len() <= 2,
            "{} samples of {} bytes without a site frame: {:#?}",
            strays.len(),
            site.size,
            strays.iter().map(|s| p.stack_text(s)).collect::<Vec<_>>()
        );
    }
    // Stacks are in call order: site, then its caller, then main.
    let sample = p.samples.iter().find(|s| p.has_function(s, SITES[0].function)).unwrap();
    let text = p.stack_text(sample);
    let pos = |name: &str| {
        text.iter().position(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} in {text:#?}"))
    };
    assert!(pos(SITES[0].function) < pos("lowprof_tests::sites::run_sites"), "{text:#?}");
    assert!(pos("lowprof_tests::sites::run_sites") < pos("heap_sites"), "{text:#?}");
    // The allocator's own frames are not at the leaf of any stack: stacks
    // begin where the program asked for memory. (Deeper frames may be
    // lowprof's, for the profiler's own allocations.)
    for s in &p.samples {
        let Some(leaf) = s.locations.first().and_then(|l| p.locations.get(l)) else { continue };
        for line in leaf {
            for wrapper in [
                "lowprof_alloc::slow::",
                "SampledAlloc",
                "__rust_alloc",
                "__rust_realloc",
                "__rg_alloc",
            ] {
                assert!(!line.contains(wrapper), "allocator frame at a stack's leaf: {line}");
            }
        }
    }
}

#[test]
fn known_sites_with_system_allocator() {
    check_sites(env!("CARGO_BIN_EXE_heap_sites"));
}

#[test]
fn known_sites_with_jemalloc() {
    check_sites(env!("CARGO_BIN_EXE_heap_sites_jemalloc"));
}

#[test]
fn known_sites_with_mimalloc() {
    check_sites(env!("CARGO_BIN_EXE_heap_sites_mimalloc"));
}

#[test]
fn threads_realloc_and_early_blocks() {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stdout = run(env!("CARGO_BIN_EXE_heap_threads"), dir.path());
    assert_eq!(stat(&stdout, "dropped"), 0);
    // Every sampled block was placed where frees recognise it.
    assert_eq!(stat(&stdout, "untracked"), 0, "{stdout}");
    assert_eq!(stat(&stdout, "unregistered"), 0);
    // Frees of the 1000 blocks of 8 KiB allocated before the profiler
    // started are counted exactly (other threads may free a little meanwhile).
    let (frees, freed) = (stat(&stdout, "early_frees"), stat(&stdout, "early_free_bytes"));
    assert!((1000..1100).contains(&frees), "{frees} frees for 1000 blocks");
    assert!(
        (8_192_000..8_192_000 + (1 << 20)).contains(&freed),
        "{freed} bytes freed for 8,192,000"
    );
    // Eight threads allocated 4096 blocks of 2 KiB plus one 64 KiB vector
    // each, then exited: every allocation is in the totals, and the exited
    // threads left the registry.
    let (allocs, bytes) = (stat(&stdout, "thread_allocs"), stat(&stdout, "thread_alloc_bytes"));
    let (want_allocs, want_bytes) = (8 * 4097, 8 * (4096 * 2048 + 4096 * 16));
    assert!(
        (want_allocs..want_allocs + 2000).contains(&allocs),
        "{allocs} allocations, want {want_allocs}"
    );
    assert!(
        (want_bytes..want_bytes + (4 << 20)).contains(&bytes),
        "{bytes} bytes, want {want_bytes}"
    );
    // Each worker registered at its first allocation and left the registry
    // when it exited (before its join returned); no other thread came or
    // went meanwhile (the binary waits until all of them are registered).
    let before = stat(&stdout, "registered_before");
    assert_eq!(
        stat(&stdout, "registered_during"),
        before + 8,
        "eight workers registered: {stdout}"
    );
    assert_eq!(stat(&stdout, "registered_after"), before, "the exited workers left: {stdout}");
    assert_eq!(before, stat(&stdout, "live_threads"), "every live thread registered: {stdout}");
    // Frees made by a pthread key destructor after lowprof's exit hook:
    // 128 + 32 blocks of 512 KiB (and the box holding the first 128) freed,
    // 32 allocated, all counted (other threads may add a little).
    let late = |k| stat(&stdout, k);
    let (late_frees, late_freed) = (late("late_frees"), late("late_free_bytes"));
    assert!((161..161 + 2000).contains(&late_frees), "{late_frees} late frees: {stdout}");
    let want = 160 * (512 << 10);
    assert!((want..want + (4 << 20)).contains(&late_freed), "{late_freed} late bytes: {stdout}");
    let late_bytes = late("late_alloc_bytes");
    assert!((16 << 20..(16 << 20) + (4 << 20)).contains(&late_bytes), "{late_bytes}: {stdout}");
    let p = raw(&go, &dir.path().join("heap.pb.gz"));
    // 32 MiB sampled after the start and freed by a thread registered
    // before it: sampled, and none of it in use any more.
    assert!(stat(&stdout, "handoff_samples_so_far") > 0, "{stdout}");
    let handed = site_total(&p, "alloc_space", "heap_threads::handoff_site", 4096);
    assert_within_4_sigma(
        "handoff_site alloc_space",
        handed,
        (8192 * 4096) as f64,
        sigma_bytes(8192, 4096, MEAN),
    );
    assert_eq!(site_total(&p, "inuse_space", "heap_threads::handoff_site", 4096), 0.0);
    let n = 8 * 4096;
    assert_within_4_sigma(
        "thread_site inuse_space",
        site_total(&p, "inuse_space", "heap_threads::thread_site", 2048),
        (n * 2048) as f64,
        sigma_bytes(n, 2048, MEAN),
    );
    assert_within_4_sigma(
        "realloc_site inuse_space",
        site_total(&p, "inuse_space", "heap_threads::realloc_site", 65536),
        (200 * 65536) as f64,
        sigma_bytes(200, 65536, MEAN),
    );
}

#[test]
fn snapshots_under_load_blame_no_phantom_drops() {
    let stdout = run(env!("CARGO_BIN_EXE_heap_snapshots"), Path::new("."));
    assert!(stat(&stdout, "samples") > 1000, "a busy program: {stdout}");
    // Drops do happen here in most runs (two threads allocating flat out at
    // a 64 KiB interval overflow the rings), so each snapshot is judged on
    // its own: one taken before any drop must not show the dropped frame,
    // one taken after a drop must. Only the snapshot during which the first
    // drop happened is in neither group.
    let (clean, after_drop) = (stat(&stdout, "clean"), stat(&stdout, "after_drop"));
    assert!(clean + after_drop + 1 >= stat(&stdout, "snapshots"), "{stdout}");
    assert_eq!(stat(&stdout, "clean_with_frame"), 0, "no drop yet, yet blamed: {stdout}");
    assert_eq!(stat(&stdout, "after_drop_without_frame"), 0, "drops not shown: {stdout}");
    if stat(&stdout, "dropped") == 0 {
        assert_eq!(stat(&stdout, "with_dropped_frame"), 0, "no record was dropped: {stdout}");
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_bad_input")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("use 1..=1099511627776 bytes"), "{stdout}");
    assert!(stdout.contains("use 1..=1000 Hz"), "{stdout}");
    assert!(stdout.contains("already running"), "{stdout}");
    for setting in
        ["otlp_endpoint:", "otlp_compression:", "export_interval:", "OTEL_EXPORTER_OTLP_HEADERS:"]
    {
        assert!(stdout.contains(setting), "{setting} in {stdout}");
    }
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn heap_profile_without_the_allocator_says_what_to_declare() {
    let out = Command::new(env!("CARGO_BIN_EXE_no_allocator")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("#[global_allocator]") && stdout.contains("SampledAlloc"), "{stdout}");
}

/// The thread that starts the profiler samples at the configured interval
/// at once, not after finishing a gap drawn at the default 512 KiB (see
/// `tests/src/bin/interval_switch.rs`). Five runs, each within 4σ of a
/// 4 KiB sampler: with the old gap kept, the 512 KB site was mostly
/// unsampled or carried one sample of weight ~525, far outside that.
#[test]
fn the_starting_thread_samples_at_the_new_interval_at_once() {
    let Some(go) = require_go() else { return };
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let stdout = run(env!("CARGO_BIN_EXE_interval_switch"), dir.path());
        let (n, size) = (stat(&stdout, "known_blocks"), stat(&stdout, "known_size"));
        let p = raw(&go, &dir.path().join("heap.pb.gz"));
        assert_within_4_sigma(
            "known_site alloc_space",
            site_total(&p, "alloc_space", "interval_switch::known_site::{{closure}}", size),
            (n * size) as f64,
            sigma_bytes(n, size, 4096),
        );
    }
}

#[test]
fn threads_without_a_registry_slot_free_sampled_blocks() {
    let Some(go) = require_go() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stdout = run(env!("CARGO_BIN_EXE_registry_full"), dir.path());
    // 4200 workers for 4096 slots: at least 104 registered without one.
    assert!(stat(&stdout, "unregistered") >= 104, "{stdout}");
    assert_eq!(stat(&stdout, "untracked"), 0, "{stdout}");
    // 16 800 blocks of 8 KiB at a 4 KiB interval: about 14 500 samples (some
    // records may be dropped, and counted, when the drainer falls behind;
    // the blocks stay tracked either way).
    assert!(stat(&stdout, "samples") > 12_000, "{stdout}");
    // Every worker, with a slot or not, freed the blocks sampled for it: the
    // live sampled blocks are back where they were (the profiler's own
    // threads sample a little at this interval meanwhile), and the profile
    // shows the site allocated and nothing of it in use.
    let (before, after) = (stat(&stdout, "live_before"), stat(&stdout, "live_after"));
    assert!(after < before + 100, "{after} live sampled blocks, {before} before: {stdout}");
    let p = raw(&go, &dir.path().join("heap.pb.gz"));
    assert!(site_total(&p, "alloc_space", "registry_full::handed_site", 8192) > 0.0);
    assert_eq!(site_total(&p, "inuse_space", "registry_full::handed_site", 8192), 0.0);
}
