//! Bounded, lock-free rings of 64-bit words that carry variable-length records
//! from the hot paths (allocator slow path, SIGPROF handler) to one drainer.
//!
//! # Algorithm
//!
//! Each [`Ring`] is a Lamport single-producer/single-consumer queue over a
//! power-of-two array of words, with monotonically increasing `head` (words ever
//! published) and `tail` (words ever consumed) indices, like the perf mmap ring
//! and Go's `profBuf`. A record is one header word followed by its payload; it
//! is written word by word at `index & (WORDS - 1)`, so it may wrap around the
//! end of the array and no padding records are needed:
//!
//! ```text
//!            tail (consumer)                   head (producer)
//!              v                                 v
//!  buf: [.. ][hdr|p0 p1 p2][hdr|p0][hdr|p0 p1 ..][ free ............ ]
//!  hdr = payload_len (low 32 bits) | tag (high 32 bits)
//! ```
//!
//! The producer publishes a record with one `Release` store of `head`; the
//! consumer frees space with one `Release` store of `tail`. A record that does
//! not fit is **dropped and counted**, never waited for.
//!
//! # Why striped rings and not one ring per thread
//!
//! The obvious design is one SPSC ring per thread in a registration table. An
//! allocator whose thread-local state must be `const` and free of `Drop`
//! (rust-lang/rust#116390) has no hook at thread exit, so per-thread rings leak
//! under thread churn. [`RingSet`] instead holds `N` rings, each with a
//! producer *claim flag*: a producer takes a free ring with one compare-exchange
//! (starting at a per-thread hint, trying at most every ring once), pushes, and
//! releases it. Each ring therefore still has exactly one producer at a time, so
//! the SPSC algorithm above holds unchanged; nobody ever waits (a busy ring is
//! skipped, never spun on), so a signal handler that interrupts a producer
//! cannot deadlock; and there is no per-thread state to reclaim. heapless's
//! `mpmc` queue is not used: it is deprecated as not lock-free
//! (rust-embedded/heapless#583).

use crate::pad::CachePadded;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, Word};

/// Why a record was not pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Every ring was full or busy; the record was dropped and counted.
    Full,
    /// The record is longer than a ring can ever hold.
    TooLong,
}

/// A record read back by the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The tag the producer gave.
    pub tag: u32,
    /// The payload words.
    pub words: &'a [u64],
}

/// One single-producer, single-consumer ring of `WORDS` words.
///
/// Use it through [`RingSet`], which enforces the single producer and single
/// consumer with claim flags; the raw push and pop here are `unsafe` because
/// they rely on that exclusivity.
pub struct Ring<const WORDS: usize> {
    /// Words ever published. Written only by the current producer.
    head: CachePadded<AtomicUsize>,
    /// Set while a producer owns the ring (same line as `head`: the producer
    /// touches both).
    claimed: AtomicBool,
    /// Words ever consumed. Written only by the consumer.
    tail: CachePadded<AtomicUsize>,
    buf: [Word; WORDS],
}

macro_rules! maybe_const_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$m])* $vis const fn $name() -> $ret $body
        #[cfg(loom)]
        $(#[$m])* $vis fn $name() -> $ret $body
    };
}

impl<const WORDS: usize> Ring<WORDS> {
    const MASK: usize = {
        assert!(WORDS.is_power_of_two(), "ring size must be a power of two");
        assert!(WORDS >= 2, "ring must hold at least two words");
        WORDS - 1
    };

    maybe_const_fn! {
        /// An empty ring.
        pub fn new() -> Self {
            Self {
                head: CachePadded::new(AtomicUsize::new(0)),
                claimed: AtomicBool::new(false),
                tail: CachePadded::new(AtomicUsize::new(0)),
                buf: {
                    #[cfg(not(loom))]
                    { [const { Word::new() }; WORDS] }
                    #[cfg(loom)]
                    { core::array::from_fn(|_| Word::new()) }
                },
            }
        }
    }

    /// Words currently queued (a racy snapshot, for statistics).
    pub fn len_words(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        head.wrapping_sub(tail)
    }

