//! Counters read by the drainer and written on hot paths.
//!
//! Two kinds:
//! - [`Counter`]: shared by many writers; `fetch_add` (a locked RMW). Only on
//!   rare paths (drops, slow paths).
//! - [`OwnedCounter`]: written by exactly one thread, read by any. The owner
//!   updates it with a relaxed load and store — a plain `mov`/`add`/`mov`, no
//!   `lock` prefix, no cache-line contention — so it can sit on the allocator
//!   fast path, while the drainer still reads an exact, untorn value.

use crate::sync::{AtomicU64, Ordering};

/// A counter any thread may add to.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Zero.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// Zero.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// Adds `n`. Async-signal-safe, allocation-free.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Returns the value and resets it to zero.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter with one writer (its owning thread) and any number of readers.
#[derive(Debug)]
pub struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    /// Zero.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// Zero.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// Adds `n` without a locked instruction. Async-signal-safe,
    /// allocation-free.
    ///
    /// Correct only when the calling thread is the sole writer; a second
    /// concurrent writer makes updates get lost (never undefined behaviour).
    #[inline(always)]
    pub fn add_owned(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }
    /// The current value.
    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the value. Owner only.
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

impl Default for OwnedCounter {
    fn default() -> Self {
        Self::new()
    }
}
