//! The OTLP profiles messages, written by hand as prost structs with the field
//! numbers of opentelemetry-proto **v1.10.0** (v1.11.0 is identical on the
//! wire; v1.9.0 and earlier number `Sample` and `Profile` differently):
//!
//! - `opentelemetry/proto/collector/profiles/v1development/profiles_service.proto`
//!   (package `opentelemetry.proto.collector.profiles.v1development`):
//!   [`ExportProfilesServiceRequest`], [`ExportProfilesServiceResponse`],
//!   [`ExportProfilesPartialSuccess`];
//! - `opentelemetry/proto/profiles/v1development/profiles.proto`
//!   (package `opentelemetry.proto.profiles.v1development`): the dictionary
//!   and the profile messages;
//! - `opentelemetry/proto/common/v1/common.proto` and
//!   `opentelemetry/proto/resource/v1/resource.proto`: [`AnyValue`],
//!   [`KeyValue`], [`InstrumentationScope`], [`Resource`].
//!
//! Only `Resource.entity_refs` (which lowprof neither writes nor reads) is
//! left out; prost skips unknown fields when decoding, so messages carrying
//! it still parse.
//!
//! Every `*_strindex` is an index into [`ProfilesDictionary::string_table`]
//! and every `*_index` / `*_indices` an index into the dictionary table its
//! name says. Entry 0 of every table is that table's zero value, so an index
//! of 0 means "none".

/// The body of `POST /v1development/profiles`
/// (`collector.profiles.v1development.ExportProfilesServiceRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesServiceRequest {
    /// The profiles, grouped by the resource that produced them.
    #[prost(message, repeated, tag = "1")]
    pub resource_profiles: Vec<ResourceProfiles>,
    /// The tables every profile in this request refers to.
    #[prost(message, optional, tag = "2")]
    pub dictionary: Option<ProfilesDictionary>,
}

/// The body of a successful reply
/// (`collector.profiles.v1development.ExportProfilesServiceResponse`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesServiceResponse {
    /// Set when the server accepted only part of the request. Must not be
    /// retried.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportProfilesPartialSuccess>,
}

/// What a server rejected (`ExportProfilesPartialSuccess`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesPartialSuccess {
    /// How many profiles were rejected.
    #[prost(int64, tag = "1")]
    pub rejected_profiles: i64,
    /// Why, for humans.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// The tables shared by every profile of a request
/// (`profiles.v1development.ProfilesDictionary`). Entry 0 of each table
/// must be present and the zero value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfilesDictionary {
    /// Loaded objects, referenced by [`Location::mapping_index`].
    #[prost(message, repeated, tag = "1")]
    pub mapping_table: Vec<Mapping>,
    /// Code addresses, referenced by [`Stack::location_indices`].
    #[prost(message, repeated, tag = "2")]
    pub location_table: Vec<Location>,
    /// Functions, referenced by [`Line::function_index`].
    #[prost(message, repeated, tag = "3")]
    pub function_table: Vec<Function>,
    /// Trace links, referenced by [`Sample::link_index`].
    #[prost(message, repeated, tag = "4")]
    pub link_table: Vec<Link>,
    /// Every string referred to by a `*_strindex`; entry 0 is `""`.
    #[prost(string, repeated, tag = "5")]
    pub string_table: Vec<String>,
    /// Attributes, referenced by the `attribute_indices` of profiles,
    /// samples, mappings and locations.
    #[prost(message, repeated, tag = "6")]
    pub attribute_table: Vec<KeyValueAndUnit>,
    /// Stacks, referenced by [`Sample::stack_index`].
    #[prost(message, repeated, tag = "7")]
    pub stack_table: Vec<Stack>,
}

/// The profiles of one resource (`profiles.v1development.ResourceProfiles`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceProfiles {
    /// The process (service, host, …) that produced the profiles.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// The profiles, grouped by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_profiles: Vec<ScopeProfiles>,
    /// Semantic-conventions schema of `resource`, empty if unknown.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The profiles of one instrumentation scope
/// (`profiles.v1development.ScopeProfiles`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeProfiles {
    /// The library that produced the profiles (lowprof).
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The profiles.
    #[prost(message, repeated, tag = "2")]
    pub profiles: Vec<Profile>,
    /// Semantic-conventions schema, empty if unknown.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One profile of one sample type (`profiles.v1development.Profile`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What every [`Sample::values`] entry measures.
    #[prost(message, optional, tag = "1")]
    pub sample_type: Option<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Start of collection, nanoseconds since the UNIX epoch.
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Length of collection in nanoseconds.
    #[prost(uint64, tag = "4")]
    pub duration_nano: u64,
    /// The kind of events between sampled occurrences.
    #[prost(message, optional, tag = "5")]
    pub period_type: Option<ValueType>,
    /// Events between sampled occurrences.
    #[prost(int64, tag = "6")]
    pub period: i64,
    /// 16 bytes, not all zero; empty if unset.
    #[prost(bytes = "vec", tag = "7")]
    pub profile_id: Vec<u8>,
    /// Attributes left out of `attribute_indices`.
    #[prost(uint32, tag = "8")]
    pub dropped_attributes_count: u32,
    /// Format of `original_payload` (`"pprof"`, …); set together with it.
    #[prost(string, tag = "9")]
    pub original_payload_format: String,
    /// The profile in its original format, if kept.
    #[prost(bytes = "vec", tag = "10")]
    pub original_payload: Vec<u8>,
    /// Indices into [`ProfilesDictionary::attribute_table`], unique keys.
    #[prost(int32, repeated, tag = "11")]
    pub attribute_indices: Vec<i32>,
}

