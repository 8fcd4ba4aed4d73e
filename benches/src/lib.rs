//! Shared pieces of lowprof's heap-sampling overhead benchmarks
//! (`benches/heap_*.rs` and the `pairs_callgrind` example): the
//! [`CountdownOnly`] cost-floor wrapper, the [`AtomicCounting`] reference
//! wrapper, the fixed mixed-size sequence, the malloc/free pair loop and the
//! two-thread [`Pool`]. The CPU-sampling benchmarks' pieces are in [`cpu`].
//!
//! Everything here is benchmark support, not product code.

pub mod cpu;
pub mod interleave;
pub mod switch;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::handle_alloc_error;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Mean sampling interval used by every benchmark: lowprof's default,
/// 512 KiB, the interval tcmalloc and Go's runtime use.
pub const INTERVAL: u64 = lowprof_core::poisson::DEFAULT_MEAN_BYTES;

/// Turns lowprof's heap sampling on process-wide at [`INTERVAL`] (reserves the
/// sampled-block region). Call once at the start of a bench binary.
pub fn start_sampling() {
    if let Err(e) = lowprof_alloc::start(Some(INTERVAL)) {
        eprintln!("lowprof_alloc::start failed: {e}");
        std::process::exit(2);
    }
    // Register lowprof's trace-context reader up front (the first
    // `set_context` would), so that every variant, with a context or
    // without, runs with the reader in place, as in a traced service.
    drop(set_bench_context());
}

/// Suffix of the benchmark ids of variants run with a trace context set on
/// every benchmarking thread (`SampledAlloc<System>+ctx`,
/// `lowprof_sample+ctx`). `report.py` relies on it.
pub const CTX_SUFFIX: &str = "+ctx";

/// The trace id the context variants run under (W3C example id).
pub const BENCH_TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
/// The span id the context variants run under.
pub const BENCH_SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

/// Sets [`BENCH_TRACE_ID`] / [`BENCH_SPAN_ID`] as the calling thread's trace
/// context (`lowprof::trace::set_context`) until the guard is dropped.
pub fn set_bench_context() -> lowprof::trace::ContextGuard {
    lowprof::trace::set_context(BENCH_TRACE_ID, BENCH_SPAN_ID)
}

/// The record words of the bench context, as samples carry them.
pub fn bench_context_words() -> lowprof_core::event::ContextWords {
    lowprof_core::context::pack(BENCH_TRACE_ID, BENCH_SPAN_ID, 0)
}

/// Heap samples drained by any [`Drainer`] so far, and how many of them
/// carried the bench context: checks that the `+ctx` variants really sample
/// with a context.
static DRAINED_SAMPLES: AtomicU64 = AtomicU64::new(0);
static LINKED_SAMPLES: AtomicU64 = AtomicU64::new(0);

/// `(heap samples drained, of which carrying the bench context)`.
pub fn drained_samples() -> (u64, u64) {
    (DRAINED_SAMPLES.load(Ordering::Relaxed), LINKED_SAMPLES.load(Ordering::Relaxed))
}

/// Prints how many drained heap samples carried the bench context and, if
/// `check` (a full run, where the `+ctx` variants take many samples), stops
/// the bench when none did: the context variants would have measured
/// nothing new.
pub fn check_context_samples(check: bool) {
    let (samples, linked) = drained_samples();
    eprintln!("heap samples drained: {samples}, with the bench trace context: {linked}");
    if check && linked == 0 {
        eprintln!("no heap sample carried the bench trace context");
        std::process::exit(3);
    }
}

/// Hands every queued heap record to nobody, as the exporter's drainer
/// would every 20 ms. Without it the rings fill after ~2000 records and
/// every later push tries all eight rings before dropping the record, which
/// would make samples cost more than they do in production.
pub struct Drainer {
    scratch: Vec<u64>,
}

impl Drainer {
    /// Allocates the scratch buffer once (through the global allocator).
    pub fn new() -> Self {
        Self { scratch: vec![0; lowprof_alloc::RECORD_WORDS] }
    }

    /// Drains every ring; returns the number of records dropped on the floor.
    pub fn drain(&mut self) -> usize {
        let (mut n, mut samples, mut linked) = (0, 0, 0);
        let ctx = bench_context_words();
        let _ = lowprof_alloc::drain(&mut self.scratch, |ev| {
            n += 1;
            if let lowprof_alloc::HeapEvent::Alloc(a) = ev {
                samples += 1;
                linked += u64::from(a.context == ctx);
            }
        });
        DRAINED_SAMPLES.fetch_add(samples, Ordering::Relaxed);
        LINKED_SAMPLES.fetch_add(linked, Ordering::Relaxed);
        n
    }
}

