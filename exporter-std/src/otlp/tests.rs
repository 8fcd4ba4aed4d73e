//! Tests of the OTLP encoder: round trip, the dictionary's zero entries and
//! deduplication, the per-sample-type split, attributes, the resource, invalid
//! input, and the official Python bindings (generated from the .proto files)
//! as an independent decoder.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use prost::Message;

use super::proto::{self, any_value::Value};
use super::{ResourceInfo, decode_request, detect_resource, encode_request};
use crate::pprof::fixture;
use crate::profile::{Label, LabelValue, Line, Location, Profile, ProfileKind, Sample, ValueType};

fn resource() -> ResourceInfo {
    ResourceInfo {
        service_name: "checkout".to_owned(),
        attributes: vec![
            ("process.pid".to_owned(), "4242".to_owned()),
            ("host.name".to_owned(), "build-host".to_owned()),
        ],
    }
}

fn thread(id: i64, name: &str) -> Vec<Label> {
    vec![
        Label {
            key: "thread_id".to_owned(),
            value: LabelValue::Num { value: id, unit: String::new() },
        },
        Label { key: "thread_name".to_owned(), value: LabelValue::Str(name.to_owned()) },
    ]
}

/// A CPU profile over the heap fixture's locations, functions and mappings.
fn cpu() -> Profile {
    let heap = fixture::heap();
    let period = 10_101_010;
    Profile {
        kind: ProfileKind::Cpu,
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        default_sample_type: Some(1),
        period_type: ValueType::new("cpu", "nanoseconds"),
        period,
        duration: Duration::from_secs(5),
        samples: vec![
            Sample {
                locations: vec![1, 2],
                values: vec![3, 3 * period],
                labels: thread(7, "worker-1"),
            },
            Sample {
                locations: vec![3, 2],
                values: vec![1, period],
                labels: thread(8, "worker-2"),
            },
            Sample {
                locations: vec![0, 1, 2],
                values: vec![2, 2 * period],
                labels: thread(7, "worker-1"),
            },
        ],
        comments: vec!["lowprof test cpu profile".to_owned()],
        ..heap
    }
}

fn request(profiles: &[&Profile]) -> proto::ExportProfilesServiceRequest {
    decode_request(&encode_request(profiles, &resource())).expect("our own bytes decode")
}

fn dictionary(request: &proto::ExportProfilesServiceRequest) -> &proto::ProfilesDictionary {
    request.dictionary.as_ref().expect("a dictionary")
}

fn profiles(request: &proto::ExportProfilesServiceRequest) -> &[proto::Profile] {
    &request.resource_profiles[0].scope_profiles[0].profiles
}

fn text(d: &proto::ProfilesDictionary, i: i32) -> &str {
    &d.string_table[usize::try_from(i).expect("non-negative")]
}

fn at<T>(table: &[T], i: i32) -> &T {
    &table[usize::try_from(i).expect("non-negative")]
}

fn value_type(d: &proto::ProfilesDictionary, t: &Option<proto::ValueType>) -> (String, String) {
    let t = t.as_ref().expect("a value type");
    (text(d, t.type_strindex).to_owned(), text(d, t.unit_strindex).to_owned())
}

/// An attribute as `key=value[ unit]`.
fn attribute(d: &proto::ProfilesDictionary, i: i32) -> String {
    let kv = at(&d.attribute_table, i);
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        other => panic!("unexpected attribute value {other:?}"),
    };
    let unit = text(d, kv.unit_strindex);
    let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
    format!("{}={value}{unit}", text(d, kv.key_strindex))
}

/// What a sample means, independent of table layout: its stack's function
/// names (leaf first, inlined frames expanded, `??` for no lines) and its
/// attributes, mapped to its value.
type Meaning = BTreeMap<(Vec<String>, Vec<String>), i64>;

fn otlp_meaning(d: &proto::ProfilesDictionary, profile: &proto::Profile) -> Meaning {
    let mut out = Meaning::new();
    for sample in &profile.samples {
        let mut names = Vec::new();
        for &l in &at(&d.stack_table, sample.stack_index).location_indices {
            let location = at(&d.location_table, l);
            if location.lines.is_empty() {
                names.push("??".to_owned());
            }
            for line in &location.lines {
                names.push(
                    text(d, at(&d.function_table, line.function_index).name_strindex).to_owned(),
                );
            }
        }
        let mut attrs: Vec<String> =
            sample.attribute_indices.iter().map(|&i| attribute(d, i)).collect();
        attrs.sort();
        assert_eq!(sample.values.len(), 1, "one value per sample");
        assert!(sample.timestamps_unix_nano.is_empty());
        assert_eq!(sample.link_index, 0);
        let previous = out.insert((names, attrs), sample.values[0]);
        assert!(previous.is_none(), "samples with the same identity are merged");
    }
    out
}

