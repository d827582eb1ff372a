//! Authentication: argon2id password hashes, opaque bearer tokens stored as SHA-256, and the
//! [`Auth`] extractor that every protected endpoint takes.
//!
//! # Security
//! Tokens and passwords never reach a log line: they are not `Debug` anywhere here.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
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
    /// When the token stops working, ms since the epoch (a connection closes then).
    pub expires_at: i64,
}

/// Why a removed device's connections are closed (it logged out, or another of the user's
/// devices removed it).
pub const SIGNED_OUT: &str = "this device was logged out; log in again";

/// Why a connection is closed when its token expires.
pub const EXPIRED: &str = "this token has expired; log in again";

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
        Some(owner) if owner.expires_at > crate::now_ms() => Ok(Auth {
            user_id: owner.user_id,
            device_id: owner.device_id,
            expires_at: owner.expires_at,
        }),
        Some(_) => Err(ApiError::unauthorized(EXPIRED)),
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

/// Argon2id password hashing with this server's cost settings.
///
/// # Security
/// A login for an unknown username checks the password against a dummy hash made with the
/// same settings, so it takes as long as a wrong password and does not reveal which usernames
/// exist.
pub struct Passwords {
    params: Params,
    dummy_hash: String,
}

impl Passwords {
    /// Hashing with `memory_kib` KiB and `iterations` passes (argon2's defaults: 19,456 and 2).
    ///
    /// # Errors
    /// The settings are outside what argon2 accepts.
    pub fn new(memory_kib: u32, iterations: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 settings: {e}"))?;
        let dummy_hash = hasher(&params)
            .hash_password(b"natter-dummy-password")
            .map_err(|e| anyhow::anyhow!("argon2 cannot hash with these settings: {e}"))?
            .to_string();
        Ok(Self { params, dummy_hash })
    }

    /// Hashes a password on the blocking pool (it takes tens of milliseconds).
    ///
    /// # Errors
    /// The task is cancelled.
    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            hasher(&params)
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("password hashing task: {e}")))?
    }

    /// Checks `password` against a stored hash (or the dummy hash when there is none).
    ///
    /// # Errors
    /// The task is cancelled.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        tokio::task::spawn_blocking(move || {
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
}

fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}
