//! One OTLP/HTTP attempt: POST the (compressed) body, classify the answer.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use crate::config::{Compression, ExportConfig, MAX_TIMEOUT, Secret};

use super::retry::parse_retry_after;

/// Most response body bytes read from a successful answer (the spec caps
/// responses at 4 MiB).
const MAX_RESPONSE_BYTES: u64 = 4 << 20;
/// Most response body bytes read from an error answer.
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;
/// Most bytes of an error body kept in `last_error`.
const ERROR_DETAIL_BYTES: usize = 200;
/// The time limit of one attempt when no timeout is configured
/// (`otlp_timeout(Duration::ZERO)`, `OTEL_EXPORTER_OTLP_TIMEOUT=0`): the
/// longest timeout that can be configured, 1 h. Without any limit a server
/// that accepts the connection and never answers would hold the export
/// thread for ever (and with it every later request).
pub(crate) const UNCONFIGURED_ATTEMPT_LIMIT: Duration = MAX_TIMEOUT;

/// `opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportProfilesServiceResponse {
    /// Set when the server rejected part of the request (or has a warning).
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportProfilesPartialSuccess>,
}

/// `ExportProfilesPartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportProfilesPartialSuccess {
    /// Profiles the server rejected.
    #[prost(int64, tag = "1")]
    pub rejected_profiles: i64,
    /// Why, for people.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers (details
/// skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Why, for people.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// 2xx. `partial` is `(rejected_profiles, error_message)` when the
    /// server reported a partial success (or a warning).
    Delivered {
        /// The partial success, if any.
        partial: Option<(i64, String)>,
    },
    /// 429/502/503/504, a failed connection or a timeout: try again.
    Retryable {
        /// What happened, for `last_error`.
        reason: String,
        /// The server's `Retry-After`, if it sent a usable one.
        retry_after: Option<Duration>,
    },
    /// Any other status: do not try again.
    Rejected {
        /// Status and the start of the body, for `last_error`.
        reason: String,
    },
    /// A failure that retrying cannot fix (TLS, bad response, ...).
    Failed {
        /// What happened, for `last_error`.
        reason: String,
    },
}

/// Sends requests to one endpoint.
pub(crate) struct Sender {
    /// The HTTP client (connection pool, timeouts, proxy).
    agent: ureq::Agent,
    /// The POST URL.
    url: String,
    /// Extra headers.
    headers: Vec<(String, Secret)>,
    /// Body compression.
    compression: Compression,
    /// The time limit of one attempt, for messages.
    timeout: Duration,
}

impl Sender {
    /// A sender for `config`; `proxy_from_env` honours `HTTPS_PROXY` /
    /// `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` (tests turn it off).
    pub(crate) fn new(config: &ExportConfig, proxy_from_env: bool) -> Self {
        let timeout = config.timeout.unwrap_or(UNCONFIGURED_ATTEMPT_LIMIT);
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("lowprof/", env!("CARGO_PKG_VERSION")));
        if !proxy_from_env {
            builder = builder.proxy(None);
        }
        Self {
            agent: builder.build().new_agent(),
            url: config.url.clone(),
            headers: config.headers.clone(),
            compression: config.compression,
            timeout,
        }
    }

    /// The body to send for `request`: gzip-compressed unless compression
    /// is off.
    pub(crate) fn encode(&self, request: Vec<u8>) -> Result<Vec<u8>, String> {
        match self.compression {
            Compression::None => Ok(request),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(request.len() / 4 + 64),
                    flate2::Compression::default(),
                );
                gz.write_all(&request).and_then(|()| gz.finish()).map_err(|e| format!("gzip: {e}"))
            }
        }
    }

    /// POSTs `body` (as returned by [`Sender::encode`]) once.
    pub(crate) fn attempt(&self, body: &[u8]) -> Attempt {
        let mut request =
            self.agent.post(&self.url).header("content-type", "application/x-protobuf");
        if self.compression == Compression::Gzip {
            request = request.header("content-encoding", "gzip");
        }
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.expose());
        }
        match request.send(body) {
            Ok(response) => classify_response(response),
            Err(e) => classify_error(e, self.timeout),
        }
    }
}

