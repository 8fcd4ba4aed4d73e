//! The few operating-system calls the allocator needs (std targets, Linux
//! first): the sampled-block region's memory, page release, thread ids, the
//! clock for seeding, and a thread's stack top.

use core::ptr;

/// Virtual size reserved per size class: 4 GiB, so 23 classes plus one for
/// aligning the base take 96 GiB of address space, and the first attempt
/// reserves the whole filter window, 132 GiB (`MAP_NORESERVE`: no memory is
/// committed until touched).
/// If that reservation fails (a `ulimit -v`, strict overcommit) the
/// reservation shrinks by 4× at a time down to 16 MiB per class.
const SUB_REGION_SHIFTS: [u32; 5] = [32, 30, 28, 26, 24];
const CLASSES: usize = lowprof_core::live::MAX_CLASSES;
/// The free fast path's window (`live::in_filter_window`): 128 GiB from the
/// region's base. The first, full-size attempt reserves all of it (plus the
/// base's alignment), so no other mapping can sit in the window and send its
/// frees down the cold path; the smaller fallbacks leave part of it to the
/// kernel, which costs such frees a call, never correctness.
const WINDOW: usize = 1 << lowprof_core::live::FILTER_SHIFT;

/// Reserves the sampled-block region: `(base, len)` or the errno of the last
/// failed attempt.
pub(crate) fn map_region() -> Result<(usize, usize), i32> {
    let mut last_errno = 0;
    for shift in SUB_REGION_SHIFTS {
        // One class's worth more than needed, so the base can be aligned to
        // the largest slot.
        let classes_len = (CLASSES + 1) << shift;
        let len = if shift == SUB_REGION_SHIFTS[0] {
            // The full-size attempt covers the whole filter window too.
            classes_len.max(WINDOW + (1 << shift))
        } else {
            classes_len
        };
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing: it cannot overlap or disturb existing memory.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            last_errno = errno();
            continue;
        }
        // Transparent huge pages would make every class's first touched
        // slot pin 2 MiB. Best effort: ignore failure.
        // SAFETY: advice on the mapping we just created.
        unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
        return Ok((addr as usize, len));
    }
    Err(last_errno)
}

/// Gives the pages of `[start, start + len)` back to the kernel (they read
/// as zeros afterwards). Best effort.
pub(crate) fn release_pages(start: usize, len: usize) {
    // SAFETY: the range is a freed slot of the region, which lowprof owns and
    // nobody reads until it is handed out again.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

/// The calling thread's OS id. Async-signal-safe.
pub(crate) fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// Monotonic nanoseconds (for seeding). Async-signal-safe.
pub(crate) fn clock_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// The calling thread's stack as `(lowest, one past highest)` address.
pub(crate) fn thread_stack() -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `attr` is initialised by pthread_getattr_np before use and
        // destroyed after; the out-pointers are valid locals.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut addr: *mut libc::c_void = ptr::null_mut();
            let mut size: libc::size_t = 0;
            let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            if rc != 0 || addr.is_null() {
                return None;
            }
            Some((addr as u64, addr as u64 + size as u64))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The pthread key whose destructor runs [`crate::thread::thread_exit`]:
/// 0 = not created yet, `u32::MAX` = creation failed, else key + 1.
static EXIT_KEY: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Arranges for `thread_exit(state)` to run when the calling thread exits.
/// `false` if no pthread key is available (then nothing will run).
///
/// `pthread_key_create` and `pthread_setspecific` do not allocate for the
/// first 32 keys; beyond that glibc uses its own `calloc`, never Rust's
/// global allocator.
pub(crate) fn set_exit_hook(state: *mut libc::c_void) -> bool {
    use core::sync::atomic::Ordering;
    let mut key = EXIT_KEY.load(Ordering::Acquire);
    if key == 0 {
        let mut created: libc::pthread_key_t = 0;
        // SAFETY: `created` is a valid out-pointer; the destructor is an
        // `extern "C" fn(*mut c_void)` as pthread expects.
        let ok =
            unsafe { libc::pthread_key_create(&mut created, Some(crate::thread::thread_exit)) }
                == 0;
        let candidate = if ok { created + 1 } else { u32::MAX };
        key = match EXIT_KEY.compare_exchange(0, candidate, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => candidate,
            Err(winner) => {
                if ok {
                    // SAFETY: our own key, never handed out.
                    unsafe { libc::pthread_key_delete(created) };
                }
                winner
            }
        };
    }
    if key == u32::MAX {
        return false;
    }
    // SAFETY: `key - 1` is a key created above; the value is opaque to pthread.
    unsafe { libc::pthread_setspecific(key - 1, state) == 0 }
}

fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno.
    unsafe { *libc::__errno_location() }
}
