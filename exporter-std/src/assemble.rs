//! Building a [`Profile`] from aggregated raw stacks: symbolize every distinct
//! address once, give each its [`Location`], share [`Function`]s and
//! [`Mapping`]s, and drop the allocator's own frames from heap stacks.
//!
//! ```text
//!  raw stack [a0 a1 a2 …] (leaf first)
//!     │ lookup address: a0 itself if it is an interrupted PC (CPU leaf),
//!     │ else a − 1 (inside the call instruction, the caller's line)
//!     ▼
//!  Symbolizer (cached per address) ─► Location{address, mapping, lines}
//!                                      lines: inlined callees first ─► Function
//! ```
//!
//! Every location with a real address gets a [`Mapping`]: the object that
//! holds it now, the object that held it if it was unloaded since (the
//! symbolizer retires unmapped objects), or, for an address in no object the
//! symbolizer ever saw (garbage from a broken frame chain, a library loaded
//! and unloaded between two looks at the maps), the placeholder
//! [`UNKNOWN_MAPPING`]. Addresses are never dropped. Comments in the profile
//! name the unloaded objects that locations are in and count the locations
//! in the placeholder.
//!
//! The placeholder is one mapping per profile, stretched from the lowest to
//! the highest unknown address, so it may overlap real mappings; its
//! locations point at it by id, and its `[`-name tells `go tool pprof` not
//! to look for a file.

use hashbrown::HashMap;
use std::time::{Duration, SystemTime};

use crate::profile::{
    Function, Label, Line, Location, LocationIdx, Mapping, MappingIdx, Profile, ProfileKind,
    Sample, ValueType,
};
use crate::symbolize::{Resolved, Symbolizer};

/// Name of the synthetic frame that carries what was lost (dropped records).
pub const DROPPED_FRAME: &str = "lowprof::dropped";

/// File name of the placeholder mapping for addresses outside every object
/// the symbolizer knows. The leading `[` marks it, like `[vdso]`, as nothing
/// `go tool pprof` should look for on disk.
pub(crate) const UNKNOWN_MAPPING: &str = "[unknown]";

/// One aggregated stack to put in a profile.
pub(crate) struct RawSample {
    /// Code addresses, leaf first.
    pub frames: Vec<u64>,
    /// Whether `frames[0]` is an interrupted PC rather than a return address.
    pub leaf_is_pc: bool,
    pub values: Vec<i64>,
    pub labels: Vec<Label>,
}

/// Everything about a profile but its samples.
pub(crate) struct Header {
    pub kind: ProfileKind,
    pub sample_types: Vec<ValueType>,
    pub default_sample_type: Option<usize>,
    pub period_type: ValueType,
    pub period: i64,
    pub start: SystemTime,
    pub duration: Duration,
    pub comments: Vec<String>,
}

/// Builds the profile. With `trim_allocator`, leading frames that belong to
/// the allocator wrapper and Rust's allocation shims are left out, so heap
/// stacks begin where the program asked for memory.
pub(crate) fn assemble(
    symbolizer: &mut Symbolizer,
    header: Header,
    samples: &[RawSample],
    synthetic: &[(&str, Vec<i64>)],
    trim_allocator: bool,
) -> Profile {
    let mut lookups: Vec<u64> =
        samples.iter().flat_map(|s| lookup_addresses(&s.frames, s.leaf_is_pc)).collect();
    lookups.sort_unstable();
    lookups.dedup();
    symbolizer.resolve_all(&lookups);

    let mut b = Builder {
        symbolizer,
        locations: Vec::new(),
        location_of: HashMap::new(),
        trimmed_of: HashMap::new(),
        functions: Vec::new(),
        function_of: HashMap::new(),
        mappings: Vec::new(),
        mapping_of: HashMap::new(),
        unknown: None,
    };
    let mut out = Vec::with_capacity(samples.len() + synthetic.len());
    for sample in samples {
        let mut locations: Vec<LocationIdx> =
            lookup_addresses(&sample.frames, sample.leaf_is_pc).map(|a| b.location(a)).collect();
        if trim_allocator {
            let keep_from = locations
                .iter()
                .position(|&l| !b.is_allocator_location(l))
                .unwrap_or(locations.len().saturating_sub(1));
            locations.drain(..keep_from);
            if let Some(leaf) = locations.first_mut() {
                *leaf = b.without_inlined_allocator(*leaf);
            }
        }
        out.push(Sample {
            locations,
            values: sample.values.clone(),
            labels: sample.labels.clone(),
        });
    }
    for (name, values) in synthetic {
        let location = b.synthetic_location(name);
        out.push(Sample { locations: vec![location], values: values.clone(), labels: Vec::new() });
    }
    let unloaded = b.unloaded_note();
    let Builder { locations, functions, mut mappings, unknown, .. } = b;
    for (m, mapping) in mappings.iter_mut().enumerate() {
        let symbolized =
            locations.iter().any(|l| l.mapping == Some(m as MappingIdx) && !l.lines.is_empty());
        mapping.has_functions = symbolized;
        mapping.has_filenames = symbolized;
        mapping.has_line_numbers = symbolized;
    }
    let mut comments = header.comments;
    comments.extend(unloaded);
    if let Some(unknown) = unknown {
        let n = locations.iter().filter(|l| l.mapping == Some(unknown)).count();
        comments.push(format!(
            "lowprof: {n} locations are in no object known to the symbolizer; they keep their \
             addresses, in the placeholder mapping {UNKNOWN_MAPPING}"
        ));
    }
    Profile {
        kind: header.kind,
        sample_types: header.sample_types,
        default_sample_type: header.default_sample_type,
        period_type: header.period_type,
        period: header.period,
        start: header.start,
        duration: header.duration,
        samples: out,
        locations,
        functions,
        mappings,
        comments,
    }
}

