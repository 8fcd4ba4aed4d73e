//! The soak workload. Usage: `soak <otlp endpoint> <dir> <seconds>`.
//!
//! - 16 worker threads at all times, each living ~200 ms then replaced:
//!   mixed allocation, free and realloc over sizes from 8 B to 80 KiB, and
//!   short-lived 2 MiB blocks;
//! - `soak_known_site` allocates 1000-byte blocks, counted exactly (the
//!   truth for the heap estimate);
//! - CPU sampling at 1000 Hz, heap sampling at the default 512 KiB;
//! - a child forked every second (allocates, exits 0; killed and reported
//!   if not done in 10 s);
//! - OTLP export every second to `<endpoint>` (the test's receiver fails
//!   one request in three), pprof files to `<dir>`;
//! - a watchdog aborts the process if the main loop makes no progress for
//!   30 s (a hang fails the test instead of stalling it).
//!
//! Prints `key=value` lines for the test: known-site truth, drops, export
//! and memory figures, the exact bytes allocated around the profiler's
//! start and stop, and the process's CPU time. Writes `heap.pb.gz` and `cpu.pb.gz` from `stop()`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;
use lowprof_tests::cpu::process_cpu_ns;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

/// Blocks `soak_known_site` allocated, all threads together.
static KNOWN_BLOCKS: AtomicU64 = AtomicU64::new(0);
/// Main-loop progress, for the watchdog.
static PROGRESS: AtomicU64 = AtomicU64::new(0);

const KNOWN_SIZE: usize = 1000;

/// The sizes `soak_mixed` allocates: 8 B to 80 KiB.
const SIZES: [usize; 24] = [
    8, 16, 24, 32, 48, 64, 96, 128, 200, 256, 384, 512, 640, 1024, 1500, 2048, 4096, 8192, 12_000,
    16_384, 32_768, 49_152, 65_536, 81_920,
];

/// xorshift64: the workers' sizes and choices.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[inline(never)]
fn soak_known_site(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..16 {
        keep.push(black_box(vec![1u8; KNOWN_SIZE]));
    }
    KNOWN_BLOCKS.fetch_add(16, Ordering::Relaxed);
}

#[inline(never)]
fn soak_mixed(keep: &mut Vec<Vec<u8>>, rng: &mut u64) {
    let r = next(rng);
    // Heavy but not a storm (the overflow test is the storm): a few GB/s
    // on two cores, within what the rings and the drainer carry.
    // Sizes from a fixed set, as real programs' types and buffers are:
    // Go-style heap profiles keep one row per (stack, size), so uniformly
    // random sizes would grow the profile with every sample.
    let size = SIZES[(r >> 8) as usize % SIZES.len()];
    match (r >> 40) % 3 {
        0 => keep.push(black_box(vec![0u8; size])),
        1 => {
            if let Some(v) = keep.last_mut() {
                // realloc, growing or shrinking.
                v.resize(size, 7);
                v.shrink_to_fit();
            }
        }
        _ => {
            if !keep.is_empty() {
                let i = (r >> 16) as usize % keep.len();
                keep.swap_remove(i);
            }
        }
    }
    if r % 1000 == 0 {
        // 2 MiB, through the huge-block table, freed at once: kept, a
        // few of these would swing the process's RSS by tens of MiB and
        // hide the profiler's own memory in the noise.
        black_box(vec![1u8; 1 << 21]);
    }
}

