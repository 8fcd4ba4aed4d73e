//! jemalloc's own heap profiler, on the same pair loop and BTreeMap workload
//! as `heap_pairs` and `heap_realistic`, at lowprof's mean sampling interval
//! (`lg_prof_sample:19` = 512 KiB).
//!
//! Built only with `--features jemalloc-prof` (tikv-jemallocator's
//! `profiling`: jemalloc configured with `--enable-prof`; cargo unifies
//! features, hence a build of its own):
//!
//! ```sh
//! cargo bench -j 2 -p lowprof-benches --features jemalloc-prof --bench heap_jemalloc_prof
//! ```
//!
//! This binary sets jemalloc's `malloc_conf` to
//! `prof:true,prof_active:false,lg_prof_sample:19` (read when jemalloc
//! initialises), so the profiler is set up but off, and switches it with the
//! `prof.active` mallctl, outside the timed regions. Variants, all in this
//! one process (each ratio is to `Jemalloc` of the same group):
//!
//! - `Jemalloc`: the profiling build with `prof.active` false (what a
//!   program pays for `opt.prof:true` while its profiler is paused);
//! - `jemalloc-prof`: the same with `prof.active` true: jemalloc samples one
//!   allocation per 512 KiB on average, takes its backtrace (libgcc's
//!   unwinder) and keeps per-stack counters;
//! - `SampledAlloc<Jemalloc>`: lowprof over the same jemalloc, `prof.active`
//!   false, lowprof sampling at 512 KiB.
//!
//! Groups: `heap_pairs_1t_jeprof`, `heap_pairs_2t_jeprof` (pairs, as
//! `heap_pairs`) and `heap_realistic_jeprof` (the BTreeMap through the global
//! allocator, a `Switch<Jemalloc>`; `SampledAlloc<Jemalloc>` runs last, see
//! `lowprof_benches::switch`). Plain jemalloc (no `--enable-prof`) is
//! `Jemalloc` in `heap_pairs` (another binary).
//!
//! After criterion, unless `--test`/`--list`: the interleaved cross-check
//! (`lowprof_benches::interleave`: pairs on one thread, 64 rounds of 2^18;
//! the map, 12 rounds), written to `interleaved.json` in the
//! `heap_pairs_1t_jeprof` and `heap_realistic_jeprof` folders.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use lowprof_alloc::SampledAlloc;
use lowprof_benches::cpu::{Args, write_result};
use lowprof_benches::interleave::{self, Batch, interleave, report};
use lowprof_benches::switch::{
    MODE_INNER, MODE_SAMPLED, Switch, leave_sampled_route, set_mode, workload,
};
use lowprof_benches::{Drainer, PairLoop, Pool, TimedPairs};
use tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its initialisation: profiling set up, off
/// until `prof.active` is written, one sample per 2^19 bytes on average.
/// (The symbol is `_rjem_malloc_conf` because tikv-jemallocator prefixes
/// jemalloc's symbols; its own test `background_thread_enabled.rs` does the
/// same.)
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static libc::c_char> = Some(
    // SAFETY: a pointer to the first byte of a static NUL-terminated string.
    unsafe { &*c"prof:true,prof_active:false,lg_prof_sample:19".as_ptr() },
);

#[global_allocator]
static GLOBAL: Switch<Jemalloc> = Switch::new(Jemalloc);

static JE: Jemalloc = Jemalloc;
static JE_SAMPLED: SampledAlloc<Jemalloc> = SampledAlloc::new(Jemalloc);

/// What runs in a pair variant: which loop, and whether jemalloc profiles.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    /// Index into [`loops`].
    pairs: usize,
    prof: bool,
}

/// Benchmark ids in run order. `report.py` relies on these names.
const VARIANTS: [Variant; 3] = [
    Variant { name: "Jemalloc", pairs: 0, prof: false },
    Variant { name: "jemalloc-prof", pairs: 0, prof: true },
    Variant { name: "SampledAlloc<Jemalloc>", pairs: 1, prof: false },
];

fn loops() -> Vec<Box<dyn TimedPairs>> {
    vec![Box::new(PairLoop::new(&JE)), Box::new(PairLoop::new(&JE_SAMPLED))]
}

/// Turns jemalloc's profiler on or off (`prof.active`), and checks it took.
fn prof_active(on: bool) {
    // SAFETY: `prof.active` is a `bool` mallctl (jemalloc's manual).
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.active\0", on) }.expect("write prof.active");
    // SAFETY: as above.
    let now: bool =
        unsafe { tikv_jemalloc_ctl::raw::read(b"prof.active\0") }.expect("read prof.active");
    assert_eq!(now, on, "prof.active did not switch");
}

/// Checks that jemalloc read this binary's `malloc_conf`.
fn check_config() {
    let prof = tikv_jemalloc_ctl::profiling::prof::read().expect("opt.prof");
    let lg = tikv_jemalloc_ctl::profiling::lg_prof_sample::read().expect("opt.lg_prof_sample");
    assert!(prof, "jemalloc's opt.prof is false: malloc_conf was not read");
    assert_eq!(lg, 19, "opt.lg_prof_sample");
    eprintln!("heap_jemalloc_prof: jemalloc opt.prof={prof} opt.lg_prof_sample={lg}");
}

