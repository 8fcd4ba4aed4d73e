//! Hostile output locations (issue 7): `write_pprof` and
//! `write_flamegraph` into a directory that does not exist, a read-only
//! directory and a full file system give a typed [`Error::Io`] that names
//! the file and says what to change, leave an older file at that path as it
//! was, and leave no partial or temporary file behind.
//!
//! The read-only and full file systems are small tmpfs mounts inside a
//! temporary directory, made only when running as root (and unmounted on
//! drop); otherwise the read-only case uses a `chmod 0555` directory and
//! the tmpfs full-disk case is skipped with a message. A file size limit
//! (`RLIMIT_FSIZE`, in a child process) fails a write midway on every
//! machine, and the atomic writer's unit tests inject ENOSPC midway too. The property tests over the
//! builder options and `OTEL_*` variables are unit tests in
//! `exporter-std/src/config/hostile.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use lowprof::profile::{
    Function, Line, Location, Mapping, Profile, ProfileKind, Sample, ValueType,
};
use lowprof::{Error, pprof};

/// A CPU profile of `n` stacks whose function names are pseudo-random, so
/// its gzip-compressed pprof is about `n * 40` bytes.
fn profile(n: usize) -> Profile {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let functions: Vec<Function> = (0..n)
        .map(|i| {
            let name = format!("app::f{i}_{:016x}{:016x}", next(), next());
            Function {
                name: name.clone(),
                system_name: name,
                filename: String::new(),
                start_line: 0,
            }
        })
        .collect();
    let locations: Vec<Location> = (0..n)
        .map(|i| Location {
            address: 0x1000 + 16 * i as u64,
            mapping: Some(0),
            lines: vec![Line { function: i as u32, line: 0 }],
        })
        .collect();
    let samples: Vec<Sample> = (0..n)
        .map(|i| Sample {
            locations: vec![i as u32, ((i + 1) % n) as u32],
            values: vec![1, 10_000_000],
            labels: Vec::new(),
        })
        .collect();
    Profile {
        kind: ProfileKind::Cpu,
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        default_sample_type: Some(1),
        period_type: ValueType::new("cpu", "nanoseconds"),
        period: 10_000_000,
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        duration: Duration::from_secs(10),
        samples,
        locations,
        functions,
        mappings: vec![Mapping {
            start: 0x1000,
            limit: 0x1000 + 16 * n as u64 + 16,
            file_offset: 0,
            filename: "/usr/bin/app".into(),
            build_id: String::new(),
            has_functions: true,
            has_filenames: false,
            has_line_numbers: false,
            htlhash: String::new(),
        }],
        comments: Vec::new(),
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `result` is the typed error for `path`, naming it; its message.
fn io_error(what: &str, path: &Path, result: Result<(), Error>) -> String {
    match result {
        Err(e @ Error::Io { .. }) => {
            if let Error::Io { path: reported, .. } = &e {
                assert_eq!(reported, path, "{what}");
            }
            let message = e.to_string();
            assert!(message.starts_with(&format!("writing {}: ", path.display())), "{message}");
            message
        }
        other => panic!("{what} to {}: expected Error::Io, got {other:?}", path.display()),
    }
}

/// Every writer's error for `target` (the flamegraphs go to `.svg`).
fn write_errors(profile: &Profile, target: &Path) -> Vec<String> {
    let svg = target.with_file_name("cpu.svg");
    vec![
        io_error("write_pprof", target, profile.write_pprof(target)),
        io_error("write_flamegraph", &svg, profile.write_flamegraph(&svg)),
        io_error("write_flamegraph_of", &svg, profile.write_flamegraph_of("samples", &svg)),
    ]
}

/// Appends to `dir/filler` until the file system is full.
fn fill_up(dir: &Path) {
    let mut file =
        fs::OpenOptions::new().create(true).append(true).open(dir.join("filler")).expect("filler");
    let block = vec![0xa5u8; 4096];
    while std::io::Write::write_all(&mut file, &block).is_ok() {}
}

/// Whether this process may mount file systems.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs of `size` mounted at a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a message) where mounting is not possible.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a small tmpfs needs root");
            return None;
        }
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("mnt");
        fs::create_dir(&dir).expect("mkdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "lowprof-hostile"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?)");
            return None;
        }
        Some(Tmpfs { dir, _parent: parent })
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount,ro {}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a leaked descriptor must not keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_missing_directory_is_an_error_that_says_create_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("no/such/dir/cpu.pb.gz");
    for message in write_errors(&profile(10), &target) {
        assert!(message.contains("create the directory first"), "{message}");
    }
    assert!(names(root.path()).is_empty());
}

#[test]
fn a_read_only_directory_is_an_error_and_the_old_file_stays() {
    let p = profile(10);
    // As root, permissions do not stop a write: use a read-only tmpfs.
    let (mount, _temp, dir) = if is_root() {
        let Some(mount) = Tmpfs::mount("256k") else { return };
        let dir = mount.dir.clone();
        (Some(mount), None, dir)
    } else {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("ro");
        fs::create_dir(&dir).expect("mkdir");
        (None, Some(temp), dir)
    };
    let target = dir.join("cpu.pb.gz");
    fs::write(&target, b"old profile").expect("seed");
    fs::write(target.with_file_name("cpu.svg"), b"old svg").expect("seed");
    match &mount {
        Some(mount) => mount.remount_read_only(),
        None => fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).expect("chmod"),
    }
    for message in write_errors(&p, &target) {
        assert!(message.contains("make the directory writable"), "{message}");
    }
    assert_eq!(fs::read(&target).expect("old"), b"old profile");
    assert_eq!(fs::read(target.with_file_name("cpu.svg")).expect("old"), b"old svg");
    assert_eq!(names(&dir), ["cpu.pb.gz", "cpu.svg"]);
    if mount.is_none() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod back");
    }
}

