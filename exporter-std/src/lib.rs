//! # lowprof
//!
//! A heap and CPU profiler you can leave running in production.
//!
//! ```no_run
//! use lowprof::SampledAlloc;
//!
//! #[global_allocator]
//! static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);
//!
//! fn main() -> Result<(), lowprof::Error> {
//!     let profiler = lowprof::Profiler::builder().start()?;
//!     # fn run_workload() {}
//!     run_workload();
//!     profiler.heap_profile()?.write_pprof("heap.pb.gz")?;
//!     Ok(())
//! }
//! ```
//!
//! - **Heap**: [`SampledAlloc`] samples allocations as a Poisson process over
//!   bytes (one sample per 512 KiB allocated on average) and tracks which
//!   sampled blocks are live; [`Profiler::heap_profile`] gives Go's four heap
//!   sample types, unbiased per sample.
//! - **CPU**: per-thread CPU timers deliver `SIGPROF` (99 Hz by default); the
//!   handler walks frame pointers without locks, allocation or syscalls;
//!   [`Profiler::cpu_profile`] gives `samples` and `cpu` per stack and thread.
//! - **Output**: pprof ([`Profile::write_pprof`], read by `go tool pprof`),
//!   flamegraph SVGs ([`Profile::write_flamegraph`]).
//! - **Traces**: [`trace::set_context`] (or the `tracing` feature's
//!   `trace::ProfilingLayer`) links samples to the active span: pprof
//!   labels `trace_id`/`span_id`/`span_name`, OTLP `Link`s; a
//!   [`trace::SamplingStrategy`] picks which traces are linked.
//! - **Budget**: [`ProfilerBuilder::max_heap_samples_per_sec`] and
//!   [`ProfilerBuilder::max_cpu_samples_per_sec`] keep the sampling cost
//!   bounded, unbiased across rate changes (`docs/tracing.md`).
//!
//! ```text
//!  hot paths (no_std core)                 drainer thread "lowprof-drain"
//!  SampledAlloc ─┐                          aggregate by stack ─► symbolize once per address
//!  SIGPROF ──────┴─► lock-free rings ─────► ─► Profile ─► pprof · flamegraph
//! ```
//!
//! Build with frame pointers (`-C force-frame-pointers=yes`); Rust's standard
//! library has them since 1.79.

mod aggregate;
mod assemble;
mod budget;
mod builder;
mod config;
mod drain;
mod error;
mod export;
mod files;
pub mod flamegraph;
mod fork;
pub mod maps;
pub mod otlp;
mod output;
mod periodic;
pub mod pprof;
pub mod profile;
mod profiler;
#[cfg(feature = "serve")]
mod serve;
mod session;
pub mod symbolize;
mod symbolize_thread;
pub mod trace;

pub use assemble::DROPPED_FRAME;
pub use builder::{DEFAULT_DRAIN_INTERVAL, DEFAULT_KEEP_FILES, ProfilerBuilder};
pub use error::Error;
pub use export::ExportStats;
pub use lowprof_alloc::{HeapStats, SampledAlloc};
pub use lowprof_sampler::{Stats as CpuStats, TimerMode};
pub use output::TopEntry;
pub use periodic::FileStats;
pub use profile::Profile;
pub use profiler::{DEFAULT_EXPORT_INTERVAL, Profiler, Report, STOP_FLUSH_TIMEOUT, Stats};

/// The repository README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