/// The addresses to symbolize for a stack: the interrupted PC as is, return
/// addresses minus one (so they fall inside the call, on the caller's line).
fn lookup_addresses(frames: &[u64], leaf_is_pc: bool) -> impl Iterator<Item = u64> + '_ {
    frames.iter().enumerate().map(
        move |(i, &a)| {
            if i == 0 && leaf_is_pc { a } else { a.saturating_sub(1) }
        },
    )
}

struct Builder<'s> {
    symbolizer: &'s mut Symbolizer,
    locations: Vec<Location>,
    location_of: HashMap<u64, LocationIdx>,
    trimmed_of: HashMap<LocationIdx, LocationIdx>,
    functions: Vec<Function>,
    function_of: HashMap<(String, String, String), u32>,
    mappings: Vec<Mapping>,
    mapping_of: HashMap<usize, MappingIdx>,
    /// The placeholder [`UNKNOWN_MAPPING`], once an address needed it.
    unknown: Option<MappingIdx>,
}

impl Builder<'_> {
    fn location(&mut self, address: u64) -> LocationIdx {
        if let Some(&idx) = self.location_of.get(&address) {
            return idx;
        }
        let resolved = self.symbolizer.get(address).cloned().unwrap_or_default();
        let location = self.make_location(address, &resolved);
        let idx = self.locations.len() as LocationIdx;
        self.locations.push(location);
        self.location_of.insert(address, idx);
        idx
    }

    fn make_location(&mut self, address: u64, resolved: &Resolved) -> Location {
        // Every real location names the object it is in, or says unknown.
        let mapping = match resolved.mapping {
            Some(m) => self.mapping(m),
            None => self.unknown_mapping(address),
        };
        let mapping = Some(mapping);
        let lines = resolved
            .frames
            .iter()
            .map(|f| Line {
                function: self.function(&f.function, &f.system_name, &f.file),
                line: i64::from(f.line),
            })
            .collect();
        Location { address, mapping, lines }
    }

    fn synthetic_location(&mut self, name: &str) -> LocationIdx {
        // Address 0 is never a real instruction: one location per name.
        let key = u64::MAX - self.function(name, name, "") as u64;
        if let Some(&idx) = self.location_of.get(&key) {
            return idx;
        }
        let function = self.function(name, name, "");
        let idx = self.locations.len() as LocationIdx;
        self.locations.push(Location {
            address: 0,
            mapping: None,
            lines: vec![Line { function, line: 0 }],
        });
        self.location_of.insert(key, idx);
        idx
    }

    fn function(&mut self, name: &str, system_name: &str, file: &str) -> u32 {
        let key = (name.to_owned(), system_name.to_owned(), file.to_owned());
        if let Some(&idx) = self.function_of.get(&key) {
            return idx;
        }
        let idx = self.functions.len() as u32;
        self.functions.push(Function {
            name: key.0.clone(),
            system_name: key.1.clone(),
            filename: key.2.clone(),
            start_line: 0,
        });
        self.function_of.insert(key, idx);
        idx
    }

    fn mapping(&mut self, object: usize) -> MappingIdx {
        if let Some(&idx) = self.mapping_of.get(&object) {
            return idx;
        }
        let idx = self.mappings.len() as MappingIdx;
        let m = self.symbolizer.mappings().get(object);
        self.mappings.push(Mapping {
            start: m.map_or(0, |m| m.start),
            limit: m.map_or(0, |m| m.limit),
            file_offset: m.map_or(0, |m| m.file_offset),
            filename: m.map_or_else(String::new, |m| m.path.clone()),
            build_id: m.and_then(|m| m.build_id.as_deref()).map(hex).unwrap_or_default(),
            htlhash: m.and_then(|m| m.htlhash.as_ref()).map(|h| hex(h)).unwrap_or_default(),
            has_functions: false,
            has_filenames: false,
            has_line_numbers: false,
        });
        self.mapping_of.insert(object, idx);
        idx
    }

    /// The placeholder mapping, grown to cover `address`.
    fn unknown_mapping(&mut self, address: u64) -> MappingIdx {
        let idx = match self.unknown {
            Some(idx) => idx,
            None => {
                let idx = self.mappings.len() as MappingIdx;
                self.mappings.push(Mapping {
                    start: address,
                    limit: address.saturating_add(1),
                    file_offset: 0,
                    filename: UNKNOWN_MAPPING.to_owned(),
                    build_id: String::new(),
                    htlhash: String::new(),
                    has_functions: false,
                    has_filenames: false,
                    has_line_numbers: false,
                });
                *self.unknown.insert(idx)
            }
        };
        if let Some(m) = self.mappings.get_mut(idx as usize) {
            m.start = m.start.min(address);
            m.limit = m.limit.max(address.saturating_add(1));
        }
        idx
    }

    /// A comment naming the objects, unloaded before this profile was built,
    /// that some locations are in; `None` if there are none.
    fn unloaded_note(&self) -> Option<String> {
        let mut paths: Vec<&str> = self
            .mapping_of
            .keys()
            .filter(|&&object| self.symbolizer.is_retired(object))
            .filter_map(|&object| self.symbolizer.mappings().get(object))
            .map(|m| m.path.as_str())
            .collect();
        if paths.is_empty() {
            return None;
        }
        paths.sort_unstable();
        paths.dedup();
        Some(format!(
            "lowprof: some locations are in objects unloaded before this profile was built: {}; \
             they keep their addresses and the object's mapping, with names only if its file \
             still has the same build id",
            paths.join(", ")
        ))
    }

    /// The location with the allocator's inlined frames removed: the global
    /// allocator's code is usually inlined into the function that called
    /// `alloc`, so the leaf location's innermost lines are lowprof's wrapper
    /// and the `__rust_alloc` shim. Everything up to the outermost shim line
    /// goes (the names of inlined frames may be too short to recognise one
    /// by one). Returns the same index when there is nothing to remove.
    fn without_inlined_allocator(&mut self, idx: LocationIdx) -> LocationIdx {
        if let Some(&trimmed) = self.trimmed_of.get(&idx) {
            return trimmed;
        }
        let Some(location) = self.locations.get(idx as usize) else {
            return idx;
        };
        let lines = &location.lines;
        let outermost_shim = lines.iter().rposition(|line| {
            self.functions
                .get(line.function as usize)
                .is_some_and(|f| is_allocator_function(&f.name))
        });
        let trimmed = match outermost_shim {
            // Keep at least the physical function.
            Some(i) if i + 1 < lines.len() => {
                let new = Location {
                    address: location.address,
                    mapping: location.mapping,
                    lines: lines[i + 1..].to_vec(),
                };
                let new_idx = self.locations.len() as LocationIdx;
                self.locations.push(new);
                new_idx
            }
            _ => idx,
        };
        self.trimmed_of.insert(idx, trimmed);
        trimmed
    }

    /// Whether the function this location physically belongs to is part of
    /// the allocation machinery: lowprof's wrapper or Rust's allocator shims.
    fn is_allocator_location(&self, idx: LocationIdx) -> bool {
        let Some(location) = self.locations.get(idx as usize) else {
            return false;
        };
        let Some(line) = location.lines.last() else {
            return false;
        };
        self.functions.get(line.function as usize).is_some_and(|f| is_allocator_function(&f.name))
    }
}

