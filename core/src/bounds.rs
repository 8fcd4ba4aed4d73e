//! Where the stack walker may read: a published table of stack-capable
//! memory regions, looked up by stack pointer without locks.
//!
//! A thread interrupted by SIGPROF has no cheap, async-signal-safe way to
//! learn its own stack's extent. So the drainer (std side) reads
//! `/proc/self/maps` and publishes the writable anonymous regions — thread
//! stacks among them, the main stack widened down to its rlimit — into
//! [`STACK_REGIONS`]; a walker looks up the region that holds its stack
//! pointer by binary search and reads nothing outside it.
//!
//! ```text
//!  seq (even = stable, odd = being written)
//!  len
//!  lo[0] < lo[1] < … < lo[len-1]      sorted, non-overlapping
//!  hi[i] = end of region i
//! ```
//!
//! Readers use the seqlock protocol (read `seq`, read entries, `fence`,
//! re-read `seq`; retry a few times, then give up): no reader ever waits or
//! writes, so a signal handler can read the table while the drainer rewrites it.
//! A stack pointer that is in no region (a thread born after the last refresh)
//! gets the current page only, and the miss is counted so the drainer
//! refreshes the table.
//!
//! On Linux the result is also capped by the thread pointer when it lies above
//! the stack pointer: glibc and musl place a thread's control block at the top
//! of that thread's own stack mapping, so this guards against a stale region
//! that has since been unmapped and partly reused.

use crate::counters::Counter;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, atomic_array, fence};
use crate::unwind::Bounds;

/// Regions [`STACK_REGIONS`] can hold.
pub const MAX_REGIONS: usize = 4096;
const PAGE: u64 = 4096;

/// A seqlock-protected, sorted table of readable regions.
pub struct StackRegions<const N: usize> {
    seq: AtomicU64,
    writer: AtomicBool,
    len: AtomicUsize,
    lo: [AtomicU64; N],
    hi: [AtomicU64; N],
    misses: Counter,
    publishes: Counter,
}

/// Why [`StackRegions::publish`] refused a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// Another writer is publishing right now.
    Busy,
    /// The regions are not sorted, non-empty and non-overlapping.
    Unsorted,
}

/// The process-wide table used by the allocator and the CPU sampler.
#[cfg(not(loom))]
pub static STACK_REGIONS: StackRegions<MAX_REGIONS> = StackRegions::new();

impl<const N: usize> StackRegions<N> {
    /// An empty table.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            writer: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            lo: atomic_array!(AtomicU64, N),
            hi: atomic_array!(AtomicU64, N),
            misses: Counter::new(),
            publishes: Counter::new(),
        }
    }

    /// An empty table.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            writer: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            lo: atomic_array!(AtomicU64, N),
            hi: atomic_array!(AtomicU64, N),
            misses: Counter::new(),
            publishes: Counter::new(),
        }
    }

    /// Replaces the table with `regions` (`(lo, hi)` pairs sorted by `lo`,
    /// non-overlapping). Regions beyond capacity are left out.
    ///
    /// Never blocks readers. Allocation-free.
    pub fn publish(&self, regions: &[(u64, u64)]) -> Result<usize, PublishError> {
        let mut prev_hi = 0u64;
        for &(lo, hi) in regions {
            if lo >= hi || lo < prev_hi {
                return Err(PublishError::Unsorted);
            }
            prev_hi = hi;
        }
        if self.writer.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return Err(PublishError::Busy);
        }
        let n = regions.len().min(N);
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, &(lo, hi)) in regions[..n].iter().enumerate() {
            self.lo[i].store(lo, Ordering::Relaxed);
            self.hi[i].store(hi, Ordering::Relaxed);
        }
        self.len.store(n, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
        self.writer.store(false, Ordering::Release);
        self.publishes.add(1);
        Ok(n)
    }

    /// The region holding `addr`, if the table has one.
    ///
    /// Async-signal-safe, lock-free, allocation-free: a bounded binary search
    /// under the seqlock, retried at most four times.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<Bounds> {
        for _ in 0..4 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let n = self.len.load(Ordering::Relaxed).min(N);
            // Last index with lo <= addr.
            let (mut left, mut right) = (0usize, n);
            while left < right {
                let mid = left + (right - left) / 2;
                if self.lo[mid].load(Ordering::Relaxed) <= addr {
                    left = mid + 1;
                } else {
                    right = mid;
                }
            }
            let found = if left == 0 {
                None
            } else {
                let lo = self.lo[left - 1].load(Ordering::Relaxed);
                let hi = self.hi[left - 1].load(Ordering::Relaxed);
                (addr < hi).then_some(Bounds { lo, hi })
            };
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return found;
            }
        }
        None
    }

    /// Bounds for walking the *current thread's* stack from stack pointer
    /// `sp`: `[sp, top)` where `top` is the end of the published region that
    /// holds `sp`, capped by the thread pointer when that lies above `sp`.
    /// If no region holds `sp`, only `sp`'s own page (always mapped: the stack
    /// pointer is in it) and the miss is counted.
    ///
    /// Async-signal-safe, lock-free, allocation-free.
    #[inline]
    pub fn for_current_thread(&self, sp: u64) -> Bounds {
        let page_end = (sp & !(PAGE - 1)).saturating_add(PAGE);
        let hi = match self.find(sp) {
            Some(region) => region.hi,
            None => {
                self.misses.add(1);
                page_end
            }
        };
        let hi = match thread_pointer_above(sp) {
            Some(tp) => hi.min(tp),
            None => hi,
        };
        Bounds { lo: sp, hi: hi.max(sp) }
    }

    /// Walks that found their stack pointer in no region (a sign the table
    /// is stale and should be republished).
    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    /// How many tables have been published.
    pub fn publishes(&self) -> u64 {
        self.publishes.get()
    }

    /// Regions in the current table.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no table has been published (or it was empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for StackRegions<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The thread pointer if it lies above `sp` by at most 1 GiB (the layout of
