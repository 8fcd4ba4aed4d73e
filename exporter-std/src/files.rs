//! Rotating local pprof files, for services without a profiling back end:
//! every write adds one timestamped file and deletes the oldest of the same
//! prefix beyond `keep`.
//!
//! ```text
//!  dir/
//!  ├ heap-20250102T030405Z-0000.pb.gz   ◄─ oldest "heap" file: deleted by the write that
//!  ├ heap-20250102T030505Z-0000.pb.gz      makes it the (keep + 1)-th newest
//!  ├ heap-20250102T030505Z-0001.pb.gz   ◄─ second write within the same second
//!  ├ cpu-20250102T030505Z-0000.pb.gz    ◄─ another prefix: rotated on its own
//!  ├ .heap-…pb.gz.tmp-<pid>-<random>    ◄─ write in progress (see pprof::write_atomically)
//!  └ notes.txt                          ◄─ not `<prefix>-<stamp>-<seq>.pb.gz`: never touched
//! ```
//!
//! Names are `<prefix>-<UTC YYYYmmddTHHMMSSZ>-<seq>.pb.gz`, `seq` counting
//! from `0000` within one second, so byte order of names is time order.
//! Rotation orders by the parsed `(timestamp, seq)`, which stays right even
//! if more than 10 000 files share one second. Only names that match that
//! pattern exactly, for the prefix being written, are ever deleted.
//!
//! Timestamps are the wall clock at the time of writing, formatted by hand
//! with Howard Hinnant's `civil_from_days` algorithm
//! (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>).
//! If the clock steps back, the new file can sort before older ones; it is
//! still never the one deleted.
//!
//! One writer per directory and prefix: two writers of the same prefix in the
//! same second could pick the same `seq`, and the later rename would replace
//! the earlier file.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::pprof;
use crate::profile::Profile;

/// The file name extension of every rotated file.
const EXTENSION: &str = ".pb.gz";
/// Digits `seq` is zero-padded to.
const SEQ_WIDTH: usize = 4;
/// The longest accepted prefix, in bytes.
const MAX_PREFIX_LEN: usize = 100;

/// Writes profiles as `<prefix>-<timestamp>-<seq>.pb.gz` into one directory,
/// keeping the newest `keep` files of each prefix.
#[derive(Debug)]
pub(crate) struct RotatingWriter {
    /// The directory written to.
    dir: PathBuf,
    /// Files kept per prefix, at least 1.
    keep: usize,
}

impl RotatingWriter {
    /// Creates the directory if missing (its parent must exist); error if it
    /// is not a writable directory, or if `keep` is 0.
    pub(crate) fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<Self, Error> {
        let dir = dir.into();
        if keep == 0 {
            return Err(Error::InvalidKeep);
        }
        // Only the last component: a mistyped parent should fail, not grow a tree.
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Error::ProfileDir { path: dir, source }),
        }
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let source =
                    io::Error::new(io::ErrorKind::NotADirectory, "exists and is not a directory");
                return Err(Error::ProfileDir { path: dir, source });
            }
            Err(source) => return Err(Error::ProfileDir { path: dir, source }),
        }
        if let Err(source) = probe_writable(&dir) {
            return Err(Error::ProfileDir { path: dir, source });
        }
        Ok(Self { dir, keep })
    }

    /// Writes `<prefix>-<UTC timestamp YYYYmmddTHHMMSSZ>-<seq>.pb.gz`
    /// atomically, then deletes the oldest files of that prefix beyond
    /// `keep`. Returns the path written.
    ///
    /// `prefix` is 1 to 100 ASCII letters, digits, `_`, `-` or `.`, not
    /// starting with `.` or `-`. If the profile was written but an old file
    /// could not be deleted, the error is [`Error::Rotate`].
    pub(crate) fn write(&mut self, prefix: &str, profile: &Profile) -> Result<PathBuf, Error> {
        self.write_at(prefix, profile, SystemTime::now())
    }

    /// [`write`](Self::write) with the clock given.
    fn write_at(
        &mut self,
        prefix: &str,
        profile: &Profile,
        now: SystemTime,
    ) -> Result<PathBuf, Error> {
        if !valid_prefix(prefix) {
            return Err(Error::InvalidFilePrefix { prefix: prefix.to_owned() });
        }
        let stamp = utc(now).compact();
        let existing = self.list(prefix)?;
        let seq = existing
            .iter()
            .filter(|f| f.stamp == stamp)
            .map(|f| f.seq.saturating_add(1))
            .max()
            .unwrap_or(0);
        let name = format!("{prefix}-{stamp}-{seq:0width$}{EXTENSION}", width = SEQ_WIDTH);
        let path = self.dir.join(&name);
        pprof::encode_gzip(profile)
            .and_then(|bytes| pprof::write_atomically(&path, &bytes))
            .map_err(|source| Error::Io { path: path.clone(), source })?;
        self.rotate(existing)?;
        Ok(path)
    }

    /// Deletes the oldest of `older` (the files there were before the one
    /// just written) until `keep - 1` of them are left.
    fn rotate(&self, mut older: Vec<Rotated>) -> Result<(), Error> {
        let excess = older.len().saturating_sub(self.keep - 1);
        if excess == 0 {
            return Ok(());
        }
        older.sort_by(|a, b| a.stamp.cmp(&b.stamp).then(a.seq.cmp(&b.seq)));
        let mut first_error = None;
        for file in older.into_iter().take(excess) {
            let path = self.dir.join(&file.name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                // Someone else removed it: the goal is reached.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    first_error.get_or_insert(Error::Rotate { path, source });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The rotated files of `prefix` now in the directory.
    fn list(&self, prefix: &str) -> Result<Vec<Rotated>, Error> {
        let dir_error = |source| Error::ProfileDir { path: self.dir.clone(), source };
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(dir_error)? {
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(file) = Rotated::parse(prefix, name) {
                // A directory that happens to match is not ours to delete.
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    files.push(file);
                }
            }
        }
        Ok(files)
    }
}

/// A file name of the form `<prefix>-<stamp>-<seq>.pb.gz`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rotated {
    /// The whole file name.
    name: String,
    /// `YYYYmmddTHHMMSSZ`.
    stamp: String,
    /// The sequence number within that second.
    seq: u64,
}

