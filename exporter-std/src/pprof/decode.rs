//! `profile.proto` message → model: ids become 0-based indices (through a
//! map, since other producers need not number `1..=n`), string indices
//! become owned strings, and everything is checked as pprof's `CheckValid`
//! would.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{DecodeError, IdTable, proto};
use crate::profile::{self, LabelValue, Profile, ProfileKind};

/// Rebuilds the model from a decoded message.
pub(super) fn from_proto(message: proto::Profile) -> Result<Profile, DecodeError> {
    let strings = Strings::new(&message.string_table)?;
    let ids = Ids::new(&message)?;
    let sample_types =
        message.sample_type.iter().map(|t| strings.value_type(t)).collect::<Result<Vec<_>, _>>()?;
    let period_type = match &message.period_type {
        Some(t) => strings.value_type(t)?,
        None => profile::ValueType::new("", ""),
    };
    let kind = if period_type.r#type == "cpu" || sample_types.iter().any(|t| t.r#type == "cpu") {
        ProfileKind::Cpu
    } else {
        ProfileKind::Heap
    };
    Ok(Profile {
        kind,
        default_sample_type: message.sample_type.iter().position(|t| {
            t.r#type == message.default_sample_type && message.default_sample_type != 0
        }),
        period_type,
        period: message.period,
        start: from_unix_nanos(message.time_nanos)?,
        duration: Duration::from_nanos(u64::try_from(message.duration_nanos).unwrap_or(0)),
        samples: samples(&message, &strings, &ids)?,
        locations: locations(&message, &ids)?,
        functions: message
            .function
            .iter()
            .map(|f| strings.function(f))
            .collect::<Result<_, _>>()?,
        mappings: message.mapping.iter().map(|m| strings.mapping(m)).collect::<Result<_, _>>()?,
        comments: message.comment.iter().map(|&c| strings.get(c)).collect::<Result<_, _>>()?,
        sample_types,
    })
}

/// Resolves string-table indices.
struct Strings<'a>(&'a [String]);

impl<'a> Strings<'a> {
    fn new(table: &'a [String]) -> Result<Self, DecodeError> {
        match table.first() {
            Some(first) if first.is_empty() => Ok(Self(table)),
            _ => Err(DecodeError::FirstString),
        }
    }

    fn get(&self, index: i64) -> Result<String, DecodeError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .cloned()
            .ok_or(DecodeError::StringIndex(index))
    }

    fn value_type(&self, t: &proto::ValueType) -> Result<profile::ValueType, DecodeError> {
        Ok(profile::ValueType { r#type: self.get(t.r#type)?, unit: self.get(t.unit)? })
    }

    fn label(&self, label: &proto::Label) -> Result<profile::Label, DecodeError> {
        // As in google/pprof: a non-zero `str` makes a string label.
        let value = if label.str != 0 {
            LabelValue::Str(self.get(label.str)?)
        } else {
            LabelValue::Num { value: label.num, unit: self.get(label.num_unit)? }
        };
        Ok(profile::Label { key: self.get(label.key)?, value })
    }

    fn function(&self, f: &proto::Function) -> Result<profile::Function, DecodeError> {
        Ok(profile::Function {
            name: self.get(f.name)?,
            system_name: self.get(f.system_name)?,
            filename: self.get(f.filename)?,
            start_line: f.start_line,
        })
    }

    fn mapping(&self, m: &proto::Mapping) -> Result<profile::Mapping, DecodeError> {
        Ok(profile::Mapping {
            start: m.memory_start,
            limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.get(m.filename)?,
            build_id: self.get(m.build_id)?,
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            htlhash: String::new(),
        })
    }
}

/// For each id table, the 0-based index of every id.
struct Ids {
    mappings: HashMap<u64, u32>,
    locations: HashMap<u64, u32>,
    functions: HashMap<u64, u32>,
}

impl Ids {
    fn new(message: &proto::Profile) -> Result<Self, DecodeError> {
        Ok(Self {
            mappings: index(IdTable::Mapping, message.mapping.iter().map(|m| m.id))?,
            locations: index(IdTable::Location, message.location.iter().map(|l| l.id))?,
            functions: index(IdTable::Function, message.function.iter().map(|f| f.id))?,
        })
    }

    fn resolve(&self, table: IdTable, id: u64) -> Result<u32, DecodeError> {
        let map = match table {
            IdTable::Mapping => &self.mappings,
            IdTable::Location => &self.locations,
            IdTable::Function => &self.functions,
        };
        map.get(&id).copied().ok_or(DecodeError::UnknownId { table, id })
    }
}

/// Maps each id to its position, rejecting 0, duplicates and overflow.
fn index(table: IdTable, ids: impl Iterator<Item = u64>) -> Result<HashMap<u64, u32>, DecodeError> {
    let mut map = HashMap::new();
    for (position, id) in ids.enumerate() {
        let position = u32::try_from(position).map_err(|_| DecodeError::TooLarge(table))?;
        if id == 0 || map.insert(id, position).is_some() {
            return Err(DecodeError::BadId { table, id });
        }
    }
    Ok(map)
}

fn samples(
    message: &proto::Profile,
    strings: &Strings<'_>,
    ids: &Ids,
) -> Result<Vec<profile::Sample>, DecodeError> {
    let types = message.sample_type.len();
    let mut samples = Vec::with_capacity(message.sample.len());
    for (position, sample) in message.sample.iter().enumerate() {
        if sample.value.len() != types {
            return Err(DecodeError::ValueCount {
                sample: position,
                values: sample.value.len(),
                types,
            });
        }
        samples.push(profile::Sample {
            locations: sample
                .location_id
                .iter()
                .map(|&id| ids.resolve(IdTable::Location, id))
                .collect::<Result<_, _>>()?,
            values: sample.value.clone(),
            labels: sample.label.iter().map(|l| strings.label(l)).collect::<Result<_, _>>()?,
        });
    }
    Ok(samples)
}

fn locations(message: &proto::Profile, ids: &Ids) -> Result<Vec<profile::Location>, DecodeError> {
    message
        .location
        .iter()
        .map(|l| {
            let mapping = match l.mapping_id {
                0 => None,
                id => Some(ids.resolve(IdTable::Mapping, id)?),
            };
            let lines = l
                .line
                .iter()
                .map(|n| {
                    Ok(profile::Line {
                        function: ids.resolve(IdTable::Function, n.function_id)?,
                        line: n.line,
                    })
                })
                .collect::<Result<_, DecodeError>>()?;
            Ok(profile::Location { address: l.address, mapping, lines })
        })
        .collect()
}

/// The inverse of the encoder's `unix_nanos`.
fn from_unix_nanos(nanos: i64) -> Result<SystemTime, DecodeError> {
    let offset = Duration::from_nanos(nanos.unsigned_abs());
    let time =
        if nanos >= 0 { UNIX_EPOCH.checked_add(offset) } else { UNIX_EPOCH.checked_sub(offset) };
    time.ok_or(DecodeError::Time(nanos))
}
