//! Cache-line padding, so that fields written by different threads (a ring's
//! producer index and its consumer index) never share a line.
//!
//! 128 bytes rather than 64: on x86_64 the L2 spatial prefetcher pulls lines in
//! pairs, which is why crossbeam-utils pads to 128 there too.

use core::ops::Deref;

/// Aligns and pads `T` to 128 bytes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> CachePadded<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
