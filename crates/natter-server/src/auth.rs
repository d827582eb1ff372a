//! Authentication over HTTP: the [`Auth`] extractor that every protected endpoint takes, and
//! the bearer-token checks the WebSocket gateway shares. The credentials themselves (password
//! hashes, tokens and their lifetimes) are in [`natter_core::credentials`].
//!
//! # Security
//! Tokens and passwords never reach a log line: they are not `Debug` anywhere here.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use natter_proto::DeviceId;

use crate::error::ApiError;
use crate::state::AppState;
use natter_core::close::SIGNED_OUT;
use natter_core::credentials::{Auth, expires_from_now, hash_token, renewal_due_in};
use natter_core::service_error::ServiceError;
use natter_core::store::StoreError;

/// The 401 detail for a token past its expiry (the device is still known).
const EXPIRED: &str = "this token has expired; log in again";

/// Extends `device`'s token to the full lifetime from now: the new expiry, or `None` if the
/// device is gone (removed or logged out).
///
/// # Errors
/// The store fails.
pub async fn renew(state: &AppState, device: DeviceId) -> Result<Option<i64>, StoreError> {
    let expires_at = expires_from_now(state.token_ttl);
    let extended = state.store.extend_device(device, expires_at).await?;
    Ok(extended.then_some(expires_at))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?.ok_or_else(|| {
            ApiError::unauthorized("this endpoint needs an Authorization: Bearer token")
        })?;
        authenticate(state, token).await
    }
}

/// The token in an `Authorization: Bearer` header, or `None` without the header.
///
/// # Errors
/// 401 when the header is there but is not `Bearer <token>`.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// The caller a bearer token belongs to.
///
/// # Errors
/// 401 for an unknown or expired token; 503 if the store is down.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Auth, ApiError> {
    let owner = state.store.token_owner(&hash_token(token)).await?;
    match owner {
        Some(owner) if owner.suspended => Err(ServiceError::Suspended.into()),
        Some(owner) if owner.expires_at > natter_core::clock::now_ms() => {
            let mut auth = Auth {
                user_id: owner.user_id,
                device_id: owner.device_id,
                expires_at: owner.expires_at,
            };
            if renewal_due_in(auth.expires_at, state.token_ttl).is_zero() {
                // Best effort: the token works as it is, and the next use tries again.
                match renew(state, auth.device_id).await {
                    Ok(Some(expires_at)) => auth.expires_at = expires_at,
                    Ok(None) => return Err(ApiError::unauthorized(SIGNED_OUT)),
                    Err(e) => tracing::warn!(error = %e, "a token could not be extended"),
                }
            }
            Ok(auth)
        }
        Some(_) => Err(ApiError::unauthorized(EXPIRED)),
        None => Err(ApiError::unauthorized(
            "this token is not valid (logged out, or never issued)",
        )),
    }
}
