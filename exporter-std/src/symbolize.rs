//! In-process symbolization: code address → function names, files and lines,
//! done once per distinct address, on the drainer thread.
//!
//! The hot path (signal handler, allocator) records bare instruction
//! addresses and nothing else; turning them into names is far too slow and
//! allocation-heavy for it. The drainer aggregates samples by stack first,
//! so each distinct address reaches this module once: [`Symbolizer::resolve_all`]
//! sends every address not seen before to [`blazesym`] in one batched call
//! and keeps the answer in a cache; later profiles only pay for new code.
//!
//! Why in-process: the profiled binary is the one running, with its exact
//! build, already on disk at the paths `/proc/self/maps` names, so the
//! profile can carry real names (`has_functions = true`) and be read
//! anywhere without the binary. It still carries real addresses and one
//! `Mapping` per loaded object with file name and GNU build id
//! ([`crate::maps`]), which is what `go tool pprof` needs to re-symbolize
//! against a binary with fuller debug info if the user has one.
//!
//! ```text
//!  drainer: distinct addrs ─► resolve_all ─► cache miss? ─► one blazesym batch
//!                                    │                      (DWARF: inlined frames,
//!                                    ▼                       files, lines)
//!                  get(addr) ─► Resolved { mapping, frames: [inlined…, physical] }
//! ```
//!
//! blazesym is configured for the current process (`Pid::Slf`) with absolute
//! addresses, DWARF debug info, inlined functions, source locations and
//! demangling on; it reads object paths from `/proc/self/maps` instead of
//! `/proc/self/map_files` (which needs `CAP_SYS_ADMIN` /
//! `CAP_CHECKPOINT_RESTORE`), ignores perf maps (no JIT here), symbolizes the
//! vDSO from memory, and does not reload files that change on disk (a file
//! replaced on disk is not the code that is mapped). A second, cheap
//! ELF-symbol-table-only pass without demangling supplies the raw (mangled)
//! name of each physical function for [`SymFrame::system_name`].
//!
//! Memory: blazesym keeps the parsed symbol tables and DWARF of every object
//! it has touched for the life of the [`Symbolizer`] (objects that disappear
//! on [`Symbolizer::refresh_mappings`] are evicted), plus one small
//! [`Resolved`] per distinct address.
//!
//! Unloaded objects. A library `dlclose`d between sampling and building the
//! profile is gone from `/proc/self/maps`, yet samples still carry addresses
//! inside it. Such an object, once seen by [`Symbolizer::refresh_mappings`],
//! is *retired*, not forgotten: it stays in [`Symbolizer::mappings`] (after
//! the current ones, the [`RETIRED_CAP`] most recent), results already cached
//! for its addresses keep it as their mapping, and new addresses inside it are
//! resolved from its file on disk by file offset, if that file still carries
//! the same GNU build id (else they keep the mapping and get no names).
//!
//! ```text
//!  mappings: [ current objects, sorted by start │ retired, newest first ]
//!              object_for (binary search) ◄──────┘ tried only when no
//!                                                  current object holds addr
//! ```
//!
//! The symbolizer must have *seen* the object while it was mapped: the
//! `lowprof-symbolize` thread re-reads the maps whenever the loader's
//! load/unload count moves ([`crate::maps::loader_generation`], polled every
//! 100 ms) and before every profile. Limits: an object that lives shorter
//! than one poll is never seen (its addresses get the placeholder mapping,
//! see `assemble`); and a current object wins over a retired one, so an
//! address sampled in an unloaded library whose range was since reused by
//! another object is attributed to the new one (telling them apart would
//! need the loader count stamped on every sample).
//!
//! A [`Symbolizer`] is not `Send` (blazesym's caches use `Rc`): create it on
//! the thread that uses it.

use std::path::Path;

use blazesym::Pid;
use blazesym::symbolize::source::{self, Process, Source};
use blazesym::symbolize::{CodeInfo, Input, Sym, Symbolized, cache, evict};
use hashbrown::HashMap;

use crate::maps::{ObjectMapping, object_for, read_build_id, read_object_mappings};

/// One function in the symbolized view of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SymFrame {
    /// Demangled name without the Rust hash suffix, such as
    /// `alloc::vec::Vec<T,A>::push`.
    pub function: String,
    /// The raw (mangled) symbol name if known, else the same as `function`.
    ///
    /// Known for the physical (last) frame only, from the ELF symbol table:
    /// where several symbols share an address it may be another alias than
    /// the one `function` comes from (glibc: `__getpid` for `__GI_getpid`).
    /// Inlined frames carry `function` here.
    pub system_name: String,
    /// Full path of the source file, empty if unknown.
    pub file: String,
    /// Line in `file` (of the address, or of the call to the next inner
    /// frame), 0 if unknown.
    pub line: u32,
}

