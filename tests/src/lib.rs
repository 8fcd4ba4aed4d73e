//! Shared pieces of lowprof's end-to-end tests: known workloads, the
//! statistics that say how far an estimate may be from the truth, and
//! running `go tool pprof` — a real consumer, not our own decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cpu;
pub mod pprof_tool;
pub mod sites;
pub mod stats;

/// The value of a `key=value` line in a test binary's output, parsed as `T`
/// (`u64`, `f64`, ...); panics naming the key if it is missing or bad.
pub fn stat_as<T: std::str::FromStr>(stdout: &str, key: &str) -> T {
    let value = stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= line in:\n{stdout}"));
    value.trim().parse().unwrap_or_else(|_| panic!("{key}={value} is not a number"))
}

/// [`stat_as`] for counters.
pub fn stat(stdout: &str, key: &str) -> u64 {
    stat_as(stdout, key)
}

/// The total of `sample_type` over the samples of `profile` (read in
/// process, not through `go tool pprof`) whose stack passes through a
/// function whose name contains `function`.
pub fn total_through(profile: &lowprof::Profile, sample_type: &str, function: &str) -> i64 {
    let index = profile
        .sample_type_index(sample_type)
        .unwrap_or_else(|| panic!("no sample type {sample_type}"));
    profile
        .samples
        .iter()
        .filter(|s| profile.stack_names(s).iter().any(|n| n.contains(function)))
        .map(|s| s.values[index])
        .sum()
}
