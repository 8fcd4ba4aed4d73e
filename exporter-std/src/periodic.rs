//! The periodic exporter: every export interval, the CPU profile of that
//! interval and the heap at that moment go out, as one OTLP request and/or
//! as rotating pprof files.
//!
//! ```text
//!  thread "lowprof-periodic" (SIGPROF blocked)
//!    every interval, and once more at stop:
//!      cpu  = session.cpu_profile_of(own CPU window)   (own windows: the user's
//!      heap = session.heap_round(own alloc window)      profiles are unaffected)
//!             (session.heap_profile() when only files are written)
//!      ├─ OTLP:  otlp::encode_request([alloc delta, in use, cpu]) ─► HttpExporter ─► lowprof-export
//!      └─ files: RotatingWriter: heap-<time>-<n>.pb.gz (cumulative), cpu-<time>-<n>.pb.gz
//! ```
//!
//! The heap goes out in two forms. Files hold Go's cumulative heap profile
//! (`alloc_*` since the start, `inuse_*` now), as `go tool pprof` expects.
//! OTLP backends (Pyroscope, for one) take each profile as the measurement
//! of its own `[time, time + duration)` and add profiles up over time, so
//! OTLP gets the allocations of `[previous round, now)` (the first round:
//! since the session start) as one profile, and `inuse_*` as a snapshot at
//! now with duration zero as another.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::drain::{WindowId, lock};
use crate::error::Error;
use crate::export::{ExportCounters, ExportStats, HttpExporter};
use crate::files::RotatingWriter;
use crate::otlp::{self, ResourceInfo};
use crate::profile::Profile;
use crate::session::Session;

/// Where periodic profiles go.
pub(crate) struct Outputs {
    pub otlp: Option<(HttpExporter, ResourceInfo)>,
    pub files: Option<RotatingWriter>,
}

/// The periodic exporter's counters at `stop()`, after the flush and the
/// exporter's shutdown: what was not delivered in time is in `abandoned`,
/// and nothing is `queued` or `in_flight`.
pub(crate) struct Final {
    pub export: Option<ExportStats>,
    pub files: Option<FileStats>,
}

/// Counts of the file output, for `stats()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Files written.
    pub written: u64,
    /// Writes that failed.
    pub failed: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    /// Held for a whole export round (encoding, queueing, writing and
    /// syncing files): never taken to read counters.
    outputs: Mutex<Outputs>,
    /// Held only to update or copy the counters.
    files: Mutex<FileStats>,
}

/// The running periodic exporter.
pub(crate) struct Periodic {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    /// The OTLP exporter's counters, read without `outputs`.
    export: Option<ExportCounters>,
    /// Whether files are written (`outputs.files.is_some()`).
    files: bool,
}

