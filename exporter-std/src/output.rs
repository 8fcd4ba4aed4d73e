//! Writing profiles out and reading their top entries: the methods users call
//! on a [`Profile`].

use std::collections::HashMap;
use std::path::Path;

use crate::error::Error;
use crate::profile::Profile;
use crate::{flamegraph, pprof};

/// One line of [`Profile::top_sites`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopEntry {
    /// The function.
    pub name: String,
    /// Sum of the chosen value over the samples attributed to it.
    pub value: i64,
}

impl Profile {
    /// The profile as a gzip-compressed `profile.proto` (the bytes of a
    /// `.pb.gz` file; `go tool pprof` reads them).
    pub fn encode_pprof(&self) -> Vec<u8> {
        // gzip into a Vec cannot fail; if it ever did, uncompressed
        // protobuf is valid pprof input too.
        pprof::encode_gzip(self).unwrap_or_else(|_| pprof::encode(self))
    }

    /// Writes the profile as gzip-compressed pprof to `path`, atomically (no
    /// partial file is left on error).
    pub fn write_pprof(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        pprof::write_file(self, path).map_err(|source| Error::Io { path: path.to_owned(), source })
    }

    /// Writes a flamegraph SVG of the default sample type (`inuse_space` for
    /// heap profiles, `cpu` for CPU profiles).
    pub fn write_flamegraph(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let index = self.default_sample_type.unwrap_or(self.sample_types.len().saturating_sub(1));
        self.write_flamegraph_at(index, path.as_ref())
    }

    /// Writes a flamegraph SVG of the sample type named `sample_type`
    /// (e.g. `"alloc_space"`); falls back to the default type if there is
    /// no such type.
    pub fn write_flamegraph_of(
        &self,
        sample_type: &str,
        path: impl AsRef<Path>,
    ) -> Result<(), Error> {
        match self.sample_type_index(sample_type) {
            Some(index) => self.write_flamegraph_at(index, path.as_ref()),
            None => self.write_flamegraph(path),
        }
    }

    fn write_flamegraph_at(&self, index: usize, path: &Path) -> Result<(), Error> {
        let kind = self.sample_types.get(index).map_or("", |t| t.r#type.as_str());
        let title = format!("lowprof {kind}");
        flamegraph::write_svg(self, index, &title, path)
            .map_err(|source| Error::Io { path: path.to_owned(), source })
    }

    /// The `n` largest allocation sites (or CPU consumers) by `sample_type`.
    /// A sample's site is the innermost function outside Rust's standard
    /// library and collections (`std`, `core`, `alloc`, `hashbrown`), so
    /// `Vec::push` inside `parse_record` counts for `parse_record`.
    pub fn top_sites(&self, sample_type: &str, n: usize) -> Vec<TopEntry> {
        let Some(index) = self.sample_type_index(sample_type) else {
            return Vec::new();
        };
        let mut by_site: HashMap<&str, i64> = HashMap::new();
        for sample in &self.samples {
            let value = sample.values.get(index).copied().unwrap_or(0);
            if value == 0 {
                continue;
            }
            let names = self.stack_names(sample);
            let site =
                names.iter().copied().find(|n| !is_library_frame(n)).or(names.first().copied());
            *by_site.entry(site.unwrap_or("??")).or_default() += value;
        }
        let mut top: Vec<TopEntry> = by_site
            .into_iter()
            .map(|(name, value)| TopEntry { name: name.to_owned(), value })
            .collect();
        top.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
        top.truncate(n);
        top
    }
}

fn is_library_frame(name: &str) -> bool {
    let name = name.trim_start_matches('<');
    // allocator_api2: hashbrown's allocator shim (`Global::alloc_impl`).
    ["std::", "core::", "alloc::", "hashbrown::", "allocator_api2::", "__rust", "__rustc::"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::is_library_frame;

    #[test]
    fn library_frames_are_skipped_for_the_site_name() {
        for name in [
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "allocator_api2::stable::alloc::global::Global::alloc_impl",
            "__rustc::__rust_alloc",
        ] {
            assert!(is_library_frame(name), "{name}");
        }
        for name in ["demo::remember_sessions", "<my_app::Cache as Drop>::drop", "main"] {
            assert!(!is_library_frame(name), "{name}");
        }
    }
}
