//! A Go-compatible `/debug/pprof` pull endpoint, so `go tool pprof
//! http://127.0.0.1:6060/debug/pprof/heap` and Parca or Grafana Alloy scrape
//! configurations work unchanged.
//!
//! HTTP/1.1 by hand on `std::net`: one request per connection, answered with
//! `Connection: close`.
//!
//! ```text
//!  thread "lowprof-serve" (listener)          threads "lowprof-serve" (one per connection, ≤ 8)
//!  accept() ─┬─ over the limit ─► 503 ─► close
//!            └─ spawn ─────────────────► read head (≤ 16 KiB, 5 s in all) ─► 431 / 400 / 408 …
//!                                        Authorization: Bearer ─► 401
//!                                        route ─► ProfileSource::heap() / cpu_for(seconds)
//!                                        write response (≤ 30 s) ─► shutdown ─► drain ─► close
//!  PprofServer::drop: stop flag, connect to itself to wake accept(), join the listener
//! ```
//!
//! # Paths
//!
//! Go's `net/http/pprof` semantics, for the profiles lowprof has:
//!
//! | Path                      | Query                                      | Answer                                           |
//! |---------------------------|--------------------------------------------|--------------------------------------------------|
//! | `/debug/pprof/`           |                                            | HTML index of the profiles (also without `/`)    |
//! | `/debug/pprof/heap`       | `gc=1` ignored, `debug=0`                  | heap profile, default sample type `inuse_space`  |
//! | `/debug/pprof/allocs`     | `gc=1` ignored, `debug=0`                  | the same profile, default type `alloc_space`     |
//! | `/debug/pprof/profile`    | `seconds=1..=300` (default 30)             | CPU profile of the next `seconds`                |
//! | `/debug/pprof/symbol`     | GET, or POST of `0x…+0x…`                  | `num_symbols: 0` (profiles come symbolized)      |
//! | Go-only profiles: `goroutine`, `block`, `mutex`, `threadcreate`, `trace`, `cmdline`, and all other paths | | 404 |
//!
//! Profiles are gzip-compressed `profile.proto` with `Content-Type:
//! application/octet-stream` and `Content-Disposition: attachment;
//! filename="<name>"` as Go sends them (`profile`, `heap`, `allocs`). Errors
//! are `text/plain` with `X-Go-Pprof: 1`, which makes `go tool pprof` print
//! the message.
//!
//! `/debug/pprof/symbol` exists because `go tool pprof` posts the addresses of
//! mappings without function names there (and fails if the post fails);
//! lowprof symbolizes in process before serving, so what it could not name it
//! cannot name now, and it answers with no symbols.
//!
//! # Status codes
//!
//! | Code | When                                                                                  |
//! |------|---------------------------------------------------------------------------------------|
//! | 400  | malformed request; `seconds` not an integer in `1..=300`; `debug` ≠ 0 (only the binary format is served); `seconds` on `heap`/`allocs` (Go's delta profiles are not supported) |
//! | 401  | bearer token required and missing or wrong (with `WWW-Authenticate: Bearer`)         |
//! | 404  | unknown path; heap or CPU profiling turned off for this profiler                      |
//! | 405  | method other than GET, HEAD or POST                                                   |
//! | 408  | request head and body not received within 5 s                                         |
//! | 413  | request body over 1 MiB                                                               |
//! | 429  | already 4 CPU profiles running (with `Retry-After`: when the first ends)              |
//! | 431  | request line and headers over 16 KiB                                                  |
//! | 500  | the profiler failed (the message says why)                                            |
//! | 501  | heap profile asked for but lowprof's allocator is not the global allocator; `Transfer-Encoding` request bodies |
//! | 503  | 8 connections already open (with `Retry-After: 1`); the profiler was stopped while the request was served (a CPU profile in progress ends at once) |
//! | 505  | not HTTP/1.x                                                                          |
//!
//! # Concurrency
//!
//! At most 8 connections are served at once; more are answered 503 by the
//! listener itself. Concurrent CPU profile requests are allowed, each with its
//! own window from [`ProfileSource::cpu_for`], but at most 4 at once, so that
//! long CPU windows (up to 300 s) always leave room for heap scrapes and the
//! index.
//!
//! # Security
//!
//! The endpoint runs only when `ProfilerBuilder::serve_pprof` is given an
//! address, and is loopback unless told otherwise: a bare port (`"6060"`,
//! `":6060"`) binds `127.0.0.1`. A named interface is bound as given; a
//! non-loopback one is neither refused nor warned about, with or without a
//! token (a library does not print, and scrapers inside a private network
//! often run without one). A loopback address keeps the profiles to this
//! machine.
//! **Binding a non-loopback address (such as `0.0.0.0`) exposes the
//! profiles — function names, file paths, allocation sizes — to anyone who
//! can reach the port**; set a bearer token, and put TLS in front (a reverse
//! proxy), if you must. With a token,
//! every request, the index included, needs `Authorization: Bearer <token>`,
//! compared in time independent of the guess; the token never appears in
//! `Debug` output or error messages.
//!
//! Slow clients cannot pin a thread: the request must arrive within 5 s in
//! all and the response be taken within 30 s in all, whatever the size of
//! each read or write.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::files::utc;
use crate::profile::Profile;

/// What the server serves; implemented by the profiler session.
///
/// Called from the connection threads, possibly from several at once, and
/// possibly after the profiler has stopped (a request in flight outlives
/// [`PprofServer`]'s drop): then both methods fail with [`Error::Stopped`],
/// and `cpu_for` returns as soon as that happens.
pub(crate) trait ProfileSource: Send + Sync + 'static {
    /// The heap profile now (default sample type `inuse_space`).
    fn heap(&self) -> Result<Profile, Error>;
    /// The CPU profile of the next `duration` (blocks for that long).
    fn cpu_for(&self, duration: Duration) -> Result<Profile, Error>;
}

