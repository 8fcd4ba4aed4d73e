//! The OTLP profiles encoder: [`Profile`]s to an OpenTelemetry
//! `ExportProfilesServiceRequest`, the body of
//! `POST {endpoint}/v1development/profiles` (`application/x-protobuf`).
//!
//! The signal is still `v1development` and its wire layout changes between
//! releases. This module writes the **v1.10.0** layout of
//! `open-telemetry/opentelemetry-proto` (v1.11.0 is identical on the wire;
//! readers built on v1.9.0 or earlier misread `Sample`). The messages are in
//! [`proto`], written by hand as prost structs, like [`crate::pprof::proto`]:
//! the `opentelemetry-proto` crate has them, but its `profiles` feature pulls
//! in `opentelemetry`, `opentelemetry_sdk` and tonic's types for the 22 small
//! messages this needs.
//!
//! ```text
//!  ExportProfilesServiceRequest
//!  ├ resource_profiles[0]
//!  │ ├ resource: service.name, process.*, host.name, os.type, telemetry.sdk.*  (plain keys)
//!  │ └ scope_profiles[0]: scope {name: "lowprof", version}
//!  │   └ profiles: one per (model profile, sample type)
//!  │       sample_type, period_type, period, time_unix_nano, duration_nano, profile_id,
//!  │       attribute_indices → lowprof.comment
//!  │       samples[i] = {stack_index, attribute_indices (labels), link_index: 0, values: [v]}
//!  └ dictionary (shared by every profile; entry 0 of each table is its zero value)
//!      stack_table[s]    = location indices, leaf first
//!      location_table[l] = {mapping_index, address, lines: [{function_index, line}] (inlined first)}
//!      function_table[f] = {name, system_name, filename (string indices), start_line}
//!      mapping_table[m]  = {memory_start, memory_limit, file_offset, filename,
//!                           attributes: process.executable.build_id.gnu}
//!      attribute_table   = labels, build ids, comments;  string_table[0] = "";
//!      link_table[0]     = {16 zero bytes, 8 zero bytes}
//! ```
//!
//! Choices, where the format leaves room:
//!
//! - **One `Profile` per sample type.** Since v1.8 a profile has a single
//!   `sample_type`, so a heap profile becomes four (`alloc_objects`,
//!   `alloc_space`, `inuse_objects`, `inuse_space`, period `space/bytes`) and
//!   a CPU profile two: `samples/count` — what opentelemetry-ebpf-profiler
//!   sends, and what Pyroscope turns into `process_cpu` by multiplying by
//!   the period — and `cpu/nanoseconds`, which carries the same data already
//!   multiplied (Pyroscope files it under a separate `cpu` name, so nothing
//!   is counted twice). Both have period type `cpu/nanoseconds`. A sample is
//!   written to a profile only if its value of that type is non-zero (a heap
//!   sample whose blocks were all freed has no `inuse_*` samples).
//! - **Samples are `values: [v]` without timestamps**, and samples with the
//!   same identity (stack, set of attributes, link) are merged. Labels
//!   become sample attributes with the same key: strings as `string_value`,
//!   numbers as `int_value` with the label's unit as `unit_strindex`.
//! - **Resource attributes use plain `key` and `string_value`** (or
//!   `int_value` for `process.pid`), not v1.10's `key_strindex` /
//!   `string_value_strindex`: Pyroscope and Parca read only the plain forms.
//!   The same holds for dictionary attribute values.
//! - **Comments** (sampling notes, drop counts, the frame-pointer hint) are
//!   kept, as one profile attribute `lowprof.comment` holding them one per
//!   line: they explain gaps in the data, cost one attribute per profile, and
//!   attribute keys must be unique per profile, so they cannot be separate
//!   attributes.
//! - **No `profile.frame.type`** on locations. The semantic conventions want
//!   `rust` for Rust frames, but a stack mixes Rust with C (libc, system
//!   libraries) and the model does not say which is which; `native` would be
//!   true of every frame and so tells a reader nothing (Pyroscope only looks
//!   for `kernel`). Leaving it out also keeps locations free of attributes.
//! - **Mappings carry `process.executable.build_id.gnu`** when the model has a
//!   GNU build id, and **`process.executable.build_id.htlhash`** (the
//!   conventions recommend it on every mapping; [`crate::maps::htlhash`])
//!   whenever the file could be read, stripped or not.
//! - **Trace links**: samples labelled `trace_id` and `span_id` (see
//!   [`crate::trace`]) get a `link_index` into `link_table` instead of those
//!   two attributes; other samples have `link_index` 0.
//!
//! # Time ranges, and the heap over OTLP
//!
//! Each OTLP `Profile` gets `time_unix_nano` = the model profile's `start`
//! and `duration_nano` = its `duration`, and backends read it as the
//! measurement of `[time, time + duration)`: Pyroscope, for one, adds
//! profiles up over time. Go's heap profile does not fit that: its
//! `alloc_*` are cumulative since the start, so sending it every round
//! would count every allocation again in every later round. The periodic
//! exporter (`periodic.rs`) therefore gives this encoder, every round:
//!
//! - `alloc_objects`, `alloc_space` of `[previous round, now)` only (the
//!   first round: since the profiler started), with that range as time and
//!   duration; the ranges of consecutive rounds touch, so the sum over all
//!   rounds is the cumulative `alloc_*` of the latest pprof file, up to the
//!   per-row rounding to integers; allocations dropped on full rings are in
//!   the range in which they were dropped;
//! - `inuse_objects`, `inuse_space` now: time = now, duration 0 (a snapshot);
//! - the CPU profile of `[previous round, now)`.
//!
//! pprof files and the pull endpoint keep Go's cumulative heap profile. The
//! encoder itself does not care: it encodes whatever profiles it is given.
//!
//! Like the pprof encoder, this one never fails: samples with the wrong
//! number of values or unknown locations, unknown mapping and function
//! references, and labels with an empty or repeated key are left out, and a
//! line in `lowprof.comment` says how many.

