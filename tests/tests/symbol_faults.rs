//! Symbolization faults end to end: code the symbolizer cannot name (a
//! stripped executable), code loaded after the profiler started (`dlopen`),
//! and code gone before the profile is built (`dlclose`, and its file
//! deleted). Whatever happens, the profiled program must not crash or panic,
//! and every sampled address must reach the profile with a mapping that
//! contains it. Profiles are read back with `go tool pprof -raw`.
//!
//! What the profile shows for a library unloaded before the profile is built
//! (checked below): its locations keep their addresses and the library's own
//! mapping — path, range, file offset and GNU build id as they were while it
//! was loaded (the symbolizer saw it, on its own poll of the loader or at an
//! earlier profile, and retired it when it vanished) — with function names
//! read again from the file on disk if that file still has the same build id,
//! and no names if it is gone or changed. The profile carries a comment
//! naming the unloaded objects. An address in no object the symbolizer ever
//! saw would get the placeholder mapping `[unknown]` (unit-tested in
//! `exporter-std/src/assemble.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lowprof_tests::pprof_tool::{RawProfile, RawSample, parse_raw, pprof, require_go};
use lowprof_tests::stats::{assert_within_4_sigma, sigma_bytes};

const BIN: &str = env!("CARGO_BIN_EXE_symbol_faults");
/// The binary's heap interval (its `HEAP_INTERVAL`).
const MEAN: u64 = 64 << 10;
/// How long one run of the test binary may take before it counts as hung.
const RUN_DEADLINE: Duration = Duration::from_secs(30);
/// The C fixture's functions.
const LIB_FUNCTIONS: [&str; 4] =
    ["lowprof_fault_spin", "lowprof_fault_burn", "lowprof_fault_call", "thread_cpu_ns"];

/// Whether `tool` runs (`tool --version`); under `CI` a missing tool fails.
fn require_tool(tool: &str, why: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|out| out.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("`{tool}` is required to {why} (binutils / gcc); it is missing under CI=true");
        }
        eprintln!("SKIPPED: `{tool}` not found, needed to {why} (it fails under CI=true)");
    }
    found
}

/// One location of `go tool pprof -raw`.
#[derive(Debug)]
struct Loc {
    address: u64,
    mapping: Option<u64>,
    /// Function names, innermost inlined first; empty if unsymbolized.
    functions: Vec<String>,
}

/// One mapping of `go tool pprof -raw`.
#[derive(Debug)]
struct Map {
    start: u64,
    limit: u64,
    file: String,
    build_id: String,
    has_functions: bool,
}

