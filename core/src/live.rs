//! The sampled-block region: where lowprof places every block it samples, so
//! that a free can tell "sampled?" with a subtraction and a shift (see
//! [`in_filter_window`]) and the set of live sampled blocks can be read at
//! any moment.
//!
//! # Why a region of its own
//!
//! A wrapper allocator must recognise, on *every* free, the rare block it
//! sampled. A hash lookup per free is too slow; over-aligning sampled blocks to
//! 4096 through the inner allocator (jemalloc's promotion trick) costs 1–2 µs
//! per sample through glibc (memalign plus fresh pages), +3.7–4.6 ns per
//! malloc/free pair at 512 KiB (measured with an early pairs bench). Owning
//! the memory of sampled blocks instead makes the free test
//! `(top - ptr) >> FILTER_SHIFT == 0` ([`in_filter_window`]) and keeps
//! the inner allocator's slow paths out of sampling entirely.
//!
//! # Layout
//!
//! ```text
//!  base                                                            base + len
//!  │ class 0: 64 B slots │ class 1: 128 B │ … │ class k: 2^(6+k) B │ …
//!  │◄─ 1 << sub_shift ──►│
//!
//!  slot (aligned to its size):
//!  ┌──────────── header, 32 B ───────────────┬─ pad to align ─┬─ user block ─┐
//!  │ sample_id │ size │ weight │ link / word │                │              │
//!  └─────────────────────────────────────────┴────────────────┴──────────────┘
//!    sample_id == 0  ⇔  slot not live
//!    link / word: the free-list link while free; one word for the owner of
//!    a live slot (lowprof-alloc keeps its shadow block there)
//! ```
//!
//! A block of `size` bytes and alignment `align` takes the smallest slot that
//! holds `max(32, align) + size` bytes. Each class hands out slots from a
//! lock-free Treiber free list whose head carries a 32-bit tag against ABA (the
//! region is never unmapped, so reading a stale link is harmless: the tag makes
//! the compare-exchange fail), else by bumping a per-class index.
//!
//! The header is published seqlock-style (`sample_id` last, with Release) so
//! [`Region::for_each_live`] can scan slots concurrently with allocation and
//! free and never report a torn block. This scan *is* the in-use heap: a
//! snapshot of the blocks live now, which no dropped event can corrupt.
//!
//! Blocks too large for the biggest class go to the inner allocator and are
//! remembered in a small [`HugeTable`], looked up only on frees of that size.

use crate::counters::Counter;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence};

/// Bytes of header before every sampled block.
pub const HEADER_BYTES: usize = 32;
/// log2 of the smallest slot (64 bytes: header plus up to 32 bytes).
pub const MIN_SLOT_SHIFT: u32 = 6;
/// Size classes a region can have (slots of 64 B up to 256 MiB).
pub const MAX_CLASSES: usize = 23;
/// Largest sub-region per class the free list can index (2^31 slots).
const MAX_SUB_SHIFT: u32 = MIN_SLOT_SHIFT + 31;

/// log2 of the window [`in_filter_window`] tests: 128 GiB on 64-bit
/// targets, enough for every class at 4 GiB each (23 × 4 GiB = 92 GiB).
pub const FILTER_SHIFT: u32 = if usize::BITS >= 64 { 37 } else { usize::BITS - 1 };
/// The filter's `top` before initialisation. `FILTER_NONE - ptr` is below
/// `2^FILTER_SHIFT` only for pointers less than `2^FILTER_SHIFT` under
/// `2^(BITS-1)`: on 64-bit targets, above all of user space (x86_64 and
/// aarch64 user addresses stay below 2^48 or 2^57), so no user pointer
/// matches. On 32-bit targets that window is most of memory: there,
/// lowprof-alloc uses the exact [`Region::contains`] instead.
pub const FILTER_NONE: usize = 1 << (usize::BITS - 1);

/// Whether `ptr` lies in the filter window that ends at `top` (inclusive):
/// `(top - 2^FILTER_SHIFT, top]`; for [`FILTER_NONE`], no user pointer.
///
/// The free fast path, with a thread's own copy of `top`: a load, a
/// subtraction, a shift and a branch. `top - ptr` rather than
/// `ptr - base` because the loaded value is the one overwritten, so the
/// pointer (still needed for the free) is not copied first.
#[inline(always)]
pub fn in_filter_window(top: usize, ptr: usize) -> bool {
    top.wrapping_sub(ptr) >> FILTER_SHIFT == 0
}

/// Why [`Region::init`] refused memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// The region was already initialised (it is never replaced).
    AlreadyInitialised,
    /// Too small to hold even one class after alignment.
    TooSmall,
}

/// A live sampled block as seen by a scan or returned by a free.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledBlock {
    /// Identifier given when the block was sampled (never 0).
    pub sample_id: u64,
    /// Requested size in bytes.
    pub size: u64,
    /// Unbiasing weight (`1 / p(size)`).
    pub weight: f64,
    /// Whether the block's record was dropped (rings full), as marked by
    /// [`Region::mark_record_lost`] or [`HugeTable::mark_record_lost`].
    pub record_lost: bool,
}

