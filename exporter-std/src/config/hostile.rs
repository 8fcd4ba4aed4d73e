//! Hostile input (issue 7): property tests over every builder option and
//! every `OTEL_*` variable the exporter reads. Whatever the value —
//! unicode, control characters, NUL, 64 KiB, huge, negative or float
//! numbers, percent-escape and `=`/`,` soup — checking it gives a valid
//! setting or a typed error that names the setting and says what to
//! change; never a panic, never a secret in a message.
//!
//! | covered | how |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_{,PROFILES_}{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,PROTOCOL}`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | [`resolve`] with an env closure (the process environment is never touched) |
//! | `heap`, `heap_interval`, `cpu_hz`, `cpu_timer`, `duration`, `drain_interval`, `max_{heap,cpu}_samples_per_sec`, `otlp_endpoint`, `header`, `otlp_timeout`, `otlp_compression`, `service_name`, `export_interval`, `serve_pprof`, `serve_token`, `keep_files` | `ProfilerBuilder::validate` then [`resolve`]: what `start()` checks before any sampler runs |
//! | `write_dir` (+ `keep_files`) and file prefixes | `RotatingWriter` under a temporary directory |
//! | the sample budgets after validation | `budget::next_interval` / `next_hz` |
//!
//! Case counts are kept small enough for the whole module to run in a few
//! seconds (`cargo test -p lowprof --lib hostile`).

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::builder::ProfilerBuilder;
use crate::error::Error;
use crate::files::RotatingWriter;
use crate::pprof::fixture;
use lowprof_sampler::TimerMode;

/// Every variable `resolve` reads.
pub(super) const VARS: [&str; 12] = [
    ENV_ENDPOINT,
    ENV_PROFILES_ENDPOINT,
    ENV_HEADERS,
    ENV_PROFILES_HEADERS,
    ENV_TIMEOUT,
    ENV_PROFILES_TIMEOUT,
    ENV_COMPRESSION,
    ENV_PROFILES_COMPRESSION,
    ENV_PROTOCOL,
    ENV_PROFILES_PROTOCOL,
    ENV_SERVICE_NAME,
    ENV_RESOURCE_ATTRIBUTES,
];

/// Builder settings an `Error::Config` may name, besides the variables.
const BUILDER_SETTINGS: [&str; 9] = [
    "otlp_endpoint",
    "header",
    "otlp_timeout",
    "otlp_compression",
    "service_name",
    "export_interval",
    "max_heap_samples_per_sec",
    "max_cpu_samples_per_sec",
    "serve_pprof",
];

/// A valid base endpoint, so that the other variables are looked at.
const GOOD_ENDPOINT: &str = "http://collector:4318";

/// Pieces hostile values are made of.
const PIECES: &[&str] = &[
    "",
    " ",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\0",
    "\u{7}",
    "\u{7f}",
    "\u{85}",
    "\u{1b}[31m",
    "é",
    "🦀",
    "\u{202e}",
    "\u{feff}",
    "\u{2028}",
    "\u{fffd}",
    "%",
    "%%",
    "%zz",
    "%0",
    "%00",
    "%0A",
    "%0d",
    "%ff",
    "%c3%28",
    "%2C",
    "%3D",
    "%25",
    "%20",
    "=",
    "==",
    ",",
    ",,",
    ";",
    ":",
    "::",
    "/",
    "//",
    "?",
    "#",
    "@",
    "[",
    "]",
    "[::1]",
    ".",
    "..",
    "-",
    "_",
    "+",
    "\\",
    "\"",
    "'",
    "<",
    ">",
    "http://",
    "https://",
    "HTTP://",
    "ftp://",
    "localhost",
    "collector",
    "127.0.0.1",
    ":4318",
    ":0",
    ":65535",
    ":65536",
    ":-1",
    "/v1development/profiles",
    "gzip",
    "GZIP",
    "none",
    "zstd",
    "http/protobuf",
    "http/json",
    "grpc",
    "0",
    "1",
    "-1",
    "+1",
    "1.5",
    "1e3",
    "NaN",
    "inf",
    "0x10",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "3600000",
    "3600001",
    "service.name",
    "authorization",
    "content-type",
    "Bearer ",
    "x-api-key",
    "k=v",
    "a",
    "Z",
    "9",
];

