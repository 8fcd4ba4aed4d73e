//! End-to-end tests of the exporter against a tiny in-test HTTP/1.1 server.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{ExportProfilesPartialSuccess, ExportProfilesServiceResponse, RpcStatus};
use super::*;
use crate::config::{Compression, Secret};

/// A canned answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Canned {
    fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new(), delay: Duration::ZERO }
    }
    fn ok() -> Self {
        Self::status(200)
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// The body, gunzipped if it says it is gzip.
    fn decoded_body(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(self.body.as_slice()).read_to_end(&mut out).unwrap();
            out
        } else {
            self.body.clone()
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering the n-th request with
/// `script[n]` (the last entry repeats); one thread per connection.
struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(script: Vec<Canned>) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn on(listener: TcpListener, script: Vec<Canned>) -> Self {
        assert!(!script.is_empty());
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let script = Arc::new(script);
            let next = Arc::new(AtomicUsize::new(0));
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (r, script, next) =
                            (Arc::clone(&r), Arc::clone(&script), Arc::clone(&next));
                        std::thread::spawn(move || serve(stream, &r, &script, &next));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { addr, requests, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://{}/v1development/profiles", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Reads one request from `stream`, records it and answers it.
fn serve(stream: TcpStream, log: &Mutex<Vec<Recorded>>, script: &[Canned], next: &AtomicUsize) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize =
        headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let canned = {
        let mut log = log.lock().unwrap();
        log.push(Recorded { method, path, headers, body });
        let n = next.fetch_add(1, Ordering::SeqCst);
        script[n.min(script.len() - 1)].clone()
    };
    std::thread::sleep(canned.delay);
    let mut out = format!(
        "HTTP/1.1 {} Canned\r\ncontent-length: {}\r\nconnection: close\r\n",
        canned.status,
        canned.body.len()
    );
    for (k, v) in &canned.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut stream = reader.into_inner();
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(&canned.body);
    let _ = stream.flush();
}

fn config(url: String) -> ExportConfig {
    ExportConfig {
        url,
        headers: Vec::new(),
        timeout: Some(Duration::from_secs(2)),
        compression: Compression::Gzip,
        service_name: None,
        resource_attributes: Vec::new(),
        export_interval: Duration::from_secs(60),
    }
}

/// 50 ms initial wait, 1 s budget.
fn fast() -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_millis(50),
        multiplier: 1.5,
        randomization: 0.5,
        max_interval: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(1),
    }
}

fn start(config: ExportConfig, policy: RetryPolicy) -> HttpExporter {
    HttpExporter::start_with(config, policy, false).unwrap()
}

/// How long a test waits for something that happens at once unless the
/// code is broken (a loaded CI machine can take seconds to schedule a
/// thread; a broken build only fails later).
const LIVENESS: Duration = Duration::from_secs(30);

/// Polls `cond` every millisecond for up to `within`.
fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A port on 127.0.0.1 that refuses connections and stays ours: a TCP
/// socket bound (without `SO_REUSEADDR`, so nobody else can bind the port)
/// but not listening, which the kernel answers with a reset. A port bound
/// and released instead could be taken meanwhile by a concurrent test
/// binding port 0.
struct RefusingPort {
    socket: OwnedFd,
    port: u16,
}

impl RefusingPort {
    fn new() -> Self {
        // SAFETY: socket(2) takes no pointers; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a new, open descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero bytes are a valid `sockaddr_in` (plain integers).
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        addr.sin_port = 0;
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid `sockaddr_in` of `len` bytes and the
        // descriptor is open.
        let rc = unsafe { libc::bind(socket.as_raw_fd(), (&raw const addr).cast(), len) };
        assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
        // SAFETY: `addr` and `len` are writable and `len` is `addr`'s size.
        let rc =
            unsafe { libc::getsockname(socket.as_raw_fd(), (&raw mut addr).cast(), &raw mut len) };
        assert_eq!(rc, 0, "getsockname: {}", io::Error::last_os_error());
        Self { socket, port: u16::from_be(addr.sin_port) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1development/profiles", self.port)
    }

    /// Starts listening on the port, which was never released.
    fn listen(self) -> TcpListener {
        // SAFETY: listen(2) on an open, bound TCP socket; takes no pointers.
        let rc = unsafe { libc::listen(self.socket.as_raw_fd(), 128) };
        assert_eq!(rc, 0, "listen: {}", io::Error::last_os_error());
        TcpListener::from(self.socket)
    }
}

#[test]
fn retry_after_503_then_200_delivers_exactly_once() {
    let server =
        TestServer::start(vec![Canned::status(503).header("Retry-After", "1"), Canned::ok()]);
    let exporter =
        start(config(server.url()), RetryPolicy { max_elapsed: Duration::from_secs(5), ..fast() });
    let t = Instant::now();
    exporter.submit(b"profile-1".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    // The 50 ms backoff was replaced by the server's 1 s.
    assert!(t.elapsed() >= Duration::from_millis(950), "{:?}", t.elapsed());
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].decoded_body(), b"profile-1");
    assert_eq!(requests[1].decoded_body(), b"profile-1");
    let stats = exporter.stats();
    assert_eq!(
        (stats.requests_sent, stats.retries, stats.requests_failed, stats.rejected),
        (1, 1, 0, 0)
    );
    assert_eq!(stats.bytes_sent, requests[1].body.len() as u64);
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("503")), "{stats:?}");
}

