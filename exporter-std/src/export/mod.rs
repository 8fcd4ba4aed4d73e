//! OTLP/HTTP export: a bounded queue drained by one thread,
//! `lowprof-export`, that POSTs each request and retries what is worth
//! retrying.
//!
//! ```text
//!  submit(request) ──► queue (≤ 16 requests, ≤ 32 MiB; full → drop OLDEST)
//!    never blocks          │
//!                          ▼  one request at a time, in order
//!                  thread "lowprof-export" (SIGPROF blocked)
//!                          │  gzip once
//!                          ▼
//!        POST {url}  application/x-protobuf, Content-Encoding: gzip,
//!                    configured headers, User-Agent: lowprof/<version>
//!                          │
//!      ┌───────────────────┼──────────────────────┬───────────────────────┐
//!      ▼                   ▼                      ▼                       ▼
//!  2xx: sent          429/502/503/504,      other 3xx/4xx/5xx:      TLS / not HTTP:
//!  (partial_success   connect failure,      rejected, never         failed, never
//!   counted, never    timeout: retry after  retried                 retried
//!   retried)          max(Retry-After, backoff)
//!                     (5 s ×1.5, ≤ 30 s, then ±50 %: ≤ 45 s) until 5 min → failed
//! ```
//!
//! A library must not print: nothing here logs. Outcomes are counted in
//! [`ExportStats`], and the latest problem is kept in
//! [`ExportStats::last_error`].
//!
//! Every request handed in is counted once in `enqueued` and ends in
//! exactly one outcome counter (see [`ExportStats::accounted`]):
//!
//! ```text
//!  enqueued = requests_sent + requests_failed + rejected + dropped_queue_full
//!           + abandoned + queued + in_flight
//! ```
//!
//! [`HttpExporter::close`] (at `stop()`) flushes once, for its timeout, and
//! then counts whatever is still queued or in flight as `abandoned`; an
//! attempt still under way then is left to finish on its own thread and its
//! outcome is not counted again.

mod http;
mod queue;
mod retry;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::ExportConfig;
use crate::error::Error;

use http::{Attempt, Sender};
use queue::Queue;
pub(crate) use queue::{MAX_QUEUED_BYTES, MAX_QUEUED_REQUESTS};
pub(crate) use retry::RetryPolicy;
use retry::{Backoff, Rng};

/// How long dropping an [`HttpExporter`] waits for queued requests.
pub(crate) const DROP_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long dropping an [`HttpExporter`] then waits for its thread to end
/// (it may be in the middle of a request; after this it is left to finish
/// that attempt on its own and exit).
const DROP_JOIN_TIMEOUT: Duration = Duration::from_millis(200);

/// Counters of the OTLP exporter.
///
/// lowprof never prints; this is where export problems show up. Counters
/// only grow (except `queued` and `in_flight`).
///
/// Every export round hands one request to the exporter (`enqueued`), and
/// every such request is, at any moment, in exactly one of the other
/// counts: `enqueued == accounted()`, that is
///
/// ```text
/// enqueued == requests_sent + requests_failed + rejected + dropped_queue_full
///           + abandoned + queued + in_flight (0 or 1)
/// ```
///
/// After [`Profiler::stop`](crate::Profiler::stop) nothing is queued or in
/// flight any more, so the stats in its [`Report`](crate::Report) satisfy
/// `enqueued == requests_sent + requests_failed + rejected +
/// dropped_queue_full + abandoned`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Requests handed to the exporter: one per export round, the final
    /// round at `stop()` included.
    pub enqueued: u64,
    /// Requests the server accepted (2xx), partial successes included.
    pub requests_sent: u64,
    /// Requests given up: the retry budget ran out, or a failure retrying
    /// cannot fix (TLS, a non-HTTP answer).
    pub requests_failed: u64,
    /// Attempts after the first one (all requests together).
    pub retries: u64,
    /// Requests the server refused with a status that is never retried
    /// (400, 401, 403, 404, 413, 500, ...).
    pub rejected: u64,
    /// Accepted requests whose answer carried a `partial_success` (profiles
    /// rejected, or a warning); never retried.
    pub partial_successes: u64,
    /// Sum of `rejected_profiles` over the partial successes.
    pub rejected_profiles: u64,
    /// Requests dropped unsent because the queue was full (the oldest go
    /// first), or because one request alone was larger than the queue.
    pub dropped_queue_full: u64,
    /// Requests still queued, being retried or being sent when the
    /// exporter was shut down: at `stop()`, after waiting
    /// [`STOP_FLUSH_TIMEOUT`](crate::STOP_FLUSH_TIMEOUT) for them. One whose
    /// attempt was under way may still reach the server; its outcome is not
    /// counted again.
    pub abandoned: u64,
    /// Requests waiting to be sent now (not counting one in flight).
    pub queued: usize,
    /// Whether a request is being sent (or waiting to be retried) now.
    pub in_flight: bool,
    /// Body bytes (after compression) of the requests the server accepted.
    pub bytes_sent: u64,
    /// The latest problem: a retry's reason, a rejection's status and the
    /// start of its body, a partial success's message, a drop, or requests
    /// abandoned at shutdown. Kept after later successes.
    pub last_error: Option<String>,
}