impl Default for Drainer {
    fn default() -> Self {
        Self::new()
    }
}

std::thread_local! {
    /// The floor's countdown: `const`-initialised and `Drop`-free, like
    /// lowprof's, so access is one `fs:`-relative operand.
    static FLOOR_COUNTDOWN: Cell<isize> = const { Cell::new(INTERVAL as isize) };
}

/// The cost floor of any byte-countdown sampler, the floor lowprof's wrapper
/// is compared against: a `const` thread-local `Cell<isize>`
/// countdown, subtract the size, branch on the sign, re-arm at [`INTERVAL`]
/// without sampling. Nothing else: no counting, no region check on free.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountdownOnly<A> {
    inner: A,
}

impl<A> CountdownOnly<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

#[inline(always)]
fn countdown(size: usize) {
    let _ = FLOOR_COUNTDOWN.try_with(|c| {
        let left = c.get().wrapping_sub(size as isize);
        c.set(left);
        if left < 0 {
            rearm(c);
        }
    });
}

#[cold]
#[inline(never)]
fn rearm(c: &Cell<isize>) {
    c.set(INTERVAL as isize);
}

// SAFETY: every method forwards to the inner allocator with the caller's
// arguments; the countdown neither allocates nor unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountdownOnly<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        countdown(layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        countdown(layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract; the inner allocator made every block.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        countdown(new_size);
        // SAFETY: forwarded contract.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

std::thread_local! {
    /// [`CountdownFreeTest`]'s copy of a window top, as lowprof keeps its
    /// region's: [`FILTER_NONE`](lowprof_core::live::FILTER_NONE), which no
    /// user pointer matches.
    static FLOOR_WINDOW_TOP: Cell<usize> = const { Cell::new(lowprof_core::live::FILTER_NONE) };
}

/// The cost floor of a byte-countdown sampler that must also recognise its
/// own sampled blocks when they are freed, without the inner allocator's
/// help, and does so with lowprof's test: [`CountdownOnly`], plus on every free lowprof's test
/// (`(top - ptr) >> 37 == 0` against a thread-local `top`,
/// [`lowprof_core::live::in_filter_window`]) and a branch to a cold path
/// that is never taken (also on realloc, as lowprof's). No counting, no
/// registration, no size limit: what lowprof adds beyond this is its exact
/// totals and its thread bookkeeping. A 64-bit floor: on 32-bit targets the
/// window is half of memory and lowprof uses an exact range test instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountdownFreeTest<A> {
    inner: A,
}

impl<A> CountdownFreeTest<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

#[inline(always)]
fn countdown_and_window(size: usize) {
    let _ = FLOOR_COUNTDOWN.try_with(|c| {
        let left = c.get().wrapping_sub(size as isize);
        c.set(left);
        if left < 0 {
            rearm_and_reread_window(c);
        }
    });
}

/// The floor's slow path: re-arms the countdown and re-reads the window, as
/// a sampler's slow path would (and so the window is a value LLVM cannot
/// fold into a constant).
#[cold]
#[inline(never)]
fn rearm_and_reread_window(c: &Cell<isize>) {
    c.set(INTERVAL as isize);
    let _ = FLOOR_WINDOW_TOP.try_with(|t| t.set(black_box(lowprof_core::live::FILTER_NONE)));
}

/// The never-taken branch of [`CountdownFreeTest`]'s free: a sampled block
/// would be handled here.
#[cold]
#[inline(never)]
unsafe fn floor_free_in_window<A: GlobalAlloc>(inner: &A, ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded contract; the inner allocator made every block.
    unsafe { inner.dealloc(ptr, layout) }
}

/// The never-taken branch of [`CountdownFreeTest`]'s realloc: a sampled
/// block would move here.
#[cold]
#[inline(never)]
unsafe fn floor_realloc_in_window<A: GlobalAlloc>(
    inner: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: forwarded contract; the inner allocator made every block.
    unsafe { inner.realloc(ptr, layout, new_size) }
}

