//! Frame-pointer stack walking that can never fault.
//!
//! With frame pointers, every function's prologue pushes the caller's frame
//! pointer and sets its own, so the stack holds a linked list of frame records
//! (the same shape on x86_64 and aarch64):
//!
//! ```text
//!   higher addresses (older frames)
//!   ┌───────────────────────┐
//!   │ return address        │ fp₁ + 8     ┐ caller's record
//!   │ saved fp (fp₂)        │ fp₁ ◄──┐    ┘
//!   ├───────────────────────┤        │
//!   │ locals …              │        │
//!   │ return address        │ fp₀ + 8│   ┐ current record
//!   │ saved fp (fp₁) ───────┼────────┘   ┘
//!   └───────────────────────┘ fp₀ ◄── frame-pointer register
//!   lower addresses (newer frames, the stack grows down)
//! ```
//!
//! [`walk`] follows the list and records each return address. Code built
//! without frame pointers leaves arbitrary values in the register, so every
//! record address is checked *before* it is read: it must be 8-byte aligned,
//! lie inside the given [`Bounds`] (the thread's stack, from
//! [`crate::bounds`]), and be strictly above the previous one (so the walk
//! always terminates). A bad pointer ends the walk; it is never dereferenced.
//! There are no syscalls and no probes (pprof-rs validates each frame with a
//! pipe `write`, ~1000× slower).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
use aarch64 as arch;
#[cfg(target_arch = "x86_64")]
use x86_64 as arch;

use crate::stack::Stack;

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) use arch::thread_pointer;

/// The readable memory a walk may touch: `[lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Lowest readable address (the interrupted stack pointer).
    pub lo: u64,
    /// One past the highest readable address (the stack's top).
    pub hi: u64,
}

impl Bounds {
    /// Bounds that admit nothing: the walk records no frames.
    pub const EMPTY: Bounds = Bounds { lo: 0, hi: 0 };

    /// Whether the 16-byte frame record at `fp` lies entirely inside.
    #[inline]
    pub fn holds_record(&self, fp: u64) -> bool {
        fp >= self.lo && fp.checked_add(16).is_some_and(|end| end <= self.hi)
    }
}

/// Whether frame-pointer walking is implemented for this target.
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Walks frame records from `fp`, appending each return address to `out`
/// until the chain leaves `bounds`, stops growing, ends, or `out` is full
/// (then `out` is marked truncated if a further valid record exists).
///
/// Async-signal-safe and allocation-free: only loads from inside `bounds`.
/// On targets without a walker this records nothing.
///
/// # Safety
///
/// Every address in `bounds` must be mapped and readable for the whole call
/// (it is the current thread's own stack, or memory that outlives the call).
#[inline]
pub unsafe fn walk<const N: usize>(fp: u64, bounds: Bounds, out: &mut Stack<N>) {
    if !SUPPORTED {
        return;
    }
    let mut fp = fp;
    loop {
        if fp % 8 != 0 || !bounds.holds_record(fp) {
            break;
        }
        if out.is_full() {
            // Another valid record exists: the stack is deeper than fits.
            out.mark_truncated();
            break;
        }
        // SAFETY: `fp..fp+16` lies inside `bounds`, which the caller
        // guarantees is readable; volatile because this memory belongs to
        // frames the compiler knows nothing about.
        let (next, ret) = unsafe {
            (
                core::ptr::read_volatile(fp as *const u64),
                core::ptr::read_volatile((fp + 8) as *const u64),
            )
        };
        let ret = strip_return_address(ret);
        if ret == 0 {
            break;
        }
        out.push(ret);
        if next <= fp {
            break;
        }
        fp = next;
    }
}

/// The current function's frame pointer (0 on unsupported targets).
/// Async-signal-safe.
#[inline(always)]
pub fn current_frame_pointer() -> u64 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        arch::frame_pointer()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        0
    }
}

/// The current stack pointer (0 on unsupported targets). Async-signal-safe.
#[inline(always)]
pub fn current_stack_pointer() -> u64 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        arch::stack_pointer()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        0
    }
}

