//! Atomics shim: `core::sync::atomic` normally, `loom`'s model-checked atomics
//! under `--cfg loom` (as `bytes` and `crossbeam` do), so the ring, the
//! sampled-block region and the seqlocks can be model-checked without
//! changing their code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};

/// A signal fence: orders this thread's accesses against a signal handler
/// that interrupts it, and emits no instruction (`compiler_fence`, C++'s
/// `atomic_signal_fence`). C++ defines it as the thread fence of the same
/// ordering, restricted to a thread and the handlers that run on it. A loom
/// model runs the handler as another thread, so there it is that thread
/// fence. A model that passes this way shows a protocol correct under
/// signal-fence semantics, not safe against a reader on another thread: on
/// weakly ordered hardware a `compiler_fence` orders nothing between cores.
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::compiler_fence as signal_fence;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence as signal_fence;

/// One turn of a spin-wait: a pause hint normally; under loom a yield, so
/// the model checker runs the thread being waited for.
#[inline(always)]
pub(crate) fn spin() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

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