impl Rotated {
    /// Parses `name` if it is exactly `<prefix>-<8 digits>T<6 digits>Z-<4 or
    /// more digits>.pb.gz`.
    fn parse(prefix: &str, name: &str) -> Option<Self> {
        let rest = name.strip_prefix(prefix)?.strip_prefix('-')?.strip_suffix(EXTENSION)?;
        let (stamp, seq) = rest.split_once('-')?;
        let b = stamp.as_bytes();
        let stamp_ok = b.len() == 16
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z';
        let seq_ok = seq.len() >= SEQ_WIDTH && seq.bytes().all(|c| c.is_ascii_digit());
        if !(stamp_ok && seq_ok) {
            return None;
        }
        Some(Self { name: name.to_owned(), stamp: stamp.to_owned(), seq: seq.parse().ok()? })
    }
}

/// Whether `prefix` can start a rotated file name: 1 to 100 of
/// `[A-Za-z0-9_.-]`, not starting with `.` (hidden, and the temporary files'
/// mark) or `-`.
fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && !prefix.starts_with(['.', '-'])
        && prefix.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Checks that a file can be created in `dir` by creating and removing one.
fn probe_writable(dir: &Path) -> io::Result<()> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(".lowprof-probe-{}-{nanos:09}", std::process::id()));
    OpenOptions::new().write(true).create_new(true).open(&probe)?;
    fs::remove_file(&probe)
}

/// A UTC civil time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcTime {
    /// The year, such as 2025.
    pub(crate) year: i64,
    /// 1 to 12.
    pub(crate) month: u32,
    /// 1 to 31.
    pub(crate) day: u32,
    /// 0 to 23.
    pub(crate) hour: u32,
    /// 0 to 59.
    pub(crate) minute: u32,
    /// 0 to 59 (no leap seconds: Unix time has none).
    pub(crate) second: u32,
    /// 0 = Sunday to 6 = Saturday.
    pub(crate) weekday: u32,
}