// SAFETY: every method forwards to the inner allocator with the caller's
// arguments; the countdown and the window test neither allocate nor unwind.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountdownFreeTest<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        countdown_and_window(layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        countdown_and_window(layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let top = FLOOR_WINDOW_TOP.try_with(Cell::get).unwrap_or(lowprof_core::live::FILTER_NONE);
        if lowprof_core::live::in_filter_window(top, ptr as usize) {
            // SAFETY: forwarded contract.
            return unsafe { floor_free_in_window(&self.inner, ptr, layout) };
        }
        // SAFETY: forwarded contract; the inner allocator made every block.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let top = FLOOR_WINDOW_TOP.try_with(Cell::get).unwrap_or(lowprof_core::live::FILTER_NONE);
        if lowprof_core::live::in_filter_window(top, ptr as usize) {
            // SAFETY: forwarded contract.
            return unsafe { floor_realloc_in_window(&self.inner, ptr, layout, new_size) };
        }
        countdown_and_window(new_size);
        // SAFETY: forwarded contract.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

/// A shared counter on its own cache line, so that the only sharing
/// [`AtomicCounting`] measures is between the threads that allocate, not
/// with whatever static the linker put next to it.
#[repr(align(128))]
#[derive(Debug, Default)]
struct PaddedCounter(AtomicU64);

/// The reference for "one shared atomic per allocation": live bytes kept in
/// one `AtomicU64` shared by every thread, `fetch_add(size)` on every
/// allocation and `fetch_sub(size)` on every free (`Relaxed`; each is one
/// `lock xadd` on x86-64), then the inner allocator. What a naive global
/// counting wrapper costs, next to lowprof's thread-local countdown.
#[derive(Debug, Default)]
pub struct AtomicCounting<A> {
    inner: A,
    live: PaddedCounter,
}

impl<A> AtomicCounting<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner, live: PaddedCounter(AtomicU64::new(0)) }
    }

    /// Bytes allocated and not yet freed through this wrapper.
    pub fn live_bytes(&self) -> u64 {
        self.live.0.load(Ordering::Relaxed)
    }
}

// SAFETY: every method forwards to the inner allocator with the caller's
// arguments; the counter neither allocates nor unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for AtomicCounting<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.live.0.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.live.0.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live.0.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded contract; the inner allocator made every block.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // One atomic per op here too: the signed difference.
        let delta = (new_size as u64).wrapping_sub(layout.size() as u64);
        self.live.0.fetch_add(delta, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

/// Length of the precomputed size sequence (a power of two).
pub const SIZES_LEN: usize = 4096;
/// Live blocks kept by the pair loop: each step frees the block allocated
/// `RING` steps earlier.
pub const RING: usize = 64;

/// xorshift64*: a fixed, seedable sequence (not for anything but sizes).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    /// Log-uniform in `lo..hi` (as many 4–8 KiB blocks as 32–64 KiB ones).
    fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let (llo, lhi) = ((lo as f64).ln(), (hi as f64).ln());
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((llo + u * (lhi - llo)).exp() as u64).clamp(lo, hi - 1)
    }
}

/// The fixed pseudo-random size sequence: mostly small, a long tail.
///
/// | share | sizes (bytes)           |
/// |-------|-------------------------|
/// | 60 %  | 16–127, uniform         |
/// | 25 %  | 128–1023, uniform       |
/// | 12 %  | 1024–4095, uniform      |
/// |  3 %  | 4096–65535, log-uniform |
///
/// Mean ≈ 1.1–1.2 KiB (see [`mean_size`]); the same every run.
pub fn mixed_sizes() -> Vec<usize> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    (0..SIZES_LEN)
        .map(|_| {
            let bucket = rng.range(0, 100);
            let size = if bucket < 60 {
                rng.range(16, 128)
            } else if bucket < 85 {
                rng.range(128, 1024)
            } else if bucket < 97 {
                rng.range(1024, 4096)
            } else {
                rng.log_range(4096, 65536)
            };
            size as usize
        })
        .collect()
}

/// Mean of [`mixed_sizes`] in bytes.
pub fn mean_size() -> f64 {
    let sizes = mixed_sizes();
    sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
}

/// Pairs between two drains (and timer reads) in [`PairLoop::run_timed`]:
/// ~70 samples at a ~1.15 KiB mean, well inside the rings' ~2000 records.
pub const CHUNK: u64 = 32 * 1024;

/// A malloc/free pair loop over one allocator: a ring of [`RING`] live
/// blocks; step `i` frees the block in slot `i % RING` and allocates
/// `sizes[i % SIZES_LEN]` bytes into it. The position persists across calls,
/// so successive batches continue the same sequence on a warm ring.
pub struct PairLoop<A: 'static> {
    alloc: &'static A,
    layouts: Box<[Layout]>,
    slots: Box<[(*mut u8, Layout)]>,
    next: usize,
    drainer: Drainer,
}

