//! Atomic file replacement, shared by the pprof and flamegraph writers.
//!
//! ```text
//!  dir/.name.tmp-<pid>-<random>   create_new, write, fsync
//!        │ rename(2)              atomic within one file system
//!        ▼
//!  dir/name                       then fsync(dir) so the rename is durable
//! ```
//!
//! A reader of `dir/name` sees the old file or the complete new one, never a
//! prefix. If anything fails after the temporary file exists, it is removed,
//! so no partial file is left behind. The temporary name is hidden (leading
//! dot), per process and random, and is created with `O_EXCL`, so concurrent
//! writers never share or delete each other's temporary files. It keeps at
//! most [`MAX_TEMP_STEM`] bytes of `name`, so any file name that fits the
//! file system has a temporary name that fits too.
//!
//! Errors keep the OS error's [`io::ErrorKind`] (and the OS error as their
//! `source()`), and say which step failed and what to change, e.g.
//! `creating a temporary file in /srv/ro: Permission denied (os error 13):
//! make the directory writable by this process, or write somewhere else`.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

/// The most bytes of the target's name the temporary name keeps: with the
/// leading dot and `.tmp-<pid>-<16 hex digits>` (at most 33 bytes) it stays
/// under `NAME_MAX` (255).
const MAX_TEMP_STEM: usize = 200;

/// Replaces the file at `path` with `bytes`, atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, bytes, fill)
}

/// [`write_atomically`] with the step that fills the temporary file given,
/// so tests can make it fail midway (a full disk).
fn write_with(
    path: &Path,
    bytes: &[u8],
    fill: impl FnOnce(&mut File, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, NOT_A_FILE));
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = dir.join(temp_name(name));
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(&temp).map_err(|e| {
            failed(e, format!("creating a temporary file in {}", dir.display()), None)
        })?;
    let filled = fill(&mut file, bytes)
        .map_err(|e| failed(e, format!("writing the temporary file in {}", dir.display()), None));
    drop(file);
    let renamed = filled.and_then(|()| {
        fs::rename(&temp, path).map_err(|e| {
            failed(e, format!("renaming the temporary file onto {}", path.display()), None)
        })
    });
    if let Err(error) = renamed {
        // The write's error is the one worth reporting; a failed clean-up
        // (say, the directory vanished) leaves nothing more to do.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        failed(
            e,
            format!("syncing {} after the complete new file was put in place", dir.display()),
            Some("the file is complete, but may not survive a power cut; check the file system"),
        )
    })
}

/// `.name.tmp-<pid>-<random hex>`, keeping at most [`MAX_TEMP_STEM`] bytes
/// of `name`.
fn temp_name(name: &OsStr) -> OsString {
    let nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // `RandomState` is seeded randomly per process and per call.
    let random = RandomState::new().hash_one(nanos);
    let stem = name.as_bytes();
    let mut temp = OsString::from(".");
    temp.push(OsStr::from_bytes(&stem[..stem.len().min(MAX_TEMP_STEM)]));
    temp.push(format!(".tmp-{}-{random:016x}", std::process::id()));
    temp
}

