//! Memory held by the profiler with 10 000 distinct heap stacks (a
//! `harness = false` bench: prints a table, writes
//! `target/criterion/profiler_memory/results.json` for `report.py`).
//!
//! The binary's global allocator is `SampledAlloc<System>`, as in a program
//! that uses lowprof. The workload reaches 10 000 distinct call paths: a
//! 6-frame recursion (the "application"), then a binary tree of 14 levels of
//! `#[inline(never)]` functions (two per level) where the bits of a counter
//! choose the function at each level, then a leaf that allocates a 16 KiB
//! block and frees it at once (so the workload's own live bytes stay 0).
//! Stacks are ~30 frames deep.
//!
//! 1. The workload runs once with heap sampling off (it warms glibc's heap
//!    and the page cache; nothing is recorded), then VmRSS is read.
//! 2. `lowprof::Profiler` starts: heap on with a 1 KiB mean interval (so
//!    that every leaf's 16 KiB block is sampled: a miss has probability
//!    e^-16), CPU at 99 Hz. The interval changes how many samples are taken,
//!    not how much a stack costs to keep.
//! 3. The workload runs again in batches of 500 leaves, 60 ms apart (the
//!    drainer empties the rings every 50 ms; unpaced, 10 000 samples in a
//!    few ms would overflow them), then waits until the drainer has taken
//!    everything and the stack count is stable.
//! 4. VmRSS (and its anonymous and file-backed parts) again: the delta is the
//!    profiler's (stack table, live-sample table, symbol caches, threads,
//!    rings, its region's touched slots).
//! 5. `heap_profile()` four times (the first symbolizes every new address),
//!    timed, with VmRSS after each, at the default 512 KiB interval again
//!    (otherwise its own allocations would add thousands of stacks); then `malloc_trim(0)` and VmRSS again,
//!    to tell memory in use from memory glibc keeps after it was freed.
//!
//! `--test`: 1 000 leaves, prints, writes nothing.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;
use lowprof_benches::cpu::{Args, write_result};

#[global_allocator]
static ALLOC: SampledAlloc<System> = SampledAlloc::new(System);

const GROUP: &str = "profiler_memory";
const STACKS: u32 = 10_000;
const LEAF_BYTES: usize = 16 * 1024;
const INTERVAL: u64 = 1024;
const BATCH: u32 = 500;
const APP_DEPTH: u32 = 6;
/// `heap_profile()` calls after the drain.
const PROFILE_CALLS: usize = 4;

/// The leaf: allocate and free one block.
#[inline(never)]
fn leaf(path: u32) -> usize {
    let v: Vec<u8> = Vec::with_capacity(black_box(LEAF_BYTES));
    black_box(&v);
    v.capacity() + (path & 1) as usize
}

/// Two functions per level; the bit `$bit` of the path picks the next
/// level's function. The two bodies differ (the added constant), so the
/// compiler cannot merge them into one.
macro_rules! level {
    ($a:ident, $b:ident, $na:ident, $nb:ident, $bit:expr) => {
        #[inline(never)]
        fn $a(path: u32) -> usize {
            let r = if (path >> $bit) & 1 == 0 { $na(path) } else { $nb(path) };
            black_box(r) + 1
        }
        #[inline(never)]
        fn $b(path: u32) -> usize {
            let r = if (path >> $bit) & 1 == 0 { $na(path) } else { $nb(path) };
            black_box(r) + 2
        }
    };
}

level!(l13a, l13b, leaf, leaf, 31);
level!(l12a, l12b, l13a, l13b, 13);
level!(l11a, l11b, l12a, l12b, 12);
level!(l10a, l10b, l11a, l11b, 11);
level!(l9a, l9b, l10a, l10b, 10);
level!(l8a, l8b, l9a, l9b, 9);
level!(l7a, l7b, l8a, l8b, 8);
level!(l6a, l6b, l7a, l7b, 7);
level!(l5a, l5b, l6a, l6b, 6);
level!(l4a, l4b, l5a, l5b, 5);
level!(l3a, l3b, l4a, l4b, 4);
level!(l2a, l2b, l3a, l3b, 3);
level!(l1a, l1b, l2a, l2b, 2);
level!(l0a, l0b, l1a, l1b, 1);