/// Awkward soup: up to 24 pieces or arbitrary characters.
fn soup() -> BoxedStrategy<String> {
    prop::collection::vec(
        prop_oneof![
            4 => select(PIECES).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
    .boxed()
}

/// Numbers as text: huge, negative, floats, in and around the valid ranges.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        (0u64..=3_600_002).prop_map(|n| n.to_string()),
        (0u64..=3_600_002).prop_map(|n| format!(" {n:025} ")),
    ]
    .boxed()
}

/// Up to 64 KiB of one piece repeated.
fn long() -> BoxedStrategy<String> {
    (select(PIECES), 1usize..=64 * 1024)
        .prop_map(|(piece, max)| {
            let piece = if piece.is_empty() { "a" } else { piece };
            let mut s = piece.repeat(max / piece.len() + 1);
            let mut end = max.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s
        })
        .boxed()
}

/// Something shaped like a URL, with hostile parts.
fn url_like() -> BoxedStrategy<String> {
    (
        select(&["http://", "https://", "HTTP://", "", "ftp://", "http:/", "http:"][..]),
        prop_oneof![Just(String::new()), soup().prop_map(|s| s + "@")],
        prop_oneof![
            select(&["collector", "c", "", "[::1]", "[::1", "[zz]", "::1", "127.0.0.1"][..])
                .prop_map(str::to_owned),
            soup(),
        ],
        prop_oneof![
            select(&["", ":4318", ":0", ":65536", ":", ":x"][..]).prop_map(str::to_owned),
            number().prop_map(|n| format!(":{n}")),
        ],
        prop_oneof![
            select(&["", "/", "/p", "//", "/v1development/profiles"][..]).prop_map(str::to_owned),
            soup()
        ],
        prop_oneof![Just(String::new()), soup().prop_map(|s| format!("?{s}"))],
        prop_oneof![Just(String::new()), soup().prop_map(|s| format!("#{s}"))],
    )
        .prop_map(|(scheme, user, host, port, path, query, fragment)| {
            format!("{scheme}{user}{host}{port}{path}{query}{fragment}")
        })
        .boxed()
}

/// `k=v,k=v` soup.
fn pairs() -> BoxedStrategy<String> {
    prop::collection::vec((soup(), select(&["=", "", "==", " = ", "%3D"][..]), soup()), 0..8)
        .prop_map(|items| {
            items.iter().map(|(k, sep, v)| format!("{k}{sep}{v}")).collect::<Vec<_>>().join(",")
        })
        .boxed()
}

/// Any hostile value.
fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        4 => soup(),
        2 => number(),
        1 => long(),
        2 => ".{0,40}",
        2 => url_like(),
        2 => pairs(),
    ]
    .boxed()
}

/// Durations at and around every limit, and anywhere.
fn duration() -> BoxedStrategy<Duration> {
    prop_oneof![
        select(vec![
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(1),
            DEFAULT_TIMEOUT,
            MAX_TIMEOUT,
            MAX_TIMEOUT + Duration::from_nanos(1),
            MAX_EXPORT_INTERVAL,
            MAX_EXPORT_INTERVAL + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ]),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..100_000_000).prop_map(Duration::from_millis),
    ]
    .boxed()
}

/// Floats including NaN, infinities, zero, negative and subnormal.
fn rate() -> BoxedStrategy<f64> {
    prop_oneof![
        select(
            &[
                0.0,
                -0.0,
                -1.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE,
                5e-324,
                f64::MAX,
                f64::EPSILON,
                1.0,
                100.0,
            ][..]
        ),
        any::<f64>(),
    ]
    .boxed()
}

/// An environment made of `pairs`.
fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |key: &str| pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
}

