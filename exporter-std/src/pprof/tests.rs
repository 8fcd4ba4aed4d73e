//! Tests of the pprof encoder: round trip, `CheckValid` invariants, the
//! golden file, atomic writes, and `go tool pprof` as a real consumer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;

use super::{decode, encode, encode_gzip, fixture, proto, write_atomically, write_file};
use crate::profile::{Line, Profile, Sample};

fn raw(profile: &Profile) -> proto::Profile {
    proto::Profile::decode(encode(profile).as_slice()).expect("encode yields a valid message")
}

#[test]
fn round_trip_raw_and_gzip() {
    let profile = fixture::heap();
    assert_eq!(decode(&encode(&profile)).expect("raw decodes"), profile);
    assert_eq!(decode(&encode_gzip(&profile).expect("gzip")).expect("gzip decodes"), profile);
}

#[test]
fn string_table_starts_empty_and_is_unique() {
    let message = raw(&fixture::heap());
    assert_eq!(message.string_table.first().map(String::as_str), Some(""));
    let unique: HashSet<&String> = message.string_table.iter().collect();
    assert_eq!(unique.len(), message.string_table.len(), "{:?}", message.string_table);
}

fn assert_ids_nonzero_unique(ids: impl Iterator<Item = u64>) -> HashSet<u64> {
    let mut seen = HashSet::new();
    for id in ids {
        assert_ne!(id, 0);
        assert!(seen.insert(id), "duplicate id {id}");
    }
    seen
}

#[test]
fn ids_are_nonzero_unique_and_resolve() {
    let message = raw(&fixture::heap());
    let mappings = assert_ids_nonzero_unique(message.mapping.iter().map(|m| m.id));
    let locations = assert_ids_nonzero_unique(message.location.iter().map(|l| l.id));
    let functions = assert_ids_nonzero_unique(message.function.iter().map(|f| f.id));
    for location in &message.location {
        assert!(location.mapping_id == 0 || mappings.contains(&location.mapping_id));
        assert!(location.line.iter().all(|n| functions.contains(&n.function_id)));
    }
    for sample in &message.sample {
        assert!(sample.location_id.iter().all(|id| locations.contains(id)));
        assert_eq!(sample.value.len(), message.sample_type.len());
    }
}

#[test]
fn fields_follow_pprof_conventions() {
    let message = raw(&fixture::heap());
    let text = |i: i64| message.string_table[usize::try_from(i).expect("index")].as_str();
    assert_eq!(text(message.default_sample_type), "inuse_space");
    assert_eq!(message.time_nanos, 1_700_000_000_123_456_789);
    assert_eq!(message.duration_nanos, 10_000_000_000);
    // Only the app mapping has a location with two lines.
    assert!(message.mapping[0].has_inline_frames);
    assert!(!message.mapping[1].has_inline_frames);
    // Inlined callee first, physical caller last; no mapping is id 0.
    let inlined: Vec<&str> = message.location[1]
        .line
        .iter()
        .map(|n| text(message.function[(n.function_id - 1) as usize].name))
        .collect();
    assert_eq!(inlined, ["alloc::vec::Vec<T>::push", "app::load"]);
    assert_eq!(message.location[3].mapping_id, 0);
    let size = &message.sample[0].label[1];
    assert_eq!(
        (text(size.key), size.str, size.num, text(size.num_unit)),
        ("size", 0, 512, "bytes")
    );
    assert_eq!(message.sample[1].label[0].num_unit, 0);
    assert_eq!(
        message.comment.iter().map(|&c| text(c)).collect::<Vec<_>>(),
        ["lowprof test fixture"]
    );
}

#[test]
fn invalid_model_is_trimmed_not_fatal() {
    let mut profile = fixture::heap();
    profile.samples.push(Sample { locations: vec![2], values: vec![1], labels: vec![] });
    profile.samples.push(Sample { locations: vec![99], values: vec![1, 2, 3, 4], labels: vec![] });
    profile.locations[2].mapping = Some(7);
    profile.locations[2].lines.push(Line { function: 42, line: 1 });
    profile.default_sample_type = Some(9);
    let decoded = decode(&encode(&profile)).expect("trimmed output decodes");
    assert_eq!(decoded.samples, fixture::heap().samples);
    assert_eq!(decoded.locations[2].mapping, None);
    assert_eq!(decoded.locations[2].lines, fixture::heap().locations[2].lines);
    assert_eq!(decoded.default_sample_type, None);
    assert_eq!(
        decoded.comments.last().map(String::as_str),
        Some("lowprof: the pprof encoder dropped 2 invalid sample(s) and 3 invalid reference(s)")
    );
}

