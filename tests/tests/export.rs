//! OTLP export end to end: a test program exports to the Python receiver,
//! which decodes every request with the official `opentelemetry-proto`
//! bindings; faults injected by the receiver check delivery and retries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Receiver, ReservedPort, require_python, run, stat};

const BIN: &str = env!("CARGO_BIN_EXE_otlp_export");

/// Runs the test program: `seconds` of work, then (up to `deadline` s after
/// its start) until every request has an outcome; see `otlp_export.rs`.
fn export(
    receiver_url: &str,
    seconds: &str,
    timeout_ms: &str,
    deadline: f64,
) -> (String, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let deadline = format!("{deadline:.1}");
    let args = [receiver_url, files.path().to_str().unwrap(), seconds, timeout_ms, &deadline];
    let stdout = run(BIN, &args);
    (stdout, files)
}

/// Whether the program saw every request come to an outcome before its
/// deadline.
fn settled(stdout: &str) -> bool {
    stdout.lines().any(|l| l == "settled=true")
}

/// Every request handed to the exporter has exactly one outcome (the
/// program has stopped: nothing is queued or in flight).
fn assert_accounted(stdout: &str) {
    let outcomes =
        ["requests_sent", "requests_failed", "rejected", "dropped_queue_full", "abandoned"]
            .iter()
            .map(|k| stat(stdout, k))
            .sum::<u64>();
    assert_eq!(stat(stdout, "enqueued"), outcomes, "{stdout}");
}

/// lowprof's retry schedule (the Collector's defaults): the first retry
/// waits 5 s, each later one 1.5 times longer up to 30 s, every wait spread
/// by ±50 % jitter.
const BACKOFF_INITIAL: f64 = 5.0;
const BACKOFF_MULTIPLIER: f64 = 1.5;
const BACKOFF_JITTER: f64 = 0.5;
const BACKOFF_MAX: f64 = 30.0;

/// The latest moment, in seconds after a request's first attempt, at which
/// it is retried when the endpoint starts answering at `up`: the last wait
/// that can begin before `up` begins at the earliest after the shortest
/// (-50 %) earlier waits, and lasts at most +50 % of its interval. Attempts
/// that fail at once (connection refused) take no time.
fn latest_retry(up: f64) -> f64 {
    let (mut interval, mut earliest_start, mut latest) = (BACKOFF_INITIAL, 0.0, up);
    while earliest_start < up {
        latest = up + (1.0 + BACKOFF_JITTER) * interval;
        earliest_start += (1.0 - BACKOFF_JITTER) * interval;
        interval = (interval * BACKOFF_MULTIPLIER).min(BACKOFF_MAX);
    }
    latest
}

/// Slack on top of [`latest_retry`] for a loaded machine: the program's
/// start, the queue behind the retried request, the final round.
const SLACK: f64 = 20.0;

fn ok_requests(requests: &[Value]) -> Vec<&Value> {
    requests.iter().filter(|r| r["outcome"] == "ok").collect()
}

/// The request's profile of `sample_type`.
fn profile<'a>(request: &'a Value, sample_type: &str) -> &'a Value {
    request["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sample_type"]["type"] == sample_type)
        .unwrap_or_else(|| panic!("no {sample_type} profile in {request:#}"))
}

/// Per sample type, the total and sample count of a request's profiles.
fn otlp_totals(request: &Value) -> BTreeMap<String, (i64, i64)> {
    request["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let total = (p["total"].as_i64().unwrap(), p["samples"].as_i64().unwrap());
            (p["sample_type"]["type"].as_str().unwrap().to_owned(), total)
        })
        .collect()
}

/// Per sample type, the total and sample count of a pprof file.
fn pprof_totals(path: &Path) -> BTreeMap<String, (i64, i64)> {
    let p = lowprof::pprof::decode(&std::fs::read(path).unwrap()).unwrap();
    p.sample_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let rows = p.samples.iter().filter(|s| s.values.get(i).is_some_and(|&v| v != 0));
            (t.r#type.clone(), (p.total(i), rows.count() as i64))
        })
        .collect()
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

const ALLOC_TYPES: [&str; 2] = ["alloc_objects", "alloc_space"];
const SNAPSHOT_TYPES: [&str; 4] = ["inuse_objects", "inuse_space", "samples", "cpu"];