fn model_meaning(profile: &Profile, t: usize) -> Meaning {
    let mut out = Meaning::new();
    for sample in &profile.samples {
        let value = sample.values[t];
        if value == 0 {
            continue;
        }
        let names = profile.stack_names(sample).into_iter().map(str::to_owned).collect();
        let mut attrs: Vec<String> = sample
            .labels
            .iter()
            .map(|l| match &l.value {
                LabelValue::Str(s) => format!("{}={s}", l.key),
                LabelValue::Num { value, unit } if unit.is_empty() => format!("{}={value}", l.key),
                LabelValue::Num { value, unit } => format!("{}={value} {unit}", l.key),
            })
            .collect();
        attrs.sort();
        *out.entry((names, attrs)).or_default() += value;
    }
    out
}

/// Every index in the request points into its table.
fn assert_references_resolve(request: &proto::ExportProfilesServiceRequest) {
    let d = dictionary(request);
    let ok = |i: i32, len: usize| usize::try_from(i).is_ok_and(|i| i < len);
    let strings = d.string_table.len();
    let attributes = |indices: &[i32]| indices.iter().all(|&i| ok(i, d.attribute_table.len()));
    for m in &d.mapping_table {
        assert!(ok(m.filename_strindex, strings) && attributes(&m.attribute_indices));
    }
    for l in &d.location_table {
        assert!(ok(l.mapping_index, d.mapping_table.len()) && attributes(&l.attribute_indices));
        assert!(l.lines.iter().all(|n| ok(n.function_index, d.function_table.len())));
    }
    for f in &d.function_table {
        assert!(
            [f.name_strindex, f.system_name_strindex, f.filename_strindex]
                .iter()
                .all(|&i| ok(i, strings))
        );
    }
    for s in &d.stack_table {
        assert!(s.location_indices.iter().all(|&l| ok(l, d.location_table.len())));
    }
    for a in &d.attribute_table {
        assert!(ok(a.key_strindex, strings) && ok(a.unit_strindex, strings));
    }
    for p in profiles(request) {
        assert!(attributes(&p.attribute_indices));
        for t in [&p.sample_type, &p.period_type] {
            let t = t.as_ref().expect("value type");
            assert!(ok(t.type_strindex, strings) && ok(t.unit_strindex, strings));
        }
        for s in &p.samples {
            assert!(ok(s.stack_index, d.stack_table.len()) && attributes(&s.attribute_indices));
            assert!(ok(s.link_index, d.link_table.len()));
        }
    }
}

#[test]
fn round_trip_keeps_every_sample_of_every_type() {
    let (heap, cpu) = (fixture::heap(), cpu());
    let bytes = encode_request(&[&heap, &cpu], &resource());
    let request = decode_request(&bytes).expect("decodes");
    assert_eq!(request.encode_to_vec(), bytes, "decoding loses nothing");
    assert_references_resolve(&request);
    let d = dictionary(&request);
    let out = profiles(&request);
    assert_eq!(out.len(), 6);
    let expected = [(&heap, 0), (&heap, 1), (&heap, 2), (&heap, 3), (&cpu, 0), (&cpu, 1)];
    for (profile, (model, t)) in out.iter().zip(expected) {
        assert_eq!(
            otlp_meaning(d, profile),
            model_meaning(model, t),
            "{:?}",
            model.sample_types[t]
        );
    }
}

#[test]
fn every_table_starts_with_its_zero_value() {
    for input in [vec![], vec![fixture::heap()], vec![fixture::heap(), cpu()]] {
        let refs: Vec<&Profile> = input.iter().collect();
        let request = request(&refs);
        let d = dictionary(&request);
        assert_eq!(d.string_table.first().map(String::as_str), Some(""));
        assert_eq!(d.mapping_table.first(), Some(&proto::Mapping::default()));
        assert_eq!(d.location_table.first(), Some(&proto::Location::default()));
        assert_eq!(d.function_table.first(), Some(&proto::Function::default()));
        assert_eq!(d.attribute_table.first(), Some(&proto::KeyValueAndUnit::default()));
        assert_eq!(d.stack_table.first(), Some(&proto::Stack::default()));
        assert_eq!(
            d.link_table,
            [proto::Link { trace_id: vec![0; 16], span_id: vec![0; 8] }],
            "no linked samples: only the zero entry"
        );
        // Nothing else refers to a zero entry by accident.
        assert!(d.mapping_table.iter().skip(1).all(|m| *m != proto::Mapping::default()));
        assert!(d.string_table.iter().skip(1).all(|s| !s.is_empty()));
    }
}