/// Classifies an HTTP answer.
fn classify_response(mut response: ureq::http::Response<ureq::Body>) -> Attempt {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        let is_json = response.body().mime_type().is_some_and(|m| m.contains("json"));
        let mut bytes = Vec::new();
        // The data is delivered whatever happens to the answer's body.
        let read = response.body_mut().as_reader().take(MAX_RESPONSE_BYTES).read_to_end(&mut bytes);
        if is_json || read.is_err() {
            return Attempt::Delivered { partial: None };
        }
        let partial = <ExportProfilesServiceResponse as prost::Message>::decode(bytes.as_slice())
            .ok()
            .and_then(|r| r.partial_success)
            .filter(|p| p.rejected_profiles != 0 || !p.error_message.is_empty())
            .map(|p| (p.rejected_profiles, sanitize(p.error_message.as_bytes())));
        return Attempt::Delivered { partial };
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let is_protobuf = response.body().mime_type().is_some_and(|m| m.contains("protobuf"));
    let mut bytes = Vec::new();
    let _ = response.body_mut().as_reader().take(MAX_ERROR_BODY_BYTES).read_to_end(&mut bytes);
    let detail = if is_protobuf {
        match <RpcStatus as prost::Message>::decode(bytes.as_slice()) {
            Ok(s) if !s.message.is_empty() => sanitize(s.message.as_bytes()),
            _ => sanitize(&bytes),
        }
    } else {
        sanitize(&bytes)
    };
    let reason = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    match status {
        429 | 502 | 503 | 504 => Attempt::Retryable { reason, retry_after },
        300..=399 => Attempt::Rejected {
            reason: format!("{reason} (a redirect: set the endpoint to the URL it points to)"),
        },
        _ => Attempt::Rejected { reason },
    }
}

/// Classifies a transport failure: connection problems and timeouts are
/// worth retrying, the rest is not.
fn classify_error(e: ureq::Error, timeout: Duration) -> Attempt {
    let retryable = |reason: String| Attempt::Retryable { reason, retry_after: None };
    match e {
        ureq::Error::Io(e) => retryable(format!("connection failed: {e}")),
        ureq::Error::Timeout(t) => {
            retryable(format!("no answer within the timeout ({t}, {timeout:?})"))
        }
        ureq::Error::HostNotFound => retryable("host not found (DNS)".to_owned()),
        ureq::Error::ConnectionFailed => retryable("connection failed".to_owned()),
        ureq::Error::Protocol(e) => Attempt::Failed {
            reason: format!(
                "the answer is not HTTP/1.1 ({e}): check that the endpoint is an OTLP/HTTP port \
                 (usually 4318), not gRPC's 4317"
            ),
        },
        e => Attempt::Failed { reason: e.to_string() },
    }
}

/// At most [`ERROR_DETAIL_BYTES`] of `bytes` as text, control characters
/// replaced by spaces.
fn sanitize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_DETAIL_BYTES)]);
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_truncates_and_strips_controls() {
        assert_eq!(sanitize(b"  bad\r\nthing\0 "), "bad  thing");
        assert_eq!(sanitize(&[b'x'; 1000]).len(), ERROR_DETAIL_BYTES);
        // A cut through a UTF-8 character is not a panic.
        let s = "é".repeat(150);
        assert!(sanitize(s.as_bytes()).chars().count() <= 101);
    }

    #[test]
    fn every_attempt_has_a_time_limit() {
        let config = |timeout| ExportConfig {
            url: "http://127.0.0.1:1/v1development/profiles".into(),
            headers: Vec::new(),
            timeout,
            compression: Compression::Gzip,
            service_name: None,
            resource_attributes: Vec::new(),
            export_interval: Duration::from_secs(60),
        };
        let limit = |timeout| {
            let sender = Sender::new(&config(timeout), false);
            (sender.agent.config().timeouts().global, sender.timeout)
        };
        let two = Duration::from_secs(2);
        assert_eq!(limit(Some(two)), (Some(two), two));
        // "No timeout" still ends a hung attempt, after an hour.
        assert_eq!(limit(None), (Some(UNCONFIGURED_ATTEMPT_LIMIT), UNCONFIGURED_ATTEMPT_LIMIT));
        assert_eq!(UNCONFIGURED_ATTEMPT_LIMIT, Duration::from_secs(3600));
    }

    #[test]
    fn response_messages_round_trip() {
        let r = ExportProfilesServiceResponse {
            partial_success: Some(ExportProfilesPartialSuccess {
                rejected_profiles: 3,
                error_message: "too old".into(),
            }),
        };
        let bytes = prost::Message::encode_to_vec(&r);
        // Field 1 (message) { field 1 varint 3, field 2 "too old" }.
        assert_eq!(&bytes[..5], &[0x0a, 0x0b, 0x08, 0x03, 0x12]);
        let back: ExportProfilesServiceResponse = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, r);
    }
}