#[test]
fn requests_decode_and_match_the_pprof_files_of_the_same_round() {
    if !require_python() {
        return;
    }
    let receiver = Receiver::start(0, None);
    let (stdout, dir) = export(&receiver.url(), "2.2", "10000", SLACK);
    assert!(settled(&stdout), "{stdout}");
    let requests = receiver.requests();
    let ok = ok_requests(&requests);
    // A request every 500 ms plus a final one; a loaded machine may make a
    // round late, so only two are certain.
    assert!(ok.len() >= 2, "a request every 500 ms plus a final one: {stdout}\n{requests:#?}");
    assert_eq!(ok.len(), requests.len(), "{requests:#?}");
    assert_eq!(stat(&stdout, "requests_sent"), ok.len() as u64);
    assert_eq!(stat(&stdout, "enqueued"), ok.len() as u64, "{stdout}");
    assert_accounted(&stdout);
    for r in &ok {
        // Errors include an htlhash that differs from the receiver's own.
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r:#}");
        let exe = r["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["filename"].as_str().is_some_and(|f| f.ends_with("/otlp_export")))
            .unwrap_or_else(|| panic!("no mapping of the executable: {r:#}"));
        assert!(exe["attributes"]["process.executable.build_id.gnu"].is_string(), "{exe:#}");
        assert_eq!(exe["htlhash_checked"], true, "htlhash sent and recomputed: {exe:#}");
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
    // files (Go's cumulative heap profile).
    let (heaps, cpus) = (files(dir.path(), "heap"), files(dir.path(), "cpu"));
    assert_eq!(heaps.len(), ok.len(), "{heaps:?}");
    assert_eq!(cpus.len(), ok.len(), "{cpus:?}");
    // OTLP profiles cover their own time: alloc_* the allocations of
    // [time, time + duration), the rounds' ranges back to back; in-use
    // and CPU the same moment as the files.
    let nanos = |p: &Value, key: &str| p[key].as_u64().unwrap();
    for (k, r) in ok.iter().enumerate() {
        let alloc = profile(r, "alloc_space");
        let in_use = profile(r, "inuse_space");
        let end = nanos(alloc, "time_unix_nano") + nanos(alloc, "duration_nano");
        assert_eq!(
            nanos(in_use, "time_unix_nano"),
            end,
            "round {k}: in-use is at the window's end"
        );
        assert_eq!(nanos(in_use, "duration_nano"), 0, "round {k}: in-use is a snapshot");
        assert!(nanos(alloc, "duration_nano") > 0, "round {k}");
        for t in ALLOC_TYPES {
            assert_eq!(profile(r, t)["time_unix_nano"], alloc["time_unix_nano"], "round {k}");
            assert_eq!(profile(r, t)["duration_nano"], alloc["duration_nano"], "round {k}");
        }
        if k > 0 {
            let previous = profile(ok[k - 1], "inuse_space");
            assert_eq!(
                nanos(alloc, "time_unix_nano"),
                nanos(previous, "time_unix_nano"),
                "round {k}'s allocations start where round {}'s ended",
                k - 1
            );
        }
    }
    // In-use and CPU equal the files of the same round. The alloc deltas of
    // rounds 0..=k add up to the cumulative alloc_* of round k's file (the
    // first delta counts from the session start), within rounding: every
    // row of every profile is rounded on its own, by at most 1/2 a unit.
    let mut alloc_sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (k, r) in ok.iter().enumerate() {
        let otlp = otlp_totals(r);
        let mut file = pprof_totals(&heaps[k]);
        file.extend(pprof_totals(&cpus[k]));
        let types: BTreeSet<&str> = otlp.keys().map(String::as_str).collect();
        assert_eq!(types, file.keys().map(String::as_str).collect(), "round {k}");
        for t in SNAPSHOT_TYPES {
            assert_eq!(otlp[t].0, file[t].0, "round {k}: {t}\n{otlp:?}\n{file:?}");
        }
        for t in ALLOC_TYPES {
            let sum = alloc_sums.entry(t).or_default();
            sum.0 += otlp[t].0;
            sum.1 += otlp[t].1;
            let (cumulative, rows) = file[t];
            // (Bound doubled: the encoder may merge rows with the same
            // stack and attributes into one sample.)
            let tolerance = sum.1 + rows;
            assert!(
                (sum.0 - cumulative).abs() <= tolerance,
                "round {k}: {t} deltas sum to {}, the file says {cumulative} (± {tolerance})",
                sum.0
            );
        }
    }
    let last = pprof_totals(heaps.last().unwrap());
    assert!(last["alloc_space"].0 > 0, "{last:?}");
}

/// The profile ids of a request (identify a round across retries).
fn ids(r: &Value) -> BTreeSet<String> {
    r["profiles"].as_array().map_or_else(BTreeSet::new, |ps| {
        ps.iter().map(|p| p["profile_id"].as_str().unwrap().to_owned()).collect()
    })
}

/// [`ids`], asserting the request has profiles and each a 16-byte id: a
/// check that a round is or is not sent again means nothing without them.
#[track_caller]
fn ids_present(r: &Value) -> BTreeSet<String> {
    let ids = ids(r);
    assert!(!ids.is_empty(), "a request without profile ids: {r}");
    assert!(ids.iter().all(|id| id.len() == 32), "profile ids are 16 bytes: {ids:?}");
    ids
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
    // The wait is max(Retry-After, backoff): the first round (at ~0.5 s) is
    // retried by 0.5 + 7.5 s; the program waits for that, then stops.
    let (stdout, _dir) = export(&receiver.url(), "1.2", "10000", latest_retry(1.0) + SLACK);
    assert!(settled(&stdout), "the refused round was not retried in time: {stdout}");
    let requests = receiver.requests();
    assert_eq!(requests[0]["outcome"], "fault 503");
    let first = ids_present(&requests[0]);
    let d = deliveries(&requests);
    for id in &first {
        assert_eq!(d.get(id), Some(&1), "the refused round is delivered once after Retry-After");
    }
    assert!(d.values().all(|&n| n == 1), "no round delivered twice: {d:?}");
    assert_eq!(stat(&stdout, "retries"), 1, "{stdout}");
    assert_eq!(stat(&stdout, "requests_failed") + stat(&stdout, "abandoned"), 0, "{stdout}");
    assert_eq!(stat(&stdout, "requests_sent"), ok_requests(&requests).len() as u64);
    assert_accounted(&stdout);
}

#[test]
fn client_errors_are_not_retried() {
    if !require_python() {
        return;
    }
    let receiver = Receiver::start(0, Some(r#"[{"status": 400}, {"status": 200}]"#));
    let (stdout, _dir) = export(&receiver.url(), "1.2", "10000", SLACK);
    assert!(settled(&stdout), "{stdout}");
    let requests = receiver.requests();
    assert_eq!(requests[0]["outcome"], "fault 400");
    let first = ids_present(&requests[0]);
    assert!(requests.len() >= 2, "later rounds went out: {requests:?}");
    let seen_again = requests[1..].iter().any(|r| !ids_present(r).is_disjoint(&first));
    assert!(!seen_again, "a 400 is not retried");
    assert_eq!(stat(&stdout, "rejected"), 1);
    assert_eq!(stat(&stdout, "retries"), 0, "{stdout}");
    assert!(!ok_requests(&requests).is_empty(), "later rounds still go out");
    assert_accounted(&stdout);
}

#[test]
fn partial_success_is_not_retried_but_counted() {
    if !require_python() {
        return;
    }
    let script = r#"[{"status": 200, "partial_success": {"rejected_profiles": 1, "error_message": "too old"}}, {"status": 200}]"#;
    let receiver = Receiver::start(0, Some(script));
    let (stdout, _dir) = export(&receiver.url(), "1.2", "10000", SLACK);
    assert!(settled(&stdout), "{stdout}");
    let requests = receiver.requests();
    assert_eq!(requests[0]["outcome"], "partial_success", "{requests:?}");
    let first = ids_present(&requests[0]);
    assert!(requests.len() >= 2, "later rounds went out: {requests:?}");
    assert!(requests[1..].iter().all(|r| ids_present(r).is_disjoint(&first)), "not retried");
    assert_eq!(stat(&stdout, "partial_successes"), 1);
    assert_eq!(stat(&stdout, "retries"), 0, "{stdout}");
    assert!(stdout.contains("too old"), "the message is kept: {stdout}");
    assert_accounted(&stdout);
}

#[test]
fn a_server_slower_than_the_timeout_is_retried() {
    if !require_python() {
        return;
    }
    // The first request is answered after 10 s; the client gives up after
    // 4 s (a timeout short enough to trip, long enough that the receiver's
    // decoding on a loaded machine does not trip it too, on any round
    // including the one stop() flushes). The first round's attempt (at
    // ~0.5 s) fails at ~4.5 s, and its retry comes by the backoff schedule.
    let receiver = Receiver::start(0, Some(r#"[{"delay": 10.0}, {"status": 200}]"#));
    let (stdout, _dir) = export(&receiver.url(), "1.2", "4000", latest_retry(5.5) + SLACK);
    assert!(settled(&stdout), "the timed-out round was not retried in time: {stdout}");
    let requests = receiver.requests();
    // The client gave up on the first request after 4 s and sent it
    // again. The slow server finished the first copy anyway, so it may hold
    // two: delivery over a timeout is at-least-once, as in every OTLP client.
    let first = ids(&requests[0]);
    let attempts = requests.iter().filter(|r| !ids(r).is_disjoint(&first)).count();
    assert!(attempts >= 2, "the timed-out round was sent again: {attempts} attempt(s)");
    assert!(stat(&stdout, "retries") >= 1, "{stdout}");
    assert_eq!(stat(&stdout, "requests_failed") + stat(&stdout, "abandoned"), 0, "{stdout}");
    assert_accounted(&stdout);
}

/// How long the endpoint is down (connection refused) before it comes up.
const DOWN: f64 = 10.0;

#[test]
fn connection_refused_then_up_is_delivered() {
    if !require_python() {
        return;
    }
    // A port that refuses connections until the receiver listens on it.
    let reserved = ReservedPort::new();
    let port = reserved.port;
    let url = format!("http://127.0.0.1:{port}");
    let files = tempfile::tempdir().unwrap();
    // The program works for 2 s, then waits until every round has an
    // outcome. It is given until the latest retry the backoff schedule
    // allows after the endpoint comes up (planned at DOWN s; 5 s more for a
    // slow receiver start), plus slack. It stops as soon as it is done.
    let deadline = latest_retry(DOWN + 5.0) + SLACK;
    let spawned = Instant::now();
    let mut child = Command::new(BIN)
        .args([url.as_str(), files.path().to_str().unwrap(), "2", "10000"])
        .arg(format!("{deadline:.1}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The fault itself: nothing listens for DOWN seconds.
    std::thread::sleep(Duration::from_secs_f64(DOWN));
    let receiver = Receiver::start_on(reserved, None);
    let up = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let up_after = spawned.elapsed().as_secs_f64();
    // The program stops by its deadline plus stop()'s flush; a hang fails
    // here instead of blocking the test run.
    let limit = spawned + Duration::from_secs_f64(deadline + 30.0);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > limit {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        settled(&stdout),
        "not delivered by {deadline:.1} s (endpoint up after {up_after:.1} s; the backoff \
         schedule retries by {:.1} s): {stdout}",
        latest_retry(up_after)
    );
    let requests = receiver.requests();
    let ok = ok_requests(&requests);
    // Retried until up: the oldest round delivered was made while the
    // endpoint refused connections, and attempts had failed.
    let made = |r: &Value| profile(r, "inuse_space")["time_unix_nano"].as_u64().unwrap();
    let oldest = ok.iter().map(|r| made(r)).min().expect("nothing delivered");
    assert!(u128::from(oldest) < up, "the first rounds were delivered, late: {stdout}");
    assert!(stat(&stdout, "retries") >= 1, "{stdout}");
    // Exactly once: every round that was not pushed out of the full queue
    // was delivered, none twice, and nothing failed or was abandoned.
    let d = deliveries(&requests);
    assert!(d.values().all(|&n| n == 1), "no round delivered twice: {d:?}");
    assert_eq!(ok.len(), requests.len(), "{requests:#?}");
    assert_eq!(stat(&stdout, "requests_sent"), ok.len() as u64, "{stdout}");
    let zero = ["requests_failed", "rejected", "abandoned"].map(|k| stat(&stdout, k));
    assert_eq!(zero, [0, 0, 0], "{stdout}");
    assert_eq!(
        stat(&stdout, "enqueued"),
        stat(&stdout, "requests_sent") + stat(&stdout, "dropped_queue_full"),
        "{stdout}"
    );
}