#[test]
fn dictionary_is_shared_and_deduplicated_across_profiles() {
    let (heap, cpu) = (fixture::heap(), cpu());
    let alone = request(&[&heap]);
    let both = request(&[&heap, &cpu]);
    let (a, d) = (dictionary(&alone), dictionary(&both));
    // The CPU profile uses the heap profile's functions, locations and
    // mappings: none is added.
    assert_eq!(d.function_table.len(), 1 + heap.functions.len());
    assert_eq!(d.location_table.len(), 1 + heap.locations.len());
    assert_eq!(d.mapping_table.len(), 1 + heap.mappings.len());
    assert_eq!(d.function_table, a.function_table);
    assert_eq!(d.location_table, a.location_table);
    assert_eq!(d.mapping_table, a.mapping_table);
    // Stacks [1,2], [3,2], [0,1,2] are the heap profile's too.
    assert_eq!(d.stack_table, a.stack_table);
    assert_eq!(d.stack_table.len(), 1 + 3);

    let unique = |v: Vec<String>| v.iter().collect::<HashSet<_>>().len() == v.len();
    assert!(unique(d.string_table.clone()), "{:?}", d.string_table);
    assert!(unique((0..d.attribute_table.len() as i32).skip(1).map(|i| attribute(d, i)).collect()));
    let functions: HashSet<_> = d.function_table.iter().map(|f| f.encode_to_vec()).collect();
    assert_eq!(functions.len(), d.function_table.len());
    let stacks: HashSet<_> = d.stack_table.iter().collect();
    assert_eq!(stacks.len(), d.stack_table.len());
    // The same thread label in two profiles is one attribute.
    let worker = (1..d.attribute_table.len() as i32)
        .filter(|&i| attribute(d, i) == "thread_name=worker-1")
        .count();
    assert_eq!(worker, 1);
}