/// Removes pointer-authentication bits from a saved return address (aarch64);
/// the identity elsewhere.
#[inline(always)]
pub fn strip_return_address(addr: u64) -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        arch::strip_pac(addr)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        addr
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A fake stack: four records chained upward, the last pointing back.
    #[test]
    fn walks_a_synthetic_chain_and_stops_at_bounds() {
        let mut mem = [0u64; 16];
        let p = mem.as_mut_ptr();
        let base = p as u64;
        let at = |i: usize| base + 8 * i as u64;
        let words = [
            (0, at(4)),
            (1, 0x1000),
            (4, at(8)),
            (5, 0x2000),
            (8, at(12)),
            (9, 0x3000),
            // Points backwards: the walk must stop after recording 0x4000.
            (12, at(2)),
            (13, 0x4000),
        ];
        for (i, v) in words {
            // SAFETY: i < 16; all accesses go through `p`.
            unsafe { p.add(i).write(v) };
        }
        let bounds = Bounds { lo: base, hi: base + 8 * 16 };
        let mut out: Stack<8> = Stack::new();
        // SAFETY: `bounds` covers `mem`, which lives for the call.
        unsafe { walk(at(0), bounds, &mut out) };
        assert_eq!(out.as_slice(), &[0x1000, 0x2000, 0x3000, 0x4000]);

        // Bounds that end before the third record stop the walk there.
        let short = Bounds { lo: base, hi: at(9) };
        let mut out: Stack<8> = Stack::new();
        // SAFETY: as above, a sub-range of `mem`.
        unsafe { walk(at(0), short, &mut out) };
        assert_eq!(out.as_slice(), &[0x1000, 0x2000]);

        // Misaligned or out-of-range starting points record nothing.
        let mut out: Stack<8> = Stack::new();
        // SAFETY: nothing outside `mem` is read: the walk rejects both.
        unsafe {
            walk(at(0) + 4, bounds, &mut out);
            walk(base + 8 * 20, bounds, &mut out);
            walk(at(0), Bounds::EMPTY, &mut out);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn full_stack_stops_the_walk() {
        let mut mem = [0u64; 64];
        let p = mem.as_mut_ptr();
        let base = p as u64;
        for i in 0..31 {
            // SAFETY: 2 * i + 1 < 64; all accesses go through `p`.
            unsafe {
                p.add(2 * i).write(base + 16 * (i as u64 + 1));
                p.add(2 * i + 1).write(0x100 + i as u64);
            }
        }
        let mut out: Stack<4> = Stack::new();
        // SAFETY: bounds cover `mem`.
        unsafe { walk(base, Bounds { lo: base, hi: base + 512 }, &mut out) };
        assert_eq!(out.as_slice(), &[0x100, 0x101, 0x102, 0x103]);
        assert!(out.is_truncated());
        let mut roomy: Stack<64> = Stack::new();
        // SAFETY: as above.
        unsafe { walk(base, Bounds { lo: base, hi: base + 512 }, &mut roomy) };
        assert!(!roomy.is_truncated());
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(never)]
    fn walk_here(out: &mut Stack<32>) {
        let sp = current_stack_pointer();
        // The test thread's stack is at least 64 KiB above us.
        let bounds = Bounds { lo: sp, hi: sp + 16 * 1024 };
        // SAFETY: our own live stack; 16 KiB above the current stack pointer
        // is inside the test thread's 2 MiB stack.
        unsafe { walk(current_frame_pointer(), bounds, out) };
    }

    /// Calls `walk_here`, so the walk's first return address is inside this
    /// function (a `#[test]` function itself may be inlined into the harness).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(never)]
    fn caller(out: &mut Stack<32>) {
        walk_here(out);
        core::hint::black_box(&mut *out);
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn walks_the_real_stack() {
        let mut out: Stack<32> = Stack::new();
        caller(&mut out);
        // With force-frame-pointers the chain reaches at least our caller and
        // the test harness frames above it.
        assert!(out.len() >= 2, "{out:?}");
        let here = caller as fn(&mut Stack<32>) as usize as u64;
        assert!(
            out.as_slice()[0] > here && out.as_slice()[0] < here + 256,
            "the first return address is inside `caller`: {out:?} (fn at {here:#x})"
        );
    }
}
