//! Request extractors whose rejections are problem+json 4xx responses: a JSON body, path
//! parameters and the `If-Match` header.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, MissingJsonContentType, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use natter_proto::codes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object request body (every body the API takes is an object). Bad JSON, wrong types,
/// anything but an object (serde would take a struct's fields from an array), a missing
/// content type and invalid UTF-8 are all 400 `invalid_request` with the parser's message; an
/// oversized body is 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    /// Checks the content type, reads the body (within the body limit), requires it to start
    /// with `{`, then deserializes it as axum's `Json` would.
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(json_rejection(&MissingJsonContentType::default().into()));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| json_rejection(&rejection.into()))?;
        if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "invalid JSON body: the body must be a JSON object",
            ));
        }
        match axum::Json::<T>::from_bytes(&body) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`), as
/// axum's `Json` decides.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

/// The problem for a JSON body axum refused: 413 `payload_too_large` for a body over
/// [`natter_proto::limits::REQUEST_BODY_MAX`], else 400 `invalid_request` saying what was wrong.
fn json_rejection(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes",
                natter_proto::limits::REQUEST_BODY_MAX
            ),
        );
    }
    let detail = match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a body with Content-Type: application/json".to_owned()
        }
        other => format!("invalid JSON body: {}", other.body_text()),
    };
    ApiError::bad_request(detail)
}

/// Path parameters. A malformed id or boolean is 400 `invalid_request`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::bad_request(
                format!("invalid path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// Query parameters. A malformed value is 400 `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "invalid query: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The optional `If-Match` header, holding a connection version (`"3"`, `3` or `W/"3"`).
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    /// No header is `None`; one that is not a non-negative number once `W/` and the quotes
    /// are trimmed is 400 `invalid_request`.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self(None));
        };
        let version = value
            .to_str()
            .ok()
            .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                ApiError::bad_request("If-Match must hold a version number, such as \"3\"")
            })?;
        Ok(Self(Some(version)))
    }
}