/// glibc and musl threads, whose TCB sits at the top of their own stack
/// mapping); `None` for the main thread and elsewhere.
#[inline(always)]
fn thread_pointer_above(sp: u64) -> Option<u64> {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let tp = crate::unwind::thread_pointer();
        if tp > sp && tp - sp <= (1 << 30) {
            return Some(tp);
        }
    }
    let _ = sp;
    None
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn publish_and_find() {
        let t: StackRegions<8> = StackRegions::new();
        assert_eq!(t.find(100), None);
        t.publish(&[(0x1000, 0x2000), (0x3000, 0x5000), (0x9000, 0xa000)]).unwrap();
        assert_eq!(t.find(0x1000), Some(Bounds { lo: 0x1000, hi: 0x2000 }));
        assert_eq!(t.find(0x1fff), Some(Bounds { lo: 0x1000, hi: 0x2000 }));
        assert_eq!(t.find(0x2000), None);
        assert_eq!(t.find(0x4abc), Some(Bounds { lo: 0x3000, hi: 0x5000 }));
        assert_eq!(t.find(0x9fff), Some(Bounds { lo: 0x9000, hi: 0xa000 }));
        assert_eq!(t.find(0xa000), None);
        assert_eq!(t.find(0xfff), None);
        assert_eq!(t.publish(&[(5, 4)]), Err(PublishError::Unsorted));
        assert_eq!(t.publish(&[(1, 4), (3, 8)]), Err(PublishError::Unsorted));
        t.publish(&[]).unwrap();
        assert_eq!(t.find(0x1000), None);
    }

    #[test]
    fn miss_gives_the_current_page_only() {
        let t: StackRegions<8> = StackRegions::new();
        let sp = 0x7000_0123u64;
        let b = t.for_current_thread(sp);
        assert_eq!(b.lo, sp);
        assert!(b.hi <= 0x7000_1000);
        assert_eq!(t.misses(), 1);
    }

    #[test]
    fn readers_never_see_a_torn_table() {
        extern crate std;
        use std::sync::Arc;
        let t: Arc<StackRegions<64>> = Arc::new(StackRegions::new());
        let writer = {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let mut regions = [(0u64, 0u64); 64];
                for round in 1..2000u64 {
                    for (i, r) in regions.iter_mut().enumerate() {
                        let lo = (i as u64 + 1) * 0x10_0000;
                        *r = (lo, lo + round * 16);
                    }
                    t.publish(&regions).unwrap();
                }
            })
        };
        while !writer.is_finished() {
            for i in 0..64u64 {
                let lo = (i + 1) * 0x10_0000;
                if let Some(b) = t.find(lo) {
                    // Every region of one table has the same length.
                    let len = b.hi - b.lo;
                    if let Some(other) = t.find((i % 7 + 1) * 0x10_0000) {
                        let _ = other;
                    }
                    assert_eq!(b.lo, lo);
                    assert_eq!(len % 16, 0);
                }
            }
        }
        writer.join().unwrap();
    }
}
