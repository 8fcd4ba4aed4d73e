//! x86_64 register access for the walker (System V: frame pointer in RBP).

use core::arch::asm;

/// RBP of the calling function (the function is always inlined).
#[inline(always)]
pub(super) fn frame_pointer() -> u64 {
    let fp: u64;
    // SAFETY: reads a register; no memory, no stack, no flags touched.
    unsafe { asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags)) };
    fp
}

/// RSP.
#[inline(always)]
pub(super) fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: reads a register; no memory, no stack, no flags touched.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// The thread pointer (FS base). glibc and musl keep a self-pointer as the
/// first word of the thread control block, so `fs:0` yields it without the
/// `rdfsbase` instruction (which the kernel may not enable).
#[cfg(target_os = "linux")]
#[inline(always)]
pub(crate) fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: on Linux with glibc or musl, FS always points at the current
    // thread's TCB, whose first word is a pointer to itself.
    unsafe {
        asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}
