//! Aggregation on the drainer thread: raw records in, per-stack totals out.
//!
//! ```text
//!  HEAP_ALLOC ─► stacks.intern(frames) = s ─► alloc[(s, size, ctx)] += (w, w·size)
//!            │                               and the same in every open alloc window
//!            └─► live[sample_id] = (s, ctx, drain epoch)      (unless untracked)
//!  HEAP_FREE  ─► live.remove(sample_id)
//!  snapshot   ─► epoch += 1; scan the region's live blocks; drain;
//!                attribute: live[id] known ─► inuse[(s, size, ctx)] += (w, w·size)
//!                           record marked lost ─► `lost` (the lowprof::dropped frame)
//!                           neither ─► returned to the caller (record still in flight)
//!                prune: forget samples drained before the scan that it did not see
//!  CPU        ─► cpu[(s, thread, ctx)] += (weight, weight·period)
//! ```
//!
//! `ctx` is the sample's trace context (trace id, span id, span-name key;
//! [`lowprof_core::context`]). Rows carrying trace ids are bounded: past
//! [`MAX_LINKED_ROWS`] of them, the oldest half lose their ids (they are
//! merged into the rows of their span name; totals do not change, only the
//! link detail of old samples goes), and the fold is counted.
//!
//! Heap sums are kept per (stack, block size), as Go's heap profiles are:
//! the size becomes the sample's `bytes` label.
//!
//! Each sample is unbiased on its own (its weight `w = 1/p(size)`) and only
//! then summed: per-stack averaging of sizes before unbiasing is biased when
//! sizes vary (jemalloc `prof_data.c`). Sums are kept as `f64` and rounded
//! once, when a profile is built.

use std::collections::VecDeque;
use std::hash::Hash;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use lowprof_core::event::{ContextWords, CpuSample, FLAG_LEAF_IS_PC, FLAG_UNTRACKED, HeapAlloc};
use lowprof_core::live::SampledBlock;

/// Index of an interned stack.
pub(crate) type StackId = u32;

/// Interned stacks: each distinct frame sequence is stored once.
#[derive(Default)]
pub(crate) struct StackTable {
    ids: HashMap<Box<[u64]>, StackId>,
    stacks: Vec<Box<[u64]>>,
}

impl StackTable {
    /// The id of `frames`, storing them on first sight.
    pub(crate) fn intern(&mut self, frames: &[u64]) -> StackId {
        if let Some(&id) = self.ids.get(frames) {
            return id;
        }
        let id = self.stacks.len() as StackId;
        let boxed: Box<[u64]> = frames.into();
        self.stacks.push(boxed.clone());
        self.ids.insert(boxed, id);
        id
    }

    /// The frames of stack `id` (leaf first).
    pub(crate) fn get(&self, id: StackId) -> &[u64] {
        self.stacks.get(id as usize).map_or(&[], |s| s)
    }

    /// Distinct stacks stored.
    pub(crate) fn len(&self) -> usize {
        self.stacks.len()
    }
}

/// Estimated objects and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    pub objects: f64,
    pub bytes: f64,
}

impl Estimate {
    pub(crate) fn add(&mut self, weight: f64, size: u64) {
        self.objects += weight;
        self.bytes += weight * size as f64;
    }
}

/// Rows with trace ids kept per aggregate before the oldest lose them.
pub(crate) const MAX_LINKED_ROWS: usize = 1 << 16;

/// Whether a context carries trace ids (not only a span name).
pub(crate) fn is_linked(context: &ContextWords) -> bool {
    context[..3] != [0; 3]
}

/// `context` without its trace ids (the span name stays).
fn unlinked(context: ContextWords) -> ContextWords {
    [0, 0, 0, context[3]]
}

/// Keys whose context can be stripped.
pub(crate) trait Linked: Copy + Eq + Hash {
    fn context(&self) -> ContextWords;
    fn with_context(self, context: ContextWords) -> Self;
}

/// Bounds the rows of one map that carry trace ids: remembers them oldest
/// first and folds the oldest half into unlinked rows when there are too
/// many.
#[derive(Clone)]
pub(crate) struct LinkBound<K> {
    order: VecDeque<K>,
    /// Rows whose trace ids were folded away, in total.
    pub folded: u64,
}

impl<K> Default for LinkBound<K> {
    fn default() -> Self {
        Self { order: VecDeque::new(), folded: 0 }
    }
}

/// Values that can be merged when two rows become one.
pub(crate) trait Merge {
    fn merge(&mut self, other: &Self);
}

