//! Atomics shim: `core::sync::atomic` normally, `loom`'s model-checked atomics
//! under `--cfg loom` (as `bytes` and `crossbeam` do), so the ring and the
//! sampled-block region can be model-checked without changing their code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};

/// Builds an array of atomics: `const` normally, a runtime loop under loom
/// (loom's atomics are not const-constructible).
#[cfg(not(loom))]
macro_rules! atomic_array {
    ($ty:ident, $n:expr) => {
        [const { $ty::new(0) }; $n]
    };
}
#[cfg(loom)]
macro_rules! atomic_array {
    ($ty:ident, $n:expr) => {
        core::array::from_fn(|_| $ty::new(0))
    };
}
pub(crate) use atomic_array;

/// One data word of a ring. Normally a relaxed atomic (so even a protocol
/// bug could never be undefined behaviour); under loom an `UnsafeCell`, so
/// the model checker reports any access that the ring's head/tail protocol
/// does not order — loom detects races on cells, not stale relaxed loads.
#[cfg(not(loom))]
pub(crate) struct Word(AtomicU64);

#[cfg(not(loom))]
impl Word {
    pub(crate) const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }
}

#[cfg(loom)]
pub(crate) struct Word(loom::cell::UnsafeCell<u64>);

// SAFETY: only under loom, which checks every access to the cell for races.
#[cfg(loom)]
unsafe impl Sync for Word {}

#[cfg(loom)]
impl Word {
    pub(crate) fn new() -> Self {
        Self(loom::cell::UnsafeCell::new(0))
    }
    pub(crate) fn get(&self) -> u64 {
        // SAFETY: loom checks that no write to this cell is concurrent.
        self.0.with(|p| unsafe { *p })
    }
    pub(crate) fn set(&self, v: u64) {
        // SAFETY: loom checks that no other access to this cell is concurrent.
        self.0.with_mut(|p| unsafe { *p = v })
    }
}
