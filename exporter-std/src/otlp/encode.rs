//! Model → `ExportProfilesServiceRequest`: one shared dictionary, one OTLP
//! `Profile` per sample type of each model profile.
//!
//! Every table is a [`Table`]: entry 0 is the zero value, and a row equal to
//! an earlier one gets that row's index, so strings, mappings, functions,
//! locations, stacks and attributes are stored once per request however many
//! profiles use them. Rows are added in the order the encoder meets them, so
//! the same input always yields the same dictionary.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ResourceInfo;
use super::proto::{self, any_value::Value};
use super::resource::{INT_KEYS, SERVICE_NAME};
use crate::profile::{self, LabelValue, Profile};
use crate::trace::{SPAN_ID_LABEL, TRACE_ID_LABEL};

/// `InstrumentationScope.name`.
pub(super) const SCOPE_NAME: &str = "lowprof";
/// The mapping attribute carrying the GNU build id, lower-case hex.
pub(super) const BUILD_ID_GNU: &str = "process.executable.build_id.gnu";
/// The mapping attribute carrying the htlhash build id, lower-case hex.
pub(super) const BUILD_ID_HTLHASH: &str = "process.executable.build_id.htlhash";
/// The profile attribute carrying the model's comments, one per line.
pub(super) const COMMENT: &str = "lowprof.comment";

