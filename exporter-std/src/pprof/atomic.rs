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
//! writers never share or delete each other's temporary files.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

/// Replaces the file at `path` with `bytes`, atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        ));
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = dir.join(temp_name(name));
    let file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
    if let Err(error) = fill(file, bytes).and_then(|()| fs::rename(&temp, path)) {
        // The write's error is the one worth reporting; a failed clean-up
        // (say, the directory vanished) leaves nothing more to do.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    File::open(dir)?.sync_all()
}

/// `.name.tmp-<pid>-<random hex>`.
fn temp_name(name: &OsStr) -> OsString {
    let nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // `RandomState` is seeded randomly per process and per call.
    let random = RandomState::new().hash_one(nanos);
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp-{}-{random:016x}", std::process::id()));
    temp
}

fn fill(mut file: File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}
