//! Turning sampling on and off, and what the drainer reads: records, the live
//! sampled blocks, and statistics. Called by the `lowprof` exporter (or, on
//! embedded targets, by the application) — never on an allocation path.

use core::fmt;
use core::sync::atomic::Ordering;

use lowprof_core::event::{HeapAlloc, TAG_HEAP_ALLOC, TAG_HEAP_FREE};
use lowprof_core::live::SampledBlock;
use lowprof_core::poisson::{DEFAULT_MEAN_BYTES, MAX_MEAN_BYTES, MIN_MEAN_BYTES};
use lowprof_core::registry::Totals;

use crate::state::{
    COUNTS, DECLARED_MEAN, ENABLED, HUGE, INSTALLED, MEAN_OVERRIDE, REGION, RING_WORDS, RINGS,
};
use crate::thread;

/// Scratch words [`drain`] needs: the longest record payload.
pub const RECORD_WORDS: usize = RING_WORDS - 1;

/// Why sampling could not be started or reconfigured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// The mean interval is outside `MIN_MEAN_BYTES..=MAX_MEAN_BYTES`.
    InvalidInterval {
        /// What was asked for.
        bytes: u64,
    },
    /// The sampled-block region could not be reserved.
    RegionUnavailable {
        /// `errno` of the failed `mmap`.
        errno: i32,
    },
    /// No region was given (targets without std must call [`init_region`]).
    NoRegion,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::InvalidInterval { bytes } => write!(
                f,
                "heap sampling interval of {bytes} bytes is out of range: use {MIN_MEAN_BYTES}..={MAX_MEAN_BYTES} \
                 bytes (default {DEFAULT_MEAN_BYTES}, one sample per 512 KiB allocated on average)"
            ),
            ControlError::RegionUnavailable { errno } => write!(
                f,
                "could not reserve address space for sampled blocks (mmap errno {errno}); heap sampling needs \
                 up to 132 GiB of reserved, uncommitted address space (at least 384 MiB): check `ulimit -v`"
            ),
            ControlError::NoRegion => write!(
                f,
                "no memory for sampled blocks: call lowprof_alloc::init_region with a static buffer before \
                 starting heap sampling"
            ),
        }
    }
}

impl core::error::Error for ControlError {}

/// Checks a mean sampling interval.
pub fn validate_interval(bytes: u64) -> Result<u64, ControlError> {
    if (MIN_MEAN_BYTES..=MAX_MEAN_BYTES).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(ControlError::InvalidInterval { bytes })
    }
}

