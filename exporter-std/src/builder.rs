//! `Profiler::builder()`: what to sample and how often, validated at
//! `start()` with errors that state the valid range.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lowprof_sampler::TimerMode;

use crate::config::{self, OtlpSettings};
use crate::error::Error;
use crate::profiler::Profiler;

/// Default pause between two drains of the rings (and CPU thread checks).
///
/// Each wake-up of the drainer costs ~100 µs of CPU on a VM (measured with
/// `benches/examples/cpu_idle.rs`), so 50 ms keeps an idle profiler at ~0.2 %
/// of a core, while the rings (thousands of records) never come close to
/// full and a new thread waits at most this long for its CPU timer.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// Files of each kind `write_dir` keeps by default.
pub const DEFAULT_KEEP_FILES: usize = 10;

/// Configures and starts a [`Profiler`].
#[derive(Clone)]
#[must_use = "a builder does nothing until .start()"]
pub struct ProfilerBuilder {
    pub(crate) heap: bool,
    pub(crate) heap_interval: Option<u64>,
    pub(crate) cpu_hz: u32,
    pub(crate) cpu_timer: TimerMode,
    pub(crate) duration: Option<Duration>,
    pub(crate) drain_interval: Duration,
    pub(crate) otlp: OtlpSettings,
    pub(crate) serve_addr: Option<String>,
    pub(crate) serve_token: Option<String>,
    pub(crate) write_dir: Option<PathBuf>,
    pub(crate) keep_files: usize,
    pub(crate) max_heap_samples_per_sec: Option<f64>,
    pub(crate) max_cpu_samples_per_sec: Option<f64>,
}

impl std::fmt::Debug for ProfilerBuilder {
    /// Header values and the serve token are secrets: only their keys, or
    /// that they are set, are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilerBuilder")
            .field("heap", &self.heap)
            .field("heap_interval", &self.heap_interval)
            .field("cpu_hz", &self.cpu_hz)
            .field("cpu_timer", &self.cpu_timer)
            .field("duration", &self.duration)
            .field("drain_interval", &self.drain_interval)
            // Redacts header values and URL credentials.
            .field("otlp", &self.otlp)
            .field("serve_pprof", &self.serve_addr)
            .field("serve_token", &self.serve_token.as_ref().map(|_| "<redacted>"))
            .field("write_dir", &self.write_dir)
            .field("keep_files", &self.keep_files)
            .finish()
    }
}

impl Default for ProfilerBuilder {
    fn default() -> Self {
        Self {
            heap: true,
            heap_interval: None,
            cpu_hz: lowprof_sampler::DEFAULT_HZ,
            cpu_timer: TimerMode::PerThread,
            duration: None,
            drain_interval: DEFAULT_DRAIN_INTERVAL,
            otlp: OtlpSettings::default(),
            serve_addr: None,
            serve_token: None,
            write_dir: None,
            keep_files: DEFAULT_KEEP_FILES,
            max_heap_samples_per_sec: None,
            max_cpu_samples_per_sec: None,
        }
    }
}

impl ProfilerBuilder {
    /// Turns heap profiling on (the default) or off.
    pub fn heap(mut self, on: bool) -> Self {
        self.heap = on;
        self
    }

    /// Mean bytes allocated between two heap samples (default: the
    /// allocator's, 524288). Valid: 1 ..= 2^40.
    pub fn heap_interval(mut self, bytes: u64) -> Self {
        self.heap_interval = Some(bytes);
        self
    }

    /// CPU samples per CPU-second of each thread (default 99; 0 turns CPU
    /// profiling off). Valid: 1 ..= 1000.
    pub fn cpu_hz(mut self, hz: u32) -> Self {
        self.cpu_hz = hz;
        self
    }

    /// Per-thread CPU timers (the default) or the process-wide
    /// `setitimer(ITIMER_PROF)` fallback for systems without them.
    pub fn cpu_timer(mut self, mode: TimerMode) -> Self {
        self.cpu_timer = mode;
        self
    }

