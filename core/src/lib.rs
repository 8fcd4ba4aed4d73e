//! # lowprof-core
//!
//! The allocation-free, lock-free heart of the lowprof profiler. It is
//! `#![no_std]`, never links `alloc`, and builds for embedded targets; the
//! allocator wrapper (`lowprof-alloc`) and the SIGPROF sampler
//! (`lowprof-sampler`) build their hot paths from it, and the std exporter
//! (`lowprof`) drains what they produce.
//!
//! ```text
//!  hot paths (any thread, signal handlers)          drainer (one thread)
//!  ───────────────────────────────────────          ────────────────────
//!  poisson  : when to sample an allocation
//!  unwind   : walk frame pointers inside bounds ◄── bounds : regions published
//!  stack    : fixed-capacity frame buffer                    from /proc/self/maps
//!  live     : region holding sampled blocks ──────► scanned for the in-use heap
//!  event    : record layouts ─► ring : striped SPSC rings ─► drained, aggregated
//!  registry : per-thread exact totals ────────────► summed
//!  counters : drops and other counts ─────────────► reported
//! ```
//!
//! Every function reachable from a hot path is allocation-free and
//! async-signal-safe: it uses only atomics and plain loads and stores, never
//! blocks, never panics at run time, and never waits on another thread.
//!
//! Under `--cfg loom` the atomics come from `loom` so the ring, the region,
//! the registry's publication of the region's window and the two seqlocks
//! (`bounds`, `context`) can be model-checked, as
//! `.ci/run` does:
//! `LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom -C force-frame-pointers=yes"
//! CARGO_TARGET_DIR=target/loom cargo test -p lowprof-core --release --lib loom`.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]

// Model checking runs on the host with std (loom needs it); the crate itself
// never links std or alloc.
#[cfg(loom)]
extern crate std;

mod pad;
mod sync;

pub mod bounds;
pub mod context;
pub mod counters;
pub mod event;
pub mod live;
pub mod poisson;
pub mod ring;
pub mod stack;
pub mod unwind;

pub mod registry;

pub use pad::CachePadded;
