//! A small, fixed heap profile shared by the pprof and flamegraph tests.
//!
//! ```text
//!  mappings:  0 /usr/bin/app (symbolized)   1 libc.so.6 (not symbolized)
//!  functions: 0 Vec<T>::push   1 app::load   2 main
//!  locations: 0 libc ?? (no lines)           1 app: push inlined into load
//!             2 app: main                    3 no mapping: load
//!  samples (leaf first):
//!    [0,1,2] values [2, 1024, 1,  512]  thread_name=worker-1, size=512 bytes
//!    [3,2]   values [1,  100, 0,    0]  batch=7
//!    [1,2]   values [3, 3000, 3, 3000]
//!    [1,2]   values [1,   10, 1,   10]  thread_name=worker-2
//! ```

use std::time::{Duration, UNIX_EPOCH};

use crate::profile::{
    Function, Label, LabelValue, Line, Location, Mapping, Profile, ProfileKind, Sample, ValueType,
};

/// The profile drawn in the module docs, with fixed times.
pub(crate) fn heap() -> Profile {
    Profile {
        kind: ProfileKind::Heap,
        sample_types: vec![
            ValueType::new("alloc_objects", "count"),
            ValueType::new("alloc_space", "bytes"),
            ValueType::new("inuse_objects", "count"),
            ValueType::new("inuse_space", "bytes"),
        ],
        default_sample_type: Some(3),
        period_type: ValueType::new("space", "bytes"),
        period: 512 * 1024,
        start: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        duration: Duration::from_secs(10),
        samples: samples(),
        locations: locations(),
        functions: vec![
            function(
                "alloc::vec::Vec<T>::push",
                "_ZN5alloc3vec12Vec$LT$T$GT$4push17h0123456789abcdefE",
                "vec.rs",
                10,
            ),
            function("app::load", "_ZN3app4load17hfedcba9876543210E", "src/main.rs", 20),
            function("main", "main", "src/main.rs", 1),
        ],
        mappings: vec![
            Mapping {
                start: 0x40_0000,
                limit: 0x50_0000,
                file_offset: 0,
                filename: "/usr/bin/app".to_owned(),
                build_id: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                has_functions: true,
                has_filenames: true,
                has_line_numbers: true,
                htlhash: String::new(),
            },
            Mapping {
                start: 0x7f00_0000_0000,
                limit: 0x7f00_0020_0000,
                file_offset: 0x2_8000,
                filename: "/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
                build_id: String::new(),
                has_functions: false,
                has_filenames: false,
                has_line_numbers: false,
                htlhash: String::new(),
            },
        ],
        comments: vec!["lowprof test fixture".to_owned()],
    }
}

fn samples() -> Vec<Sample> {
    vec![
        Sample {
            locations: vec![0, 1, 2],
            values: vec![2, 1024, 1, 512],
            labels: vec![str_label("thread_name", "worker-1"), num_label("size", 512, "bytes")],
        },
        Sample {
            locations: vec![3, 2],
            values: vec![1, 100, 0, 0],
            labels: vec![num_label("batch", 7, "")],
        },
        Sample { locations: vec![1, 2], values: vec![3, 3000, 3, 3000], labels: vec![] },
        Sample {
            locations: vec![1, 2],
            values: vec![1, 10, 1, 10],
            labels: vec![str_label("thread_name", "worker-2")],
        },
    ]
}

fn locations() -> Vec<Location> {
    vec![
        Location { address: 0x7f00_0000_1234, mapping: Some(1), lines: vec![] },
        Location {
            address: 0x40_1000,
            mapping: Some(0),
            lines: vec![Line { function: 0, line: 12 }, Line { function: 1, line: 25 }],
        },
        Location {
            address: 0x40_2000,
            mapping: Some(0),
            lines: vec![Line { function: 2, line: 3 }],
        },
        Location { address: 0x40_3000, mapping: None, lines: vec![Line { function: 1, line: 30 }] },
    ]
}

fn function(name: &str, system_name: &str, filename: &str, start_line: i64) -> Function {
    Function {
        name: name.to_owned(),
        system_name: system_name.to_owned(),
        filename: filename.to_owned(),
        start_line,
    }
}

fn str_label(key: &str, value: &str) -> Label {
    Label { key: key.to_owned(), value: LabelValue::Str(value.to_owned()) }
}

fn num_label(key: &str, value: i64, unit: &str) -> Label {
    Label { key: key.to_owned(), value: LabelValue::Num { value, unit: unit.to_owned() } }
}