/// The name of every thread the server starts.
const THREAD_NAME: &str = "lowprof-serve";
/// `seconds` when `/debug/pprof/profile` has none, as in Go.
const DEFAULT_SECONDS: u64 = 30;
/// The longest bearer token accepted (also in [`Error::InvalidBearerToken`]'s message).
const MAX_TOKEN_LEN: usize = 4096;
/// How long [`PprofServer`]'s `Drop` waits for its wake-up connection.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (say, out of file descriptors), so the
/// listener does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// How long the listener spends on a connection it turns away.
const REJECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a connection thread reads what the client still sends after the
/// response, so that closing does not reset the connection before the client
/// has read the response.
const LINGER: Duration = Duration::from_secs(1);
/// The most bytes read while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// The server's limits. [`PprofServer::start`] uses the defaults; tests
/// shrink them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; more are answered 503.
    pub(crate) max_connections: usize,
    /// CPU profiles running at once; more are answered 429.
    pub(crate) max_cpu_profiles: usize,
    /// Bytes of request line and headers; more are answered 431.
    pub(crate) max_head_bytes: usize,
    /// Bytes of request body (read and discarded); more are answered 413.
    pub(crate) max_body_bytes: usize,
    /// Time for the whole request to arrive; then 408.
    pub(crate) read_timeout: Duration,
    /// Time for the client to take the whole response.
    pub(crate) write_timeout: Duration,
    /// The largest `seconds` of a CPU profile.
    pub(crate) max_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            max_cpu_profiles: 4,
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            max_seconds: 300,
        }
    }
}

/// A bearer token; `Debug` never shows it.
struct Token(Box<[u8]>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the listener and the connection threads share.
struct Shared {
    source: Arc<dyn ProfileSource>,
    token: Option<Token>,
    limits: Limits,
    /// Set by `Drop`: the listener exits at its next wake-up.
    stop: AtomicBool,
    /// Connections being served.
    active: AtomicUsize,
    /// One per allowed concurrent CPU profile: 0 if free, else the
    /// milliseconds since `epoch` at which its window ends, plus 1.
    cpu_slots: Box<[AtomicU64]>,
    /// The zero of `cpu_slots`.
    epoch: Instant,
}

/// The `/debug/pprof` HTTP server: a listener thread plus one short-lived
/// thread per connection. Dropping it stops accepting and joins the listener;
/// requests in progress finish on their own threads.
pub(crate) struct PprofServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

impl fmt::Debug for PprofServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PprofServer")
            .field("addr", &self.addr)
            .field("bearer_token", &self.shared.token)
            .field("limits", &self.shared.limits)
            .field("active_connections", &self.shared.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PprofServer {
    /// Binds `addr` (such as `127.0.0.1:6060`; port 0 picks a free one) and
    /// starts serving `source`. With `bearer_token`, every request needs
    /// `Authorization: Bearer <token>`.
    pub(crate) fn start(
        addr: &str,
        bearer_token: Option<String>,
        source: Arc<dyn ProfileSource>,
    ) -> Result<Self, Error> {
        Self::start_with(addr, bearer_token, source, Limits::default())
    }

    /// [`start`](Self::start) with other limits.
    pub(crate) fn start_with(
        addr: &str,
        bearer_token: Option<String>,
        source: Arc<dyn ProfileSource>,
        limits: Limits,
    ) -> Result<Self, Error> {
        let token = match bearer_token {
            Some(token) if valid_token(&token) => {
                Some(Token(token.into_bytes().into_boxed_slice()))
            }
            Some(_) => return Err(Error::InvalidBearerToken),
            None => None,
        };
        let bind_error = |source| Error::ServeBind { addr: addr.to_owned(), source };
        let listener = TcpListener::bind(addr).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared {
            source,
            token,
            limits,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            cpu_slots: (0..limits.max_cpu_profiles).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        });
        let for_thread = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || accept_loop(&listener, &for_thread))
            .map_err(Error::Spawn)?;
        Ok(Self { addr: local, shared, listener: Some(handle) })
    }

    /// The address the server listens on (with the port chosen if 0 was
    /// asked for).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PprofServer {
    /// Stops accepting and joins the listener thread.
    ///
    /// The listener blocks in `accept(2)`; a connection to itself wakes it
    /// at once. (The alternative, a non-blocking listener polled every few
    /// milliseconds, would wake an idle, always-on profiler dozens of times a
    /// second for nothing, and delay every accept by up to the poll period.)
    /// If that connection cannot be made (say, out of file descriptors), the
    /// thread is left to exit at its next connection rather than blocking the
    /// caller.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let Some(handle) = self.listener.take() else { return };
        if handle.is_finished() || wake(self.addr) {
            let _ = handle.join();
        }
    }
}

/// Connects to `addr` (loopback if it is a wildcard address), waking the
/// listener's `accept`.
fn wake(addr: SocketAddr) -> bool {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    TcpStream::connect_timeout(&SocketAddr::new(ip, addr.port()), WAKE_TIMEOUT).is_ok()
}

/// 1 to [`MAX_TOKEN_LEN`] visible ASCII characters: what fits in an
/// `Authorization` header after `Bearer `.
fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The listener thread.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    // Never sampled by lowprof's own CPU timer.
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => dispatch(stream, shared),
            Err(_) => thread::sleep(ACCEPT_BACKOFF),
        }
    }
}

/// Hands `stream` to a new connection thread, or answers 503 if there are
/// already `max_connections`.
fn dispatch(stream: TcpStream, shared: &Arc<Shared>) {
    let max = shared.limits.max_connections;
    let admitted = shared
        .active
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .is_ok();
    if !admitted {
        let message = format!("too many concurrent requests (the limit is {max}): retry shortly");
        let response = Response::error(503, message).header("Retry-After", "1".to_owned());
        reject(stream, &response);
        return;
    }
    let active = Active(Arc::clone(shared));
    // A second handle, to answer on if the thread cannot start.
    let spare = stream.try_clone();
    let spawned = thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
        let active = active;
        serve_connection(stream, &active.0);
    });
    if let (Err(e), Ok(spare)) = (spawned, spare) {
        reject(spare, &Response::error(503, format!("cannot start a lowprof-serve thread: {e}")));
    }
}

/// Counts a connection in [`Shared::active`] until dropped.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers `response` on the listener thread, spending at most
/// [`REJECT_TIMEOUT`] on it.
fn reject(mut stream: TcpStream, response: &Response) {
    let deadline = Instant::now() + REJECT_TIMEOUT;
    let drained = drain_available(&mut stream);
    if drained && response.write_to(&mut stream, false, deadline).is_ok() {
        linger(stream, deadline);
    }
}

/// Reads whatever the client has already sent, without waiting, so that
/// closing does not turn into a reset. False if the socket failed.
fn drain_available(stream: &mut TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut buf = [0; 4096];
    for _ in 0..4 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    stream.set_nonblocking(false).is_ok()
}

/// Ends the response (FIN), then reads and discards what the client still
/// sends until it closes, `deadline`, or [`LINGER_BYTES`] — so the kernel
/// does not answer unread data with a reset that could destroy the response
/// in flight.
fn linger(mut stream: TcpStream, deadline: Instant) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut buf = [0; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let Some(left) = remaining(deadline) else { return };
        if stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Time left until `deadline`, `None` if it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}