/// Every variable set or not, to a hostile value; half the time a valid
/// endpoint, so that the rest is not skipped.
fn environment() -> BoxedStrategy<Vec<(&'static str, String)>> {
    (prop::collection::vec(prop::option::weighted(0.4, hostile()), VARS.len()), any::<bool>())
        .prop_map(|(values, good_endpoint)| {
            let mut env: Vec<(&'static str, String)> =
                VARS.iter().zip(values).filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
            if good_endpoint {
                env.retain(|(k, _)| *k != ENV_PROFILES_ENDPOINT);
                env.push((ENV_ENDPOINT, GOOD_ENDPOINT.to_owned()));
            }
            env
        })
        .boxed()
}

/// The fix part of a message says what to do.
fn says_what_to_change(fix: &str) -> bool {
    ["use ", "write ", "remove", "set ", "give ", "percent-encode", "put ", "choose", "make "]
        .iter()
        .any(|verb| fix.contains(verb))
}

/// A checked error: typed, names its setting, says what to change, is
/// short, and cannot inject anything into a log line.
fn check_error(e: &Error) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.chars().any(char::is_control), "control character in {msg:?}");
    prop_assert!(msg.len() < 2000, "message of {} bytes: {msg}", msg.len());
    match e {
        Error::Config { setting, value, fix } => {
            prop_assert!(
                VARS.contains(setting) || BUILDER_SETTINGS.contains(setting),
                "unknown setting {setting}"
            );
            prop_assert!(msg.starts_with(&format!("{setting}: ")), "{msg}");
            prop_assert!(value.chars().count() <= 200, "value not shortened: {msg}");
            prop_assert!(says_what_to_change(fix), "no fix in {msg}");
        }
        Error::InvalidHeapInterval { .. } => {
            prop_assert!(msg.starts_with("heap_interval("), "{msg}")
        }
        Error::InvalidCpuHz { .. } => prop_assert!(msg.starts_with("cpu_hz("), "{msg}"),
        Error::InvalidBearerToken => prop_assert!(msg.contains("bearer token"), "{msg}"),
        other => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

/// A resolved configuration is one the exporter can use as is.
fn check_config(c: &ExportConfig) -> Result<(), TestCaseError> {
    let uri = ureq::http::Uri::try_from(c.url.as_str());
    prop_assert!(uri.is_ok(), "{:?}", c.url);
    let uri = uri.map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(matches!(uri.scheme_str(), Some("http" | "https")), "{:?}", c.url);
    prop_assert!(uri.host().is_some_and(|h| !h.is_empty()), "{:?}", c.url);
    prop_assert!(
        !c.url.contains('#') && !c.url.chars().any(|ch| ch.is_whitespace() || ch.is_control())
    );
    prop_assert!(c.url.contains("/v1development/profiles") || uri.path().len() > 1, "{:?}", c.url);

    let mut request = ureq::http::Request::post(c.url.as_str());
    for (i, (name, value)) in c.headers.iter().enumerate() {
        prop_assert!(!name.is_empty() && name.chars().all(is_tchar), "name {name:?}");
        prop_assert!(
            !RESERVED_HEADERS.iter().any(|r| name.eq_ignore_ascii_case(r)),
            "reserved {name:?}"
        );
        prop_assert!(
            !c.headers[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)),
            "duplicate {name:?}"
        );
        let v = value.expose();
        prop_assert!(!v.contains(['\r', '\n', '\0']), "CR/LF/NUL in the value of {name:?}");
        prop_assert!(v.trim() == v, "untrimmed value of {name:?}");
        prop_assert!(ureq::http::HeaderValue::from_str(v).is_ok(), "value of {name:?}");
        request = request.header(name.as_str(), v);
    }
    prop_assert!(request.body(()).is_ok(), "the request cannot be built: {c:?}");

    prop_assert!(c.timeout.is_none_or(|t| !t.is_zero() && t <= MAX_TIMEOUT), "{:?}", c.timeout);
    prop_assert!(!c.export_interval.is_zero() && c.export_interval <= MAX_EXPORT_INTERVAL);
    if let Some(name) = &c.service_name {
        prop_assert!(!name.trim().is_empty() && !name.chars().any(char::is_control), "{name:?}");
    }
    for (i, (k, v)) in c.resource_attributes.iter().enumerate() {
        prop_assert!(!k.is_empty() && k != "service.name", "key {k:?}");
        prop_assert!(!k.chars().chain(v.chars()).any(char::is_control), "{k:?}={v:?}");
        prop_assert!(!c.resource_attributes[..i].iter().any(|(key, _)| key == k), "dup {k:?}");
    }
    // Debug never panics and never shows a header value.
    let shown = format!("{c:?}{c:#?}");
    for (_, value) in &c.headers {
        let v = value.expose();
        if v.len() >= 6 && !"<redacted>".contains(v) {
            prop_assert!(!shown.contains(v), "header value shown in {shown}");
        }
    }
    Ok(())
}

