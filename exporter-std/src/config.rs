//! OTLP export settings: what the builder collected, completed from the
//! standard `OTEL_*` environment variables and checked, with an
//! [`Error::Config`] naming the setting and the fix for every bad value.
//!
//! Precedence, highest first (an empty or all-blank environment variable
//! counts as unset, as the OpenTelemetry spec requires):
//!
//! | what | sources |
//! |---|---|
//! | endpoint | builder `otlp_endpoint` (as-is if it has a path, else `+ /v1development/profiles`) > `OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT` (same rule) > `OTEL_EXPORTER_OTLP_ENDPOINT` (always `+ /v1development/profiles`); none of them = export off |
//! | headers | `OTEL_EXPORTER_OTLP_PROFILES_HEADERS` if set, else `OTEL_EXPORTER_OTLP_HEADERS` (the signal-specific variable replaces the generic one entirely, as the spec and the Go and Java SDKs have it); builder `header`s are added on top, replacing same-named (case-insensitive) ones |
//! | timeout | builder `otlp_timeout` > `..._PROFILES_TIMEOUT` > `OTEL_EXPORTER_OTLP_TIMEOUT` > 10 s; 0 = none configured: each attempt is still cut off after 1 h ([`MAX_TIMEOUT`]) |
//! | compression | builder > `..._PROFILES_COMPRESSION` > `OTEL_EXPORTER_OTLP_COMPRESSION` > `gzip` |
//! | protocol | `..._PROFILES_PROTOCOL` > `OTEL_EXPORTER_OTLP_PROTOCOL`; only `http/protobuf` |
//! | service name | builder `service_name` > `OTEL_SERVICE_NAME` > `service.name` in `OTEL_RESOURCE_ATTRIBUTES` |
//!
//! Environment variables are only read when an endpoint is configured
//! somewhere (other signals' settings must not stop a program that does not
//! export profiles); builder values are always checked.

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// The OTLP/HTTP path for profiles, appended to base endpoints.
pub(crate) const PROFILES_PATH: &str = "/v1development/profiles";
/// Per-request timeout when none is configured (the spec's 10 s).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest per-request timeout accepted; also the limit of each attempt
/// when the timeout is 0 (none configured).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Time between two exports when the builder does not say.
pub(crate) const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
/// The longest export interval accepted.
pub(crate) const MAX_EXPORT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Base endpoint for all signals; `/v1development/profiles` is appended.
pub(crate) const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Profiles endpoint, used as-is when it has a path.
pub(crate) const ENV_PROFILES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT";
/// Headers for all signals.
pub(crate) const ENV_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Headers for profiles.
pub(crate) const ENV_PROFILES_HEADERS: &str = "OTEL_EXPORTER_OTLP_PROFILES_HEADERS";
/// Timeout in milliseconds for all signals.
pub(crate) const ENV_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Timeout in milliseconds for profiles.
pub(crate) const ENV_PROFILES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT";
/// `gzip` or `none` for all signals.
pub(crate) const ENV_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// `gzip` or `none` for profiles.
pub(crate) const ENV_PROFILES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION";
/// Transport for all signals.
pub(crate) const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Transport for profiles.
pub(crate) const ENV_PROFILES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL";
/// The `service.name` resource attribute.
pub(crate) const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Extra resource attributes, `k=v,...`.
pub(crate) const ENV_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Longest part of a bad value shown in an error message.
const SHOWN_CHARS: usize = 120;

/// What the builder collected for OTLP export (`None` = not set).
#[derive(Clone, Default)]
pub(crate) struct OtlpSettings {
    /// `otlp_endpoint`: a profiles endpoint (used as-is when it has a path).
    pub endpoint: Option<String>,
    /// `header(k, v)`: extra request headers; values are secrets.
    pub headers: Vec<(String, String)>,
    /// `otlp_timeout`: per-request timeout (zero = none configured; each
    /// attempt is still cut off after [`MAX_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// `otlp_compression`: `gzip` or `none`.
    pub compression: Option<String>,
    /// `service_name`: the `service.name` resource attribute.
    pub service_name: Option<String>,
    /// `export_interval`: time between two exports.
    pub export_interval: Option<Duration>,
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, Secret)> =
            self.headers.iter().map(|(k, _)| (k.as_str(), Secret(String::new()))).collect();
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("service_name", &self.service_name)
            .field("export_interval", &self.export_interval)
            .finish()
    }
}

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    /// `Content-Encoding: gzip` (the default).
    Gzip,
    /// Uncompressed.
    None,
}