impl<K: Linked> LinkBound<K> {
    /// Notes a new row (call only when `key` was just inserted), folding
    /// the oldest linked rows of `map` if there are too many.
    fn inserted<V: Merge + Default>(&mut self, key: K, map: &mut HashMap<K, V>) {
        if !is_linked(&key.context()) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() <= MAX_LINKED_ROWS {
            return;
        }
        for old in self.order.drain(..MAX_LINKED_ROWS / 2) {
            if let Some(value) = map.remove(&old) {
                map.entry(old.with_context(unlinked(old.context()))).or_default().merge(&value);
                self.folded += 1;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct LiveSample {
    stack: StackId,
    context: ContextWords,
    /// The snapshot epoch when its record was drained.
    epoch: u64,
}

/// A heap sample's identity: stack, block size and trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct HeapKey {
    pub stack: StackId,
    pub size: u64,
    pub context: ContextWords,
}

impl Linked for HeapKey {
    fn context(&self) -> ContextWords {
        self.context
    }
    fn with_context(self, context: ContextWords) -> Self {
        Self { context, ..self }
    }
}

impl Merge for Estimate {
    fn merge(&mut self, other: &Self) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// Allocations per stack, size and context, with their linked rows
/// bounded.
#[derive(Default, Clone)]
pub(crate) struct AllocWindow {
    /// The sums.
    pub alloc: HashMap<HeapKey, Estimate>,
    /// Keeps the linked rows of `alloc` bounded.
    pub links: LinkBound<HeapKey>,
}

impl AllocWindow {
    fn add(&mut self, key: HeapKey, weight: f64, size: u64) {
        add_alloc_row(&mut self.alloc, &mut self.links, key, weight, size);
    }

    /// Adds the rows of `newer`, gathered after this window was taken.
    fn absorb(&mut self, newer: AllocWindow) {
        self.links.folded += newer.links.folded;
        for (key, estimate) in newer.alloc {
            match self.alloc.entry(key) {
                Entry::Occupied(mut e) => e.get_mut().merge(&estimate),
                Entry::Vacant(e) => {
                    e.insert(estimate);
                    self.links.inserted(key, &mut self.alloc);
                }
            }
        }
    }
}

/// Adds one sampled allocation to the row `key` of `alloc`.
fn add_alloc_row(
    alloc: &mut HashMap<HeapKey, Estimate>,
    links: &mut LinkBound<HeapKey>,
    key: HeapKey,
    weight: f64,
    size: u64,
) {
    match alloc.entry(key) {
        Entry::Occupied(mut e) => e.get_mut().add(weight, size),
        Entry::Vacant(e) => {
            e.insert(Estimate::default()).add(weight, size);
            links.inserted(key, alloc);
        }
    }
}

/// Heap records, aggregated.
#[derive(Default)]
pub(crate) struct HeapAggregate {
    pub stacks: StackTable,
    /// Allocations since the profiler started, per stack, size and context.
    pub alloc: HashMap<HeapKey, Estimate>,
    /// Keeps the linked rows of `alloc` bounded.
    pub alloc_links: LinkBound<HeapKey>,
    /// Allocations since each consumer of deltas last took them (the
    /// periodic OTLP export), by window id; like `alloc`, but emptied at
    /// every take, so each is bounded by what one interval allocates.
    alloc_windows: Vec<(u64, AllocWindow)>,
    next_alloc_window: u64,
    live: HashMap<u64, LiveSample>,
    epoch: u64,
}

/// The in-use heap at one moment.
#[derive(Default)]
pub(crate) struct InUse {
    /// Per stack and size.
    pub by_stack: HashMap<HeapKey, Estimate>,
    /// Live sampled blocks whose record was dropped (rings full).
    pub lost: Estimate,
    /// Live blocks sampled before this profiler started (by an earlier one).
    pub earlier: Estimate,
    /// Live blocks whose record had not arrived yet (sampled microseconds
    /// before the snapshot); left out of this snapshot.
    pub pending: Estimate,
}

impl HeapAggregate {
    /// Adds one sampled allocation.
    pub(crate) fn add_alloc(&mut self, event: &HeapAlloc<'_>) {
        let stack = self.stacks.intern(event.frames);
        let context = event.context;
        let key = HeapKey { stack, size: event.size, context };
        add_alloc_row(&mut self.alloc, &mut self.alloc_links, key, event.weight, event.size);
        for (_, window) in &mut self.alloc_windows {
            window.add(key, event.weight, event.size);
        }
        if event.flags & FLAG_UNTRACKED == 0 {
            self.live.insert(event.sample_id, LiveSample { stack, context, epoch: self.epoch });
        }
    }

    /// Opens an alloc window holding everything allocated so far (a copy
    /// of `alloc`), so that its first take covers the session from its
    /// start; returns its id.
    pub(crate) fn open_alloc_window(&mut self) -> u64 {
        let id = self.next_alloc_window;
        self.next_alloc_window += 1;
        let window = AllocWindow { alloc: self.alloc.clone(), links: self.alloc_links.clone() };
        self.alloc_windows.push((id, window));
        id
    }

    /// What window `id` gathered since it was opened or last taken,
    /// restarting it empty; `None` if it is not open.
    pub(crate) fn take_alloc_window(&mut self, id: u64) -> Option<AllocWindow> {
        let (_, window) = self.alloc_windows.iter_mut().find(|(w, _)| *w == id)?;
        Some(std::mem::take(window))
    }

    /// Puts back what [`HeapAggregate::take_alloc_window`] took from window
    /// `id` (its consumer could not use it), with what arrived since.
    pub(crate) fn give_back_alloc_window(&mut self, id: u64, mut taken: AllocWindow) {
        if let Some((_, window)) = self.alloc_windows.iter_mut().find(|(w, _)| *w == id) {
            taken.absorb(std::mem::take(window));
            *window = taken;
        }
    }

    /// Closes window `id`.
    pub(crate) fn close_alloc_window(&mut self, id: u64) {
        self.alloc_windows.retain(|(w, _)| *w != id);
    }

    /// Ends one sampled block.
    pub(crate) fn add_free(&mut self, sample_id: u64) {
        self.live.remove(&sample_id);
    }

    /// Live samples the aggregate knows of (may include some whose free
    /// record was dropped, until the next [`HeapAggregate::prune`]).
    pub(crate) fn known_live(&self) -> usize {
        self.live.len()
    }

    /// Starts a snapshot: records drained from now on are newer than the
    /// region scan that follows. Returns the snapshot's epoch for `prune`.
    pub(crate) fn begin_snapshot(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// Adds the blocks whose record is known (or known lost) to `into`, and
    /// returns the others: their record has not been drained yet.
    pub(crate) fn attribute(&self, blocks: &[SampledBlock], into: &mut InUse) -> Vec<SampledBlock> {
        let mut unmatched = Vec::new();
        for block in blocks {
            if block.record_lost {
                into.lost.add(block.weight, block.size);
            } else if let Some(sample) = self.live.get(&block.sample_id) {
                // Live blocks are bounded by the region, so their rows keep
                // their links.
                let key =
                    HeapKey { stack: sample.stack, size: block.size, context: sample.context };
                into.by_stack.entry(key).or_default().add(block.weight, block.size);
            } else {
                unmatched.push(*block);
            }
        }
        unmatched
    }

    /// Forgets samples drained before snapshot `epoch` began whose blocks
    /// the snapshot's scan (`live_now`) did not see: they were freed (their
    /// free record may have been dropped). Samples drained later are kept.
    pub(crate) fn prune(&mut self, live_now: &[SampledBlock], epoch: u64) {
        let seen: hashbrown::HashSet<u64> = live_now.iter().map(|b| b.sample_id).collect();
        self.live.retain(|id, sample| sample.epoch >= epoch || seen.contains(id));
    }
}

/// A CPU sample's identity: stack, thread and trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CpuKey {
    pub stack: StackId,
    pub thread: u64,
    pub context: ContextWords,
}

impl Linked for CpuKey {
    fn context(&self) -> ContextWords {
        self.context
    }
    fn with_context(self, context: ContextWords) -> Self {
        Self { context, ..self }
    }
}

/// CPU time of one row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTime {
    /// Timer periods (the `samples` value).
    pub periods: u64,
    /// Periods times the period each was taken at (the `cpu` value): the
    /// rate may change while the profiler runs.
    pub nanos: u64,
}

impl Merge for CpuTime {
    fn merge(&mut self, other: &Self) {
        self.periods += other.periods;
        self.nanos = self.nanos.saturating_add(other.nanos);
    }
}

/// CPU records of one window, aggregated.
#[derive(Default)]
pub(crate) struct CpuAggregate {
    pub stacks: StackTable,
    /// CPU time per (stack, thread, context).
    pub time: HashMap<CpuKey, CpuTime>,
    /// Keeps the linked rows of `time` bounded.
    pub links: LinkBound<CpuKey>,
    /// The shortest and longest timer period among the samples (ns; the
    /// rate changes under a CPU sample budget).
    pub period_range: Option<(u64, u64)>,
}

impl CpuAggregate {
    /// Adds one CPU sample.
    pub(crate) fn add(&mut self, sample: &CpuSample<'_>) {
        debug_assert!(sample.flags & FLAG_LEAF_IS_PC != 0 || sample.frames.is_empty());
        let stack = self.stacks.intern(sample.frames);
        let periods = sample.weight.max(1);
        let add = CpuTime { periods, nanos: periods.saturating_mul(sample.period_ns) };
        let p = sample.period_ns;
        self.period_range =
            Some(self.period_range.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))));
        let key = CpuKey { stack, thread: sample.thread, context: sample.context };
        match self.time.entry(key) {
            Entry::Occupied(mut e) => e.get_mut().merge(&add),
            Entry::Vacant(e) => {
                e.insert(add);
                self.links.inserted(key, &mut self.time);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: u64, size: u64, weight: f64, frames: &[u64], flags: u64) -> HeapAlloc<'_> {
        HeapAlloc { sample_id: id, size, weight, thread: 1, flags, context: [0; 4], frames }
    }

    #[test]
    fn heap_alloc_free_and_in_use() {
        let mut h = HeapAggregate::default();
        h.add_alloc(&alloc(1, 100, 2.0, &[10, 20], 0));
        h.add_alloc(&alloc(2, 50, 4.0, &[10, 20], 0));
        h.add_alloc(&alloc(3, 10, 8.0, &[30], FLAG_UNTRACKED));
        assert_eq!(h.stacks.len(), 2);
        let s = h.stacks.intern(&[10, 20]);
        let at = |size| HeapKey { stack: s, size, context: [0; 4] };
        assert_eq!(h.alloc[&at(100)], Estimate { objects: 2.0, bytes: 200.0 });
        assert_eq!(h.alloc[&at(50)], Estimate { objects: 4.0, bytes: 200.0 });
        assert_eq!(h.known_live(), 2);
        h.add_free(1);
        // Block 2 is live; block 9 is live but its record is in flight; block
        // 8's record was lost.
        let epoch = h.begin_snapshot();
        let mut lost = SampledBlock::new(8, 16, 2.0);
        lost.record_lost = true;
        let live = [SampledBlock::new(2, 50, 4.0), SampledBlock::new(9, 7, 1.0), lost];
        let mut inuse = InUse::default();
        let unmatched = h.attribute(&live, &mut inuse);
        assert_eq!(inuse.by_stack[&at(50)], Estimate { objects: 4.0, bytes: 200.0 });
        assert_eq!(inuse.lost, Estimate { objects: 2.0, bytes: 32.0 });
        assert_eq!(unmatched, [SampledBlock::new(9, 7, 1.0)]);
        // Its record arrives after the scan: matched on the second try. A
        // record drained after the scan, for a block the scan did not see
        // (sampled after it), is not pruned either.
        h.add_alloc(&alloc(9, 7, 1.0, &[30], 0));
        h.add_alloc(&alloc(10, 7, 1.0, &[30], 0));
        assert!(h.attribute(&unmatched, &mut inuse).is_empty());
        h.prune(&live, epoch);
        assert_eq!(h.known_live(), 3, "2, 9 and the newer 10 stay");
        // A sample the region no longer holds is forgotten at the next snapshot.
        let epoch = h.begin_snapshot();
        h.prune(&[], epoch);
        assert_eq!(h.known_live(), 0);
    }

    #[test]
    fn alloc_windows_start_with_the_session_and_restart_at_each_take() {
        let mut h = HeapAggregate::default();
        h.add_alloc(&alloc(1, 100, 2.0, &[10], 0));
        let w = h.open_alloc_window();
        let other = h.open_alloc_window();
        h.add_alloc(&alloc(2, 100, 1.0, &[10], 0));
        h.add_alloc(&alloc(3, 8, 4.0, &[20], FLAG_UNTRACKED));
        let k10 = HeapKey { stack: h.stacks.intern(&[10]), size: 100, context: [0; 4] };
        let k20 = HeapKey { stack: h.stacks.intern(&[20]), size: 8, context: [0; 4] };
        // The first take covers everything since the start, as `alloc` does.
        let first = h.take_alloc_window(w).unwrap();
        assert_eq!(first.alloc[&k10], Estimate { objects: 3.0, bytes: 300.0 });
        assert_eq!(first.alloc[&k20], Estimate { objects: 4.0, bytes: 32.0 });
        assert_eq!(first.alloc, h.alloc);
        // Then only what came since; other windows and `alloc` are untouched.
        assert!(h.take_alloc_window(w).unwrap().alloc.is_empty());
        h.add_alloc(&alloc(4, 100, 1.0, &[10], 0));
        let second = h.take_alloc_window(w).unwrap();
        assert_eq!(second.alloc.len(), 1);
        assert_eq!(second.alloc[&k10], Estimate { objects: 1.0, bytes: 100.0 });
        assert_eq!(h.alloc[&k10], Estimate { objects: 4.0, bytes: 400.0 });
        assert_eq!(h.take_alloc_window(other).unwrap().alloc[&k10].objects, 4.0);
        // A take given back is merged with what came since.
        h.add_alloc(&alloc(6, 100, 1.0, &[10], 0));
        let third = h.take_alloc_window(w).unwrap();
        h.add_alloc(&alloc(7, 100, 2.0, &[10], 0));
        h.add_alloc(&alloc(8, 8, 1.0, &[20], 0));
        h.give_back_alloc_window(w, third);
        let fourth = h.take_alloc_window(w).unwrap();
        assert_eq!(fourth.alloc[&k10], Estimate { objects: 3.0, bytes: 300.0 });
        assert_eq!(fourth.alloc[&k20], Estimate { objects: 1.0, bytes: 8.0 });
        h.close_alloc_window(w);
        assert!(h.take_alloc_window(w).is_none());
        h.add_alloc(&alloc(5, 100, 1.0, &[10], 0));
        // `other` saw 6, 7 and 5 since its take (w's give-back is w's own).
        assert_eq!(h.take_alloc_window(other).unwrap().alloc[&k10].objects, 4.0);
    }

    #[test]
    fn alloc_window_links_are_bounded_too() {
        let mut h = HeapAggregate::default();
        let w = h.open_alloc_window();
        for i in 1..=MAX_LINKED_ROWS as u64 + 1 {
            h.add_alloc(&HeapAlloc { context: [1, i, 3, 7], ..alloc(i, 8, 1.0, &[5], 0) });
        }
        let taken = h.take_alloc_window(w).unwrap();
        assert_eq!(taken.links.folded, MAX_LINKED_ROWS as u64 / 2);
        assert_eq!(taken.alloc.len(), MAX_LINKED_ROWS / 2 + 2);
        let total: f64 = taken.alloc.values().map(|e| e.objects).sum();
        assert_eq!(total, MAX_LINKED_ROWS as f64 + 1.0);
    }

    #[test]
    fn cpu_sums_weights_per_stack_and_thread() {
        let mut c = CpuAggregate::default();
        let f = [1u64, 2];
        // The rate changed between the first two samples of thread 7.
        for (thread, weight, period_ns) in [(7, 1, 10), (7, 3, 20), (8, 0, 10)] {
            c.add(&CpuSample {
                thread,
                weight,
                period_ns,
                flags: FLAG_LEAF_IS_PC,
                context: [0; 4],
                frames: &f,
            });
        }
        let key = |thread| CpuKey { stack: 0, thread, context: [0; 4] };
        assert_eq!(c.time[&key(7)], CpuTime { periods: 4, nanos: 70 });
        assert_eq!(c.time[&key(8)], CpuTime { periods: 1, nanos: 10 }, "at least one period");
    }

    #[test]
    fn contexts_split_rows_and_old_links_fold() {
        let mut h = HeapAggregate::default();
        let linked = |i: u64| [1, i, 3, 7];
        h.add_alloc(&HeapAlloc { context: linked(0), ..alloc(1, 8, 1.0, &[5], 0) });
        h.add_alloc(&HeapAlloc { context: [0, 0, 0, 7], ..alloc(2, 8, 1.0, &[5], 0) });
        assert_eq!(h.alloc.len(), 2, "one row per context");
        // In-use rows keep the context of the block's own sample.
        let mut inuse = InUse::default();
        let _ = h.attribute(&[SampledBlock::new(1, 8, 1.0)], &mut inuse);
        assert!(inuse.by_stack.keys().all(|k| k.context == linked(0)));
        // Past the bound the oldest half of the linked rows fold into the
        // name-only row; the totals stay.
        for i in 1..=MAX_LINKED_ROWS as u64 {
            h.add_alloc(&HeapAlloc { context: linked(i), ..alloc(10 + i, 8, 1.0, &[5], 0) });
        }
        let total: f64 = h.alloc.values().map(|e| e.objects).sum();
        assert_eq!(total, MAX_LINKED_ROWS as f64 + 2.0);
        assert_eq!(h.alloc_links.folded, MAX_LINKED_ROWS as u64 / 2);
        let unlinked = HeapKey { stack: 0, size: 8, context: [0, 0, 0, 7] };
        assert_eq!(h.alloc[&unlinked].objects, 1.0 + (MAX_LINKED_ROWS / 2) as f64);
        assert_eq!(h.alloc.len(), 1 + MAX_LINKED_ROWS / 2 + 1);
    }
}
