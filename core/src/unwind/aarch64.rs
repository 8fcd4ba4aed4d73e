//! aarch64 register access for the walker (AAPCS64: frame record at x29).

use core::arch::asm;

/// x29 of the calling function (the function is always inlined).
#[inline(always)]
pub(super) fn frame_pointer() -> u64 {
    let fp: u64;
    // SAFETY: reads a register; no memory, no stack, no flags touched.
    unsafe { asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags)) };
    fp
}

/// SP.
#[inline(always)]
pub(super) fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads a register; no memory, no stack, no flags touched.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// The thread pointer (TPIDR_EL0).
#[cfg(target_os = "linux")]
#[inline(always)]
pub(crate) fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: reads a system register that user space may always read.
    unsafe { asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    tp
}

/// Drops pointer-authentication and tag bits: Linux user addresses fit in 48
/// bits (52-bit user VA needs an explicit opt-in by mmap hint).
#[inline(always)]
pub(super) fn strip_pac(addr: u64) -> u64 {
    addr & 0x0000_ffff_ffff_ffff
}
