//! A fixed-capacity call stack, filled by the frame-pointer walker on the hot
//! paths and copied into ring records.

/// Deepest stack recorded; deeper stacks are truncated at the root end (the
/// leaf frames, which say where time or memory went, are kept).
pub const MAX_FRAMES: usize = 128;

/// Up to `N` code addresses, leaf first.
#[derive(Clone)]
pub struct Stack<const N: usize = MAX_FRAMES> {
    len: usize,
    truncated: bool,
    frames: [u64; N],
}

impl<const N: usize> Stack<N> {
    /// An empty stack.
    pub const fn new() -> Self {
        Self { len: 0, truncated: false, frames: [0; N] }
    }

    /// Appends a frame; returns `false` (and marks the stack truncated) when full.
    #[inline]
    pub fn push(&mut self, addr: u64) -> bool {
        if self.len == N {
            self.truncated = true;
            return false;
        }
        self.frames[self.len] = addr;
        self.len += 1;
        true
    }

    /// The frames, leaf first.
    #[inline]
    pub fn as_slice(&self) -> &[u64] {
        &self.frames[..self.len]
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

    /// Whether another frame fits.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
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