/// What one address resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// Index into [`Symbolizer::mappings`] of the object holding the address.
    pub mapping: Option<usize>,
    /// The innermost inlined function first, the function the address
    /// physically belongs to last; empty if the address is unknown.
    pub frames: Vec<SymFrame>,
}

/// How many unmapped (retired) objects a [`Symbolizer`] remembers, most
/// recently unmapped first; a process that loads and unloads plugins forever
/// must not grow the list forever.
pub const RETIRED_CAP: usize = 64;

/// Symbolizes addresses of the current process, each distinct address once.
pub struct Symbolizer {
    /// Full symbolization: DWARF, inlined functions, lines, demangled names.
    blaze: blazesym::symbolize::Symbolizer,
    /// Symbol table only, no demangling: raw names for `system_name`.
    raw: blazesym::symbolize::Symbolizer,
    /// The objects mapped now (`..current`, sorted by start and
    /// non-overlapping), then the retired ones, most recently unmapped first.
    mappings: Vec<ObjectMapping>,
    /// How many entries at the front of `mappings` are mapped now.
    current: usize,
    cache: HashMap<u64, Resolved>,
    batches: u64,
}

impl core::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("mappings", &self.mappings.len())
            .field("cached_addresses", &self.cache.len())
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// Creates a symbolizer for the current process and reads its mappings
    /// (an empty list if `/proc/self/maps` cannot be read; never panics).
    /// Debug info is loaded lazily, on the first address in each object.
    pub fn new() -> Self {
        let blaze = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .enable_auto_reload(false)
            .build();
        let raw = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(false)
            .enable_inlined_fns(false)
            .enable_demangling(false)
            .enable_auto_reload(false)
            .build();
        let mut this = Self {
            blaze,
            raw,
            mappings: Vec::new(),
            current: 0,
            cache: HashMap::new(),
            batches: 0,
        };
        this.mappings = read_object_mappings().unwrap_or_default();
        this.current = this.mappings.len();
        this.snapshot_vmas();
        this
    }

    /// Re-reads the process's mappings, as needed after `dlopen`/`dlclose`.
    ///
    /// Cached results stay valid for addresses whose object (path and start)
    /// is unchanged, and for addresses of an object that is no longer mapped
    /// at all (it is retired, see the module docs); all others, including
    /// addresses that were outside every object, are dropped and resolved
    /// again on demand. Objects no longer mapped are evicted from blazesym's
    /// caches. If the maps cannot be read, nothing changes.
    pub fn refresh_mappings(&mut self) {
        let Ok(current) = read_object_mappings() else {
            return;
        };
        self.set_mappings(current);
    }

    /// Makes `current` (sorted by start, non-overlapping) the objects mapped
    /// now: objects mapped before and not any more are retired, the cache
    /// is re-indexed, and blazesym's caches and VMA snapshot follow.
    fn set_mappings(&mut self, current: Vec<ObjectMapping>) {
        let old = core::mem::replace(&mut self.mappings, current);
        let old_current = self.current.min(old.len());
        self.current = self.mappings.len();
        // An unmapped object is kept, not forgotten: its samples still carry
        // addresses inside it. Objects gone since the last read first, then
        // the ones retired before; an object mapped again (same path, same
        // start) is current, not retired.
        let (was_current, retired_before) = old.split_at(old_current);
        let mut retired: Vec<ObjectMapping> = Vec::new();
        for gone in was_current.iter().chain(retired_before) {
            let same = |m: &ObjectMapping| same_object(m, gone);
            if gone.is_pseudo() || self.mappings.iter().any(same) || retired.iter().any(same) {
                continue;
            }
            if retired.len() < RETIRED_CAP {
                retired.push(gone.clone());
            }
        }
        self.mappings.extend(retired);

        let (mappings, current) = (&self.mappings, self.current);
        let (now_mapped, now_retired) = mappings.split_at(current.min(mappings.len()));
        self.cache.retain(|&addr, resolved| {
            let Some(before) = resolved.mapping.and_then(|i| old.get(i)) else {
                return false;
            };
            let now = match object_for(now_mapped, addr) {
                Some(i) => Some(i),
                // In no object mapped now: still the retired one it was in.
                None => {
                    now_retired.iter().position(|m| same_object(m, before)).map(|i| current + i)
                }
            };
            match now.and_then(|i| Some((i, mappings.get(i)?))) {
                Some((i, m)) if same_object(m, before) => {
                    resolved.mapping = Some(i);
                    true
                }
                _ => false,
            }
        });
        for gone in was_current.iter().filter(|o| !o.is_pseudo()) {
            if !self.current_mappings().iter().any(|m| m.path == gone.path) {
                let target = evict::Evict::Elf(evict::Elf::new(&gone.path));
                // Best effort: a failed eviction only keeps some memory.
                let _ = self.blaze.evict(&target);
                let _ = self.raw.evict(&target);
            }
        }
        self.snapshot_vmas();
    }

    /// Resolves every address in `addrs` not resolved before, in one batched
    /// blazesym call; afterwards [`get`](Self::get) answers for each of them.
    ///
    /// The addresses are lookup addresses: for a caller frame, pass the
    /// return address − 1 (the caller does that adjustment). Addresses
    /// outside every executable mapping (current or retired) get neither a
    /// mapping nor frames, addresses blazesym cannot resolve get empty
    /// `frames`; this never fails.
    pub fn resolve_all(&mut self, addrs: &[u64]) {
        let mut todo: Vec<u64> =
            addrs.iter().copied().filter(|a| !self.cache.contains_key(a)).collect();
        if todo.is_empty() {
            return;
        }
        todo.sort_unstable();
        todo.dedup();

        let mut query = Vec::with_capacity(todo.len());
        let mut query_maps = Vec::with_capacity(todo.len());
        let mut unmapped: Vec<(u64, usize)> = Vec::new();
        for addr in todo {
            if let Some(index) = object_for(self.current_mappings(), addr) {
                query.push(addr);
                query_maps.push(index);
            } else if let Some(index) = self.retired_for(addr) {
                unmapped.push((addr, index));
            } else {
                self.cache.insert(addr, Resolved::default());
            }
        }
        self.resolve_retired(&unmapped);
        if query.is_empty() {
            return;
        }

        self.batches += 1;
        // An error for the whole batch (maps unreadable, …) leaves every
        // address unknown rather than failing the export.
        let full = self.blaze.symbolize(&process_source(true), Input::AbsAddr(&query));
        let full = full.unwrap_or_default();
        let raw = self.raw.symbolize(&process_source(false), Input::AbsAddr(&query));
        let raw = raw.unwrap_or_default();

        for (i, (&addr, &mapping)) in query.iter().zip(&query_maps).enumerate() {
            let frames = frames_at(&full, &raw, i);
            self.cache.insert(addr, Resolved { mapping: Some(mapping), frames });
        }
    }

    /// The result for `addr`, if it was passed to [`resolve_all`](Self::resolve_all)
    /// (and not dropped by a later [`refresh_mappings`](Self::refresh_mappings)).
    pub fn get(&self, addr: u64) -> Option<&Resolved> {
        self.cache.get(&addr)
    }

    /// Every object the symbolizer knows, the index space of
    /// [`Resolved::mapping`]: first the executable mappings of the process
    /// now ([`current_mappings`](Self::current_mappings)), then up to
    /// [`RETIRED_CAP`] objects that were mapped at an earlier
    /// [`refresh_mappings`](Self::refresh_mappings) and are no longer,
    /// most recently unmapped first.
    pub fn mappings(&self) -> &[ObjectMapping] {
        &self.mappings
    }

    /// The executable mappings of the process at the last read, sorted by
    /// start and non-overlapping.
    pub fn current_mappings(&self) -> &[ObjectMapping] {
        self.mappings.get(..self.current).unwrap_or_default()
    }

    /// Whether index `mapping` of [`mappings`](Self::mappings) is an object
    /// that is no longer mapped.
    pub fn is_retired(&self, mapping: usize) -> bool {
        mapping >= self.current && mapping < self.mappings.len()
    }

    /// How many distinct addresses are cached.
    pub fn cached_addresses(&self) -> usize {
        self.cache.len()
    }

    /// How many batched symbolization calls were made so far (each
    /// [`resolve_all`](Self::resolve_all) with new, mapped addresses makes one).
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Drops blazesym's parsed symbol tables and debug info for every
    /// object, keeping the per-address cache. Memory goes down (how much the
    /// process's RSS shows depends on the allocator); the next address in a
    /// not-yet-seen location pays for parsing its object again.
    pub fn release_debug_info(&mut self) {
        for mapping in self.mappings.iter().filter(|m| !m.is_pseudo()) {
            let target = evict::Evict::Elf(evict::Elf::new(&mapping.path));
            // Best effort: a failed eviction only keeps some memory.
            let _ = self.blaze.evict(&target);
            let _ = self.raw.evict(&target);
        }
    }

    /// The retired object holding `addr`, most recently unmapped first.
    fn retired_for(&self, addr: u64) -> Option<usize> {
        let retired = self.mappings.get(self.current..)?;
        retired.iter().position(|m| m.contains(addr)).map(|i| self.current + i)
    }

    /// Resolves addresses of retired objects, `(address, mapping index)`:
    /// from the object's file by file offset, one blazesym call per object,
    /// if the file on disk still has the build id the mapped one had. Every
    /// address keeps its mapping, with or without frames.
    fn resolve_retired(&mut self, unmapped: &[(u64, usize)]) {
        let mut objects: Vec<usize> = unmapped.iter().map(|&(_, m)| m).collect();
        objects.sort_unstable();
        objects.dedup();
        for index in objects {
            let addrs: Vec<u64> =
                unmapped.iter().filter(|&&(_, m)| m == index).map(|&(a, _)| a).collect();
            let Some(object) = self.mappings.get(index) else { continue };
            // A file replaced on disk (an upgrade, a rebuilt plugin) is not
            // the code that ran; without a build id there is no telling.
            let same_file = object.build_id.as_ref().is_some_and(|id| {
                read_build_id(Path::new(&object.path)).is_some_and(|now| &now == id)
            });
            let (mut full, mut raw) = (Vec::new(), Vec::new());
            if same_file {
                let offsets: Vec<u64> = addrs
                    .iter()
                    .map(|&a| a.saturating_sub(object.start).saturating_add(object.file_offset))
                    .collect();
                self.batches += 1;
                let source = |debug_syms| {
                    let mut elf = source::Elf::new(&object.path);
                    elf.debug_syms = debug_syms;
                    Source::Elf(elf)
                };
                let input = Input::FileOffset(offsets.as_slice());
                full = self.blaze.symbolize(&source(true), input).unwrap_or_default();
                raw = self.raw.symbolize(&source(false), input).unwrap_or_default();
            }
            for (i, &addr) in addrs.iter().enumerate() {
                let frames = frames_at(&full, &raw, i);
                self.cache.insert(addr, Resolved { mapping: Some(index), frames });
            }
            let reloaded = self.current_mappings().iter().any(|m| m.path == object.path);
            if same_file && !reloaded {
                // The answers are cached per address; later addresses in an
                // unmapped object are rare, so do not keep its debug info
                // (unless the same file is mapped again elsewhere).
                let target = evict::Evict::Elf(evict::Elf::new(&object.path));
                let _ = self.blaze.evict(&target);
                let _ = self.raw.evict(&target);
            }
        }
    }

    /// Gives blazesym the same VMA snapshot as [`Self::mappings`], so both
    /// agree on what is mapped and a batch does not re-read the maps.
    fn snapshot_vmas(&self) {
        let mut vmas = cache::Process::new(Pid::Slf);
        vmas.cache_perf_map = false;
        let target = cache::Cache::Process(vmas);
        // Best effort: without a snapshot blazesym reads the maps itself.
        let _ = self.blaze.cache(&target);
        let _ = self.raw.cache(&target);
    }
}

