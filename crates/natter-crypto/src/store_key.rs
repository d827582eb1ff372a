//! The key that encrypts pickles (account, sessions) at rest.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the random salt stored next to the data, in bytes.
pub const SALT_LEN: usize = 16;

/// A 32-byte key for vodozemac's encrypted pickles.
///
/// # Security
/// Zeroized on drop; no `Debug`, `Clone` or serialization.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// Derives the key from a passphrase and the store's salt with Argon2id
    /// (19 MiB, 2 passes: the OWASP minimum, about 25 ms here).
    ///
    /// # Errors
    /// [`CryptoError::KeyDerivation`](crate::CryptoError::KeyDerivation) for an empty passphrase.
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<Self, crate::CryptoError> {
        argon2id(passphrase, salt).map(|key| Self(*key))
    }

    /// The key from raw bytes: a subkey of the store's data key (see
    /// [`SealKey::derive`](crate::SealKey::derive)) rather than a passphrase of its own.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random salt for a new store.
    pub fn new_salt() -> [u8; SALT_LEN] {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        salt
    }

    /// The raw key, for vodozemac's pickle functions.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Argon2id of a passphrase and salt (19 MiB, 2 passes): the one derivation behind
/// [`StoreKey::from_passphrase`] and [`SealKey::from_passphrase`](crate::SealKey::from_passphrase).
pub(crate) fn argon2id(
    passphrase: &str,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, crate::CryptoError> {
    if passphrase.is_empty() {
        return Err(crate::CryptoError::KeyDerivation(
            "the passphrase is empty".into(),
        ));
    }
    let params = Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| crate::CryptoError::KeyDerivation(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut *key)
        .map_err(|e| crate::CryptoError::KeyDerivation(e.to_string()))?;
    Ok(key)
}
