//! The messages of google/pprof `proto/profile.proto` (package
//! `perftools.profiles`), written by hand as prost structs with that file's
//! field numbers.
//!
//! Only the fields lowprof writes or reads are declared; prost skips unknown
//! fields when decoding, so profiles carrying newer fields still parse.
//! Every `i64` documented as "index into `string_table`" refers to
//! [`Profile::string_table`], whose entry 0 is always `""`; every `id` is
//! non-zero and 0 in a reference means "none".

/// The whole profile (`perftools.profiles.Profile`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each `Sample.value` entry measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Loaded objects.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Code addresses.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by `Line`s.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// All strings; entry 0 must be `""`.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Regexp of frames to drop (index into `string_table`).
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regexp of frames to keep (index into `string_table`).
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// Start of collection, nanoseconds since the UNIX epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// Length of collection in nanoseconds.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of events between sampled occurrences.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Events between sampled occurrences.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form notes (indices into `string_table`).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// The preferred sample type's `type` (index into `string_table`); 0:
    /// viewers use the last one.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A `(type, unit)` pair (`perftools.profiles.ValueType`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// Index into `string_table`.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// Index into `string_table`.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One stack with its values (`perftools.profiles.Sample`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// `Location.id`s, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per `Profile.sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample label (`perftools.profiles.Label`): either `str` or `num`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Index into `string_table`.
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// Index into `string_table`; 0 for a numeric label.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// The numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// Unit of `num` (index into `string_table`), 0 if none.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A loaded object (`perftools.profiles.Mapping`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start address in the process.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// End address (exclusive).
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// Index into `string_table`.
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Index into `string_table`.
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Locations carry function names.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Locations carry file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Locations carry line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Some location has inlined frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// A code address (`perftools.profiles.Location`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// `Mapping.id`, 0 if unknown.
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// The instruction address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Inlined callees first; the last entry is the physical caller.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Several symbols share this address (identical code folding).
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A source line inside a location (`perftools.profiles.Line`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// `Function.id`.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number, 0 if unknown.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// A function (`perftools.profiles.Function`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human-readable name (index into `string_table`).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Symbol-table name (index into `string_table`).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (index into `string_table`).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}
