//! API errors: a status code and a JSON body naming the problem.
//!
//! The body mirrors Firecracker's `{"fault_message": "..."}` and adds a
//! stable machine-readable `code`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::daemon::vms::VmsError;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable identifier, e.g. `invalid_config`.
    pub code: &'static str,
    /// What was wrong, for humans.
    pub message: String,
}

/// The JSON body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable identifier of the problem.
    pub code: String,
    /// What was wrong.
    pub fault_message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            fault_message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "API error");
        } else {
            tracing::debug!(status = self.status.as_u16(), code = self.code, message = %self.message, "API request rejected");
        }
        (self.status, Json(self.body())).into_response()
    }
}

impl From<VmsError> for ApiError {
    fn from(e: VmsError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            VmsError::NotFound(_) => (StatusCode::NOT_FOUND, "vm_not_found"),
            VmsError::Exists(_) => (StatusCode::CONFLICT, "vm_exists"),
            VmsError::Transition(_) | VmsError::Busy { .. } => {
                (StatusCode::CONFLICT, "invalid_state_transition")
            }
            VmsError::Boot { source, .. } => match source {
                crate::daemon::process::SpawnError::Boot(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "boot_failed")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "vmm_process_failed"),
            },
            // The guest stopped on its own while the command was on its way.
            VmsError::Command {
                source: crate::daemon::process::CommandError::Gone,
                ..
            } => (StatusCode::CONFLICT, "invalid_state_transition"),
            VmsError::Command { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "vmm_process_failed"),
            VmsError::Journal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "journal_failed"),
            VmsError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            VmsError::TooManyVms { .. } => (StatusCode::CONFLICT, "too_many_vms"),
            VmsError::GdbAddressInUse { .. } => (StatusCode::CONFLICT, "gdb_address_in_use"),
            VmsError::OutOfMemory { .. } => (StatusCode::INSUFFICIENT_STORAGE, "out_of_memory"),
            VmsError::Task(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        Self::new(status, code, message)
    }
}

/// The JSON-bodied replacement for an answer hyper wrote by itself, before
/// any handler ran (431 headers too large, 400 for a malformed request line,
/// header or Content-Length, ...): such an answer is a 4xx/5xx head with
/// `content-length: 0` and no content type, which no handler here produces.
/// `None` for anything else.
pub fn hyper_error_as_json(written: &[u8], shape: ErrorShape) -> Option<Vec<u8>> {
    // Cheap tests first: this sees every write of every answer.
    if written.len() > 512 || !written.starts_with(b"HTTP/1.1 ") || !written.ends_with(b"\r\n\r\n")
    {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let status_line = head.strip_suffix("\r\n\r\n")?.lines().next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    if !(400..600).contains(&code) {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length: 0\r\n") || lower.contains("\r\ncontent-type:") {
        return None;
    }
    let (code_name, message) = match code {
        431 => (
            "headers_too_large",
            "the request headers exceed the server's limit",
        ),
        400 => (
            "bad_request",
            "malformed HTTP request (request line, a header, or Content-Length)",
        ),
        505 => ("http_version_not_supported", "only HTTP/1.1 is served"),
        _ => ("bad_request", "the HTTP request could not be parsed"),
    };
    Some(error_answer(status_line, shape, code_name, message))
}

/// How an API's error bodies look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"code", "fault_message"}`: the daemon's API.
    CodeAndMessage,
    /// `{"fault_message"}`: Firecracker's API.
    MessageOnly,
}

/// A whole HTTP/1.1 error answer, written by hand on the socket: `status_line`
/// and a JSON body of `shape` naming `code` and `message`, closing the connection.
pub fn error_answer(status_line: &str, shape: ErrorShape, code: &str, message: &str) -> Vec<u8> {
    let body = match shape {
        ErrorShape::CodeAndMessage => serde_json::json!({"code": code, "fault_message": message}),
        ErrorShape::MessageOnly => serde_json::json!({"fault_message": message}),
    }
    .to_string();
    format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_answers_get_a_json_body_and_others_are_left_alone() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 11:55:40 GMT\r\n\r\n";
        let daemon = |written: &[u8]| hyper_error_as_json(written, ErrorShape::CodeAndMessage);
        let out = String::from_utf8(daemon(hyper).unwrap()).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        let e: ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(e.code, "headers_too_large");
        let fc = hyper_error_as_json(hyper, ErrorShape::MessageOnly).unwrap();
        assert!(String::from_utf8(fc)
            .unwrap()
            .ends_with(r#"{"fault_message":"the request headers exceed the server's limit"}"#));
        for other in [
            &b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"{\"code\": 1}",
        ] {
            assert!(daemon(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
