//! Request bodies: a size cap, a deadline for slow clients, and JSON errors
//! that say what was wrong and where.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::ApiState;

/// Parses JSON, rejecting unknown fields (where the type says so) and wrong
/// types with serde's message, which names the field and position.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request needs a JSON body",
        ));
    }
    // serde would take `[]` as a struct of defaults; every body here is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let found = match serde_json::from_slice::<serde_json::Value>(body) {
            Err(e) => {
                return Err(ApiError::bad_request(
                    "malformed_json",
                    format!("request body: {e}"),
                ))
            }
            Ok(serde_json::Value::Array(_)) => "an array",
            Ok(serde_json::Value::String(_)) => "a string",
            Ok(serde_json::Value::Number(_)) => "a number",
            Ok(serde_json::Value::Bool(_)) => "a boolean",
            Ok(_) => "null",
        };
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("request body: invalid type: {found}, expected a JSON object"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => "invalid_field",
            _ => "malformed_json",
        };
        ApiError::bad_request(code, format!("request body: {e}"))
    })
}

/// Reads a whole body within `limit` bytes and `timeout`.
pub async fn read_body(req: Request, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds the {limit}-byte limit"),
        )
    };
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("bad_content_length", "invalid Content-Length"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let collect = axum::body::to_bytes(req.into_body(), limit);
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {timeout:?}"),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = s.source();
            }
            Err(ApiError::bad_request(
                "bad_body",
                format!("reading the request body: {e}"),
            ))
        }
    }
}

/// A JSON body read under the daemon's limits.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.limits.max_body_bytes, state.limits.body_timeout).await?;
        Ok(Self(parse_json(&bytes)?))
    }
}

/// A raw body read under the daemon's limits.
#[derive(Debug)]
pub struct ApiBytes(pub Bytes);

impl FromRequest<ApiState> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.limits.max_body_bytes, state.limits.body_timeout).await?;
        Ok(Self(bytes))
    }
}
