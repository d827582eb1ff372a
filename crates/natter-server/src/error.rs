//! [`ApiError`]: HTTP error responses (RFC 9457 problem+json with a stable `code`), made from
//! the services' [`ServiceError`]s. Internal detail is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use natter_proto::codes;
use natter_proto::problem::{CONTENT_TYPE, Problem};

use natter_core::service_error::{ServiceError, whole_ms_up};
use natter_core::store::{Refusal, StoreError};

/// An error response: status, stable code and a message a person can act on.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status, also the problem's `status` and (by its reason phrase) `title`.
    status: StatusCode,
    /// The stable machine-readable code (one of `natter_proto::codes`), the problem's `code`.
    code: &'static str,
    /// The message for people, the problem's `detail`.
    detail: String,
    /// For `version_mismatch`, the version the store holds, so the client can retry with it.
    current_version: Option<i64>,
    /// How long to wait before retrying; sent as `Retry-After` in whole seconds, rounded up.
    retry_after: Option<std::time::Duration>,
    /// Logged with the response, never sent.
    internal: Option<String>,
}

impl ApiError {
    /// An error with this status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            current_version: None,
            retry_after: None,
            internal: None,
        }
    }

    /// 400 with code `invalid_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, detail)
    }

    /// 401 with code `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, detail)
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// How long to wait before retrying, for `rate_limited`.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// [`Self::retry_after`] in whole milliseconds, rounded up (at least 1): a retry after
    /// exactly this long is never early.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after.map(whole_ms_up)
    }

    /// The message for people (never internal detail).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Logs the internal cause of a server-side failure, if this is one. Called once, where
    /// the error leaves the server (a response or a WebSocket error frame).
    pub fn log_internal(&self) {
        if let Some(internal) = &self.internal {
            tracing::error!(status = self.status.as_u16(), code = self.code, error = %internal, "request failed");
        }
    }

    /// An error whose cause stays in the server: the client gets a generic detail, the log
    /// the cause.
    fn internal(status: StatusCode, code: &'static str, internal: String) -> Self {
        let detail = match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                "the server cannot reach its database; retry shortly"
            }
            _ => "the server failed to handle this request",
        };
        Self {
            internal: Some(internal),
            ..Self::new(status, code, detail)
        }
    }
}

impl From<ServiceError> for ApiError {
    /// Maps each service error to its status and code: 400 `invalid_request`, 401, 403
    /// (`forbidden`, `suspended` or the denial's code), 404, 409 (`conflict` or the refusal's
    /// code), 413, 422 `bad_signature`, 429 `rate_limited` with its wait, 503
    /// `store_unavailable` with a retry after a second, and 500 for anything else, whose
    /// cause is logged, not sent.
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(detail) => Self::bad_request(detail),
            ServiceError::BadCredentials => Self::unauthorized(error.to_string()),
            ServiceError::Forbidden(detail) => {
                Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, detail)
            }
            ServiceError::Denied { code, detail } => Self::new(StatusCode::FORBIDDEN, code, detail),
            ServiceError::RateLimited { retry_after, .. }
            | ServiceError::Busy { retry_after }
            | ServiceError::HeldBehind { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    codes::RATE_LIMITED,
                    error.to_string(),
                )
            },
            ServiceError::Suspended => {
                Self::new(StatusCode::FORBIDDEN, codes::SUSPENDED, error.to_string())
            }
            ServiceError::TooLarge(detail) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE, detail)
            }
            ServiceError::NotFound(detail) => {
                Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, detail)
            }
            ServiceError::Conflict(detail) => {
                Self::new(StatusCode::CONFLICT, codes::CONFLICT, detail)
            }
            ServiceError::BadSignature(detail) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::BAD_SIGNATURE,
                detail,
            ),
            ServiceError::Refused(refusal) => {
                let code = match refusal {
                    Refusal::VersionMismatch { .. } => codes::VERSION_MISMATCH,
                    Refusal::NoPendingRequest => codes::NO_PENDING_REQUEST,
                    Refusal::Blocked => codes::BLOCKED_BY_YOU,
                };
                let current_version = match refusal {
                    Refusal::VersionMismatch { current, .. } => Some(current),
                    _ => None,
                };
                Self {
                    current_version,
                    ..Self::new(StatusCode::CONFLICT, code, refusal.to_string())
                }
            }
            ServiceError::Store(StoreError::Conflict(what)) => Self::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                format!("this {what} is already taken"),
            ),
            ServiceError::Store(StoreError::Missing(what)) => Self::new(
                StatusCode::NOT_FOUND,
                codes::NOT_FOUND,
                format!("the {what} no longer exists"),
            ),
            ServiceError::Store(e) if e.is_unavailable() => Self {
                retry_after: Some(STORE_RETRY),
                ..Self::internal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::STORE_UNAVAILABLE,
                    e.to_string(),
                )
            },
            ServiceError::Store(e) => Self::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                format!("{e:?}"),
            ),
            ServiceError::Internal(e) => {
                Self::internal(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, e)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    /// As the same failure from a service would be.
    fn from(error: StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

/// When to retry after the store was unreachable.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl IntoResponse for ApiError {
    /// The problem+json response, after logging any internal cause. It carries `Retry-After`
    /// when there is a wait, and `WWW-Authenticate: Bearer` with a 401.
    fn into_response(self) -> Response {
        self.log_internal();
        let problem = Problem {
            kind: "about:blank".to_owned(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: Some(self.detail),
            code: self.code.to_owned(),
            current_version: self.current_version,
        };
        let body = serde_json::to_vec(&problem).expect("a Problem always serializes");
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Turns any error response that is not yet problem+json (axum's 405, a body-limit 413, ...)
/// into one, so clients see one error format everywhere.
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (codes::NOT_FOUND, "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            codes::METHOD_NOT_ALLOWED,
            "this endpoint does not take that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            (codes::PAYLOAD_TOO_LARGE, "the request body is too large")
        }
        s if s.is_server_error() => (codes::INTERNAL, "the server failed to handle this request"),
        _ => (codes::INVALID_REQUEST, "the request was not understood"),
    };
    let mut converted = ApiError::new(status, code, detail).into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        converted.headers_mut().insert(header::ALLOW, allow.clone());
    }
    converted
}
