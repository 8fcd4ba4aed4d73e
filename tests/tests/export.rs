//! OTLP export end to end: a test program exports to the Python receiver,
//! which decodes every request with the official `opentelemetry-proto`
//! bindings; faults injected by the receiver check delivery and retries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use support::{Receiver, require_python, run, stat};

const BIN: &str = env!("CARGO_BIN_EXE_otlp_export");

fn export(receiver_url: &str, seconds: &str, timeout_ms: &str) -> (String, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let stdout = run(BIN, &[receiver_url, files.path().to_str().unwrap(), seconds, timeout_ms]);
    (stdout, files)
}

fn ok_requests(requests: &[Value]) -> Vec<&Value> {
    requests.iter().filter(|r| r["outcome"] == "ok").collect()
}

/// Per sample type, the total of a request's OTLP profiles.
fn otlp_totals(request: &Value) -> BTreeMap<String, i64> {
    request["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["sample_type"]["type"].as_str().unwrap().to_owned(), p["total"].as_i64().unwrap())
        })
        .collect()
}

/// Per sample type, the total of a pprof file.
fn pprof_totals(path: &Path) -> BTreeMap<String, i64> {
    let p = lowprof::pprof::decode(&std::fs::read(path).unwrap()).unwrap();
    p.sample_types.iter().enumerate().map(|(i, t)| (t.r#type.clone(), p.total(i))).collect()
}

fn files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{prefix}-")))
        .collect();
    v.sort();
    v
}

#[test]
fn requests_decode_and_match_the_pprof_files_of_the_same_round() {
    if !require_python() {
        return;
    }
    let receiver = Receiver::start(0, None);
    let (stdout, dir) = export(&receiver.url(), "2.2", "10000");
    let requests = receiver.requests();
    let ok = ok_requests(&requests);
    // A request every 500 ms plus a final one; a loaded machine may make a
    // round late, so only two are certain.
    assert!(ok.len() >= 2, "a request every 500 ms plus a final one: {stdout}\n{requests:#?}");
    assert_eq!(stat(&stdout, "requests_sent"), ok.len() as u64);
    assert_eq!(stat(&stdout, "requests_failed") + stat(&stdout, "rejected"), 0, "{stdout}");
    for r in &ok {
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r:#}");
        assert_eq!(r["gzip"], true);
        assert_eq!(r["headers"]["content-type"], "application/x-protobuf");
        assert_eq!(
            r["headers"]["authorization"], "Bearer test-secret-token",
            "auth headers arrive"
        );
        let res = &r["resource"];
        assert_eq!(res["service.name"], "lowprof-export-test");
        assert_eq!(res["telemetry.sdk.name"], "lowprof");
        assert_eq!(res["telemetry.sdk.language"], "rust");
        assert_eq!(res["os.type"], "linux");
        assert!(res["process.pid"].as_i64().is_some_and(|p| p > 0), "{res:#}");
        assert!(
            res["process.executable.name"].as_str().is_some_and(|n| n.contains("otlp_export")),
            "{res:#}"
        );
        assert!(res["host.name"].is_string());
        assert_eq!(r["scope"]["name"], "lowprof");
        // One Profile per sample type.
        let types: BTreeSet<&str> = r["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["sample_type"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            BTreeSet::from([
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space",
                "samples",
                "cpu"
            ])
        );
        assert_eq!(r["profiles"].as_array().unwrap().len(), 6);
    }
    // Function names of the work are in the dictionary.
    let all_functions: BTreeSet<&str> = ok
        .iter()
        .flat_map(|r| r["profiles"].as_array().unwrap().iter())
        .flat_map(|p| p["functions"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()))
        .collect();
    assert!(all_functions.contains("otlp_export::otlp_cpu_work"), "{all_functions:?}");
    assert!(all_functions.contains("otlp_export::otlp_heap_work"), "{all_functions:?}");
    // The work ran in one span: its CPU and heap samples link to it, with
    // the ids the program set, and to nothing else.
    let link = "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7";
    for sample_type in ["cpu", "alloc_space"] {
        let linked: i64 = ok
            .iter()
            .flat_map(|r| r["profiles"].as_array().unwrap().iter())
            .filter(|p| p["sample_type"]["type"] == sample_type)
            .map(|p| {
                let links = p["links"].as_object().unwrap();
                assert!(links.keys().all(|k| k == link), "unexpected links {links:?}");
                links.get(link).and_then(Value::as_i64).unwrap_or(0)
            })
            .sum();
        assert!(linked > 0, "no {sample_type} sample links to the span");
    }
    // Round k was sent as request k and written as the k-th heap and cpu
    // files: the totals of every sample type agree.
    let (heaps, cpus) = (files(dir.path(), "heap"), files(dir.path(), "cpu"));
    assert_eq!(heaps.len(), ok.len(), "{heaps:?}");
    assert_eq!(cpus.len(), ok.len(), "{cpus:?}");
    for (k, r) in ok.iter().enumerate() {
        let mut want = pprof_totals(&heaps[k]);
        want.extend(pprof_totals(&cpus[k]));
        assert_eq!(otlp_totals(r), want, "round {k}");
    }
}

