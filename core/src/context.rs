//! The trace context a sample carries: which trace and span were active on
//! the thread when it was taken.
//!
//! ```text
//!  thread T: set_context(trace, span) ──writes──► ContextSlot (T's thread-local, in `lowprof`)
//!                                       seq │ trace_hi │ trace_lo │ span │ name key
//!  on T: SIGPROF handler / allocator slow path ──reads──┘ via CONTEXT_SOURCE (a fn pointer)
//! ```
//!
//! The slot is written and read by the same thread only: a signal handler
//! interrupts the writer, never runs beside it. So a sequence counter and
//! compiler (signal) fences make a torn read detectable: an odd or changed
//! sequence means an update was in progress, and the reader takes "no
//! context" rather than waiting (the writer cannot run until the handler
//! returns). No lock, no allocation, async-signal-safe. A loom model checks
//! the protocol with the handler run as another thread (`loom_tests`).
//!
//! core has no thread-locals (that needs std), so the slot lives in the
//! `lowprof` crate, which registers a reader in [`CONTEXT_SOURCE`]; the
//! sampler and the allocator call [`current`] when they record a sample.

use crate::event::ContextWords;
#[cfg(not(loom))]
use crate::sync::AtomicUsize;
use crate::sync::{AtomicU64, Ordering, signal_fence};

/// No trace context: all zeros (W3C trace and span ids are never all zero).
pub const NONE: ContextWords = [0; 4];

/// One thread's trace context.
#[derive(Debug)]
pub struct ContextSlot {
    seq: AtomicU64,
    words: [AtomicU64; 4],
}

impl ContextSlot {
    /// An empty slot.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self { seq: AtomicU64::new(0), words: [const { AtomicU64::new(0) }; 4] }
    }

    /// An empty slot.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self { seq: AtomicU64::new(0), words: core::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// Stores `words`. Owner thread only; allocation-free.
    #[inline]
    pub fn set(&self, words: ContextWords) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        signal_fence(Ordering::SeqCst);
        for (slot, w) in self.words.iter().zip(words) {
            slot.store(w, Ordering::Relaxed);
        }
        signal_fence(Ordering::SeqCst);
        self.seq.store(seq.wrapping_add(2), Ordering::Relaxed);
    }

    /// The stored words, or [`NONE`] if an update is in progress (only
    /// possible when a signal handler interrupted `set` on this thread).
    /// Async-signal-safe, allocation-free.
    #[inline]
    pub fn get(&self) -> ContextWords {
        let s1 = self.seq.load(Ordering::Relaxed);
        if s1 & 1 == 1 {
            return NONE;
        }
        signal_fence(Ordering::SeqCst);
        let words = [
            self.words[0].load(Ordering::Relaxed),
            self.words[1].load(Ordering::Relaxed),
            self.words[2].load(Ordering::Relaxed),
            self.words[3].load(Ordering::Relaxed),
        ];
        signal_fence(Ordering::SeqCst);
        if self.seq.load(Ordering::Relaxed) == s1 { words } else { NONE }
    }
}

impl Default for ContextSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// Packs a 16-byte trace id, an 8-byte span id and a span-name key (0: no
/// name) into record words (big-endian, so the words read as the ids' hex).
pub fn pack(trace_id: [u8; 16], span_id: [u8; 8], name_key: u64) -> ContextWords {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&trace_id[..8]);
    lo.copy_from_slice(&trace_id[8..]);
    [u64::from_be_bytes(hi), u64::from_be_bytes(lo), u64::from_be_bytes(span_id), name_key]
}

/// The trace and span ids of packed words (the inverse of [`pack`] but for
/// the name key, which is `words[3]`).
pub fn unpack(words: ContextWords) -> ([u8; 16], [u8; 8]) {
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&words[0].to_be_bytes());
    trace[8..].copy_from_slice(&words[1].to_be_bytes());
    (trace, words[2].to_be_bytes())
}