#[test]
fn retry_after_in_the_past_or_zero_still_waits_the_backoff() {
    // A date in the past and `Retry-After: 0` mean "now" to the server, but
    // the backoff is a floor (the Collector waits max(Retry-After, backoff)):
    // without it a load-shedding server would get POSTs back to back.
    let server = TestServer::start(vec![
        Canned::status(429).header("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"),
        Canned::status(503).header("Retry-After", "0"),
        Canned::status(502),
        Canned::ok(),
    ]);
    let policy = RetryPolicy {
        initial_interval: Duration::from_millis(300),
        multiplier: 1.0,
        randomization: 0.0,
        max_interval: Duration::from_millis(300),
        max_elapsed: Duration::from_secs(5),
    };
    let exporter = start(config(server.url()), policy);
    let t = Instant::now();
    exporter.submit(b"x".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    // Three waits of exactly 300 ms each.
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
    assert_eq!(server.requests().len(), 4);
    let stats = exporter.stats();
    assert_eq!((stats.requests_sent, stats.retries), (1, 3));
}

#[test]
fn connection_refused_until_a_listener_appears() {
    let port = RefusingPort::new();
    // A budget no loaded machine exhausts before the listener appears.
    let policy = RetryPolicy { max_elapsed: Duration::from_secs(120), ..fast() };
    let exporter = start(config(port.url()), policy);
    exporter.submit(b"late".to_vec());
    wait_until("two retries", Duration::from_secs(10), || exporter.stats().retries >= 2);
    let stats = exporter.stats();
    assert_eq!(stats.requests_sent, 0);
    assert!(stats.in_flight);
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("connection")), "{stats:?}");
    let server = TestServer::on(port.listen(), vec![Canned::ok()]);
    assert!(exporter.flush(LIVENESS));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].decoded_body(), b"late");
    assert_eq!(exporter.stats().requests_sent, 1);
}