#[test]
fn one_profile_per_sample_type_with_the_model_totals() {
    let heap = fixture::heap();
    let request = request(&[&heap]);
    let d = dictionary(&request);
    let out = profiles(&request);
    assert_eq!(out.len(), 4);
    let mut ids = HashSet::new();
    for (t, profile) in out.iter().enumerate() {
        let model_type = &heap.sample_types[t];
        assert_eq!(
            value_type(d, &profile.sample_type),
            (model_type.r#type.clone(), model_type.unit.clone())
        );
        assert_eq!(value_type(d, &profile.period_type), ("space".to_owned(), "bytes".to_owned()));
        assert_eq!(profile.period, 512 * 1024);
        assert_eq!(profile.time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(profile.duration_nano, 10_000_000_000);
        let total: i64 = profile.samples.iter().flat_map(|s| &s.values).sum();
        assert_eq!(total, heap.total(t), "{model_type:?}");
        assert_eq!(profile.profile_id.len(), 16);
        assert_ne!(profile.profile_id, [0; 16]);
        assert!(ids.insert(profile.profile_id.clone()), "profile ids are unique");
    }
    // Zero values are left out: fixture sample 1 freed everything it
    // allocated, so the in-use profiles have one sample fewer.
    let counts: Vec<usize> = out.iter().map(|p| p.samples.len()).collect();
    assert_eq!(counts, [4, 4, 3, 3]);

    let cpu = cpu();
    let request = self::request(&[&cpu]);
    let d = dictionary(&request);
    let types: Vec<_> = profiles(&request).iter().map(|p| value_type(d, &p.sample_type)).collect();
    assert_eq!(types, [("samples".into(), "count".into()), ("cpu".into(), "nanoseconds".into())]);
    for (t, profile) in profiles(&request).iter().enumerate() {
        assert_eq!(value_type(d, &profile.period_type), ("cpu".into(), "nanoseconds".into()));
        assert_eq!(profile.period, 10_101_010);
        let total: i64 = profile.samples.iter().flat_map(|s| &s.values).sum();
        assert_eq!(total, cpu.total(t));
    }
}

#[test]
fn samples_with_the_same_identity_are_merged() {
    let mut profile = cpu();
    // Same stack and labels as sample 0, labels in another order.
    let mut labels = thread(7, "worker-1");
    labels.reverse();
    profile.samples.push(Sample { locations: vec![1, 2], values: vec![4, 40], labels });
    // Same stack, other thread: a different sample.
    profile.samples.push(Sample {
        locations: vec![1, 2],
        values: vec![1, 10],
        labels: thread(9, "worker-3"),
    });
    let request = request(&[&profile]);
    let samples = &profiles(&request)[0].samples;
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[0].values, [3 + 4]);
    assert_eq!(samples[3].values, [1]);
}

#[test]
fn labels_become_sample_attributes() {
    let request = request(&[&fixture::heap()]);
    let d = dictionary(&request);
    let alloc_space = &profiles(&request)[1];
    let attrs = |s: &proto::Sample| {
        let mut a: Vec<String> = s.attribute_indices.iter().map(|&i| attribute(d, i)).collect();
        a.sort();
        a
    };
    assert_eq!(attrs(&alloc_space.samples[0]), ["size=512 bytes", "thread_name=worker-1"]);
    assert_eq!(attrs(&alloc_space.samples[1]), ["batch=7"]);
    assert!(attrs(&alloc_space.samples[2]).is_empty());
    // Plain string and int values, never the v1.10 string-table form.
    for kv in d.attribute_table.iter().skip(1) {
        let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
        assert!(matches!(value, Some(Value::StringValue(_) | Value::IntValue(_))), "{kv:?}");
    }
    let batch = at(&d.attribute_table, alloc_space.samples[1].attribute_indices[0]);
    assert_eq!(batch.unit_strindex, 0, "a unitless number has no unit");
}

fn linked(trace: &str, span: &str) -> Vec<Label> {
    let mut labels = thread(7, "worker-1");
    labels.push(Label { key: "trace_id".into(), value: LabelValue::Str(trace.into()) });
    labels.push(Label { key: "span_id".into(), value: LabelValue::Str(span.into()) });
    labels.push(Label { key: "span_name".into(), value: LabelValue::Str("GET /users".into()) });
    labels
}

#[test]
fn trace_labels_become_links() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut profile = cpu();
    let base = profile.samples[0].clone();
    profile.samples = vec![
        Sample { labels: linked(TRACE, "00f067aa0ba902b7"), ..base.clone() },
        Sample { labels: linked(TRACE, "00f067aa0ba902b7"), ..base.clone() },
        Sample { labels: linked(TRACE, "1111111111111111"), ..base.clone() },
        // Not hex: kept as attributes, not a link.
        Sample { labels: linked("zz", "00f067aa0ba902b7"), ..base.clone() },
        base.clone(),
    ];
    let request = request(&[&profile]);
    assert_references_resolve(&request);
    let d = dictionary(&request);
    assert_eq!(d.link_table.len(), 3, "zero entry and two spans: {:?}", d.link_table);
    let link = &d.link_table[1];
    assert_eq!(
        link.trace_id,
        [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36
        ]
    );
    assert_eq!(link.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    let samples = &profiles(&request)[0].samples;
    // Same stack and attributes, three different links (0, 1, 2) and one
    // sample whose bad ids stay attributes: the two identical rows merge.
    assert_eq!(samples.len(), 4);
    let by_link: BTreeMap<i32, i64> = samples
        .iter()
        .filter(|s| s.attribute_indices.len() == 3)
        .map(|s| (s.link_index, s.values[0]))
        .collect();
    assert_eq!(by_link, BTreeMap::from([(1, 6), (2, 3)]));
    for s in samples.iter().filter(|s| s.link_index != 0) {
        let keys: Vec<String> = s.attribute_indices.iter().map(|&i| attribute(d, i)).collect();
        assert!(
            keys.iter().all(|k| !k.starts_with("trace_id") && !k.starts_with("span_id=")),
            "{keys:?}"
        );
        assert!(keys.iter().any(|k| k.starts_with("span_name")), "{keys:?}");
    }
    let unlinked = samples.iter().filter(|s| s.link_index == 0).count();
    assert_eq!(unlinked, 2, "the plain sample and the one with bad ids");
}

#[test]
fn locations_and_mappings_keep_addresses_lines_and_build_ids() {
    let mut heap = fixture::heap();
    // pprof has no field for it, so the shared fixture leaves it empty.
    heap.mappings[0].htlhash = "6B08E12EBAACBE995643C9CFBF4720BC".to_owned();
    let request = request(&[&heap]);
    let d = dictionary(&request);
    let app = &d.mapping_table[1];
    assert_eq!((app.memory_start, app.memory_limit, app.file_offset), (0x40_0000, 0x50_0000, 0));
    assert_eq!(text(d, app.filename_strindex), "/usr/bin/app");
    let build_ids: Vec<String> = app.attribute_indices.iter().map(|&i| attribute(d, i)).collect();
    assert_eq!(
        build_ids,
        [
            "process.executable.build_id.gnu=0123456789abcdef0123456789abcdef01234567",
            "process.executable.build_id.htlhash=6b08e12ebaacbe995643c9cfbf4720bc"
        ]
    );
    let libc = &d.mapping_table[2];
    assert_eq!(libc.file_offset, 0x2_8000);
    assert!(libc.attribute_indices.is_empty(), "no build id, no attribute");

    // Location 1: push inlined into load, inlined callee first.
    let inlined = &d.location_table[2];
    assert_eq!((inlined.address, inlined.mapping_index), (0x40_1000, 1));
    let lines: Vec<(&str, i64)> = inlined
        .lines
        .iter()
        .map(|n| (text(d, at(&d.function_table, n.function_index).name_strindex), n.line))
        .collect();
    assert_eq!(lines, [("alloc::vec::Vec<T>::push", 12), ("app::load", 25)]);
    assert!(d.location_table.iter().all(|l| l.attribute_indices.is_empty()), "no frame type");
    // Location 3 has no mapping.
    assert_eq!(d.location_table[4].mapping_index, 0);
    let push = &d.function_table[1];
    assert_eq!(
        text(d, push.system_name_strindex),
        "_ZN5alloc3vec12Vec$LT$T$GT$4push17h0123456789abcdefE"
    );
    assert_eq!((text(d, push.filename_strindex), push.start_line), ("vec.rs", 10));
    // Stacks are leaf first.
    let first = &profiles(&request)[0].samples[0];
    assert_eq!(at(&d.stack_table, first.stack_index).location_indices, [1, 2, 3]);
}

#[test]
fn comments_become_one_profile_attribute() {
    let mut heap = fixture::heap();
    heap.comments.push("second note".to_owned());
    let request = request(&[&heap]);
    let d = dictionary(&request);
    for profile in profiles(&request) {
        let attrs: Vec<String> =
            profile.attribute_indices.iter().map(|&i| attribute(d, i)).collect();
        assert_eq!(attrs, ["lowprof.comment=lowprof test fixture\nsecond note"]);
    }
    heap.comments.clear();
    let request = self::request(&[&heap]);
    assert!(profiles(&request).iter().all(|p| p.attribute_indices.is_empty()));
}

#[test]
fn resource_and_scope_use_plain_keys() {
    let request = request(&[&fixture::heap()]);
    assert_eq!(request.resource_profiles.len(), 1);
    let rp = &request.resource_profiles[0];
    assert_eq!(rp.scope_profiles.len(), 1);
    let scope = rp.scope_profiles[0].scope.as_ref().expect("scope");
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("lowprof", env!("CARGO_PKG_VERSION"))
    );
    let attrs = &rp.resource.as_ref().expect("resource").attributes;
    let plain: Vec<(&str, Option<&Value>)> = attrs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_ref().and_then(|v| v.value.as_ref())))
        .collect();
    assert_eq!(
        plain,
        [
            ("service.name", Some(&Value::StringValue("checkout".into()))),
            ("process.pid", Some(&Value::IntValue(4242))),
            ("host.name", Some(&Value::StringValue("build-host".into()))),
        ]
    );
    assert!(attrs.iter().all(|kv| kv.key_strindex == 0));

    // A service.name among the attributes does not override the field, and
    // a repeated key keeps its last value.
    let mut info = resource();
    info.attributes.push(("service.name".into(), "other".into()));
    info.attributes.push(("host.name".into(), "second".into()));
    let request = decode_request(&encode_request(&[], &info)).expect("decodes");
    let attrs = &request.resource_profiles[0].resource.as_ref().expect("resource").attributes;
    let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["service.name", "process.pid", "host.name"]);
    assert_eq!(
        attrs[0].value.as_ref().and_then(|v| v.value.clone()),
        Some(Value::StringValue("checkout".into()))
    );
    assert_eq!(
        attrs[2].value.as_ref().and_then(|v| v.value.clone()),
        Some(Value::StringValue("second".into()))
    );
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn exe_name() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    exe.file_name().expect("file name").to_string_lossy().into_owned()
}