/// A `fn() -> ContextWords` that reads the calling thread's context (0:
/// none registered). Set by the `lowprof` crate.
#[cfg(not(loom))]
pub static CONTEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Registers the function that reads the calling thread's context. It must
/// be async-signal-safe and allocation-free (it runs in signal handlers and
/// inside the allocator).
#[cfg(not(loom))]
pub fn set_source(source: fn() -> ContextWords) {
    CONTEXT_SOURCE.store(source as usize, Ordering::Release);
}

/// The calling thread's trace context, or [`NONE`]. Async-signal-safe and
/// allocation-free as long as the registered source is.
#[cfg(not(loom))]
#[inline]
pub fn current() -> ContextWords {
    let source = CONTEXT_SOURCE.load(Ordering::Acquire);
    if source == 0 {
        return NONE;
    }
    // SAFETY: only `set_source` stores here, and only the address of a
    // `fn() -> ContextWords`.
    let source: fn() -> ContextWords =
        unsafe { core::mem::transmute::<usize, fn() -> ContextWords>(source) };
    source()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_slot() {
        let trace = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let span = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22];
        let w = pack(trace, span, 9);
        assert_eq!(w[0], 0x0102_0304_0506_0708);
        assert_eq!(w[3], 9);
        assert_eq!(unpack(w), (trace, span));
        let slot = ContextSlot::new();
        assert_eq!(slot.get(), NONE);
        slot.set(w);
        assert_eq!(slot.get(), w);
        // An update in progress (odd sequence) reads as no context.
        slot.seq.store(slot.seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        assert_eq!(slot.get(), NONE);
    }

    #[test]
    fn source_is_called() {
        assert_eq!(current(), NONE);
        fn fixed() -> ContextWords {
            [1, 2, 3, 4]
        }
        set_source(fixed);
        assert_eq!(current(), [1, 2, 3, 4]);
        CONTEXT_SOURCE.store(0, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Round `r`'s context: every word names the round and its own index.
    fn round(r: u64) -> ContextWords {
        [r << 8, r << 8 | 1, r << 8 | 2, r << 8 | 3]
    }

    /// The owner sets rounds 2 and 3 over round 1 while a reader reads the
    /// slot. The reader must get [`NONE`] (an update in progress) or one
    /// round's context whole; across the executions it must see all four
    /// outcomes (else the model never raced the writer).
    ///
    /// The slot is meant for one thread and its signal handler; here the
    /// handler is another thread, which may interleave with `set` at any
    /// point rather than run whole at one point, and `signal_fence` is the
    /// thread fence that signal fences are defined by (see `crate::sync`).
    /// Checked: this fails with the sequence re-check removed, with the odd
    /// check removed, with any one of the four fences removed, and with the
    /// fences left as `compiler_fence` (so a reader on another thread is not
    /// safe; the slot does not promise that).
    ///
    /// The reader is the spawned thread: with the writer spawned, loom 0.7's
    /// DPOR never runs `set`'s sequence store before the reader's first load,
    /// because `set` loads the sequence just before storing it (loom issue
    /// #392), and the model saw only [`NONE`] and round 1.
    #[test]
    fn loom_context_slot_never_torn() {
        use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
        // Bit 0: NONE; bit r: round r. Outside the model.
        static SEEN: AtomicU32 = AtomicU32::new(0);
        loom::model(|| {
            let slot = Arc::new(ContextSlot::new());
            slot.set(round(1));
            let reader = {
                let slot = slot.clone();
                loom::thread::spawn(move || {
                    let got = slot.get();
                    let r = if got == NONE {
                        0
                    } else {
                        (1..=3)
                            .find(|&r| got == round(r))
                            .unwrap_or_else(|| panic!("torn or never-set context: {got:x?}"))
                    };
                    SEEN.fetch_or(1 << r, Relaxed);
                })
            };
            slot.set(round(2));
            slot.set(round(3));
            reader.join().unwrap();
            assert_eq!(slot.get(), round(3));
        });
        assert_eq!(SEEN.load(Relaxed), 0b1111, "outcomes seen (bit 0: NONE, bit r: round r)");
    }
}