    /// Caps heap samples per second: when the program allocates fast
    /// enough to exceed it, the mean sampling interval grows (and shrinks
    /// back, never below the configured one, when it slows down). Adjusted
    /// once a second on the drainer thread; every sample keeps the weight
    /// of the interval it was taken at, so estimates stay unbiased.
    pub fn max_heap_samples_per_sec(mut self, samples: f64) -> Self {
        self.max_heap_samples_per_sec = Some(samples);
        self
    }

    /// Caps CPU samples per second (all threads together): with many busy
    /// threads the per-thread rate drops below `cpu_hz` (never below 1 Hz)
    /// and comes back when they go idle. Each sample keeps the period it
    /// was taken at, so CPU time stays unbiased.
    pub fn max_cpu_samples_per_sec(mut self, samples: f64) -> Self {
        self.max_cpu_samples_per_sec = Some(samples);
        self
    }

    /// Stops sampling by itself after `duration` (profiles stay available).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// How often the drainer empties the rings and looks for new threads
    /// (default 50 ms). Shorter: new threads are sampled sooner and bursts
    /// drop less; longer: less drainer work. Clamped to 1 ms ..= 1 s.
    pub fn drain_interval(mut self, interval: Duration) -> Self {
        self.drain_interval = interval.clamp(Duration::from_millis(1), Duration::from_secs(1));
        self
    }

    /// Sends OTLP profiles to `url` every export interval: a base URL such
    /// as `http://collector:4318` gets `/v1development/profiles` appended, a
    /// URL with a path is used as is. Overrides `OTEL_EXPORTER_OTLP_*ENDPOINT`.
    pub fn otlp_endpoint(mut self, url: impl Into<String>) -> Self {
        self.otlp.endpoint = Some(url.into());
        self
    }