/// A sample's trace span (`profiles.v1development.Link`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Link {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
}

/// A `(type, unit)` pair (`profiles.v1development.ValueType`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// What is measured (index into the string table).
    #[prost(int32, tag = "1")]
    pub type_strindex: i32,
    /// Its unit (index into the string table).
    #[prost(int32, tag = "2")]
    pub unit_strindex: i32,
}

/// One stack with its value (`profiles.v1development.Sample`). Its identity
/// is `{stack_index, set of attribute_indices, link_index}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Index into [`ProfilesDictionary::stack_table`].
    #[prost(int32, tag = "1")]
    pub stack_index: i32,
    /// Indices into [`ProfilesDictionary::attribute_table`], unique keys.
    #[prost(int32, repeated, tag = "2")]
    pub attribute_indices: Vec<i32>,
    /// Index into [`ProfilesDictionary::link_table`]; 0: no link.
    #[prost(int32, tag = "3")]
    pub link_index: i32,
    /// Values of the profile's sample type (lowprof writes exactly one).
    #[prost(int64, repeated, tag = "4")]
    pub values: Vec<i64>,
    /// Per-observation times (lowprof writes none).
    #[prost(fixed64, repeated, tag = "5")]
    pub timestamps_unix_nano: Vec<u64>,
}

/// A loaded object (`profiles.v1development.Mapping`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Mapping {
    /// Start address in the process.
    #[prost(uint64, tag = "1")]
    pub memory_start: u64,
    /// End address (exclusive).
    #[prost(uint64, tag = "2")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "3")]
    pub file_offset: u64,
    /// Path or pseudo name such as `[vdso]` (index into the string table).
    #[prost(int32, tag = "4")]
    pub filename_strindex: i32,
    /// Indices into [`ProfilesDictionary::attribute_table`], such as the
    /// build id.
    #[prost(int32, repeated, tag = "5")]
    pub attribute_indices: Vec<i32>,
}

/// A stack trace (`profiles.v1development.Stack`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Stack {
    /// Indices into [`ProfilesDictionary::location_table`], leaf first.
    #[prost(int32, repeated, tag = "1")]
    pub location_indices: Vec<i32>,
}

/// A code address (`profiles.v1development.Location`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Location {
    /// Index into [`ProfilesDictionary::mapping_table`]; 0: unknown.
    #[prost(int32, tag = "1")]
    pub mapping_index: i32,
    /// The instruction address.
    #[prost(uint64, tag = "2")]
    pub address: u64,
    /// Inlined callees first; the last entry is the physical caller.
    #[prost(message, repeated, tag = "3")]
    pub lines: Vec<Line>,
    /// Indices into [`ProfilesDictionary::attribute_table`].
    #[prost(int32, repeated, tag = "4")]
    pub attribute_indices: Vec<i32>,
}

/// A source line inside a location (`profiles.v1development.Line`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Line {
    /// Index into [`ProfilesDictionary::function_table`].
    #[prost(int32, tag = "1")]
    pub function_index: i32,
    /// Line number, 0 if unknown.
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Column number, 0 if unknown.
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function (`profiles.v1development.Function`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Function {
    /// Human-readable name (index into the string table).
    #[prost(int32, tag = "1")]
    pub name_strindex: i32,
    /// Symbol-table (mangled) name (index into the string table).
    #[prost(int32, tag = "2")]
    pub system_name_strindex: i32,
    /// Source file (index into the string table).
    #[prost(int32, tag = "3")]
    pub filename_strindex: i32,
    /// First line of the function, 0 if unknown.
    #[prost(int64, tag = "4")]
    pub start_line: i64,
}

/// An attribute of the dictionary (`profiles.v1development.KeyValueAndUnit`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueAndUnit {
    /// The key (index into the string table).
    #[prost(int32, tag = "1")]
    pub key_strindex: i32,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
    /// The value's unit (index into the string table); 0: none.
    #[prost(int32, tag = "3")]
    pub unit_strindex: i32,
}

/// A value of any attribute type (`common.v1.AnyValue`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value; `None` is an empty value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<any_value::Value>,
}

/// The `oneof` of [`AnyValue`].
pub mod any_value {
    /// One of the value kinds of `common.v1.AnyValue`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A string.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// A boolean.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// A signed integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// A floating-point number.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// A list of values.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        /// A map of values.
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        /// Raw bytes.
        #[prost(bytes, tag = "7")]
        BytesValue(Vec<u8>),
        /// A string of the profiles dictionary (v1.10; lowprof writes
        /// [`Value::StringValue`], which every reader understands).
        #[prost(int32, tag = "8")]
        StringValueStrindex(i32),
    }
}

/// A list of values (`common.v1.ArrayValue`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// A map of values (`common.v1.KeyValueList`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    /// The entries, unique keys.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// A key and its value (`common.v1.KeyValue`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key. lowprof always sets this plain key, which every reader
    /// understands, never `key_strindex`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
    /// The key as an index into the profiles string table (v1.10, profiles
    /// only); 0 when `key` is set.
    #[prost(int32, tag = "3")]
    pub key_strindex: i32,
}

/// The library that produced telemetry (`common.v1.InstrumentationScope`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Its name (`"lowprof"`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Further attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// What produced the telemetry: service, process, host
/// (`resource.v1.Resource`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// The attributes, unique keys.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}
