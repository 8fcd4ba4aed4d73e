//! What exporting costs: time and bytes to encode one profile of 10 000
//! distinct stacks / 100 000 samples to gzipped pprof and to OTLP.
//!
//! The profile is synthetic but shaped like a real program's CPU profile as
//! lowprof builds it (`lowprof::Profile`, kind CPU, `samples/count` and
//! `cpu/nanoseconds` at 99 Hz, labels `thread_id` and `thread_name`):
//!
//! - 3 mappings (the executable, libc, `[vdso]`), 2 000 functions
//!   (1 950 in the executable with Rust-like names, mangled names and source
//!   files; 45 in libc; 5 in the vDSO), 5 000 locations (2–3 per function,
//!   one in five with an inlined frame);
//! - 10 000 distinct stacks, 24–36 frames (mean ~30): a common root (6
//!   frames: `_start` … the runtime), then a binary call tree 14 levels deep
//!   whose node at each level picks its location by hashing the path so far
//!   (stacks share prefixes as a program's do), then a tail of 4–16 frames
//!   particular to the stack, sometimes ending in libc or the vDSO;
//! - 100 000 samples: one per stack, the other 90 000 skewed towards a few
//!   hot stacks, each stack on 1–3 of 8 threads; aggregated by (stack,
//!   thread) as lowprof does into one `Sample` each.
//!
//! Criterion group `export`: `pprof_encode` (protobuf only), `pprof_gzip`
//! (`lowprof::pprof::encode_gzip`, what `write_pprof` and the pull endpoint
//! produce), `otlp_encode` (`lowprof::otlp::encode_request`, what the OTLP
//! exporter sends uncompressed) and `otlp_gzip` (the same then gzipped with
//! flate2's default level, as the exporter does with `compression=gzip`).
//! Byte counts go to `target/criterion/export/sizes.json` (not in `--test`
//! mode) for `report.py`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use flate2::Compression;
use flate2::write::GzEncoder;
use lowprof::profile::{
    Function, Label, LabelValue, Line, Location, Mapping, Profile, ProfileKind, Sample, ValueType,
};
use lowprof_benches::cpu::{Args, write_result};

const GROUP: &str = "export";
const STACKS: usize = 10_000;
const SAMPLES: usize = 100_000;
const FUNCTIONS: usize = 2_000;
const LOCATIONS: usize = 5_000;
const THREADS: u64 = 8;
/// Nanoseconds per sample at 99 Hz.
const PERIOD: i64 = 1_000_000_000 / 99;

/// splitmix64: a fixed hash of a number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const EXE_FUNCTIONS: usize = 1_950;
const LIBC_FUNCTIONS: usize = 45;
const EXE_START: u64 = 0x5555_5555_4000;
const LIBC_START: u64 = 0x7f3a_1c20_0000;
const VDSO_START: u64 = 0x7ffd_8a3f_e000;

fn mappings() -> Vec<Mapping> {
    let m =
        |start: u64, len: u64, offset: u64, file: &str, build_id: &str, symbols: bool| Mapping {
            start,
            limit: start + len,
            file_offset: offset,
            filename: file.into(),
            build_id: build_id.into(),
            has_functions: symbols,
            has_filenames: symbols,
            has_line_numbers: symbols,
            htlhash: String::new(),
        };
    vec![
        m(
            EXE_START,
            24 << 20,
            0x4000,
            "/usr/local/bin/order-service",
            "3f6c1e0d9a4b7c2e8f105a6d4b3c2e1f0a9b8c7d",
            true,
        ),
        m(
            LIBC_START,
            1_622_016,
            0x28000,
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "6542915cee3354fbcf2b3ac5542201faec43b5c9",
            true,
        ),
        m(VDSO_START, 8192, 0, "[vdso]", "", true),
    ]
}

fn functions() -> Vec<Function> {
    let libc = [
        "__memcpy_avx_unaligned_erms",
        "__memset_avx2_unaligned_erms",
        "malloc",
        "free",
        "_int_malloc",
        "_int_free",
        "__libc_recv",
        "__libc_send",
        "epoll_wait",
        "__futex_abstimed_wait_common",
        "pthread_mutex_lock",
        "__lll_lock_wait",
        "clock_nanosleep",
        "__strlen_avx2",
        "__memmove_avx_unaligned_erms",
    ];
    let vdso = [
        "__vdso_clock_gettime",
        "__vdso_gettimeofday",
        "__vdso_time",
        "__vdso_getcpu",
        "__vdso_clock_getres",
    ];
    let mut out = Vec::with_capacity(FUNCTIONS);
    for i in 0..EXE_FUNCTIONS {
        let (module, ty, method) = (i / 39, (i / 7) % 23, i % 7);
        let path = format!("order_service::module_{module}::Type{ty}");
        let name = format!("{path}::method_{method}");
        let mangled: String = name.split("::").map(|p| format!("{}{p}", p.len())).collect();
        out.push(Function {
            system_name: format!("_ZN{mangled}17h{:016x}E", mix(i as u64)),
            name,
            filename: format!("/build/order-service/src/module_{module}.rs"),
            start_line: 10 + (mix(i as u64 ^ 7) % 900) as i64,
        });
    }
    for i in 0..LIBC_FUNCTIONS {
        let base = libc[i % libc.len()];
        let name =
            if i < libc.len() { base.to_string() } else { format!("{base}_{}", i / libc.len()) };
        out.push(Function {
            system_name: name.clone(),
            name,
            filename: String::new(),
            start_line: 0,
        });
    }
    for name in vdso {
        out.push(Function {
            name: name.into(),
            system_name: name.into(),
            filename: String::new(),
            start_line: 0,
        });
    }
    assert_eq!(out.len(), FUNCTIONS);
    out
}

