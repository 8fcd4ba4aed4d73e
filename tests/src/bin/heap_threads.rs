//! Heap accounting under concurrency and odd lifetimes. Usage: `heap_threads <dir>`.
//!
//! - blocks allocated before the profiler started are freed after it started;
//! - eight threads allocate at once (8 MiB each in 2 KiB blocks at
//!   `thread_site`) and exit while their blocks live on in `main`; the
//!   registered-thread count is printed before they start (once every
//!   other thread has registered), while all eight are alive, and after
//!   they exit;
//! - `realloc_site` grows 200 vectors by pushing, from nothing to 64 KiB, so
//!   sampled and unsampled blocks are both reallocated; contents are checked;
//! - a thread that registered before the profiler started frees blocks
//!   sampled after it started (`handoff_site`, 32 MiB in 4 KiB blocks): its
//!   free fast path must have been told where sampled blocks live, or glibc
//!   gets a pointer it never made;
//! - a thread's last pthread key destructor, which runs after lowprof's own
//!   exit hook has folded the thread's totals, frees 64 MiB and allocates
//!   and frees 16 MiB, in 512 KiB blocks: those late counts must reach the
//!   totals (`late_*` lines).
//!
//! Writes `heap.pb.gz` and prints `key=value` lines with exact totals.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

const THREADS: usize = 8;
const PER_THREAD: usize = 4096;
const BLOCK: usize = 2048;

#[inline(never)]
fn pre_start_site() -> Vec<Box<[u8]>> {
    (0..1000).map(|_| black_box(vec![7u8; 8192].into_boxed_slice())).collect()
}

#[inline(never)]
fn thread_site() -> Vec<Box<[u8]>> {
    let mut v = Vec::with_capacity(PER_THREAD);
    for _ in 0..PER_THREAD {
        v.push(black_box(vec![1u8; BLOCK].into_boxed_slice()));
    }
    v
}

#[inline(never)]
fn handoff_site() -> Vec<Box<[u8]>> {
    // A loop, not `collect()`, which LLVM can make a tail call that takes
    // this frame off the stack.
    let mut v = Vec::with_capacity(8192);
    for _ in 0..8192 {
        v.push(black_box(vec![3u8; 4096].into_boxed_slice()));
    }
    v
}

/// Blocks of 512 KiB: small enough for the free fast path (up to 1 MiB),
/// so a thread that did not route frees after its exit hook to the slow
/// path would count them where nobody reads any more.
const LATE_BLOCK: usize = 512 << 10;

/// The destructor of the key `late_frees` creates: drops the 64 MiB of
/// blocks it was given and allocates and drops 16 MiB more.
extern "C" fn drop_late(value: *mut libc::c_void) {
    // SAFETY: the value set below: a leaked `Box<Vec<Box<[u8]>>>`, set once.
    let blocks = unsafe { Box::from_raw(value.cast::<Vec<Box<[u8]>>>()) };
    drop(black_box(blocks));
    for _ in 0..32 {
        drop(black_box(vec![5u8; LATE_BLOCK]));
    }
}

/// A thread whose pthread key destructor frees `big` and allocates and
/// frees 16 MiB after lowprof's exit hook ran: lowprof's key was created at
/// the process's first allocation, this one now, and glibc runs key
/// destructors in key order. Returns the totals' change over the thread's
/// life: allocations, bytes allocated, frees, bytes freed.
fn late_frees(profiler: &lowprof::Profiler, blocks: Vec<Box<[u8]>>) -> [u64; 4] {
    let before = profiler.stats().heap.totals;
    let handle = std::thread::spawn(move || {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: a valid out-pointer and an `extern "C"` destructor.
        assert_eq!(unsafe { libc::pthread_key_create(&mut key, Some(drop_late)) }, 0);
        let value = Box::into_raw(Box::new(blocks));
        // SAFETY: `key` was just created; the value is freed by `drop_late`.
        assert_eq!(unsafe { libc::pthread_setspecific(key, value.cast()) }, 0);
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    });
    let tid = handle.join().expect("late thread");
    wait_until_gone(&[tid]);
    let after = profiler.stats().heap.totals;
    [
        after.alloc_count - before.alloc_count,
        after.alloc_bytes - before.alloc_bytes,
        after.free_count - before.free_count,
        after.free_bytes - before.free_bytes,
    ]
}

#[inline(never)]
fn realloc_site(seed: u8) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..65536usize {
        v.push(seed ^ (i as u8));
    }
    v
}