impl<A: GlobalAlloc + 'static> PairLoop<A> {
    /// A loop over `alloc` with an empty ring, over [`mixed_sizes`].
    pub fn new(alloc: &'static A) -> Self {
        Self::with_sizes(alloc, &mixed_sizes())
    }

    /// A loop over `alloc` with an empty ring, over `sizes` (repeated or
    /// cut to [`SIZES_LEN`]; zero sizes become 8 bytes).
    pub fn with_sizes(alloc: &'static A, sizes: &[usize]) -> Self {
        let layouts = (0..SIZES_LEN)
            .map(|i| sizes.get(i % sizes.len().max(1)).copied().unwrap_or(8).max(1))
            .map(|s| Layout::from_size_align(s, 8).unwrap_or(Layout::new::<u64>()))
            .collect();
        Self {
            alloc,
            layouts,
            slots: vec![(core::ptr::null_mut(), Layout::new::<u8>()); RING].into_boxed_slice(),
            next: 0,
            drainer: Drainer::new(),
        }
    }

    /// Runs `n` malloc/free pairs. Only allocates and frees: sizes and
    /// layouts are precomputed.
    #[inline(never)]
    pub fn run(&mut self, n: u64) {
        let alloc = self.alloc;
        for _ in 0..n {
            let i = self.next;
            self.next = i.wrapping_add(1);
            let layout = self.layouts[i & (SIZES_LEN - 1)];
            let slot = &mut self.slots[i & (RING - 1)];
            if !slot.0.is_null() {
                // SAFETY: the block was allocated by `alloc` with `slot.1`
                // and is freed exactly once (the slot is overwritten below).
                unsafe { alloc.dealloc(slot.0, slot.1) };
            }
            // SAFETY: every layout has a non-zero size.
            let p = unsafe { alloc.alloc(layout) };
            if p.is_null() {
                handle_alloc_error(layout);
            }
            *slot = (black_box(p), layout);
        }
    }

    /// Runs `n` pairs in chunks of [`CHUNK`], draining lowprof's rings
    /// between chunks with the clock stopped; returns the time spent in the
    /// pairs alone.
    pub fn run_timed(&mut self, n: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK);
            let t = Instant::now();
            self.run(k);
            spent += t.elapsed();
            left -= k;
            self.drainer.drain();
        }
        spent
    }

    /// Like [`PairLoop::run_timed`], but also measures the calling thread's
    /// CPU time (for the interleaved cross-check).
    pub fn run_batch(&mut self, n: u64) -> interleave::Batch {
        let mut batch = interleave::Batch::default();
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK);
            batch.add(interleave::Batch::time(1, || self.run(k)));
            batch.ops += k - 1;
            left -= k;
            self.drainer.drain();
        }
        batch
    }

    /// Frees every live block.
    pub fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            if !slot.0.is_null() {
                // SAFETY: allocated by `alloc` with `slot.1`, freed once.
                unsafe { self.alloc.dealloc(slot.0, slot.1) };
                slot.0 = core::ptr::null_mut();
            }
        }
    }
}

/// A pair loop whose allocator type is erased, so one thread can hold the
/// loops of several variants.
pub trait TimedPairs {
    /// See [`PairLoop::run_timed`].
    fn run_timed(&mut self, n: u64) -> Duration;
    /// See [`PairLoop::run_batch`].
    fn run_batch(&mut self, n: u64) -> interleave::Batch;
}

impl<A: GlobalAlloc + 'static> TimedPairs for PairLoop<A> {
    fn run_timed(&mut self, n: u64) -> Duration {
        PairLoop::run_timed(self, n)
    }

    fn run_batch(&mut self, n: u64) -> interleave::Batch {
        PairLoop::run_batch(self, n)
    }
}

/// A pair loop run with the bench trace context set on the thread that runs
/// it ([`set_bench_context`]): the guard is taken before the clock starts and
/// lives for the whole batch, so every allocation and every sample of the
/// batch happens under the context.
pub struct WithContext<T>(pub T);

impl<T: TimedPairs> TimedPairs for WithContext<T> {
    fn run_timed(&mut self, n: u64) -> Duration {
        let _ctx = set_bench_context();
        self.0.run_timed(n)
    }