#[test]
fn service_name_precedence() {
    let extra = pairs(&[("service.name", "from-env"), ("deployment.environment.name", "prod")]);
    assert_eq!(detect_resource(Some("explicit"), &extra).service_name, "explicit");
    assert_eq!(detect_resource(None, &extra).service_name, "from-env");
    assert_eq!(detect_resource(Some(""), &extra).service_name, "from-env", "empty is unset");
    let fallback = format!("unknown_service:{}", exe_name());
    assert_eq!(detect_resource(None, &[]).service_name, fallback);
    assert_eq!(detect_resource(None, &pairs(&[("service.name", "")])).service_name, fallback);
    // service.name never appears among the other attributes.
    let info = detect_resource(Some("explicit"), &extra);
    assert!(info.attributes.iter().all(|(k, _)| k != "service.name"));
}

#[test]
fn extra_attributes_override_detected_ones() {
    let extra =
        pairs(&[("host.name", "override"), ("k8s.pod.name", "pod-1"), ("k8s.pod.name", "pod-2")]);
    let info = detect_resource(Some("svc"), &extra);
    let keys: Vec<&str> = info.attributes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "process.pid",
            "process.executable.name",
            "process.executable.path",
            "host.name",
            "os.type",
            "telemetry.sdk.name",
            "telemetry.sdk.language",
            "telemetry.sdk.version",
            "k8s.pod.name",
        ]
    );
    let get = |key: &str| info.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("host.name"), Some("override"));
    assert_eq!(get("k8s.pod.name"), Some("pod-2"), "the last of a repeated key wins");
}

