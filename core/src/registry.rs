//! Exact allocation totals without a shared write per allocation: each
//! thread counts into [`ThreadCounters`] in its own thread-local storage, and
//! registers their address here so totals can be read at any moment.
//!
//! ```text
//!  thread-local ThreadCounters (owner writes, relaxed load + store, no lock prefix)
//!    countdown  bytes to the next sample point (the allocator's fast path)
//!    gap_sum    Σ of every countdown set by the slow path, minus the value it replaced
//!    allocs, frees, free_bytes
//!    seq        odd while the slow path rewrites countdown and gap_sum together
//!    bytes allocated = gap_sum − countdown   (no counter of its own on the fast path)
//!
//!    filter_top   the top of the sampled-block region's window, for the
//!                 free fast path (`live::in_filter_window`): FILTER_NONE
//!                 until published
//!
//!  ThreadRegistry (static)
//!    slots[i] = { state, counters: *const ThreadCounters, owner }
//!        FREE ─claim─► LIVE ◄─► READING (a reader copies the counters)
//!                       └─exit─► EXITING ─fold into `retired`─► FREE
//!    retired   totals of threads that have exited
//!    exits_begun / exits_ended   bracket each exit, from the moment its slot
//!              stops being readable until its totals are in `retired`;
//!              a reader retries if an exit was in progress or began meanwhile
//! ```
//!
//! A reader never touches a thread's counters unless it holds the slot in
//! READING, and an exiting thread waits (spins, briefly: a reader copies six
//! words) until no reader holds it before its thread-local storage can go.
//!
//! [`ThreadRegistry::publish_filter_top`] hands that value, once, to every
//! registered thread the same way (holding each slot in READING), and keeps
//! it for threads that register later. A thread registering while it is
//! published is covered by a store-buffering pair of `SeqCst` fences: the
//! publisher stores the value, fences, then scans the slots; the
//! registering thread marks its slot live, fences, then reads the value. At
//! least one of them sees the other, and both only ever write that one value
//! (model-checked with loom: `loom_publication_reaches_a_registering_thread`).

use crate::counters::OwnedCounter;
use crate::live::FILTER_NONE;
use crate::sync::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};

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

/// One thread's counters and sampling countdown. Lives in that thread's
/// thread-local storage; only the owner writes, any thread may read through
/// the registry.
#[derive(Debug)]
#[repr(C)]
pub struct ThreadCounters {
    /// Bytes to the next sample point; the fast path subtracts sizes.
    pub countdown: OwnedCounter,
    /// Σ(new countdown − replaced countdown) over every slow-path reset, so
    /// that bytes allocated = `gap_sum − countdown`.
    gap_sum: OwnedCounter,
    /// Allocations.
    pub allocs: OwnedCounter,
    /// Deallocations.
    pub frees: OwnedCounter,
    /// Bytes released by deallocations.
    pub free_bytes: OwnedCounter,
    seq: AtomicU64,
    /// The top of the sampled-block region's window as this thread's free
    /// fast path reads it ([`crate::live::in_filter_window`]): [`FILTER_NONE`] until
    /// [`ThreadRegistry::publish_filter_top`] or the thread's own
    /// registration stores the one published value. Never changes after.
    pub filter_top: AtomicUsize,
}

/// The fresh [`ThreadCounters`], written once for the `const` constructor
/// and loom's (whose atomics are not `const`).
macro_rules! fresh_thread_counters {
    () => {
        ThreadCounters {
            countdown: OwnedCounter::new(),
            gap_sum: OwnedCounter::new(),
            allocs: OwnedCounter::new(),
            frees: OwnedCounter::new(),
            free_bytes: OwnedCounter::new(),
            seq: AtomicU64::new(0),
            filter_top: AtomicUsize::new(FILTER_NONE),
        }
    };
}

