//! The pprof encoder: [`Profile`] to google/pprof's `profile.proto`, the format
//! `go tool pprof`, Pyroscope, Parca and most profiling back ends read.
//!
//! The model keeps 0-based indices and owned strings; `profile.proto` keeps
//! 1-based ids and indices into one string table. The mapping is direct:
//!
//! ```text
//!  model (crate::profile)                    profile.proto (self::proto)
//!  ────────────────────────────────────      ─────────────────────────────────────────────
//!  sample_types[t]                       →   sample_type[t] = {type: s#, unit: s#}
//!  samples[i].locations[k] = j           →   sample[i].location_id[k] = j + 1 (leaf first)
//!  samples[i].labels: Str | Num          →   label = {key: s#, str: s#} | {key, num, num_unit}
//!  locations[j].mapping = Some(m) | None →   location[j] = {id: j + 1, mapping_id: m + 1 | 0}
//!  locations[j].lines[n].function = f    →   location[j].line[n].function_id = f + 1
//!  functions[f]                          →   function[f] = {id: f + 1, name: s#, system_name: s#, …}
//!  mappings[m]                           →   mapping[m]  = {id: m + 1, filename: s#, build_id: s#, …}
//!  every string                          →   string_table[s#], interned once; string_table[0] = ""
//! ```
//!
//! A location's lines keep the model's order, which is also pprof's: inlined
//! callees first, the function the address belongs to last.
//!
//! Before encoding, the model is checked the way pprof's `CheckValid` checks a
//! profile (every sample has one value per sample type; every referenced
//! location, mapping and function exists). Instead of failing, the encoder
//! leaves out what is invalid — whole samples, or single mapping and function
//! references — and says how much in a trailing `comment`, so a bug elsewhere
//! costs some data, never the whole profile.
//!
//! Files on disk are gzip-compressed, as `profile.proto` requires, and written
//! atomically (see [`write_file`]).

mod atomic;
mod decode;
mod encode;
#[cfg(test)]
pub(crate) mod fixture;
pub mod proto;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

pub(crate) use atomic::write_atomically;

use crate::profile::Profile;

/// The two magic bytes that open a gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Encodes `profile` as uncompressed `profile.proto` bytes.
///
/// Never fails: invalid samples and references are left out and counted in a
/// `comment` (see the module docs).
pub fn encode(profile: &Profile) -> Vec<u8> {
    encode::to_proto(profile).encode_to_vec()
}

/// Encodes `profile` and gzip-compresses it: the bytes of a `.pb.gz` file.
pub fn encode_gzip(profile: &Profile) -> io::Result<Vec<u8>> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&encode(profile))?;
    gzip.finish()
}

/// Writes `profile` gzip-compressed to `path`, atomically: readers see the
/// old file or the complete new one, and no partial or temporary file is left
/// behind on error.
pub fn write_file(profile: &Profile, path: &Path) -> io::Result<()> {
    write_atomically(path, &encode_gzip(profile)?)
}

/// Decodes a pprof profile, gzip-compressed or raw, back into the model.
///
/// pprof does not record a [`ProfileKind`](crate::profile::ProfileKind); it is
/// inferred: CPU if the period type or a sample type is `cpu`, else heap.
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    let message = if bytes.starts_with(&GZIP_MAGIC) {
        let mut raw = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut raw).map_err(DecodeError::Gzip)?;
        proto::Profile::decode(raw.as_slice())
    } else {
        proto::Profile::decode(bytes)
    };
    decode::from_proto(message.map_err(DecodeError::Protobuf)?)
}

/// Which id table a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTable {
    /// `Profile.mapping`.
    Mapping,
    /// `Profile.location`.
    Location,
    /// `Profile.function`.
    Function,
}

impl fmt::Display for IdTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mapping => "mapping",
            Self::Location => "location",
            Self::Function => "function",
        })
    }
}

/// Why [`decode()`] rejected its input.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input starts like gzip but does not decompress.
    Gzip(io::Error),
    /// The (decompressed) bytes are not a `profile.proto` message.
    Protobuf(prost::DecodeError),
    /// `string_table` is empty or its entry 0 is not `""`.
    FirstString,
    /// A string index is negative or past the end of `string_table`.
    StringIndex(i64),
    /// An id is 0 or appears twice in its table.
    BadId {
        /// The table.
        table: IdTable,
        /// The offending id.
        id: u64,
    },
    /// A reference names an id its table does not hold.
    UnknownId {
        /// The table referred to.
        table: IdTable,
        /// The missing id.
        id: u64,
    },
    /// A table has more entries than the model's `u32` indices can address.
    TooLarge(IdTable),
    /// A sample's number of values differs from the number of sample types.
    ValueCount {
        /// Position of the sample in `Profile.sample`.
        sample: usize,
        /// Its number of values.
        values: usize,
        /// The number of sample types.
        types: usize,
    },
    /// `time_nanos` is outside what [`std::time::SystemTime`] represents.
    Time(i64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gzip(e) => write!(f, "corrupt gzip stream: {e}"),
            Self::Protobuf(e) => write!(f, "not a pprof profile.proto message: {e}"),
            Self::FirstString => f.write_str("string_table[0] must exist and be \"\""),
            Self::StringIndex(i) => write!(f, "string index {i} is outside string_table"),
            Self::BadId { table, id } => write!(f, "{table} id {id} is 0 or duplicated"),
            Self::UnknownId { table, id } => write!(f, "no {table} has id {id}"),
            Self::TooLarge(table) => write!(f, "too many {table}s for u32 indices"),
            Self::ValueCount { sample, values, types } => {
                write!(f, "sample {sample} has {values} values for {types} sample types")
            }
            Self::Time(nanos) => write!(f, "time_nanos {nanos} is out of range"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Gzip(e) => Some(e),
            Self::Protobuf(e) => Some(e),
            _ => None,
        }
    }
}