fn worker(seed: u64, until: Instant) {
    let mut rng = seed | 1;
    let mut keep = Vec::new();
    let mut known = Vec::new();
    while Instant::now() < until {
        for _ in 0..64 {
            soak_mixed(&mut keep, &mut rng);
        }
        soak_known_site(&mut known);
        if known.len() > 4096 {
            known.clear();
        }
        if keep.len() > 2048 {
            keep.truncate(512);
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("no VmRSS line");
    let kib = rss.split_whitespace().next().and_then(|v| v.parse().ok());
    kib.unwrap_or_else(|| panic!("VmRSS:{rss} is not a number of KiB"))
}

/// Bytes allocated so far (exact, every thread), before and after the
/// profiler: they bracket what its heap profile estimates.
fn alloc_bytes() -> u64 {
    lowprof_alloc::stats().totals.alloc_bytes
}

/// The process's live heap (exact: allocated minus freed, every thread).
fn live_kib() -> u64 {
    let totals = lowprof_alloc::stats().totals;
    totals.alloc_bytes.saturating_sub(totals.free_bytes) / 1024
}

fn fork_child() -> bool {
    // SAFETY: fork in a multi-threaded program; the child only allocates
    // (through lowprof's fork-safe paths) and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut keep = Vec::new();
        for i in 0..2000 {
            keep.push(vec![i as u8; 100 + i % 5000]);
        }
        black_box(&keep);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 0;
    loop {
        // SAFETY: reaps our own child; `status` is a valid out pointer.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own hung child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            eprintln!("child {pid} hung");
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().expect("endpoint");
    let dir = std::path::PathBuf::from(args.next().expect("dir"));
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);

    // The receiver stands for a collector on another machine; here it is a
    // Python process on the same two cores. Run the whole workload (threads
    // inherit this thread's nice value) below it, so that it answers in
    // time instead of being starved by 16 spinning threads.
    // SAFETY: setpriority on the calling thread (who = 0) only.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };

    // The watchdog: abort (a failing exit the test sees) on a hang.
    std::thread::spawn(|| {
        let mut last = (PROGRESS.load(Ordering::Relaxed), Instant::now());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = PROGRESS.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(30) {
                eprintln!("watchdog: no progress for 30 s, aborting");
                std::process::abort();
            }
        }
    });

    let bytes_before_start = alloc_bytes();
    let profiler = lowprof::Profiler::builder()
        .cpu_hz(1000)
        .otlp_endpoint(endpoint)
        // The Python receiver decodes every request on a machine the
        // workload keeps busy: give it time, so that failures are its 503s.
        .otlp_timeout(Duration::from_secs(10))
        .export_interval(Duration::from_secs(1))
        .write_dir(&dir)
        .keep_files(5)
        .start()
        .unwrap();
    let bytes_after_start = alloc_bytes();
    // Open the user's CPU window now: stop() reports the whole run.
    profiler.cpu_profile().unwrap();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut rss_after_warmup = None;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let (mut forks, mut forks_ok, mut threads_started) = (0u64, 0u64, 0u64);
    let mut next_fork = start + Duration::from_secs(1);
    while Instant::now() < end {
        workers.retain(|w| !w.is_finished());
        while workers.len() < 16 {
            let s = next(&mut seed);
            let until = Instant::now() + Duration::from_millis(100 + s % 200);
            workers.push(std::thread::spawn(move || worker(s, until)));
            threads_started += 1;
        }
        if Instant::now() >= next_fork {
            next_fork += Duration::from_secs(1);
            // A progress line a second (stderr: shown when the test fails).
            let stats = profiler.stats();
            let export = stats.export.unwrap_or_default();
            eprintln!(
                "t={:.1}s heap_samples={} dropped={} export: enqueued={} sent={} queued={} \
                 in_flight={} retries={} last_error={:?}",
                start.elapsed().as_secs_f64(),
                stats.heap.samples,
                stats.heap.dropped_samples,
                export.enqueued,
                export.requests_sent,
                export.queued,
                export.in_flight,
                export.retries,
                export.last_error
            );
            forks += 1;
            forks_ok += u64::from(fork_child());
        }
        if rss_after_warmup.is_none() && start.elapsed() >= Duration::from_secs(3) {
            rss_after_warmup = Some((rss_kib(), live_kib()));
        }
        PROGRESS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(10));
    }
    for w in workers {
        w.join().unwrap();
    }
    let (rss_end, live_end) = (rss_kib(), live_kib());
    let bytes_before_stop = alloc_bytes();
    let report = profiler.stop().unwrap();
    let bytes_after_stop = alloc_bytes();
    // Every timer expiry the CPU profile can hold happened by now.
    let process_cpu = process_cpu_ns();
    PROGRESS.fetch_add(1, Ordering::Relaxed);
    let stats = &report.stats;
    report.heap.as_ref().unwrap().write_pprof(dir.join("heap.pb.gz")).unwrap();
    report.cpu.as_ref().unwrap().write_pprof(dir.join("cpu.pb.gz")).unwrap();
    let export = stats.export.clone().unwrap();
    println!("known_blocks={}", KNOWN_BLOCKS.load(Ordering::Relaxed));
    println!("known_size={KNOWN_SIZE}");
    println!("threads_started={threads_started}");
    println!("forks={forks}");
    println!("forks_ok={forks_ok}");
    println!("heap_samples={}", stats.heap.samples);
    println!("heap_dropped={}", stats.heap.dropped_samples);
    println!("heap_dropped_objects={}", stats.heap.dropped_alloc_objects.round() as u64);
    println!("cpu_samples={}", stats.cpu.samples);
    println!("cpu_dropped={}", stats.cpu.dropped);
    println!("cpu_dropped_periods={}", stats.cpu.dropped_periods);
    println!("heap_stacks={}", stats.heap_stacks);
    println!("export_enqueued={}", export.enqueued);
    println!("requests_sent={}", export.requests_sent);
    println!("requests_failed={}", export.requests_failed);
    println!("requests_rejected={}", export.rejected);
    println!("requests_dropped={}", export.dropped_queue_full);
    println!("requests_abandoned={}", export.abandoned);
    println!("requests_pending={}", export.queued + usize::from(export.in_flight));
    println!("retries={}", export.retries);
    eprintln!("export last error: {:?}", export.last_error);
    println!("alloc_bytes_before_start={bytes_before_start}");
    println!("alloc_bytes_after_start={bytes_after_start}");
    println!("alloc_bytes_before_stop={bytes_before_stop}");
    println!("alloc_bytes_after_stop={bytes_after_stop}");
    println!("process_cpu_ns={process_cpu}");
    let (rss_warm, live_warm) = rss_after_warmup
        .unwrap_or_else(|| panic!("the run ({seconds} s) ended before the 3 s warm-up snapshot"));
    println!("rss_after_warmup_kib={rss_warm}");
    println!("rss_end_kib={rss_end}");
    println!("live_after_warmup_kib={live_warm}");
    println!("live_end_kib={live_end}");
}