/// The sign bit of the stored weight (always ≥ 1) marks a lost record.
const WEIGHT_SIGN: u64 = 1 << 63;

impl SampledBlock {
    /// A block whose record is not (known to be) lost.
    pub const fn new(sample_id: u64, size: u64, weight: f64) -> Self {
        Self { sample_id, size, weight, record_lost: false }
    }

    fn from_parts(sample_id: u64, size: u64, weight_bits: u64) -> Self {
        Self {
            sample_id,
            size,
            weight: f64::from_bits(weight_bits & !WEIGHT_SIGN),
            record_lost: weight_bits & WEIGHT_SIGN != 0,
        }
    }
}

/// The slot start of a pointer inside the region.
fn slot_of(ptr: usize, base: usize, sub_shift: usize) -> usize {
    let class = ptr.wrapping_sub(base) >> sub_shift;
    ptr & !((1usize << (MIN_SLOT_SHIFT as usize + class)) - 1)
}

/// A slot that was just freed: its block's identity, plus the slot's memory so
/// the caller may release its pages before handing it back with
/// [`Region::recycle`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreedSlot {
    /// The block that lived there.
    pub block: SampledBlock,
    /// The word given to [`Region::publish`].
    pub word: u64,
    /// Start of the slot.
    pub slot_start: usize,
    /// Size of the slot in bytes.
    pub slot_len: usize,
    class: usize,
    index: usize,
}

/// A slot handed out by [`Region::alloc`], not yet published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSlot {
    /// Pointer to give the user (aligned as requested).
    pub user: usize,
    slot_start: usize,
}

#[repr(C)]
struct Header {
    sample_id: AtomicU64,
    size: AtomicU64,
    weight: AtomicU64,
    link: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_BYTES);

struct Class {
    /// Clean free slots: `tag << 32 | (index + 1)`; low half 0 = empty.
    free: AtomicU64,
    /// Freed slots whose pages may still be resident (same encoding): reused
    /// warm by `alloc`, or released by [`Region::release_dirty`].
    dirty: AtomicU64,
    /// Slots ever carved from this class (may overshoot the capacity).
    bump: AtomicUsize,
}

/// The sampled-block region. One per process, initialised once with memory
/// that stays mapped for the life of the process.
pub struct Region {
    /// `base + 2^FILTER_SHIFT - 1` once initialised, else [`FILTER_NONE`]
    /// ([`Region::filter_top`]). Written once, before `len`.
    filter_top: AtomicUsize,
    /// 0 until initialised; written once, after `base` and `sub_shift`.
    len: AtomicUsize,
    /// Set by the one `init` call allowed to write the layout.
    claimed: crate::sync::AtomicBool,
    base: AtomicUsize,
    sub_shift: AtomicUsize,
    classes: AtomicUsize,
    class: [Class; MAX_CLASSES],
    exhausted: Counter,
    /// Under loom, headers live in a side table: loom's atomics keep their
    /// state outside the memory they appear to occupy, so they cannot be
    /// overlaid on raw region memory. Same algorithm, different storage.
    #[cfg(loom)]
    loom_headers: std::sync::OnceLock<std::vec::Vec<Header>>,
}