/// A header value: may hold a credential, so `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for putting on the wire.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Checked OTLP export settings. `Debug` redacts header values and the
/// URL's query (it may carry an API key).
#[derive(Clone)]
pub(crate) struct ExportConfig {
    /// The full POST URL.
    pub url: String,
    /// Extra request headers, unique by (case-insensitive) name.
    pub headers: Vec<(String, Secret)>,
    /// Per-request timeout; `None` = none configured (the exporter still
    /// cuts each attempt off after [`MAX_TIMEOUT`], 1 h).
    pub timeout: Option<Duration>,
    /// Request body compression.
    pub compression: Compression,
    /// The effective `service.name` (builder > `OTEL_SERVICE_NAME` >
    /// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`); `None` = the encoder's
    /// default (`unknown_service:<exe>`).
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` without `service.name`, unique by key
    /// (the last one wins), in first-seen order.
    pub resource_attributes: Vec<(String, String)>,
    /// Time between two exports.
    pub export_interval: Duration,
}

impl fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportConfig")
            .field("url", &redact_url(&self.url))
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("export_interval", &self.export_interval)
            .finish()
    }
}

/// Resolves the builder's settings and the environment (`env` looks a
/// variable up, e.g. `|k| std::env::var(k).ok()`) into an [`ExportConfig`],
/// or `Ok(None)` when no endpoint is configured anywhere.
pub(crate) fn resolve(
    settings: &OtlpSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ExportConfig>, Error> {
    // Builder values first: they are checked even when export is off.
    let export_interval = check_export_interval(settings.export_interval)?;
    let builder_timeout = match settings.timeout {
        Some(t) if t > MAX_TIMEOUT => {
            return Err(config_error(
                "otlp_timeout",
                &format!("{t:?}"),
                "is out of range: use 1 ms ..= 1 h, or Duration::ZERO for none (each attempt is then \
                 cut off after 1 h; default 10 s)"
                    .to_owned(),
            ));
        }
        Some(t) => Some(if t.is_zero() { None } else { Some(t) }),
        None => None,
    };
    let builder_compression = match &settings.compression {
        Some(c) => Some(parse_compression("otlp_compression", c)?),
        None => None,
    };
    if let Some(name) = &settings.service_name {
        check_service_name("service_name", name)?;
    }
    let mut headers: Vec<(String, Secret)> = Vec::new();
    let mut builder_headers = Vec::with_capacity(settings.headers.len());
    for (k, v) in &settings.headers {
        builder_headers.push(check_header("header", k.trim(), v.trim(), false)?);
    }

    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());

    let url = if let Some(e) = &settings.endpoint {
        endpoint_url("otlp_endpoint", e, true)?
    } else if let Some(e) = env(ENV_PROFILES_ENDPOINT) {
        endpoint_url(ENV_PROFILES_ENDPOINT, &e, true)?
    } else if let Some(e) = env(ENV_ENDPOINT) {
        endpoint_url(ENV_ENDPOINT, &e, false)?
    } else {
        return Ok(None);
    };

    if let Some(p) = env(ENV_PROFILES_PROTOCOL) {
        check_protocol(ENV_PROFILES_PROTOCOL, &p)?;
    } else if let Some(p) = env(ENV_PROTOCOL) {
        check_protocol(ENV_PROTOCOL, &p)?;
    }

    // The signal-specific variable replaces the generic one, not merged
    // with it (OTLP exporter spec; the Go and Java SDKs do the same): a
    // generic token for traces must not reach the profiles backend when
    // profiles have their own headers. The unused one is not checked.
    let env_headers = match env(ENV_PROFILES_HEADERS) {
        Some(raw) => Some((ENV_PROFILES_HEADERS, raw)),
        None => env(ENV_HEADERS).map(|raw| (ENV_HEADERS, raw)),
    };
    if let Some((name, raw)) = env_headers {
        for h in parse_headers(name, &raw)? {
            merge_header(&mut headers, h);
        }
    }
    for h in builder_headers {
        merge_header(&mut headers, h);
    }

    let timeout = match builder_timeout {
        Some(t) => t,
        None => match (env(ENV_PROFILES_TIMEOUT), env(ENV_TIMEOUT)) {
            (Some(raw), _) => parse_timeout_ms(ENV_PROFILES_TIMEOUT, &raw)?,
            (None, Some(raw)) => parse_timeout_ms(ENV_TIMEOUT, &raw)?,
            (None, None) => Some(DEFAULT_TIMEOUT),
        },
    };

    let compression = match builder_compression {
        Some(c) => c,
        None => match (env(ENV_PROFILES_COMPRESSION), env(ENV_COMPRESSION)) {
            (Some(raw), _) => parse_compression(ENV_PROFILES_COMPRESSION, &raw)?,
            (None, Some(raw)) => parse_compression(ENV_COMPRESSION, &raw)?,
            (None, None) => Compression::Gzip,
        },
    };

    let mut resource_attributes = match env(ENV_RESOURCE_ATTRIBUTES) {
        Some(raw) => parse_resource_attributes(&raw)?,
        None => Vec::new(),
    };
    let attr_service_name = resource_attributes
        .iter()
        .position(|(k, _)| k == "service.name")
        .map(|i| resource_attributes.remove(i).1);
    let service_name = match (&settings.service_name, env(ENV_SERVICE_NAME)) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(name)) => {
            let name = name.trim().to_owned();
            check_service_name(ENV_SERVICE_NAME, &name)?;
            Some(name)
        }
        (None, None) => attr_service_name.filter(|n| !n.is_empty()),
    };

    Ok(Some(ExportConfig {
        url,
        headers,
        timeout,
        compression,
        service_name,
        resource_attributes,
        export_interval,
    }))
}

/// The export interval the builder asked for (or the default), if it is in
/// range; also checked by `ProfilerBuilder::validate`, because files are
/// written at that interval without OTLP export too.
pub(crate) fn check_export_interval(interval: Option<Duration>) -> Result<Duration, Error> {
    let interval = interval.unwrap_or(DEFAULT_EXPORT_INTERVAL);
    if interval.is_zero() || interval > MAX_EXPORT_INTERVAL {
        return Err(config_error(
            "export_interval",
            &format!("{interval:?}"),
            "is out of range: use more than zero and at most 24 h (default 60 s)".to_owned(),
        ));
    }
    Ok(interval)
}

/// Builds an [`Error::Config`], shortening `value` for display.
pub(crate) fn config_error(setting: &'static str, value: &str, fix: String) -> Error {
    Error::Config { setting, value: shorten(value), fix }
}

/// At most [`SHOWN_CHARS`] characters of `s`, saying how long it was.
fn shorten(s: &str) -> String {
    let n = s.chars().count();
    if n <= SHOWN_CHARS {
        return s.to_owned();
    }
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    format!("{head}… ({n} characters)")
}

// ---------------------------------------------------------------- endpoint

/// `raw` with any `user:password@`, `?query` and `#fragment` replaced by
/// `<redacted>`, for showing in errors and `Debug`.
///
/// Credentials end at the *last* `@`: a pasted password may hold a raw
/// `/`, `?`, `#` or `:`, which would otherwise end the authority early and
/// show part of it. (A path, query or fragment holding `@` then hides the
/// host too — the lesser harm.) Fragments may carry tokens (OAuth puts
/// them there).
fn redact_url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) if raw[..i].bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) => {
            raw.split_at(i + 3)
        }
        _ => ("", raw),
    };
    let (credentials, rest) = match (rest.rfind('@'), rest.find(['?', '#'])) {
        // A `?` or `#` before the last `@`: a password holding it, or an
        // `@` in the query or fragment; either way all of it may be secret.
        (Some(at), Some(q)) if q < at => return format!("{scheme}<redacted>"),
        (Some(at), _) => ("<redacted>@", &rest[at + 1..]),
        (None, _) => ("", rest),
    };
    match rest.find(['?', '#']) {
        Some(i) => format!("{scheme}{credentials}{}{}<redacted>", &rest[..i], &rest[i..=i]),
        None => format!("{scheme}{credentials}{rest}"),
    }
}