fn fill(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// The fix for a path without a file name.
const NOT_A_FILE: &str =
    "the path does not end in a file name: give the path of a file, such as profiles/heap.pb.gz";

/// A failed step: what was being done, the OS error, what to change.
#[derive(Debug)]
struct Failed {
    step: String,
    source: io::Error,
    fix: &'static str,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.step, self.source, self.fix)
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Wraps `source` with the step and the fix, keeping its kind.
fn failed(source: io::Error, step: String, fix: Option<&'static str>) -> io::Error {
    let fix = fix.unwrap_or_else(|| fix_for(&source));
    io::Error::new(source.kind(), Failed { step, source, fix })
}

/// What to change for an OS error while writing a file.
fn fix_for(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ENOENT) => "create the directory first, or write somewhere that exists",
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
            "make the directory writable by this process, or write somewhere else"
        }
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => {
            "free space (or quota) on that file system, or write somewhere else; an older file \
             at that path is left as it was"
        }
        Some(libc::EISDIR | libc::ENOTEMPTY | libc::EEXIST) => {
            "a directory is in the way: remove it, or choose another file name"
        }
        Some(libc::ENOTDIR) => "part of the path is a file, not a directory: fix the path",
        Some(libc::ENAMETOOLONG) => "the path is too long: use a shorter file or directory name",
        Some(libc::ELOOP) => "the path has a symbolic link loop: fix the path",
        Some(libc::EXDEV) => {
            "write into a directory on one file system (no mount point in between)"
        }
        _ if error.kind() == io::ErrorKind::InvalidInput => {
            "use a path without NUL bytes that names a file"
        }
        _ => "check the path and the file system, or write somewhere else",
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use proptest::prelude::*;

    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A disk that fills up halfway through the write: an error that says
    /// so, the old file untouched, no temporary file.
    #[test]
    fn a_full_disk_midway_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heap.pb.gz");
        fs::write(&path, b"old").expect("seed");
        let error = write_with(&path, &[7; 100_000], |file, bytes| {
            file.write_all(&bytes[..bytes.len() / 2])?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .expect_err("ENOSPC");
        assert_eq!(error.kind(), ErrorKind::StorageFull);
        let message = error.to_string();
        assert!(message.starts_with("writing the temporary file in "), "{message}");
        assert!(message.contains("No space left on device") && message.contains("free space"));
        let os = std::error::Error::source(error.get_ref().expect("wrapped")).expect("source");
        assert_eq!(os.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error), Some(28));
        assert_eq!(fs::read(&path).expect("old"), b"old");
        assert_eq!(leftovers(dir.path()), ["heap.pb.gz"]);
    }

    /// A failing sync (the disk errors at fsync) is just as clean.
    #[test]
    fn a_failed_sync_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cpu.svg");
        let error = write_with(&path, b"<svg/>", |file, bytes| {
            file.write_all(bytes)?;
            Err(io::Error::from_raw_os_error(libc::EIO))
        })
        .expect_err("EIO");
        assert!(error.to_string().contains("check the path and the file system"), "{error}");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn each_failure_says_what_to_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing/heap.pb.gz");
        let e = write_atomically(&missing, b"x").expect_err("no parent");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("create the directory first"), "{e}");
        let e = write_atomically(Path::new("/"), b"x").expect_err("no file name");
        assert!(e.to_string().contains("give the path of a file"), "{e}");
        let occupied = dir.path().join("occupied");
        fs::create_dir(&occupied).expect("mkdir");
        let e = write_atomically(&occupied, b"x").expect_err("a directory");
        assert!(e.to_string().contains("a directory is in the way"), "{e}");
        let e = write_atomically(&dir.path().join("a\0b"), b"x").expect_err("NUL");
        assert!(e.to_string().contains("without NUL bytes"), "{e}");
        let through_file = dir.path().join("plain");
        fs::write(&through_file, b"x").expect("file");
        let e = write_atomically(&through_file.join("heap.pb.gz"), b"x").expect_err("ENOTDIR");
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert_eq!(leftovers(dir.path()), ["occupied", "plain"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any file name the file system takes (up to 255 bytes) is
        /// written; a longer one is an error; either way no temporary file
        /// is left.
        #[test]
        fn any_file_name(
            name in prop::collection::vec(
                prop_oneof![
                    8 => prop::sample::select(&b"abcXYZ019.-_ %#?*:;'\"\\=,"[..]),
                    1 => 0x80u8..=0xff,
                    1 => 1u8..0x20,
                ],
                1..300,
            ),
        ) {
            prop_assume!(name != b"." && name != b"..");
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(OsStr::from_bytes(&name));
            match write_atomically(&path, b"profile") {
                Ok(()) => {
                    prop_assert!(name.len() <= 255);
                    prop_assert_eq!(fs::read(&path).expect("read"), b"profile");
                    prop_assert_eq!(leftovers(dir.path()).len(), 1);
                }
                Err(e) => {
                    prop_assert!(name.len() > 255, "{:?}: {}", path, e);
                    prop_assert!(e.to_string().contains("too long"), "{}", e);
                    prop_assert!(leftovers(dir.path()).is_empty());
                }
            }
        }
    }
}