/// The tree's root: bit 0 picks the first level's function.
#[inline(never)]
fn tree(path: u32) -> usize {
    let r = if path & 1 == 0 { l0a(path) } else { l0b(path) };
    black_box(r)
}

/// The "application" above the tree: `depth` more frames.
#[inline(never)]
fn app(depth: u32, path: u32) -> usize {
    let r = if depth == 0 { tree(path) } else { app(black_box(depth - 1), path) };
    black_box(r) + 1
}

/// Runs leaves `from..to`.
fn workload(from: u32, to: u32) {
    for path in from..to {
        black_box(app(APP_DEPTH, path));
    }
}

/// `VmRSS`, `RssAnon`, `RssFile` from `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    Rss { total: field("VmRSS:"), anon: field("RssAnon:"), file: field("RssFile:") }
}

fn mib(b: i64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn delta(a: Rss, b: Rss) -> (i64, i64, i64) {
    (b.total as i64 - a.total as i64, b.anon as i64 - a.anon as i64, b.file as i64 - a.file as i64)
}

/// Waits until the drainer has aggregated at least `want` heap stacks and
/// the stack count has not changed for 200 ms (at most 10 s: a drainer
/// delayed past 200 ms must not pass for a settled one).
fn settle(profiler: &lowprof::Profiler, want: usize) -> lowprof::Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = profiler.stats();
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let s = profiler.stats();
        if s.heap_stacks != last.heap_stacks || s.records_drained != last.records_drained {
            stable_since = Instant::now();
        }
        last = s;
        let settled =
            last.heap_stacks >= want && stable_since.elapsed() >= Duration::from_millis(200);
        if settled || Instant::now() > deadline {
            return last;
        }
    }
}

