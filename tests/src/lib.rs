//! Shared pieces of lowprof's end-to-end tests: known workloads, the
//! statistics that say how far an estimate may be from the truth, and
//! running `go tool pprof` — a real consumer, not our own decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cpu;
pub mod pprof_tool;
pub mod sites;
pub mod stats;