/// Checks that jemalloc really samples when active: 16 MiB held in 1 KiB
/// blocks (~32 samples expected at 512 KiB), then a `prof.dump`, whose
/// `t*:` line counts the sampled live objects.
fn check_sampling() {
    prof_active(true);
    let blocks: Vec<Box<[u8]>> =
        (0..16 * 1024).map(|_| vec![1u8; 1024].into_boxed_slice()).collect();
    let path =
        std::env::temp_dir().join(format!("lowprof-jeprof-check-{}.heap", std::process::id()));
    let c_path = std::ffi::CString::new(path.to_str().expect("utf-8 temp dir")).expect("no NUL");
    // SAFETY: `prof.dump` takes a NUL-terminated file name (jemalloc's
    // manual); `c_path` outlives the call.
    unsafe { tikv_jemalloc_ctl::raw::write(b"prof.dump\0", c_path.as_ptr()) }.expect("prof.dump");
    prof_active(false);
    drop(blocks);
    let dump = std::fs::read_to_string(&path).expect("read the prof.dump file");
    let _ = std::fs::remove_file(&path);
    let objects: u64 = dump
        .lines()
        .find_map(|l| l.trim().strip_prefix("t*:"))
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("a t*: line in jemalloc's heap profile");
    eprintln!(
        "heap_jemalloc_prof: {} ({objects} sampled live objects for 16 MiB held)",
        dump.lines().next().unwrap_or("")
    );
    assert!(objects > 0, "jemalloc's profiler sampled nothing");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40)
        .configure_from_args()
}

fn pairs_1t(c: &mut Criterion) {
    let mut loops = loops();
    let mut group = c.benchmark_group("heap_pairs_1t_jeprof");
    for v in VARIANTS {
        group.bench_function(v.name, |b| {
            b.iter_custom(|iters| {
                prof_active(v.prof);
                let t = loops[v.pairs].run_timed(iters);
                prof_active(false);
                t
            });
        });
    }
    group.finish();
}

fn pairs_2t(c: &mut Criterion) {
    let pool = Pool::new(2, loops);
    let mut group = c.benchmark_group("heap_pairs_2t_jeprof");
    for v in VARIANTS {
        group.bench_function(v.name, |b| {
            b.iter_custom(|iters| {
                prof_active(v.prof);
                let t = pool.run(v.pairs, iters);
                prof_active(false);
                t
            });
        });
    }
    group.finish();
}

/// Realistic variants in run order (sampled last): name, allocator mode,
/// jemalloc profiling.
const MODES: [(&str, u8, bool); 3] = [
    ("Jemalloc", MODE_INNER, false),
    ("jemalloc-prof", MODE_INNER, true),
    ("SampledAlloc<Jemalloc>", MODE_SAMPLED, false),
];

fn realistic(c: &mut Criterion) {
    let mut drainer = Drainer::new();
    let mut group = c.benchmark_group("heap_realistic_jeprof");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(40);
    group.measurement_time(Duration::from_secs(14));
    for (name, mode, prof) in MODES {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                set_mode(mode);
                prof_active(prof);
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    workload();
                    spent += t.elapsed();
                    drainer.drain();
                }
                prof_active(false);
                spent
            });
        });
        set_mode(MODE_INNER);
    }
    group.finish();
}

/// The interleaved cross-check (see `lowprof_benches::interleave`).
fn interleaved() {
    let variants: Vec<interleave::Variant> =
        VARIANTS.iter().map(|v| interleave::Variant { name: v.name, inner: "Jemalloc" }).collect();
    let mut loops = loops();
    let results = interleave(&variants, 64, |i| {
        prof_active(VARIANTS[i].prof);
        let b = loops[VARIANTS[i].pairs].run_batch(1 << 18);
        prof_active(false);
        b
    });
    let json = report("heap_pairs_1t_jeprof", &results, "262144 pairs", &[]);
    write_result("heap_pairs_1t_jeprof", "interleaved.json", &json);

    let variants: Vec<interleave::Variant> =
        MODES.iter().map(|&(name, _, _)| interleave::Variant { name, inner: "Jemalloc" }).collect();
    let mut drainer = Drainer::new();
    let mut stuck = 0u32;
    let results = interleave(&variants, 12, |i| {
        let (_, mode, prof) = MODES[i];
        set_mode(mode);
        if !leave_sampled_route() {
            stuck += u32::from(mode != MODE_SAMPLED);
        }
        prof_active(prof);
        let b = Batch::time(1, workload);
        prof_active(false);
        set_mode(MODE_INNER);
        drainer.drain();
        b
    });
    leave_sampled_route();
    let json = report(
        "heap_realistic_jeprof",
        &results,
        "1 map build",
        &[("batches_on_sampled_free_route", stuck.to_string())],
    );
    write_result("heap_realistic_jeprof", "interleaved.json", &json);
}

fn main() {
    let args = Args::parse();
    check_config();
    check_sampling();
    lowprof_benches::start_sampling();
    let mut c = config();
    pairs_1t(&mut c);
    pairs_2t(&mut c);
    realistic(&mut c);
    c.final_summary();
    if args.run_extra("heap_jeprof") {
        interleaved();
    }
    eprintln!("{}", lowprof_benches::stats_line());
}