/// Checks an endpoint and makes the POST URL from it. A per-signal endpoint
/// (`per_signal`) is used as-is when it has a path beyond `/`; a base
/// endpoint always gets [`PROFILES_PATH`] appended.
fn endpoint_url(setting: &'static str, raw: &str, per_signal: bool) -> Result<String, Error> {
    let s = raw.trim();
    let bad = |fix: &str| config_error(setting, &redact_url(s), fix.to_owned());
    if s.is_empty() {
        return Err(bad("is empty: set a URL such as http://localhost:4318"));
    }
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            return Err(bad("contains whitespace or a control character: remove it"));
        }
        if !c.is_ascii() {
            return Err(bad(
                "contains a non-ASCII character: percent-encode it in the path, and write host \
                 names in their xn-- form",
            ));
        }
        if !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)) {
            return Err(config_error(
                setting,
                &redact_url(s),
                format!("contains {c:?}, which a URL cannot hold: percent-encode it"),
            ));
        }
    }
    let Some(scheme_end) = s.find("://") else {
        return Err(bad("has no scheme: write http://host:port or https://host:port"));
    };
    let scheme = s[..scheme_end].to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad(
            "has an unsupported scheme: use http:// or https:// (OTLP/HTTP, usually port 4318)",
        ));
    }
    let rest = &s[scheme_end + 3..];
    if rest.contains('#') {
        return Err(bad("has a #fragment, which is never sent: remove it"));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(bad(
            "contains credentials (user:password@): remove them and send them as a header instead, \
             e.g. OTEL_EXPORTER_OTLP_HEADERS=authorization=Basic%20<base64>",
        ));
    }
    check_authority(authority).map_err(bad)?;
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let base = path.trim_end_matches('/');
    let path = if per_signal && !base.is_empty() {
        path.to_owned()
    } else {
        format!("{base}{PROFILES_PATH}")
    };
    let url = format!("{scheme}://{authority}{path}{query}");
    if ureq::http::Uri::try_from(url.as_str()).is_err() {
        return Err(bad("is not a valid URL: write http://host:port or https://host:port/path"));
    }
    Ok(url)
}

/// Checks `host[:port]`; the error is the fix to show.
fn check_authority(authority: &str) -> Result<(), &'static str> {
    let (host_ok, port) = if let Some(inner_and_rest) = authority.strip_prefix('[') {
        let Some(close) = inner_and_rest.find(']') else {
            return Err("has an IPv6 address without its closing ]: write http://[::1]:4318");
        };
        let inner = &inner_and_rest[..close];
        let after = &inner_and_rest[close + 1..];
        let ok = inner.contains(':')
            && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err("has text after the IPv6 address: write http://[::1]:4318"),
            },
        };
        if !ok {
            return Err("has an invalid IPv6 address: write http://[::1]:4318");
        }
        (true, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(
                "has more than one ':': put IPv6 addresses in brackets, e.g. http://[::1]:4318",
            );
        }
        let ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if host.is_empty() {
            return Err("has no host: write http://host:port, e.g. http://localhost:4318");
        }
        (ok, port)
    };
    if !host_ok {
        return Err(
            "has an invalid host name: use letters, digits, '-' and '.', e.g. collector.example.com",
        );
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err(
                "has an invalid port: use 1..=65535 (OTLP/HTTP's is 4318), or leave it out",
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- key=value lists

/// Percent-decodes `s` (`%XX` → byte; nothing else changes, `+` stays `+`);
/// `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The part of a `key=value` list item that is safe to show when its value
/// may be a secret: the leading run of letters, `-`, `_` and `.` (what a
/// header name looks like; API keys contain digits), then `<redacted>` if
/// anything followed.
fn redacted_part(part: &str) -> String {
    let end = part
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '-' || c == '_' || c == '.') || i >= 40)
        .map_or(part.len(), |(i, _)| i);
    if end == part.len() { part.to_owned() } else { format!("{}<redacted>", &part[..end]) }
}

/// What an error shows of a part of a secret-bearing value that may be all
/// secret (an item without `=` may be a pasted bare token): its length
/// only.
fn redacted_len(part: &str) -> String {
    format!("<redacted> ({} characters)", part.chars().count())
}

/// An HTTP token character (RFC 9110 `tchar`).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Headers lowprof sets itself; a configured one would corrupt the request.
const RESERVED_HEADERS: [&str; 4] =
    ["content-type", "content-encoding", "content-length", "transfer-encoding"];