impl UtcTime {
    /// ISO 8601 basic format: `YYYYmmddTHHMMSSZ`.
    pub(crate) fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// `time` in UTC; times before 1970 are taken as 1970-01-01T00:00:00Z.
pub(crate) fn utc(time: SystemTime) -> UtcTime {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    // u64 seconds / 86 400 always fits in i64.
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    UtcTime {
        year,
        month,
        day,
        // All three are < 86 400.
        hour: (of_day / 3600) as u32,
        minute: (of_day % 3600 / 60) as u32,
        second: (of_day % 60) as u32,
        // 1970-01-01 was a Thursday (4).
        weekday: ((days + 4) % 7) as u32,
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to the
/// proleptic Gregorian `(year, month 1..=12, day 1..=31)`.
///
/// Shifts the epoch to 0000-03-01 so the leap day ends the year, then splits
/// into 400-year eras (146 097 days), years of era, and a day of the year
/// from which a 153-day five-month cycle gives month and day.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month and day are in the small ranges noted above.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pprof::fixture;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn civil_from_days_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        // 2100 is not a leap year: February 28 is followed by March 1.
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        let t = utc(at(1_735_689_599));
        assert_eq!(t.compact(), "20241231T235959Z");
        assert_eq!(t.weekday, 2); // a Tuesday
        assert_eq!(utc(at(951_782_400)).compact(), "20000229T000000Z");
        assert_eq!(utc(UNIX_EPOCH - Duration::from_secs(5)).compact(), "19700101T000000Z");
    }

    /// Walks every day from 1970 to 2400 and checks each date follows the
    /// previous one by the Gregorian calendar's rules.
    #[test]
    fn civil_from_days_walks_the_calendar() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = civil_from_days(0);
        for days in 1..=157_000 {
            let next = civil_from_days(days);
            let (y, m, d) = prev;
            let expected = if d < days_in(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {days}");
            prev = next;
        }
        assert_eq!(prev.0, 2399);
    }

    #[test]
    fn rotation_keeps_the_newest_per_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = RotatingWriter::new(dir.path(), 3).expect("new");
        let heap = fixture::heap();
        let mut written = Vec::new();
        for i in 0..6 {
            written.push(writer.write_at("heap", &heap, at(1_700_000_000 + 60 * i)).expect("heap"));
            writer.write_at("cpu", &heap, at(1_700_000_000 + 60 * i)).expect("cpu");
        }
        let names = names(dir.path());
        let heap_names: Vec<&String> = names.iter().filter(|n| n.starts_with("heap-")).collect();
        let cpu_names: Vec<&String> = names.iter().filter(|n| n.starts_with("cpu-")).collect();
        assert_eq!(heap_names.len(), 3, "{names:?}");
        assert_eq!(cpu_names.len(), 3, "{names:?}");
        // The three newest survive, and each is a readable profile.
        for path in &written[3..] {
            let bytes = fs::read(path).expect("read");
            assert_eq!(pprof::decode(&bytes).expect("decode"), heap);
        }
        for path in &written[..3] {
            assert!(!path.exists(), "{} should be deleted", path.display());
        }
        assert_eq!(
            written[5].file_name().and_then(|n| n.to_str()),
            Some("heap-20231114T221820Z-0000.pb.gz")
        );
    }