    /// Adds an HTTP header to every export request (an auth token, say).
    /// The value is a secret: it never appears in `Debug` output or errors.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.otlp.headers.push((key.into(), value.into()));
        self
    }

    /// Per-request timeout for OTLP export (default 10 s; zero = none).
    pub fn otlp_timeout(mut self, timeout: Duration) -> Self {
        self.otlp.timeout = Some(timeout);
        self
    }

    /// `"gzip"` (the default) or `"none"`.
    pub fn otlp_compression(mut self, compression: impl Into<String>) -> Self {
        self.otlp.compression = Some(compression.into());
        self
    }

    /// The `service.name` resource attribute (default: `OTEL_SERVICE_NAME`,
    /// else `unknown_service:<executable>`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.otlp.service_name = Some(name.into());
        self
    }

    /// How often profiles are exported or written (default 60 s).
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.otlp.export_interval = Some(interval);
        self
    }

    /// Serves Go's `/debug/pprof/{profile,heap,allocs}` on `addr`.
    ///
    /// Loopback unless told otherwise: a bare port (`"6060"` or `":6060"`)
    /// binds `127.0.0.1` — unlike Go's `":6060"`, which means every
    /// interface. To expose profiles, name the interface (`"0.0.0.0:6060"`,
    /// `"[::]:6060"`, a pod IP) and consider
    /// [`ProfilerBuilder::serve_token`]. An address that is not a port,
    /// `ip:port` or `hostname:port` is an [`Error::Config`] at `start()`.
    pub fn serve_pprof(mut self, addr: impl Into<String>) -> Self {
        let addr = addr.into();
        let port = addr.strip_prefix(':').unwrap_or(&addr);
        let bare_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        self.serve_addr = Some(if bare_port { format!("127.0.0.1:{port}") } else { addr });
        self
    }

    /// Requires `Authorization: Bearer <token>` on the pull endpoint: 1 to
    /// 4096 visible ASCII characters, else [`Error::InvalidBearerToken`] at
    /// `start()`.
    pub fn serve_token(mut self, token: impl Into<String>) -> Self {
        self.serve_token = Some(token.into());
        self
    }

    /// Writes `heap-*.pb.gz` and `cpu-*.pb.gz` into `dir` every export
    /// interval, keeping the newest [`ProfilerBuilder::keep_files`] of each.
    pub fn write_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.write_dir = Some(dir.into());
        self
    }

    /// How many files of each kind `write_dir` keeps (default 10, at least 1).
    pub fn keep_files(mut self, n: usize) -> Self {
        self.keep_files = n.max(1);
        self
    }

    /// Checks the configuration.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(bytes) = self.heap_interval {
            lowprof_alloc::validate_interval(bytes)
                .map_err(|_| Error::InvalidHeapInterval { bytes })?;
        }
        if self.cpu_hz != 0
            && !(lowprof_sampler::MIN_HZ..=lowprof_sampler::MAX_HZ).contains(&self.cpu_hz)
        {
            return Err(Error::InvalidCpuHz { hz: self.cpu_hz });
        }
        for (setting, budget) in [
            ("max_heap_samples_per_sec", self.max_heap_samples_per_sec),
            ("max_cpu_samples_per_sec", self.max_cpu_samples_per_sec),
        ] {
            if let Some(samples) = budget.filter(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(Error::Config {
                    setting,
                    value: format!("{samples:?}"),
                    fix:
                        "is not a rate: use a number of samples per second above zero (e.g. 100.0)"
                            .into(),
                });
            }
        }
        // Checked here too because files may be written without OTLP export.
        config::check_export_interval(self.otlp.export_interval)?;
        // The pull endpoint's settings are checked before any sampler
        // starts (binding can still fail later, e.g. a port in use).
        if let Some(addr) = &self.serve_addr {
            check_serve_addr(addr)?;
        }
        if self.serve_token.as_deref().is_some_and(|t| !valid_bearer_token(t)) {
            return Err(Error::InvalidBearerToken);
        }
        // Without the endpoint compiled in, a requested one must not be
        // silently missing (a scraper would find nothing and say nothing).
        #[cfg(not(feature = "serve"))]
        if let Some(addr) = &self.serve_addr {
            return Err(config::config_error(
                "serve_pprof",
                addr,
                "needs lowprof's `serve` cargo feature (on by default): make it enabled, or \
                 remove serve_pprof"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Starts profiling. One profiler runs per process at a time.
    pub fn start(self) -> Result<Profiler, Error> {
        Profiler::start(self)
    }
}

/// Longest `serve_pprof` host name (a DNS name's limit).
const MAX_SERVE_HOST_LEN: usize = 253;

/// Checks a `serve_pprof` address: an IP socket address (`127.0.0.1:6060`,
/// `[::1]:6060`), or `host:port` with a DNS name (`localhost:6060`) — what
/// `TcpListener::bind` takes. Anything else (a missing port, whitespace,
/// control characters) fails here, before any sampler starts, and the
/// value is shown escaped and shortened.
fn check_serve_addr(addr: &str) -> Result<(), Error> {
    let is_name = |host: &str| {
        (1..=MAX_SERVE_HOST_LEN).contains(&host.len())
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    };
    let is_port = |port: &str| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    };
    let valid = addr.parse::<SocketAddr>().is_ok()
        || addr.rsplit_once(':').is_some_and(|(host, port)| is_name(host) && is_port(port));
    if valid {
        return Ok(());
    }
    Err(config::config_error(
        "serve_pprof",
        addr,
        "is not a host:port address: use e.g. 127.0.0.1:6060 (port 0 picks a free port; keep \
         it on loopback unless you also set serve_token)"
            .to_owned(),
    ))
}

/// The pull endpoint's bearer-token rule (the server checks it again):
/// 1 to 4096 visible ASCII characters, what fits in an `Authorization`
/// header after `Bearer `.
fn valid_bearer_token(token: &str) -> bool {
    (1..=4096).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    /// Built without the `serve` feature, asking for the endpoint is an
    /// error at start, not a profiler that serves nothing.
    #[cfg(not(feature = "serve"))]
    #[test]
    fn serve_pprof_without_the_feature_is_an_error() {
        let e = super::ProfilerBuilder::default().serve_pprof("6060").validate().unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("serve_pprof") && msg.contains("`serve` cargo feature"), "{msg}");
    }

    use super::*;

    #[cfg(feature = "serve")] // else serve_pprof is an error of its own
    #[test]
    fn a_bare_serve_port_binds_loopback() {
        for (given, bound) in [
            ("6060", "127.0.0.1:6060"),
            (":6060", "127.0.0.1:6060"),
            (":0", "127.0.0.1:0"),
            ("0.0.0.0:6060", "0.0.0.0:6060"),
            ("[::]:6060", "[::]:6060"),
            ("localhost:6060", "localhost:6060"),
        ] {
            let b = ProfilerBuilder::default().serve_pprof(given);
            assert_eq!(b.serve_addr.as_deref(), Some(bound), "{given}");
            b.validate().unwrap();
        }
        for bad in [":", "", "99999", ":6060x"] {
            let e = ProfilerBuilder::default().serve_pprof(bad).validate().unwrap_err();
            assert!(e.to_string().starts_with("serve_pprof"), "{bad}: {e}");
        }
    }

    #[test]
    fn validation_states_the_range() {
        let e = ProfilerBuilder::default().heap_interval(0).validate().unwrap_err();
        assert!(matches!(e, Error::InvalidHeapInterval { bytes: 0 }));
        assert!(e.to_string().contains("1..=1099511627776"), "{e}");
        let e = ProfilerBuilder::default().heap_interval(u64::MAX).validate().unwrap_err();
        assert!(matches!(e, Error::InvalidHeapInterval { .. }));
        let e = ProfilerBuilder::default().cpu_hz(5000).validate().unwrap_err();
        assert!(e.to_string().contains("1..=1000"), "{e}");
        ProfilerBuilder::default().cpu_hz(0).heap_interval(1).validate().unwrap();
        let e = ProfilerBuilder::default().export_interval(Duration::ZERO).validate().unwrap_err();
        assert!(e.to_string().contains("export_interval"), "{e}");
        ProfilerBuilder::default().cpu_hz(1000).heap_interval(1 << 40).validate().unwrap();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e =
                ProfilerBuilder::default().max_heap_samples_per_sec(bad).validate().unwrap_err();
            assert!(e.to_string().contains("max_heap_samples_per_sec"), "{e}");
            let e = ProfilerBuilder::default().max_cpu_samples_per_sec(bad).validate().unwrap_err();
            assert!(e.to_string().contains("max_cpu_samples_per_sec"), "{e}");
        }
        ProfilerBuilder::default().max_heap_samples_per_sec(0.5).validate().unwrap();
        // Found by the hostile-input property test: a tiny negative rate
        // was shown as 330 digits.
        let e = ProfilerBuilder::default().max_cpu_samples_per_sec(-5e-324).validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "max_cpu_samples_per_sec: \"-5e-324\" is not a rate: use a number of samples per \
             second above zero (e.g. 100.0)"
        );
    }

    #[cfg(feature = "serve")] // else serve_pprof is an error of its own
    #[test]
    fn serve_settings_are_checked_before_start() {
        for good in ["127.0.0.1:0", "[::1]:6060", "0.0.0.0:65535", "localhost:6060", "a.b-c_d:1"] {
            ProfilerBuilder::default().serve_pprof(good).validate().unwrap();
        }
        for bad in [
            "",
            "localhost",
            "localhost:65536",
            "localhost:+1",
            "local host:6060",
            "localhost:6060\n",
            "evil\u{1b}[2J:1",
            "[::1:6060",
            "http://localhost:6060",
        ] {
            let e = ProfilerBuilder::default().serve_pprof(bad).validate().unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("serve_pprof: ") && msg.contains("127.0.0.1:6060"), "{msg}");
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
        let long = format!("{}:1", "h".repeat(10_000));
        let msg = ProfilerBuilder::default().serve_pprof(long).validate().unwrap_err().to_string();
        assert!(msg.len() < 400 && msg.contains("10002 characters"), "{msg}");

        ProfilerBuilder::default().serve_token("s3cr3t-t0ken").validate().unwrap();
        ProfilerBuilder::default().serve_token("x".repeat(4096)).validate().unwrap();
        for bad in [String::new(), "a b".into(), "t\r\n".into(), "é".into(), "x".repeat(4097)] {
            let e = ProfilerBuilder::default().serve_token(bad.clone()).validate().unwrap_err();
            assert!(matches!(e, Error::InvalidBearerToken), "{bad:?}: {e:?}");
        }
    }
}