/// Checks one (decoded, trimmed) header. `from_env`: the name comes from a
/// headers variable, where a bad name may be part of a pasted token, so
/// only its length is shown.
fn check_header(
    setting: &'static str,
    key: &str,
    value: &str,
    from_env: bool,
) -> Result<(String, Secret), Error> {
    if key.is_empty() {
        return Err(config_error(
            setting,
            "=<redacted>",
            "has a header with an empty name: write name=value, e.g. authorization=Bearer%20TOKEN"
                .to_owned(),
        ));
    }
    if !key.chars().all(is_tchar) {
        let shown = if from_env { redacted_len(key) } else { redacted_part(key) };
        return Err(config_error(
            setting,
            &shown,
            "is not a valid header name: use letters, digits and -, e.g. x-api-key".to_owned(),
        ));
    }
    if RESERVED_HEADERS.iter().any(|r| key.eq_ignore_ascii_case(r)) {
        return Err(config_error(
            setting,
            key,
            "is set by lowprof for each request: remove it (use OTEL_EXPORTER_OTLP_COMPRESSION for \
             the encoding)"
                .to_owned(),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(config_error(
            setting,
            &format!("{key}=<redacted>"),
            "has a control character (e.g. a line break) in its value: remove it, or write \
             what it stands for percent-encoded only if the server expects it"
                .to_owned(),
        ));
    }
    Ok((key.to_owned(), Secret::new(value.to_owned())))
}

/// Adds or replaces (by case-insensitive name) a header.
fn merge_header(headers: &mut Vec<(String, Secret)>, (key, value): (String, Secret)) {
    match headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
        Some(slot) => *slot = (key, value),
        None => headers.push((key, value)),
    }
}

/// Parses `k1=v1,k2=v2` (keys and values percent-decoded and trimmed; empty
/// items skipped). `secret` values are never shown in errors.
fn parse_pairs(
    setting: &'static str,
    raw: &str,
    secret: bool,
    example: &str,
) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let shown = |part: &str| if secret { redacted_len(part) } else { part.to_owned() };
        let Some((k, v)) = part.split_once('=') else {
            return Err(config_error(
                setting,
                &shown(part),
                format!("has no \"=\": write key=value pairs separated by commas, e.g. {example}"),
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        let Some(key) = percent_decode(k) else {
            return Err(config_error(
                setting,
                &if secret { redacted_len(k) } else { redacted_part(k) },
                "has a bad percent-escape in a key: write %XX with two hex digits of UTF-8, e.g. \
                 %3D for =, %2C for a comma, %25 for %"
                    .to_owned(),
            ));
        };
        let key = key.trim().to_owned();
        let Some(value) = percent_decode(v) else {
            let shown = if secret {
                format!("{}=<redacted>", redacted_part(&key))
            } else {
                part.to_owned()
            };
            return Err(config_error(
                setting,
                &shown,
                "has a bad percent-escape in its value: write %XX with two hex digits of UTF-8, \
                 e.g. %20 for a space, %2C for a comma, %25 for %"
                    .to_owned(),
            ));
        };
        if key.is_empty() {
            let shown = if secret { "=<redacted>".to_owned() } else { part.to_owned() };
            return Err(config_error(
                setting,
                &shown,
                format!(
                    "has an empty key: write key=value pairs separated by commas, e.g. {example}"
                ),
            ));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Parses an `OTEL_EXPORTER_OTLP_*HEADERS` value.
fn parse_headers(setting: &'static str, raw: &str) -> Result<Vec<(String, Secret)>, Error> {
    parse_pairs(setting, raw, true, "authorization=Bearer%20TOKEN")?
        .into_iter()
        .map(|(k, v)| check_header(setting, &k, v.trim(), true))
        .collect()
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`; the last of repeated keys wins.
fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in
        parse_pairs(ENV_RESOURCE_ATTRIBUTES, raw, false, "deployment.environment=prod,team=core")?
    {
        if k.chars().any(char::is_control) || v.chars().any(char::is_control) {
            return Err(config_error(
                ENV_RESOURCE_ATTRIBUTES,
                &format!("{k}={v}"),
                "has a control character: remove it".to_owned(),
            ));
        }
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

/// Checks a service name.
fn check_service_name(setting: &'static str, name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(config_error(
            setting,
            name,
            "is empty: give the service a name, e.g. checkout-api".to_owned(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(config_error(setting, name, "has a control character: remove it".to_owned()));
    }
    Ok(())
}

// ---------------------------------------------------------------- scalars

/// Parses a timeout in milliseconds: `Some(d)`, or `None` for 0 (none
/// configured: the exporter cuts each attempt off after [`MAX_TIMEOUT`]).
fn parse_timeout_ms(setting: &'static str, raw: &str) -> Result<Option<Duration>, Error> {
    let s = raw.trim();
    let max_ms = MAX_TIMEOUT.as_millis();
    let ms = (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .filter(|&ms| u128::from(ms) <= max_ms);
    match ms {
        Some(0) => Ok(None),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
        None => Err(config_error(
            setting,
            s,
            format!(
                "is not a timeout in milliseconds: use a whole number in 0..={max_ms} (0 = none, \
                 i.e. 1 h per attempt; default {})",
                DEFAULT_TIMEOUT.as_millis()
            ),
        )),
    }
}

/// Parses `gzip` / `none` (ASCII case-insensitive).
fn parse_compression(setting: &'static str, raw: &str) -> Result<Compression, Error> {
    let s = raw.trim();
    if s.eq_ignore_ascii_case("gzip") {
        Ok(Compression::Gzip)
    } else if s.eq_ignore_ascii_case("none") {
        Ok(Compression::None)
    } else {
        Err(config_error(
            setting,
            s,
            "is not a supported compression: use gzip (the default) or none".to_owned(),
        ))
    }
}

/// Accepts only `http/protobuf`, the transport lowprof implements.
fn check_protocol(setting: &'static str, raw: &str) -> Result<(), Error> {
    let s = raw.trim();
    let fix = match s.to_ascii_lowercase().as_str() {
        "http/protobuf" => return Ok(()),
        "grpc" => {
            "asks for gRPC, which lowprof does not speak: set http/protobuf (or unset it) and point \
             the endpoint at the collector's OTLP/HTTP port (usually 4318, not gRPC's 4317)"
        }
        "http/json" => {
            "asks for JSON, which lowprof does not send: set http/protobuf (or unset it); OTLP/HTTP \
             receivers accept both"
        }
        _ => "is not an OTLP protocol lowprof supports: set http/protobuf (or unset it)",
    };
    Err(config_error(setting, s, fix.to_owned()))
}

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment made of `pairs`.
    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k: &str| map.get(k).cloned()
    }

    fn resolve_env(pairs: &[(&str, &str)]) -> Result<Option<ExportConfig>, Error> {
        resolve(&OtlpSettings::default(), &env_of(pairs))
    }

    fn ok(pairs: &[(&str, &str)]) -> ExportConfig {
        match resolve_env(pairs) {
            Ok(Some(c)) => c,
            other => panic!("{pairs:?}: {other:?}"),
        }
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        match resolve_env(pairs) {
            Err(e @ Error::Config { .. }) => e.to_string(),
            other => panic!("{pairs:?}: expected a config error, got {other:?}"),
        }
    }

    const BASE: (&str, &str) = (ENV_ENDPOINT, "http://collector:4318");

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert!(resolve_env(&[]).unwrap().is_none());
        assert!(resolve_env(&[(ENV_ENDPOINT, "  ")]).unwrap().is_none());
        // Other signals' settings do not matter when profiles are not exported.
        assert!(resolve_env(&[(ENV_PROTOCOL, "grpc"), (ENV_HEADERS, "junk")]).unwrap().is_none());
        // Builder values are checked even then.
        let s = OtlpSettings { export_interval: Some(Duration::ZERO), ..Default::default() };
        assert!(resolve(&s, &env_of(&[])).is_err());
    }

    #[test]
    fn url_rules_and_precedence() {
        let url = |pairs: &[(&str, &str)]| ok(pairs).url;
        assert_eq!(url(&[BASE]), "http://collector:4318/v1development/profiles");
        assert_eq!(
            url(&[(ENV_ENDPOINT, "http://c:4318/")]),
            "http://c:4318/v1development/profiles"
        );
        assert_eq!(
            url(&[(ENV_ENDPOINT, "https://c/otlp//")]),
            "https://c/otlp/v1development/profiles"
        );
        assert_eq!(
            url(&[(ENV_ENDPOINT, "HTTP://c:4318/base?x=1")]),
            "http://c:4318/base/v1development/profiles?x=1"
        );
        // Per-signal: as-is with a path, else the path is added.
        assert_eq!(url(&[(ENV_PROFILES_ENDPOINT, "http://p:1234/custom")]), "http://p:1234/custom");
        assert_eq!(
            url(&[(ENV_PROFILES_ENDPOINT, "http://p:1234/custom/")]),
            "http://p:1234/custom/"
        );
        assert_eq!(url(&[(ENV_PROFILES_ENDPOINT, "http://p")]), "http://p/v1development/profiles");
        assert_eq!(
            url(&[(ENV_PROFILES_ENDPOINT, "http://p//")]),
            "http://p/v1development/profiles"
        );
        assert_eq!(
            url(&[(ENV_PROFILES_ENDPOINT, "http://[::1]:4318")]),
            "http://[::1]:4318/v1development/profiles"
        );
        // Precedence: builder > PROFILES > generic.
        assert_eq!(url(&[BASE, (ENV_PROFILES_ENDPOINT, "http://p/x")]), "http://p/x");
        assert_eq!(
            url(&[BASE, (ENV_PROFILES_ENDPOINT, " ")]),
            "http://collector:4318/v1development/profiles"
        );
        let s = OtlpSettings { endpoint: Some("https://b:443".into()), ..Default::default() };
        let c =
            resolve(&s, &env_of(&[BASE, (ENV_PROFILES_ENDPOINT, "http://p/x")])).unwrap().unwrap();
        assert_eq!(c.url, "https://b:443/v1development/profiles");
        // A bad lower-precedence endpoint is never looked at.
        assert_eq!(
            url(&[(ENV_ENDPOINT, "ftp://x"), (ENV_PROFILES_ENDPOINT, "http://p/x")]),
            "http://p/x"
        );
    }

    #[test]
    fn bad_urls_say_what_to_change() {
        for (value, needle) in [
            ("ftp://c:21", "use http:// or https://"),
            ("collector:4318", "has no scheme"),
            ("http://", "has no host"),
            ("http://:4318", "has no host"),
            ("http://c:0", "1..=65535"),
            ("http://c:65536", "1..=65535"),
            ("http://c:99999999999999999999", "1..=65535"),
            ("http://c:", "invalid port"),
            ("http://c:43x", "invalid port"),
            ("http://c d", "whitespace"),
            ("http://c\u{0}", "control"),
            ("http://c/\u{7f}", "control"),
            ("http://bücher.example", "non-ASCII"),
            ("http://c/<x>", "percent-encode"),
            ("http://c/#frag", "fragment"),
            ("http://[::1", "closing ]"),
            ("http://[zz]:1", "IPv6"),
            ("http://::1:4318", "brackets"),
            ("http://c!:1", "invalid host"),
        ] {
            let e = err(&[(ENV_ENDPOINT, value)]);
            assert!(e.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: "), "{e}");
            assert!(e.contains(needle), "{value:?}: {e}");
        }
        let s = OtlpSettings { endpoint: Some(String::new()), ..Default::default() };
        let e = resolve(&s, &env_of(&[])).unwrap_err().to_string();
        assert!(e.starts_with("otlp_endpoint: \"\" is empty"), "{e}");
    }

    #[test]
    fn url_errors_redact_credentials_and_queries() {
        let e = err(&[(ENV_ENDPOINT, "http://user:pa55word@c:4318/x?token=t0ps3cret")]);
        assert!(!e.contains("pa55word") && !e.contains("t0ps3cret"), "{e}");
        assert!(e.contains("credentials"), "{e}");
        let e = err(&[(ENV_ENDPOINT, "ftp://c/?token=t0ps3cret")]);
        assert!(!e.contains("t0ps3cret"), "{e}");
        let s = OtlpSettings { endpoint: Some("http://u:pa55word@c".into()), ..Default::default() };
        assert!(!format!("{s:?}").contains("pa55word"));
        // Found by the hostile-input property test: a raw '/', '?' or '#'
        // in a password ended the authority early and showed the rest, and
        // fragments (where OAuth puts tokens) were shown whole.
        for (url, secrets) in [
            ("http://user:pa55/w0rd@c:4318", &["pa55", "w0rd"][..]),
            ("http://user:pa55?w0rd@c:4318/x", &["pa55", "w0rd"]),
            ("http://user:pa55#w0rd@c", &["pa55", "w0rd"]),
            ("http://c/#access_token=t0ps3cret", &["t0ps3cret"]),
            ("http://c?key=t0p@s3cret", &["t0p", "s3cret"]),
        ] {
            let outcome = match resolve_env(&[(ENV_ENDPOINT, url)]) {
                Err(e) => e.to_string(),
                ok => format!("{ok:?}"),
            };
            let s = OtlpSettings { endpoint: Some(url.into()), ..Default::default() };
            let shown = format!("{outcome}{s:?}");
            for secret in secrets {
                assert!(!shown.contains(secret), "{url}: {shown}");
            }
        }
        assert_eq!(redact_url("https://u:p@c:1/a?b#c"), "https://<redacted>@c:1/a?<redacted>");
        assert_eq!(redact_url("http://c/p#f"), "http://c/p#<redacted>");
        assert_eq!(redact_url("u:p://x@c"), "<redacted>@c");
    }

    #[test]
    fn headers_merge_decode_and_stay_secret() {
        let headers = |c: &ExportConfig| -> Vec<(String, String)> {
            c.headers.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect()
        };
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let generic = (ENV_HEADERS, " Authorization = Bearer%20generic , x-a=1,, x-b=%3D%2C ");
        let c = ok(&[BASE, generic]);
        assert_eq!(
            headers(&c),
            pairs(&[("Authorization", "Bearer generic"), ("x-a", "1"), ("x-b", "=,")])
        );
        // The profiles variable replaces the generic one entirely (the spec,
        // the Go and Java SDKs): none of the generic headers go out, and a
        // bad generic value is not even looked at.
        let profiles = (ENV_PROFILES_HEADERS, "authorization=Bearer%20profiles,x-c=3");
        let c = ok(&[BASE, generic, profiles]);
        assert_eq!(headers(&c), pairs(&[("authorization", "Bearer profiles"), ("x-c", "3")]));
        let c = ok(&[BASE, (ENV_HEADERS, "junk without equals"), profiles]);
        assert_eq!(headers(&c).len(), 2);
        // A blank profiles variable counts as unset.
        let c = ok(&[BASE, generic, (ENV_PROFILES_HEADERS, "  ")]);
        assert_eq!(headers(&c).len(), 3);
        let s = OtlpSettings {
            headers: vec![("X-A".into(), "builder".into()), ("x-d".into(), "4".into())],
            ..Default::default()
        };
        let c = resolve(&s, &env_of(&[BASE, (ENV_HEADERS, "x-a=1")])).unwrap().unwrap();
        let h: Vec<(&str, &str)> =
            c.headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert_eq!(h, [("X-A", "builder"), ("x-d", "4")]);
        // Debug never shows values.
        let c = ok(&[BASE, (ENV_HEADERS, "authorization=Bearer%20hunter2")]);
        let shown = format!("{c:?}{c:#?}");
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
        let s =
            OtlpSettings { headers: vec![("k".into(), "hunter2".into())], ..Default::default() };
        assert!(!format!("{s:?}{s:#?}").contains("hunter2"));
    }

    #[test]
    fn bad_headers_name_the_variable_and_redact_the_value() {
        let e = err(&[BASE, (ENV_HEADERS, "authorization")]);
        assert_eq!(
            e,
            "OTEL_EXPORTER_OTLP_HEADERS: \"<redacted> (13 characters)\" has no \"=\": write \
             key=value pairs separated by commas, e.g. authorization=Bearer%20TOKEN"
        );
        for (value, needle) in [
            ("authorization: Bearer hunter2", "has no \"=\""),
            ("abc123hunter2", "has no \"=\""),
            ("=hunter2", "empty key"),
            ("x-a=hunter2%zz", "percent-escape"),
            ("x-a=hunter2%", "percent-escape"),
            ("x-a=hunter2%ff", "percent-escape"),
            ("x-a=hunter2%0Aevil", "control character"),
            ("bad key=hunter2", "not a valid header name"),
            ("x(a)=hunter2", "not a valid header name"),
            ("content-type=hunter2", "set by lowprof"),
            ("%zz=hunter2", "percent-escape in a key"),
        ] {
            let e = err(&[BASE, (ENV_PROFILES_HEADERS, value)]);
            assert!(e.starts_with("OTEL_EXPORTER_OTLP_PROFILES_HEADERS: "), "{e}");
            assert!(e.contains(needle), "{value:?}: {e}");
            assert!(!e.contains("hunter2"), "{value:?} leaked: {e}");
        }
        let s = OtlpSettings {
            headers: vec![("x-a".into(), "hunter2\r\n".into())],
            ..Default::default()
        };
        assert!(resolve(&s, &env_of(&[BASE])).is_ok(), "trimmed");
        let s = OtlpSettings {
            headers: vec![("x-a".into(), "hun\nter2".into())],
            ..Default::default()
        };
        let e = resolve(&s, &env_of(&[BASE])).unwrap_err().to_string();
        assert!(e.starts_with("header: ") && !e.contains("hun"), "{e}");
    }

    #[test]
    fn a_bare_token_in_a_headers_variable_is_never_shown() {
        // Tokens made only of letters, '_', '-' and '.' (GitHub's ghp_…, or
        // dotted JWT-like strings) used to be shown whole by the heuristic
        // that kept the "name-looking" start of an item.
        for token in [
            "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz",
            "eyJhbGciOiJIUzI.eyJzdWIiOiIx.SflKxwRJSMeKKF",
            "Bearer sk-live-AbCdEfGhIjKlMn",
            "tokenWithNoDigits",
        ] {
            for var in [ENV_HEADERS, ENV_PROFILES_HEADERS] {
                let e = err(&[BASE, (var, &format!("x-ok=1,{token}"))]);
                assert!(e.starts_with(var) && e.contains("has no \"="), "{e}");
                let len = token.chars().count();
                assert!(e.contains(&format!("\"<redacted> ({len} characters)\"")), "{e}");
                // ("Bearer" is in the message's example.)
                for piece in
                    token.split([' ', '.', '_', '-']).filter(|p| p.len() > 3 && *p != "Bearer")
                {
                    assert!(!e.contains(piece), "{token:?} leaked {piece:?}: {e}");
                }
            }
            // A token mistaken for a header name (its '=' padding taken for
            // the separator) is not shown either.
            let e = err(&[BASE, (ENV_HEADERS, &format!("{token}%zz=x"))]);
            assert!(!e.contains(&token[..token.len().min(8)]), "{e}");
            let e = err(&[BASE, (ENV_HEADERS, &format!("{token}/x=="))]);
            assert!(e.contains("not a valid header name"), "{e}");
            assert!(!e.contains(&token[..token.len().min(8)]), "{e}");
        }
        // Not secret: resource attributes still show the item.
        let e = err(&[BASE, (ENV_RESOURCE_ATTRIBUTES, "team")]);
        assert!(e.contains("\"team\" has no"), "{e}");
    }

    #[test]
    fn debug_of_the_resolved_config_redacts_the_url_query() {
        let c = ok(&[
            (ENV_PROFILES_ENDPOINT, "https://ingest.example/v1development/profiles?api_key=k3yk3y"),
            (ENV_HEADERS, "authorization=Bearer%20hunter2"),
        ]);
        assert!(c.url.contains("api_key=k3yk3y"), "the real URL keeps its query");
        let shown = format!("{c:?}{c:#?}");
        assert!(!shown.contains("k3yk3y") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://ingest.example/v1development/profiles?<redacted>"));
        assert!(shown.contains("authorization"), "{shown}");
    }

    #[test]
    fn timeout_compression_protocol() {
        assert_eq!(ok(&[BASE]).timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(ok(&[BASE, (ENV_TIMEOUT, "2500")]).timeout, Some(Duration::from_millis(2500)));
        assert_eq!(ok(&[BASE, (ENV_TIMEOUT, "0")]).timeout, None);
        assert_eq!(
            ok(&[BASE, (ENV_TIMEOUT, "2500"), (ENV_PROFILES_TIMEOUT, " 300 ")]).timeout,
            Some(Duration::from_millis(300))
        );
        assert_eq!(ok(&[BASE, (ENV_TIMEOUT, "3600000")]).timeout, Some(MAX_TIMEOUT));
        for bad in ["-1", "1.5", "10s", "3600001", "99999999999999999999999", "１０"] {
            let e = err(&[BASE, (ENV_PROFILES_TIMEOUT, bad)]);
            assert!(e.contains("0..=3600000") && e.contains(ENV_PROFILES_TIMEOUT), "{e}");
        }
        let s = OtlpSettings { timeout: Some(Duration::from_secs(7200)), ..Default::default() };
        assert!(resolve(&s, &env_of(&[])).unwrap_err().to_string().starts_with("otlp_timeout: "));
        let s = OtlpSettings { timeout: Some(Duration::ZERO), ..Default::default() };
        assert_eq!(
            resolve(&s, &env_of(&[BASE, (ENV_TIMEOUT, "5")])).unwrap().unwrap().timeout,
            None
        );

        assert_eq!(ok(&[BASE]).compression, Compression::Gzip);
        assert_eq!(ok(&[BASE, (ENV_COMPRESSION, "NONE")]).compression, Compression::None);
        assert_eq!(
            ok(&[BASE, (ENV_COMPRESSION, "none"), (ENV_PROFILES_COMPRESSION, "gzip")]).compression,
            Compression::Gzip
        );
        let e = err(&[BASE, (ENV_COMPRESSION, "zstd")]);
        assert!(e.contains("gzip") && e.contains("none"), "{e}");
        let s = OtlpSettings { compression: Some("none".into()), ..Default::default() };
        let c = resolve(&s, &env_of(&[BASE, (ENV_PROFILES_COMPRESSION, "gzip")])).unwrap().unwrap();
        assert_eq!(c.compression, Compression::None);

        ok(&[BASE, (ENV_PROTOCOL, "http/protobuf")]);
        ok(&[BASE, (ENV_PROTOCOL, "grpc"), (ENV_PROFILES_PROTOCOL, "http/protobuf")]);
        let e = err(&[BASE, (ENV_PROTOCOL, "grpc")]);
        assert!(e.contains("gRPC") && e.contains("4318"), "{e}");
        let e = err(&[BASE, (ENV_PROFILES_PROTOCOL, "http/json")]);
        assert!(e.starts_with(ENV_PROFILES_PROTOCOL) && e.contains("JSON"), "{e}");
        assert!(err(&[BASE, (ENV_PROTOCOL, "carrier-pigeon")]).contains("http/protobuf"));
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let c = ok(&[
            BASE,
            (ENV_RESOURCE_ATTRIBUTES, "service.name=from-attrs, team = a%2Cb ,k=%3D,team=c"),
        ]);
        assert_eq!(c.service_name.as_deref(), Some("from-attrs"));
        assert_eq!(c.resource_attributes, [("team".into(), "c".into()), ("k".into(), "=".into())]);
        let c = ok(&[BASE, (ENV_RESOURCE_ATTRIBUTES, "service.name=a"), (ENV_SERVICE_NAME, "env")]);
        assert_eq!(c.service_name.as_deref(), Some("env"));
        assert!(c.resource_attributes.is_empty());
        let s = OtlpSettings { service_name: Some("builder".into()), ..Default::default() };
        let c = resolve(&s, &env_of(&[BASE, (ENV_SERVICE_NAME, "env")])).unwrap().unwrap();
        assert_eq!(c.service_name.as_deref(), Some("builder"));
        assert_eq!(ok(&[BASE]).service_name, None);
        for (value, needle) in [
            ("team", "has no \"=\""),
            ("=x", "empty key"),
            ("a=%zz", "percent-escape"),
            ("a=b%00", "control"),
        ] {
            let e = err(&[BASE, (ENV_RESOURCE_ATTRIBUTES, value)]);
            assert!(e.starts_with(ENV_RESOURCE_ATTRIBUTES) && e.contains(needle), "{value:?}: {e}");
        }
        let e = err(&[BASE, (ENV_SERVICE_NAME, "a\u{1b}b")]);
        assert!(e.starts_with(ENV_SERVICE_NAME), "{e}");
    }

    #[test]
    fn export_interval_range() {
        assert_eq!(ok(&[BASE]).export_interval, DEFAULT_EXPORT_INTERVAL);
        for (d, good) in [
            (Duration::ZERO, false),
            (Duration::from_millis(1), true),
            (MAX_EXPORT_INTERVAL, true),
            (MAX_EXPORT_INTERVAL + Duration::from_nanos(1), false),
            (Duration::MAX, false),
        ] {
            let s = OtlpSettings { export_interval: Some(d), ..Default::default() };
            let r = resolve(&s, &env_of(&[BASE]));
            assert_eq!(r.is_ok(), good, "{d:?}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.to_string().starts_with("export_interval: ")
                        && e.to_string().contains("24 h")
                );
            }
        }
    }

    /// Every variable, alone or with an endpoint set, given hostile values:
    /// `Ok` or a config error that names the variable, short, never a panic.
    #[test]
    fn hostile_values_never_panic() {
        use super::hostile::VARS;
        let big_a = "a".repeat(10 * 1024);
        let big_pairs = "k=v,".repeat(2600);
        let big_unicode = "é🦀\u{202e}".repeat(1200);
        let big_url = format!("http://{}:4318/", "h".repeat(10 * 1024));
        let mut table: Vec<String> = [
            "",
            " ",
            "\t\n",
            "\0",
            "\u{7f}",
            "\u{85}",
            "é",
            "🦀",
            "\u{202e}",
            "\u{feff}",
            "%",
            "%%",
            "%zz",
            "%0",
            "%00",
            "%ff",
            "%c3%28",
            "=",
            "==",
            ",",
            ",,",
            "=,=",
            "a=",
            "=b",
            "a=b=c",
            "a=%",
            "k=v\r\nx: y",
            "-1",
            "0",
            "1",
            "18446744073709551616",
            "99999999999999999999999999999999",
            "1e3",
            "NaN",
            "http://",
            "https://",
            "http://[",
            "http://[]",
            "http://[::1]x",
            "http://h:0",
            "http://h:65536",
            "http://h:-1",
            "http://@",
            "http://h?#",
            "http://h/%",
            "grpc",
            "http/json",
            "http/protobuf",
            "gzip",
            "none",
            "GZIP",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        table.extend([big_a, big_pairs, big_unicode, big_url]);
        // Plus xorshift-random strings over an alphabet of awkward characters.
        let alphabet: Vec<char> =
            "ab=,%:/[]@?#. \t\r\n\0\u{7f}é🦀0123456789fFhHtTpP".chars().collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300 {
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let len = (next() % 40) as usize;
            let mut s = if next() % 3 == 0 { "http://".to_owned() } else { String::new() };
            s.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            table.push(s);
        }
        for var in VARS {
            for value in &table {
                for with_endpoint in [false, true] {
                    let mut pairs = vec![(var, value.as_str())];
                    if with_endpoint && !var.ends_with("ENDPOINT") {
                        pairs.push(BASE);
                    }
                    match resolve_env(&pairs) {
                        Ok(_) => {}
                        Err(e @ Error::Config { .. }) => {
                            let msg = e.to_string();
                            assert!(msg.starts_with(var), "{var}={value:?}: {msg}");
                            assert!(msg.len() < 1200, "{var}: message too long: {}", msg.len());
                        }
                        Err(e) => panic!("{var}={value:?}: unexpected {e:?}"),
                    }
                }
            }
        }
        // The builder's strings too.
        for value in &table {
            let s = OtlpSettings {
                endpoint: Some(value.clone()),
                headers: vec![(value.clone(), value.clone())],
                compression: Some(value.clone()),
                service_name: Some(value.clone()),
                ..Default::default()
            };
            match resolve(&s, &env_of(&[])) {
                Ok(_) => {}
                Err(e @ Error::Config { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.len() < 1200, "{value:?}: message too long: {}", msg.len());
                }
                Err(e) => panic!("builder strings {value:?}: unexpected {e:?}"),
            }
        }
    }
}