/// Locations `0..EXE_LOCS` are in the executable, then libc, then the vDSO.
const EXE_LOCS: usize = 4_870;
const LIBC_LOCS: usize = 115;

fn locations() -> Vec<Location> {
    let mut out = Vec::with_capacity(LOCATIONS);
    // Spread the locations over their mapping's functions, 2–3 each.
    let mut push = |count: usize, first_fn: usize, fns: usize, mapping: u32, start: u64| {
        for j in 0..count {
            let f = first_fn + j * fns / count;
            let h = mix((first_fn + j) as u64 ^ 0xabc);
            let address = start + 0x1000 + (f - first_fn) as u64 * 0x340 + (h % 0x300);
            let mut lines = Vec::new();
            let has_lines = mapping == 0;
            if has_lines && h % 5 == 0 {
                // An inlined callee first, then the physical function.
                let callee = (f + 1 + (h >> 8) as usize % 50) % EXE_FUNCTIONS;
                lines.push(Line { function: callee as u32, line: 5 + (h >> 20) as i64 % 400 });
            }
            lines.push(Line {
                function: f as u32,
                line: if has_lines { 12 + (h >> 32) as i64 % 900 } else { 0 },
            });
            out.push(Location { address, mapping: Some(mapping), lines });
        }
    };
    push(EXE_LOCS, 0, EXE_FUNCTIONS, 0, EXE_START);
    push(LIBC_LOCS, EXE_FUNCTIONS, LIBC_FUNCTIONS, 1, LIBC_START);
    push(LOCATIONS - EXE_LOCS - LIBC_LOCS, EXE_FUNCTIONS + LIBC_FUNCTIONS, 5, 2, VDSO_START);
    assert_eq!(out.len(), LOCATIONS);
    out
}

/// Tree levels below the common root: 2^14 = 16 384 ≥ [`STACKS`] leaves.
const LEVELS: u32 = 14;
const ROOT: [u32; 6] = [0, 1, 2, 3, 4, 5];

/// The 10 000 distinct stacks, leaf first.
fn stacks() -> Vec<Vec<u32>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(STACKS);
    let mut leaf = 0u64;
    while out.len() < STACKS {
        let id = leaf;
        leaf += 1;
        // Root first: the common root, the tree path, the tail.
        let mut frames: Vec<u32> = ROOT.to_vec();
        for level in 0..LEVELS {
            // The node at this level: the top `level + 1` bits of the leaf id.
            let node = (id % (1 << LEVELS)) >> (LEVELS - 1 - level);
            let h = mix((u64::from(level) << 32) ^ node);
            frames.push(6 + (h % (EXE_LOCS as u64 - 6)) as u32);
        }
        let h = mix(id ^ 0x7a11);
        let tail = 4 + (h % 13) as usize;
        for k in 0..tail {
            let hk = mix(h ^ k as u64);
            frames.push(6 + (hk % (EXE_LOCS as u64 - 6)) as u32);
        }
        match (h >> 40) % 10 {
            0..=2 => frames.push(EXE_LOCS as u32 + ((h >> 16) % LIBC_LOCS as u64) as u32),
            3 => frames.push((EXE_LOCS + LIBC_LOCS) as u32 + ((h >> 16) % 10) as u32),
            _ => {}
        }
        frames.reverse();
        if seen.insert(frames.clone()) {
            out.push(frames);
        }
    }
    out
}

fn thread_labels(t: u64) -> Vec<Label> {
    vec![
        Label {
            key: "thread_id".into(),
            value: LabelValue::Num { value: 41_000 + t as i64, unit: String::new() },
        },
        Label {
            key: "thread_name".into(),
            value: LabelValue::Str(format!("tokio-runtime-worker-{t}")),
        },
    ]
}