impl ExportStats {
    /// Requests in some state: `requests_sent + requests_failed + rejected +
    /// dropped_queue_full + abandoned + queued + in_flight`. Always equal to
    /// [`enqueued`](Self::enqueued) in a snapshot from
    /// [`Profiler::stats`](crate::Profiler::stats) or a
    /// [`Report`](crate::Report): no request goes uncounted, and none is
    /// counted twice.
    pub fn accounted(&self) -> u64 {
        self.requests_sent
            + self.requests_failed
            + self.rejected
            + self.dropped_queue_full
            + self.abandoned
            + self.queued as u64
            + u64::from(self.in_flight)
    }
}

/// State shared by the handle and the thread.
struct Shared {
    /// Queue, counters and flags.
    state: Mutex<State>,
    /// Signalled on every change of `state`.
    changed: Condvar,
}

/// What the mutex guards.
struct State {
    /// Requests waiting.
    queue: Queue,
    /// Counters (`queued` and `in_flight` are filled in by `stats()`).
    stats: ExportStats,
    /// A request is being sent or retried.
    in_flight: bool,
    /// The request in flight was counted as abandoned at shutdown: its
    /// outcome, if it ever comes, is not counted again.
    in_flight_abandoned: bool,
    /// The handle is gone: the thread must stop.
    shutdown: bool,
    /// The thread has returned.
    exited: bool,
}

impl Shared {
    /// Locks the state (a poisoned lock is still usable: the state is only
    /// counters and a queue).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on `changed` for at most `timeout`.
    fn wait<'a>(&self, guard: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    /// A snapshot of the counters.
    fn stats(&self) -> ExportStats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.queued = state.queue.len();
        stats.in_flight = state.in_flight;
        stats
    }

    /// Sleeps for `duration` unless shut down first; returns whether it
    /// was shut down.
    fn sleep_unless_shutdown(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.wait(state, deadline - now);
        }
    }
}

/// Sends OTLP profiles requests from a background thread.
pub(crate) struct HttpExporter {
    /// Shared with the thread.
    shared: Arc<Shared>,
    /// The thread, joined on drop when it ends in time.
    thread: Option<JoinHandle<()>>,
    /// The configuration (headers redacted in `Debug`).
    config: ExportConfig,
}

