//! The process's memory map, read from `/proc/self/maps`: the loaded objects
//! that pprof and OTLP `Mapping`s describe. Read on the cold path only (the
//! symbolizer thread, never a signal handler or the allocator). The table of
//! stack regions the CPU handler walks inside is built by `lowprof-sampler`.
//!
//! - **Symbolization and export.** `go tool pprof` needs real addresses plus a
//!   `Mapping { memory_start, memory_limit, file_offset, filename, build_id }`
//!   for each loaded object, so that it can match a profile against the right
//!   binary (`PPROF_BINARY_PATH` is searched by GNU build id first). OTLP
//!   requires `process.executable.build_id.gnu` (or `htlhash`) on every
//!   mapping. [`read_object_mappings`] returns one [`ObjectMapping`] per
//!   executable mapping, with the build id read once per file.
//!
//! A line of `/proc/self/maps` (`proc(5)`):
//!
//! ```text
//!  start-end         perms offset   dev   inode    path (optional, may hold spaces)
//!  55d0c1a00000-55d0c1a26000 r-xp 00002000 08:01 1049201    /usr/bin/my app (deleted)
//!  7ffd3b5e5000-7ffd3b606000 rw-p 00000000 00:00 0          [stack]
//!  7f2a10000000-7f2a10021000 rw-p 00000000 00:00 0
//! ```
//!
//! The parser is deliberately forgiving: a line it cannot read is skipped,
//! never a reason to fail or panic. Paths are kept as raw bytes while parsing
//! (Linux paths need not be UTF-8) and converted lossily only for display.

use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// One executable mapping of a loaded object (the main executable, a shared
/// library, or a pseudo object such as `[vdso]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub limit: u64,
    /// Offset in the file that `start` maps.
    pub file_offset: u64,
    /// Path of the file as the kernel reports it (without a trailing
    /// ` (deleted)`), or a pseudo name such as `[vdso]`.
    pub path: String,
    /// GNU build id (`NT_GNU_BUILD_ID` note), if the file has one and could
    /// be read. Always `None` for pseudo objects.
    pub build_id: Option<Vec<u8>>,
    /// The OTel "htlhash" of the file (see [`htlhash`]), if it could be
    /// read. Always `None` for pseudo objects.
    pub htlhash: Option<[u8; 16]>,
}

impl ObjectMapping {
    /// Whether `addr` lies inside this mapping.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.limit
    }

    /// Whether this is a kernel-provided pseudo object (`[vdso]`,
    /// `[vsyscall]`, …) rather than a file.
    pub fn is_pseudo(&self) -> bool {
        self.path.starts_with('[')
    }
}

/// Reads the executable, named mappings of the current process from
/// `/proc/self/maps`, sorted by start address, each with its GNU build id.
///
/// Build ids are read from the file on disk once per file (keyed by path,
/// device and inode) and cached for the life of the process, so calling
/// this again after a `dlopen` only parses the newly loaded objects. A file
/// whose build id cannot be read (permissions, not ELF, deleted and not
/// reachable through `/proc/self/map_files`) gets `build_id: None`.
///
/// # Errors
///
/// Only if `/proc/self/maps` cannot be read (not Linux, no `/proc`).
pub fn read_object_mappings() -> io::Result<Vec<ObjectMapping>> {
    let maps = std::fs::read("/proc/self/maps")?;
    let mut out = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        let Some(entry) = parse_line(line) else {
            continue;
        };
        if !entry.perms.executable() {
            continue;
        }
        let Some(path) = entry.path else { continue };
        let FileIds { build_id, htlhash } = ids_for(&entry, path);
        out.push(ObjectMapping {
            start: entry.start,
            limit: entry.end,
            file_offset: entry.offset,
            path: String::from_utf8_lossy(path).into_owned(),
            build_id,
            htlhash,
        });
    }
    out.sort_by_key(|m| m.start);
    Ok(out)
}

