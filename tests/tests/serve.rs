//! The `/debug/pprof` pull endpoint, read by `go tool pprof` over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use lowprof_tests::pprof_tool::{pprof, require_go};

#[test]
fn go_tool_pprof_pulls_cpu_and_heap_profiles() {
    let Some(go) = require_go() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve_pprof"))
        .arg("12")
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
