//! The stack-capable memory of the process, read from `/proc/self/maps` and
//! published into [`lowprof_core::bounds::STACK_REGIONS`] for the handler's
//! walk.
//!
//! Kept: every `rw` mapping that is anonymous (no path, or `[anon:name]`) or a
//! stack (`[stack]`, `[stack:tid]` on old kernels) — thread stacks from
//! `pthread_create` are anonymous `rw-p` mappings under a `---p` guard page,
//! and alternate signal stacks are anonymous too. Adjacent kept mappings are
//! merged; the main thread's `[stack]` is widened down to `top - RLIMIT_STACK`
//! (at most 1 GiB, never into the region below) so that a stack that grew
//! after the last refresh is still covered.
//!
//! ```text
//!  7f3a5c000000-7f3a5c021000 rw-p 00000000 00:00 0          ─► kept
//!  7f3a5d1ff000-7f3a5d200000 ---p 00000000 00:00 0             guard: not rw
//!  7f3a5d200000-7f3a5da00000 rw-p 00000000 00:00 0          ─► kept (a thread stack)
//!  7ffd3b5e5000-7ffd3b606000 rw-p 00000000 00:00 0  [stack] ─► kept, widened down
//!  55d0c1c26000-55d0c1c28000 rw-p 00026000 08:01 1049201 /usr/bin/app   file: no
//! ```
//!
//! Cold path only (the thread calling `start`/`maintain`); allocates freely.

use lowprof_core::bounds::{MAX_REGIONS, PublishError, STACK_REGIONS};

/// The widest the main stack is assumed to grow.
const MAX_STACK: u64 = 1 << 30;

/// A kept mapping: `[lo, hi)`, and whether it is the main thread's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    lo: u64,
    hi: u64,
    stack: bool,
}

/// Reads `/proc/self/maps` and returns the sorted, merged, non-overlapping
/// stack-capable regions (at most [`MAX_REGIONS`]).
pub(crate) fn read() -> std::io::Result<Vec<(u64, u64)>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(parse(&maps, stack_limit()))
}

/// Reads and publishes the regions. Returns whether a table was published.
pub(crate) fn refresh() -> bool {
    match read() {
        Ok(regions) => publish(&regions),
        Err(_) => false,
    }
}

/// Publishes `regions`, retrying while another writer (the allocator's
/// drainer, say) is publishing its own table.
pub(crate) fn publish(regions: &[(u64, u64)]) -> bool {
    for _ in 0..1000 {
        match STACK_REGIONS.publish(regions) {
            Ok(_) => return true,
            Err(PublishError::Busy) => std::thread::yield_now(),
            Err(PublishError::Unsorted) => return false,
        }
    }
    false
}

/// `RLIMIT_STACK`, capped at 1 GiB (unlimited counts as 1 GiB).
fn stack_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a live local.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return MAX_STACK;
    }
    // rlim_t is not u64 on every target.
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    current.min(MAX_STACK)
}

/// One `/proc/self/maps` line, if it is a stack-capable mapping.
fn parse_line(line: &str) -> Option<Region> {
    let mut fields = line.split_ascii_whitespace();
    let (lo, hi) = fields.next()?.split_once('-')?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let perms = fields.next()?;
    // offset, device, inode
    let _ = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next();
    if !perms.starts_with("rw") || lo >= hi {
        return None;
    }
    match path {
        None => Some(Region { lo, hi, stack: false }),
        Some(p) if p.starts_with("[anon:") => Some(Region { lo, hi, stack: false }),
        Some(p) if p.starts_with("[stack") => Some(Region { lo, hi, stack: true }),
        Some(_) => None,
    }
}

/// The address range of any maps line.
fn range_of(line: &str) -> Option<(u64, u64)> {
    let (range, _) = line.split_once(' ')?;
    let (lo, hi) = range.split_once('-')?;
    Some((u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?))
}

