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
    /// Profiling is off in a child forked while the parent's profiler was
    /// running: the parent's `Profiler` there (its threads do not exist in
    /// the child) and `Profiler::start` both answer this.
    ForkedChild,
    /// The profiler was stopped (or dropped) while this profile was asked
    /// for or being taken, e.g. by a `/debug/pprof` request still in flight.
    Stopped,
    /// A setting has a value lowprof cannot use: an OTLP export setting (a
    /// builder method or an `OTEL_*` environment variable), `serve_pprof`,
    /// `export_interval`, `max_heap_samples_per_sec`,
    /// `max_cpu_samples_per_sec`, or the parameter of a trace sampling
    /// strategy ([`crate::trace::ProbabilisticSampler::new`],
    /// [`crate::trace::RateSampler::new`]).
    Config {
        /// The environment variable (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`),
        /// builder method (e.g. `otlp_endpoint`) or strategy parameter (e.g.
        /// `RateSampler per_second`) that holds the value.
        setting: &'static str,
        /// The offending value, or the offending part of it, shortened; never
        /// a secret (header values and URL credentials are redacted).
        value: String,
        /// What is wrong with the value and what to change, e.g. `has no "=":
        /// write key=value pairs separated by commas`.
        fix: String,
    },
    /// The `/debug/pprof` endpoint could not listen on the address it was
    /// given.
    ServeBind {
        /// The address asked for.
        addr: String,
        /// Why binding failed.
        source: io::Error,
    },
    /// The `/debug/pprof` bearer token is empty, longer than 4096 bytes, or
    /// has characters an `Authorization` header cannot carry (the token itself
    /// is never shown).
    InvalidBearerToken,
    /// The directory for rotated profile files has no parent, is not a
    /// directory, or is not writable.
    ProfileDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A rotated profile file's name prefix is empty, too long, or has
    /// characters other than ASCII letters, digits, `_`, `-` and `.`.
    InvalidFilePrefix {
        /// The prefix given.
        prefix: String,
    },
    /// Rotated profile files were asked to keep 0 files.
    InvalidKeep,
    /// A new profile file was written, but an older one beyond `keep` could
    /// not be deleted.
    Rotate {
        /// The file that is still there.
        path: PathBuf,
        /// Why deleting it failed.
        source: io::Error,
    },
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
                "profiling is off in a child forked while the parent's profiler was running (its rings and \
                 threads belong to the parent): to profile the child, exec a program that starts its own \
                 profiler, or start the profiler in the parent only after forking",
            ),
            Error::Stopped => f.write_str(
                "the profiler was stopped (stop() or drop) before this profile was complete: its profiles \
                 can no longer be taken; start a new profiler to profile again",
            ),
            Error::SymbolizerFailed => f.write_str(
                "the lowprof-symbolize thread failed while building this profile; it has been reset, ask again \
                 (please report this as a bug)",
            ),
            Error::Config { setting, value, fix } => write!(f, "{setting}: {value:?} {fix}"),
            Error::ServeBind { addr, source } => write!(
                f,
                "the /debug/pprof endpoint cannot listen on {addr}: {source}: give a free local `host:port` \
                 such as 127.0.0.1:6060 (port 0 picks any free port)"
            ),
            Error::InvalidBearerToken => f.write_str(
                "serve_token: the /debug/pprof bearer token must be 1 to 4096 visible ASCII characters \
                 without spaces (RFC 6750), such as a random hex or base64 string",
            ),
            Error::ProfileDir { path, source } => {
                let fix = match source.kind() {
                    io::ErrorKind::NotFound => {
                        "create its parent directory first (lowprof creates only the last component)"
                    }
                    io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
                        "something other than a directory is in the way: remove it or choose another directory"
                    }
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                        "make it writable by this process or choose a writable directory"
                    }
                    _ => "choose an existing, writable directory",
                };
                write!(f, "profile directory {}: {source}: {fix}", path.display())
            }
            Error::InvalidFilePrefix { prefix } => write!(
                f,
                "profile file prefix {prefix:?} is invalid: use 1 to 100 ASCII letters, digits, '_', '-' or \
                 '.', not starting with '.' or '-' (such as \"heap\")"
            ),
            Error::InvalidKeep => {
                f.write_str("keeping 0 rotated profile files would delete each one written: keep at least 1")
            }
            Error::Rotate { path, source } => write!(
                f,
                "deleting the old profile file {} (the new one was written): {source}: make the directory \
                 writable by this process, or remove old files yourself",
                path.display()
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
            Error::ServeBind { source, .. }
            | Error::ProfileDir { source, .. }
            | Error::Rotate { source, .. } => Some(source),
            _ => None,
        }
    }
}