impl ThreadCounters {
    /// Zeroed counters, countdown 0.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        fresh_thread_counters!()
    }

    /// Zeroed counters, countdown 0.
    #[cfg(loom)]
    pub fn new() -> Self {
        fresh_thread_counters!()
    }

    /// Subtracts `size` from the countdown and returns the new value (signed).
    /// Owner only; allocation-free, async-signal-safe.
    ///
    /// Written as an update followed by a second load: LLVM folds the
    /// owner-only relaxed load, subtract and store into one `sub` to memory
    /// when nothing else uses the result, and the sign test then reads it
    /// back; keeping the result in a register instead costs a separate
    /// load, subtract and store (one instruction more, measured).
    #[inline(always)]
    pub fn take(&self, size: usize) -> i64 {
        self.countdown.add_owned((size as u64).wrapping_neg());
        self.countdown.get() as i64
    }

    /// Replaces the countdown (slow path), keeping `bytes allocated` exact.
    /// Owner only.
    pub fn reset_countdown(&self, new: i64) {
        let old = self.countdown.get() as i64;
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.gap_sum.set(self.gap_sum.get().wrapping_add(new.wrapping_sub(old) as u64));
        self.countdown.set(new as u64);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The current countdown (signed).
    #[inline(always)]
    pub fn countdown(&self) -> i64 {
        self.countdown.get() as i64
    }

    /// The totals read once, without waiting for a writer: for counters
    /// whose owner will never run again (see
    /// [`ThreadRegistry::retain_only_after_fork`]). If the owner stopped
    /// mid-update, bytes allocated may be off by one sampling gap.
    fn totals_as_they_are(&self) -> Totals {
        Totals {
            alloc_count: self.allocs.get(),
            alloc_bytes: self.gap_sum.get().wrapping_sub(self.countdown.get()),
            free_count: self.frees.get(),
            free_bytes: self.free_bytes.get(),
        }
    }

    /// A consistent copy of the totals. Safe from any thread (the registry
    /// makes sure the counters still exist).
    pub fn totals(&self) -> Totals {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let gap_sum = self.gap_sum.get();
            let countdown = self.countdown.get();
            let t = Totals {
                alloc_count: self.allocs.get(),
                alloc_bytes: gap_sum.wrapping_sub(countdown),
                free_count: self.frees.get(),
                free_bytes: self.free_bytes.get(),
            };
            fence(Ordering::Acquire);
            if s1 & 1 == 0 && self.seq.load(Ordering::Relaxed) == s1 {
                return t;
            }
            core::hint::spin_loop();
        }
    }
}

#[cfg(not(loom))]
impl Default for ThreadCounters {
    fn default() -> Self {
        Self::new()
    }
}

const FREE: u8 = 0;
const CLAIMING: u8 = 1;
const LIVE: u8 = 2;
const READING: u8 = 3;
const EXITING: u8 = 4;

struct Slot {
    state: AtomicU8,
    counters: AtomicPtr<ThreadCounters>,
    owner: AtomicU64,
}

/// `N` registration slots plus the totals of exited threads.
pub struct ThreadRegistry<const N: usize> {
    slots: [Slot; N],
    /// One past the highest slot ever claimed: scans stop here.
    high_water: AtomicUsize,
    retired: [AtomicU64; 4],
    exits_begun: AtomicU64,
    exits_ended: AtomicU64,
    unregistered: AtomicU64,
    /// The published window top ([`Self::publish_filter_top`]).
    filter_top: AtomicUsize,
    /// The same, stored (Release) once every registered thread has it.
    published: AtomicUsize,
}

/// Where a thread's counters are registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration(usize);