/// A connection thread: one request, one response.
fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    // Never sampled by lowprof's own CPU timer.
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    let _ = stream.set_nodelay(true);
    let (response, head_only) = match read_request(&mut stream, &shared.limits) {
        Ok(request) => (route(&request, shared), request.method == Method::Head),
        Err(RequestError::Closed) => return,
        Err(RequestError::Respond(response)) => (response, false),
    };
    let deadline = Instant::now() + shared.limits.write_timeout;
    if response.write_to(&mut stream, head_only, deadline).is_ok() {
        linger(stream, Instant::now() + LINGER);
    }
}

// ---------------------------------------------------------------------------
// Requests

/// The methods served. Go's handlers accept any method; lowprof accepts the
/// ones its clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    /// Anything else: answered 405.
    Other,
}

/// A parsed request (its body, if any, has been read and discarded).
struct Request {
    method: Method,
    /// Percent-decoded.
    path: String,
    /// Percent-decoded `(name, value)` pairs, in order.
    query: Vec<(String, String)>,
    /// The `Authorization` header's value.
    authorization: Option<String>,
}

impl fmt::Debug for Request {
    /// Leaves out the `Authorization` value: it may hold the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Request {
    /// The first value of query parameter `name`, as Go's `FormValue`.
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Why a request was not parsed.
#[derive(Debug)]
enum RequestError {
    /// The client went away, or the socket failed: nothing to answer.
    Closed,
    /// Answer this and close.
    Respond(Response),
}

impl RequestError {
    fn bad(message: &str) -> Self {
        Self::Respond(Response::error(400, message.to_owned()))
    }
}

/// Reads and parses one request from `stream`: the head within
/// `max_head_bytes`, then any body (discarded), all within `read_timeout`.
fn read_request(stream: &mut TcpStream, limits: &Limits) -> Result<Request, RequestError> {
    let deadline = Instant::now() + limits.read_timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0; 4096];
    let (head_len, body_start) = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > limits.max_head_bytes {
            break (buf.len(), buf.len());
        }
        let n = read_by(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(RequestError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_len > limits.max_head_bytes {
        let message = format!("request line and headers exceed {} bytes", limits.max_head_bytes);
        return Err(RequestError::Respond(Response::error(431, message)));
    }
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let parsed = parse_head(&head)?;
    let already = buf.len() - body_start;
    read_body(stream, &parsed, already, limits, deadline)?;
    Ok(parsed.request)
}

/// One `read` with the time left until `deadline` as its timeout; 408 when
/// the time is up.
fn read_by(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<usize, RequestError> {
    let timeout = || RequestError::Respond(Response::error(408, "request not received in time"));
    loop {
        let left = remaining(deadline).ok_or_else(timeout)?;
        stream.set_read_timeout(Some(left)).map_err(|_| RequestError::Closed)?;
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(timeout());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(RequestError::Closed),
        }
    }
}

/// Where the head ends: `(length of head without the blank line, start of
/// body)`. Accepts bare `\n` line ends, as RFC 9112 §2.2 allows.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(offset) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some((nl + 1, nl + 2)),
            Some([b'\r', b'\n', ..]) => return Some((nl + 1, nl + 3)),
            _ => i = nl + 1,
        }
    }
    None
}

/// The head, parsed.
struct Head {
    request: Request,
    content_length: usize,
    expect_continue: bool,
}

