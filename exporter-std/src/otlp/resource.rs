//! The OTLP resource: what the process says about itself.
//!
//! Only facts about the program and the machine are detected — never the
//! command line or the environment, which routinely hold secrets.

use super::ResourceInfo;

/// `service.name`.
pub(super) const SERVICE_NAME: &str = "service.name";
/// `process.pid`, sent as an integer.
pub(super) const PROCESS_PID: &str = "process.pid";

/// Attributes the semantic conventions type as integers: sent as
/// `int_value` when their text parses as one.
pub(super) const INT_KEYS: &[&str] = &[PROCESS_PID, "process.parent_pid"];

/// See [`super::detect_resource`].
pub(super) fn detect(service_name: Option<&str>, extra: &[(String, String)]) -> ResourceInfo {
    let exe = std::env::current_exe().ok();
    let exe_name = exe
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(comm)
        .filter(|n| !n.is_empty());

    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| {
        if let Some(slot) = attributes.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            attributes.push((key.to_owned(), value));
        }
    };
    set(PROCESS_PID, std::process::id().to_string());
    if let Some(name) = &exe_name {
        set("process.executable.name", name.clone());
    }
    if let Some(path) = &exe {
        set("process.executable.path", path.to_string_lossy().into_owned());
    }
    if let Some(host) = host_name() {
        set("host.name", host);
    }
    set("os.type", os_type().to_owned());
    set("telemetry.sdk.name", "lowprof".to_owned());
    set("telemetry.sdk.language", "rust".to_owned());
    set("telemetry.sdk.version", env!("CARGO_PKG_VERSION").to_owned());
    for (key, value) in extra {
        if key != SERVICE_NAME && !key.is_empty() {
            set(key, value.clone());
        }
    }

    let from_extra = extra.iter().rev().find(|(k, _)| k == SERVICE_NAME).map(|(_, v)| v.as_str());
    let service_name = service_name
        .filter(|s| !s.is_empty())
        .or(from_extra.filter(|s| !s.is_empty()))
        .map(str::to_owned)
        .unwrap_or_else(|| match &exe_name {
            Some(name) => format!("unknown_service:{name}"),
            None => "unknown_service".to_owned(),
        });
    ResourceInfo { service_name, attributes }
}

/// The process name the kernel keeps (the executable's file name, cut to 15
/// bytes): a fallback when `/proc/self/exe` cannot be read.
fn comm() -> Option<String> {
    std::fs::read_to_string("/proc/self/comm").ok().map(|s| s.trim_end().to_owned())
}

/// `gethostname(2)`.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and
    // gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(buf.get(..len)?).into_owned();
    (!name.is_empty()).then_some(name)
}

/// `os.type` in the semantic conventions' spelling.
fn os_type() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}