impl Region {
    /// An uninitialised region: [`Region::contains`] is false for every pointer.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            filter_top: AtomicUsize::new(FILTER_NONE),
            len: AtomicUsize::new(0),
            claimed: crate::sync::AtomicBool::new(false),
            base: AtomicUsize::new(0),
            sub_shift: AtomicUsize::new(0),
            classes: AtomicUsize::new(0),
            class: [const {
                Class {
                    free: AtomicU64::new(0),
                    dirty: AtomicU64::new(0),
                    bump: AtomicUsize::new(0),
                }
            }; MAX_CLASSES],
            exhausted: Counter::new(),
        }
    }

    /// An uninitialised region.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            filter_top: AtomicUsize::new(FILTER_NONE),
            len: AtomicUsize::new(0),
            claimed: crate::sync::AtomicBool::new(false),
            base: AtomicUsize::new(0),
            sub_shift: AtomicUsize::new(0),
            classes: AtomicUsize::new(0),
            class: core::array::from_fn(|_| Class {
                free: AtomicU64::new(0),
                dirty: AtomicU64::new(0),
                bump: AtomicUsize::new(0),
            }),
            exhausted: Counter::new(),
            loom_headers: std::sync::OnceLock::new(),
        }
    }

    /// Hands `len` bytes at `base` to the region. The memory must be readable
    /// and writable, used by nothing else, and stay mapped for the life of the
    /// process (it need not be zero-filled). Returns the number of size classes
    /// available.
    ///
    /// # Safety
    ///
    /// As above: the region will write into `[base, base + len)` forever.
    pub unsafe fn init(&self, base: usize, len: usize) -> Result<usize, RegionError> {
        // Only one caller ever writes the layout: a loser of a concurrent
        // init must not overwrite `base` after the winner published `len`.
        if self.claimed.swap(true, Ordering::AcqRel) {
            return Err(RegionError::AlreadyInitialised);
        }
        let result = self.init_claimed(base, len);
        if result.is_err() && !self.is_initialised() {
            // Nothing published: let a later call try again.
            self.claimed.store(false, Ordering::Release);
        }
        result
    }

    fn init_claimed(&self, base: usize, len: usize) -> Result<usize, RegionError> {
        // Sub-region size: the largest power of two that gives every class one
        // sub-region, capped so slot indices fit the free list's 31 bits.
        let per_class = len / MAX_CLASSES;
        if per_class < (1 << MIN_SLOT_SHIFT) {
            return Err(RegionError::TooSmall);
        }
        let mut sub_shift = usize::BITS - 1 - per_class.leading_zeros();
        sub_shift = sub_shift.min(MAX_SUB_SHIFT);
        let classes = ((sub_shift - MIN_SLOT_SHIFT + 1) as usize).min(MAX_CLASSES);
        // Slots are aligned to their size; align the base to the largest slot.
        let align = 1usize << (MIN_SLOT_SHIFT as usize + classes - 1);
        let aligned = base.checked_add(align - 1).ok_or(RegionError::TooSmall)? & !(align - 1);
        let need = classes << sub_shift;
        if aligned - base + need > len {
            // Alignment ate into the space: use one class fewer.
            let classes = classes - 1;
            if classes == 0 {
                return Err(RegionError::TooSmall);
            }
            let align = 1usize << (MIN_SLOT_SHIFT as usize + classes - 1);
            let aligned = (base + align - 1) & !(align - 1);
            if aligned - base + (classes << sub_shift) > len {
                return Err(RegionError::TooSmall);
            }
            return self.publish_layout(aligned, classes, sub_shift);
        }
        self.publish_layout(aligned, classes, sub_shift)
    }

    fn publish_layout(
        &self,
        base: usize,
        classes: usize,
        sub_shift: u32,
    ) -> Result<usize, RegionError> {
        #[cfg(loom)]
        {
            let slots = (classes << sub_shift) >> MIN_SLOT_SHIFT;
            let headers = (0..slots)
                .map(|_| Header {
                    sample_id: AtomicU64::new(0),
                    size: AtomicU64::new(0),
                    weight: AtomicU64::new(0),
                    link: AtomicU64::new(0),
                })
                .collect();
            let _ = self.loom_headers.set(headers);
        }
        self.base.store(base, Ordering::Relaxed);
        self.sub_shift.store(sub_shift as usize, Ordering::Relaxed);
        self.classes.store(classes, Ordering::Relaxed);
        // Only the claimant writes here, so this cannot outlive a failed
        // publication; a thread that sees `len` sees it.
        self.filter_top.store(base.wrapping_add((1usize << FILTER_SHIFT) - 1), Ordering::Relaxed);
        // Release: a thread that sees `len != 0` sees the fields above.
        match self.len.compare_exchange(
            0,
            classes << sub_shift,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => Ok(classes),
            Err(_) => Err(RegionError::AlreadyInitialised),
        }
    }

    /// Whether the region has memory.
    pub fn is_initialised(&self) -> bool {
        self.len.load(Ordering::Acquire) != 0
    }

    /// Whether `ptr` lies in the region — i.e. was a sampled block.
    ///
    /// The exact test, behind [`in_filter_window`] on the allocator's cold
    /// paths (and its free fast path where there is no window: 32-bit and
    /// `no_std` targets): two loads, a subtraction and a compare.
    /// Async-signal-safe, allocation-free.
    #[inline(always)]
    pub fn contains(&self, ptr: usize) -> bool {
        // Acquire pairs with `publish_layout`: a non-zero length implies the
        // real base (never the initial 0, which would make low pointers match).
        let len = self.len.load(Ordering::Acquire);
        ptr.wrapping_sub(self.base.load(Ordering::Relaxed)) < len
    }

    /// The `top` for [`in_filter_window`]: `base + 2^FILTER_SHIFT - 1` once
    /// initialised, else [`FILTER_NONE`]. With it, the filter is true for
    /// every pointer in the region, and for no pointer outside
    /// `[base, base + 2^FILTER_SHIFT)`; confirm with [`Region::contains`].
    /// If the caller reserved that whole window for the region
    /// (lowprof-alloc does on 64-bit std targets), nothing else matches.
    #[inline(always)]
    pub fn filter_top(&self) -> usize {
        self.filter_top.load(Ordering::Relaxed)
    }

    /// Largest block (with its alignment) a slot can hold, or 0 before init.
    pub fn max_block(&self, align: usize) -> usize {
        if !self.is_initialised() {
            return 0;
        }
        let classes = self.classes.load(Ordering::Relaxed);
        let slot = 1usize << (MIN_SLOT_SHIFT as usize + classes - 1);
        slot.saturating_sub(align.max(HEADER_BYTES))
    }

    /// Takes a slot for a block of `size` bytes aligned to `align`. `None` if
    /// the block is too large for any class (use the [`HugeTable`]) or its
    /// class is exhausted (counted in [`Region::exhausted`]).
    ///
    /// Lock-free, allocation-free, async-signal-safe.
    pub fn alloc(&self, size: usize, align: usize) -> Option<NewSlot> {
        if !self.is_initialised() || !align.is_power_of_two() {
            return None;
        }
        let pad = align.max(HEADER_BYTES);
        let need = pad.checked_add(size)?;
        let shift = (usize::BITS - (need - 1).leading_zeros()).max(MIN_SLOT_SHIFT);
        let class = (shift - MIN_SLOT_SHIFT) as usize;
        if class >= self.classes.load(Ordering::Relaxed) {
            return None;
        }
        let index = match self
            .pop(&self.class[class].free, class)
            .or_else(|| self.pop(&self.class[class].dirty, class))
        {
            Some(i) => i,
            None => {
                let capacity = self.capacity(class);
                let i = self.class[class].bump.fetch_add(1, Ordering::Relaxed);
                if i >= capacity {
                    self.exhausted.add(1);
                    return None;
                }
                // A fresh slot: make sure a scan sees it as free even if the
                // region's memory was not zero-filled.
                self.header(self.slot_start(class, i)).sample_id.store(0, Ordering::Relaxed);
                i
            }
        };
        let slot_start = self.slot_start(class, index);
        Some(NewSlot { user: slot_start + pad, slot_start })
    }

    /// Makes a slot from [`Region::alloc`] live, as block `sample_id`
    /// (non-zero), keeping `word` for the caller until [`Region::free`].
    pub fn publish(&self, slot: NewSlot, sample_id: u64, size: u64, weight: f64, word: u64) {
        let header = self.header(slot.slot_start);
        // Seqlock writer: `sample_id` is 0 here; the Release fence orders that
        // before the data so a scan that reads new data re-reads a changed id.
        fence(Ordering::Release);
        header.size.store(size, Ordering::Relaxed);
        header.weight.store(weight.to_bits(), Ordering::Relaxed);
        // The link is free while the slot is live. A stale `pop` may read
        // this word as a "next" index; its compare-exchange then fails on
        // the head's tag, as for any stale link.
        header.link.store(word, Ordering::Relaxed);
        header.sample_id.store(sample_id, Ordering::Release);
    }

    /// Gives back a slot from [`Region::alloc`] that was never published.
    pub fn abandon(&self, slot: NewSlot) {
        let (class, index) = self.locate(slot.slot_start);
        self.push(&self.class[class].free, class, index);
    }

    /// Ends the life of the sampled block at `ptr` (which [`Region::contains`]),
    /// returning what it was. Hand the slot back with [`Region::recycle`].
    ///
    /// Allocation-free, async-signal-safe.
    pub fn free(&self, ptr: usize) -> FreedSlot {
        let base = self.base.load(Ordering::Relaxed);
        let sub_shift = self.sub_shift.load(Ordering::Relaxed);
        let offset = ptr.wrapping_sub(base);
        let class = offset >> sub_shift;
        let shift = MIN_SLOT_SHIFT as usize + class;
        let slot_start = ptr & !((1usize << shift) - 1);
        let header = self.header(slot_start);
        let sample_id = header.sample_id.swap(0, Ordering::AcqRel);
        let block = SampledBlock::from_parts(
            sample_id,
            header.size.load(Ordering::Relaxed),
            header.weight.load(Ordering::Relaxed),
        );
        let word = header.link.load(Ordering::Relaxed);
        let index = (offset & ((1usize << sub_shift) - 1)) >> shift;
        FreedSlot { block, word, slot_start, slot_len: 1 << shift, class, index }
    }

    /// Marks the live block at `ptr` (which [`Region::contains`]) as one whose
    /// record was lost, so a scan can tell it from a block whose record is
    /// merely not drained yet. Stored as the sign of the (positive) weight.
    pub fn mark_record_lost(&self, ptr: usize) {
        let header = self.header(slot_of(
            ptr,
            self.base.load(Ordering::Relaxed),
            self.sub_shift.load(Ordering::Relaxed),
        ));
        header.weight.fetch_or(WEIGHT_SIGN, Ordering::Relaxed);
    }

    /// Returns a slot freed by [`Region::free`] to its free list.
    pub fn recycle(&self, freed: FreedSlot) {
        self.push(&self.class[freed.class].free, freed.class, freed.index);
    }

    /// Returns a freed slot whose pages should eventually go back to the
    /// system: it is reused warm if a block of its class comes first, else
    /// [`Region::release_dirty`] releases it. Keeps system calls off the free
    /// path.
    pub fn recycle_dirty(&self, freed: FreedSlot) {
        self.push(&self.class[freed.class].dirty, freed.class, freed.index);
    }

    /// Hands every dirty slot to `release(start, len)` (which gives its pages
    /// back to the system) and then to the clean free list. Returns the bytes
    /// released. For a housekeeping thread, not a hot path.
    pub fn release_dirty(&self, mut release: impl FnMut(usize, usize)) -> u64 {
        if !self.is_initialised() {
            return 0;
        }
        let mut bytes = 0u64;
        for class in 0..self.classes.load(Ordering::Relaxed) {
            let c = &self.class[class];
            while let Some(index) = self.pop(&c.dirty, class) {
                let len = 1usize << (MIN_SLOT_SHIFT as usize + class);
                release(self.slot_start(class, index), len);
                bytes += len as u64;
                self.push(&c.free, class, index);
            }
        }
        bytes
    }

    /// Calls `f` for every block live at the moment its slot is read.
    ///
    /// Lock-free; runs concurrently with allocations and frees and never
    /// reports a torn block. Cost: one header read per slot ever carved.
    pub fn for_each_live(&self, mut f: impl FnMut(SampledBlock)) {
        if !self.is_initialised() {
            return;
        }
        let classes = self.classes.load(Ordering::Relaxed);
        for class in 0..classes {
            let carved = self.class[class].bump.load(Ordering::Acquire).min(self.capacity(class));
            for index in 0..carved {
                let header = self.header(self.slot_start(class, index));
                let id = header.sample_id.load(Ordering::Acquire);
                if id == 0 {
                    continue;
                }
                let size = header.size.load(Ordering::Relaxed);
                let weight = header.weight.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if header.sample_id.load(Ordering::Relaxed) == id {
                    f(SampledBlock::from_parts(id, size, weight));
                }
            }
        }
    }

    /// Samples lost because their size class had no free slot.
    pub fn exhausted(&self) -> u64 {
        self.exhausted.get()
    }

    /// Bytes of slots carved so far (an upper bound on the region's resident
    /// memory, before released pages).
    pub fn carved_bytes(&self) -> u64 {
        if !self.is_initialised() {
            return 0;
        }
        let classes = self.classes.load(Ordering::Relaxed);
        (0..classes)
            .map(|c| {
                let n = self.class[c].bump.load(Ordering::Relaxed).min(self.capacity(c));
                (n as u64) << (MIN_SLOT_SHIFT as usize + c)
            })
            .sum()
    }

    fn capacity(&self, class: usize) -> usize {
        1usize << (self.sub_shift.load(Ordering::Relaxed) - MIN_SLOT_SHIFT as usize - class)
    }

    fn slot_start(&self, class: usize, index: usize) -> usize {
        let sub_shift = self.sub_shift.load(Ordering::Relaxed);
        self.base.load(Ordering::Relaxed)
            + (class << sub_shift)
            + (index << (MIN_SLOT_SHIFT as usize + class))
    }

    fn locate(&self, slot_start: usize) -> (usize, usize) {
        let sub_shift = self.sub_shift.load(Ordering::Relaxed);
        let offset = slot_start - self.base.load(Ordering::Relaxed);
        let class = offset >> sub_shift;
        (class, (offset & ((1usize << sub_shift) - 1)) >> (MIN_SLOT_SHIFT as usize + class))
    }

    #[cfg(loom)]
    fn header(&self, slot_start: usize) -> &Header {
        let index = (slot_start - self.base.load(Ordering::Relaxed)) >> MIN_SLOT_SHIFT;
        &self.loom_headers.get().unwrap()[index]
    }

    #[cfg(not(loom))]
    fn header(&self, slot_start: usize) -> &Header {
        // SAFETY: `slot_start` is a slot of this initialised region: inside the
        // memory `init` was given (mapped for the life of the process), aligned
        // to at least 64 bytes, and its first 32 bytes belong to lowprof — the
        // user's block starts after them. Atomics make concurrent access sound.
        unsafe { &*(slot_start as *const Header) }
    }

    fn pop(&self, list: &AtomicU64, class: usize) -> Option<usize> {
        let mut head = list.load(Ordering::Acquire);
        loop {
            let top = (head & 0xffff_ffff) as usize;
            if top == 0 {
                return None;
            }
            let index = top - 1;
            // May be stale if another thread pops concurrently; then the tag in
            // `head` has changed and the exchange below fails.
            let next = self.header(self.slot_start(class, index)).link.load(Ordering::Relaxed);
            let tag = (head >> 32).wrapping_add(1);
            match list.compare_exchange_weak(
                head,
                (tag << 32) | (next & 0xffff_ffff),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(index),
                Err(now) => head = now,
            }
        }
    }

    fn push(&self, list: &AtomicU64, class: usize, index: usize) {
        let header = self.header(self.slot_start(class, index));
        let mut head = list.load(Ordering::Relaxed);
        loop {
            header.link.store(head & 0xffff_ffff, Ordering::Relaxed);
            let tag = (head >> 32).wrapping_add(1);
            match list.compare_exchange_weak(
                head,
                (tag << 32) | (index as u64 + 1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

#[cfg(not(loom))]
impl Default for Region {
    fn default() -> Self {
        Self::new()
    }
}

struct HugeEntry {
    /// 0 = empty, 1 = being filled, else the block's address.
    addr: AtomicUsize,
    sample_id: AtomicU64,
    size: AtomicU64,
    weight: AtomicU64,
}

const HUGE_BUSY: usize = 1;

/// Sampled blocks too large for the region (served by the inner allocator),
/// in a fixed array scanned on frees of that size only.
pub struct HugeTable<const N: usize> {
    entries: [HugeEntry; N],
    live: AtomicUsize,
    full: Counter,
}

impl<const N: usize> HugeTable<N> {
    /// An empty table.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            entries: [const {
                HugeEntry {
                    addr: AtomicUsize::new(0),
                    sample_id: AtomicU64::new(0),
                    size: AtomicU64::new(0),
                    weight: AtomicU64::new(0),
                }
            }; N],
            live: AtomicUsize::new(0),
            full: Counter::new(),
        }
    }

    /// Remembers the sampled block at `addr`. `false` (counted) if full.
    /// Lock-free, allocation-free.
    pub fn insert(&self, addr: usize, block: SampledBlock) -> bool {
        if addr <= HUGE_BUSY {
            return false;
        }
        for e in &self.entries {
            if e.addr.load(Ordering::Relaxed) == 0
                && e.addr
                    .compare_exchange(0, HUGE_BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // Seqlock writer: the entry reads as busy before new data.
                fence(Ordering::Release);
                e.sample_id.store(block.sample_id, Ordering::Relaxed);
                e.size.store(block.size, Ordering::Relaxed);
                e.weight.store(block.weight.to_bits(), Ordering::Relaxed);
                e.addr.store(addr, Ordering::Release);
                self.live.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        self.full.add(1);
        false
    }

    /// Forgets the block at `addr` if it is here, returning it.
    /// Lock-free, allocation-free; skips the scan when the table is empty.
    pub fn remove(&self, addr: usize) -> Option<SampledBlock> {
        if self.live.load(Ordering::Relaxed) == 0 || addr <= HUGE_BUSY {
            return None;
        }
        for e in &self.entries {
            if e.addr.load(Ordering::Acquire) == addr {
                let block = SampledBlock::from_parts(
                    e.sample_id.load(Ordering::Relaxed),
                    e.size.load(Ordering::Relaxed),
                    e.weight.load(Ordering::Relaxed),
                );
                e.addr.store(0, Ordering::Release);
                self.live.fetch_sub(1, Ordering::Relaxed);
                return Some(block);
            }
        }
        None
    }

    /// Marks the block at `addr` as one whose record was lost.
    pub fn mark_record_lost(&self, addr: usize) {
        if let Some(e) = self.entries.iter().find(|e| e.addr.load(Ordering::Acquire) == addr) {
            e.weight.fetch_or(WEIGHT_SIGN, Ordering::Relaxed);
        }
    }

    /// Whether `addr` is a block in the table.
    pub fn contains(&self, addr: usize) -> bool {
        if self.live.load(Ordering::Relaxed) == 0 || addr <= HUGE_BUSY {
            return false;
        }
        self.entries.iter().any(|e| e.addr.load(Ordering::Acquire) == addr)
    }

    /// Calls `f` for every block in the table.
    pub fn for_each_live(&self, mut f: impl FnMut(SampledBlock)) {
        for e in &self.entries {
            let addr = e.addr.load(Ordering::Acquire);
            if addr <= HUGE_BUSY {
                continue;
            }
            let block = SampledBlock::from_parts(
                e.sample_id.load(Ordering::Relaxed),
                e.size.load(Ordering::Relaxed),
                e.weight.load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            if e.addr.load(Ordering::Relaxed) == addr {
                f(block);
            }
        }
    }

    /// Samples lost because the table was full.
    pub fn full(&self) -> u64 {
        self.full.get()
    }
}

#[cfg(not(loom))]
impl<const N: usize> Default for HugeTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A zeroed, 4 KiB-aligned buffer standing in for the mmap'd region.
    fn memory(len: usize) -> (Vec<u8>, usize, usize) {
        let buf = vec![0u8; len + 4096];
        let base = (buf.as_ptr() as usize + 4095) & !4095;
        (buf, base, len)
    }

    #[test]
    fn alloc_publish_scan_free_recycle() {
        let (_buf, base, len) = memory(1 << 20);
        let r = Region::new();
        assert!(!r.contains(base));
        // SAFETY: `_buf` outlives `r` in this test and nothing else uses it.
        let classes = unsafe { r.init(base, len) }.unwrap();
        assert!(classes >= 5, "{classes}");
        let a = r.alloc(100, 8).unwrap();
        assert!(r.contains(a.user));
        assert_eq!(a.user % 8, 0);
        r.publish(a, 1, 100, 3.5, 0xdead);
        let b = r.alloc(10, 64).unwrap();
        assert_eq!(b.user % 64, 0);
        r.publish(b, 2, 10, 7.0, 0);
        let mut live = Vec::new();
        r.for_each_live(|blk| live.push(blk));
        live.sort_by_key(|b| b.sample_id);
        assert_eq!(live, vec![SampledBlock::new(1, 100, 3.5), SampledBlock::new(2, 10, 7.0)]);
        // Any interior pointer finds the slot; the user pointer is what frees.
        r.mark_record_lost(b.user);
        let mut lost = std::vec::Vec::new();
        r.for_each_live(|blk| {
            if blk.record_lost {
                lost.push((blk.sample_id, blk.weight))
            }
        });
        assert_eq!(lost, [(2, 7.0)], "marked lost, weight intact");
        let freed = r.free(a.user);
        assert_eq!(freed.block.sample_id, 1);
        assert_eq!(freed.word, 0xdead, "the caller's word comes back");
        assert_eq!(freed.slot_len, 256);
        r.recycle(freed);
        let mut n = 0;
        r.for_each_live(|_| n += 1);
        assert_eq!(n, 1);
        // The freed slot is reused first.
        let c = r.alloc(120, 16).unwrap();
        assert_eq!(c.user, a.user);
        r.abandon(c);
        assert!(!r.contains(base.wrapping_sub(1)));
        assert!(!r.contains(base + len + 4096));
    }

    #[test]
    fn the_free_filter_matches_every_region_pointer_and_nothing_before_init() {
        let (_buf, base, len) = memory(1 << 20);
        let r = Region::new();
        // Before init: no pointer at all, including 0 and the top of memory.
        // (Up to the top of 57-bit user space; the kernel's half, above
        // 2^63, is not a pointer a program frees.)
        for ptr in [0, 1, 4096, base, (1 << 47) - 1, (1 << 57) - 1] {
            assert!(!in_filter_window(r.filter_top(), ptr), "{ptr:#x} before init");
        }
        // SAFETY: `_buf` outlives `r` in this test and nothing else uses it.
        unsafe { r.init(base, len) }.unwrap();
        // The base the region chose (aligned to its largest slot).
        let region_base = r.filter_top() + 1 - (1usize << FILTER_SHIFT);
        assert!(region_base >= base && region_base < base + len);
        let a = r.alloc(100, 8).unwrap();
        assert!(in_filter_window(r.filter_top(), a.user) && r.contains(a.user));
        let window = 1usize << FILTER_SHIFT;
        // The window: a superset of the region, and nothing outside it.
        assert!(in_filter_window(r.filter_top(), region_base + len - 1 - (region_base - base)));
        assert!(in_filter_window(r.filter_top(), region_base + window - 1), "inside the window");
        assert!(!r.contains(region_base + window - 1), "… but not the region");
        assert!(!in_filter_window(r.filter_top(), region_base + window));
        assert!(!in_filter_window(r.filter_top(), region_base - 1));
        assert!(!in_filter_window(r.filter_top(), 0));
        r.abandon(a);
    }

    #[test]
    fn dirty_slots_are_reused_warm_or_released() {
        let (_buf, base, len) = memory(1 << 20);
        let r = Region::new();
        // SAFETY: as above.
        unsafe { r.init(base, len) }.unwrap();
        let a = r.alloc(1000, 8).unwrap();
        r.publish(a, 1, 1000, 1.0, 0);
        r.recycle_dirty(r.free(a.user));
        // Reused warm before the bump pointer moves on.
        let b = r.alloc(1100, 8).unwrap();
        assert_eq!(b.user, a.user);
        r.publish(b, 2, 1100, 1.0, 0);
        r.recycle_dirty(r.free(b.user));
        let mut released = std::vec::Vec::new();
        // 1000 + 32 header bytes take a 2048-byte slot.
        assert_eq!(r.release_dirty(|start, len| released.push((start, len))), 2048);
        assert_eq!(released, [(a.user - HEADER_BYTES, 2048)]);
        assert_eq!(r.release_dirty(|_, _| panic!("nothing left")), 0);
        // Now clean: still reused first.
        assert_eq!(r.alloc(1000, 8).unwrap().user, a.user);
    }

    #[test]
    fn too_large_or_exhausted() {
        let (_buf, base, len) = memory(64 * 1024);
        let r = Region::new();
        // SAFETY: as above.
        unsafe { r.init(base, len) }.unwrap();
        let max = r.max_block(8);
        assert!(r.alloc(max, 8).is_some());
        assert!(r.alloc(max + 1, 8).is_none());
        let mut taken = 0;
        while r.alloc(1, 8).is_some() {
            taken += 1;
        }
        assert!(taken > 0);
        assert_eq!(r.exhausted(), 1);
        // SAFETY: never actually used: init must refuse.
        assert_eq!(unsafe { r.init(base, len) }, Err(RegionError::AlreadyInitialised));
    }

    /// Four threads allocate 20 000 blocks each, keep at most 33 live and
    /// free the rest, scribbling their ids into the blocks: a slot handed out
    /// twice would show as a wrong id.
    ///
    /// No allocation may fail: the 4 MiB region has 12 classes of 128 KiB
    /// sub-regions, and these blocks (72, 172 and 272 bytes with the header)
    /// take slots of classes 1–3, of 1024, 512 and 256 slots. A class carves
    /// a new slot only when its free list is empty, i.e. when every slot it
    /// carved is held by a thread; the threads never hold more than 4 × 33
    /// slots of one class, fewer than the smallest capacity.
    #[test]
    fn concurrent_alloc_free_keeps_slots_unique() {
        use std::sync::Arc;
        const THREADS: u64 = 4;
        const ALLOCS: u64 = 20_000;
        const KEPT: usize = 32;
        let (buf, base, len) = memory(4 << 20);
        let r = Arc::new(Region::new());
        // SAFETY: `buf` is kept alive until all threads joined.
        assert_eq!(unsafe { r.init(base, len) }, Ok(12));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    let (mut allocated, mut freed) = (0u64, 0u64);
                    for i in 0..ALLOCS {
                        let id = (t << 32) | (i + 1);
                        if let Some(s) = r.alloc(40 + (i as usize % 3) * 100, 16) {
                            allocated += 1;
                            assert_eq!(s.user % 16, 0);
                            // Scribble the user block: a shared slot would show.
                            // SAFETY: the block is ours until freed below.
                            unsafe { *(s.user as *mut u64) = id };
                            r.publish(s, id, 40, 1.0, 0);
                            mine.push((s.user, id));
                        }
                        if mine.len() > KEPT {
                            let (p, id) = mine.swap_remove((i as usize * 7) % mine.len());
                            // SAFETY: still ours.
                            assert_eq!(unsafe { *(p as *const u64) }, id);
                            let f = r.free(p);
                            assert_eq!(f.block.sample_id, id);
                            r.recycle(f);
                            freed += 1;
                        }
                    }
                    // Every block still held is intact.
                    for &(p, id) in &mine {
                        // SAFETY: still ours.
                        assert_eq!(unsafe { *(p as *const u64) }, id);
                    }
                    (allocated, freed, mine.len())
                })
            })
            .collect();
        let (mut allocated, mut freed, mut live) = (0, 0, 0);
        for t in threads {
            let (a, f, l) = t.join().unwrap();
            allocated += a;
            freed += f;
            live += l;
        }
        assert_eq!(allocated, THREADS * ALLOCS, "every allocation succeeds");
        assert_eq!(r.exhausted(), 0);
        assert_eq!(live, THREADS as usize * KEPT);
        assert_eq!(freed + live as u64, allocated);
        let mut ids = Vec::new();
        r.for_each_live(|b| ids.push(b.sample_id));
        assert_eq!(ids.len(), live);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), live, "each live block is seen once");
        drop(buf);
    }

    #[test]
    fn huge_table() {
        let t: HugeTable<2> = HugeTable::new();
        assert_eq!(t.remove(0x1000), None);
        let blk = SampledBlock::new(9, 1 << 30, 1.0);
        assert!(t.insert(0x1000, blk));
        assert!(t.insert(0x2000, blk));
        assert!(!t.insert(0x3000, blk));
        assert_eq!(t.full(), 1);
        let mut n = 0;
        t.for_each_live(|_| n += 1);
        assert_eq!(n, 2);
        t.mark_record_lost(0x2000);
        let mut lost = 0;
        t.for_each_live(|b| lost += b.record_lost as u32);
        assert_eq!(lost, 1);
        assert_eq!(t.remove(0x1000), Some(blk));
        assert_eq!(t.remove(0x1000), None);
        let lost_one = t.remove(0x2000).unwrap();
        assert!(lost_one.record_lost && lost_one.weight == 1.0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    extern crate std;
    use super::*;
    use loom::sync::Arc;

    /// Two threads each take a slot, publish, free and recycle while a third
    /// scans: no slot is handed out twice, and the scan never reports a block
    /// with another block's size.
    #[test]
    fn loom_free_list_and_scan() {
        loom::model(|| {
            // Address space standing in for the region (under loom the
            // headers live in a side table, so this memory is never touched):
            // two classes of two 64-byte and one 128-byte slots.
            let mem = std::vec![0u64; 1024];
            let base = (mem.as_ptr() as usize + 127) & !127;
            let r = Arc::new(Region::new());
            // SAFETY: `mem` lives until the end of the closure.
            unsafe { r.init(base, 23 * 128) }.unwrap();
            let ts: [_; 2] = core::array::from_fn(|t| {
                let r = r.clone();
                loom::thread::spawn(move || {
                    let id = t as u64 + 1;
                    let s = r.alloc(8, 8).unwrap();
                    r.publish(s, id, id * 10, 1.0, 0);
                    let f = r.free(s.user);
                    assert_eq!(f.block.sample_id, id);
                    assert_eq!(f.block.size, id * 10);
                    r.recycle(f);
                    s.user
                })
            });
            r.for_each_live(|b| assert_eq!(b.size, b.sample_id * 10));
            for t in ts {
                t.join().unwrap();
            }
            drop(mem);
        });
    }
}