impl fmt::Debug for HttpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpExporter")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HttpExporter {
    /// Starts the `lowprof-export` thread, with the Collector's retry
    /// defaults and the standard proxy variables honoured.
    pub(crate) fn start(config: ExportConfig) -> Result<Self, Error> {
        Self::start_with(config, RetryPolicy::default(), true)
    }

    /// [`HttpExporter::start`] with a retry policy, and with or without
    /// `HTTPS_PROXY` & co.
    pub(crate) fn start_with(
        config: ExportConfig,
        policy: RetryPolicy,
        proxy_from_env: bool,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Queue::new(MAX_QUEUED_REQUESTS, MAX_QUEUED_BYTES),
                stats: ExportStats::default(),
                in_flight: false,
                in_flight_abandoned: false,
                shutdown: false,
                exited: false,
            }),
            changed: Condvar::new(),
        });
        let sender = Sender::new(&config, proxy_from_env);
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lowprof-export".into())
            .spawn(move || run(&for_thread, &sender, policy))
            .map_err(Error::Spawn)?;
        Ok(Self { shared, thread: Some(thread), config })
    }

    /// Queues an uncompressed `ExportProfilesServiceRequest`. Never blocks
    /// on I/O and never fails: when the queue is full the oldest requests
    /// are dropped (counted in `dropped_queue_full`); after
    /// [`HttpExporter::close`] the request is counted as abandoned.
    pub(crate) fn submit(&self, request: Vec<u8>) {
        let len = request.len();
        let mut state = self.shared.lock();
        state.stats.enqueued += 1;
        if state.shutdown {
            state.stats.abandoned += 1;
            state.stats.last_error =
                Some("a request came after the exporter was shut down: abandoned".to_owned());
            return;
        }
        let pushed = state.queue.push(request);
        state.stats.dropped_queue_full += pushed.dropped_oldest;
        if pushed.too_large {
            state.stats.dropped_queue_full += 1;
            state.stats.last_error = Some(format!(
                "dropped a {len}-byte request: larger than the export queue's {MAX_QUEUED_BYTES} bytes"
            ));
        } else if pushed.dropped_oldest > 0 {
            state.stats.last_error = Some(format!(
                "export queue full: dropped the {} oldest request(s) unsent (the endpoint is slow \
                 or unreachable)",
                pushed.dropped_oldest
            ));
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Waits until every queued request has been sent (or given up) and
    /// nothing is in flight; `false` if `timeout` passed first.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.queue.is_empty() && !state.in_flight {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || state.exited {
                return false;
            }
            state = self.shared.wait(state, deadline - now);
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> ExportStats {
        self.shared.stats()
    }

    /// A handle that reads the counters without the exporter itself, so
    /// whoever owns the exporter (and may be busy with it) never stands
    /// between a reader and the counters.
    pub(crate) fn counters(&self) -> ExportCounters {
        ExportCounters(Arc::clone(&self.shared))
    }
}

/// Reads an [`HttpExporter`]'s counters; see [`HttpExporter::counters`].
/// Takes only the exporter's state lock, which is never held across I/O.
#[derive(Clone)]
pub(crate) struct ExportCounters(Arc<Shared>);

impl ExportCounters {
    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> ExportStats {
        self.0.stats()
    }
}

impl HttpExporter {
    /// Flushes for up to `flush`, then stops the thread: requests still
    /// queued, and the one being sent or waiting for a retry, are counted
    /// in `abandoned` (an attempt in progress finishes on its own,
    /// unretried and uncounted). Returns within `flush + DROP_JOIN_TIMEOUT`
    /// whatever the server does: a thread still in an attempt then is
    /// detached, and exits when the attempt's time limit (the configured
    /// timeout, or 1 h when none is configured) ends it. Idempotent: a
    /// second call (and the drop after it) returns at once.
    pub(crate) fn close(&mut self, flush: Duration) {
        if self.shared.lock().shutdown {
            return;
        }
        self.flush(flush);
        let deadline = Instant::now() + DROP_JOIN_TIMEOUT;
        let mut state = self.shared.lock();
        state.shutdown = true;
        let pending = state.queue.clear() as u64 + u64::from(state.in_flight);
        if state.in_flight {
            state.in_flight = false;
            state.in_flight_abandoned = true;
        }
        if pending > 0 {
            state.stats.abandoned += pending;
            state.stats.last_error = Some(format!(
                "abandoned {pending} request(s) at shutdown: not delivered within {:.1} s",
                flush.as_secs_f64()
            ));
        }
        self.shared.changed.notify_all();
        while !state.exited {
            let now = Instant::now();
            if now >= deadline {
                // Detached: it exits after its current attempt.
                return;
            }
            state = self.shared.wait(state, deadline - now);
        }
        drop(state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpExporter {
    /// [`HttpExporter::close`] with [`DROP_FLUSH_TIMEOUT`], unless it was
    /// closed already.
    fn drop(&mut self) {
        self.close(DROP_FLUSH_TIMEOUT);
    }
}

/// The `lowprof-export` thread: takes requests in order and delivers each.
fn run(shared: &Shared, sender: &Sender, policy: RetryPolicy) {
    // Best effort: a failure only means SIGPROF may land on this thread too.
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    let mut rng = Rng::new();
    loop {
        let request = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    state.exited = true;
                    drop(state);
                    shared.changed.notify_all();
                    return;
                }
                if let Some(request) = state.queue.pop() {
                    state.in_flight = true;
                    break request;
                }
                state = shared.wait(state, Duration::from_secs(3600));
            }
        };
        let outcome = deliver(shared, sender, policy, &mut rng, request);
        let mut state = shared.lock();
        if std::mem::take(&mut state.in_flight_abandoned) {
            // Counted in `abandoned` by `close`, which also cleared
            // `in_flight`; the thread exits at the top of the loop.
            drop(state);
            continue;
        }
        let stats = &mut state.stats;
        match outcome {
            Outcome::Sent { bytes, partial } => {
                stats.requests_sent += 1;
                stats.bytes_sent += bytes;
                if let Some((rejected, message)) = partial {
                    stats.partial_successes += 1;
                    stats.rejected_profiles += u64::try_from(rejected).unwrap_or(0);
                    stats.last_error = Some(if message.is_empty() {
                        format!("partial success: {rejected} profile(s) rejected")
                    } else {
                        format!("partial success: {rejected} profile(s) rejected: {message}")
                    });
                }
            }
            Outcome::Rejected(reason) => {
                stats.rejected += 1;
                stats.last_error = Some(format!("rejected, not retried: {reason}"));
            }
            Outcome::Failed(reason) => {
                stats.requests_failed += 1;
                stats.last_error = Some(reason);
            }
        }
        state.in_flight = false;
        drop(state);
        shared.changed.notify_all();
    }
}

