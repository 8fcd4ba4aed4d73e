//! lowprof's error type: every variant says what went wrong and what to change.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Errors from starting a profiler, taking profiles and writing them.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `heap_interval` is outside the valid range.
    InvalidHeapInterval {
        /// What was asked for.
        bytes: u64,
    },
    /// `cpu_hz` is outside the valid range.
    InvalidCpuHz {
        /// What was asked for.
        hz: u32,
    },
    /// A profiler is already running in this process.
    AlreadyRunning,
    /// Heap profiling was asked for, but the program's global allocator is
    /// not `lowprof::SampledAlloc`.
    HeapNotInstalled,
    /// Heap profiling was turned off for this profiler (`.heap(false)`).
    HeapDisabled,
    /// CPU profiling was turned off for this profiler (`.cpu_hz(0)`).
    CpuDisabled,
    /// Heap sampling could not be started.
    Heap(lowprof_alloc::ControlError),
    /// CPU sampling could not be started.
    Cpu(lowprof_sampler::Error),
    /// Writing a profile failed (nothing partial is left at `path`).
    Io {
        /// The file being written.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A lowprof thread could not be started.
    Spawn(io::Error),
    /// The symbolizer thread failed while building this profile (it has
    /// been reset; the next profile is built afresh).
    SymbolizerFailed,
    /// This profiler was started by the parent of this forked process; its
    /// threads do not exist here, so it is off in the child.
    ForkedChild,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidHeapInterval { bytes } => write!(
                f,
                "heap_interval({bytes}) is out of range: use {}..={} bytes (default {}, i.e. one sample per \
                 512 KiB allocated on average)",
                lowprof_alloc::MIN_MEAN_BYTES,
                lowprof_alloc::MAX_MEAN_BYTES,
                lowprof_alloc::DEFAULT_MEAN_BYTES
            ),
            Error::InvalidCpuHz { hz } => write!(
                f,
                "cpu_hz({hz}) is out of range: use {}..={} Hz, or 0 to turn CPU sampling off",
                lowprof_sampler::MIN_HZ,
                lowprof_sampler::MAX_HZ
            ),
            Error::AlreadyRunning => f.write_str(
                "a lowprof profiler is already running in this process: stop() it (or drop it) before \
                 starting another",
            ),
            Error::HeapNotInstalled => f.write_str(
                "heap profiling needs lowprof's allocator: declare `#[global_allocator] static ALLOC: \
                 lowprof::SampledAlloc<std::alloc::System> = lowprof::SampledAlloc::new(std::alloc::System);` \
                 (any inner allocator works), or turn heap profiling off with .heap(false)",
            ),
            Error::HeapDisabled => {
                f.write_str("heap profiling is off for this profiler: build it without .heap(false)")
            }
            Error::CpuDisabled => f.write_str("CPU profiling is off for this profiler: build it with .cpu_hz(99)"),
            Error::Heap(e) => write!(f, "heap sampling: {e}"),
            Error::Cpu(e) => write!(f, "CPU sampling: {e}"),
            Error::Io { path, source } => write!(f, "writing {}: {source}", path.display()),
            Error::Spawn(e) => write!(f, "starting a lowprof thread: {e}"),
            Error::ForkedChild => f.write_str(
                "this profiler was started in the parent process and is off in this forked child: start a new \
                 profiler in the child if you want to profile it",
            ),
            Error::SymbolizerFailed => f.write_str(
                "the lowprof-symbolize thread failed while building this profile; it has been reset, ask again \
                 (please report this as a bug)",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Heap(e) => Some(e),
            Error::Cpu(e) => Some(e),
            Error::Io { source, .. } | Error::Spawn(source) => Some(source),
            _ => None,
        }
    }
}