/// A number that changes whenever the dynamic loader adds or removes an
/// object (`dlopen`, `dlclose`): glibc's and musl's `dlpi_adds + dlpi_subs`,
/// read through `dl_iterate_phdr` from its first object only. `None` where
/// that is not available.
///
/// Cheap (no system call, no file read; it takes the loader's lock for a
/// moment), so the symbolizer thread can poll it and re-read
/// `/proc/self/maps` only when a library was loaded or unloaded: that is how
/// a library `dlopen`ed and `dlclose`d between two profiles is still seen,
/// with its path and build id, when samples taken inside it are symbolized.
pub fn loader_generation() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        /// Stops at the first object, keeping its counters.
        unsafe extern "C" fn first(
            info: *mut libc::dl_phdr_info,
            size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            let complete = core::mem::offset_of!(libc::dl_phdr_info, dlpi_subs)
                + core::mem::size_of::<libc::c_ulonglong>();
            if info.is_null() || data.is_null() || size < complete {
                // An old loader without the counters: report nothing.
                return 1;
            }
            // SAFETY: the loader passes a valid `dl_phdr_info` of at least
            // `size` bytes, which covers `dlpi_adds` and `dlpi_subs`; `data`
            // is the `Option<u64>` that `loader_generation` passed, alive
            // and not otherwise borrowed during the call.
            unsafe {
                let generation = (*info).dlpi_adds.wrapping_add((*info).dlpi_subs);
                *data.cast::<Option<u64>>() = Some(generation);
            }
            1
        }
        let mut generation: Option<u64> = None;
        // SAFETY: `first` matches the callback type, never unwinds, and only
        // writes through `data`, which points to `generation` for the
        // duration of the call.
        unsafe {
            libc::dl_iterate_phdr(Some(first), (&raw mut generation).cast());
        }
        generation
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The index of the mapping in `mappings` (sorted by start, non-overlapping,
/// as [`read_object_mappings`] returns them) that contains `addr`.
pub fn object_for(mappings: &[ObjectMapping], addr: u64) -> Option<usize> {
    let after = mappings.partition_point(|m| m.start <= addr);
    let index = after.checked_sub(1)?;
    mappings.get(index).filter(|m| m.contains(addr)).map(|_| index)
}

/// The four permission characters of a maps line, `r`, `w`, `x`, `p`/`s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Perms([u8; 4]);

impl Perms {
    #[cfg(test)]
    fn readable(self) -> bool {
        self.0[0] == b'r'
    }
    #[cfg(test)]
    fn writable(self) -> bool {
        self.0[1] == b'w'
    }
    fn executable(self) -> bool {
        self.0[2] == b'x'
    }
}

/// One parsed line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapsEntry<'a> {
    start: u64,
    end: u64,
    perms: Perms,
    offset: u64,
    dev: &'a [u8],
    inode: u64,
    /// The path or pseudo name, without a ` (deleted)` suffix; `None` for an
    /// anonymous mapping.
    path: Option<&'a [u8]>,
    /// Whether the kernel marked the file as deleted.
    deleted: bool,
}

/// Splits off the next space-separated field, skipping leading spaces.
fn field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = s.trim_ascii_start();
    if s.is_empty() {
        return None;
    }
    let end = s.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(s.len());
    Some(s.split_at(end))
}

/// Parses a lower-case or upper-case hexadecimal number.
fn hex(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// Parses one line of `/proc/<pid>/maps`; `None` if it is malformed.
fn parse_line(line: &[u8]) -> Option<MapsEntry<'_>> {
    let (range, rest) = field(line)?;
    let (perms, rest) = field(rest)?;
    let (offset, rest) = field(rest)?;
    let (dev, rest) = field(rest)?;
    let (inode, rest) = field(rest)?;

    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    let perms = Perms(perms.try_into().ok()?);
    let offset = hex(offset)?;
    let inode = std::str::from_utf8(inode).ok()?.parse().ok()?;

    // The path is the rest of the line after the padding; it may contain
    // spaces, so it is not split further.
    let path = rest.trim_ascii();
    let (path, deleted) = match path.strip_suffix(b" (deleted)") {
        Some(stripped) => (stripped, true),
        None => (path, false),
    };
    let path = (!path.is_empty()).then_some(path);
    Some(MapsEntry { start, end, perms, offset, dev, inode, path, deleted })
}

/// A cached build-id lookup: the file's identity and its id.
struct CachedBuildId {
    path: Vec<u8>,
    dev: Vec<u8>,
    inode: u64,
    ids: FileIds,
}

/// The identities of one mapped file.
#[derive(Clone, Default)]
struct FileIds {
    build_id: Option<Vec<u8>>,
    htlhash: Option<[u8; 16]>,
}

/// Build ids read so far, one entry per distinct file. A process maps tens
/// of objects, so a linear scan is fine; the cap keeps `dlopen` churn of
/// uniquely named files from growing it forever.
static BUILD_IDS: Mutex<Vec<CachedBuildId>> = Mutex::new(Vec::new());
const BUILD_ID_CACHE_CAP: usize = 4096;