/// `resolve`'s outcome is a valid configuration, off, or a checked error.
fn check_outcome(outcome: &Result<Option<ExportConfig>, Error>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(Some(c)) => check_config(c),
        Ok(None) => Ok(()),
        Err(e @ Error::Config { .. }) => check_error(e),
        Err(e) => Err(TestCaseError::fail(format!("resolve gave a non-config error: {e:?}"))),
    }
}

fn config(cases: u32) -> ProptestConfig {
    // No regression files in the source tree: a failure prints the
    // minimal input, which then belongs in a unit test.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(512))]

    /// Every variable at once, each set to a hostile value or not.
    #[test]
    fn every_variable(env in environment()) {
        check_outcome(&resolve(&OtlpSettings::default(), &env_of(env)))?;
    }

    /// One variable at a time with a valid endpoint: its own check is reached.
    #[test]
    fn each_variable_alone(var in select(&VARS[..]), value in hostile()) {
        let mut env = vec![(var, value)];
        if !var.ends_with("_ENDPOINT") {
            env.push((ENV_ENDPOINT, GOOD_ENDPOINT.to_owned()));
        }
        let outcome = resolve(&OtlpSettings::default(), &env_of(env));
        if let Err(Error::Config { setting, .. }) = &outcome {
            prop_assert_eq!(*setting, var);
        }
        check_outcome(&outcome)?;
    }
}

/// A builder with every option set (or not) to a hostile value; the
/// public methods are used, so their clamps apply.
fn builder() -> BoxedStrategy<ProfilerBuilder> {
    let sampling = (
        any::<bool>(),
        prop::option::of(prop_oneof![
            select(&[0, 1, 1 << 40, (1 << 40) + 1, u64::MAX][..]),
            any::<u64>()
        ]),
        prop_oneof![select(&[0, 1, 99, 1000, 1001, u32::MAX][..]), any::<u32>()],
        select(&[TimerMode::PerThread, TimerMode::Process][..]),
        prop::option::of(duration()),
        duration(),
        prop::option::of(rate()),
        prop::option::of(rate()),
    );
    let otlp = (
        prop::option::of(hostile()),
        prop::collection::vec((hostile(), hostile()), 0..4),
        prop::option::of(duration()),
        prop::option::of(hostile()),
        prop::option::of(hostile()),
        prop::option::of(duration()),
    );
    let serve = (
        prop::option::of(prop_oneof![
            select(&["127.0.0.1:0", "[::1]:6060", "localhost:6060", "0.0.0.0:65535"][..])
                .prop_map(str::to_owned),
            hostile(),
        ]),
        prop::option::of(hostile()),
        prop_oneof![select(&[0, 1, usize::MAX][..]), any::<usize>()],
    );
    (sampling, otlp, serve)
        .prop_map(|(sampling, otlp, serve)| {
            let (heap, heap_interval, hz, timer, run_for, drain, max_heap, max_cpu) = sampling;
            let (endpoint, headers, timeout, compression, service, export) = otlp;
            let (addr, token, keep) = serve;
            let mut b = ProfilerBuilder::default()
                .heap(heap)
                .cpu_hz(hz)
                .cpu_timer(timer)
                .drain_interval(drain)
                .keep_files(keep);
            if let Some(bytes) = heap_interval {
                b = b.heap_interval(bytes);
            }
            if let Some(d) = run_for {
                b = b.duration(d);
            }
            if let Some(r) = max_heap {
                b = b.max_heap_samples_per_sec(r);
            }
            if let Some(r) = max_cpu {
                b = b.max_cpu_samples_per_sec(r);
            }
            if let Some(e) = endpoint {
                b = b.otlp_endpoint(e);
            }
            for (k, v) in headers {
                b = b.header(k, v);
            }
            if let Some(t) = timeout {
                b = b.otlp_timeout(t);
            }
            if let Some(c) = compression {
                b = b.otlp_compression(c);
            }
            if let Some(s) = service {
                b = b.service_name(s);
            }
            if let Some(i) = export {
                b = b.export_interval(i);
            }
            if let Some(a) = addr {
                b = b.serve_pprof(a);
            }
            if let Some(t) = token {
                b = b.serve_token(t);
            }
            b
        })
        .boxed()
}

