//! Model → `profile.proto` message, after a `CheckValid`-style pass that
//! leaves out what pprof would reject.
//!
//! Strings are interned in the order the encoder first meets them, so the
//! same model always yields the same bytes (the golden test relies on it).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::proto;
use crate::profile::{self, LabelValue, Profile};

/// Builds the `profile.proto` message for `profile`.
pub(super) fn to_proto(profile: &Profile) -> proto::Profile {
    let note = Dropped::count(profile).comment();
    let mut strings = Strings::new();
    let sample_type = profile.sample_types.iter().map(|t| strings.value_type(t)).collect();
    let default_sample_type = profile
        .default_sample_type
        .and_then(|i| profile.sample_types.get(i))
        .map_or(0, |t| strings.intern(&t.r#type));
    let sample = profile
        .samples
        .iter()
        .filter(|s| sample_is_valid(profile, s))
        .map(|s| sample(&mut strings, s))
        .collect();
    let mapping = mappings(profile, &mut strings);
    let location =
        profile.locations.iter().enumerate().map(|(j, l)| location(profile, j, l)).collect();
    let function =
        profile.functions.iter().enumerate().map(|(f, x)| function(&mut strings, f, x)).collect();
    let period_type = Some(strings.value_type(&profile.period_type));
    let comment = profile
        .comments
        .iter()
        .map(String::as_str)
        .chain(note.as_deref())
        .map(|c| strings.intern(c))
        .collect();
    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table: strings.into_table(),
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: unix_nanos(profile.start),
        duration_nanos: nanos(profile.duration),
        period_type,
        period: profile.period,
        comment,
        default_sample_type,
    }
}

/// The string table under construction: entry 0 is `""`, each distinct
/// string appears once.
struct Strings<'a> {
    table: Vec<&'a str>,
    index: HashMap<&'a str, i64>,
}

impl<'a> Strings<'a> {
    fn new() -> Self {
        Self { table: vec![""], index: HashMap::from([("", 0)]) }
    }

    /// The index of `s`, adding it if new.
    fn intern(&mut self, s: &'a str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = i64::try_from(self.table.len()).unwrap_or(i64::MAX);
        self.table.push(s);
        self.index.insert(s, i);
        i
    }

    fn value_type(&mut self, t: &'a profile::ValueType) -> proto::ValueType {
        proto::ValueType { r#type: self.intern(&t.r#type), unit: self.intern(&t.unit) }
    }

    fn into_table(self) -> Vec<String> {
        self.table.into_iter().map(str::to_owned).collect()
    }
}

/// The 1-based id of the entry at 0-based `index`.
fn id(index: usize) -> u64 {
    u64::try_from(index).map_or(u64::MAX, |i| i.saturating_add(1))
}

/// What the encoder leaves out, reported in a `comment`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Dropped {
    /// Samples with the wrong number of values or an unknown location.
    samples: usize,
    /// Unknown mapping or function references, and an out-of-range
    /// default sample type.
    references: usize,
}

impl Dropped {
    fn count(profile: &Profile) -> Self {
        let samples = profile.samples.iter().filter(|s| !sample_is_valid(profile, s)).count();
        let bad_mappings = profile
            .locations
            .iter()
            .filter(|l| l.mapping.is_some() && valid_mapping(profile, l).is_none())
            .count();
        let bad_lines = profile
            .locations
            .iter()
            .flat_map(|l| &l.lines)
            .filter(|n| !line_is_valid(profile, n))
            .count();
        let bad_default =
            profile.default_sample_type.is_some_and(|i| i >= profile.sample_types.len());
        Self { samples, references: bad_mappings + bad_lines + usize::from(bad_default) }
    }

    /// The note to append to the profile's comments, if anything was dropped.
    fn comment(&self) -> Option<String> {
        (*self != Self::default()).then(|| {
            format!(
                "lowprof: the pprof encoder dropped {} invalid sample(s) and {} invalid reference(s)",
                self.samples, self.references
            )
        })
    }
}

/// `CheckValid`: one value per sample type (and at least one type), and
/// every location exists.
fn sample_is_valid(profile: &Profile, sample: &profile::Sample) -> bool {
    !profile.sample_types.is_empty()
        && sample.values.len() == profile.sample_types.len()
        && sample.locations.iter().all(|&j| (j as usize) < profile.locations.len())
}

/// The location's mapping, if it has one that exists.
fn valid_mapping(profile: &Profile, location: &profile::Location) -> Option<usize> {
    location.mapping.map(|m| m as usize).filter(|&m| m < profile.mappings.len())
}

fn line_is_valid(profile: &Profile, line: &profile::Line) -> bool {
    (line.function as usize) < profile.functions.len()
}

fn sample<'a>(strings: &mut Strings<'a>, sample: &'a profile::Sample) -> proto::Sample {
    proto::Sample {
        location_id: sample.locations.iter().map(|&j| id(j as usize)).collect(),
        value: sample.values.clone(),
        label: sample.labels.iter().map(|l| label(strings, l)).collect(),
    }
}

fn label<'a>(strings: &mut Strings<'a>, label: &'a profile::Label) -> proto::Label {
    let key = strings.intern(&label.key);
    match &label.value {
        LabelValue::Str(s) => proto::Label { key, str: strings.intern(s), num: 0, num_unit: 0 },
        LabelValue::Num { value, unit } => {
            proto::Label { key, str: 0, num: *value, num_unit: strings.intern(unit) }
        }
    }
}

fn mappings<'a>(profile: &'a Profile, strings: &mut Strings<'a>) -> Vec<proto::Mapping> {
    let mut inlines = vec![false; profile.mappings.len()];
    for location in &profile.locations {
        let lines = location.lines.iter().filter(|n| line_is_valid(profile, n)).count();
        if let Some(flag) = valid_mapping(profile, location).and_then(|m| inlines.get_mut(m)) {
            *flag |= lines > 1;
        }
    }
    profile
        .mappings
        .iter()
        .zip(inlines)
        .enumerate()
        .map(|(m, (mapping, has_inline_frames))| proto::Mapping {
            id: id(m),
            memory_start: mapping.start,
            memory_limit: mapping.limit,
            file_offset: mapping.file_offset,
            filename: strings.intern(&mapping.filename),
            build_id: strings.intern(&mapping.build_id),
            has_functions: mapping.has_functions,
            has_filenames: mapping.has_filenames,
            has_line_numbers: mapping.has_line_numbers,
            has_inline_frames,
        })
        .collect()
}

fn location(profile: &Profile, index: usize, location: &profile::Location) -> proto::Location {
    proto::Location {
        id: id(index),
        mapping_id: valid_mapping(profile, location).map_or(0, id),
        address: location.address,
        line: location
            .lines
            .iter()
            .filter(|n| line_is_valid(profile, n))
            .map(|n| proto::Line { function_id: id(n.function as usize), line: n.line })
            .collect(),
        is_folded: false,
    }
}

fn function<'a>(
    strings: &mut Strings<'a>,
    index: usize,
    function: &'a profile::Function,
) -> proto::Function {
    proto::Function {
        id: id(index),
        name: strings.intern(&function.name),
        system_name: strings.intern(&function.system_name),
        filename: strings.intern(&function.filename),
        start_line: function.start_line,
    }
}

/// `t` as signed nanoseconds since the UNIX epoch, saturating.
fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => nanos(after),
        Err(before) => nanos(before.duration()).saturating_neg(),
    }
}

/// `d` in nanoseconds, saturating at `i64::MAX` (292 years).
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