    /// Appends one record made of the concatenation of `parts`.
    ///
    /// Returns `false` (and writes nothing) if it does not fit.
    /// Async-signal-safe and allocation-free: plain atomic loads and stores.
    ///
    /// # Safety
    ///
    /// The caller must be the ring's only producer for the duration of the call.
    #[inline]
    unsafe fn push(&self, tag: u32, parts: &[&[u64]]) -> bool {
        let mut payload = 0usize;
        for part in parts {
            payload += part.len();
        }
        let len = 1 + payload;
        // Only this producer writes `head`; the claim flag's Acquire made the
        // previous producer's store visible.
        let head = self.head.load(Ordering::Relaxed);
        // Acquire: the consumer's reads of the words it freed happen before we
        // overwrite them.
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) + len > WORDS {
            return false;
        }
        let header = payload as u64 | (u64::from(tag) << 32);
        self.buf[head & Self::MASK].set(header);
        let mut at = head.wrapping_add(1);
        for part in parts {
            for &word in *part {
                self.buf[at & Self::MASK].set(word);
                at = at.wrapping_add(1);
            }
        }
        // Release: the words above are visible before the new head.
        self.head.store(head.wrapping_add(len), Ordering::Release);
        true
    }

    /// Removes the oldest record, copying its payload into `out`.
    ///
    /// Returns `None` when the ring is empty. A record longer than `out` is
    /// skipped on its own and reported as `Some(Err(()))`; a header whose
    /// length exceeds what is queued (never written by a correct producer)
    /// discards everything queued, also as `Some(Err(()))`.
    ///
    /// # Safety
    ///
    /// The caller must be the ring's only consumer for the duration of the call.
    unsafe fn pop<'o>(&self, out: &'o mut [u64]) -> Option<Result<Record<'o>, ()>> {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release of `head`.
        let head = self.head.load(Ordering::Acquire);
        let queued = head.wrapping_sub(tail);
        if queued == 0 {
            return None;
        }
        let header = self.buf[tail & Self::MASK].get();
        let len = (header & 0xffff_ffff) as usize;
        let tag = (header >> 32) as u32;
        if len + 1 > queued {
            // Not a record a correct producer writes: discard everything queued
            // rather than read garbage as records.
            self.tail.store(head, Ordering::Release);
            return Some(Err(()));
        }
        if len > out.len() {
            // A record longer than the consumer expects: skip just this one.
            self.tail.store(tail.wrapping_add(1 + len), Ordering::Release);
            return Some(Err(()));
        }
        let mut at = tail.wrapping_add(1);
        for slot in out[..len].iter_mut() {
            *slot = self.buf[at & Self::MASK].get();
            at = at.wrapping_add(1);
        }
        // Release: our reads are done before the producer may reuse the words.
        self.tail.store(at, Ordering::Release);
        Some(Ok(Record { tag, words: &out[..len] }))
    }
}

#[cfg(not(loom))]
impl<const WORDS: usize> Default for Ring<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

/// `N` striped [`Ring`]s of `WORDS` words each, shared by any number of
/// producers and drained by one consumer at a time.
///
/// ```text
///  producers (any thread, signal handlers)     consumer (drainer thread)
///   push(hint) ─► try ring[hint % N], then the next … ─┐
///                 claim flag: one CAS, never waited on  ├─► drain(): ring 0 .. N-1
///   all busy/full ─► dropped += 1 ──────────────────────┘   (claim flag too)
/// ```
pub struct RingSet<const N: usize, const WORDS: usize> {
    rings: [Ring<WORDS>; N],
    consumer: AtomicBool,
    dropped: CachePadded<AtomicU64>,
    corrupt: AtomicU64,
}

impl<const N: usize, const WORDS: usize> RingSet<N, WORDS> {
    /// The longest payload one record may carry.
    pub const MAX_PAYLOAD: usize = WORDS - 1;