impl<const N: usize> ThreadRegistry<N> {
    /// An empty registry.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            slots: [const {
                Slot {
                    state: AtomicU8::new(FREE),
                    counters: AtomicPtr::new(core::ptr::null_mut()),
                    owner: AtomicU64::new(0),
                }
            }; N],
            high_water: AtomicUsize::new(0),
            retired: [const { AtomicU64::new(0) }; 4],
            exits_begun: AtomicU64::new(0),
            exits_ended: AtomicU64::new(0),
            unregistered: AtomicU64::new(0),
            filter_top: AtomicUsize::new(FILTER_NONE),
            published: AtomicUsize::new(FILTER_NONE),
        }
    }

    /// An empty registry.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| Slot {
                state: AtomicU8::new(FREE),
                counters: AtomicPtr::new(core::ptr::null_mut()),
                owner: AtomicU64::new(0),
            }),
            high_water: AtomicUsize::new(0),
            retired: core::array::from_fn(|_| AtomicU64::new(0)),
            exits_begun: AtomicU64::new(0),
            exits_ended: AtomicU64::new(0),
            unregistered: AtomicU64::new(0),
            filter_top: AtomicUsize::new(FILTER_NONE),
            published: AtomicUsize::new(FILTER_NONE),
        }
    }

    /// Registers `counters` for thread `owner`. `None` when every slot is
    /// taken: the thread's totals then become visible only when it exits
    /// (see [`Self::fold_unregistered`]); [`Self::unregistered`] counts such
    /// threads.
    ///
    /// A registered thread's `filter_top` holds the published value from
    /// when this returns, or from the moment it is published; a thread
    /// without a slot gets no publication (read [`Self::filter_top`]).
    ///
    /// Lock-free, allocation-free, async-signal-safe.
    ///
    /// # Safety
    ///
    /// `counters` must stay valid and in place until this registration is
    /// passed to [`Self::unregister`].
    pub unsafe fn register(
        &self,
        owner: u64,
        counters: *const ThreadCounters,
    ) -> Option<Registration> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.state.load(Ordering::Relaxed) == FREE
                && slot
                    .state
                    .compare_exchange(FREE, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                slot.counters.store(counters.cast_mut(), Ordering::Relaxed);
                slot.owner.store(owner, Ordering::Relaxed);
                slot.state.store(LIVE, Ordering::Release);
                self.high_water.fetch_max(i + 1, Ordering::AcqRel);
                // Pairs with the fence in `publish_filter_top` (module docs).
                fence(Ordering::SeqCst);
                let top = self.filter_top.load(Ordering::Relaxed);
                if top != FILTER_NONE {
                    // SAFETY: the caller's contract: `counters` is valid.
                    unsafe { &*counters }.filter_top.store(top, Ordering::Relaxed);
                }
                return Some(Registration(i));
            }
        }
        self.unregistered.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Ends a registration at thread exit: waits until no reader holds the
    /// slot, folds the thread's final totals into the retired totals, and
    /// frees the slot. After it returns the counters may go away.
    pub fn unregister(&self, registration: Registration, counters: &ThreadCounters) {
        let Some(slot) = self.slots.get(registration.0) else { return };
        // From here until the fold is done the thread's totals are in neither
        // the slot nor `retired`: readers must see the exit in progress.
        self.exits_begun.fetch_add(1, Ordering::SeqCst);
        loop {
            match slot.state.compare_exchange(LIVE, EXITING, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(READING) => crate::sync::spin(),
                // Not ours any more (cannot happen with a valid registration).
                Err(_) => {
                    self.exits_ended.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
        self.add_retired(&counters.totals());
        slot.counters.store(core::ptr::null_mut(), Ordering::Relaxed);
        slot.state.store(FREE, Ordering::Release);
        self.exits_ended.fetch_add(1, Ordering::SeqCst);
    }

    /// Adds the final totals of a thread that never got a slot.
    pub fn fold_unregistered(&self, counters: &ThreadCounters) {
        self.fold(&counters.totals());
    }

    /// Adds `totals` to the retired totals, so that a reader sees all of them
    /// or none: for counts made after a thread's counters were folded (a
    /// free in a later thread-exit destructor). Shared atomic writes: slow
    /// paths only.
    pub fn fold(&self, totals: &Totals) {
        self.exits_begun.fetch_add(1, Ordering::SeqCst);
        self.add_retired(totals);
        self.exits_ended.fetch_add(1, Ordering::SeqCst);
    }

    fn add_retired(&self, t: &Totals) {
        for (acc, v) in
            self.retired.iter().zip([t.alloc_count, t.alloc_bytes, t.free_count, t.free_bytes])
        {
            acc.fetch_add(v, Ordering::Relaxed);
        }
    }

    /// Exact totals over every registered thread and every thread that has
    /// exited. Never blocks writers; spins while a thread is exiting (see
    /// [`Self::totals_with`]).
    pub fn totals(&self) -> Totals {
        self.totals_with(core::hint::spin_loop)
    }

    /// [`Self::totals`], calling `wait` between attempts while some thread
    /// is moving its totals into the retired ones (std callers pass
    /// `std::thread::yield_now`, so a preempted exiting thread can finish).
    /// After 1000 attempts it returns the last sum, which may then miss the
    /// exiting thread's counts; it never returns an invented zero.
    pub fn totals_with(&self, mut wait: impl FnMut()) -> Totals {
        let mut last = Totals::default();
        for _ in 0..1000 {
            let ended = self.exits_ended.load(Ordering::SeqCst);
            let begun = self.exits_begun.load(Ordering::SeqCst);
            let mut sum = Totals::default();
            self.for_each_live(|_, t| sum.add(&t));
            sum.add(&Totals {
                alloc_count: self.retired[0].load(Ordering::Relaxed),
                alloc_bytes: self.retired[1].load(Ordering::Relaxed),
                free_count: self.retired[2].load(Ordering::Relaxed),
                free_bytes: self.retired[3].load(Ordering::Relaxed),
            });
            // No exit in flight when we started, and none began meanwhile:
            // every thread's counts were in exactly one place.
            if begun == ended && self.exits_begun.load(Ordering::SeqCst) == begun {
                return sum;
            }
            last = sum;
            wait();
        }
        last
    }

    /// Stores `top`, the end of the sampled-block region's filter window
    /// (`live::Region::filter_top`), in every registered thread's
    /// [`ThreadCounters::filter_top`], and for threads that register later.
    /// Call it with the one value, before any block of the region can
    /// reach another thread (lowprof-alloc: before sampling is switched on).
    /// Waits (spins) only while a reader holds a slot. Allocation-free.
    pub fn publish_filter_top(&self, top: usize) {
        self.filter_top.store(top, Ordering::Relaxed);
        // Pairs with the fence in `register` (module docs).
        fence(Ordering::SeqCst);
        let hw = self.high_water.load(Ordering::Acquire).min(N);
        for slot in &self.slots[..hw] {
            loop {
                match slot.state.compare_exchange(
                    LIVE,
                    READING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let counters = slot.counters.load(Ordering::Relaxed);
                        // SAFETY: held in READING, as in `for_each_live`.
                        if let Some(c) = unsafe { counters.as_ref() } {
                            c.filter_top.store(top, Ordering::Relaxed);
                        }
                        slot.state.store(LIVE, Ordering::Release);
                        break;
                    }
                    // Another reader holds it for a few loads.
                    Err(READING) => crate::sync::spin(),
                    // FREE or EXITING: no thread to tell. CLAIMING: its
                    // thread reads the value after marking the slot live.
                    Err(_) => break,
                }
            }
        }
        self.published.store(top, Ordering::Release);
    }

    /// The window top being published, or [`FILTER_NONE`]: what a thread
    /// that registers now gets, and what a thread without a slot may copy.
    pub fn filter_top(&self) -> usize {
        self.filter_top.load(Ordering::Acquire)
    }

    /// The window top once [`Self::publish_filter_top`] has reached every
    /// registered thread, else [`FILTER_NONE`]. Acquire: whoever sees it
    /// set happens after every copy was written, so a block handed out of
    /// the region from then on meets a thread that knows the window.
    pub fn published_filter_top(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// Calls `f(owner, totals)` for every registered thread.
    pub fn for_each_live(&self, mut f: impl FnMut(u64, Totals)) {
        let hw = self.high_water.load(Ordering::Acquire).min(N);
        for slot in &self.slots[..hw] {
            if slot
                .state
                .compare_exchange(LIVE, READING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let counters = slot.counters.load(Ordering::Relaxed);
            // SAFETY: the slot is LIVE → READING, so its thread has not begun
            // to unregister, and `unregister` waits for READING to end before
            // the counters may go away (the `register` contract).
            let t = unsafe { counters.as_ref() }.map(ThreadCounters::totals);
            let owner = slot.owner.load(Ordering::Relaxed);
            slot.state.store(LIVE, Ordering::Release);
            if let Some(t) = t {
                f(owner, t);
            }
        }
    }

    /// Makes the registry safe to use in the child of a `fork`, where only
    /// the forking thread exists. Every other thread's registration is
    /// retired: its counters are read once, as they are (no waiting: an
    /// update it had half done at the fork never finishes, and waiting for
    /// it is how a child once hung in `totals`), added to the retired
    /// totals, and its slot is freed. `keep` is the calling thread's
    /// registration, if it has one, with its new owner id (its thread id in
    /// the child); it stays, released by any reader that held it. Exits in
    /// progress at the fork are marked ended, and threads that never got a
    /// slot (and will never exit here) are no longer counted as such, except
    /// the caller if `caller_unregistered`.
    ///
    /// Totals in the child then match the parent's at the fork, except that
    /// a thread caught mid-update may be off by one sampling gap in bytes
    /// allocated, and a thread caught mid-exit may be counted partly.
    ///
    /// Async-signal-safe (atomic loads and stores only).
    ///
    /// # Safety
    ///
    /// Call only in the child of a `fork` (separate memory), before it starts
    /// any thread (a `pthread_atfork` child handler), with `keep` the calling
    /// thread's own registration. The other threads' counters are read:
    /// `fork` copied their memory, and nothing has released it yet.
    pub unsafe fn retain_only_after_fork(
        &self,
        keep: Option<(Registration, u64)>,
        caller_unregistered: bool,
    ) {
        // Every slot, not only those below `high_water`: a thread forked
        // between marking its slot LIVE and raising the mark left one above.
        for (i, slot) in self.slots.iter().enumerate() {
            let state = slot.state.load(Ordering::Acquire);
            if state == FREE {
                continue;
            }
            if let Some((_, owner)) = keep.filter(|(r, _)| r.0 == i) {
                slot.owner.store(owner, Ordering::Relaxed);
                slot.state.store(LIVE, Ordering::Release);
                continue;
            }
            if matches!(state, LIVE | READING) {
                // SAFETY: a LIVE or READING slot holds the address of its
                // thread's counters, which stay in place until that thread
                // unregisters; it never will (it does not exist here), and
                // the caller's contract says the memory is still there.
                if let Some(counters) = unsafe { slot.counters.load(Ordering::Relaxed).as_ref() } {
                    self.add_retired(&counters.totals_as_they_are());
                }
            }
            // CLAIMING: its counters were never readable; EXITING: they are
            // in `retired` already, or partly.
            slot.counters.store(core::ptr::null_mut(), Ordering::Relaxed);
            slot.state.store(FREE, Ordering::Release);
        }
        self.exits_ended.store(self.exits_begun.load(Ordering::SeqCst), Ordering::SeqCst);
        self.unregistered.store(u64::from(caller_unregistered), Ordering::Relaxed);
    }

    /// Threads registered now.
    pub fn registered(&self) -> usize {
        let hw = self.high_water.load(Ordering::Acquire).min(N);
        self.slots[..hw]
            .iter()
            .filter(|s| matches!(s.state.load(Ordering::Relaxed), LIVE | READING))
            .count()
    }

    /// Threads that found every slot taken (their totals appear when they exit).
    pub fn unregistered(&self) -> u64 {
        self.unregistered.load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for ThreadRegistry<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_gaps_minus_countdown() {
        let c = ThreadCounters::new();
        c.allocs.add_owned(1);
        assert!(c.take(100) < 0);
        c.reset_countdown(1000);
        c.allocs.add_owned(1);
        assert_eq!(c.take(300), 700);
        c.frees.add_owned(1);
        c.free_bytes.add_owned(100);
        assert_eq!(
            c.totals(),
            Totals { alloc_count: 2, alloc_bytes: 400, free_count: 1, free_bytes: 100 }
        );
    }

    #[test]
    fn register_read_unregister_reuse() {
        let r: ThreadRegistry<1> = ThreadRegistry::new();
        let a = ThreadCounters::new();
        let b = ThreadCounters::new();
        // SAFETY: `a` and `b` outlive their registrations in this test.
        let ra = unsafe { r.register(1, &a) }.unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { r.register(2, &b) }, None);
        assert_eq!(r.unregistered(), 1);
        a.allocs.add_owned(3);
        a.reset_countdown(50);
        a.take(20);
        assert_eq!(r.totals().alloc_bytes, 20);
        assert_eq!(r.totals().alloc_count, 3);
        r.unregister(ra, &a);
        r.fold_unregistered(&b);
        assert_eq!(r.registered(), 0);
        assert_eq!(r.totals().alloc_count, 3, "exited threads keep counting in the totals");
        // SAFETY: as above.
        assert!(unsafe { r.register(2, &b) }.is_some(), "the slot is reused");
    }

    /// What a fork can leave behind: a reader holding one thread's slot, a
    /// thread half way through updating its counters, an exit in progress,
    /// a LIVE slot above `high_water` (registration forked between its two
    /// steps), a thread that never got a slot. None of them ever finishes in
    /// the child.
    #[test]
    fn a_forked_child_keeps_its_own_thread_and_never_waits_for_the_dead() {
        let r: ThreadRegistry<4> = ThreadRegistry::new();
        let (own, reading, updating, late) = (
            ThreadCounters::new(),
            ThreadCounters::new(),
            ThreadCounters::new(),
            ThreadCounters::new(),
        );
        // SAFETY: all four outlive the registry's use of them in this test.
        let keep = unsafe { r.register(1, &own) }.unwrap();
        // SAFETY: as above.
        unsafe { r.register(2, &reading) }.unwrap();
        // SAFETY: as above.
        unsafe { r.register(3, &updating) }.unwrap();
        own.allocs.add_owned(5);
        reading.allocs.add_owned(100);
        updating.allocs.add_owned(1000);
        late.allocs.add_owned(10_000);
        r.fold_unregistered(&{
            let exited = ThreadCounters::new();
            exited.allocs.add_owned(7);
            exited
        });
        // The state at the fork.
        r.slots[0].state.store(READING, Ordering::Relaxed);
        r.slots[1].state.store(READING, Ordering::Relaxed);
        updating.seq.store(1, Ordering::Relaxed);
        r.exits_begun.fetch_add(1, Ordering::SeqCst);
        r.slots[3].counters.store((&raw const late).cast_mut(), Ordering::Relaxed);
        r.slots[3].state.store(LIVE, Ordering::Relaxed);
        r.unregistered.store(5, Ordering::Relaxed);
        assert_eq!(r.high_water.load(Ordering::Relaxed), 3, "slot 3 is above the mark");

        // SAFETY: the test stands in for the child's fork handler; `keep` is
        // `own`'s registration and every counter is still in place.
        unsafe { r.retain_only_after_fork(Some((keep, 42)), false) };
        assert_eq!(r.registered(), 1);
        assert_eq!(r.unregistered(), 0);
        let mut owners = [(0u64, 0u64); 4];
        let mut live = 0;
        r.for_each_live(|owner, t| {
            owners[live] = (owner, t.alloc_count);
            live += 1;
        });
        assert_eq!(owners[..live], [(42, 5)], "the forking thread stays, under its new id");
        // Returns at once (the half-updated thread is read as it was), and
        // nothing counted before the fork is lost.
        assert_eq!(r.totals().alloc_count, 5 + 100 + 1000 + 10_000 + 7);
        // The forking thread can still exit (no reader holds its slot).
        r.unregister(keep, &own);
        assert_eq!((r.registered(), r.totals().alloc_count), (0, 11_112));
        assert_eq!(r.slots[3].state.load(Ordering::Relaxed), FREE);
        // Freed slots are reusable.
        // SAFETY: as above.
        assert!(unsafe { r.register(9, &reading) }.is_some());
    }

    #[test]
    fn totals_stay_exact_while_threads_count_and_exit() {
        extern crate std;
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        use std::vec::Vec;
        let r: Arc<ThreadRegistry<8>> = Arc::new(ThreadRegistry::new());
        // One thread stays registered the whole time with 1000 allocations:
        // no snapshot may ever miss them (a reader once returned zeros while
        // threads were exiting).
        let resident = std::boxed::Box::new(ThreadCounters::new());
        resident.allocs.add_owned(1000);
        // SAFETY: `resident` outlives the registry's use of it (unregistered below).
        let resident_reg = unsafe { r.register(1, &*resident) }.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (r, stop) = (Arc::clone(&r), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) || rounds < 50 {
                        let c = std::boxed::Box::new(ThreadCounters::new());
                        // SAFETY: `c` lives until after `unregister`.
                        let reg = unsafe { r.register(7, &*c) };
                        for _ in 0..1000 {
                            c.allocs.add_owned(1);
                            c.frees.add_owned(1);
                        }
                        match reg {
                            Some(reg) => r.unregister(reg, &c),
                            None => r.fold_unregistered(&c),
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        let (mut last_allocs, mut last_frees) = (0, 0);
        for _ in 0..20_000 {
            // Totals never go backwards, even while threads exit mid-read
            // (an exit moves a thread's counts from its slot to `retired`).
            let t = r.totals_with(std::thread::yield_now);
            assert!(
                t.alloc_count >= 1000,
                "the resident thread's allocations are always counted: {t:?}"
            );
            assert!(
                t.alloc_count >= last_allocs,
                "allocs went back: {} < {last_allocs}",
                t.alloc_count
            );
            assert!(t.free_count >= last_frees, "frees went back: {} < {last_frees}", t.free_count);
            (last_allocs, last_frees) = (t.alloc_count, t.free_count);
        }
        stop.store(true, Ordering::Relaxed);
        let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        r.unregister(resident_reg, &resident);
        assert_eq!(r.totals().alloc_count, rounds * 1000 + 1000);
        assert_eq!(r.totals().free_count, rounds * 1000);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    // `std` comes from the crate root's `#[cfg(loom)] extern crate std`.
    use super::*;
    use loom::sync::Arc;

    const TOP: usize = 0x7f00_0000_0000;

    /// A thread registers while the window is published and a reader holds
    /// slots: once registration and publication are both done the thread's
    /// copy is the value, and a thread that sees the publication done
    /// ([`ThreadRegistry::published_filter_top`], which lowprof-alloc checks
    /// before it hands out a block of the region) reads the value from its
    /// own copy. Like the other
    /// models, it also checks that the interleavings it explored include
    /// each outcome (loom issue #392: skipped interleavings).
    #[test]
    fn loom_publication_reaches_a_registering_thread() {
        use std::sync::atomic::AtomicBool as Seen;
        // Right after registering, the thread's copy was: still unset (the
        // publisher must write it), already set; and the thread knew the
        // publication was done.
        static UNSET: Seen = Seen::new(false);
        static SET: Seen = Seen::new(false);
        static KNEW: Seen = Seen::new(false);
        loom::model(|| {
            let registry: Arc<ThreadRegistry<2>> = Arc::new(ThreadRegistry::new());
            let counters = Arc::new(ThreadCounters::new());
            let (r, c) = (registry.clone(), counters.clone());
            let owner = loom::thread::spawn(move || {
                // SAFETY: `c` outlives the registration, which the main
                // thread ends before dropping it.
                let registration = unsafe { r.register(1, &*c) };
                let copy = c.filter_top.load(Ordering::Relaxed);
                let seen = if copy == TOP { &SET } else { &UNSET };
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
                if r.published_filter_top() == TOP {
                    KNEW.store(true, std::sync::atomic::Ordering::Relaxed);
                    assert_eq!(c.filter_top.load(Ordering::Relaxed), TOP, "fast path missed it");
                }
                registration
            });
            let r = registry.clone();
            let reader = loom::thread::spawn(move || r.for_each_live(|_, _| {}));
            registry.publish_filter_top(TOP);
            let registration = owner.join().unwrap();
            reader.join().unwrap();
            assert_eq!(counters.filter_top.load(Ordering::Relaxed), TOP, "neither wrote it");
            assert_eq!(registry.filter_top(), TOP);
            registry.unregister(registration.unwrap(), &counters);
        });
        for (outcome, seen) in [("unset", &UNSET), ("set", &SET), ("known done", &KNEW)] {
            assert!(seen.load(std::sync::atomic::Ordering::Relaxed), "never saw {outcome}");
        }
    }
}