#[test]
fn a_full_file_system_is_an_error_and_leaves_nothing_partial() {
    let Some(mount) = Tmpfs::mount("4m") else { return };
    let dir = &mount.dir;
    let big = profile(4000);
    let bytes = pprof::encode_gzip(&big).expect("encode");
    assert!(bytes.len() > 100 * 1024, "{} bytes: not big enough to fill the disk", bytes.len());
    let target = dir.join("cpu.pb.gz");
    fs::write(&target, b"old profile").expect("seed");
    fs::write(target.with_file_name("cpu.svg"), b"old svg").expect("seed");
    // Fill the rest but ~16 KiB: the new pprof file runs out of space
    // midway (the atomic writer's unit tests inject that too).
    fill_up(dir);
    let filler = fs::OpenOptions::new().write(true).open(dir.join("filler")).expect("reopen");
    let full = filler.metadata().expect("stat").len();
    filler.set_len(full.saturating_sub(16 * 1024)).expect("shrink");
    drop(filler);
    let message = io_error("write_pprof", &target, big.write_pprof(&target));
    assert!(message.contains("No space left on device"), "{message}");
    assert!(message.contains("free space"), "{message}");
    // Completely full: every writer fails at its first byte.
    fill_up(dir);
    for message in write_errors(&big, &target) {
        assert!(message.contains("No space left on device"), "{message}");
        assert!(message.contains("free space"), "{message}");
    }
    assert_eq!(fs::read(&target).expect("old"), b"old profile");
    assert_eq!(fs::read(target.with_file_name("cpu.svg")).expect("old"), b"old svg");
    assert_eq!(names(dir), ["cpu.pb.gz", "cpu.svg", "filler"]);
    // Space again: the same calls succeed and the files read back.
    fs::remove_file(dir.join("filler")).expect("rm filler");
    big.write_pprof(&target).expect("write_pprof with space");
    let decoded = pprof::decode(&fs::read(&target).expect("read")).expect("decode");
    assert_eq!(decoded.samples.len(), big.samples.len());
    big.write_flamegraph(target.with_file_name("cpu.svg")).expect("write_flamegraph with space");
    assert_eq!(names(dir), ["cpu.pb.gz", "cpu.svg"]);
}

/// Where the child run of [`size_limited_child`] writes.
const SIZE_LIMIT_DIR: &str = "LOWPROF_SIZE_LIMIT_DIR";

/// A full disk without mounting anything, so it runs on every machine
/// (a tmpfs needs root with `CAP_SYS_ADMIN`): a child process whose file
/// size limit (`RLIMIT_FSIZE`) is 16 KiB gets `EFBIG` midway through the
/// big file, which goes through the same error and clean-up path as
/// `ENOSPC`. A child, because the limit is per process and the other tests
/// write files too.
#[test]
fn a_file_size_limit_is_an_error_and_leaves_nothing_partial() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    let target = dir.join("cpu.pb.gz");
    fs::write(&target, b"old profile").expect("seed");
    fs::write(target.with_file_name("cpu.svg"), b"old svg").expect("seed");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "size_limited_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(SIZE_LIMIT_DIR, dir)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child test ran: {stdout}");
    assert!(stderr.contains("CHILD CHECKED"), "{stderr}");
    assert_eq!(fs::read(&target).expect("old"), b"old profile");
    assert_eq!(fs::read(target.with_file_name("cpu.svg")).expect("old"), b"old svg");
    assert_eq!(names(dir), ["cpu.pb.gz", "cpu.svg"]);
}

/// The child side of [`a_file_size_limit_is_an_error_and_leaves_nothing_partial`].
#[test]
#[ignore = "run in a child process by a_file_size_limit_is_an_error_and_leaves_nothing_partial"]
fn size_limited_child() {
    // Run by `--include-ignored` without the parent: nothing to do.
    let Some(dir) = std::env::var_os(SIZE_LIMIT_DIR).map(PathBuf::from) else { return };
    let big = profile(4000);
    let limit: u64 = 16 * 1024;
    assert!(
        pprof::encode_gzip(&big).expect("encode").len() as u64 > 4 * limit,
        "the profile must not fit under the limit"
    );
    // SAFETY: setting SIGXFSZ to SIG_IGN makes an over-limit write fail with
    // EFBIG instead of killing the process; no handler runs.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let mut rlimit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rlimit` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut rlimit) }, 0);
    rlimit.rlim_cur = limit;
    // SAFETY: `rlimit` is a valid rlimit; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) }, 0);
    for message in write_errors(&big, &dir.join("cpu.pb.gz")) {
        assert!(message.contains("File too large"), "{message}");
        assert!(message.contains("free space"), "{message}");
    }
    eprintln!("CHILD CHECKED");
}
