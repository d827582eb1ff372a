//! Authentication: argon2id password hashes, opaque bearer tokens stored as SHA-256, and the
//! [`Auth`] extractor that every protected endpoint takes.
//!
//! # Security
//! Tokens and passwords never reach a log line: they are not `Debug` anywhere here.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use natter_proto::{DeviceId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ServiceError};
use crate::state::AppState;

/// The authenticated caller: a device of a user.
#[derive(Clone, Copy, Debug)]
pub struct Auth {
    /// The user.
    pub user_id: UserId,
    /// The device whose token was presented.
    pub device_id: DeviceId,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("this endpoint needs an Authorization: Bearer token")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        authenticate(state, token).await
    }
}

/// The caller a bearer token belongs to.
///
/// # Errors
/// 401 for an unknown or expired token; 503 if the store is down.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Auth, ApiError> {
    let owner = state.store.token_owner(&hash_token(token)).await?;
    match owner {
        Some(owner) if owner.expires_at > crate::now_ms() => Ok(Auth {
            user_id: owner.user_id,
            device_id: owner.device_id,
        }),
        Some(_) => Err(ApiError::unauthorized(
            "this token has expired; log in again",
        )),
        None => Err(ApiError::unauthorized(
            "this token is not valid (logged out, or never issued)",
        )),
    }
}

/// A new random bearer token: 32 bytes from the OS generator, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("nat_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The form a token is stored in: hex SHA-256. Tokens are high-entropy, so no salt is needed.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hashes a password with argon2id on the blocking pool (it takes tens of milliseconds).
///
/// # Errors
/// Hashing fails (it does not for valid input) or the task is cancelled.
pub async fn hash_password(password: String) -> Result<String, ServiceError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("password hashing task: {e}")))?
}

/// A hash to check against when the user does not exist, so a login for an unknown username
/// takes as long as one with a wrong password and does not reveal which usernames exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"natter-dummy-password")
        .expect("hashing a constant password cannot fail")
        .to_string()
});

/// Checks `password` against a stored hash (or the dummy hash when there is none).
///
/// # Errors
/// The task is cancelled.
pub async fn verify_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, ServiceError> {
    tokio::task::spawn_blocking(move || {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let matches = PasswordHash::new(&stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        exists && matches
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("password check task: {e}")))
}