/// The profile ids of a request (identify a round across retries).
fn ids(r: &Value) -> BTreeSet<String> {
    r["profiles"].as_array().map_or_else(BTreeSet::new, |ps| {
        ps.iter().map(|p| p["profile_id"].as_str().unwrap().to_owned()).collect()
    })
}

/// How many times each round's profiles were accepted.
fn deliveries(requests: &[Value]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in ok_requests(requests) {
        for id in ids(r) {
            *n.entry(id).or_insert(0) += 1;
        }
    }
    n
}

#[test]
fn retry_after_503_then_200_delivers_exactly_once() {
    if !require_python() {
        return;
    }
    let receiver =
        Receiver::start(0, Some(r#"[{"status": 503, "retry_after": "1"}, {"status": 200}]"#));
    let (stdout, _dir) = export(&receiver.url(), "1.2", "10000");
    let requests = receiver.requests();
    assert_eq!(requests[0]["outcome"], "fault 503");
    let first = ids(&requests[0]);
    let d = deliveries(&requests);
    for id in &first {
        assert_eq!(d.get(id), Some(&1), "the refused round is delivered once after Retry-After");
    }
    assert!(d.values().all(|&n| n == 1), "no round delivered twice: {d:?}");
    assert!(stat(&stdout, "retries") >= 1);
    assert_eq!(stat(&stdout, "requests_failed"), 0);
}

#[test]
fn client_errors_are_not_retried() {
    if !require_python() {
        return;
    }
    let receiver = Receiver::start(0, Some(r#"[{"status": 400}, {"status": 200}]"#));
    let (stdout, _dir) = export(&receiver.url(), "1.2", "10000");
    let requests = receiver.requests();
    assert_eq!(requests[0]["outcome"], "fault 400");
    let first = ids(&requests[0]);
    let seen_again = requests[1..].iter().any(|r| !ids(r).is_disjoint(&first));
    assert!(!seen_again, "a 400 is not retried");
    assert_eq!(stat(&stdout, "rejected"), 1);
    assert!(!ok_requests(&requests).is_empty(), "later rounds still go out");
}

#[test]
fn partial_success_is_not_retried_but_counted() {
    if !require_python() {
        return;
    }
    let script = r#"[{"status": 200, "partial_success": {"rejected_profiles": 1, "error_message": "too old"}}, {"status": 200}]"#;
    let receiver = Receiver::start(0, Some(script));
    let (stdout, _dir) = export(&receiver.url(), "1.2", "10000");
    let requests = receiver.requests();
    let first = ids(&requests[0]);
    assert!(requests[1..].iter().all(|r| ids(r).is_disjoint(&first)), "not retried");
    assert_eq!(stat(&stdout, "partial_successes"), 1);
    assert!(stdout.contains("too old"), "the message is kept: {stdout}");
}

#[test]
fn a_server_slower_than_the_timeout_is_retried() {
    if !require_python() {
        return;
    }
    let receiver = Receiver::start(0, Some(r#"[{"delay": 2.0}, {"status": 200}]"#));
    // 500 ms client timeout; long enough a run for the backoff (~5 s).
    let (stdout, _dir) = export(&receiver.url(), "6", "500");
    let requests = receiver.requests();
    // The client gave up on the first request after 500 ms and sent it
    // again. The slow server finished the first copy anyway, so it may hold
    // two: delivery over a timeout is at-least-once, as in every OTLP client.
    let first = ids(&requests[0]);
    let attempts = requests.iter().filter(|r| !ids(r).is_disjoint(&first)).count();
    assert!(attempts >= 2, "the timed-out round was sent again: {attempts} attempt(s)");
    assert!(stat(&stdout, "retries") >= 1, "{stdout}");
}

#[test]
fn connection_refused_then_up_is_delivered() {
    if !require_python() {
        return;
    }
    // A free port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let files = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(BIN)
        .args([url.as_str(), files.path().to_str().unwrap(), "14", "10000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(10));
    let receiver = Receiver::start(port, None);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let requests = receiver.requests();
    assert!(!ok_requests(&requests).is_empty(), "delivered once the receiver was up: {stdout}");
    assert_eq!(stat(&stdout, "requests_failed"), 0, "{stdout}");
    assert!(stat(&stdout, "retries") >= 1, "{stdout}");
}