/// Starts sampling, at `interval` bytes if given (else the interval the
/// allocator was declared with). The calling thread samples at that
/// interval at once; other threads that already allocated switch at their
/// next sample (their current gap was drawn at the old mean). Reserves the
/// sampled-block region on first use (std). Idempotent.
pub fn start(interval: Option<u64>) -> Result<(), ControlError> {
    // `None` means the allocator's own interval, also after an earlier
    // session set another one.
    let bytes = match interval {
        Some(bytes) => validate_interval(bytes)?,
        None => 0,
    };
    MEAN_OVERRIDE.store(bytes, Ordering::Relaxed);
    ensure_region()?;
    // Every thread's free fast path must know the region before a block
    // from it can reach that thread: no block is placed there before this
    // publication is complete (`slow::place`).
    thread::publish_region();
    thread::redraw_gap(self::interval());
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Stops sampling. Blocks sampled so far stay tracked until freed.
pub fn stop() {
    ENABLED.store(false, Ordering::Release);
}

/// Makes the exact totals safe to read in the child of a `fork`: only the
/// forking thread exists there, so every other thread's registration is
/// retired, its counts read once as they were at the fork (a counter update
/// one of them had half done would otherwise make [`stats`] wait forever).
/// The child's totals then continue from the parent's at the fork.
/// Async-signal-safe. The `lowprof` crate's fork handler calls it.
///
/// # Safety
///
/// Call it only in the child of `fork()` (never after `vfork` or in any
/// process sharing memory with another), from a `pthread_atfork` child
/// handler or otherwise before the child starts any thread. Called where
/// other threads run, it would free registrations that live threads and
/// readers still use.
#[cfg(feature = "std")]
pub unsafe fn after_fork_in_child() {
    // SAFETY: the caller's contract.
    unsafe { thread::after_fork_in_child() };
}

/// Changes the mean interval at run time. The calling thread switches at
/// once, every other thread at its next sample; every sample keeps the
/// weight of the interval it was drawn at, so estimates stay unbiased
/// across the change.
pub fn set_interval(bytes: u64) -> Result<(), ControlError> {
    let bytes = validate_interval(bytes)?;
    MEAN_OVERRIDE.store(bytes, Ordering::Relaxed);
    thread::redraw_gap(bytes);
    Ok(())
}

/// The mean interval new gaps are drawn with.
pub fn interval() -> u64 {
    match MEAN_OVERRIDE.load(Ordering::Relaxed) {
        0 => match DECLARED_MEAN.load(Ordering::Relaxed) {
            0 => DEFAULT_MEAN_BYTES,
            declared => declared,
        },
        bytes => bytes,
    }
}

/// Sets a function called once by each new thread, from its first slow-path
/// visit (normally its first allocation), right after it registers: the
/// profiler uses it to wake its drainer so the thread gets its CPU timer at
/// once. The hook runs inside the allocator: it must not allocate, lock or
/// block (a futex wake is fine). `None` removes it.
pub fn set_new_thread_hook(hook: Option<fn()>) {
    crate::state::NEW_THREAD_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

/// The identifier the next sampled block will get: blocks with smaller ids
/// were sampled before this moment (a session's blocks have ids at or above
/// the value read when it started).
pub fn next_sample_id() -> u64 {
    crate::state::NEXT_SAMPLE_ID.load(Ordering::Relaxed)
}

/// Whether sampling is on.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether a `SampledAlloc` has served allocations in this process (in a
/// normal program: whether it is the `#[global_allocator]`).
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// A record drained from the heap rings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeapEvent<'a> {
    /// A sampled allocation and its stack.
    Alloc(HeapAlloc<'a>),
    /// A sampled block was freed.
    Free {
        /// Its identifier.
        sample_id: u64,
    },
}

/// Hands every queued heap record to `f`. `scratch` must hold
/// [`RECORD_WORDS`] words. `None` if another drain is running.
pub fn drain(scratch: &mut [u64], mut f: impl FnMut(HeapEvent<'_>)) -> Option<usize> {
    RINGS.drain(scratch, |record| match record.tag {
        TAG_HEAP_ALLOC => {
            if let Some(alloc) = HeapAlloc::decode(record.words) {
                f(HeapEvent::Alloc(alloc));
            }
        }
        TAG_HEAP_FREE => {
            if let Some(&sample_id) = record.words.first() {
                f(HeapEvent::Free { sample_id });
            }
        }
        _ => {}
    })
}

/// Calls `f` for every sampled block live right now (a lock-free scan of the
/// region and the huge table).
pub fn for_each_live(mut f: impl FnMut(SampledBlock)) {
    REGION.for_each_live(&mut f);
    HUGE.for_each_live(&mut f);
}

/// Gives the pages of freed large sampled blocks back to the system (std;
/// `madvise(MADV_DONTNEED)`), returning the bytes released. The drainer calls
/// it about once a second; until then such slots are reused warm.
pub fn release_freed_memory() -> u64 {
    #[cfg(feature = "std")]
    {
        let bytes = REGION.release_dirty(crate::os::release_pages);
        COUNTS.released_bytes.add(bytes);
        bytes
    }
    #[cfg(not(feature = "std"))]
    {
        0
    }
}

/// Heap sampling statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeapStats {
    /// Whether sampling is on.
    pub enabled: bool,
    /// Whether a `SampledAlloc` serves allocations.
    pub installed: bool,
    /// Mean sampling interval in bytes.
    pub interval: u64,
    /// Allocations sampled.
    pub samples: u64,
    /// Sampled allocations whose record was dropped (rings full).
    pub dropped_samples: u64,
    /// Estimated objects those dropped samples stood for.
    pub dropped_alloc_objects: f64,
    /// Estimated bytes those dropped samples stood for.
    pub dropped_alloc_bytes: u64,
    /// Sampled allocations that could not be tracked for the in-use view.
    pub untracked_samples: u64,
    /// Samples whose stack walk found no frame: the code around the
    /// allocator was built without frame pointers (`-C force-frame-pointers=yes`).
    pub samples_without_stack: u64,
    /// Sampled blocks currently live (tracked).
    pub live_samples: u64,
    /// Exact totals of all allocations and frees through the allocator.
    pub totals: Totals,
    /// Threads that found the registry full: their allocations are in
    /// `totals` only once they exit (0 unless more than 4096 threads live).
    pub threads_unregistered: u64,
    /// Threads whose totals are registered now.
    pub threads: usize,
    /// Bytes of sampled-block slots carved so far.
    pub region_carved_bytes: u64,
    /// Bytes of freed large sampled blocks returned to the kernel.
    pub released_bytes: u64,
    /// Slow-path visits (samples, thread starts, rechecks while off).
    pub slow_visits: u64,
    /// Records the consumer found malformed (a bug if non-zero).
    pub corrupt_records: u64,
}

/// Current statistics.
pub fn stats() -> HeapStats {
    let (totals, unregistered) = thread::totals();
    let published = COUNTS.published.get();
    let freed = COUNTS.freed_samples.get();
    HeapStats {
        enabled: enabled(),
        installed: is_installed(),
        interval: interval(),
        samples: COUNTS.samples.get(),
        dropped_samples: COUNTS.dropped_samples.get(),
        dropped_alloc_objects: COUNTS.dropped_objects_x1024.get() as f64 / 1024.0,
        dropped_alloc_bytes: COUNTS.dropped_bytes.get(),
        untracked_samples: COUNTS.untracked.get(),
        samples_without_stack: COUNTS.no_stack.get(),
        live_samples: published.saturating_sub(freed),
        totals,
        threads_unregistered: unregistered,
        threads: thread::threads(),
        region_carved_bytes: REGION.carved_bytes(),
        released_bytes: COUNTS.released_bytes.get(),
        slow_visits: COUNTS.slow_visits.get(),
        corrupt_records: RINGS.corrupt(),
    }
}

#[cfg(feature = "std")]
fn ensure_region() -> Result<(), ControlError> {
    if REGION.is_initialised() {
        return Ok(());
    }
    let (base, len) =
        crate::os::map_region().map_err(|errno| ControlError::RegionUnavailable { errno })?;
    // SAFETY: a fresh private mapping that nothing else knows about and that
    // is never unmapped.
    match unsafe { REGION.init(base, len) } {
        Ok(_) => {}
        // Another thread won the race; leave our mapping reserved but unused
        // (uncommitted address space, never touched).
        Err(lowprof_core::live::RegionError::AlreadyInitialised) => {}
        Err(lowprof_core::live::RegionError::TooSmall) => {
            return Err(ControlError::RegionUnavailable { errno: 0 });
        }
    }
    Ok(())
}

#[cfg(not(feature = "std"))]
fn ensure_region() -> Result<(), ControlError> {
    if REGION.is_initialised() { Ok(()) } else { Err(ControlError::NoRegion) }
}

/// Gives lowprof the memory where sampled blocks live (targets without std;
/// with std the region is reserved automatically). Blocks that do not fit a
/// slot of this region are sampled into the totals but not tracked for the
/// in-use view. A few KiB serve small sampled blocks; size it for the number
/// of sampled blocks you expect to be live at once.
pub fn init_region(memory: &'static mut [u8]) -> Result<(), ControlError> {
    memory.fill(0);
    let (base, len) = (memory.as_mut_ptr() as usize, memory.len());
    // SAFETY: the memory is 'static, exclusively ours (we hold the only
    // mutable reference and never give it back), and zero-filled.
    match unsafe { REGION.init(base, len) } {
        Ok(_) => Ok(()),
        Err(lowprof_core::live::RegionError::AlreadyInitialised) => Ok(()),
        Err(lowprof_core::live::RegionError::TooSmall) => Err(ControlError::NoRegion),
    }
}
