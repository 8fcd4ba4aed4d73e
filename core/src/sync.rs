//! Atomics shim: `core::sync::atomic` normally, `loom`'s model-checked atomics
//! under `--cfg loom` (as `bytes` and `crossbeam` do), so the ring and the
//! sampled-block region can be model-checked without changing their code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

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
