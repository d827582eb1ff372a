//! Credentials: the authenticated caller ([`Auth`]), argon2id password hashes ([`Passwords`]),
//! and opaque bearer tokens, stored as SHA-256, with their lifetimes. No HTTP types: the
//! extractor that reads a token from a request is in natter-server's `auth`.
//!
//! # Security
//! Tokens and passwords never reach a log line: they are not `Debug` anywhere here.

use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use natter_proto::{DeviceId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::service_error::ServiceError;

/// The authenticated caller: a device of a user.
#[derive(Clone, Copy, Debug)]
pub struct Auth {
    /// The user.
    pub user_id: UserId,
    /// The device whose token was presented.
    pub device_id: DeviceId,
    /// When the token stops working unless used again, ms since the epoch.
    pub expires_at: i64,
}

/// How long after its last extension a token in use is extended again: a day, or half its
/// lifetime if that is shorter. So a token lasts its lifetime past its last use, and in use
/// costs at most a write a day.
pub fn renewal_after(ttl: Duration) -> Duration {
    (ttl / 2).min(Duration::from_secs(24 * 3600))
}

/// How long until a token expiring at `expires_at` is due for renewal (zero once it is): when
/// [`renewal_after`] has passed since it was last extended to the full `ttl`.
pub fn renewal_due_in(expires_at: i64, ttl: Duration) -> Duration {
    let left = u64::try_from(expires_at.saturating_sub(crate::clock::now_ms())).unwrap_or(0);
    let since_extended = ttl.saturating_sub(Duration::from_millis(left));
    renewal_after(ttl).saturating_sub(since_extended)
}

/// When a token given or extended now with lifetime `ttl` expires, in ms since the epoch.
pub fn expires_from_now(ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    crate::clock::now_ms().saturating_add(ttl)
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

/// Argon2id with these parameters.
fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// `now` plus `left`, in ms since the epoch.
    fn expiring_in(left: Duration) -> i64 {
        crate::clock::now_ms() + i64::try_from(left.as_millis()).unwrap()
    }

    #[test]
    fn a_token_in_use_is_renewed_a_day_after_its_last_extension() {
        let ttl = 30 * DAY;
        let due = renewal_due_in(expiring_in(ttl), ttl);
        assert!(due <= DAY && due > DAY - Duration::from_secs(60), "{due:?}");
        let half = renewal_due_in(expiring_in(29 * DAY + DAY / 2), ttl);
        assert!(half <= DAY / 2 && half > DAY / 2 - Duration::from_secs(60));
        assert!(renewal_due_in(expiring_in(29 * DAY), ttl).is_zero());
        assert!(renewal_due_in(expiring_in(DAY), ttl).is_zero());
        // A short lifetime is renewed after half of it.
        let short = Duration::from_secs(6);
        assert_eq!(renewal_after(short), Duration::from_secs(3));
        assert!(renewal_due_in(expiring_in(short), short) > Duration::from_secs(2));
    }
}