#[test]
fn client_and_server_errors_are_rejected_not_retried() {
    let long = format!("bad profile: {}", "x".repeat(500));
    let status =
        prost::Message::encode_to_vec(&RpcStatus { code: 3, message: "no samples".into() });
    let server = TestServer::start(vec![
        Canned::status(400).header("content-type", "text/plain").body(long),
        Canned::status(500).header("content-type", "application/x-protobuf").body(status),
        Canned::status(401),
        Canned::status(307).header("location", "http://elsewhere/"),
    ]);
    let exporter = start(config(server.url()), fast());
    exporter.submit(b"a".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    let e = exporter.stats().last_error.unwrap();
    assert!(e.contains("HTTP 400: bad profile: xxx"), "{e}");
    assert!(e.len() < 260, "only the start of the body is kept: {e}");
    exporter.submit(b"b".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    let e = exporter.stats().last_error.unwrap();
    assert!(e.contains("HTTP 500: no samples"), "{e}");
    exporter.submit(b"c".to_vec());
    exporter.submit(b"d".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    let stats = exporter.stats();
    assert!(
        stats.last_error.as_deref().is_some_and(|e| e.contains("307") && e.contains("redirect"))
    );
    assert_eq!(server.requests().len(), 4);
    assert_eq!(
        (stats.rejected, stats.retries, stats.requests_sent, stats.requests_failed),
        (4, 0, 0, 0)
    );
}

#[test]
fn partial_success_is_counted_not_retried() {
    let answer = prost::Message::encode_to_vec(&ExportProfilesServiceResponse {
        partial_success: Some(ExportProfilesPartialSuccess {
            rejected_profiles: 3,
            error_message: "profiles too old".into(),
        }),
    });
    let server = TestServer::start(vec![
        Canned::ok().header("content-type", "application/x-protobuf").body(answer),
        // An empty partial_success is a full success.
        Canned::ok().header("content-type", "application/x-protobuf").body(
            prost::Message::encode_to_vec(&ExportProfilesServiceResponse {
                partial_success: Some(ExportProfilesPartialSuccess::default()),
            }),
        ),
    ]);
    let exporter = start(config(server.url()), fast());
    exporter.submit(b"p".to_vec());
    exporter.submit(b"q".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(server.requests().len(), 2);
    let stats = exporter.stats();
    assert_eq!((stats.requests_sent, stats.partial_successes, stats.rejected_profiles), (2, 1, 3));
    assert_eq!((stats.retries, stats.rejected), (0, 0));
    let e = stats.last_error.unwrap();
    assert!(e.contains("3 profile(s) rejected: profiles too old"), "{e}");
}

#[test]
fn slow_server_times_out_and_is_retried() {
    // The first answer comes after 10 s; the client gives up after 2 s.
    let slow = Duration::from_secs(10);
    let timeout = Duration::from_secs(2);
    let server = TestServer::start(vec![Canned::ok().delay(slow), Canned::ok()]);
    let exporter = start(
        ExportConfig { timeout: Some(timeout), ..config(server.url()) },
        RetryPolicy { max_elapsed: Duration::from_secs(60), ..fast() },
    );
    let t = Instant::now();
    exporter.submit(b"slow".to_vec());
    assert!(exporter.flush(LIVENESS));
    // Waiting for the slow answer would take at least `slow`.
    assert!(
        (timeout..slow).contains(&t.elapsed()),
        "did not wait for the slow answer: {:?}",
        t.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
    let stats = exporter.stats();
    assert_eq!((stats.requests_sent, stats.retries), (1, 1));
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("timeout")), "{stats:?}");
}

#[test]
fn retry_budget_runs_out() {
    let server = TestServer::start(vec![Canned::status(503)]);
    let exporter = start(
        config(server.url()),
        // Long enough for a second and third attempt on a loaded machine
        // (each takes a few thread wake-ups); short enough to give up soon.
        RetryPolicy { max_elapsed: Duration::from_secs(3), ..fast() },
    );
    exporter.submit(b"doomed".to_vec());
    assert!(exporter.flush(Duration::from_secs(30)));
    let stats = exporter.stats();
    assert_eq!((stats.requests_failed, stats.requests_sent), (1, 0));
    assert!(stats.retries >= 2, "{stats:?}");
    assert_eq!(server.requests().len() as u64, stats.retries + 1);
    let e = stats.last_error.unwrap();
    assert!(e.contains("gave up") && e.contains("HTTP 503"), "{e}");
}

#[test]
fn gzip_body_and_headers_arrive() {
    let server = TestServer::start(vec![Canned::ok()]);
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut cfg = config(server.url());
    cfg.headers = vec![
        ("authorization".into(), Secret::new("Bearer s3cret".into())),
        ("x-scope-orgid".into(), Secret::new("tenant-1".into())),
    ];
    let exporter = start(cfg.clone(), fast());
    exporter.submit(payload.clone());
    assert!(exporter.flush(Duration::from_secs(5)));
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1development/profiles"));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(r.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(r.header("user-agent"), Some(concat!("lowprof/", env!("CARGO_PKG_VERSION"))));
    assert!(r.body.len() < payload.len() / 10, "compressed: {}", r.body.len());
    assert_eq!(r.decoded_body(), payload);
    assert_eq!(exporter.stats().bytes_sent, r.body.len() as u64);
    drop(exporter);

    // Uncompressed.
    let exporter = start(ExportConfig { compression: Compression::None, ..cfg }, fast());
    exporter.submit(payload.clone());
    assert!(exporter.flush(Duration::from_secs(5)));
    let r = &server.requests()[1];
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, payload);
}

#[test]
fn queue_overflow_drops_the_oldest() {
    // Request 0 is answered after 5 s: the submits and the stats below
    // happen while it is in flight, however slow the machine.
    let server = TestServer::start(vec![Canned::ok().delay(Duration::from_secs(5)), Canned::ok()]);
    let exporter = start(
        ExportConfig { timeout: Some(Duration::from_secs(60)), ..config(server.url()) },
        fast(),
    );
    exporter.submit(vec![0]);
    // Wait until request 0 is in flight, so the queue is empty.
    wait_until("request 0 in flight", LIVENESS, || exporter.stats().in_flight);
    for i in 1..=20u8 {
        exporter.submit(vec![i]);
    }
    let stats = exporter.stats();
    assert_eq!((stats.queued, stats.dropped_queue_full), (MAX_QUEUED_REQUESTS, 4));
    assert!(stats.in_flight, "request 0 was still in flight: {stats:?}");
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("queue full")));
    assert!(exporter.flush(LIVENESS));
    let bodies: Vec<u8> = server.requests().iter().map(|r| r.decoded_body()[0]).collect();
    let expected: Vec<u8> = std::iter::once(0).chain(5..=20).collect();
    assert_eq!(bodies, expected, "in order, oldest dropped");
    let stats = exporter.stats();
    assert_eq!((stats.requests_sent, stats.queued, stats.in_flight), (17, 0, false));
}

