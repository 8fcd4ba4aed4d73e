//! Record layouts carried through the rings, as 64-bit words.
//!
//! ```text
//!  tag HEAP_ALLOC  [sample_id][size][weight f64 bits][thread][flags][ctx0..ctx3][frames…]
//!  tag HEAP_FREE   [sample_id]
//!  tag CPU         [thread][weight][period ns][flags][ctx0..ctx3][frames…]
//! ```
//!
//! `frames` are code addresses, leaf first. With [`FLAG_LEAF_IS_PC`] the first
//! frame is the exact interrupted instruction (CPU samples); otherwise every
//! frame is a return address (the symbolizer looks up `address - 1`, inside the
//! call instruction). `ctx0..3` hold the trace context (trace id as two
//! big-endian words, span id, span-name key: [`crate::context`]) when one is
//! set, else zeros. A CPU sample's `period` is the timer period it was taken
//! at: the rate can change while the profiler runs (adaptive budget), and
//! each sample keeps the weight of its own period.

/// A sampled allocation.
pub const TAG_HEAP_ALLOC: u32 = 1;
/// The end of a sampled allocation.
pub const TAG_HEAP_FREE: u32 = 2;
/// A CPU sample.
pub const TAG_CPU: u32 = 3;

/// The first frame is the interrupted program counter, not a return address.
pub const FLAG_LEAF_IS_PC: u64 = 1;
/// The walk stopped because the stack had more frames than fit.
pub const FLAG_TRUNCATED: u64 = 2;
/// A sampled allocation whose block could not be tracked for the in-use
/// view (no room in the sampled-block region): it counts towards the
/// allocation totals only.
pub const FLAG_UNTRACKED: u64 = 4;

/// Trace context words: 16-byte trace id as two words, 8-byte span id, and
/// the key of the span name (0: none).
pub type ContextWords = [u64; 4];

/// Words before the frames of a [`HeapAlloc`] record.
pub const HEAP_ALLOC_HEADER: usize = 9;
/// Words before the frames of a [`CpuSample`] record.
pub const CPU_HEADER: usize = 8;

/// A sampled allocation, as decoded by the drainer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeapAlloc<'a> {
    /// Identifier shared with the block's region header (never 0).
    pub sample_id: u64,
    /// Requested size.
    pub size: u64,
    /// Unbiasing weight.
    pub weight: f64,
    /// The allocating thread (its OS thread id where known, else 0).
    pub thread: u64,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Trace context.
    pub context: ContextWords,
    /// Code addresses, leaf first.
    pub frames: &'a [u64],
}

impl<'a> HeapAlloc<'a> {
    /// The words before the frames.
    pub fn header_words(&self) -> [u64; HEAP_ALLOC_HEADER] {
        [
            self.sample_id,
            self.size,
            self.weight.to_bits(),
            self.thread,
            self.flags,
            self.context[0],
            self.context[1],
            self.context[2],
            self.context[3],
        ]
    }

    /// Decodes a [`TAG_HEAP_ALLOC`] payload.
    pub fn decode(words: &'a [u64]) -> Option<Self> {
        let (h, frames) = words.split_at_checked(HEAP_ALLOC_HEADER)?;
        Some(Self {
            sample_id: h[0],
            size: h[1],
            weight: f64::from_bits(h[2]),
            thread: h[3],
            flags: h[4],
            context: [h[5], h[6], h[7], h[8]],
            frames,
        })
    }
}

/// A CPU sample, as decoded by the drainer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSample<'a> {
    /// The interrupted thread's OS id.
    pub thread: u64,
    /// Timer periods this sample stands for (`1 + overrun`).
    pub weight: u64,
    /// The timer period in nanoseconds.
    pub period_ns: u64,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Trace context.
    pub context: ContextWords,
    /// Code addresses, leaf first.
    pub frames: &'a [u64],
}

impl<'a> CpuSample<'a> {
    /// The words before the frames.
    pub fn header_words(&self) -> [u64; CPU_HEADER] {
        [
            self.thread,
            self.weight,
            self.period_ns,
            self.flags,
            self.context[0],
            self.context[1],
            self.context[2],
            self.context[3],
        ]
    }

    /// Decodes a [`TAG_CPU`] payload.
    pub fn decode(words: &'a [u64]) -> Option<Self> {
        let (h, frames) = words.split_at_checked(CPU_HEADER)?;
        Some(Self {
            thread: h[0],
            weight: h[1],
            period_ns: h[2],
            flags: h[3],
            context: [h[4], h[5], h[6], h[7]],
            frames,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn heap_alloc_round_trip() {
        let frames = [1u64, 2, 3];
        let e = HeapAlloc {
            sample_id: 5,
            size: 4096,
            weight: 128.5,
            thread: 77,
            flags: 0,
            context: [1, 2, 3, 4],
            frames: &frames,
        };
        let mut words = e.header_words().to_vec_in_test();
        words.extend_from_slice(&frames);
        assert_eq!(HeapAlloc::decode(&words), Some(e));
        assert_eq!(HeapAlloc::decode(&words[..3]), None);
    }

    #[test]
    fn cpu_round_trip() {
        let frames = [9u64];
        let e = CpuSample {
            thread: 3,
            weight: 2,
            period_ns: 10_101_010,
            flags: FLAG_LEAF_IS_PC,
            context: [5, 6, 7, 8],
            frames: &frames,
        };
        let mut words = e.header_words().to_vec_in_test();
        words.extend_from_slice(&frames);
        assert_eq!(CpuSample::decode(&words), Some(e));
    }

    trait ToVec {
        fn to_vec_in_test(&self) -> std::vec::Vec<u64>;
    }
    extern crate std;
    impl<const N: usize> ToVec for [u64; N] {
        fn to_vec_in_test(&self) -> std::vec::Vec<u64> {
            self.iter().copied().collect()
        }
    }
}