/// Whether two mappings are the same mapped object: same file, same place.
fn same_object(a: &ObjectMapping, b: &ObjectMapping) -> bool {
    a.path == b.path && a.start == b.start
}

/// The current process as a blazesym source.
fn process_source(debug_syms: bool) -> Source<'static> {
    let mut process = Process::new(Pid::Slf);
    process.debug_syms = debug_syms;
    process.perf_map = false;
    process.map_files = false;
    process.vdso = true;
    Source::Process(process)
}

/// Flattens a blazesym symbol into frames, innermost inlined function first.
///
/// blazesym lists inlined functions outermost first and gives each one (and
/// the physical function) the source location inside that function: the
/// address itself for the innermost, the call to the next one for the rest.
/// The frames of query `i`: `full` (with inlined frames) named as `raw`
/// (the symbol table's names) has them; none if it was not resolved.
fn frames_at(full: &[Symbolized<'_>], raw: &[Symbolized<'_>], i: usize) -> Vec<SymFrame> {
    let raw_name = match raw.get(i) {
        Some(Symbolized::Sym(sym)) => Some(&*sym.name),
        _ => None,
    };
    match full.get(i) {
        Some(Symbolized::Sym(sym)) => frames_of(sym, raw_name),
        _ => Vec::new(),
    }
}

