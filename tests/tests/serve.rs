//! The `/debug/pprof` pull endpoint, read by `go tool pprof` over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use lowprof_tests::pprof_tool::{pprof, require_go};

#[test]
fn go_tool_pprof_pulls_cpu_and_heap_profiles() {
    let Some(go) = require_go() else { return };
    // Serves far longer than the three pulls take even on a slow machine;
    // killed at the end.
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve_pprof"))
        .arg("120")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("ADDR ").unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "binds loopback: {addr}");
    let cpu = pprof(&go, &["-top", &format!("http://{addr}/debug/pprof/profile?seconds=2")]);
    assert!(cpu.contains("serve_pprof::serve_busy_loop"), "{cpu}");
    let heap = pprof(
        &go,
        &["-top", "-sample_index=alloc_space", &format!("http://{addr}/debug/pprof/heap")],
    );
    assert!(heap.contains("serve_pprof::serve_busy_loop"), "{heap}");
    let allocs = pprof(&go, &["-top", &format!("http://{addr}/debug/pprof/allocs")]);
    assert!(allocs.contains("Type: alloc_space"), "allocs defaults to alloc_space: {allocs}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A `/debug/pprof/profile?seconds=300` in flight when the profiler stops
/// ends at once with 503, instead of sleeping on and then draining the
/// process-wide rings of whatever profiler starts next.
#[test]
fn a_pull_request_in_flight_ends_when_the_profiler_stops() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_serve_pprof"))
        .arg("restart")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("ADDR ").unwrap().to_owned();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /debug/pprof/profile?seconds=300 HTTP/1.1\r\nHost: lowprof\r\n\r\n")
        .unwrap();
    // Connections are accepted in order, so once a second request has been
    // answered the first has been handed to its thread; give that thread
    // a moment to reach its CPU window, then stop the profiler.
    let mut probe = TcpStream::connect(&addr).unwrap();
    probe.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: lowprof\r\n\r\n").unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut index = Vec::new();
    probe.read_to_end(&mut index).unwrap();
    assert!(index.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&index));
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    child.stdin.take().unwrap().write_all(b"stop\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(read.is_ok(), "no answer {:?} after stop(): {read:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10), "answered late: {:?}", t.elapsed());
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(response.contains("profiler was stopped"), "{response}");
    let mut rest = String::new();
    while stdout.read_line(&mut rest).unwrap() > 0 {}
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("STOPPED"), "{rest}");
    // The second profiler saw all of its own 32 MiB (4 MiB blocks are
    // sampled with probability 1 - e^-64 each: nothing was drained away).
    let bytes: i64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("SECOND_ALLOC_SPACE "))
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("{rest}"));
    let expected = 32i64 << 20;
    assert!((bytes - expected).abs() <= expected / 20, "{bytes} of {expected}: {rest}");
}