impl Periodic {
    /// Starts the thread; `interval` between exports.
    pub(crate) fn start(
        session: Arc<Session>,
        interval: Duration,
        outputs: Outputs,
    ) -> Result<Self, Error> {
        let windows = {
            let mut state = lock(&session.state);
            let cpu = state.open_window();
            // Opened now, but it holds everything since the session start.
            let alloc = (outputs.otlp.is_some() && session.config.heap)
                .then(|| state.open_alloc_window(session.started.0));
            Windows { cpu, alloc }
        };
        let export = outputs.otlp.as_ref().map(|(exporter, _)| exporter.counters());
        let files = outputs.files.is_some();
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            outputs: Mutex::new(outputs),
            files: Mutex::new(FileStats::default()),
        });
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("lowprof-periodic".into())
            .spawn(move || run(&session, &for_thread, windows, interval))
            .map_err(Error::Spawn)?;
        Ok(Self { shared, handle: Some(handle), export, files })
    }

    /// Exports once more, stops the thread, waits up to `flush` for the
    /// OTLP queue to empty, and shuts the OTLP exporter down (what is still
    /// pending then is counted as abandoned). Returns the final counters.
    ///
    /// Waits for the round in progress and the final one (local work:
    /// draining, symbolizing, encoding, writing files), then at most `flush`
    /// plus 200 ms for the network: never longer, whatever the endpoint does.
    pub(crate) fn stop(mut self, flush: Duration) -> Final {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        if let Some((exporter, _)) = lock(&self.shared.outputs).otlp.as_mut() {
            exporter.close(flush);
        }
        Final { export: self.export_stats(), files: self.file_stats() }
    }

    /// The OTLP exporter's counters, if OTLP export is on. Never waits for
    /// an export round.
    pub(crate) fn export_stats(&self) -> Option<ExportStats> {
        self.export.as_ref().map(ExportCounters::stats)
    }

    /// The file output's counters, if files are written. Never waits for
    /// an export round (only for another counter update).
    pub(crate) fn file_stats(&self) -> Option<FileStats> {
        self.files.then(|| lock(&self.shared.files).clone())
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The periodic consumer's windows in the session.
#[derive(Clone, Copy)]
struct Windows {
    /// CPU samples since the previous round.
    cpu: WindowId,
    /// Allocations since the previous round, for OTLP.
    alloc: Option<WindowId>,
}

fn run(session: &Session, shared: &Shared, windows: Windows, interval: Duration) {
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    loop {
        let stopping = {
            let stop = lock(&shared.stop);
            let (stop, _) = shared
                .wake
                .wait_timeout_while(stop, interval, |stop| !*stop)
                .unwrap_or_else(|p| p.into_inner());
            *stop
        };
        export_once(session, shared, windows);
        if stopping {
            break;
        }
    }
    let mut state = lock(&session.state);
    state.close_window(windows.cpu);
    if let Some(alloc) = windows.alloc {
        state.close_alloc_window(alloc);
    }
}

/// One round: take the profiles and hand them to every output. Errors of
/// one output never stop the others (they are counted).
fn export_once(session: &Session, shared: &Shared, windows: Windows) {
    let config = &session.config;
    let cpu = if config.cpu_hz > 0 { session.cpu_profile_of(windows.cpu).ok() } else { None };
    // For files, the cumulative heap; for OTLP, the alloc delta and in-use
    // snapshot of the same moment.
    let (heap, otlp_heap) = if config.heap && lowprof_alloc::is_installed() {
        match windows.alloc {
            Some(window) => match session.heap_round(window) {
                Ok(round) => (Some(round.cumulative), vec![round.alloc_delta, round.in_use]),
                Err(_) => (None, Vec::new()),
            },
            None => (session.heap_profile().ok(), Vec::new()),
        }
    } else {
        (None, Vec::new())
    };
    if heap.is_none() && cpu.is_none() {
        return;
    }
    let mut outputs = lock(&shared.outputs);
    if let Some((exporter, resource)) = &outputs.otlp {
        let profiles: Vec<&Profile> = otlp_heap.iter().chain(cpu.iter()).collect();
        if !profiles.is_empty() {
            exporter.submit(otlp::encode_request(&profiles, resource));
        }
    }
    if let Some(writer) = outputs.files.as_mut() {
        for (prefix, profile) in [("heap", heap.as_ref()), ("cpu", cpu.as_ref())] {
            let Some(profile) = profile else { continue };
            // Write (and fsync) first; the counters' lock is taken only to
            // count, so `stats()` never waits for the disk.
            let written = writer.write(prefix, profile);
            let mut stats = lock(&shared.files);
            match written {
                Ok(_) => stats.written += 1,
                Err(e) => {
                    stats.failed += 1;
                    stats.last_error = Some(e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ProfilerBuilder;
    use crate::config::{Compression, ExportConfig};
    use crate::symbolize_thread::SymbolizeThread;
    use std::sync::mpsc;

    fn session() -> Arc<Session> {
        let config = ProfilerBuilder::default().heap(false).cpu_hz(0);
        Arc::new(Session::new(config, SymbolizeThread::spawn().unwrap(), false))
    }

    fn outputs(dir: &std::path::Path) -> Outputs {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let export = ExportConfig {
            url: format!("http://127.0.0.1:{port}/v1development/profiles"),
            headers: Vec::new(),
            timeout: Some(Duration::from_secs(1)),
            compression: Compression::Gzip,
            service_name: None,
            resource_attributes: Vec::new(),
            export_interval: Duration::from_secs(3600),
        };
        let resource = otlp::detect_resource(Some("test"), &[]);
        Outputs {
            otlp: Some((HttpExporter::start(export).unwrap(), resource)),
            files: Some(RotatingWriter::new(dir.join("profiles"), 3).unwrap()),
        }
    }

    #[test]
    fn stats_never_wait_for_an_export_round() {
        let dir = tempfile::tempdir().unwrap();
        let periodic = Arc::new(
            Periodic::start(session(), Duration::from_secs(3600), outputs(dir.path())).unwrap(),
        );
        // An export round in progress holds `outputs` (encoding, writing,
        // fsync); stats() must still answer.
        let round = lock(&periodic.shared.outputs);
        let (tx, rx) = mpsc::channel();
        let reader = Arc::clone(&periodic);
        let thread = std::thread::spawn(move || {
            let _ = tx.send((reader.export_stats(), reader.file_stats()));
        });
        let answered = rx.recv_timeout(Duration::from_secs(30));
        drop(round);
        thread.join().unwrap();
        let (export, files) = answered.expect("stats() blocked behind the export round");
        assert_eq!(export.map(|e| e.requests_sent), Some(0));
        assert_eq!(files, Some(FileStats::default()));
    }
}
