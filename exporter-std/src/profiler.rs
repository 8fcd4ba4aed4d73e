//! The public profiler: starts the samplers, the drainer and the symbolizer,
//! hands out profiles, and stops everything.
//!
//! ```text
//!  Profiler ──► Session (Arc) ◄── drainer thread "lowprof-drain"
//!     │ heap_profile(), cpu_profile(), stats()  (see session.rs)
//!     └ stop(): stop samplers, join the drainer, final profiles ─► Report
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use std::time::Duration;

use crate::builder::ProfilerBuilder;
use crate::config::{self, ExportConfig};
use crate::drain;
use crate::error::Error;
use crate::export::{ExportStats, HttpExporter};
use crate::files::RotatingWriter;
use crate::otlp;
use crate::periodic::{FileStats, Outputs, Periodic};
use crate::profile::Profile;
#[cfg(feature = "serve")]
use crate::serve::PprofServer;
use crate::session::Session;
use crate::symbolize_thread::SymbolizeThread;

/// Default time between two exports or file writes.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
/// How long `stop()` waits for queued OTLP requests to be delivered.
pub const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One profiler per process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Whether a profiler is running in this process (read by the fork
/// handler in the child: an atomic load, async-signal-safe).
pub(crate) fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// A running profiler. Dropping it stops profiling (as `stop()` does,
/// discarding the final profiles).
pub struct Profiler {
    session: Option<Arc<Session>>,
    /// This profiler holds `RUNNING` (until `release`).
    holds_running: bool,
    drainer: Option<JoinHandle<()>>,
    periodic: Option<Periodic>,
    #[cfg(feature = "serve")]
    server: Option<PprofServer>,
}

/// What `start()` resolved and opened before any sampler runs, so that a bad
/// setting fails cleanly with nothing to undo.
struct Outlets {
    export: Option<ExportConfig>,
    files: Option<RotatingWriter>,
    interval: Duration,
}

impl Outlets {
    fn resolve(config: &ProfilerBuilder) -> Result<Self, Error> {
        let export = config::resolve(&config.otlp, &|key| std::env::var(key).ok())?;
        let files = match &config.write_dir {
            Some(dir) => Some(RotatingWriter::new(dir.clone(), config.keep_files)?),
            None => None,
        };
        let interval = export
            .as_ref()
            .map(|e| e.export_interval)
            .or(config.otlp.export_interval)
            .unwrap_or(DEFAULT_EXPORT_INTERVAL);
        Ok(Self { export, files, interval })
    }
}

/// The final profiles returned by [`Profiler::stop`].
#[derive(Debug)]
pub struct Report {
    /// The heap at the moment of stopping, plus allocations since start
    /// (`None` if heap profiling was off or the allocator is not lowprof's).
    pub heap: Option<Profile>,
    /// CPU since start or since the last [`Profiler::cpu_profile`] (`None`
    /// if CPU profiling was off). With OTLP export, `write_dir` or the pull
    /// endpoint configured, CPU samples are kept for this only from the
    /// first `cpu_profile()` call on (they go to those outputs): without
    /// one it is empty, and its comments say why.
    pub cpu: Option<Profile>,
    /// Counters at the end.
    pub stats: Stats,
}

/// What the profiler has done, for monitoring it.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Heap sampling: samples, drops, live sampled blocks, exact totals.
    pub heap: lowprof_alloc::HeapStats,
    /// CPU sampling: signals, samples, drops, timed threads.
    pub cpu: lowprof_sampler::Stats,
    /// Records the drainer has taken from the rings.
    pub records_drained: u64,
    /// Distinct heap stacks seen.
    pub heap_stacks: usize,
    /// Distinct CPU stacks in the current window.
    pub cpu_stacks: usize,
    /// Whether sampling has stopped (by `duration`).
    pub sampling_stopped: bool,
    /// The CPU sampling rate now: the configured one, or lower while the
    /// CPU sample budget holds it down. The heap interval now is
    /// `heap.interval`.
    pub cpu_hz: u32,
    /// OTLP export counters, if OTLP export is on.
    pub export: Option<ExportStats>,
    /// File output counters, if `write_dir` is set.
    pub files: Option<FileStats>,
}

impl Profiler {
    /// A builder with the defaults: heap on, CPU at 99 Hz.
    pub fn builder() -> ProfilerBuilder {
        ProfilerBuilder::default()
    }