/// Parses the request line and the headers lowprof needs (RFC 9112).
fn parse_head(head: &str) -> Result<Head, RequestError> {
    // A server should ignore empty lines before the request line (§2.2).
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line =
        lines.by_ref().find(|l| !l.is_empty()).ok_or_else(|| RequestError::bad("empty request"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::bad("malformed request line"));
    };
    if !version.starts_with("HTTP/") {
        return Err(RequestError::bad("malformed request line"));
    }
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(RequestError::Respond(Response::error(
            505,
            "only HTTP/1.0 and HTTP/1.1 are served",
        )));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "" => return Err(RequestError::bad("malformed request line")),
        _ => Method::Other,
    };
    let (path, query) = parse_target(target)?;
    let mut authorization = None;
    let mut content_length = None;
    let mut expect_continue = false;
    for line in lines.filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(RequestError::bad("folded header lines are not accepted"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(RequestError::bad("malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(RequestError::bad("malformed header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Err(RequestError::bad("more than one Authorization header"));
            }
            authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| RequestError::bad("malformed Content-Length"))?;
            if content_length.is_some_and(|l| l != length) {
                return Err(RequestError::bad("conflicting Content-Length headers"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::Respond(Response::error(
                501,
                "Transfer-Encoding request bodies are not supported: send Content-Length",
            )));
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    Ok(Head {
        request: Request { method, path, query, authorization },
        content_length: content_length.unwrap_or(0),
        expect_continue,
    })
}

/// Splits a request target (origin form `/p?q`, or absolute form
/// `http://host/p?q`) into the decoded path and query.
fn parse_target(target: &str) -> Result<(String, Vec<(String, String)>), RequestError> {
    let target = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        _ if target.starts_with('/') => target,
        _ => return Err(RequestError::bad("malformed request target")),
    };
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path =
        percent_decode(raw_path, false).ok_or_else(|| RequestError::bad("malformed path"))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode =
            |s| percent_decode(s, true).ok_or_else(|| RequestError::bad("malformed query"));
        query.push((decode(name)?, decode(value)?));
    }
    Ok((path, query))
}

/// Decodes `%XX` escapes (and `+` as a space in queries); `None` on a bad
/// escape.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Reads and discards the body (`already` of its bytes came with the head).
fn read_body(
    stream: &mut TcpStream,
    head: &Head,
    already: usize,
    limits: &Limits,
    deadline: Instant,
) -> Result<(), RequestError> {
    if head.content_length > limits.max_body_bytes {
        let message = format!("request body exceeds {} bytes", limits.max_body_bytes);
        return Err(RequestError::Respond(Response::error(413, message)));
    }
    let mut left = head.content_length.saturating_sub(already);
    if left > 0 && head.expect_continue {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut chunk = [0; 4096];
    while left > 0 {
        let n = read_by(stream, &mut chunk[..left.min(4096)], deadline)?;
        if n == 0 {
            return Err(RequestError::Closed);
        }
        left -= n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Routing

/// The response to a parsed request.
fn route(request: &Request, shared: &Shared) -> Response {
    if let Some(token) = &shared.token {
        if !authorized(request.authorization.as_deref(), token) {
            return Response::error(401, "this endpoint needs Authorization: Bearer <token>")
                .header("WWW-Authenticate", r#"Bearer realm="lowprof""#.to_owned());
        }
    }
    if request.method == Method::Other {
        return Response::error(405, "use GET (or POST for /debug/pprof/symbol)")
            .header("Allow", "GET, HEAD, POST".to_owned());
    }
    let name = match request.path.as_str() {
        "/debug/pprof" | "/debug/pprof/" => return index(),
        path => match path.strip_prefix("/debug/pprof/") {
            Some(name) => name,
            None => return Response::error(404, "404 page not found"),
        },
    };
    match name {
        "heap" => heap(request, shared, "heap"),
        "allocs" => heap(request, shared, "allocs"),
        "profile" => cpu(request, shared),
        "symbol" => Response::text(200, "text/plain; charset=utf-8", "num_symbols: 0\n"),
        "goroutine" | "block" | "mutex" | "threadcreate" | "trace" | "cmdline" => Response::error(
            404,
            format!("{name} is a Go runtime profile; lowprof serves heap, allocs and profile"),
        ),
        _ => Response::error(404, "Unknown profile"),
    }
}

/// Whether the `Authorization` header carries `token`, compared in time
/// independent of the header's content.
fn authorized(header: Option<&str>, token: &Token) -> bool {
    let Some((scheme, credentials)) = header.and_then(|h| h.split_once(' ')) else {
        return false;
    };
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(credentials.trim().as_bytes(), &token.0)
}

/// `given == expected`, taking time that depends on `expected.len()` only.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// `/debug/pprof/heap` and `/debug/pprof/allocs`.
fn heap(request: &Request, shared: &Shared, name: &str) -> Response {
    // Go serves a delta profile over `seconds`; an empty value counts as none.
    if request.param("seconds").is_some_and(|s| !s.is_empty()) {
        return Response::error(
            400,
            "delta heap profiles (?seconds=) are not supported: take two profiles and compare them with \
             go tool pprof -diff_base=<first> <second>",
        );
    }
    // As Go's `strconv.Atoi` there: anything but an integer counts as 0.
    let debug = request.param("debug").and_then(|d| d.parse::<i64>().ok()).unwrap_or(0);
    if debug != 0 {
        return Response::error(
            400,
            format!(
                "only the binary pprof format is served: drop ?debug={debug} and read the profile with \
                 go tool pprof (-top, -raw and -traces print it as text)"
            ),
        );
    }
    // `gc=1` is accepted and ignored: the profile is of the live sampled
    // blocks right now, with no collection cycle to wait for.
    match shared.source.heap() {
        Ok(mut profile) => {
            if name == "allocs" {
                if let Some(index) = profile.sample_type_index("alloc_space") {
                    profile.default_sample_type = Some(index);
                }
            }
            Response::profile(&profile, name)
        }
        Err(e) => Response::from_error(&e),
    }
}

/// `/debug/pprof/profile`.
fn cpu(request: &Request, shared: &Shared) -> Response {
    let max = shared.limits.max_seconds;
    let seconds = match request.param("seconds") {
        None | Some("") => DEFAULT_SECONDS.min(max),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Response::error(
                    400,
                    format!(
                        "seconds={s:?} is invalid: use a whole number of seconds in 1..={max} (default \
                         {DEFAULT_SECONDS})"
                    ),
                );
            }
        },
    };
    let _slot = match CpuSlot::claim(shared, seconds) {
        Ok(slot) => slot,
        Err(retry_after) => {
            let message = format!(
                "{} CPU profiles are already running: retry in {retry_after} s",
                shared.cpu_slots.len()
            );
            return Response::error(429, message).header("Retry-After", retry_after.to_string());
        }
    };
    match shared.source.cpu_for(Duration::from_secs(seconds)) {
        Ok(profile) => Response::profile(&profile, "profile"),
        Err(e) => Response::from_error(&e),
    }
}

/// A claimed entry of [`Shared::cpu_slots`], freed on drop.
struct CpuSlot<'a>(&'a AtomicU64);

impl<'a> CpuSlot<'a> {
    /// Claims a free slot for a window of `seconds`, or says in how many
    /// seconds the first running window ends.
    fn claim(shared: &'a Shared, seconds: u64) -> Result<Self, u64> {
        let now = u64::try_from(shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let end = now.saturating_add(seconds.saturating_mul(1000)).saturating_add(1);
        for slot in shared.cpu_slots.iter() {
            if slot.compare_exchange(0, end, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(Self(slot));
            }
        }
        let first_end =
            shared.cpu_slots.iter().map(|s| s.load(Ordering::Acquire)).filter(|&e| e != 0).min();
        // Slots hold the end plus 1 ms (0 marks a free slot).
        let wait_ms = first_end.map_or(0, |e| e.saturating_sub(1).saturating_sub(now));
        Err(wait_ms.div_ceil(1000).max(1))
    }
}

impl Drop for CpuSlot<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// The index page.
fn index() -> Response {
    const PAGE: &str = r#"<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>/debug/pprof/</title></head>
<body>
<h1>/debug/pprof/</h1>
<p>Profiles served by lowprof (gzip-compressed pprof, for <code>go tool pprof</code>):</p>
<table>
<tr><td><a href="/debug/pprof/allocs">allocs</a></td><td>Sampled memory allocations since the profiler started (default sample type alloc_space).</td></tr>
<tr><td><a href="/debug/pprof/heap">heap</a></td><td>Sampled live memory allocations (default sample type inuse_space).</td></tr>
<tr><td><a href="/debug/pprof/profile">profile</a></td><td>CPU profile of the next <code>?seconds=</code> (default 30, at most 300).</td></tr>
</table>
<p>Example: <code>go tool pprof http://HOST:PORT/debug/pprof/heap</code></p>
</body>
</html>
"#;
    Response::text(200, "text/html; charset=utf-8", PAGE)
}

// ---------------------------------------------------------------------------
// Responses

/// A complete response.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A text body.
    fn text(status: u16, content_type: &'static str, body: &str) -> Self {
        Self { status, content_type, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    /// An error in Go's form: `text/plain`, `X-Go-Pprof: 1`, the message and
    /// a newline.
    fn error(status: u16, message: impl Into<String>) -> Self {
        let mut body = message.into();
        body.push('\n');
        Self::text(status, "text/plain; charset=utf-8", &body).header("X-Go-Pprof", "1".to_owned())
    }

    /// `profile` as a gzip pprof download named `name`.
    fn profile(profile: &Profile, name: &str) -> Self {
        match crate::pprof::encode_gzip(profile) {
            Ok(body) => Self {
                status: 200,
                content_type: "application/octet-stream",
                headers: vec![("Content-Disposition", format!("attachment; filename=\"{name}\""))],
                body,
            },
            Err(e) => Self::error(500, format!("compressing the profile: {e}")),
        }
    }

    /// A profiler error: 404 for a profile turned off, 501 for a heap
    /// profile without lowprof's allocator, 503 once the profiler is
    /// stopped, else 500.
    fn from_error(error: &Error) -> Self {
        let status = match error {
            Error::HeapDisabled | Error::CpuDisabled => 404,
            Error::HeapNotInstalled => 501,
            Error::Stopped => 503,
            _ => 500,
        };
        Self::error(status, error.to_string())
    }

    /// Adds a header.
    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Writes the response (without the body if `head_only`), all of it
    /// before `deadline`.
    fn write_to(
        &self,
        stream: &mut TcpStream,
        head_only: bool,
        deadline: Instant,
    ) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            http_date(SystemTime::now()),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        write_by(stream, head.as_bytes(), deadline)?;
        if !head_only {
            write_by(stream, &self.body, deadline)?;
        }
        Ok(())
    }
}

/// `write_all` that gives up at `deadline`, however slowly the peer reads.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The reason phrase of the status codes used.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// RFC 9110's IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = utc(time);
    let weekday = DAYS.get(t.weekday as usize).copied().unwrap_or("Sun");
    let month = MONTHS.get(t.month.wrapping_sub(1) as usize).copied().unwrap_or("Jan");
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::{Condvar, Mutex};

    use super::*;
    use crate::pprof::{decode, fixture};
    use crate::profile::{ProfileKind, ValueType};

    /// How the fake source behaves.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Working,
        HeapDisabled,
        CpuDisabled,
        NotInstalled,
        Failing,
        Stopped,
    }

    /// A source serving the pprof fixture, or failing as told. A CPU
    /// profile lasts its duration, or until [`Fake::release`].
    struct Fake {
        mode: Mode,
        cpu_calls: AtomicUsize,
        /// CPU profiles under way now.
        cpu_running: AtomicUsize,
        /// Set by [`Fake::release`].
        released: Mutex<bool>,
        wake: Condvar,
    }

    impl Fake {
        fn new(mode: Mode) -> Self {
            Self {
                mode,
                cpu_calls: AtomicUsize::new(0),
                cpu_running: AtomicUsize::new(0),
                released: Mutex::new(false),
                wake: Condvar::new(),
            }
        }

        /// Ends every CPU profile, running or to come, at once: tests run
        /// long profiles (so that what they check happens while one runs,
        /// however slow the machine) and end them early.
        fn release(&self) {
            *self.released.lock().expect("lock") = true;
            self.wake.notify_all();
        }

        /// Sleeps for `duration`, or until released.
        fn sleep(&self, duration: Duration) {
            let deadline = Instant::now() + duration;
            let mut released = self.released.lock().expect("lock");
            while !*released {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                released = self.wake.wait_timeout(released, deadline - now).expect("wait").0;
            }
        }

        fn cpu_running(&self) -> usize {
            self.cpu_running.load(Ordering::SeqCst)
        }
    }

    impl ProfileSource for Fake {
        fn heap(&self) -> Result<Profile, Error> {
            match self.mode {
                Mode::Working | Mode::CpuDisabled => Ok(fixture::heap()),
                Mode::HeapDisabled => Err(Error::HeapDisabled),
                Mode::NotInstalled => Err(Error::HeapNotInstalled),
                Mode::Failing => Err(Error::SymbolizerFailed),
                Mode::Stopped => Err(Error::Stopped),
            }
        }

        fn cpu_for(&self, duration: Duration) -> Result<Profile, Error> {
            self.cpu_calls.fetch_add(1, Ordering::Relaxed);
            match self.mode {
                Mode::CpuDisabled => Err(Error::CpuDisabled),
                Mode::Failing => Err(Error::SymbolizerFailed),
                Mode::Stopped => Err(Error::Stopped),
                _ => {
                    self.cpu_running.fetch_add(1, Ordering::SeqCst);
                    self.sleep(duration);
                    self.cpu_running.fetch_sub(1, Ordering::SeqCst);
                    Ok(cpu_profile(duration))
                }
            }
        }
    }

    /// The fixture's stacks as a 99 Hz CPU profile.
    fn cpu_profile(duration: Duration) -> Profile {
        let period = 1_000_000_000 / 99;
        let mut profile = fixture::heap();
        profile.kind = ProfileKind::Cpu;
        profile.sample_types =
            vec![ValueType::new("samples", "count"), ValueType::new("cpu", "nanoseconds")];
        profile.default_sample_type = None;
        profile.period_type = ValueType::new("cpu", "nanoseconds");
        profile.period = period;
        profile.duration = duration;
        for sample in &mut profile.samples {
            let count = sample.values[0];
            sample.values = vec![count, count * period];
        }
        profile
    }

    fn server_with(mode: Mode, token: Option<&str>, limits: Limits) -> (PprofServer, Arc<Fake>) {
        let fake = Arc::new(Fake::new(mode));
        let source: Arc<dyn ProfileSource> = fake.clone();
        let server =
            PprofServer::start_with("127.0.0.1:0", token.map(str::to_owned), source, limits)
                .expect("start");
        (server, fake)
    }

    fn server(mode: Mode) -> PprofServer {
        server_with(mode, None, Limits::default()).0
    }

    /// A parsed response.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Parses a response; `head_only` for the answer to a HEAD request.
    fn parse_reply(bytes: &[u8], head_only: bool) -> Reply {
        let text = String::from_utf8_lossy(bytes);
        let (head, _) = text.split_once("\r\n\r\n").expect("a complete head");
        let body = bytes[head.len() + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status =
            status_line.split(' ').nth(1).expect("status").parse().expect("numeric status");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("header");
                (n.to_owned(), v.to_owned())
            })
            .collect();
        let reply = Reply { status, headers, body };
        assert_eq!(reply.header("Connection"), Some("close"));
        assert!(reply.header("Date").is_some_and(|d| d.ends_with(" GMT")));
        let length: usize =
            reply.header("Content-Length").expect("length").parse().expect("number");
        if !head_only {
            assert_eq!(length, reply.body.len(), "{status_line}");
        }
        reply
    }

    /// Sends `raw` on a new connection and reads the response.
    fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        stream.write_all(raw).expect("write");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read");
        parse_reply(&bytes, raw.starts_with(b"HEAD "))
    }

    fn get(addr: SocketAddr, target: &str) -> Reply {
        get_with(addr, target, "")
    }

    fn get_with(addr: SocketAddr, target: &str, headers: &str) -> Reply {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\nAccept: */*\r\n{headers}\r\n"
        );
        send(addr, raw.as_bytes())
    }

    /// Polls `cond` for up to 30 s (what it waits for happens at once
    /// unless the code is broken, but a loaded CI machine can take seconds
    /// to schedule a thread).
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn index_lists_the_profiles() {
        let server = server(Mode::Working);
        for path in ["/debug/pprof/", "/debug/pprof"] {
            let reply = get(server.local_addr(), path);
            assert_eq!(reply.status, 200, "{path}");
            assert_eq!(reply.header("Content-Type"), Some("text/html; charset=utf-8"));
            let page = reply.text();
            for link in ["/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/profile"] {
                assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
            }
        }
        let head = send(server.local_addr(), b"HEAD /debug/pprof/ HTTP/1.1\r\n\r\n");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }

    #[test]
    fn heap_and_allocs_serve_gzip_pprof_with_their_default_types() {
        let server = server(Mode::Working);
        for (path, name, default) in [
            ("/debug/pprof/heap", "heap", "inuse_space"),
            ("/debug/pprof/heap?gc=1", "heap", "inuse_space"),
            ("/debug/pprof/heap?debug=0", "heap", "inuse_space"),
            ("/debug/pprof/allocs", "allocs", "alloc_space"),
            ("http://localhost/debug/pprof/allocs?gc=1&debug=0", "allocs", "alloc_space"),
        ] {
            let reply = get(server.local_addr(), path);
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert_eq!(reply.header("Content-Type"), Some("application/octet-stream"));
            assert_eq!(
                reply.header("Content-Disposition"),
                Some(format!("attachment; filename=\"{name}\"").as_str())
            );
            assert!(reply.body.starts_with(&[0x1f, 0x8b]), "{path}: not gzip");
            let profile = decode(&reply.body).expect("decode");
            let index = profile.default_sample_type.expect("a default sample type");
            assert_eq!(profile.sample_types[index].r#type, default, "{path}");
            let mut expected = fixture::heap();
            expected.default_sample_type = expected.sample_type_index(default);
            assert_eq!(profile, expected, "{path}");
        }
    }

    #[test]
    fn heap_rejects_debug_text_and_delta_profiles() {
        let server = server(Mode::Working);
        let reply = get(server.local_addr(), "/debug/pprof/heap?debug=1");
        assert_eq!(reply.status, 400);
        assert_eq!(reply.header("X-Go-Pprof"), Some("1"));
        assert_eq!(reply.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert!(reply.text().contains("only the binary pprof format"), "{}", reply.text());
        let reply = get(server.local_addr(), "/debug/pprof/allocs?seconds=10");
        assert_eq!(reply.status, 400);
        assert!(reply.text().contains("-diff_base"), "{}", reply.text());
    }

    #[test]
    fn profile_blocks_for_its_seconds() {
        let (server, fake) = server_with(Mode::Working, None, Limits::default());
        let start = Instant::now();
        let reply = get(server.local_addr(), "/debug/pprof/profile?seconds=1");
        let elapsed = start.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.text());
        // Its 1 s (not, say, the default 30 s), with slack for a loaded machine.
        assert!(
            (Duration::from_secs(1)..Duration::from_secs(6)).contains(&elapsed),
            "took {elapsed:?}"
        );
        assert_eq!(reply.header("Content-Disposition"), Some("attachment; filename=\"profile\""));
        let profile = decode(&reply.body).expect("decode");
        assert_eq!(profile.kind, ProfileKind::Cpu);
        assert_eq!(profile.duration, Duration::from_secs(1));
        assert_eq!(fake.cpu_calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bad_seconds_are_rejected_with_the_range() {
        let (server, fake) = server_with(Mode::Working, None, Limits::default());
        for seconds in ["0", "-1", "abc", "1.5", "301", "99999999999999999999999", "%31%30x"] {
            let reply =
                get(server.local_addr(), &format!("/debug/pprof/profile?seconds={seconds}"));
            assert_eq!(reply.status, 400, "seconds={seconds}");
            assert!(reply.text().contains("1..=300"), "{}", reply.text());
        }
        assert_eq!(fake.cpu_calls.load(Ordering::Relaxed), 0);
        // The default is 30 s; with a smaller limit it is that limit.
        let limits = Limits { max_seconds: 1, ..Limits::default() };
        let (server, fake) = server_with(Mode::Working, None, limits);
        let reply = get(server.local_addr(), "/debug/pprof/profile");
        assert_eq!(reply.status, 200);
        assert_eq!(decode(&reply.body).expect("decode").duration, Duration::from_secs(1));
        assert_eq!(fake.cpu_calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn unknown_paths_and_methods() {
        let server = server(Mode::Working);
        for path in
            ["/", "/debug", "/debug/pprof/goroutine", "/debug/pprof/nope", "/debug/pprof/heap/x"]
        {
            let reply = get(server.local_addr(), path);
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(reply.header("X-Go-Pprof"), Some("1"));
        }
        assert!(
            get(server.local_addr(), "/debug/pprof/mutex").text().contains("Go runtime profile")
        );
        let reply = send(server.local_addr(), b"DELETE /debug/pprof/heap HTTP/1.1\r\n\r\n");
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("Allow"), Some("GET, HEAD, POST"));
        for raw in [
            &b"GET /debug/pprof/\r\n\r\n"[..],
            b"GET debug HTTP/1.1\r\n\r\n",
            b"GET /debug/pprof/heap?seconds=%zz HTTP/1.1\r\n\r\n",
            b"GET /debug/pprof/ HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /debug/pprof/ HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        ] {
            assert_eq!(
                send(server.local_addr(), raw).status,
                400,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(send(server.local_addr(), b"GET / HTTP/2.0\r\n\r\n").status, 505);
        let chunked =
            b"POST /debug/pprof/symbol HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(send(server.local_addr(), chunked).status, 501);
    }

    #[test]
    fn symbol_answers_like_go_without_symbols() {
        let server = server(Mode::Working);
        let reply = get(server.local_addr(), "/debug/pprof/symbol");
        assert_eq!((reply.status, reply.text().as_str()), (200, "num_symbols: 0\n"));
        let post = b"POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 27\r\n\r\n0x7f0000001234+0x7f00000012";
        let reply = send(server.local_addr(), post);
        assert_eq!((reply.status, reply.text().as_str()), (200, "num_symbols: 0\n"));
        // With Expect: 100-continue, the body is sent after the interim response.
        let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        stream
            .write_all(b"POST /debug/pprof/symbol HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n")
            .expect("write");
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut buf = vec![0; interim.len()];
        stream.read_exact(&mut buf).expect("read 100");
        assert_eq!(buf, interim);
        stream.write_all(b"0x1234").expect("write body");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).expect("read");
        assert_eq!(parse_reply(&rest, false).status, 200);
        // A body over the limit.
        let big = b"POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(send(server.local_addr(), big).status, 413);
    }

    #[test]
    fn source_errors_map_to_status_codes() {
        for (mode, path, status) in [
            (Mode::HeapDisabled, "/debug/pprof/heap", 404),
            (Mode::HeapDisabled, "/debug/pprof/allocs", 404),
            (Mode::CpuDisabled, "/debug/pprof/profile?seconds=1", 404),
            (Mode::NotInstalled, "/debug/pprof/heap", 501),
            (Mode::Failing, "/debug/pprof/heap", 500),
            (Mode::Failing, "/debug/pprof/profile?seconds=1", 500),
            (Mode::Stopped, "/debug/pprof/heap", 503),
            (Mode::Stopped, "/debug/pprof/profile?seconds=1", 503),
        ] {
            let server = server(mode);
            let reply = get(server.local_addr(), path);
            assert_eq!(reply.status, status, "{mode:?} {path}");
            assert_eq!(reply.header("X-Go-Pprof"), Some("1"));
            let expected = match mode {
                Mode::HeapDisabled => Error::HeapDisabled,
                Mode::CpuDisabled => Error::CpuDisabled,
                Mode::NotInstalled => Error::HeapNotInstalled,
                Mode::Stopped => Error::Stopped,
                _ => Error::SymbolizerFailed,
            };
            assert_eq!(reply.text(), format!("{expected}\n"));
        }
        // CPU off does not stop heap profiles.
        assert_eq!(get(server(Mode::CpuDisabled).local_addr(), "/debug/pprof/heap").status, 200);
    }

    #[test]
    fn bearer_token_is_required_and_checked() {
        let token = "s3cr3t-t0ken";
        let (server, _) = server_with(Mode::Working, Some(token), Limits::default());
        let addr = server.local_addr();
        for headers in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: Bearer s3cr3t-t0ke\r\n",
            "Authorization: Bearer s3cr3t-t0ken0\r\n",
            "Authorization: Basic czNjcjN0LXQwa2Vu\r\n",
            "Authorization: s3cr3t-t0ken\r\n",
            "Authorization: Bearer\r\n",
        ] {
            for path in ["/debug/pprof/", "/debug/pprof/heap", "/nope"] {
                let reply = get_with(addr, path, headers);
                assert_eq!(reply.status, 401, "{headers:?} {path}");
                assert_eq!(reply.header("WWW-Authenticate"), Some(r#"Bearer realm="lowprof""#));
                assert!(!reply.text().contains(token));
            }
        }
        for headers in
            ["Authorization: Bearer s3cr3t-t0ken\r\n", "authorization: bearer  s3cr3t-t0ken \r\n"]
        {
            assert_eq!(get_with(addr, "/debug/pprof/heap", headers).status, 200, "{headers:?}");
        }
        let twice = "Authorization: Bearer s3cr3t-t0ken\r\nAuthorization: Bearer s3cr3t-t0ken\r\n";
        assert_eq!(get_with(addr, "/debug/pprof/heap", twice).status, 400);
        let head = parse_head("GET / HTTP/1.1\r\nAuthorization: Bearer s3cr3t-t0ken\r\n")
            .unwrap_or_else(|_| panic!("parse"));
        let debug = format!("{:?}", head.request);
        assert!(!debug.contains(token), "{debug}");
        let debug = format!("{server:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn bad_tokens_and_addresses_are_typed_errors() {
        let source: Arc<dyn ProfileSource> = Arc::new(Fake::new(Mode::Working));
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        for token in ["", "with space", "tab\t", "é", long.as_str()] {
            let started = PprofServer::start("127.0.0.1:0", Some(token.to_owned()), source.clone());
            assert!(matches!(started, Err(Error::InvalidBearerToken)), "{token:?}");
        }
        assert!(Error::InvalidBearerToken.to_string().contains(&MAX_TOKEN_LEN.to_string()));
        let taken = PprofServer::start("127.0.0.1:0", None, source.clone()).expect("start");
        let addr = taken.local_addr().to_string();
        match PprofServer::start(&addr, None, source.clone()) {
            Err(error @ Error::ServeBind { .. }) => {
                assert!(error.to_string().contains(&addr), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            PprofServer::start("not an address", None, source),
            Err(Error::ServeBind { .. })
        ));
    }

    #[test]
    fn oversized_headers_get_431() {
        let server = server(Mode::Working);
        let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
        assert_eq!(get_with(server.local_addr(), "/debug/pprof/", &big).status, 431);
        // Just under the limit is fine.
        let fits = format!("X-Big: {}\r\n", "a".repeat(15 * 1024));
        assert_eq!(get_with(server.local_addr(), "/debug/pprof/", &fits).status, 200);
        // Many small headers count together.
        let many = "X-Small: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(500);
        assert_eq!(get_with(server.local_addr(), "/debug/pprof/", &many).status, 431);
    }

    #[test]
    fn slow_clients_time_out_with_408() {
        let limits = Limits { read_timeout: Duration::from_millis(300), ..Limits::default() };
        let (server, _) = server_with(Mode::Working, None, limits);
        let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let start = Instant::now();
        // A byte at a time, slower than the whole request may take.
        for &b in b"GET /debug/pprof/ HTTP/1.1\r\n" {
            if stream.write_all(&[b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read");
        assert_eq!(parse_reply(&bytes, false).status, 408);
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        wait_for("the connection to be released", || {
            server.shared.active.load(Ordering::Acquire) == 0
        });
    }

    #[test]
    fn connection_limit_answers_503() {
        let limits = Limits { max_connections: 2, ..Limits::default() };
        let (server, _) = server_with(Mode::Working, None, limits);
        let idle: Vec<TcpStream> =
            (0..2).map(|_| TcpStream::connect(server.local_addr()).expect("connect")).collect();
        wait_for("two connections", || server.shared.active.load(Ordering::Acquire) == 2);
        let reply = get(server.local_addr(), "/debug/pprof/");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("Retry-After"), Some("1"));
        assert!(reply.text().contains("limit is 2"), "{}", reply.text());
        drop(idle);
        wait_for("the connections to close", || server.shared.active.load(Ordering::Acquire) == 0);
        assert_eq!(get(server.local_addr(), "/debug/pprof/").status, 200);
    }

    #[test]
    fn concurrent_cpu_profiles_beyond_the_limit_get_429() {
        let limits = Limits { max_cpu_profiles: 1, ..Limits::default() };
        let (server, fake) = server_with(Mode::Working, None, limits);
        let addr = server.local_addr();
        // A 10 s profile, so that the requests below come while it runs
        // however slow the machine; released early.
        let start = Instant::now();
        let first = thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=10"));
        wait_for("the first CPU profile", || fake.cpu_running() == 1);
        let reply = get(addr, "/debug/pprof/profile?seconds=1");
        assert_eq!(reply.status, 429, "{}", reply.text());
        let retry: u64 = reply.header("Retry-After").expect("Retry-After").parse().expect("number");
        // What is left of the first profile's 10 s, rounded up.
        let least = 10u64.saturating_sub(start.elapsed().as_secs() + 1).max(1);
        assert!((least..=10).contains(&retry), "{retry}");
        // Heap profiles still go through.
        assert_eq!(get(addr, "/debug/pprof/heap").status, 200);
        assert_eq!(fake.cpu_running(), 1, "the first profile was running throughout");
        fake.release();
        assert_eq!(first.join().expect("join").status, 200);
        assert_eq!(get(addr, "/debug/pprof/profile?seconds=1").status, 200);
        assert_eq!(fake.cpu_calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn concurrent_cpu_profiles_within_the_limit_overlap() {
        let (server, fake) = server_with(Mode::Working, None, Limits::default());
        let addr = server.local_addr();
        // Three 10 s profiles are all under way at once (one at a time, there
        // would never be more than one), then released early.
        let requests: Vec<_> = (0..3)
            .map(|_| thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=10")))
            .collect();
        wait_for("three CPU profiles at once", || fake.cpu_running() == 3);
        fake.release();
        for request in requests {
            assert_eq!(request.join().expect("join").status, 200);
        }
        assert_eq!(fake.cpu_calls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn drop_stops_the_listener_promptly() {
        let (server, fake) = server_with(Mode::Working, None, Limits::default());
        let addr = server.local_addr();
        // A CPU profile in progress (10 s, released early) does not hold up
        // the drop.
        let running = thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=10"));
        wait_for("the CPU profile", || fake.cpu_running() == 1);
        let start = Instant::now();
        drop(server);
        assert!(start.elapsed() < Duration::from_secs(2), "drop took {:?}", start.elapsed());
        assert!(TcpStream::connect(addr).is_err(), "still listening on {addr}");
        assert_eq!(fake.cpu_running(), 1, "the drop did not wait for the profile");
        // The request in progress completes on its own thread.
        fake.release();
        assert_eq!(running.join().expect("join").status, 200);
    }

    #[test]
    fn wildcard_address_is_woken_through_loopback() {
        let source: Arc<dyn ProfileSource> = Arc::new(Fake::new(Mode::Working));
        let server = PprofServer::start("0.0.0.0:0", None, source).expect("start");
        let port = server.local_addr().port();
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(get(local, "/debug/pprof/").status, 200);
        let start = Instant::now();
        drop(server);
        assert!(start.elapsed() < Duration::from_secs(2), "drop took {:?}", start.elapsed());
    }

    #[test]
    fn helpers() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some((16, 18)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody"), Some((15, 16)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%4", true), None);
        assert_eq!(percent_decode("%+1", true), None);
        assert!(constant_time_eq(b"token", b"token"));
        for given in [&b""[..], b"toke", b"tokex", b"token0", b"TOKEN"] {
            assert!(!constant_time_eq(given, b"token"), "{given:?}");
        }
        let sunday = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(sunday), "Sun, 06 Nov 1994 08:49:37 GMT");
        let (path, query) = parse_target("/debug/pprof/profile?seconds=5&gc&x=%41").expect("parse");
        assert_eq!(path, "/debug/pprof/profile");
        assert_eq!(
            query,
            [
                ("seconds".to_owned(), "5".to_owned()),
                ("gc".to_owned(), String::new()),
                ("x".to_owned(), "A".to_owned())
            ]
        );
    }

    /// The `go` binary, from `PATH` or Debian's `golang-go` location; `None`
    /// (skip) outside CI, a failure under CI.
    fn go_binary() -> Option<PathBuf> {
        let on_path = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
        if on_path {
            return Some(PathBuf::from("go"));
        }
        let debian = Path::new("/usr/lib/go/bin/go");
        if debian.exists() {
            return Some(debian.to_path_buf());
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `go` is missing: install Debian package golang-go"
        );
        eprintln!("note: `go` not found; skipping the go tool pprof check (install golang-go)");
        None
    }

    /// Runs `go tool pprof <args> <url>` and returns its standard output.
    fn go_pprof(go: &Path, args: &[&str], url: &str) -> String {
        let tmp = tempfile::tempdir().expect("tempdir");
        let output = Command::new(go)
            .args(["tool", "pprof"])
            .args(args)
            .arg(url)
            // Where pprof saves what it fetched.
            .env("PPROF_TMPDIR", tmp.path())
            .output()
            .expect("run go tool pprof");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "go tool pprof {args:?} {url} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    #[test]
    fn go_tool_pprof_reads_the_endpoint() {
        let Some(go) = go_binary() else { return };
        let (server, fake) = server_with(Mode::Working, None, Limits::default());
        let base = format!("http://{}/debug/pprof", server.local_addr());
        // Default symbolization, and remote only: the latter posts the libc
        // mapping's addresses to /debug/pprof/symbol.
        for (args, path) in [
            (&["-raw"][..], "heap"),
            (&["-raw", "-symbolize=remote"][..], "allocs"),
            (&["-top", "-sample_index=alloc_space"][..], "heap"),
        ] {
            let out = go_pprof(&go, args, &format!("{base}/{path}"));
            for function in ["alloc::vec::Vec<T>::push", "app::load", "main"] {
                assert!(out.contains(function), "{path} {args:?} lacks {function}:\n{out}");
            }
        }
        let start = Instant::now();
        let raw = go_pprof(&go, &["-raw"], &format!("{base}/profile?seconds=1"));
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(raw.contains("app::load"), "profile -raw lacks app::load:\n{raw}");
        assert!(raw.contains("cpu/nanoseconds"), "{raw}");
        assert_eq!(fake.cpu_calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn go_tool_pprof_prints_server_errors() {
        let Some(go) = go_binary() else { return };
        let (server, _) = server_with(Mode::Working, Some("t0ken"), Limits::default());
        let url = format!("http://{}/debug/pprof/heap", server.local_addr());
        let tmp = tempfile::tempdir().expect("tempdir");
        let output = Command::new(&go)
            .args(["tool", "pprof", "-raw", &url])
            .env("PPROF_TMPDIR", tmp.path())
            .output()
            .expect("run go tool pprof");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("401") && stderr.contains("Authorization: Bearer"), "{stderr}");
    }
}