mod encode;
pub mod proto;
mod resource;
#[cfg(test)]
mod tests;

use prost::Message;

use crate::profile::Profile;

/// What the [`proto::Resource`] of a request says about the process.
///
/// `service.name` is kept apart from the other attributes because it has
/// its own precedence rules (see [`detect_resource`]); a `service.name` in
/// `attributes` is ignored by [`encode_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Further resource attributes, in order. `process.pid` is sent as an
    /// integer, everything else as a string; a key given twice keeps its last
    /// value.
    pub attributes: Vec<(String, String)>,
}

/// Detected process attributes + `extra` (from OTEL_RESOURCE_ATTRIBUTES,
/// already parsed by the caller) + service name (`service_name` if Some —
/// from OTEL_SERVICE_NAME or the builder — else a `service.name` in `extra`,
/// else `unknown_service:<executable name>`).
///
/// The detected attributes are `process.pid`, `process.executable.name`,
/// `process.executable.path`, `host.name`, `os.type`, `telemetry.sdk.name`
/// (`lowprof`), `telemetry.sdk.language` (`rust`) and
/// `telemetry.sdk.version`, in that order; an `extra` key replaces a detected
/// one in place, new keys follow in their order. The command line and the
/// environment are never read: they routinely hold secrets.
///
/// An empty service name counts as absent. Reads `/proc/self/exe` and the
/// host name, so call it once and keep the result.
pub fn detect_resource(service_name: Option<&str>, extra: &[(String, String)]) -> ResourceInfo {
    resource::detect(service_name, extra)
}

/// One `ExportProfilesServiceRequest` (uncompressed protobuf bytes) holding
/// every profile in `profiles`: one OTLP `Profile` per sample type of each
/// input profile, all sharing one `ProfilesDictionary`.
///
/// Strings, mappings, functions, locations, stacks and attributes are
/// deduplicated across all of `profiles`, so sending a heap and a CPU
/// profile together costs little more than the larger of the two. Each OTLP
/// profile gets a fresh random `profile_id`, so two calls on the same input
/// differ in those 16 bytes only. Never fails; see the module docs for what
/// is left out of invalid input.
pub fn encode_request(profiles: &[&Profile], resource: &ResourceInfo) -> Vec<u8> {
    encode::request(profiles, resource).encode_to_vec()
}

/// Decodes an uncompressed `ExportProfilesServiceRequest`, for tests and
/// debugging.
pub fn decode_request(
    bytes: &[u8],
) -> Result<proto::ExportProfilesServiceRequest, prost::DecodeError> {
    proto::ExportProfilesServiceRequest::decode(bytes)
}
