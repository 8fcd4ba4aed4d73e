//! Reading profiles back with `go tool pprof` (Debian package `golang-go`,
//! installed by `.ci/run`): the consumer users run, not our own decoder.
//!
//! Tests that need it call [`require_go`]: without `go` they fail when the
//! `CI` variable is set, and otherwise print why they were skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `go` binary, if installed.
pub fn go() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("go"),
        PathBuf::from("/usr/lib/go/bin/go"),
        PathBuf::from("/usr/local/go/bin/go"),
    ];
    candidates
        .into_iter()
        .find(|go| Command::new(go).arg("version").output().is_ok_and(|o| o.status.success()))
}

/// The `go` binary; panics under `CI` when it is missing, else `None`.
pub fn require_go() -> Option<PathBuf> {
    let found = go();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("`go tool pprof` is required (Debian package golang-go; .ci/run installs it)");
        }
        eprintln!(
            "SKIPPED: `go` not found; install golang-go to run this test (it fails under CI=true)"
        );
    }
    found
}

/// Runs `go tool pprof <args>`, asserting success; returns stdout.
pub fn pprof(go: &Path, args: &[&str]) -> String {
    let out = Command::new(go)
        .args(["tool", "pprof"])
        .args(args)
        // Never try to fetch or re-symbolize anything.
        .env("PPROF_BINARY_PATH", "/nonexistent")
        .output()
        .expect("run go tool pprof");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One sample of `go tool pprof -raw`.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// One value per sample type.
    pub values: Vec<i64>,
    /// Location ids, leaf first.
    pub locations: Vec<u64>,
    /// Labels as pprof prints them, e.g. `("bytes", "1024")`.
    pub labels: Vec<(String, String)>,
}

/// A profile as `go tool pprof -raw` prints it.
#[derive(Debug, Clone, Default)]
pub struct RawProfile {
    /// Sample type names, e.g. `alloc_space`.
    pub sample_types: Vec<String>,
    /// The samples.
    pub samples: Vec<RawSample>,
    /// Each location's printed lines (innermost inlined function first).
    pub locations: HashMap<u64, Vec<String>>,
}

impl RawProfile {
    /// Index of a sample type.
    pub fn index(&self, sample_type: &str) -> usize {
        self.sample_types
            .iter()
            .position(|t| t == sample_type)
            .unwrap_or_else(|| panic!("no sample type {sample_type} in {:?}", self.sample_types))
    }

    /// The text of every line of every location of `sample`, leaf first.
    pub fn stack_text(&self, sample: &RawSample) -> Vec<&str> {
        sample
            .locations
            .iter()
            .flat_map(|id| self.locations.get(id).into_iter().flatten().map(String::as_str))
            .collect()
    }

    /// Whether `sample`'s stack has a frame naming `function` exactly.
    pub fn has_function(&self, sample: &RawSample, function: &str) -> bool {
        self.stack_text(sample).iter().any(|line| {
            line.split_whitespace().any(|w| w == function || w.ends_with(&format!("({function})")))
        })
    }

    /// Sum of `sample_type` over samples whose stack has `function`.
    pub fn total_for(&self, sample_type: &str, function: &str) -> i64 {
        let i = self.index(sample_type);
        self.samples.iter().filter(|s| self.has_function(s, function)).map(|s| s.values[i]).sum()
    }

    /// Sum of `sample_type` over all samples.
    pub fn total(&self, sample_type: &str) -> i64 {
        let i = self.index(sample_type);
        self.samples.iter().map(|s| s.values[i]).sum()
    }
}

/// Reads `file` with `go tool pprof -raw`.
pub fn raw(go: &Path, file: &Path) -> RawProfile {
    parse_raw(&pprof(go, &["-raw", &file.to_string_lossy()]))
}

/// Parses `go tool pprof -raw` output.
pub fn parse_raw(text: &str) -> RawProfile {
    enum Section {
        Header,
        Samples,
        Locations,
        Other,
    }
    let mut p = RawProfile::default();
    let mut section = Section::Header;
    let mut current_location: Option<u64> = None;
    for line in text.lines() {
        match line.trim_end() {
            "Samples:" => {
                section = Section::Samples;
                continue;
            }
            "Locations" => {
                section = Section::Locations;
                continue;
            }
            "Mappings" => {
                section = Section::Other;
                continue;
            }
            _ => {}
        }
        match section {
            Section::Samples => {
                let trimmed = line.trim();
                if p.sample_types.is_empty() {
                    p.sample_types = trimmed
                        .split_whitespace()
                        .map(|t| t.split('/').next().unwrap_or(t).to_owned())
                        .collect();
                } else if let Some((values, locs)) = trimmed.split_once(':').filter(|(v, _)| {
                    !v.is_empty() && v.split_whitespace().all(|x| x.parse::<i64>().is_ok())
                }) {
                    p.samples.push(RawSample {
                        values: values.split_whitespace().map(|v| v.parse().unwrap()).collect(),
                        locations: locs.split_whitespace().filter_map(|l| l.parse().ok()).collect(),
                        labels: Vec::new(),
                    });
                } else if let Some(sample) = p.samples.last_mut() {
                    // Label lines: `bytes:[1024]`, several per line for
                    // string labels: `span_id:[00f0…] span_name:[checkout]`.
                    let mut rest = trimmed;
                    while let Some(open) = rest.find(":[") {
                        let key = rest[..open].trim();
                        let after = &rest[open + 2..];
                        let Some(close) = after.find(']') else { break };
                        sample.labels.push((key.to_owned(), after[..close].to_owned()));
                        rest = &after[close + 1..];
                    }
                }
            }
            Section::Locations => {
                let trimmed = line.trim_start();
                if let Some((id, rest)) =
                    trimmed.split_once(": ").filter(|(id, _)| id.parse::<u64>().is_ok())
                {
                    let id = id.parse().unwrap();
                    current_location = Some(id);
                    p.locations.entry(id).or_default().push(rest.to_owned());
                } else if let Some(id) = current_location {
                    p.locations.entry(id).or_default().push(trimmed.to_owned());
                }
            }
            Section::Header | Section::Other => {}
        }
    }
    p
}