    pub(crate) fn start(config: ProfilerBuilder) -> Result<Profiler, Error> {
        config.validate()?;
        // A child forked while the parent's profiler ran inherits RUNNING
        // and rings the parent's threads were writing; profiling stays off
        // there (see `fork`).
        if crate::fork::in_forked_child() {
            return Err(Error::ForkedChild);
        }
        crate::fork::install_handlers();
        if RUNNING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(Error::AlreadyRunning);
        }
        match Self::start_running(config) {
            Ok(p) => Ok(p),
            Err(e) => {
                RUNNING.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn start_running(config: ProfilerBuilder) -> Result<Profiler, Error> {
        let outlets = Outlets::resolve(&config)?;
        if config.heap {
            // Any allocation through a `SampledAlloc` marks it installed;
            // make sure this thread has made one.
            std::hint::black_box(Box::new(0u64));
            lowprof_alloc::start(config.heap_interval).map_err(Error::Heap)?;
        }
        if config.cpu_hz > 0 {
            let cpu = lowprof_sampler::Config { hz: config.cpu_hz, mode: config.cpu_timer };
            if let Err(e) = lowprof_sampler::start(cpu) {
                lowprof_alloc::stop();
                return Err(Error::Cpu(e));
            }
        }
        let symbolizer = match SymbolizeThread::spawn() {
            Ok(s) => s,
            Err(e) => {
                lowprof_alloc::stop();
                lowprof_sampler::stop();
                return Err(e);
            }
        };
        // With a periodic consumer, the user's CPU window opens at the first
        // `cpu_profile()` (a window nobody takes would grow for the life of
        // the process).
        let user_window =
            outlets.export.is_none() && outlets.files.is_none() && config.serve_addr.is_none();
        let session = Arc::new(Session::new(config, symbolizer, user_window));
        let for_thread = Arc::clone(&session);
        let drainer = std::thread::Builder::new()
            .name("lowprof-drain".into())
            .spawn(move || drain::run(for_thread));
        let mut profiler = match drainer {
            Ok(handle) => Profiler {
                session: Some(Arc::clone(&session)),
                holds_running: true,
                drainer: Some(handle),
                periodic: None,
                #[cfg(feature = "serve")]
                server: None,
            },
            Err(e) => {
                session.stop_sampling();
                return Err(Error::Spawn(e));
            }
        };
        // From here a failure drops `profiler`, which stops everything.
        #[cfg(feature = "serve")]
        if let Some(addr) = &session.config.serve_addr {
            let source: Arc<dyn crate::serve::ProfileSource> = Arc::clone(&session) as _;
            profiler.server =
                Some(PprofServer::start(addr, session.config.serve_token.clone(), source)?);
        }
        let otlp = match outlets.export {
            Some(export) => {
                let resource = otlp::detect_resource(
                    export.service_name.as_deref(),
                    &export.resource_attributes,
                );
                Some((HttpExporter::start(export)?, resource))
            }
            None => None,
        };
        if otlp.is_some() || outlets.files.is_some() {
            let outputs = Outputs { otlp, files: outlets.files };
            profiler.periodic =
                Some(Periodic::start(Arc::clone(&session), outlets.interval, outputs)?);
        }
        Ok(profiler)
    }

    fn session(&self) -> Result<&Arc<Session>, Error> {
        match &self.session {
            Some(s) if s.in_forked_child() => Err(Error::ForkedChild),
            Some(s) => Ok(s),
            None => Err(Error::ForkedChild),
        }
    }

    /// The heap profile now: Go's `alloc_objects`, `alloc_space` (since the
    /// profiler started) and `inuse_objects`, `inuse_space` (blocks live at
    /// this moment), unbiased per sample.
    pub fn heap_profile(&self) -> Result<Profile, Error> {
        self.session()?.heap_profile()
    }

    /// The CPU profile since the profiler started or since the last call:
    /// `samples/count` and `cpu/nanoseconds`, labelled with `thread_id`,
    /// `thread_name` and, for samples taken in a trace context
    /// ([`crate::trace`]), `trace_id`, `span_id` and `span_name`.
    ///
    /// With OTLP export, `write_dir` or the pull endpoint configured, the
    /// profiler does not keep CPU samples for this call until it is first
    /// made: that first call returns an empty profile (saying so in its
    /// comments) and each later one the time since the previous call.
    pub fn cpu_profile(&self) -> Result<Profile, Error> {
        self.session()?.cpu_profile()
    }

    /// The address the `/debug/pprof` endpoint listens on, if it runs (useful
    /// with port 0).
    pub fn pprof_addr(&self) -> Option<std::net::SocketAddr> {
        #[cfg(feature = "serve")]
        {
            self.server.as_ref().map(PprofServer::local_addr)
        }
        #[cfg(not(feature = "serve"))]
        {
            None
        }
    }

    /// Current counters. In a child forked while this profiler ran, only
    /// the process-wide sampling counters (the profiler is off there).
    pub fn stats(&self) -> Stats {
        let mut stats = self.session_stats();
        if let Some(periodic) = self.periodic.as_ref().filter(|_| !self.in_forked_child()) {
            stats.export = periodic.export_stats();
            stats.files = periodic.file_stats();
        }
        stats
    }

    /// Whether this is a child forked while this profiler ran.
    fn in_forked_child(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.in_forked_child())
    }

    fn session_stats(&self) -> Stats {
        match &self.session {
            // The session's state, the exporter's and the file output's
            // locks may have been held by parent threads at the fork: they
            // are never released in the child, so never take them there.
            Some(s) if !s.in_forked_child() => s.stats(),
            // Abandoned in a forked child: the process-wide counters only.
            _ => Stats {
                heap: lowprof_alloc::stats(),
                cpu: lowprof_sampler::stats(),
                records_drained: 0,
                heap_stacks: 0,
                cpu_stacks: 0,
                sampling_stopped: true,
                cpu_hz: 0,
                export: None,
                files: None,
            },
        }
    }

    /// Stops profiling and returns the final profiles. Configured outputs
    /// get one last export first (OTLP waits up to 5 s for delivery).
    ///
    /// Pull-endpoint requests still in flight then fail with
    /// [`Error::Stopped`] (a `/debug/pprof/profile?seconds=N` ends at once,
    /// answered 503).
    pub fn stop(mut self) -> Result<Report, Error> {
        let session = Arc::clone(self.session()?);
        // Counters after the final export round and its flush.
        let (export, files) = match self.periodic.take() {
            Some(periodic) => {
                let last = periodic.stop(STOP_FLUSH_TIMEOUT);
                (last.export, last.files)
            }
            None => (None, None),
        };
        self.halt();
        // The final profiles drain the rings one last time: before the
        // session is closed and another profiler may start. On an error,
        // `drop` closes it.
        let config = &session.config;
        let heap = if config.heap && lowprof_alloc::is_installed() {
            Some(session.heap_profile()?)
        } else {
            None
        };
        let cpu = if config.cpu_hz > 0 { Some(session.final_cpu_profile()?) } else { None };
        self.release();
        let mut stats = session.stats();
        stats.export = export;
        stats.files = files;
        Ok(Report { heap, cpu, stats })
    }

    /// In a forked child the drainer and symbolizer threads do not exist and
    /// their locks may be held for ever: turn heap sampling off (an atomic
    /// store; the child has no CPU timers, fork does not copy them) and leave
    /// the rest alone, never joining or locking.
    fn abandon_in_child(&mut self) {
        lowprof_alloc::stop();
        if let Some(periodic) = self.periodic.take() {
            std::mem::forget(periodic);
        }
        #[cfg(feature = "serve")]
        if let Some(server) = self.server.take() {
            std::mem::forget(server);
        }
        if let Some(drainer) = self.drainer.take() {
            std::mem::forget(drainer);
        }
        if let Some(session) = self.session.take() {
            session.sampling_stopped.store(true, Ordering::Release);
            std::mem::forget(session);
        }
    }

    /// Stops everything and lets another profiler start; idempotent.
    fn shutdown(&mut self) {
        self.halt();
        self.release();
    }

    /// Stops the outputs, the pull endpoint, the samplers and the drainer;
    /// idempotent. The session stays open (the final profiles can still be
    /// taken) and no other profiler can start yet.
    fn halt(&mut self) {
        let Some(session) = self.session.as_ref() else { return };
        if session.in_forked_child() {
            self.abandon_in_child();
            return;
        }
        if let Some(periodic) = self.periodic.take() {
            periodic.stop(STOP_FLUSH_TIMEOUT);
        }
        #[cfg(feature = "serve")]
        drop(self.server.take());
        session.stop_sampling();
        if let Some(drainer) = self.drainer.take() {
            session.stopping.store(true, Ordering::Release);
            drain::wake();
            let _ = drainer.join();
        }
    }

    /// Closes the session, so that threads still holding it (pull requests
    /// in flight) never drain the rings again, and only then lets another
    /// profiler start; idempotent.
    fn release(&mut self) {
        let Some(session) = self.session.as_ref() else { return };
        if session.in_forked_child() {
            return;
        }
        session.close();
        if std::mem::take(&mut self.holds_running) {
            RUNNING.store(false, Ordering::Release);
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Profiler");
        if let Some(s) = &self.session {
            d.field("heap", &s.config.heap)
                .field("cpu_hz", &s.config.cpu_hz)
                .field("sampling_stopped", &s.sampling_stopped.load(Ordering::Relaxed));
        }
        d.finish()
    }
}