/// lowprof's allocator wrapper, and the shims rustc generates between
/// `alloc::alloc` and the `#[global_allocator]` (`__rust_alloc` →
/// `__rg_alloc`; newer compilers prefix them with `__rustc::`).
pub(crate) fn is_allocator_function(name: &str) -> bool {
    if name.starts_with("lowprof_alloc::") || name.starts_with("<lowprof_alloc::") {
        return true;
    }
    let last = name.rsplit("::").next().unwrap_or(name);
    last.starts_with("__rust_alloc")
        || last.starts_with("__rust_realloc")
        || last.starts_with("__rust_dealloc")
        || last.starts_with("__rg_")
        || last.starts_with("__rdl_")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_frames_are_recognised() {
        for name in [
            "__rust_alloc",
            "__rustc::__rust_alloc_zeroed",
            "__rust_realloc",
            "__rg_alloc",
            "<lowprof_alloc::SampledAlloc<A> as core::alloc::global::GlobalAlloc>::alloc",
            "lowprof_alloc::slow::alloc_slow",
        ] {
            assert!(is_allocator_function(name), "{name}");
        }
        for name in
            ["alloc::raw_vec::RawVec<T,A>::grow_one", "my_app::load", "main", "alloc::alloc::alloc"]
        {
            assert!(!is_allocator_function(name), "{name}");
        }
    }

    /// A body of its own: identical functions elsewhere in the test binary
    /// (`maps`' `probe_in_text`) may be merged with it, and then the
    /// address carries either name.
    #[inline(never)]
    fn probe() -> u64 {
        std::hint::black_box(0x5eed_a55e)
    }

    #[test]
    fn symbolizes_and_shares_locations() {
        let mut sym = Symbolizer::new();
        let pc = probe as fn() -> u64 as usize as u64 + 1;
        let frames = [pc, pc];
        let header = Header {
            kind: ProfileKind::Cpu,
            sample_types: vec![ValueType::new("samples", "count")],
            default_sample_type: None,
            period_type: ValueType::new("cpu", "nanoseconds"),
            period: 1,
            start: SystemTime::now(),
            duration: Duration::from_secs(1),
            comments: vec![],
        };
        let samples = [
            RawSample {
                frames: frames.to_vec(),
                leaf_is_pc: true,
                values: vec![3],
                labels: vec![],
            },
            RawSample {
                frames: frames[..1].to_vec(),
                leaf_is_pc: true,
                values: vec![2],
                labels: vec![],
            },
        ];
        let p = assemble(&mut sym, header, &samples, &[(DROPPED_FRAME, vec![5])], false);
        assert_eq!(p.samples.len(), 3);
        // pc as the leaf and pc (= return address, looked up at pc - 1) differ.
        assert_eq!(p.samples[0].locations.len(), 2);
        assert_eq!(p.samples[1].locations[0], p.samples[0].locations[0]);
        let names = p.stack_names(&p.samples[1]);
        assert!(names[0].ends_with("probe"), "{names:?}");
        assert_eq!(p.stack_names(&p.samples[2]), vec![DROPPED_FRAME]);
        let m = p.locations[p.samples[1].locations[0] as usize].mapping.unwrap();
        assert!(p.mappings[m as usize].has_functions);
        assert!(!p.mappings[m as usize].filename.is_empty());
    }

    #[test]
    fn addresses_in_no_object_keep_a_placeholder_mapping() {
        let mut sym = Symbolizer::new();
        let header = Header {
            kind: ProfileKind::Cpu,
            sample_types: vec![ValueType::new("samples", "count")],
            default_sample_type: None,
            period_type: ValueType::new("cpu", "nanoseconds"),
            period: 1,
            start: SystemTime::now(),
            duration: Duration::from_secs(1),
            comments: vec![],
        };
        let pc = probe as fn() -> u64 as usize as u64 + 1;
        // Two addresses no object holds (as if unloaded unseen), one real.
        let samples = [RawSample {
            frames: vec![0x10, pc, 0x2001],
            leaf_is_pc: true,
            values: vec![1],
            labels: vec![],
        }];
        let p = assemble(&mut sym, header, &samples, &[(DROPPED_FRAME, vec![1])], false);
        let locs: Vec<&Location> =
            p.samples[0].locations.iter().map(|&l| &p.locations[l as usize]).collect();
        assert_eq!(locs.iter().map(|l| l.address).collect::<Vec<_>>(), [0x10, pc - 1, 0x2000]);
        let unknown = locs[0].mapping.unwrap();
        assert_eq!(locs[2].mapping, Some(unknown), "one placeholder per profile");
        assert_ne!(locs[1].mapping, Some(unknown));
        let m = &p.mappings[unknown as usize];
        assert_eq!((m.filename.as_str(), m.start, m.limit), (UNKNOWN_MAPPING, 0x10, 0x2001));
        assert!(!m.has_functions && m.build_id.is_empty());
        assert!(locs[0].lines.is_empty() && locs[2].lines.is_empty());
        // The synthetic frame is not an address: still no mapping.
        let dropped = &p.locations[p.samples[1].locations[0] as usize];
        assert_eq!((dropped.address, dropped.mapping), (0, None));
        assert!(p.comments.iter().any(|c| c.contains("2 locations") && c.contains("[unknown]")));
    }
}