/// What `validate` lets through is in range.
fn check_validated(b: &ProfilerBuilder) -> Result<(), TestCaseError> {
    prop_assert!(b.cpu_hz == 0 || (1..=1000).contains(&b.cpu_hz), "cpu_hz {}", b.cpu_hz);
    prop_assert!(b.heap_interval.is_none_or(|i| (1..=1 << 40).contains(&i)));
    for r in [b.max_heap_samples_per_sec, b.max_cpu_samples_per_sec].into_iter().flatten() {
        prop_assert!(r.is_finite() && r > 0.0, "budget {r}");
    }
    prop_assert!(
        (Duration::from_millis(1)..=Duration::from_secs(1)).contains(&b.drain_interval),
        "drain_interval {:?}",
        b.drain_interval
    );
    prop_assert!(b.keep_files >= 1);
    if let Some(addr) = &b.serve_addr {
        prop_assert!(!addr.chars().any(|c| c.is_whitespace() || c.is_control()), "{addr:?}");
        prop_assert!(addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()));
    }
    if let Some(token) = &b.serve_token {
        prop_assert!(
            !token.is_empty() && token.len() <= 4096 && token.bytes().all(|c| c.is_ascii_graphic())
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// Every builder option, with and without a hostile environment: what
    /// `start()` checks before any sampler runs (`validate`, then
    /// `resolve` with the environment).
    #[test]
    fn every_builder_option(b in builder(), env in prop::option::of(environment())) {
        let env = env_of(env.unwrap_or_default());
        match b.validate() {
            Ok(()) => {
                check_validated(&b)?;
                check_outcome(&resolve(&b.otlp, &env))?;
            }
            Err(e) => check_error(&e)?,
        }
        // Debug never panics, whatever the builder holds.
        let _ = format!("{b:?}{b:#?}");
    }

    /// After validation, the sample budget's controllers stay in range for
    /// any measured rate.
    #[test]
    fn budget_stays_in_range(
        max in rate(),
        floor in prop_oneof![Just(1u64), Just(1 << 40), 1u64..=1 << 40],
        current in any::<u64>(),
        measured in prop_oneof![Just(0.0), Just(f64::MAX), 0.0..1e30f64],
        hz in 1u32..=1000,
        current_hz in any::<u32>(),
    ) {
        let b = ProfilerBuilder::default().max_heap_samples_per_sec(max);
        prop_assume!(b.validate().is_ok());
        let current = current.clamp(floor, 1 << 40);
        if let Some(next) = crate::budget::next_interval(current, measured, max, floor) {
            prop_assert!((floor..=1 << 40).contains(&next), "{next}");
        }
        let current_hz = current_hz.clamp(1, hz);
        if let Some(next) = crate::budget::next_hz(current_hz, measured, max, hz) {
            prop_assert!((1..=hz).contains(&next), "{next}");
        }
    }
}

/// A marker that never occurs in a message unless a secret leaked.
const MARK: &str = "Qz";

/// A secret value: starts with the marker, then anything but a comma (a
/// raw comma would end the item; OTLP values percent-encode it).
fn secret() -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(
            &[
                MARK,
                "Qz7",
                "Bearer%20",
                "%zz",
                "%",
                "%0A",
                "%ff",
                "\r\n",
                "\0",
                " ",
                "=",
                "é",
                "/",
                "?",
                "#",
                ":",
                "@",
                "+",
                "\u{1b}",
                "ab",
                "12",
            ][..],
        ),
        0..12,
    )
    .prop_map(|parts| format!("{MARK}{}", parts.concat()))
}

/// A header name as people mistype them (never containing the marker).
fn header_name() -> impl Strategy<Value = String> {
    select(
        &[
            "authorization",
            "x-api-key",
            "X-A",
            "bad key",
            "content-type",
            "",
            "%zz",
            "a(b)",
            "é",
            " x ",
            "x%0A",
        ][..],
    )
    .prop_map(str::to_owned)
}

/// One item of a headers variable: `name=secret`, or a bare secret
/// (without `=`, as a pasted token is).
fn header_item() -> impl Strategy<Value = String> {
    prop_oneof![
        (header_name(), secret()).prop_map(|(k, v)| format!("{k}={v}")),
        secret().prop_map(|s| s.replace('=', "")),
    ]
}