/// A profile as `go tool pprof -raw` prints it, with its mappings.
struct Full {
    raw: RawProfile,
    locs: HashMap<u64, Loc>,
    maps: HashMap<u64, Map>,
    comments: Vec<String>,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn read(go: &Path, file: &Path) -> Full {
    let text = pprof(go, &["-raw", file.to_str().unwrap()]);
    let mut full = Full {
        raw: parse_raw(&text),
        locs: HashMap::new(),
        maps: HashMap::new(),
        comments: Vec::new(),
    };
    let mut section = "";
    let mut current = None;
    for line in text.lines() {
        match line.trim_end() {
            "Locations" | "Mappings" => {
                section = line.trim_end();
                continue;
            }
            "Samples:" => {
                section = "Samples";
                continue;
            }
            _ => {}
        }
        if let Some(comment) = line.strip_prefix("Comment: ") {
            full.comments.push(comment.to_owned());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match section {
            "Locations" => {
                let id = words.first().and_then(|w| w.strip_suffix(':')?.parse::<u64>().ok());
                if let Some(id) = id {
                    let mut rest = &words[2..];
                    let mapping = rest.first().and_then(|w| w.strip_prefix("M=")).map(|m| {
                        rest = &rest[1..];
                        m.parse().unwrap()
                    });
                    let functions = rest.first().map(|f| f.to_string()).into_iter().collect();
                    full.locs.insert(id, Loc { address: hex(words[1]), mapping, functions });
                    current = Some(id);
                } else if let (Some(id), Some(function)) = (current, words.first()) {
                    full.locs.get_mut(&id).unwrap().functions.push(function.to_string());
                }
            }
            "Mappings" if !words.is_empty() => {
                let id = words[0].trim_end_matches(':').parse().unwrap();
                let range: Vec<u64> = words[1].split('/').map(hex).collect();
                let build_id = words.get(3).filter(|w| !w.starts_with('[')).unwrap_or(&"");
                full.maps.insert(
                    id,
                    Map {
                        start: range[0],
                        limit: range[1],
                        file: words[2].to_owned(),
                        build_id: build_id.to_string(),
                        has_functions: line.contains("[FN]"),
                    },
                );
            }
            _ => {}
        }
    }
    full
}

impl Full {
    /// The mapping of location `id`.
    fn map_of(&self, id: u64) -> &Map {
        let loc = &self.locs[&id];
        &self.maps[&loc.mapping.unwrap_or_else(|| panic!("location {loc:?} has no mapping"))]
    }

    /// The mapping of `loc`, if it has one.
    fn map_of_opt(&self, loc: &Loc) -> Option<&Map> {
        self.maps.get(&loc.mapping?)
    }

    /// Sum of `sample_type` over samples that satisfy `pred`.
    fn total_where(&self, sample_type: &str, pred: impl Fn(&RawSample) -> bool) -> i64 {
        let i = self.raw.index(sample_type);
        self.raw.samples.iter().filter(|s| pred(s)).map(|s| s.values[i]).sum()
    }

    /// Whether any location of `sample` is in the mapping named `file`.
    fn passes_through(&self, sample: &RawSample, file: &str) -> bool {
        sample.locations.iter().any(|&l| self.map_of(l).file == file)
    }

    /// The invariants every profile must keep, fault or not: samples
    /// present, every location has a real address and a mapping that
    /// contains it (the synthetic `lowprof::dropped` frame aside), and a
    /// mapping says it has functions exactly when one of its locations does.
    fn check_valid(&self, what: &str) {
        assert!(!self.raw.samples.is_empty(), "{what}: no samples");
        for s in &self.raw.samples {
            assert!(!s.locations.is_empty(), "{what}: a sample without locations");
            for id in &s.locations {
                let loc = &self.locs[id];
                if loc.functions.iter().any(|f| f == "lowprof::dropped") {
                    continue;
                }
                assert_ne!(loc.address, 0, "{what}: {loc:?}");
                let map = self.map_of(*id);
                assert!(
                    map.start <= loc.address && loc.address < map.limit,
                    "{what}: {loc:?} outside its mapping {map:?}"
                );
            }
        }
        for (id, map) in &self.maps {
            let named =
                self.locs.values().any(|l| l.mapping == Some(*id) && !l.functions.is_empty());
            assert_eq!(map.has_functions, named, "{what}: {map:?}");
        }
    }

    /// The locations whose address lies in `[start, end)`.
    fn locs_in(&self, (start, end): (u64, u64)) -> Vec<&Loc> {
        self.locs.values().filter(|l| start <= l.address && l.address < end).collect()
    }
}

/// Runs the test binary; fails if it crashes, fails, or hangs (killed after
/// [`RUN_DEADLINE`]; a run takes about 2 s).
fn run(exe: &Path, args: &[&str]) -> String {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run test binary");
    let deadline = Instant::now() + RUN_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{} {args:?} hung (killed after {RUN_DEADLINE:?})", exe.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {}\n{stdout}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "ok"), "{stdout}");
    stdout
}

fn value<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap()
}

/// The GNU build id of an ELF file, as `readelf -n` (binutils) prints it.
fn build_id_of_file(file: &Path) -> String {
    let out = Command::new("readelf").arg("-n").arg(file).output().expect("run readelf");
    assert!(out.status.success(), "readelf: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.lines().find_map(|l| l.trim().strip_prefix("Build ID: "));
    id.unwrap_or_else(|| panic!("no build id in {}:\n{text}", file.display())).to_owned()
}

/// Compiles tests/fixtures/fault_lib.c into `dir`; `None` (skipped) without `cc`.
fn build_library(dir: &Path) -> Option<PathBuf> {
    if !require_tool("cc", "compile the shared library fixture") {
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fault_lib.c");
    let lib = dir.canonicalize().unwrap().join("libfault.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-fno-omit-frame-pointer", "-g", "-Wl,--build-id", "-o"])
        .arg(&lib)
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(lib)
}

/// What a run of `symbol_faults dlopen` shows about its library.
struct LibRun {
    cpu: Full,
    heap: Full,
    lib: String,
    text: (u64, u64),
    build_id: String,
    stdout: String,
    dir: tempfile::TempDir,
}

fn run_library(mode: &str) -> Option<LibRun> {
    let go = require_go()?;
    let dir = tempfile::tempdir().unwrap();
    let lib = build_library(dir.path())?;
    if !require_tool("readelf", "read the library's build id") {
        return None;
    }
    // The truth for the profile's mapping, read from the file by binutils
    // now (the `close-delete` run deletes it).
    let build_id = build_id_of_file(&lib);
    assert_eq!(build_id.len(), 40, "cc was asked for a GNU build id: {build_id}");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let t = std::time::Instant::now();
    let stdout =
        run(Path::new(BIN), &["dlopen", out.to_str().unwrap(), lib.to_str().unwrap(), mode]);
    eprintln!("{mode}: ran in {:.2} s\n{stdout}", t.elapsed().as_secs_f64());
    let (start, end) = value(&stdout, "lib_text").split_once('-').unwrap();
    // What the program itself read from its mappings while the library was
    // loaded (lowprof's own reader) agrees.
    assert_eq!(value(&stdout, "lib_build_id"), build_id, "{stdout}");
    let unloaded = value(&stdout, "unloaded") == "1";
    assert_eq!(unloaded, mode != "keep", "{mode}: is the library mapped at the end? {stdout}");
    let run = LibRun {
        cpu: read(&go, &out.join("cpu.pb.gz")),
        heap: read(&go, &out.join("heap.pb.gz")),
        lib: lib.to_str().unwrap().to_owned(),
        text: (hex(start), hex(end)),
        build_id,
        stdout,
        dir,
    };
    run.cpu.check_valid(&format!("{mode} cpu"));
    run.heap.check_valid(&format!("{mode} heap"));
    Some(run)
}

impl LibRun {
    /// Checks that every location inside the library's code is in the
    /// library's mapping (as it was while loaded), and, if `named`, that
    /// each carries one of the fixture's function names, else none. Returns
    /// the CPU time whose leaf is in the library, and how much of it has
    /// `lowprof_fault_burn` as the caller of `lowprof_fault_spin`.
    fn check_library(&self, what: &str, named: bool) -> (f64, f64) {
        for (kind, p) in [("cpu", &self.cpu), ("heap", &self.heap)] {
            let locs = p.locs_in(self.text);
            assert!(!locs.is_empty(), "{what} {kind}: no location in the library");
            for loc in locs {
                let map = &p.maps[&loc.mapping.unwrap()];
                assert_eq!(map.file, self.lib, "{what} {kind}: {loc:?} in {map:?}");
                assert_eq!(map.build_id, self.build_id, "{what} {kind}: {map:?}");
                assert_eq!((map.start, map.limit), self.text, "{what} {kind}: {map:?}");
                if named {
                    assert_eq!(loc.functions.len(), 1, "{what} {kind}: {loc:?}");
                    assert!(LIB_FUNCTIONS.contains(&loc.functions[0].as_str()), "{loc:?}");
                } else {
                    assert!(loc.functions.is_empty(), "{what} {kind}: {loc:?}");
                }
            }
        }
        // Heap stacks pass through lowprof_fault_call: 16 blocks of 2 MiB
        // (the `bytes` label: the vector that keeps them grows in the same
        // callback, and a sample of its small blocks would weigh ~64 KiB).
        let size = 2 << 20;
        let through = self.heap.total_where("alloc_space", |s| {
            self.heap.passes_through(s, &self.lib)
                && s.labels.iter().any(|(k, v)| {
                    k == "bytes" && v.split_whitespace().next() == Some(&size.to_string())
                })
        });
        assert_within_4_sigma(
            &format!("{what}: alloc_space through the library"),
            through as f64,
            (16 * size) as f64,
            sigma_bytes(16, size, MEAN),
        );
        let cpu = &self.cpu;
        let in_lib = |s: &RawSample| cpu.map_of(s.locations[0]).file == self.lib;
        let leaf_ns = cpu.total_where("cpu", in_lib) as f64;
        let with_caller = cpu.total_where("cpu", |s| {
            in_lib(s)
                && s.locations.get(1).is_some_and(|&l| {
                    let addr = cpu.locs[&l].address;
                    cpu.map_of(l).file == self.lib && addr >= self.text.0 && addr < self.text.1
                })
        }) as f64;
        eprintln!(
            "{what}: {:.3} s of cpu with the leaf in the library, {:.1}% with its caller there \
             too; {:.1} MiB allocated through it",
            leaf_ns / 1e9,
            100.0 * with_caller / leaf_ns,
            through as f64 / f64::from(1 << 20),
        );
        (leaf_ns, with_caller)
    }
}

/// 1. A stripped executable: no symbols, no DWARF. The program runs to the
///    end, the profile is valid, every frame in the executable keeps its
///    address and the executable's mapping, named after the stripped file
///    and carrying its build id (so the profile can be symbolized offline
///    against the unstripped build); names only from what is left (none for
///    Rust functions). Other objects (libc) are still symbolized.
#[test]
fn stripped_executable() {
    let Some(go) = require_go() else { return };
    if !require_tool("strip", "strip a copy of the test binary")
        || !require_tool("readelf", "read the unstripped binary's build id")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let exe = dir_path.join("symbol_faults_stripped");
    std::fs::copy(BIN, &exe).unwrap();
    let out = Command::new("strip").arg(&exe).output().unwrap();
    assert!(out.status.success(), "strip: {}", String::from_utf8_lossy(&out.stderr));
    let (before, after) =
        (std::fs::metadata(BIN).unwrap().len(), std::fs::metadata(&exe).unwrap().len());
    assert!(after < before / 2, "strip left {after} of {before} bytes");

    let stdout = run(&exe, &["burn", dir_path.to_str().unwrap()]);
    let build_id = value(&stdout, "exe_build_id");
    assert_eq!(build_id.len(), 40, "{stdout}");
    // The unstripped build has the same id: the profile can be symbolized
    // offline against it (PPROF_BINARY_PATH matches by build id).
    assert_eq!(build_id_of_file(Path::new(BIN)), build_id, "strip changed the build id");
    let exe_name = exe.to_str().unwrap();
    for kind in ["cpu", "heap"] {
        let p = read(&go, &dir_path.join(format!("{kind}.pb.gz")));
        p.check_valid(&format!("stripped {kind}"));
        let exe_maps: Vec<(&u64, &Map)> =
            p.maps.iter().filter(|(_, m)| m.file == exe_name).collect();
        assert_eq!(exe_maps.len(), 1, "{kind}: one mapping for the executable: {:?}", p.maps);
        let (&exe_map, map) = exe_maps[0];
        assert_eq!(map.build_id, build_id, "{kind}: strip keeps the build id note");
        let in_exe: Vec<&Loc> = p.locs.values().filter(|l| l.mapping == Some(exe_map)).collect();
        let named: Vec<&&Loc> = in_exe.iter().filter(|l| !l.functions.is_empty()).collect();
        eprintln!(
            "stripped {kind}: {} locations in the executable, {} named {:?}",
            in_exe.len(),
            named.len(),
            named.iter().map(|l| &l.functions).collect::<Vec<_>>()
        );
        assert!(!in_exe.is_empty(), "{kind}: no location in the executable");
        for l in &named {
            assert!(
                !l.functions.iter().any(|f| f.contains("symbol_faults::")),
                "{kind}: a Rust name survived strip? {l:?}"
            );
        }
        // libc was not stripped: still named.
        assert!(
            p.locs.values().any(|l| p.map_of_opt(l).is_some_and(|m| m.file.contains("libc"))
                && !l.functions.is_empty()),
            "{kind}: libc frames lost their names"
        );
    }
    let cpu = read(&go, &dir_path.join("cpu.pb.gz"));
    let leaf_in_exe =
        cpu.total_where("cpu", |s| cpu.map_of(s.locations[0]).file == exe_name) as f64;
    eprintln!("stripped: {:.3} s of cpu with the leaf in the executable", leaf_in_exe / 1e9);
    assert!(leaf_in_exe >= 0.4e9, "0.6 s burned in the executable, {leaf_in_exe} ns sampled");
}

/// 2. A library `dlopen`ed after the profiler started: its samples are in a
///    mapping naming the .so, with its build id, symbolized from its DWARF.
#[test]
fn dlopened_library() {
    let Some(run) = run_library("keep") else { return };
    let (leaf, with_caller) = run.check_library("dlopen", true);
    assert!(leaf >= 0.7e9, "1 s burned in the library, {leaf} ns sampled");
    assert!(with_caller >= 0.9 * leaf, "frame chain through the library broken");
    let spin = run.cpu.raw.total_for("cpu", "lowprof_fault_spin") as f64;
    assert!(spin >= 0.7e9, "lowprof_fault_spin: {spin} ns");
    assert!(run.cpu.comments.iter().all(|c| !c.contains("unloaded")), "{:?}", run.cpu.comments);
}

/// 3. A library `dlclose`d before any profile was built: its samples keep
///    their addresses and its mapping; names come from its file on disk.
#[test]
fn dlclosed_library() {
    let Some(run) = run_library("close") else { return };
    let (leaf, _) = run.check_library("dlclose", true);
    assert!(leaf >= 0.7e9, "1 s burned in the library, {leaf} ns sampled");
    for p in [&run.cpu, &run.heap] {
        let note = p.comments.iter().find(|c| c.contains("unloaded before this profile"));
        assert!(note.is_some_and(|c| c.contains(&run.lib)), "{:?}", p.comments);
    }
}

/// 3b. As 3, with a profile built while the library was loaded: the second
///     profile, built after `dlclose`, names the same addresses the same way.
#[test]
fn dlclosed_library_after_a_profile() {
    let Some(run) = run_library("close-warm") else { return };
    run.check_library("dlclose after a profile", true);
    let go = require_go().unwrap();
    let warm = read(&go, &run.dir.path().join("out/cpu-warm.pb.gz"));
    warm.check_valid("warm cpu");
    let names = |p: &Full| -> HashMap<u64, Vec<String>> {
        p.locs_in(run.text).into_iter().map(|l| (l.address, l.functions.clone())).collect()
    };
    let (before, after) = (names(&warm), names(&run.cpu));
    let common: Vec<_> = after.keys().filter(|a| before.contains_key(a)).collect();
    assert!(!common.is_empty(), "no address sampled in both halves");
    for a in common {
        assert_eq!(before[a], after[a], "{a:#x} named differently after dlclose");
    }
}

/// 3c. A library `dlclose`d and its file deleted before the profile is
///     built: nothing to read names from, yet addresses and the mapping
///     (path and build id as loaded) stay, and nothing crashes.
#[test]
fn dlclosed_and_deleted_library() {
    let Some(run) = run_library("close-delete") else { return };
    assert!(!Path::new(&run.lib).exists());
    let (leaf, _) = run.check_library("dlclose + delete", false);
    assert!(leaf >= 0.7e9, "1 s burned in the library, {leaf} ns sampled");
    eprintln!(
        "{}",
        run.stdout.lines().filter(|l| l.contains("samples")).collect::<Vec<_>>().join(" ")
    );
}