/// The GNU build id and htlhash of the file behind `entry`, from the cache
/// or read once.
fn ids_for(entry: &MapsEntry<'_>, path: &[u8]) -> FileIds {
    if entry.inode == 0 || !path.starts_with(b"/") {
        // Pseudo objects ([vdso], [vsyscall]) and anonymous executable memory.
        return FileIds::default();
    }
    let mut cache = BUILD_IDS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(hit) =
        cache.iter().find(|c| c.inode == entry.inode && c.dev == entry.dev && c.path == path)
    {
        return hit.ids.clone();
    }
    let file = if entry.deleted {
        // The path may now name a different file (an upgraded library);
        // only the kernel's handle on the mapped one is trustworthy. Opening
        // it needs privileges that a normal process may not have.
        std::path::PathBuf::from(format!("/proc/self/map_files/{:x}-{:x}", entry.start, entry.end))
    } else {
        Path::new(OsStr::from_bytes(path)).to_path_buf()
    };
    let ids = FileIds {
        build_id: read_build_id(&file),
        htlhash: std::fs::File::open(&file).and_then(|mut f| htlhash(&mut f)).ok(),
    };
    if cache.len() >= BUILD_ID_CACHE_CAP {
        cache.clear();
    }
    cache.push(CachedBuildId {
        path: path.to_vec(),
        dev: entry.dev.to_vec(),
        inode: entry.inode,
        ids: ids.clone(),
    });
    ids
}

/// The OTel profiles `htlhash` build id of a file ("head, tail, length"):
/// the first 16 bytes of SHA-256 over the file's first 4096 bytes, its last
/// 4096 bytes (the two may overlap; a short file is hashed twice, unpadded)
/// and its length as a big-endian `u64`. It identifies a file whose GNU
/// build id was stripped, and the mapping conventions recommend it on every
/// mapping (opentelemetry.io/docs/specs/otel/profiles/mappings). Reads 8 KiB
/// at most.
///
/// # Errors
///
/// Any I/O error reading or seeking `file`.
pub fn htlhash(file: &mut (impl Read + Seek)) -> io::Result<[u8; 16]> {
    use sha2::{Digest, Sha256};
    const PAGE: u64 = 4096;
    let len = file.seek(SeekFrom::End(0))?;
    let mut page = Vec::with_capacity(PAGE as usize);
    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(0))?;
    file.by_ref().take(PAGE).read_to_end(&mut page)?;
    hasher.update(&page);
    page.clear();
    file.seek(SeekFrom::Start(len.saturating_sub(PAGE)))?;
    file.by_ref().take(PAGE).read_to_end(&mut page)?;
    hasher.update(&page);
    hasher.update(len.to_be_bytes());
    let digest = hasher.finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    Ok(id)
}