#[test]
fn samples_without_sample_types_are_dropped() {
    let mut profile = fixture::heap();
    profile.sample_types.clear();
    profile.default_sample_type = None;
    let message = raw(&profile);
    assert!(message.sample.is_empty());
}

#[test]
fn decode_rejects_garbage() {
    assert!(decode(&[0x1f, 0x8b, 0, 1, 2]).is_err());
    assert!(decode(b"\xff\xff\xff").is_err());
    // An empty message has no string table, so no "" at index 0.
    assert!(matches!(decode(&[]), Err(super::DecodeError::FirstString)));
}

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/heap.pb");

/// A change detector: the golden file is this encoder's own output, so it
/// proves the bytes did not change unnoticed, not that they are right (the
/// `go tool pprof` tests and the decode round trips do that).
#[test]
fn golden_heap_profile() {
    let bytes = encode(&fixture::heap());
    if std::env::var_os("LOWPROF_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        assert!(
            std::env::var_os("CI").is_none(),
            "LOWPROF_UPDATE_GOLDEN under CI would pass by rewriting the file it checks"
        );
        std::fs::create_dir_all(Path::new(GOLDEN).parent().expect("has a parent"))
            .expect("mkdir golden");
        std::fs::write(GOLDEN, &bytes).expect("write golden");
        return;
    }
    let golden = std::fs::read(GOLDEN).unwrap_or_else(|e| {
        panic!("cannot read {GOLDEN}: {e}; create it with LOWPROF_UPDATE_GOLDEN=1 cargo test -p lowprof --lib golden")
    });
    assert!(
        bytes == golden,
        "pprof encoding of the fixture differs from {GOLDEN} ({} vs {} bytes). If the change is intended, \
         regenerate it with LOWPROF_UPDATE_GOLDEN=1 cargo test -p lowprof --lib golden and review the diff",
        bytes.len(),
        golden.len()
    );
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp-")))
        .collect()
}

#[test]
fn write_file_replaces_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("heap.pb.gz");
    std::fs::write(&path, b"old").expect("seed");
    write_file(&fixture::heap(), &path).expect("write");
    assert_eq!(decode(&std::fs::read(&path).expect("read")).expect("decode"), fixture::heap());
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn failed_writes_leave_no_temp_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The parent does not exist: nothing can be created.
    assert!(write_atomically(&dir.path().join("missing/heap.pb.gz"), b"x").is_err());
    // The target is a directory: the temp file is written, the rename fails.
    let target = dir.path().join("occupied");
    std::fs::create_dir(&target).expect("mkdir");
    assert!(write_atomically(&target, b"x").is_err());
    assert!(target.is_dir());
    // No file name at all.
    assert!(write_atomically(Path::new("/"), b"x").is_err());
    assert!(temp_files(dir.path()).is_empty(), "{:?}", temp_files(dir.path()));
}

/// The `go` binary, from `PATH` or Debian's `golang-go` location.
fn go_binary() -> Option<PathBuf> {
    let on_path = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if on_path {
        return Some(PathBuf::from("go"));
    }
    let debian = Path::new("/usr/lib/go/bin/go");
    debian.exists().then(|| debian.to_path_buf())
}

/// Runs `go tool pprof <args> <file>` and returns its standard output.
fn go_pprof(go: &Path, args: &[&str], file: &Path) -> String {
    let output = Command::new(go)
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .output()
        .expect("run go tool pprof");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "go tool pprof {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn go_tool_pprof_reads_our_files() {
    let Some(go) = go_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `go` is missing: install Debian package golang-go"
        );
        eprintln!("note: `go` not found; skipping the go tool pprof check (install golang-go)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broken = fixture::heap();
    broken.samples.push(Sample { locations: vec![99], values: vec![1], labels: vec![] });
    broken.locations[2].mapping = Some(7);
    for (name, profile) in [("heap.pb.gz", fixture::heap()), ("trimmed.pb.gz", broken)] {
        let path = dir.path().join(name);
        write_file(&profile, &path).expect("write");
        let raw = go_pprof(&go, &["-raw", "-symbolize=none"], &path);
        for function in ["alloc::vec::Vec<T>::push", "app::load", "main", "/usr/bin/app"] {
            assert!(raw.contains(function), "{name}: -raw lacks {function}:\n{raw}");
        }
        let top = go_pprof(&go, &["-top", "-symbolize=none", "-sample_index=alloc_space"], &path);
        assert!(top.contains("app::load"), "{name}: -top lacks app::load:\n{top}");
    }
}