    fn run_batch(&mut self, n: u64) -> interleave::Batch {
        let _ctx = set_bench_context();
        self.0.run_batch(n)
    }
}

/// Builds one thread's pair loops (one per variant of a bench), on the
/// thread that will run them.
pub type LoopsFn = fn() -> Vec<Box<dyn TimedPairs>>;

#[derive(Clone, Copy)]
enum Job {
    Run { variant: usize, iters: u64 },
    Exit,
}

struct Shared {
    start: Barrier,
    done: Barrier,
    job: Mutex<Job>,
    times: Mutex<Vec<Duration>>,
}

/// Persistent worker threads for the 2-thread pair benches: each builds its
/// own loops (its thread-locals and rings stay warm across batches), and
/// all are released together by a barrier for each batch.
pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Spawns `threads` workers, each with the loops `loops` builds.
    // Bench support: a worker that cannot be spawned should stop the bench.
    #[allow(clippy::expect_used)]
    pub fn new(threads: usize, loops: LoopsFn) -> Self {
        let shared = Arc::new(Shared {
            start: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            job: Mutex::new(Job::Exit),
            times: Mutex::new(Vec::with_capacity(threads)),
        });
        let handles = (0..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("pairs-{i}"))
                    .spawn(move || {
                        let mut loops = loops();
                        loop {
                            shared.start.wait();
                            let job = *lock(&shared.job);
                            let Job::Run { variant, iters } = job else {
                                break;
                            };
                            let spent = loops[variant].run_timed(iters);
                            lock(&shared.times).push(spent);
                            shared.done.wait();
                        }
                    })
                    .expect("spawn bench worker")
            })
            .collect();
        Self { shared, handles }
    }

    /// Every worker runs `iters` pairs of loop `variant`, all released at
    /// once; returns the slowest worker's time (the batch's wall time, less
    /// the drains between chunks).
    pub fn run(&self, variant: usize, iters: u64) -> Duration {
        *lock(&self.shared.job) = Job::Run { variant, iters };
        lock(&self.shared.times).clear();
        self.shared.start.wait();
        self.shared.done.wait();
        let times = lock(&self.shared.times);
        times.iter().copied().max().unwrap_or_default()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        *lock(&self.shared.job) = Job::Exit;
        self.shared.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Locks `m`, ignoring poisoning (a panicking worker aborts the bench anyway).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A one-line summary of lowprof's counters, printed at the end of a bench
/// binary to show that sampling really was on.
pub fn stats_line() -> String {
    let s = lowprof_alloc::stats();
    format!(
        "lowprof: enabled={} interval={} samples={} dropped={} untracked={} live={} slow_visits={}",
        s.enabled,
        s.interval,
        s.samples,
        s.dropped_samples,
        s.untracked_samples,
        s.live_samples,
        s.slow_visits
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_fixed_and_realistic() {
        let a = mixed_sizes();
        assert_eq!(a, mixed_sizes());
        assert!(a.iter().all(|&s| (16..65536).contains(&s)));
        let mean = mean_size();
        assert!((1000.0..1600.0).contains(&mean), "mean {mean}");
        let small = a.iter().filter(|&&s| s <= 4096).count();
        assert!(small * 100 / a.len() >= 95);
    }

    #[test]
    fn atomic_counting_balances() {
        static A: AtomicCounting<std::alloc::System> = AtomicCounting::new(std::alloc::System);
        let mut l = PairLoop::new(&A);
        l.run(10_000);
        assert!(A.live_bytes() > 0);
        l.clear();
        assert_eq!(A.live_bytes(), 0);
    }

    #[test]
    fn pool_runs_every_worker() {
        static A: AtomicCounting<std::alloc::System> = AtomicCounting::new(std::alloc::System);
        fn loops() -> Vec<Box<dyn TimedPairs>> {
            vec![Box::new(PairLoop::new(&A))]
        }
        let pool = Pool::new(2, loops);
        assert!(pool.run(0, 1000) > Duration::ZERO);
        // Each worker keeps its ring of live blocks.
        assert!(A.live_bytes() > 0);
    }

    #[test]
    fn floor_counts_down_and_rearms() {
        static F: CountdownOnly<std::alloc::System> = CountdownOnly::new(std::alloc::System);
        let mut l = PairLoop::new(&F);
        l.run(100_000);
        l.clear();
        let left = FLOOR_COUNTDOWN.with(Cell::get);
        assert!((0..=INTERVAL as isize).contains(&left));
    }
}