/// Builds the request for `profiles`.
pub(super) fn request(
    profiles: &[&Profile],
    resource: &ResourceInfo,
) -> proto::ExportProfilesServiceRequest {
    let mut dictionary = Dictionary::new();
    let mut out = Vec::new();
    for profile in profiles {
        out.extend(dictionary.profiles(profile));
    }
    proto::ExportProfilesServiceRequest {
        resource_profiles: vec![proto::ResourceProfiles {
            resource: Some(resource_message(resource)),
            scope_profiles: vec![proto::ScopeProfiles {
                scope: Some(proto::InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                profiles: out,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dictionary.into_message()),
    }
}

/// `service.name` first, then the other attributes with plain string keys;
/// a key given twice keeps its last value.
fn resource_message(info: &ResourceInfo) -> proto::Resource {
    let mut pairs: Vec<(&str, &str)> = vec![(SERVICE_NAME, info.service_name.as_str())];
    for (key, value) in &info.attributes {
        if key.is_empty() || key == SERVICE_NAME {
            continue;
        }
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => pairs.push((key, value)),
        }
    }
    let attributes = pairs.into_iter().map(|(k, v)| key_value(k, v)).collect();
    proto::Resource { attributes, dropped_attributes_count: 0 }
}

fn key_value(key: &str, value: &str) -> proto::KeyValue {
    let value = match value.parse::<i64>() {
        Ok(n) if INT_KEYS.contains(&key) => Value::IntValue(n),
        _ => Value::StringValue(value.to_owned()),
    };
    proto::KeyValue {
        key: key.to_owned(),
        value: Some(proto::AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

/// A dictionary table: entry 0 is `T::default()`, equal rows share an index.
struct Table<T> {
    rows: Vec<T>,
    index: HashMap<T, i32>,
}

impl<T: Clone + Eq + Hash + Default> Table<T> {
    fn new() -> Self {
        Self { rows: vec![T::default()], index: HashMap::from([(T::default(), 0)]) }
    }

    /// The index of `row`, adding it if new.
    fn insert(&mut self, row: T) -> i32 {
        if let Some(&i) = self.index.get(&row) {
            return i;
        }
        let i = table_index(self.rows.len());
        self.rows.push(row.clone());
        self.index.insert(row, i);
        i
    }
}

/// The string table: entry 0 is `""`, each distinct string appears once.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i32>,
}

impl Strings {
    fn new() -> Self {
        Self { table: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }

    /// The index of `s`, adding it if new.
    fn intern(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = table_index(self.table.len());
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// `len` as an `i32` table index. Tables never come near 2³¹ entries (the
/// request would be tens of GiB); saturating keeps this panic-free anyway.
fn table_index(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// An attribute-table row in hashable form (the message holds an `f64`
/// variant, so it is not `Hash`).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
struct Attribute {
    key: i32,
    value: Option<AttributeValue>,
    unit: i32,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum AttributeValue {
    Str(String),
    Int(i64),
}

impl Attribute {
    fn into_message(self) -> proto::KeyValueAndUnit {
        let value = self.value.map(|v| proto::AnyValue {
            value: Some(match v {
                AttributeValue::Str(s) => Value::StringValue(s),
                AttributeValue::Int(n) => Value::IntValue(n),
            }),
        });
        proto::KeyValueAndUnit { key_strindex: self.key, value, unit_strindex: self.unit }
    }
}

/// What the encoder leaves out of one model profile, reported in its
/// `lowprof.comment` attribute.
#[derive(Debug, Default, PartialEq, Eq)]
struct Dropped {
    /// Samples with the wrong number of values or an unknown location.
    samples: usize,
    /// Unknown mapping or function references.
    references: usize,
    /// Labels with an empty key or a key already used by the same sample
    /// (OTLP requires unique keys per sample).
    labels: usize,
}

impl Dropped {
    fn note(&self) -> Option<String> {
        (*self != Self::default()).then(|| {
            format!(
                "lowprof: the OTLP encoder dropped {} invalid sample(s), {} invalid reference(s) \
                 and {} label(s) with an empty or repeated key",
                self.samples, self.references, self.labels
            )
        })
    }
}

/// The samples of one OTLP profile, merged by identity.
#[derive(Default)]
struct Samples {
    rows: Vec<proto::Sample>,
    /// `(stack_index, sorted attribute_indices, link_index)` → position in
    /// `rows`.
    index: HashMap<(i32, Vec<i32>, i32), usize>,
}

impl Samples {
    fn add(&mut self, stack_index: i32, attribute_indices: &[i32], link_index: i32, value: i64) {
        let key = (stack_index, attribute_indices.to_vec(), link_index);
        if let Some(&i) = self.index.get(&key) {
            if let Some(v) = self.rows.get_mut(i).and_then(|row| row.values.first_mut()) {
                *v = v.saturating_add(value);
            }
            return;
        }
        self.index.insert(key, self.rows.len());
        self.rows.push(proto::Sample {
            stack_index,
            attribute_indices: attribute_indices.to_vec(),
            link_index,
            values: vec![value],
            timestamps_unix_nano: Vec::new(),
        });
    }
}

/// The request's `ProfilesDictionary` under construction.
struct Dictionary {
    strings: Strings,
    mappings: Table<proto::Mapping>,
    locations: Table<proto::Location>,
    functions: Table<proto::Function>,
    stacks: Table<proto::Stack>,
    attributes: Table<Attribute>,
    /// `(trace_id, span_id)`; entry 0 is all zeros: no link.
    links: Table<([u8; 16], [u8; 8])>,
}

impl Dictionary {
    fn new() -> Self {
        Self {
            strings: Strings::new(),
            mappings: Table::new(),
            locations: Table::new(),
            functions: Table::new(),
            stacks: Table::new(),
            attributes: Table::new(),
            links: Table::new(),
        }
    }

    fn into_message(self) -> proto::ProfilesDictionary {
        proto::ProfilesDictionary {
            mapping_table: self.mappings.rows,
            location_table: self.locations.rows,
            function_table: self.functions.rows,
            // Entry 0, all zeros with the ids' proper lengths, is "no link".
            link_table: self
                .links
                .rows
                .into_iter()
                .map(|(trace, span)| proto::Link {
                    trace_id: trace.to_vec(),
                    span_id: span.to_vec(),
                })
                .collect(),
            string_table: self.strings.table,
            attribute_table: self
                .attributes
                .rows
                .into_iter()
                .map(Attribute::into_message)
                .collect(),
            stack_table: self.stacks.rows,
        }
    }

    /// The OTLP profiles of `profile`, one per sample type, adding what they
    /// refer to to the dictionary.
    fn profiles(&mut self, profile: &Profile) -> Vec<proto::Profile> {
        let mut dropped = Dropped::default();
        let mappings: Vec<i32> = profile.mappings.iter().map(|m| self.mapping(m)).collect();
        let functions: Vec<i32> = profile.functions.iter().map(|f| self.function(f)).collect();
        let locations: Vec<i32> = profile
            .locations
            .iter()
            .map(|l| self.location(l, &mappings, &functions, &mut dropped))
            .collect();

        let mut per_type: Vec<Samples> =
            profile.sample_types.iter().map(|_| Samples::default()).collect();
        for sample in &profile.samples {
            let stack: Option<Vec<i32>> =
                sample.locations.iter().map(|&j| locations.get(j as usize).copied()).collect();
            let stack = match stack {
                Some(stack) if sample.values.len() == profile.sample_types.len() => stack,
                _ => {
                    dropped.samples += 1;
                    continue;
                }
            };
            let stack_index = self.stacks.insert(proto::Stack { location_indices: stack });
            // The trace_id and span_id labels become the sample's Link; the
            // other labels its attributes.
            let (link, labels) = match sample_link(&sample.labels) {
                Some(ids) => (self.links.insert(ids), without_link_labels(&sample.labels)),
                None => (0, sample.labels.clone()),
            };
            let attribute_indices = self.labels(&labels, &mut dropped);
            for (samples, &value) in per_type.iter_mut().zip(&sample.values) {
                if value != 0 {
                    samples.add(stack_index, &attribute_indices, link, value);
                }
            }
        }

        let attribute_indices: Vec<i32> = self.comment(profile, &dropped).into_iter().collect();
        let period_type = Some(self.value_type(&profile.period_type));
        let time_unix_nano = unix_nanos(profile.start);
        let duration_nano = nanos(profile.duration);
        profile
            .sample_types
            .iter()
            .zip(per_type)
            .map(|(sample_type, samples)| proto::Profile {
                sample_type: Some(self.value_type(sample_type)),
                samples: samples.rows,
                time_unix_nano,
                duration_nano,
                period_type: period_type.clone(),
                period: profile.period,
                profile_id: profile_id().to_vec(),
                dropped_attributes_count: 0,
                original_payload_format: String::new(),
                original_payload: Vec::new(),
                attribute_indices: attribute_indices.clone(),
            })
            .collect()
    }

    fn value_type(&mut self, t: &profile::ValueType) -> proto::ValueType {
        proto::ValueType {
            type_strindex: self.strings.intern(&t.r#type),
            unit_strindex: self.strings.intern(&t.unit),
        }
    }

    fn string_attribute(&mut self, key: &str, value: String) -> i32 {
        let key = self.strings.intern(key);
        self.attributes.insert(Attribute { key, value: Some(AttributeValue::Str(value)), unit: 0 })
    }

    fn mapping(&mut self, mapping: &profile::Mapping) -> i32 {
        let mut attribute_indices = Vec::new();
        if !mapping.build_id.is_empty() {
            attribute_indices
                .push(self.string_attribute(BUILD_ID_GNU, mapping.build_id.to_ascii_lowercase()));
        }
        if !mapping.htlhash.is_empty() {
            attribute_indices.push(
                self.string_attribute(BUILD_ID_HTLHASH, mapping.htlhash.to_ascii_lowercase()),
            );
        }
        let filename_strindex = self.strings.intern(&mapping.filename);
        self.mappings.insert(proto::Mapping {
            memory_start: mapping.start,
            memory_limit: mapping.limit,
            file_offset: mapping.file_offset,
            filename_strindex,
            attribute_indices,
        })
    }

    fn function(&mut self, function: &profile::Function) -> i32 {
        let row = proto::Function {
            name_strindex: self.strings.intern(&function.name),
            system_name_strindex: self.strings.intern(&function.system_name),
            filename_strindex: self.strings.intern(&function.filename),
            start_line: function.start_line,
        };
        self.functions.insert(row)
    }

    /// The location with its mapping and lines translated; unknown mapping
    /// and function references are left out and counted.
    fn location(
        &mut self,
        location: &profile::Location,
        mappings: &[i32],
        functions: &[i32],
        dropped: &mut Dropped,
    ) -> i32 {
        let mapping_index = match location.mapping {
            None => 0,
            Some(m) => mappings.get(m as usize).copied().unwrap_or_else(|| {
                dropped.references += 1;
                0
            }),
        };
        let mut lines = Vec::with_capacity(location.lines.len());
        for line in &location.lines {
            match functions.get(line.function as usize) {
                Some(&function_index) => {
                    lines.push(proto::Line { function_index, line: line.line, column: 0 })
                }
                None => dropped.references += 1,
            }
        }
        self.locations.insert(proto::Location {
            mapping_index,
            address: location.address,
            lines,
            attribute_indices: Vec::new(),
        })
    }

    /// The attribute indices of a sample's labels, sorted (the identity of a
    /// sample holds the *set* of its attributes). Keys must be unique within
    /// a sample: a repeated key keeps its first value.
    fn labels(&mut self, labels: &[profile::Label], dropped: &mut Dropped) -> Vec<i32> {
        let mut keys: Vec<&str> = Vec::with_capacity(labels.len());
        let mut out = Vec::with_capacity(labels.len());
        for label in labels {
            if label.key.is_empty() || keys.contains(&label.key.as_str()) {
                dropped.labels += 1;
                continue;
            }
            keys.push(&label.key);
            let key = self.strings.intern(&label.key);
            let (value, unit) = match &label.value {
                LabelValue::Str(s) => (AttributeValue::Str(s.clone()), 0),
                LabelValue::Num { value, unit } => {
                    (AttributeValue::Int(*value), self.strings.intern(unit))
                }
            };
            out.push(self.attributes.insert(Attribute { key, value: Some(value), unit }));
        }
        out.sort_unstable();
        out
    }

    /// The `lowprof.comment` attribute: the model's comments and the
    /// encoder's own note, one per line. `None` if there is nothing to say.
    fn comment(&mut self, profile: &Profile, dropped: &Dropped) -> Option<i32> {
        let note = dropped.note();
        let lines: Vec<&str> =
            profile.comments.iter().map(String::as_str).chain(note.as_deref()).collect();
        (!lines.is_empty()).then(|| self.string_attribute(COMMENT, lines.join("\n")))
    }
}

/// The `(trace_id, span_id)` of a sample's `trace_id` and `span_id` labels
/// (lower- or upper-case hex, as lowprof writes them), if both are there,
/// valid and not all zero.
fn sample_link(labels: &[profile::Label]) -> Option<([u8; 16], [u8; 8])> {
    let text = |key: &str| {
        labels.iter().find(|l| l.key == key).and_then(|l| match &l.value {
            LabelValue::Str(s) => Some(s.as_str()),
            LabelValue::Num { .. } => None,
        })
    };
    let trace: [u8; 16] = parse_hex(text(TRACE_ID_LABEL)?)?;
    let span: [u8; 8] = parse_hex(text(SPAN_ID_LABEL)?)?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
}

fn without_link_labels(labels: &[profile::Label]) -> Vec<profile::Label> {
    labels.iter().filter(|l| l.key != TRACE_ID_LABEL && l.key != SPAN_ID_LABEL).cloned().collect()
}

/// Exactly `2 * N` hex digits as bytes.
fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// 16 bytes that are unique with overwhelming probability and never all
/// zero: std's randomly keyed SipHash over the time, the pid and a counter.
fn profile_id() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let pid = std::process::id();
    let mut id = [0u8; 16];
    for (half, chunk) in id.chunks_exact_mut(8).enumerate() {
        // Each `RandomState::new()` has fresh keys (random per thread, then
        // incremented per call).
        let hash = RandomState::new().hash_one((now, pid, count, half));
        chunk.copy_from_slice(&hash.to_le_bytes());
    }
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// `t` in nanoseconds since the UNIX epoch; 0 before it, saturating.
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, nanos)
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