/// Threads of this process (`/proc/self/task`).
fn live_threads() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Waits until the kernel has removed the given (joined) threads from
/// `/proc/self/task`. `pthread_join` returns once the kernel clears the
/// thread's tid word, which happens before the task is reaped, so a joined
/// thread can still be listed for a moment. Panics after 10 s.
fn wait_until_gone(tids: &[libc::pid_t]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let paths: Vec<String> = tids.iter().map(|tid| format!("/proc/self/task/{tid}")).collect();
    while paths.iter().any(|path| std::path::Path::new(path).exists()) {
        assert!(Instant::now() < deadline, "joined threads still listed after 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until every thread of the process is registered for the exact
/// totals (a thread registers at its first allocation or free: lowprof's
/// drainer when it first aggregates a record, its symbolizer when it first
/// builds a profile) and returns how many are. From then on only the
/// workers below register or leave. Panics after 30 s.
fn all_threads_registered(
    profiler: &lowprof::Profiler,
) -> Result<usize, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (registered, live) = (profiler.stats().heap.threads, live_threads()?);
        if registered == live {
            return Ok(registered);
        }
        assert!(Instant::now() < deadline, "{registered} of {live} threads registered after 30 s");
        // Work for the symbolizer, then sampled records (1 MiB blocks at
        // the 512 KiB interval) for the drainer to aggregate.
        profiler.heap_profile()?;
        for _ in 0..4 {
            black_box(vec![0u8; 1 << 20]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::path::PathBuf::from(std::env::args_os().nth(1).ok_or("usage: heap_threads <dir>")?);
    // A thread that registers before the profiler starts, then frees what
    // it is sent.
    let (to_freer, blocks) = std::sync::mpsc::channel::<Vec<Box<[u8]>>>();
    let (freed, from_freer) = std::sync::mpsc::channel::<()>();
    let freer = std::thread::spawn(move || {
        black_box(vec![0u8; 64]);
        freed.send(()).unwrap();
        for batch in blocks {
            drop(batch);
            freed.send(()).unwrap();
        }
    });
    from_freer.recv()?;
    let early = pre_start_site();
    let profiler = lowprof::Profiler::builder().cpu_hz(0).start()?;
    let handed = handoff_site();
    let samples = profiler.stats().heap.samples;
    to_freer.send(handed)?;
    from_freer.recv()?;
    drop(to_freer);
    freer.join().map_err(|_| "freer panicked")?;
    println!("handoff_samples_so_far={samples}");
    let before = profiler.stats().heap.totals;
    drop(early);
    let after = profiler.stats().heap.totals;
    println!("early_frees={}", after.free_count - before.free_count);
    println!("early_free_bytes={}", after.free_bytes - before.free_bytes);

    let registered_before = all_threads_registered(&profiler)?;
    let totals_before = profiler.stats().heap.totals;
    let start = Arc::new(Barrier::new(THREADS));
    // The workers and main: all workers have allocated (and registered),
    // none has exited yet.
    let allocated = Arc::new(Barrier::new(THREADS + 1));
    let release = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (start, allocated, release) =
                (Arc::clone(&start), Arc::clone(&allocated), Arc::clone(&release));
            std::thread::spawn(move || {
                start.wait();
                let blocks = thread_site();
                allocated.wait();
                release.wait();
                // SAFETY: gettid has no preconditions.
                (unsafe { libc::gettid() }, blocks)
            })
        })
        .collect();
    allocated.wait();
    let registered_during = profiler.stats().heap.threads;
    release.wait();
    let mut from_threads = Vec::new();
    let mut tids = Vec::new();
    for h in handles {
        let (tid, blocks) = h.join().map_err(|_| "thread panicked")?;
        tids.push(tid);
        from_threads.push(blocks);
    }
    // The threads have exited: their registrations are gone and their
    // counts folded into the totals. (Read before waiting for /proc, whose
    // polling allocates.)
    let stats = profiler.stats().heap;
    wait_until_gone(&tids);
    println!("registered_before={registered_before}");
    println!("registered_during={registered_during}");
    println!("registered_after={}", stats.threads);
    println!("live_threads={}", live_threads()?);
    println!("thread_allocs={}", stats.totals.alloc_count - totals_before.alloc_count);
    println!("thread_alloc_bytes={}", stats.totals.alloc_bytes - totals_before.alloc_bytes);

    let grown: Vec<Vec<u8>> = (0..200u8).map(realloc_site).collect();
    for (seed, v) in grown.iter().enumerate() {
        assert_eq!(v.len(), 65536);
        assert!(
            v.iter().enumerate().all(|(i, &b)| b == seed as u8 ^ i as u8),
            "realloc kept the contents"
        );
    }

    let late =
        late_frees(&profiler, (0..128).map(|_| vec![9u8; LATE_BLOCK].into_boxed_slice()).collect());
    for (name, value) in
        ["late_allocs", "late_alloc_bytes", "late_frees", "late_free_bytes"].iter().zip(late)
    {
        println!("{name}={value}");
    }

    let profile = profiler.heap_profile()?;
    profile.write_pprof(dir.join("heap.pb.gz"))?;
    let stats = profiler.stats();
    println!("samples={}", stats.heap.samples);
    println!("dropped={}", stats.heap.dropped_samples);
    println!("untracked={}", stats.heap.untracked_samples);
    println!("alloc_count={}", stats.heap.totals.alloc_count);
    println!("free_count={}", stats.heap.totals.free_count);
    println!("alloc_bytes={}", stats.heap.totals.alloc_bytes);
    println!("unregistered={}", stats.heap.threads_unregistered);
    black_box((&from_threads, &grown));
    drop(from_threads);
    drop(grown);
    profiler.stop()?;
    Ok(())
}