/// The synthetic profile (see the module docs).
fn profile() -> Profile {
    let stacks = stacks();
    // (stack, thread) -> samples.
    let mut counts: HashMap<(usize, u64), i64> = HashMap::new();
    for i in 0..SAMPLES {
        let h = mix(i as u64 ^ 0x5eed);
        let stack = if i < STACKS {
            i
        } else {
            // Skewed: u^3 puts most samples on the first stacks.
            let u = (h >> 11) as f64 / (1u64 << 53) as f64;
            ((u * u * u) * STACKS as f64) as usize % STACKS
        };
        let spread = 1 + mix(stack as u64) % 3;
        let thread = (mix(stack as u64 ^ 1) + (h >> 3) % spread) % THREADS;
        *counts.entry((stack, thread)).or_default() += 1;
    }
    let mut keys: Vec<_> = counts.into_iter().collect();
    keys.sort_unstable();
    let samples = keys
        .into_iter()
        .map(|((stack, thread), n)| Sample {
            locations: stacks[stack].clone(),
            values: vec![n, n * PERIOD],
            labels: thread_labels(thread),
        })
        .collect();
    Profile {
        kind: ProfileKind::Cpu,
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        default_sample_type: Some(1),
        period_type: ValueType::new("cpu", "nanoseconds"),
        period: PERIOD,
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
        duration: Duration::from_secs(60),
        samples,
        locations: locations(),
        functions: functions(),
        mappings: mappings(),
        comments: vec![
            "lowprof 0.1.0: cpu at 99 Hz, 0 sampling periods dropped in this window".into(),
        ],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

struct Sizes {
    pprof: usize,
    pprof_gzip: usize,
    otlp: usize,
    otlp_gzip: usize,
}

/// Encodes once, checks the output decodes to the same profile, returns the
/// sizes.
fn sizes(p: &Profile, resource: &lowprof::otlp::ResourceInfo) -> Sizes {
    let pprof = lowprof::pprof::encode(p);
    let pprof_gzip = lowprof::pprof::encode_gzip(p).expect("encode_gzip");
    let back = lowprof::pprof::decode(&pprof_gzip).expect("decode our pprof");
    assert_eq!(back.samples.len(), p.samples.len());
    assert_eq!(back.total(0), SAMPLES as i64);
    let otlp = lowprof::otlp::encode_request(&[p], resource);
    let req = lowprof::otlp::decode_request(&otlp).expect("decode our OTLP");
    assert!(!req.resource_profiles.is_empty());
    Sizes {
        pprof: pprof.len(),
        pprof_gzip: pprof_gzip.len(),
        otlp: otlp.len(),
        otlp_gzip: gzip(&otlp).len(),
    }
}

fn main() {
    let args = Args::parse();
    let p = profile();
    let resource = lowprof::otlp::detect_resource(None, &[]);
    let depth =
        p.samples.iter().map(|s| s.locations.len()).sum::<usize>() as f64 / p.samples.len() as f64;
    let distinct: HashSet<&Vec<u32>> = p.samples.iter().map(|s| &s.locations).collect();
    assert_eq!(distinct.len(), STACKS);
    let s = sizes(&p, &resource);
    eprintln!(
        "export: {} stacks, {} samples in {} pprof samples (stack × thread), mean depth {depth:.1}, \
         {} locations, {} functions, {} mappings",
        distinct.len(),
        p.total(0),
        p.samples.len(),
        p.locations.len(),
        p.functions.len(),
        p.mappings.len()
    );
    eprintln!(
        "export: pprof {} B, pprof gzip {} B, OTLP {} B, OTLP gzip {} B",
        s.pprof, s.pprof_gzip, s.otlp, s.otlp_gzip
    );

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
        .configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("pprof_encode", |b| b.iter(|| lowprof::pprof::encode(black_box(&p))));
    group.bench_function("pprof_gzip", |b| {
        b.iter(|| lowprof::pprof::encode_gzip(black_box(&p)).unwrap())
    });
    group.bench_function("otlp_encode", |b| {
        b.iter(|| lowprof::otlp::encode_request(&[black_box(&p)], &resource))
    });
    group.bench_function("otlp_gzip", |b| {
        b.iter(|| gzip(&lowprof::otlp::encode_request(&[black_box(&p)], &resource)))
    });
    group.finish();
    c.final_summary();

    if !args.run_extra(GROUP) {
        return;
    }
    let now =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let json = format!(
        "{{\n  \"unix_time\": {now},\n  \"stacks\": {},\n  \"samples\": {},\n  \"pprof_samples\": {},\n  \
         \"mean_depth\": {depth:.2},\n  \"locations\": {},\n  \"functions\": {},\n  \"mappings\": {},\n  \
         \"bytes\": {{\"pprof_encode\": {}, \"pprof_gzip\": {}, \"otlp_encode\": {}, \"otlp_gzip\": {}}}\n}}\n",
        distinct.len(),
        p.total(0),
        p.samples.len(),
        p.locations.len(),
        p.functions.len(),
        p.mappings.len(),
        s.pprof,
        s.pprof_gzip,
        s.otlp,
        s.otlp_gzip
    );
    write_result(GROUP, "sizes.json", &json);
}