    maybe_const_fn! {
        /// `N` empty rings.
        pub fn new() -> Self {
            Self {
                rings: {
                    #[cfg(not(loom))]
                    { [const { Ring::new() }; N] }
                    #[cfg(loom)]
                    { core::array::from_fn(|_| Ring::new()) }
                },
                consumer: AtomicBool::new(false),
                dropped: CachePadded::new(AtomicU64::new(0)),
                corrupt: AtomicU64::new(0),
            }
        }
    }

    /// Pushes one record made of `parts` into the first ring, starting at
    /// `hint`, that is free and has room. Never blocks: if every ring is busy
    /// or full, the record is dropped and counted ([`RingSet::dropped`]).
    ///
    /// Async-signal-safe, lock-free and allocation-free: at most `N`
    /// compare-exchanges plus plain atomic loads and stores.
    #[inline]
    pub fn push(&self, hint: usize, tag: u32, parts: &[&[u64]]) -> Result<(), PushError> {
        let mut payload = 0usize;
        for part in parts {
            payload += part.len();
        }
        if payload > Self::MAX_PAYLOAD {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(PushError::TooLong);
        }
        for i in 0..N {
            let ring = &self.rings[hint.wrapping_add(i) % N];
            if ring
                .claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: the claim flag is ours until the Release store below, so
            // this is the ring's only producer.
            let pushed = unsafe { ring.push(tag, parts) };
            ring.claimed.store(false, Ordering::Release);
            if pushed {
                return Ok(());
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Err(PushError::Full)
    }

    /// Pops every record that was queued when the call began, in ring order,
    /// handing each to `f`. `scratch` must hold [`Self::MAX_PAYLOAD`] words.
    ///
    /// Returns the number of records drained, or `None` if another consumer is
    /// draining right now (the set has one consumer at a time). Records
    /// longer than `scratch` are skipped and counted in [`RingSet::corrupt`].
    pub fn drain(&self, scratch: &mut [u64], mut f: impl FnMut(Record<'_>)) -> Option<usize> {
        if self
            .consumer
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let mut drained = 0usize;
        for ring in &self.rings {
            // Bound the work to what is queued now, so a fast producer cannot
            // keep the consumer here forever.
            let mut budget = ring.len_words();
            while budget > 0 {
                // SAFETY: the consumer flag makes us the only consumer.
                match unsafe { ring.pop(scratch) } {
                    None => break,
                    Some(Ok(record)) => {
                        budget = budget.saturating_sub(record.words.len() + 1);
                        drained += 1;
                        f(record);
                    }
                    Some(Err(())) => {
                        // Each skip consumed at least one word: still bounded.
                        budget = budget.saturating_sub(1);
                        self.corrupt.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.consumer.store(false, Ordering::Release);
        Some(drained)
    }

    /// Records dropped because every ring was full or busy, since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Times the consumer found a malformed record and discarded a ring's
    /// contents (zero unless there is a bug).
    pub fn corrupt(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Words queued across all rings (a racy snapshot).
    pub fn queued_words(&self) -> usize {
        self.rings.iter().map(Ring::len_words).sum()
    }
}

#[cfg(not(loom))]
impl<const N: usize, const WORDS: usize> Default for RingSet<N, WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_across_the_wrap() {
        let set: RingSet<1, 16> = RingSet::new();
        let mut scratch = [0u64; 15];
        for round in 0..50u64 {
            let payload = [round, round + 1, round + 2];
            set.push(0, 7, &[&payload[..1], &payload[1..]]).unwrap();
            let mut seen = 0;
            set.drain(&mut scratch, |r| {
                assert_eq!(r.tag, 7);
                assert_eq!(r.words, &payload);
                seen += 1;
            })
            .unwrap();
            assert_eq!(seen, 1);
        }
    }

    #[test]
    fn full_rings_drop_and_count() {
        let set: RingSet<2, 8> = RingSet::new();
        let rec = [1u64, 2, 3];
        // Each ring holds two 4-word records.
        for _ in 0..4 {
            set.push(0, 1, &[&rec]).unwrap();
        }
        assert_eq!(set.push(0, 1, &[&rec]), Err(PushError::Full));
        assert_eq!(set.dropped(), 1);
        let mut scratch = [0u64; 7];
        assert_eq!(set.drain(&mut scratch, |_| {}), Some(4));
        set.push(1, 1, &[&rec]).unwrap();
    }

    #[test]
    fn too_long_is_rejected() {
        let set: RingSet<1, 8> = RingSet::new();
        assert_eq!(set.push(0, 1, &[&[0u64; 8]]), Err(PushError::TooLong));
        assert_eq!(set.dropped(), 1);
        set.push(0, 1, &[&[1u64; 3]]).unwrap();
        set.push(0, 2, &[&[2u64; 1]]).unwrap();
        let mut short = [0u64; 2];
        let mut tags = [0u32; 2];
        let mut n = 0;
        assert_eq!(
            set.drain(&mut short, |r| {
                tags[n] = r.tag;
                n += 1;
            }),
            Some(1)
        );
        assert_eq!(tags, [2, 0], "only the record longer than the scratch is skipped");
        assert_eq!(set.corrupt(), 1);
    }

    #[test]
    fn busy_ring_is_skipped_not_waited_on() {
        let set: RingSet<2, 8> = RingSet::new();
        set.rings[0].claimed.store(true, Ordering::Relaxed);
        set.push(0, 3, &[&[9]]).unwrap();
        assert_eq!(set.rings[1].len_words(), 2);
        set.rings[1].claimed.store(true, Ordering::Relaxed);
        assert_eq!(set.push(0, 3, &[&[9]]), Err(PushError::Full));
    }

    #[test]
    fn concurrent_producers_lose_nothing_but_counted_drops() {
        extern crate std;
        use std::sync::Arc;
        use std::vec::Vec;
        let set: Arc<RingSet<4, 256>> = Arc::new(RingSet::new());
        let producers: Vec<_> = (0..4u64)
            .map(|t| {
                let set = Arc::clone(&set);
                std::thread::spawn(move || {
                    let mut pushed = 0u64;
                    for i in 0..20_000u64 {
                        if set.push(t as usize, 2, &[&[t, i, t ^ i]]).is_ok() {
                            pushed += 1;
                        }
                    }
                    pushed
                })
            })
            .collect();
        let mut scratch = [0u64; 255];
        let mut received = 0u64;
        let mut check = |r: Record<'_>| {
            assert_eq!(r.words.len(), 3);
            assert_eq!(r.words[0] ^ r.words[1], r.words[2]);
            received += 1;
        };
        while producers.iter().any(|p| !p.is_finished()) {
            set.drain(&mut scratch, &mut check);
        }
        let pushed: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        set.drain(&mut scratch, &mut check);
        assert_eq!(received, pushed);
        assert_eq!(pushed + set.dropped(), 80_000);
        assert_eq!(set.corrupt(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two producers and the consumer race on a 2-ring set small enough to
    /// wrap. The consumer drains *while* the producers push (it keeps going
    /// until every record has arrived or been counted as dropped), and the
    /// ring's data words are loom cells, so any access the head/tail protocol
    /// fails to order is reported as a race. (Checked: weakening the
    /// producer's Release on `head` makes this test fail.)
    #[test]
    fn loom_two_producers_one_consumer() {
        loom::model(|| {
            let set: Arc<RingSet<2, 4>> = Arc::new(RingSet::new());
            let handles: [_; 2] = core::array::from_fn(|t| {
                let set = set.clone();
                loom::thread::spawn(move || {
                    for i in 0..2u64 {
                        let v = (t as u64) << 8 | i;
                        let _ = set.push(t, 5, &[&[v, !v]]);
                    }
                })
            });
            let mut scratch = [0u64; 3];
            let mut got = 0u64;
            while got + set.dropped() < 4 {
                set.drain(&mut scratch, |r: Record<'_>| {
                    assert_eq!(r.tag, 5);
                    assert_eq!(r.words[1], !r.words[0]);
                    got += 1;
                });
                loom::thread::yield_now();
            }
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(got + set.dropped(), 4);
            assert!(got >= 2, "each producer's first push finds its own ring empty");
        });
    }
}