/// The regions of a maps text: sorted, merged, `[stack]` widened by
/// `stack_limit`, capped at [`MAX_REGIONS`].
pub(crate) fn parse(maps: &str, stack_limit: u64) -> Vec<(u64, u64)> {
    let mut kept: Vec<Region> = maps.lines().filter_map(parse_line).collect();
    kept.sort_by_key(|r| r.lo);
    let mut merged: Vec<Region> = Vec::with_capacity(kept.len());
    for r in kept {
        match merged.last_mut() {
            Some(last) if r.lo <= last.hi => {
                last.hi = last.hi.max(r.hi);
                last.stack |= r.stack;
            }
            _ => merged.push(r),
        }
    }
    // Every mapping's end, kept or not: the stack may only be widened down
    // to the nearest mapping of any kind below it (a guard page or a file
    // mapping in between must never fall inside the bounds).
    let mut ends: Vec<(u64, u64)> = maps.lines().filter_map(range_of).collect();
    ends.sort_unstable();
    for i in 0..merged.len() {
        if !merged[i].stack {
            continue;
        }
        let below = ends.iter().filter(|&&(_, hi)| hi <= merged[i].lo).map(|&(_, hi)| hi).max();
        let floor = below.unwrap_or(0).max(if i == 0 { 0 } else { merged[i - 1].hi });
        let widened = merged[i].hi.saturating_sub(stack_limit).max(floor);
        merged[i].lo = merged[i].lo.min(widened);
    }
    if merged.len() > MAX_REGIONS {
        // Keep the main stack and the largest regions (thread stacks are at
        // least 16 KiB; the many small mappings of a busy process are not).
        merged.sort_by_key(|r| (!r.stack, core::cmp::Reverse(r.hi - r.lo)));
        merged.truncate(MAX_REGIONS);
        merged.sort_by_key(|r| r.lo);
    }
    merged.into_iter().map(|r| (r.lo, r.hi)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c1a00000-55d0c1a26000 r-xp 00002000 08:01 1049201                    /usr/bin/my app (deleted)
55d0c1c26000-55d0c1c28000 rw-p 00026000 08:01 1049201                    /usr/bin/my app (deleted)
55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]
7f3a5c000000-7f3a5c021000 rw-p 00000000 00:00 0 
7f3a5c021000-7f3a60000000 ---p 00000000 00:00 0 
7f3a5d1ff000-7f3a5d200000 ---p 00000000 00:00 0 
7f3a5d200000-7f3a5da00000 rw-p 00000000 00:00 0 
7f3a5da00000-7f3a5da10000 rw-p 00000000 00:00 0                          [anon:glibc: malloc]
7f3a5e000000-7f3a5e001000 rw-s 00000000 00:01 77                         /dev/zero (deleted)
7ffd3b000000-7ffd3b001000 rw-p 00000000 00:00 0 
7ffd3b5e5000-7ffd3b606000 rw-p 00000000 00:00 0                          [stack]
7ffd3b7f0000-7ffd3b7f4000 r--p 00000000 00:00 0                          [vvar]
";

    #[test]
    fn keeps_anonymous_rw_and_stack_merges_and_widens() {
        let regions = parse(MAPS, 8 << 20);
        assert_eq!(
            regions,
            vec![
                (0x7f3a_5c00_0000, 0x7f3a_5c02_1000),
                // A thread stack and the named anonymous mapping right above it, merged.
                (0x7f3a_5d20_0000, 0x7f3a_5da1_0000),
                (0x7ffd_3b00_0000, 0x7ffd_3b00_1000),
                // [stack] widened down to the end of the region below.
                (0x7ffd_3b00_1000, 0x7ffd_3b60_6000),
            ]
        );
        // A small limit widens by that much only.
        let regions = parse(MAPS, 0x100_0000 / 16);
        assert_eq!(regions.last(), Some(&(0x7ffd_3b50_6000, 0x7ffd_3b60_6000)));
        // The result is acceptable to the table.
        assert!(regions.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    #[test]
    fn stack_never_widens_across_a_mapping_it_does_not_keep() {
        // A guard page (not kept) sits between the anonymous region and the
        // stack: the widened stack must stop at its end.
        let maps = MAPS.replace(
            "7ffd3b5e5000-7ffd3b606000",
            "7ffd3b100000-7ffd3b101000 ---p 00000000 00:00 0 \n7ffd3b5e5000-7ffd3b606000",
        );
        let regions = parse(&maps, 8 << 20);
        assert_eq!(regions.last(), Some(&(0x7ffd_3b10_1000, 0x7ffd_3b60_6000)));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let regions =
            parse("garbage\n12-zz rw-p 0 0 0\n1000-2000 rw-p 0 00:00 0\n3000-2000 rw-p 0 0 0\n", 0);
        assert_eq!(regions, vec![(0x1000, 0x2000)]);
    }

    #[test]
    fn the_live_table_holds_our_stack() {
        let regions = read().unwrap();
        let local = 0u64;
        let sp = &local as *const u64 as u64;
        assert!(regions.iter().any(|&(lo, hi)| lo <= sp && sp < hi), "{sp:#x} in {regions:x?}");
    }
}