/// Reads the `NT_GNU_BUILD_ID` note of an ELF file with blazesym's parser;
/// `None` on any error or if the file has none.
pub(crate) fn read_build_id(path: &Path) -> Option<Vec<u8>> {
    match blazesym::helper::read_elf_build_id(path) {
        Ok(Some(id)) if !id.is_empty() => Some(id.into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from Python's hashlib, an implementation independent
    /// of the one used here:
    /// `sha256(b[:4096] + b[-4096:] + struct.pack(">Q", len(b))).hexdigest()[:32]`.
    #[test]
    fn htlhash_matches_the_spec() {
        let hex = |id: [u8; 16]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let of = |bytes: Vec<u8>| hex(htlhash(&mut std::io::Cursor::new(bytes)).unwrap());
        // Shorter than a page: head and tail are the whole file, twice.
        assert_eq!(of(b"0123456789".to_vec()), "6b08e12ebaacbe995643c9cfbf4720bc");
        // Longer than two pages: the middle is not read.
        let long: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(of(long), "29e3194e821b97b5565d43a5156ad97a");
        assert_eq!(of(Vec::new()), "af5570f5a1810b7af78caf4bc70a660f");
    }

    #[test]
    fn mapped_files_get_their_htlhash() {
        let maps = read_object_mappings().unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mine = maps.iter().find(|m| Path::new(&m.path) == exe).unwrap();
        let expected = htlhash(&mut std::fs::File::open(&exe).unwrap()).unwrap();
        assert_eq!(mine.htlhash, Some(expected));
        assert!(maps.iter().filter(|m| m.is_pseudo()).all(|m| m.htlhash.is_none()));
    }

    /// The address of libc's `getpid`, as a probe into libc's text.
    fn libc_getpid_addr() -> u64 {
        let f: unsafe extern "C" fn() -> libc::pid_t = libc::getpid;
        f as usize as u64
    }

    #[test]
    fn parses_a_file_mapping() {
        let line = b"55d0c1a00000-55d0c1a26000 r-xp 00002000 08:01 1049201                    /usr/bin/true";
        let e = parse_line(line).unwrap();
        assert_eq!(e.start, 0x55d0c1a00000);
        assert_eq!(e.end, 0x55d0c1a26000);
        assert!(e.perms.readable() && e.perms.executable() && !e.perms.writable());
        assert_eq!(e.offset, 0x2000);
        assert_eq!(e.dev, b"08:01");
        assert_eq!(e.inode, 1049201);
        assert_eq!(e.path, Some(b"/usr/bin/true".as_slice()));
        assert!(!e.deleted);
    }

    #[test]
    fn parses_odd_lines() {
        let spaces =
            parse_line(b"7f00-7f10 r-xp 00000000 fd:00 42   /opt/my app/lib x.so").unwrap();
        assert_eq!(spaces.path, Some(b"/opt/my app/lib x.so".as_slice()));

        let vvar = parse_line(
            b"7ffd3b7d5000-7ffd3b7d9000 r--p 00000000 00:00 0                          [vvar]",
        )
        .unwrap();
        assert_eq!(vvar.path, Some(b"[vvar]".as_slice()));
        assert!(!vvar.perms.executable());

        let anon = parse_line(b"7f2a10000000-7f2a10021000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.path, None);
        assert_eq!(anon.inode, 0);
        let bare = parse_line(b"7f2a10000000-7f2a10021000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(bare.path, None);

        let deleted =
            parse_line(b"7f00-7f10 r-xp 00001000 08:01 77     /tmp/old lib.so (deleted)").unwrap();
        assert_eq!(deleted.path, Some(b"/tmp/old lib.so".as_slice()));
        assert!(deleted.deleted);

        let vsyscall =
            parse_line(b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]")
                .unwrap();
        assert_eq!(vsyscall.end, 0xffffffffff601000);
        assert!(vsyscall.perms.executable() && !vsyscall.perms.readable());

        let non_utf8 = parse_line(b"1000-2000 r-xp 00000000 08:01 5 /tmp/\xff\xfe.so").unwrap();
        assert_eq!(non_utf8.path, Some(b"/tmp/\xff\xfe.so".as_slice()));
    }

    #[test]
    fn rejects_garbage() {
        for line in [
            b"".as_slice(),
            b"   ",
            b"hello world",
            b"1000 r-xp 0 08:01 5 /x",
            b"1000-zz r-xp 0 08:01 5 /x",
            b"1000-2000 r-x 0 08:01 5 /x",
            b"1000-2000 r-xp 0 08:01",
            b"1000-2000 r-xp 0 08:01 inode /x",
            b"1000-2000 r-xp 0x 08:01 5 /x",
        ] {
            assert_eq!(parse_line(line), None, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn object_lookup() {
        let mapping = |start, limit| ObjectMapping {
            start,
            limit,
            file_offset: 0,
            path: "/x".into(),
            build_id: None,
            htlhash: None,
        };
        let maps = [mapping(0x1000, 0x2000), mapping(0x2000, 0x3000), mapping(0x5000, 0x6000)];
        assert_eq!(object_for(&maps, 0xfff), None);
        assert_eq!(object_for(&maps, 0x1000), Some(0));
        assert_eq!(object_for(&maps, 0x1fff), Some(0));
        assert_eq!(object_for(&maps, 0x2000), Some(1));
        assert_eq!(object_for(&maps, 0x3000), None);
        assert_eq!(object_for(&maps, 0x5fff), Some(2));
        assert_eq!(object_for(&maps, u64::MAX), None);
        assert_eq!(object_for(&[], 0x1000), None);
    }

    #[test]
    fn loader_generation_is_readable() {
        let first = loader_generation();
        if cfg!(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))) {
            assert!(first.is_some());
        }
        // Nothing loaded or unloaded in between (other tests may dlopen, so
        // only "never goes away" is checked).
        assert_eq!(loader_generation().is_some(), first.is_some());
    }

    #[inline(never)]
    fn probe_in_text() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn finds_this_executable_with_a_build_id() {
        let maps = read_object_mappings().unwrap();
        assert!(maps.windows(2).all(|w| w[0].limit <= w[1].start));
        let addr = (probe_in_text as fn() -> u64) as usize as u64;
        let index = object_for(&maps, addr).unwrap();
        let exe = std::env::current_exe().unwrap();
        let mapping = &maps[index];
        assert_eq!(Path::new(&mapping.path), exe.as_path());
        let id = mapping.build_id.as_ref().expect("rustc/ld emit a GNU build id on Linux");
        assert!(id.len() >= 8, "{id:?}");
        assert!(mapping.htlhash.is_some(), "the executable is readable");

        // libc is mapped and has a build id too; the vdso has none.
        let libc_addr = libc_getpid_addr();
        let libc_map = &maps[object_for(&maps, libc_addr).unwrap()];
        assert!(libc_map.path.contains("libc"), "{}", libc_map.path);
        if let Some(vdso) = maps.iter().find(|m| m.path == "[vdso]") {
            assert!(vdso.is_pseudo());
            assert_eq!(vdso.build_id, None);
        }

        // A second read hits the cache and gives the same answer (other
        // tests may `dlopen` meanwhile, so only this object is compared).
        let again = read_object_mappings().unwrap();
        assert_eq!(again.get(object_for(&again, addr).unwrap()), Some(mapping));
        assert_eq!(probe_in_text(), 7);
    }
}