proptest! {
    #![proptest_config(config(384))]

    /// Header values, bare tokens, URL credentials, queries and fragments
    /// and the serve token never appear in an error or in `Debug`.
    #[test]
    fn secrets_never_shown(
        var in select(&[ENV_HEADERS, ENV_PROFILES_HEADERS][..]),
        items in prop::collection::vec(header_item(), 1..4),
        builder_header in prop::option::of((header_name(), secret())),
        endpoint in (
            select(&["http://", "https://", "", "ftp://"][..]),
            prop::option::of((select(&["user", "", "u:1"][..]), secret())),
            select(&["collector", "c:4318", "", "[::1]", "bad host", "c:43x"][..]),
            select(&["", "/", "/p", "/p@x"][..]),
            prop::option::of(secret()),
            prop::option::of(secret()),
        ),
        token in secret(),
    ) {
        let (scheme, credentials, host, path, query, fragment) = endpoint;
        let mut url = scheme.to_owned();
        if let Some((user, password)) = credentials {
            url.push_str(&format!("{user}:{password}@"));
        }
        url.push_str(host);
        url.push_str(path);
        if let Some(q) = query {
            url.push_str(&format!("?key={q}"));
        }
        if let Some(f) = fragment {
            url.push_str(&format!("#{f}"));
        }
        let env = vec![(var, items.join(",")), (ENV_ENDPOINT, GOOD_ENDPOINT.to_owned())];
        let mut b = ProfilerBuilder::default().serve_token(token);
        if let Some((k, v)) = builder_header {
            b = b.header(k, v);
        }
        for endpoint in [None, Some(url)] {
            let mut b = b.clone();
            if let Some(u) = endpoint {
                b = b.otlp_endpoint(u);
            }
            let shown = format!("{b:?}{b:#?}{:?}", b.otlp);
            prop_assert!(!shown.contains(MARK), "Debug leaked: {shown}");
            let outcome = b.validate().and_then(|()| resolve(&b.otlp, &env_of(env.clone())));
            match &outcome {
                Ok(Some(c)) => {
                    let shown = format!("{c:?}{c:#?}");
                    prop_assert!(!shown.contains(MARK), "Debug leaked: {shown}");
                }
                Ok(None) => {}
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(!msg.contains(MARK), "error leaked: {msg}");
                    prop_assert!(!format!("{e:?}").contains(MARK), "Debug of the error leaked: {e:?}");
                }
            }
            match &outcome {
                Err(e) => check_error(e)?,
                ok => check_outcome(ok)?,
            }
        }
    }
}

/// Names of every entry under `dir`, recursively, relative to it.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).map_or(String::new(), |p| p.display().to_string()));
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(config(96))]

    /// `write_dir` with hostile directory names and `keep_files`, and
    /// hostile file prefixes: a typed error or files written, never a
    /// panic or a leftover temporary file.
    #[test]
    fn write_dir_and_prefixes(name in hostile(), keep in any::<usize>(), prefix in hostile()) {
        let root = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        // One component under the temporary directory: never write elsewhere.
        let name = name.replace('/', "_");
        prop_assume!(name != "." && name != "..");
        let dir = root.path().join(&name);
        let b = ProfilerBuilder::default().write_dir(&dir).keep_files(keep);
        let keep = b.keep_files;
        match RotatingWriter::new(dir.clone(), keep) {
            Ok(mut writer) => {
                prop_assert!(dir.is_dir());
                match writer.write(&prefix, &fixture::heap()) {
                    Ok(path) => {
                        let bytes = std::fs::read(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(crate::pprof::decode(&bytes).is_ok());
                    }
                    Err(e @ Error::InvalidFilePrefix { .. }) => {
                        prop_assert!(e.to_string().contains("use 1 to 100 ASCII"), "{e}");
                    }
                    Err(e) => prop_assert!(false, "prefix {prefix:?}: {e:?}"),
                }
            }
            Err(e @ Error::ProfileDir { .. }) => {
                prop_assert!(e.to_string().contains(": "), "{e}");
            }
            Err(e) => prop_assert!(false, "dir {name:?}: {e:?}"),
        }
        let left = tree(root.path());
        prop_assert!(!left.iter().any(|p| p.contains(".tmp-") || p.contains(".lowprof-probe")), "{left:?}");
    }
}