#[test]
fn oversized_request_is_dropped_and_counted() {
    let server = TestServer::start(vec![Canned::ok()]);
    let exporter = start(config(server.url()), fast());
    exporter.submit(vec![0; MAX_QUEUED_BYTES + 1]);
    assert!(exporter.flush(Duration::from_secs(1)));
    let stats = exporter.stats();
    assert_eq!((stats.dropped_queue_full, stats.requests_sent), (1, 0));
    assert!(stats.last_error.unwrap().contains("larger than the export queue"));
    assert!(server.requests().is_empty());
}

#[test]
fn flush_times_out_then_completes() {
    // Answered after 5 s: a 100 ms flush ends long before, however slow
    // the machine.
    let delay = Duration::from_secs(5);
    let server = TestServer::start(vec![Canned::ok().delay(delay)]);
    let exporter = start(
        ExportConfig { timeout: Some(Duration::from_secs(60)), ..config(server.url()) },
        fast(),
    );
    assert!(exporter.flush(Duration::from_millis(10)), "nothing queued: done at once");
    exporter.submit(b"f".to_vec());
    let t = Instant::now();
    assert!(!exporter.flush(Duration::from_millis(100)));
    let took = t.elapsed();
    // Its own timeout, not the answer: that comes after `delay`.
    assert!(
        took >= Duration::from_millis(100) && took < delay - Duration::from_secs(1),
        "{took:?}"
    );
    assert!(exporter.flush(LIVENESS));
    assert_eq!(exporter.stats().requests_sent, 1);
}

