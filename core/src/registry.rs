//! A fixed table of per-thread slots holding exact allocation totals.
//!
//! Each thread claims one slot the first time it reaches the allocator's slow
//! path and keeps a pointer to it in a `const` thread-local. From then on the
//! fast paths add to the slot's [`OwnedCounter`]s (no locked instruction), and
//! the drainer sums every slot for exact totals without any shared atomic being
//! written per allocation.
//!
//! ```text
//!  slots[0..N]   each 128-byte aligned (no false sharing)
//!  ┌───────────┬──────────────────────────────────────────────────┐
//!  │ owner     │ 0 = free, otherwise the owner's token (tid + 1)  │
//!  │ allocs    │ allocations made by the owner                    │
//!  │ alloc_b   │ bytes requested by those allocations             │
//!  │ frees     │ deallocations made by the owner                  │
//!  │ free_b    │ bytes released by those deallocations            │
//!  └───────────┴──────────────────────────────────────────────────┘
//!  retired: totals of slots whose owner has exited (folded in by the drainer)
//!  overflow: shared by threads that find the table full (counts may be lost
//!            there; `overflow_users` says how many threads used it)
//! ```
//!
//! A slot is recycled only by [`ThreadSlots::retire`], which the caller may call
//! once it knows the owner has exited (the std drainer checks
//! `/proc/self/task/<tid>`). Until then a dead thread's slot simply keeps its
//! final totals.

use crate::counters::OwnedCounter;
use crate::pad::CachePadded;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Exact totals of one thread, or of all of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Allocations.
    pub alloc_count: u64,
    /// Bytes requested by allocations.
    pub alloc_bytes: u64,
    /// Deallocations.
    pub free_count: u64,
    /// Bytes released by deallocations.
    pub free_bytes: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.alloc_count = self.alloc_count.wrapping_add(other.alloc_count);
        self.alloc_bytes = self.alloc_bytes.wrapping_add(other.alloc_bytes);
        self.free_count = self.free_count.wrapping_add(other.free_count);
        self.free_bytes = self.free_bytes.wrapping_add(other.free_bytes);
    }
}

/// One thread's counters.
#[derive(Debug)]
pub struct ThreadSlot {
    owner: AtomicU64,
    /// Allocations made by the owner.
    pub allocs: OwnedCounter,
    /// Bytes requested by the owner's allocations.
    pub alloc_bytes: OwnedCounter,
    /// Deallocations made by the owner.
    pub frees: OwnedCounter,
    /// Bytes released by the owner's deallocations.
    pub free_bytes: OwnedCounter,
}

impl ThreadSlot {
    /// A free slot.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            owner: AtomicU64::new(0),
            allocs: OwnedCounter::new(),
            alloc_bytes: OwnedCounter::new(),
            frees: OwnedCounter::new(),
            free_bytes: OwnedCounter::new(),
        }
    }

    /// The owner token, 0 if free.
    pub fn owner(&self) -> u64 {
        self.owner.load(Ordering::Acquire)
    }

    /// This slot's totals (each counter exact; the four read one after another).
    pub fn totals(&self) -> Totals {
        Totals {
            alloc_count: self.allocs.get(),
            alloc_bytes: self.alloc_bytes.get(),
            free_count: self.frees.get(),
            free_bytes: self.free_bytes.get(),
        }
    }

    fn reset(&self) {
        self.allocs.set(0);
        self.alloc_bytes.set(0);
        self.frees.set(0);
        self.free_bytes.set(0);
    }
}

#[cfg(not(loom))]
impl Default for ThreadSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// `N` claimable [`ThreadSlot`]s plus a shared overflow slot.
#[derive(Debug)]
pub struct ThreadSlots<const N: usize> {
    slots: [CachePadded<ThreadSlot>; N],
    /// One past the highest slot ever claimed: scans stop here.
    high_water: AtomicUsize,
    overflow: CachePadded<ThreadSlot>,
    overflow_users: AtomicU64,
    retired: [AtomicU64; 4],
}

