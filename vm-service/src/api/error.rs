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
            VmsError::OutOfMemory { .. } => (StatusCode::INSUFFICIENT_STORAGE, "out_of_memory"),
            VmsError::Task(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        Self::new(status, code, message)
    }
}