fn main() {
    let args = Args::parse();
    if args.list {
        println!("{GROUP}: bench");
        return;
    }
    if args.filter.as_ref().is_some_and(|f| !GROUP.contains(f.as_str())) {
        return;
    }
    let stacks = if args.test { 1_000 } else { STACKS };
    let started = Instant::now();

    workload(0, stacks);
    let r0 = rss();
    let profiler = lowprof::Profiler::builder()
        .heap_interval(INTERVAL)
        .cpu_hz(99)
        .start()
        .expect("lowprof::Profiler::start");
    std::thread::sleep(Duration::from_millis(200));
    let r1 = rss();
    let before = profiler.stats();
    let mut from = 0;
    while from < stacks {
        let to = (from + BATCH).min(stacks);
        workload(from, to);
        from = to;
        std::thread::sleep(Duration::from_millis(60));
    }
    let stats = settle(&profiler, stacks as usize * 9 / 10);
    let r2 = rss();
    // Back to lowprof's default interval, so that heap_profile()'s own
    // allocations (on this thread) are sampled as in production rather than
    // every kilobyte, which would add thousands of stacks of its own.
    lowprof_alloc::set_interval(lowprof_benches::INTERVAL).expect("set_interval");
    // heap_profile() a few times: the first symbolizes every new address;
    // later ones show whether what it leaves behind keeps growing.
    let mut profile_ns = Vec::new();
    let mut after_profile = Vec::new();
    let mut last = None;
    for _ in 0..PROFILE_CALLS {
        let t = Instant::now();
        let p = profiler.heap_profile().expect("heap_profile");
        profile_ns.push(t.elapsed().as_nanos() as u64);
        after_profile.push(rss());
        last = Some(p);
    }
    let profile = last.expect("at least one heap_profile");
    let pprof_gzip = lowprof::pprof::encode_gzip(&profile).expect("encode_gzip").len();
    // What of that is memory glibc keeps after it was freed, not memory in
    // use: give back what it can and look again.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let trimmed = rss();
    let samples = stats.heap.samples - before.heap.samples;
    let dropped = stats.heap.dropped_samples - before.heap.dropped_samples;
    drop(profiler);

    let (idle, _, _) = delta(r0, r1);
    let (held, held_anon, held_file) = delta(r0, r2);
    let (trim, trim_anon, trim_file) = delta(r0, trimmed);
    println!();
    println!(
        "Memory held by lowprof (heap at a {INTERVAL} B interval + CPU at 99 Hz), {stacks} distinct heap stacks \
         of ~{} frames, workload's live bytes 0:",
        APP_DEPTH + 14 + 10
    );
    println!("| stage | VmRSS − before MiB | RssAnon − before MiB | RssFile − before MiB |");
    println!("|---|---:|---:|---:|");
    println!("| profiler started, idle | {:.2} | | |", mib(idle));
    println!(
        "| {stacks} stacks recorded, drained | {:.2} | {:.2} | {:.2} |",
        mib(held),
        mib(held_anon),
        mib(held_file)
    );
    for (i, (r, ns)) in after_profile.iter().zip(&profile_ns).enumerate() {
        let (d, a, f) = delta(r0, *r);
        println!(
            "| after heap_profile() #{} ({:.1} ms) | {:.2} | {:.2} | {:.2} |",
            i + 1,
            *ns as f64 / 1e6,
            mib(d),
            mib(a),
            mib(f)
        );
    }
    println!(
        "| then malloc_trim(0) | {:.2} | {:.2} | {:.2} |",
        mib(trim),
        mib(trim_anon),
        mib(trim_file)
    );
    println!(
        "heap stacks {} (cpu stacks {}), heap samples {samples} (dropped {dropped}), records drained {}; \
         the profile: {} samples, {} locations, {} functions, pprof.gz {pprof_gzip} B; \
         {:.0} B of RSS per stack once drained",
        stats.heap_stacks,
        stats.cpu_stacks,
        stats.records_drained,
        profile.samples.len(),
        profile.locations.len(),
        profile.functions.len(),
        held as f64 / stats.heap_stacks.max(1) as f64
    );
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    assert!(
        stats.heap_stacks >= stacks as usize * 9 / 10,
        "only {} heap stacks for {stacks} call paths",
        stats.heap_stacks
    );
    if args.test {
        println!("{GROUP}: --test run, nothing written");
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let deltas = |f: fn(&Rss) -> u64| -> Vec<i64> {
        after_profile.iter().map(|r| f(r) as i64 - f(&r0) as i64).collect()
    };
    let ns: Vec<i64> = profile_ns.iter().map(|&n| n as i64).collect();
    let json = format!(
        "{{\n  \"unix_time\": {now},\n  \"call_paths\": {stacks},\n  \"heap_interval\": {INTERVAL},\n  \
         \"cpu_hz\": 99,\n  \"heap_stacks\": {},\n  \"cpu_stacks\": {},\n  \"heap_samples\": {samples},\n  \
         \"dropped_samples\": {dropped},\n  \"rss_before\": {},\n  \"rss_idle_delta\": {idle},\n  \
         \"rss_held_delta\": {held},\n  \"rss_held_anon_delta\": {held_anon},\n  \"rss_held_file_delta\": {held_file},\n  \
         \"heap_profile_ns\": [{}],\n  \"rss_after_profile_delta\": [{}],\n  \
         \"rss_after_profile_anon_delta\": [{}],\n  \"rss_after_profile_file_delta\": [{}],\n  \
         \"rss_after_trim_delta\": {trim},\n  \"rss_after_trim_anon_delta\": {trim_anon},\n  \
         \"rss_after_trim_file_delta\": {trim_file},\n  \"profile_samples\": {},\n  \
         \"profile_locations\": {},\n  \"profile_functions\": {},\n  \"pprof_gzip_bytes\": {pprof_gzip}\n}}\n",
        stats.heap_stacks,
        stats.cpu_stacks,
        r0.total,
        list(&ns),
        list(&deltas(|r| r.total)),
        list(&deltas(|r| r.anon)),
        list(&deltas(|r| r.file)),
        profile.samples.len(),
        profile.locations.len(),
        profile.functions.len()
    );
    write_result(GROUP, "results.json", &json);
}
