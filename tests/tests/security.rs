//! Profiles never carry the process's command line or environment (issue 7,
//! security): a service started with secrets in both has every pprof file
//! (the rotating ones and `stop()`'s), every flamegraph and every OTLP
//! request body searched for them, decompressed. Each search is checked to
//! work by finding the service's own function name in the same bytes.
//!
//! The OTLP side needs no Python: a plain TCP server answers 200 with an
//! empty `ExportProfilesServiceResponse` and keeps the bodies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

const ARG_SECRET: &str = "--db-password=arg-s3cret-7f3a";
const ENV_NAME: &str = "LOWPROF_TEST_API_KEY";
const ENV_SECRET: &str = "env-s3cret-91c2";
const FUNCTION: &str = "no_secrets_work";

/// Accepts connections on a thread and keeps each POST body.
fn start_sink() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let kept = Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = None;
                    let mut line = String::new();
                    // Request line and headers (keep-alive: many per connection).
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse::<usize>().ok();
                        }
                    }
                    let mut body = vec![0; length.unwrap_or(0)];
                    reader.read_exact(&mut body).unwrap();
                    kept.lock().unwrap().push(body);
                    let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n\
                                 Content-Length: 0\r\n\r\n";
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts `bytes` (already decompressed) hold no secret; returns whether
/// they hold the service's function name (the search works on them).
fn check(what: &str, bytes: &[u8]) -> bool {
    for secret in [ARG_SECRET, "arg-s3cret", ENV_NAME, ENV_SECRET] {
        assert!(!contains(bytes, secret), "{what} contains {secret:?}");
    }
    contains(bytes, FUNCTION)
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn profiles_carry_no_command_line_or_environment() {
    let (url, bodies) = start_sink();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_no_secrets"))
        .args([&url, dir.path().to_str().unwrap(), ARG_SECRET])
        .env(ENV_NAME, ENV_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // stop()'s files cover the whole run and the rotating heap files are
    // cumulative: each must show the function. A rotating CPU file covers
    // one 200 ms round (the last one, at stop, perhaps no sample at all):
    // at least one of them must.
    let (mut checked, mut cpu_rounds_found) = (0, 0);
    for file in files_in(dir.path()).into_iter().chain(files_in(&dir.path().join("rotating"))) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = match name.rsplit('.').next() {
            Some("gz") => gunzip(&std::fs::read(&file).unwrap()),
            Some("svg") => std::fs::read(&file).unwrap(),
            _ => continue,
        };
        let found = check(&name, &bytes);
        if name.starts_with("cpu-") {
            cpu_rounds_found += usize::from(found);
        } else {
            assert!(found, "{name}: the search works (function name found)");
        }
        checked += 1;
    }
    assert!(checked >= 6, "stop()'s 4 files and rotating ones: {checked}");
    assert!(cpu_rounds_found >= 1, "no rotating CPU profile shows {FUNCTION}");

    // Every request carries the in-use heap, where the function's blocks
    // are live.
    let bodies = bodies.lock().unwrap();
    assert!(!bodies.is_empty(), "OTLP requests arrived");
    for (i, body) in bodies.iter().enumerate() {
        let what = format!("OTLP request {i}");
        assert!(check(&what, &gunzip(body)), "{what}: the search works (function name found)");
    }
}