#[cfg(not(loom))]
impl<const N: usize> ThreadSlots<N> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            slots: [const { CachePadded::new(ThreadSlot::new()) }; N],
            high_water: AtomicUsize::new(0),
            overflow: CachePadded::new(ThreadSlot::new()),
            overflow_users: AtomicU64::new(0),
            retired: [const { AtomicU64::new(0) }; 4],
        }
    }

    /// Claims a free slot for `owner` (non-zero), or returns the shared
    /// overflow slot when all `N` are taken.
    ///
    /// Lock-free, allocation-free, async-signal-safe: a scan with one
    /// compare-exchange per free-looking slot.
    pub fn claim(&self, owner: u64) -> &ThreadSlot {
        let owner = owner.max(1);
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.owner.load(Ordering::Relaxed) == 0
                && slot
                    .owner
                    .compare_exchange(0, owner, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                self.high_water.fetch_max(i + 1, Ordering::AcqRel);
                return slot;
            }
        }
        self.overflow_users.fetch_add(1, Ordering::Relaxed);
        &self.overflow
    }

    /// Whether `slot` is the shared overflow slot.
    pub fn is_overflow(&self, slot: &ThreadSlot) -> bool {
        core::ptr::eq(slot, &*self.overflow)
    }

    /// Calls `f(index, owner)` for every claimed slot.
    pub fn for_each_owned(&self, mut f: impl FnMut(usize, u64)) {
        let hw = self.high_water.load(Ordering::Acquire).min(N);
        for (i, slot) in self.slots[..hw].iter().enumerate() {
            let owner = slot.owner();
            if owner != 0 {
                f(i, owner);
            }
        }
    }

    /// Folds slot `index`'s totals into the retired totals and frees it, if
    /// it is still owned by `owner`.
    ///
    /// Call only when the owner thread has exited: a live owner would keep
    /// writing into a slot that another thread may then claim.
    pub fn retire(&self, index: usize, owner: u64) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        if slot.owner() != owner {
            return false;
        }
        let t = slot.totals();
        for (acc, v) in
            self.retired.iter().zip([t.alloc_count, t.alloc_bytes, t.free_count, t.free_bytes])
        {
            acc.fetch_add(v, Ordering::Relaxed);
        }
        slot.reset();
        slot.owner.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Exact totals over every slot, retired threads and the overflow slot.
    pub fn totals(&self) -> Totals {
        let mut sum = Totals {
            alloc_count: self.retired[0].load(Ordering::Relaxed),
            alloc_bytes: self.retired[1].load(Ordering::Relaxed),
            free_count: self.retired[2].load(Ordering::Relaxed),
            free_bytes: self.retired[3].load(Ordering::Relaxed),
        };
        let hw = self.high_water.load(Ordering::Acquire).min(N);
        for slot in &self.slots[..hw] {
            sum.add(&slot.totals());
        }
        sum.add(&self.overflow.totals());
        sum
    }

    /// How many threads found the table full and share the overflow slot (if
    /// non-zero, totals may undercount: those threads race on one slot).
    pub fn overflow_users(&self) -> u64 {
        self.overflow_users.load(Ordering::Relaxed)
    }

    /// Slots currently claimed.
    pub fn claimed(&self) -> usize {
        let mut n = 0;
        self.for_each_owned(|_, _| n += 1);
        n
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for ThreadSlots<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claim_count_retire_reuse() {
        let table: ThreadSlots<2> = ThreadSlots::new();
        let a = table.claim(10);
        a.allocs.add_owned(3);
        a.alloc_bytes.add_owned(300);
        let b = table.claim(11);
        b.frees.add_owned(1);
        b.free_bytes.add_owned(64);
        let c = table.claim(12);
        assert!(table.is_overflow(c));
        assert_eq!(table.overflow_users(), 1);
        c.allocs.add_owned(1);
        let before = table.totals();
        assert_eq!(
            before,
            Totals { alloc_count: 4, alloc_bytes: 300, free_count: 1, free_bytes: 64 }
        );
        assert!(!table.retire(0, 99), "wrong owner must not retire");
        assert!(table.retire(0, 10));
        assert_eq!(table.totals(), before, "retiring keeps the totals");
        let d = table.claim(13);
        assert!(core::ptr::eq(d, a), "a retired slot is reused");
        assert_eq!(d.totals(), Totals::default());
        let mut owners = [0u64; 2];
        table.for_each_owned(|i, o| owners[i] = o);
        assert_eq!(owners, [13, 11]);
    }
}