    #[test]
    fn names_sort_chronologically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = RotatingWriter::new(dir.path(), 100).expect("new");
        let heap = fixture::heap();
        // Unix time gains a digit (999 999 999 → 1 000 000 000); several writes in one second.
        let times = [999_999_999, 1_000_000_000, 1_000_000_000, 1_000_000_000, 1_000_000_001];
        let mut written = Vec::new();
        for secs in times {
            let path = writer.write_at("p", &heap, at(secs)).expect("write");
            written.push(path.file_name().and_then(|n| n.to_str()).expect("name").to_owned());
        }
        written.push(
            writer.write_at("p", &heap, at(1_735_689_599)).expect("write").display().to_string(),
        );
        let last = written.pop().expect("last");
        assert!(last.ends_with("p-20241231T235959Z-0000.pb.gz"), "{last}");
        assert_eq!(
            written,
            [
                "p-20010909T014639Z-0000.pb.gz",
                "p-20010909T014640Z-0000.pb.gz",
                "p-20010909T014640Z-0001.pb.gz",
                "p-20010909T014640Z-0002.pb.gz",
                "p-20010909T014641Z-0000.pb.gz",
            ]
        );
        let mut sorted = written.clone();
        sorted.sort();
        assert_eq!(sorted, written);
    }

    #[test]
    fn rotation_counts_seq_numerically() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A second with more files than four digits hold.
        fs::write(dir.path().join("p-20010909T014640Z-9999.pb.gz"), b"old").expect("write");
        let mut writer = RotatingWriter::new(dir.path(), 1).expect("new");
        let path = writer.write_at("p", &fixture::heap(), at(1_000_000_000)).expect("write");
        assert!(path.ends_with("p-20010909T014640Z-10000.pb.gz"), "{}", path.display());
        assert_eq!(names(dir.path()), ["p-20010909T014640Z-10000.pb.gz"]);
    }

    #[test]
    fn other_files_are_never_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let others = [
            "notes.txt",
            "heap.pb.gz",
            "heap-20010909T014640Z-0000.pb",
            "heap-20010909T014640Z-000.pb.gz",
            "heap-2001090XT014640Z-0000.pb.gz",
            "heap-20010909T014640-0000.pb.gz",
            "heap-x-20010909T014640Z-0000.pb.gz",
            "heapy-20010909T014640Z-0000.pb.gz",
            "Heap-20010909T014640Z-0000.pb.gz",
            ".heap-20010909T014640Z-0000.pb.gz.tmp-1-0",
            "heap-20010909T014640Z-0000.pb.gz.bak",
        ];
        for name in others {
            fs::write(dir.path().join(name), b"keep me").expect("write");
        }
        // A directory with a matching name is not ours either.
        fs::create_dir(dir.path().join("heap-20000101T000000Z-0000.pb.gz")).expect("mkdir");
        let mut writer = RotatingWriter::new(dir.path(), 1).expect("new");
        let heap = fixture::heap();
        let mut last = PathBuf::new();
        for i in 0..4 {
            last = writer.write_at("heap", &heap, at(1_000_000_000 + i)).expect("write");
        }
        let mut expected: Vec<String> = others.iter().map(|s| (*s).to_owned()).collect();
        expected.push("heap-20000101T000000Z-0000.pb.gz".to_owned());
        expected.push(last.file_name().and_then(|n| n.to_str()).expect("name").to_owned());
        expected.sort();
        assert_eq!(names(dir.path()), expected);
        for name in others {
            assert_eq!(fs::read(dir.path().join(name)).expect("read"), b"keep me");
        }
    }

    #[test]
    fn creates_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("profiles");
        let mut writer = RotatingWriter::new(&target, 2).expect("new");
        assert!(target.is_dir());
        let path = writer.write("heap", &fixture::heap()).expect("write");
        assert!(path.starts_with(&target));
        assert_eq!(names(&target).len(), 1, "{:?}", names(&target));
    }

    #[test]
    fn bad_directories_are_typed_errors_and_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").expect("write");
        let cases = [
            (dir.path().join("missing").join("profiles"), io::ErrorKind::NotFound),
            (file.clone(), io::ErrorKind::NotADirectory),
            (file.join("profiles"), io::ErrorKind::NotADirectory),
        ];
        for (path, kind) in cases {
            match RotatingWriter::new(&path, 3) {
                Err(Error::ProfileDir { path: p, source }) => {
                    assert_eq!(p, path);
                    assert_eq!(source.kind(), kind, "{}", path.display());
                    let message = Error::ProfileDir { path: p, source }.to_string();
                    assert!(message.contains(&path.display().to_string()), "{message}");
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        assert_eq!(names(dir.path()), ["a-file"]);
        assert_eq!(fs::read(&file).expect("read"), b"x");
    }

    #[test]
    fn read_only_directory_is_a_typed_error() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("ro");
        fs::create_dir(&target).expect("mkdir");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o555)).expect("chmod");
        // Root (CAP_DAC_OVERRIDE) writes anyway; sysfs refuses even root.
        let privileged = probe_writable(&target).is_ok();
        let target = if !privileged {
            target
        } else if Path::new("/sys/kernel").is_dir()
            && probe_writable(Path::new("/sys/kernel")).is_err()
        {
            PathBuf::from("/sys/kernel")
        } else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI: privileged and no read-only /sys/kernel: the read-only directory check \
                 cannot run here"
            );
            eprintln!(
                "note: running privileged without /sys; skipping the read-only directory check"
            );
            return;
        };
        let before = names(&target);
        match RotatingWriter::new(&target, 3) {
            Err(error @ Error::ProfileDir { .. }) => {
                let message = error.to_string();
                assert!(message.contains(&target.display().to_string()), "{message}");
                assert!(message.contains("writable"), "{message}");
            }
            other => panic!("{}: {other:?}", target.display()),
        }
        assert_eq!(names(&target), before);
    }

    #[test]
    fn write_failure_leaves_no_partial_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("profiles");
        let mut writer = RotatingWriter::new(&target, 3).expect("new");
        writer.write_at("heap", &fixture::heap(), at(1_000_000_000)).expect("write");
        // The directory disappears under the writer and a file takes its place.
        fs::remove_file(target.join("heap-20010909T014640Z-0000.pb.gz")).expect("rm");
        fs::remove_dir(&target).expect("rmdir");
        fs::write(&target, b"x").expect("write");
        assert!(matches!(
            writer.write_at("heap", &fixture::heap(), at(1_000_000_001)),
            Err(Error::ProfileDir { .. } | Error::Io { .. })
        ));
        assert_eq!(names(dir.path()), ["profiles"]);
        assert_eq!(fs::read(&target).expect("read"), b"x");
    }

    #[test]
    fn invalid_arguments_are_typed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(RotatingWriter::new(dir.path(), 0), Err(Error::InvalidKeep)));
        let mut writer = RotatingWriter::new(dir.path(), 1).expect("new");
        let long = "x".repeat(MAX_PREFIX_LEN + 1);
        for prefix in ["", ".hidden", "-dash", "a/b", "a b", "é", "..", long.as_str()] {
            assert!(
                matches!(
                    writer.write(prefix, &fixture::heap()),
                    Err(Error::InvalidFilePrefix { .. })
                ),
                "{prefix:?}"
            );
        }
        assert!(names(dir.path()).is_empty());
    }
}
