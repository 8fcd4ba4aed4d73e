//! Forks while the profiler runs flat out. Usage: `fork_storm <dir> <forks>`.
//!
//! Four threads allocate and free (heap interval 4 KiB: a sampled
//! allocation is in flight on some thread most of the time), switch trace
//! contexts and create span names, under 1000 Hz CPU sampling. The main
//! thread forks `<forks>` times. Each child allocates and frees, frees
//! blocks it inherited (sampled ones among them), sets a context, interns a
//! span name, tries to start a profiler (must get an error, not hang) and
//! exits 0. A child that is not done within 10 s is killed and reported.
//! The child also asks the parent's profiler for a heap profile (it must
//! answer `ForkedChild` at once) and for its stats (at once, with heap
//! sampling off and only its own thread registered for the exact totals). Afterwards the parent's profiler must still
//! work: writes `heap.pb.gz` (with a known site live throughout) and prints
//! `children_ok=<n>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;
use lowprof::trace::{self, SpanName};

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn churn(keep: &mut Vec<Vec<u8>>, round: usize) {
    for i in 0..256 {
        keep.push(black_box(vec![round as u8; 512 + (i * 97) % 8192]));
    }
    keep.truncate(1024);
    if round % 7 == 0 {
        keep.clear();
    }
}

/// A known site, live through all the forks: `KNOWN_BLOCKS` of
/// `KNOWN_SIZE` bytes.
#[inline(never)]
fn known_site() -> Vec<Box<[u8]>> {
    (0..KNOWN_BLOCKS).map(|i| vec![i as u8; KNOWN_SIZE].into_boxed_slice()).collect()
}
const KNOWN_BLOCKS: usize = 2048;
const KNOWN_SIZE: usize = 1000;

/// What a child does; returns its exit code.
fn child_body(parent: &lowprof::Profiler, inherited: Vec<Vec<u8>>) -> i32 {
    // The parent's profiler is off here and says so, without waiting for
    // its threads (they do not exist in the child).
    match parent.heap_profile() {
        Err(lowprof::Error::ForkedChild) => {}
        other => {
            eprintln!("child: parent's heap_profile() gave {:?}", other.map(|p| p.samples.len()));
            return 5;
        }
    }
    // Counters only, and never a lock a parent thread may have held.
    let stats = parent.stats();
    if stats.heap.enabled {
        eprintln!("child: heap sampling is still on");
        return 6;
    }
    // Only this thread exists here, and only it stays registered for the
    // exact totals (the others' were retired at the fork, so a counter
    // update one of them had half done cannot hang `stats()`).
    if stats.heap.threads != 1 {
        eprintln!("child: {} threads registered, want 1", stats.heap.threads);
        return 7;
    }
    drop(inherited);
    let mut keep = Vec::new();
    for round in 0..50 {
        churn(&mut keep, round);
    }
    let name = SpanName::new("in-child");
    let _g = trace::set_context_named([3; 16], [4; 8], name);
    let s: String = (0..1000).map(|i| format!("{i},")).collect();
    black_box(s);
    match lowprof::Profiler::builder().start() {
        Err(lowprof::Error::ForkedChild) => 0,
        Err(e) => {
            eprintln!("child: unexpected error {e}");
            3
        }
        Ok(_) => {
            eprintln!("child: a profiler started in a forked child");
            4
        }
    }
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args_os().nth(1).expect("dir"));
    let forks: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let profiler = lowprof::Profiler::builder().heap_interval(4096).cpu_hz(1000).start().unwrap();
    // On the thread that started the profiler: it samples at 4 KiB at once.
    let known = known_site();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = SpanName::new(&format!("worker-{}", round % 16));
                    let _g = trace::set_context_named([w as u8 + 1; 16], [7; 8], name);
                    churn(&mut keep, round);
                    round += 1;
                }
            })
        })
        .collect();
    let mut ok = 0;
    for _ in 0..forks {
        let inherited: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
        // SAFETY: fork in a multi-threaded program; the child only runs
        // `child_body` (allocation, lowprof's fork-safe paths) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child_body(&profiler, inherited);
            // Skip the parent's atexit handlers and stdio buffers.
            // SAFETY: ends the child.
            unsafe { libc::_exit(code) };
        }
        drop(inherited);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: kills our own hung child, then reaps it.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("child {pid} hung (killed after 10 s)");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {pid} ended with status {status:#x}"
        );
        ok += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // The parent's profiler kept working through it all.
    let heap = profiler.heap_profile().unwrap();
    assert!(!heap.samples.is_empty());
    heap.write_pprof(dir.join("heap.pb.gz")).unwrap();
    drop(known);
    profiler.cpu_profile().unwrap();
    println!("children_ok={ok}");
    println!("known_blocks={KNOWN_BLOCKS}\nknown_size={KNOWN_SIZE}");
    let stats = profiler.stats();
    println!("heap_samples={} dropped={}", stats.heap.samples, stats.heap.dropped_samples);
}