#[test]
fn resource_has_process_facts_but_no_command_line_or_environment() {
    let info = detect_resource(None, &[]);
    let exe = std::env::current_exe().expect("current_exe");
    let expected: Vec<(&str, String)> = vec![
        ("process.pid", std::process::id().to_string()),
        ("process.executable.name", exe_name()),
        ("process.executable.path", exe.to_string_lossy().into_owned()),
    ];
    for (key, value) in &expected {
        assert!(info.attributes.contains(&((*key).to_owned(), value.clone())), "{key}");
    }
    let get = |key: &str| info.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert!(get("host.name").is_some_and(|h| !h.is_empty()));
    if cfg!(target_os = "linux") {
        assert_eq!(get("os.type").as_deref(), Some("linux"));
    }
    assert_eq!(get("telemetry.sdk.name").as_deref(), Some("lowprof"));
    assert_eq!(get("telemetry.sdk.language").as_deref(), Some("rust"));
    assert_eq!(get("telemetry.sdk.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
    // Exactly these keys: nothing from the command line (process.command*,
    // process.args*) or the environment (process.environment_variable.*).
    assert_eq!(info.attributes.len(), 8, "{:?}", info.attributes);
    for (key, _) in &info.attributes {
        assert!(
            !key.contains("command") && !key.contains("args") && !key.contains("environ"),
            "{key}"
        );
    }
}

/// Every kind of invalid reference in one profile.
fn broken() -> Profile {
    let mut broken = fixture::heap();
    broken.samples.push(Sample { locations: vec![99], values: vec![1, 1, 1, 1], labels: vec![] });
    broken.samples.push(Sample { locations: vec![2], values: vec![1], labels: vec![] });
    broken.samples.push(Sample {
        locations: vec![2],
        values: vec![5, 50, 5, 50],
        labels: vec![
            Label { key: String::new(), value: LabelValue::Str("x".into()) },
            Label { key: "k".into(), value: LabelValue::Str("first".into()) },
            Label { key: "k".into(), value: LabelValue::Str("second".into()) },
        ],
    });
    broken.locations[2].mapping = Some(7);
    broken.locations.push(Location {
        address: 1,
        mapping: None,
        lines: vec![Line { function: 9, line: 1 }],
    });
    broken.default_sample_type = Some(17);
    broken
}

#[test]
fn invalid_input_is_left_out_and_noted_never_a_panic() {
    let broken = broken();
    let empty = Profile {
        sample_types: vec![],
        samples: vec![Sample { locations: vec![0], values: vec![], labels: vec![] }],
        ..fixture::heap()
    };
    let bare = Profile {
        samples: vec![],
        locations: vec![],
        functions: vec![],
        mappings: vec![],
        comments: vec![],
        ..fixture::heap()
    };
    let request = request(&[&broken, &empty, &bare]);
    assert_references_resolve(&request);
    let d = dictionary(&request);
    let out = profiles(&request);
    assert_eq!(out.len(), 8, "4 + none (no sample types) + 4");
    let alloc_space = &out[1];
    // The fixture's four samples plus the valid one (with its first "k").
    assert_eq!(alloc_space.samples.len(), 5);
    let last = alloc_space.samples.last().expect("sample");
    let attrs: Vec<String> = last.attribute_indices.iter().map(|&i| attribute(d, i)).collect();
    assert_eq!(attrs, ["k=first"]);
    let comment = attribute(d, alloc_space.attribute_indices[0]);
    assert!(
        comment.ends_with(
            "lowprof: the OTLP encoder dropped 2 invalid sample(s), 2 invalid reference(s) \
             and 2 label(s) with an empty or repeated key"
        ),
        "{comment}"
    );
    // An empty profile still says what, when and how long.
    for profile in &out[4..] {
        assert!(profile.samples.is_empty());
        assert!(profile.attribute_indices.is_empty());
        assert_eq!(profile.duration_nano, 10_000_000_000);
    }
    // Times before the epoch and absurd durations saturate.
    let odd = Profile {
        start: std::time::UNIX_EPOCH - Duration::from_secs(1),
        duration: Duration::MAX,
        ..fixture::heap()
    };
    let request = self::request(&[&odd]);
    assert_eq!(profiles(&request)[0].time_unix_nano, 0);
    assert_eq!(profiles(&request)[0].duration_nano, u64::MAX);
}

// ---------------------------------------------------------------- Python

fn receiver_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/receiver/otlp_receiver.py")
}

/// Whether `python3` with the official OTLP bindings is available.
fn python_bindings() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn python_decode(bytes: &[u8], gzip: bool) -> json::Json {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        file.write_all(&encoder.finish().expect("gzip")).expect("write");
    } else {
        file.write_all(bytes).expect("write");
    }
    file.flush().expect("flush");
    let output = Command::new("python3")
        .arg(receiver_script())
        .arg("--decode")
        .arg(file.path())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "otlp_receiver.py --decode failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    json::parse(&stdout)
}