#[test]
fn drop_is_prompt_while_the_endpoint_is_down() {
    let port = RefusingPort::new();
    // Collector defaults: the first retry waits 2.5..7.5 s.
    let exporter =
        HttpExporter::start_with(config(port.url()), RetryPolicy::default(), false).unwrap();
    exporter.submit(b"never".to_vec());
    let t = Instant::now();
    drop(exporter);
    let took = t.elapsed();
    // The flush, then the join (the thread is woken from its wait at
    // once), with slack for a loaded machine.
    assert!(
        took >= DROP_FLUSH_TIMEOUT
            && took < DROP_FLUSH_TIMEOUT + DROP_JOIN_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn drop_is_prompt_while_a_server_without_timeout_never_answers() {
    // The kernel completes the connection (backlog), nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1development/profiles", silent.local_addr().unwrap());
    // No configured timeout: the attempt is capped at an hour, not forever,
    // and dropping the exporter still returns after its bounded waits.
    let exporter = start(ExportConfig { timeout: None, ..config(url) }, fast());
    exporter.submit(b"unanswered".to_vec());
    wait_until("the attempt", LIVENESS, || exporter.stats().in_flight);
    let t = Instant::now();
    drop(exporter);
    let took = t.elapsed();
    assert!(
        took >= DROP_FLUSH_TIMEOUT
            && took < DROP_FLUSH_TIMEOUT + DROP_JOIN_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    drop(silent);
}

#[test]
fn debug_never_shows_header_values() {
    let server = TestServer::start(vec![Canned::ok()]);
    let mut cfg = config(server.url());
    cfg.headers = vec![("authorization".into(), Secret::new("Bearer hunter2-secret".into()))];
    let shown = format!("{cfg:?} {cfg:#?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("authorization") && shown.contains("<redacted>"), "{shown}");
    let exporter = start(cfg, fast());
    let shown = format!("{exporter:?} {exporter:#?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("authorization") && shown.contains("<redacted>"), "{shown}");
}

/// The identity the soak test relies on: every request handed in is in
/// exactly one count.
fn assert_accounted(stats: &ExportStats) {
    assert_eq!(stats.accounted(), stats.enqueued, "{stats:?}");
}

#[test]
fn every_request_is_accounted_for_in_every_outcome() {
    // One request per outcome: sent, rejected, failed (budget), dropped
    // (too large), then a queue overflow, then abandonment at close.
    // The third attempt takes 400 ms and fails: longer than the retry
    // budget, so that request fails after one attempt. Every later one
    // hangs for 5 s (long enough for what happens meanwhile however slow
    // the machine) and fails too.
    let stuck = Duration::from_secs(5);
    let server = TestServer::start(vec![
        Canned::ok(),
        Canned::status(400),
        Canned::status(503).delay(Duration::from_millis(400)),
        Canned::status(503).delay(stuck),
    ]);
    let policy = RetryPolicy { max_elapsed: Duration::from_millis(300), ..fast() };
    let mut exporter = start(
        ExportConfig { timeout: Some(Duration::from_secs(60)), ..config(server.url()) },
        policy,
    );
    assert_accounted(&exporter.stats());
    exporter.submit(b"sent".to_vec());
    assert_accounted(&exporter.stats());
    assert!(exporter.flush(Duration::from_secs(5)));
    exporter.submit(b"rejected".to_vec());
    assert!(exporter.flush(Duration::from_secs(5)));
    exporter.submit(b"failed".to_vec());
    assert_accounted(&exporter.stats());
    assert!(exporter.flush(Duration::from_secs(5)));
    exporter.submit(vec![0; MAX_QUEUED_BYTES + 1]);
    let stats = exporter.stats();
    assert_eq!(
        (stats.requests_sent, stats.rejected, stats.requests_failed, stats.dropped_queue_full),
        (1, 1, 1, 1),
        "{stats:?}"
    );
    assert_eq!((stats.enqueued, stats.abandoned), (4, 0));
    assert_accounted(&stats);

    // One request hangs in its 5 s attempt while 20 more arrive (4 of
    // them push out older ones).
    exporter.submit(b"stuck".to_vec());
    wait_until("the stuck attempt", LIVENESS, || exporter.stats().in_flight);
    for i in 0..20u8 {
        exporter.submit(vec![i]);
        assert_accounted(&exporter.stats());
    }
    let stats = exporter.stats();
    assert_eq!((stats.queued, stats.in_flight, stats.dropped_queue_full), (16, true, 5));
    assert_accounted(&stats);

    // Closing gives up on the 16 queued and the one in flight at once:
    // after its flush and join timeouts (slack for a loaded machine), not
    // after the attempt.
    let t = Instant::now();
    exporter.close(Duration::from_millis(100));
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(100) + DROP_JOIN_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    assert!(took < stuck, "{took:?}");
    let stats = exporter.stats();
    assert_eq!((stats.abandoned, stats.queued, stats.in_flight), (17, 0, false), "{stats:?}");
    assert_eq!(stats.enqueued, 25);
    assert_eq!(
        stats.requests_sent
            + stats.requests_failed
            + stats.rejected
            + stats.dropped_queue_full
            + stats.abandoned,
        stats.enqueued
    );
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("abandoned 17")), "{stats:?}");

    // The attempt that was under way ends later on its own (the detached
    // thread then exits): not counted again. A request after shutdown is
    // abandoned at once.
    wait_until("the stuck attempt to end", LIVENESS, || exporter.shared.lock().exited);
    exporter.submit(b"late".to_vec());
    let later = exporter.stats();
    assert_eq!(
        (later.requests_failed, later.retries, later.abandoned, later.enqueued),
        (stats.requests_failed, stats.retries, 18, 26)
    );
    assert_eq!(server.requests().len(), 4, "sent, rejected, failed, the abandoned attempt");
    assert_accounted(&later);
    // Closing again (and dropping) returns at once: neither waits for a
    // flush (5 s, and DROP_FLUSH_TIMEOUT) nor counts anything again.
    let counters = exporter.counters();
    let t = Instant::now();
    exporter.close(Duration::from_secs(5));
    drop(exporter);
    let took = t.elapsed();
    assert!(took < DROP_FLUSH_TIMEOUT, "{took:?}");
    assert_eq!(counters.stats(), later);
}

#[test]
fn close_waits_for_the_flush_once_not_again_on_drop() {
    let port = RefusingPort::new();
    let mut exporter =
        HttpExporter::start_with(config(port.url()), RetryPolicy::default(), false).unwrap();
    let counters = exporter.counters();
    exporter.submit(b"never".to_vec());
    exporter.submit(b"never either".to_vec());
    let flush = Duration::from_millis(500);
    let t = Instant::now();
    exporter.close(flush);
    let took = t.elapsed();
    // The flush timeout, then the thread's exit (it is waiting for a retry:
    // woken at once), with slack for a loaded machine.
    assert!(took >= flush && took < flush + DROP_JOIN_TIMEOUT + Duration::from_secs(2), "{took:?}");
    let closed = exporter.stats();
    assert_eq!(
        (closed.enqueued, closed.abandoned, closed.queued, closed.in_flight),
        (2, 2, 0, false),
        "{closed:?}"
    );
    let e = closed.last_error.as_deref().unwrap_or_default();
    assert!(e.contains("abandoned 2 request(s)") && e.contains("within 0.5 s"), "{e}");
    // No second flush in `drop`: that would wait for DROP_FLUSH_TIMEOUT
    // or count (and report) the shutdown again.
    let t = Instant::now();
    drop(exporter);
    let took = t.elapsed();
    assert!(took < DROP_FLUSH_TIMEOUT, "{took:?}");
    assert_eq!(counters.stats(), closed);
}