/// The end of one request.
enum Outcome {
    /// Accepted.
    Sent {
        /// Body bytes on the wire.
        bytes: u64,
        /// `(rejected_profiles, error_message)` of a partial success.
        partial: Option<(i64, String)>,
    },
    /// Refused with a non-retryable status.
    Rejected(String),
    /// Given up.
    Failed(String),
}

/// Sends one request, retrying per `policy` within its time budget.
fn deliver(
    shared: &Shared,
    sender: &Sender,
    policy: RetryPolicy,
    rng: &mut Rng,
    request: Vec<u8>,
) -> Outcome {
    let body = match sender.encode(request) {
        Ok(body) => body,
        Err(reason) => return Outcome::Failed(reason),
    };
    let start = Instant::now();
    let mut backoff = Backoff::new(policy);
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let (reason, retry_after) = match sender.attempt(&body) {
            Attempt::Delivered { partial } => {
                return Outcome::Sent { bytes: body.len() as u64, partial };
            }
            Attempt::Rejected { reason } => return Outcome::Rejected(reason),
            Attempt::Failed { reason } => {
                return Outcome::Failed(format!("failed, not retried: {reason}"));
            }
            Attempt::Retryable { reason, retry_after } => (reason, retry_after),
        };
        let elapsed = start.elapsed();
        let remaining = policy.max_elapsed.saturating_sub(elapsed);
        if remaining.is_zero() {
            return Outcome::Failed(format!(
                "gave up after {attempts} attempt(s) in {:.1} s (retry budget {:?}): {reason}",
                elapsed.as_secs_f64(),
                policy.max_elapsed
            ));
        }
        // `Retry-After` lengthens the wait, never shortens it below the
        // backoff (the Collector's rule): `Retry-After: 0` or a date in the
        // past must not turn into back-to-back POSTs for the whole budget.
        let backoff_wait = backoff.next_wait(rng);
        let wait = retry_after.map_or(backoff_wait, |r| r.max(backoff_wait)).min(remaining);
        let mut state = shared.lock();
        if state.shutdown {
            // Abandoned by `close`, which said so in `last_error`.
            return Outcome::Failed(format!("exporter stopped while retrying: {reason}"));
        }
        state.stats.last_error = Some(format!(
            "retrying in {:.1} s (attempt {attempts} failed): {reason}",
            wait.as_secs_f64()
        ));
        drop(state);
        if shared.sleep_unless_shutdown(wait) {
            return Outcome::Failed(format!("exporter stopped while retrying: {reason}"));
        }
        shared.lock().stats.retries += 1;
    }
}

#[cfg(test)]
mod tests;