#[test]
fn official_python_bindings_decode_our_requests() {
    if !python_bindings() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but python3 cannot import opentelemetry.proto: pip install 'opentelemetry-proto==1.45.*'"
        );
        eprintln!(
            "note: python3 with opentelemetry-proto not found; skipping the OTLP decode check"
        );
        return;
    }
    let (heap, cpu) = (fixture::heap(), cpu());
    let info =
        detect_resource(Some("lowprof-test"), &pairs(&[("deployment.environment.name", "ci")]));
    let bytes = encode_request(&[&heap, &cpu], &info);
    for gzip in [false, true] {
        let summary = python_decode(&bytes, gzip);
        assert_eq!(summary.get("gzip"), &json::Json::Bool(gzip));
        assert_eq!(summary.get("errors"), &json::Json::Arr(vec![]), "dictionary checks");
        let resource = summary.get("resource");
        assert_eq!(resource.get("service.name").str(), "lowprof-test");
        assert_eq!(resource.get("process.pid").int(), i64::from(std::process::id()));
        assert_eq!(resource.get("deployment.environment.name").str(), "ci");
        assert_eq!(resource.get("telemetry.sdk.name").str(), "lowprof");
        let scope = summary.get("scope");
        assert_eq!(scope.get("name").str(), "lowprof");
        assert_eq!(scope.get("version").str(), env!("CARGO_PKG_VERSION"));

        let out = summary.get("profiles").arr();
        assert_eq!(out.len(), 6, "4 heap + 2 CPU profiles");
        let expected = [(&heap, 0), (&heap, 1), (&heap, 2), (&heap, 3), (&cpu, 0), (&cpu, 1)];
        for (profile, (model, t)) in out.iter().zip(expected) {
            let sample_type = profile.get("sample_type");
            assert_eq!(sample_type.get("type").str(), model.sample_types[t].r#type);
            assert_eq!(sample_type.get("unit").str(), model.sample_types[t].unit);
            let period_type = profile.get("period_type");
            assert_eq!(period_type.get("type").str(), model.period_type.r#type);
            assert_eq!(period_type.get("unit").str(), model.period_type.unit);
            assert_eq!(profile.get("period").int(), model.period);
            assert_eq!(profile.get("total").int(), model.total(t), "{:?}", model.sample_types[t]);
            assert_eq!(profile.get("time_unix_nano").int(), 1_700_000_000_123_456_789);
            let functions: Vec<&str> =
                profile.get("functions").arr().iter().map(json::Json::str).collect();
            for f in ["alloc::vec::Vec<T>::push", "app::load", "main"] {
                assert!(functions.contains(&f), "{f} missing from {functions:?}");
            }
            assert!(
                profile.get("attributes").get("lowprof.comment").str().starts_with("lowprof test")
            );
        }
        let cpu_keys = out[5].get("sample_attribute_keys").arr();
        assert_eq!(
            cpu_keys,
            [json::Json::Str("thread_id".into()), json::Json::Str("thread_name".into())]
        );
    }
}

/// Just enough JSON to read the receiver's summaries (numbers kept as text,
/// so 64-bit integers stay exact).
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Json {
        Null,
        Bool(bool),
        Num(String),
        Str(String),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
    }

    impl Json {
        pub(super) fn get(&self, key: &str) -> &Json {
            match self {
                Json::Obj(entries) => entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| panic!("no key {key:?} in {self:?}")),
                _ => panic!("not an object: {self:?}"),
            }
        }

        pub(super) fn str(&self) -> &str {
            match self {
                Json::Str(s) => s,
                _ => panic!("not a string: {self:?}"),
            }
        }

        pub(super) fn int(&self) -> i64 {
            match self {
                Json::Num(n) => n.parse().unwrap_or_else(|_| panic!("not an integer: {n}")),
                _ => panic!("not a number: {self:?}"),
            }
        }

        pub(super) fn arr(&self) -> &[Json] {
            match self {
                Json::Arr(a) => a,
                _ => panic!("not an array: {self:?}"),
            }
        }
    }

    pub(super) fn parse(text: &str) -> Json {
        let mut p = Parser { b: text.as_bytes(), i: 0 };
        let value = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing input after JSON value");
        value
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while matches!(self.b.get(self.i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
                self.i += 1;
            }
        }

        fn peek(&mut self) -> u8 {
            self.ws();
            *self.b.get(self.i).expect("unexpected end of JSON")
        }

        fn expect(&mut self, c: u8) {
            assert_eq!(self.peek(), c, "at byte {}", self.i);
            self.i += 1;
        }

        fn literal(&mut self, word: &str, value: Json) -> Json {
            assert!(self.b[self.i..].starts_with(word.as_bytes()), "at byte {}", self.i);
            self.i += word.len();
            value
        }

        fn value(&mut self) -> Json {
            match self.peek() {
                b'{' => {
                    self.i += 1;
                    let mut entries = Vec::new();
                    if self.peek() == b'}' {
                        self.i += 1;
                        return Json::Obj(entries);
                    }
                    loop {
                        let key = self.string();
                        self.expect(b':');
                        entries.push((key, self.value()));
                        match self.peek() {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Json::Obj(entries);
                            }
                            c => panic!("unexpected {:?} at byte {}", c as char, self.i),
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.peek() == b']' {
                        self.i += 1;
                        return Json::Arr(items);
                    }
                    loop {
                        items.push(self.value());
                        match self.peek() {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Json::Arr(items);
                            }
                            c => panic!("unexpected {:?} at byte {}", c as char, self.i),
                        }
                    }
                }
                b'"' => Json::Str(self.string()),
                b't' => self.literal("true", Json::Bool(true)),
                b'f' => self.literal("false", Json::Bool(false)),
                b'n' => self.literal("null", Json::Null),
                _ => {
                    let start = self.i;
                    while matches!(
                        self.b.get(self.i),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        self.i += 1;
                    }
                    assert!(self.i > start, "unexpected byte at {start}");
                    Json::Num(String::from_utf8_lossy(&self.b[start..self.i]).into_owned())
                }
            }
        }

        fn hex4(&mut self) -> u32 {
            let digits = std::str::from_utf8(&self.b[self.i..self.i + 4]).expect("ascii");
            self.i += 4;
            u32::from_str_radix(digits, 16).expect("hex escape")
        }

        fn string(&mut self) -> String {
            self.expect(b'"');
            let mut out = Vec::new();
            loop {
                let c = self.b[self.i];
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).expect("utf-8"),
                    b'\\' => {
                        let e = self.b[self.i];
                        self.i += 1;
                        let ch = match e {
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => {
                                let mut code = self.hex4();
                                if (0xd800..0xdc00).contains(&code) {
                                    assert_eq!(&self.b[self.i..self.i + 2], b"\\u");
                                    self.i += 2;
                                    let low = self.hex4();
                                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                                }
                                char::from_u32(code).expect("valid code point")
                            }
                            other => other as char,
                        };
                        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => out.push(c),
                }
            }
        }
    }
}