fn frames_of(sym: &Sym<'_>, raw_name: Option<&str>) -> Vec<SymFrame> {
    let mut frames = Vec::with_capacity(sym.inlined.len() + 1);
    for inlined in sym.inlined.iter().rev() {
        let function = function_name(&inlined.name);
        let (file, line) = location(inlined.code_info.as_ref());
        frames.push(SymFrame { system_name: function.clone(), function, file, line });
    }
    let function = function_name(&sym.name);
    let system_name =
        raw_name.filter(|n| !n.is_empty()).map_or_else(|| function.clone(), str::to_owned);
    let (file, line) = location(sym.code_info.as_deref());
    frames.push(SymFrame { function, system_name, file, line });
    frames
}

/// A display name: the demangled name without a Rust hash, `??` if empty.
fn function_name(name: &str) -> String {
    if name.is_empty() { "??".to_owned() } else { strip_rust_hash(name).to_owned() }
}

/// File path and line of a code location; `("", 0)` if unknown.
fn location(info: Option<&CodeInfo<'_>>) -> (String, u32) {
    match info {
        Some(info) => (info.to_path().to_string_lossy().into_owned(), info.line.unwrap_or(0)),
        None => (String::new(), 0),
    }
}

/// Strips a trailing legacy Rust hash, `::h` and 16 hex digits.
///
/// blazesym demangles with rustc-demangle's alternate form, which already
/// omits it; this catches names demangled some other way.
fn strip_rust_hash(name: &str) -> &str {
    const HASH_LEN: usize = "::h".len() + 16;
    let Some(cut) = name.len().checked_sub(HASH_LEN) else {
        return name;
    };
    match (name.get(..cut), name.get(cut..)) {
        (Some(head), Some(tail))
            if tail.starts_with("::h") && tail.bytes().skip(3).all(|b| b.is_ascii_hexdigit()) =>
        {
            head
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address of libc's `getpid`, as a probe into libc's text.
    fn libc_getpid_addr() -> u64 {
        let f: unsafe extern "C" fn() -> libc::pid_t = libc::getpid;
        f as usize as u64
    }
    use std::hint::black_box;

    #[inline(never)]
    fn lowprof_symbolize_probe() -> u64 {
        black_box(41) + 1
    }

    #[inline(always)]
    fn lowprof_inlined_leaf(x: u64) -> u64 {
        // Enough work that optimised builds keep instructions of their own
        // for this inlined frame.
        let mut acc = black_box(x);
        for i in 0..black_box(64u64) {
            acc = acc.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left((i % 7) as u32) ^ i;
        }
        acc
    }

    #[inline(never)]
    fn lowprof_inline_outer(x: u64) -> u64 {
        let y = black_box(x) ^ 0x55;
        lowprof_inlined_leaf(y) + black_box(1)
    }

    #[test]
    fn strips_hashes() {
        assert_eq!(strip_rust_hash("my_crate::work::h0123456789abcdef"), "my_crate::work");
        assert_eq!(strip_rust_hash("my_crate::work"), "my_crate::work");
        assert_eq!(strip_rust_hash("a::h0123456789abcdeg"), "a::h0123456789abcdeg");
        assert_eq!(strip_rust_hash("::h0123456789abcdef"), "");
        assert_eq!(strip_rust_hash("h"), "h");
        assert_eq!(strip_rust_hash("é::h0123456789abcdef"), "é");
    }

    #[test]
    fn resolves_a_local_function() {
        let mut s = Symbolizer::new();
        let addr = (lowprof_symbolize_probe as fn() -> u64) as usize as u64 + 1;
        s.resolve_all(&[addr]);
        let r = s.get(addr).unwrap();
        let mapping = &s.mappings()[r.mapping.unwrap()];
        assert_eq!(std::path::Path::new(&mapping.path), std::env::current_exe().unwrap());
        let physical = r.frames.last().unwrap();
        assert!(physical.function.ends_with("lowprof_symbolize_probe"), "{r:?}");
        assert!(!physical.function.contains("::h"), "{r:?}");
        assert!(physical.file.ends_with("symbolize.rs"), "{r:?}");
        assert!(physical.line > 0, "{r:?}");
        assert!(
            physical.system_name.starts_with("_ZN") || physical.system_name.starts_with("_R"),
            "{r:?}"
        );
        assert!(physical.system_name.contains("lowprof_symbolize_probe"), "{r:?}");
        assert_eq!(lowprof_symbolize_probe(), 42);
    }

    #[test]
    fn resolves_libc() {
        let mut s = Symbolizer::new();
        let addr = libc_getpid_addr();
        s.resolve_all(&[addr]);
        let r = s.get(addr).unwrap();
        let mapping = &s.mappings()[r.mapping.unwrap()];
        assert!(mapping.path.contains("libc"), "{mapping:?}");
        let physical = r.frames.last().unwrap();
        assert!(physical.function.contains("getpid"), "{r:?}");
    }

    #[test]
    fn unknown_addresses_are_empty() {
        let mut s = Symbolizer::new();
        let stack_local = 0u8;
        let data = black_box(&stack_local) as *const u8 as u64;
        s.resolve_all(&[8, 0, u64::MAX, data]);
        for addr in [8, 0, u64::MAX, data] {
            let r = s.get(addr).unwrap();
            assert_eq!(r, &Resolved { mapping: None, frames: vec![] });
        }
        assert_eq!(s.batches(), 0, "no blazesym call for unmapped addresses");
        assert_eq!(s.get(16), None);
    }

    #[test]
    fn caches_results() {
        let mut s = Symbolizer::new();
        let a = (lowprof_symbolize_probe as fn() -> u64) as usize as u64 + 1;
        let b = libc_getpid_addr();
        s.resolve_all(&[a, b, a]);
        assert_eq!(s.batches(), 1);
        let first = (s.get(a).cloned(), s.get(b).cloned());
        s.resolve_all(&[b, a]);
        assert_eq!(s.batches(), 1, "second call must be served from the cache");
        assert_eq!((s.get(a).cloned(), s.get(b).cloned()), first);
        assert_eq!(s.cached_addresses(), 2);

        // Other tests may `dlopen` meanwhile, which shifts mapping indices:
        // compare what the indices point to.
        let view = |s: &Symbolizer, addr| {
            let r = s.get(addr).unwrap();
            (s.mappings()[r.mapping.unwrap()].path.clone(), r.frames.clone())
        };
        let before = (view(&s, a), view(&s, b));
        s.refresh_mappings();
        assert_eq!((view(&s, a), view(&s, b)), before, "unchanged objects stay cached");
        s.resolve_all(&[a, b]);
        assert_eq!(s.batches(), 1);
    }

    #[test]
    fn refresh_drops_unmapped_results() {
        let mut s = Symbolizer::new();
        s.resolve_all(&[8]);
        assert!(s.get(8).is_some());
        s.refresh_mappings();
        assert_eq!(s.get(8), None);
    }

    #[test]
    fn refresh_finds_a_dlopened_library() {
        let mut s = Symbolizer::new();
        // SAFETY: loading libm runs no constructors that touch this test's
        // state; the name is a valid C string. The library stays loaded.
        let handle = unsafe { libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            assert!(std::env::var_os("CI").is_none(), "CI: libm.so.6 is not loadable");
            eprintln!("libm.so.6 not loadable here; nothing to check");
            return;
        }
        // SAFETY: `handle` is a live handle from `dlopen`, the name a C string.
        let cbrt = unsafe { libc::dlsym(handle, c"cbrt".as_ptr()) };
        assert!(!cbrt.is_null());
        let addr = cbrt as u64;
        let was_mapped = object_for(s.current_mappings(), addr).is_some();
        s.resolve_all(&[addr]);
        assert_eq!(s.get(addr).unwrap().frames.is_empty(), !was_mapped);

        s.refresh_mappings();
        s.resolve_all(&[addr]);
        let r = s.get(addr).unwrap();
        let mapping = &s.mappings()[r.mapping.unwrap()];
        assert!(mapping.path.contains("libm"), "{mapping:?}");
        assert!(mapping.build_id.is_some(), "{mapping:?}");
        assert!(r.frames.last().unwrap().function.contains("cbrt"), "{r:?}");
    }

    #[test]
    fn current_objects_come_first() {
        let mut s = Symbolizer::new();
        s.refresh_mappings();
        let current = s.current_mappings();
        assert!(!current.is_empty());
        assert!(current.windows(2).all(|w| w[0].limit <= w[1].start));
        assert_eq!(&s.mappings()[..current.len()], current);
        assert!(!s.is_retired(0));
        assert!(!s.is_retired(s.mappings().len()));
        for i in current.len()..s.mappings().len() {
            // Objects other tests unloaded meanwhile.
            assert!(s.is_retired(i));
        }
    }

    /// A fake object of `len` bytes at `start`, in no real mapping.
    fn fake_object(start: u64, len: u64, path: &str) -> ObjectMapping {
        ObjectMapping {
            start,
            limit: start + len,
            file_offset: 0,
            path: path.to_owned(),
            build_id: Some(vec![0xab; 20]),
            htlhash: None,
        }
    }

    /// The real current mappings plus `extra`, sorted; asserts that no
    /// extra object overlaps a real one.
    fn with_objects(real: &[ObjectMapping], extra: &[ObjectMapping]) -> Vec<ObjectMapping> {
        for e in extra {
            assert!(
                real.iter().all(|m| m.limit <= e.start || e.limit <= m.start),
                "{e:?} overlaps a real object"
            );
        }
        let mut all: Vec<ObjectMapping> = real.iter().chain(extra).cloned().collect();
        all.sort_by_key(|m| m.start);
        all
    }

    #[test]
    fn unmapped_objects_are_retired_with_their_results() {
        let mut s = Symbolizer::new();
        let real = s.current_mappings().to_vec();
        let gone = fake_object(0x1000_0000, 0x1000, "/nonexistent/libgone.so");
        let vdso = fake_object(0x1001_0000, 0x1000, "[fake-vdso]");
        s.set_mappings(with_objects(&real, &[gone.clone(), vdso]));
        let index = object_for(s.current_mappings(), gone.start + 0x10).unwrap();
        // A result cached while the object was mapped.
        let frame = SymFrame {
            function: "gone_fn".into(),
            system_name: "gone_fn".into(),
            file: String::new(),
            line: 0,
        };
        let cached = Resolved { mapping: Some(index), frames: vec![frame] };
        s.cache.insert(gone.start + 0x10, cached.clone());

        // Unloaded: retired after the current objects, the cached result
        // re-indexed to it; pseudo objects are not kept.
        s.set_mappings(real.clone());
        assert_eq!(s.current_mappings(), &real[..]);
        assert_eq!(s.mappings().len(), real.len() + 1, "{:?}", &s.mappings()[real.len()..]);
        let retired = real.len();
        assert!(s.is_retired(retired));
        assert_eq!(s.mappings()[retired], gone);
        let r = s.get(gone.start + 0x10).unwrap();
        assert_eq!((r.mapping, &r.frames), (Some(retired), &cached.frames));

        // A new address inside it keeps the mapping; its file is gone, so no
        // names and no blazesym call.
        let batches = s.batches();
        s.resolve_all(&[gone.start + 0x20, gone.limit]);
        assert_eq!(
            s.get(gone.start + 0x20),
            Some(&Resolved { mapping: Some(retired), frames: vec![] })
        );
        assert_eq!(s.get(gone.limit).unwrap().mapping, None, "one past the end is outside");
        assert_eq!(s.batches(), batches);

        // Still retired after another refresh; current again once remapped.
        s.set_mappings(real.clone());
        assert_eq!(s.get(gone.start + 0x10).unwrap().mapping, Some(retired));
        s.set_mappings(with_objects(&real, std::slice::from_ref(&gone)));
        assert_eq!(s.mappings().len(), real.len() + 1);
        let again = object_for(s.current_mappings(), gone.start).unwrap();
        assert!(!s.is_retired(again));
        assert_eq!(s.get(gone.start + 0x10).unwrap().mapping, Some(again));
    }

    #[test]
    fn retired_objects_are_capped_newest_first() {
        let mut s = Symbolizer::new();
        let real = s.current_mappings().to_vec();
        let object = |i: u64| fake_object(0x1000_0000 + i * 0x1000, 0x1000, &format!("/gone/{i}"));
        for i in 0..RETIRED_CAP as u64 + 8 {
            // Loaded, then unloaded before the next one is loaded.
            s.set_mappings(with_objects(&real, &[object(i)]));
            s.set_mappings(real.clone());
        }
        let retired = &s.mappings()[real.len()..];
        assert_eq!(retired.len(), RETIRED_CAP);
        assert_eq!(retired[0], object(RETIRED_CAP as u64 + 7), "most recently unmapped first");
        assert_eq!(retired[RETIRED_CAP - 1], object(8));
    }

    #[test]
    fn retired_object_is_symbolized_from_its_file() {
        let mut s = Symbolizer::new();
        let real = s.current_mappings().to_vec();
        let probe = (lowprof_symbolize_probe as fn() -> u64) as usize as u64 + 1;
        let exe = &real[object_for(&real, probe).unwrap()];
        assert!(exe.build_id.is_some(), "the test binary has a GNU build id: {exe:?}");
        // The executable's text as if it had been loaded elsewhere, then
        // unloaded: same file, same build id, another range.
        let moved = ObjectMapping {
            start: 0x1000_0000,
            limit: 0x1000_0000 + (exe.limit - exe.start),
            ..exe.clone()
        };
        s.set_mappings(with_objects(&real, std::slice::from_ref(&moved)));
        s.set_mappings(real.clone());
        let addr = probe - exe.start + moved.start;
        s.resolve_all(&[addr]);
        let r = s.get(addr).unwrap();
        assert!(s.is_retired(r.mapping.unwrap()), "{r:?}");
        let physical = r.frames.last().unwrap();
        assert!(physical.function.ends_with("lowprof_symbolize_probe"), "{r:?}");
        assert!(physical.system_name.contains("lowprof_symbolize_probe"), "{r:?}");

        // The same file with another build id (replaced on disk): no names.
        let replaced = ObjectMapping {
            build_id: Some(vec![0; 20]),
            start: 0x2000_0000,
            limit: 0x2000_0000 + (exe.limit - exe.start),
            ..exe.clone()
        };
        s.set_mappings(with_objects(&real, std::slice::from_ref(&replaced)));
        s.set_mappings(real.clone());
        let addr = probe - exe.start + replaced.start;
        s.resolve_all(&[addr]);
        let r = s.get(addr).unwrap();
        assert!(s.is_retired(r.mapping.unwrap()) && r.frames.is_empty(), "{r:?}");
    }

    #[test]
    fn reports_inlined_frames() {
        assert_ne!(lowprof_inline_outer(black_box(3)), 0);
        let mut s = Symbolizer::new();
        let start = (lowprof_inline_outer as fn(u64) -> u64) as usize as u64;
        let addrs: Vec<u64> = (0..256).map(|i| start + i).collect();
        s.resolve_all(&addrs);
        let inlined = addrs.iter().filter_map(|&a| s.get(a)).find(|r| {
            r.frames.len() >= 2
                && r.frames[0].function.ends_with("lowprof_inlined_leaf")
                && r.frames.last().is_some_and(|f| f.function.ends_with("lowprof_inline_outer"))
        });
        let r = inlined.unwrap_or_else(|| {
            let seen: Vec<_> = addrs.iter().filter_map(|&a| s.get(a)).collect();
            panic!("no inlined frame found: {seen:#?}")
        });
        let (leaf, outer) = (&r.frames[0], r.frames.last().unwrap());
        assert!(
            leaf.file.ends_with("symbolize.rs") && outer.file.ends_with("symbolize.rs"),
            "{r:?}"
        );
        // The leaf's line is inside `lowprof_inlined_leaf`, the outer's is the
        // call site in `lowprof_inline_outer`, which comes later in the file.
        assert!(leaf.line > 0 && outer.line > leaf.line, "{r:?}");
        assert_eq!(leaf.system_name, leaf.function);
    }

    /// 1000 addresses spread over this test binary's text: nearly all are
    /// named from its debug info, the cache gives the same answers, and so
    /// does every lookup after `release_debug_info`. Prints the cost (time
    /// and RSS; not asserted: other tests share the process): see it with
    /// `cargo test -p lowprof --lib symbolize::tests::spread -- --nocapture`.
    #[test]
    fn spread_over_the_text_named_cached_and_kept_after_release() {
        fn rss_kib() -> (u64, u64) {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let field = |name: &str| {
                let line = status.lines().find(|l| l.starts_with(name)).unwrap();
                line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
            };
            (field("RssAnon:"), field("RssFile:"))
        }
        let maps = read_object_mappings().unwrap();
        let here = (lowprof_symbolize_probe as fn() -> u64) as usize as u64;
        let exe = &maps[object_for(&maps, here).unwrap()];
        let step = (exe.limit - exe.start) / 1000;
        let addrs: Vec<u64> = (0..1000).map(|i| exe.start + i * step + 1).collect();
        let names = |s: &Symbolizer| -> Vec<Option<Vec<String>>> {
            addrs
                .iter()
                .map(|&a| s.get(a).map(|r| r.frames.iter().map(|f| f.function.clone()).collect()))
                .collect()
        };
        let rss0 = rss_kib();
        let t = std::time::Instant::now();
        let mut s = Symbolizer::new();
        s.resolve_all(&addrs);
        let first = t.elapsed();
        let rss1 = rss_kib();
        let first_names = names(&s);
        let t = std::time::Instant::now();
        s.resolve_all(&addrs);
        let cached = t.elapsed();
        assert_eq!(names(&s), first_names, "the cache answers as the first lookup did");
        let frames: usize = addrs.iter().filter_map(|&a| s.get(a)).map(|r| r.frames.len()).sum();
        let known =
            addrs.iter().filter(|&&a| s.get(a).is_some_and(|r| !r.frames.is_empty())).count();
        println!(
            "{} ({} KiB text): first {first:?}, cached {cached:?}; {known}/1000 known, {frames} \
             frames; RSS +{} KiB anon, +{} KiB file-backed",
            exe.path,
            (exe.limit - exe.start) / 1024,
            rss1.0.saturating_sub(rss0.0),
            rss1.1.saturating_sub(rss0.1),
        );
        // Padding between functions has no name; 989 of 1000 measured.
        assert!(known >= 900, "{known} of 1000 addresses in the text named");
        s.release_debug_info();
        // SAFETY: `malloc_trim` only returns free heap memory to the kernel.
        unsafe { libc::malloc_trim(0) };
        println!("after release_debug_info + malloc_trim: RSS +{} KiB anon", {
            rss_kib().0.saturating_sub(rss0.0)
        });
        s.resolve_all(&addrs);
        assert_eq!(names(&s), first_names, "the same answers after release_debug_info");
    }
}
