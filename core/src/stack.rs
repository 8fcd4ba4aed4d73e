//! A fixed-capacity call stack, filled by the frame-pointer walker on the hot
//! paths and copied into ring records.
//!
//! The frames are left uninitialised until pushed: creating a stack in a
//! signal handler must not cost a 1 KiB `memset`. Nothing on these paths can
//! panic (no indexing; pushes past capacity are refused and marked).

use core::mem::MaybeUninit;

/// Deepest stack recorded; deeper stacks are truncated at the root end (the
/// leaf frames, which say where time or memory went, are kept).
pub const MAX_FRAMES: usize = 128;

/// Up to `N` code addresses, leaf first.
pub struct Stack<const N: usize = MAX_FRAMES> {
    len: usize,
    truncated: bool,
    /// `frames[..len]` are initialised.
    frames: [MaybeUninit<u64>; N],
}

impl<const N: usize> Clone for Stack<N> {
    fn clone(&self) -> Self {
        let mut copy = Self::new();
        for &f in self.as_slice() {
            copy.push(f);
        }
        copy.truncated = self.truncated;
        copy
    }
}

impl<const N: usize> Stack<N> {
    /// An empty stack. Allocation-free, async-signal-safe, and does not touch
    /// the frame storage.
    #[inline(always)]
    pub const fn new() -> Self {
        Self { len: 0, truncated: false, frames: [const { MaybeUninit::uninit() }; N] }
    }

    /// Appends a frame; returns `false` (and marks the stack truncated) when full.
    #[inline]
    pub fn push(&mut self, addr: u64) -> bool {
        match self.frames.get_mut(self.len) {
            Some(slot) => {
                slot.write(addr);
                self.len += 1;
                true
            }
            None => {
                self.truncated = true;
                false
            }
        }
    }

    /// The frames, leaf first.
    #[inline]
    pub fn as_slice(&self) -> &[u64] {
        let init = self.len.min(N);
        // SAFETY: `frames[..len]` were written by `push` (and `len <= N`);
        // `MaybeUninit<u64>` has the layout of `u64`.
        unsafe { core::slice::from_raw_parts(self.frames.as_ptr().cast::<u64>(), init) }
    }

    /// Number of frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no frames.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether frames were lost because the stack was deeper than `N`.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Records that frames beyond capacity existed.
    #[inline]
    pub fn mark_truncated(&mut self) {
        self.truncated = true;
    }

    /// Whether another frame fits.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len >= N
    }

    /// Empties the stack.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Debug for Stack<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice().iter().map(|a| *a as *const u8)).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn push_until_full_then_truncated() {
        let mut s: Stack<2> = Stack::new();
        assert!(s.is_empty());
        assert!(s.push(1) && s.push(2));
        assert!(s.is_full() && !s.is_truncated());
        assert!(!s.push(3));
        assert!(s.is_truncated());
        assert_eq!(s.as_slice(), &[1, 2]);
        let c = s.clone();
        assert_eq!(c.as_slice(), &[1, 2]);
        assert!(c.is_truncated());
        s.clear();
        assert_eq!(s.as_slice(), &[] as &[u64]);
    }
}
