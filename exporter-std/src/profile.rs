//! The in-memory, symbolized profile: one format-neutral model that the pprof
//! encoder, the OTLP encoder and the flamegraph writer all read.
//!
//! It mirrors pprof's `profile.proto` closely but uses 0-based indices into
//! its own tables instead of 1-based ids, and owned strings instead of a
//! string table (the encoders intern them):
//!
//! ```text
//!  Profile ─ samples[i] ─ locations: [LocationIdx] (leaf first)
//!          │            ├ values: [i64; sample_types.len()]
//!          │            └ labels: [Label]
//!          ├ locations[j] ─ address, mapping: Option<MappingIdx>, lines (inlined callee first)
//!          ├ functions[k] ─ name, system_name, filename, start_line
//!          └ mappings[m]  ─ start, limit, file_offset, filename, build_id
//! ```

use std::time::{Duration, SystemTime};

/// Index into [`Profile::locations`].
pub type LocationIdx = u32;
/// Index into [`Profile::functions`].
pub type FunctionIdx = u32;
/// Index into [`Profile::mappings`].
pub type MappingIdx = u32;

/// What a profile measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// Heap: Go's `alloc_objects, alloc_space, inuse_objects, inuse_space`.
    Heap,
    /// CPU: `samples/count, cpu/nanoseconds`.
    Cpu,
}

/// A `(type, unit)` pair such as `("alloc_space", "bytes")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// What is measured: `alloc_space`, `cpu`, …
    pub r#type: String,
    /// Its unit: `bytes`, `count`, `nanoseconds`.
    pub unit: String,
}

impl ValueType {
    /// Builds a value type.
    pub fn new(r#type: &str, unit: &str) -> Self {
        Self { r#type: r#type.to_owned(), unit: unit.to_owned() }
    }
}

/// A label's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelValue {
    /// A string, such as a thread name.
    Str(String),
    /// A number with an optional unit (`"bytes"`), such as a block size.
    Num {
        /// The value.
        value: i64,
        /// Its unit, empty if none.
        unit: String,
    },
}

/// A key and its value, attached to a sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    /// The key, such as `thread_name`.
    pub key: String,
    /// The value.
    pub value: LabelValue,
}

/// One aggregated stack with its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Indices into [`Profile::locations`], leaf first.
    pub locations: Vec<LocationIdx>,
    /// One value per entry of [`Profile::sample_types`].
    pub values: Vec<i64>,
    /// Labels.
    pub labels: Vec<Label>,
}

/// One line of source inside a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Index into [`Profile::functions`].
    pub function: FunctionIdx,
    /// Line number, 0 if unknown.
    pub line: i64,
}

/// A code address and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The instruction address in the process (for callers, inside the call
    /// instruction: return address − 1).
    pub address: u64,
    /// The mapping holding the address, if known.
    pub mapping: Option<MappingIdx>,
    /// Source lines, the innermost inlined function first, the function the
    /// address physically belongs to last. Empty if unsymbolized.
    pub lines: Vec<Line>,
}

/// A function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Function {
    /// Human-readable (demangled, without the Rust hash suffix).
    pub name: String,
    /// As in the symbol table (mangled), or the same as `name`.
    pub system_name: String,
    /// Source file, empty if unknown.
    pub filename: String,
    /// First line of the function, 0 if unknown.
    pub start_line: i64,
}

/// A loaded object (executable or shared library).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Start of the mapped range in the process.
    pub start: u64,
    /// End (exclusive) of the mapped range.
    pub limit: u64,
    /// Offset in the file of `start`.
    pub file_offset: u64,
    /// Path of the file, or a pseudo name such as `[vdso]`.
    pub filename: String,
    /// GNU build id, lower-case hex; empty if none.
    pub build_id: String,
    /// The OTel profiles `htlhash` build id ([`crate::maps::htlhash`]),
    /// lower-case hex; empty if none. OTLP only (pprof has no field for it).
    pub htlhash: String,
    /// Whether locations in this mapping carry function names.
    pub has_functions: bool,
    /// Whether they carry file names.
    pub has_filenames: bool,
    /// Whether they carry line numbers.
    pub has_line_numbers: bool,
}

/// A symbolized profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Heap or CPU.
    pub kind: ProfileKind,
    /// What each sample value measures.
    pub sample_types: Vec<ValueType>,
    /// Which of `sample_types` a viewer shows by default (`None`: its choice;
    /// pprof then uses the last one).
    pub default_sample_type: Option<usize>,
    /// The sampling period's type: `space/bytes` or `cpu/nanoseconds`.
    pub period_type: ValueType,
    /// The sampling period: mean bytes between heap samples, or nanoseconds of
    /// CPU per CPU sample.
    pub period: i64,
    /// Start of the window the profile covers.
    pub start: SystemTime,
    /// Length of that window.
    pub duration: Duration,
    /// The aggregated samples.
    pub samples: Vec<Sample>,
    /// Locations referenced by the samples.
    pub locations: Vec<Location>,
    /// Functions referenced by the locations.
    pub functions: Vec<Function>,
    /// Mappings referenced by the locations.
    pub mappings: Vec<Mapping>,
    /// Free-form notes (pprof `comment`), such as drop counts.
    pub comments: Vec<String>,
}

impl Profile {
    /// The index of the sample type named `name`, if any.
    pub fn sample_type_index(&self, name: &str) -> Option<usize> {
        self.sample_types.iter().position(|t| t.r#type == name)
    }

    /// Sum of values of sample type `index` over all samples.
    pub fn total(&self, index: usize) -> i64 {
        self.samples.iter().filter_map(|s| s.values.get(index)).sum()
    }

    /// The function names of a sample's stack, leaf first, inlined frames
    /// expanded (innermost first) — the order a flamegraph or a test reads.
    pub fn stack_names(&self, sample: &Sample) -> Vec<&str> {
        let mut names = Vec::new();
        for &loc in &sample.locations {
            let Some(location) = self.locations.get(loc as usize) else {
                continue;
            };
            if location.lines.is_empty() {
                names.push("??");
            }
            for line in &location.lines {
                if let Some(f) = self.functions.get(line.function as usize) {
                    names.push(f.name.as_str());
                }
            }
        }
        names
    }
}
