//! Sealing data at rest: XChaCha20-Poly1305 with associated data, HKDF subkeys and HMAC blind
//! indexes, under one random 32-byte key.
//!
//! The client store keeps a random data key, wrapped by a key derived from the user's
//! passphrase ([`SealKey::from_passphrase`]), and seals every sensitive value with a subkey of
//! it. The associated data names where a value lives (table, column, row), so a sealed value
//! moved elsewhere fails to open instead of being read in the wrong place.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha256::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// Length of the random nonce in front of every sealed value, in bytes.
pub const NONCE_LEN: usize = 24;

/// A 32-byte symmetric key that seals data at rest (XChaCha20-Poly1305).
///
/// # Security
/// Zeroized on drop; no `Debug`, `Clone` or serialization.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SealKey([u8; 32]);

impl SealKey {
    /// A fresh key from the operating system's random source.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// The key from its raw bytes (as returned by [`to_bytes`](Self::to_bytes)).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key, for wrapping it under another key and for backups.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0)
    }

    /// An independent subkey for one purpose (HKDF-SHA256 with `purpose` as info).
    pub fn derive(&self, purpose: &str) -> SealKey {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(purpose.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(key)
    }

    /// Derives a key from a passphrase and a salt with Argon2id, with the same parameters as
    /// [`StoreKey::from_passphrase`](crate::StoreKey::from_passphrase).
    ///
    /// # Errors
    /// [`CryptoError::KeyDerivation`] for an empty passphrase or an unusable salt.
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<Self, CryptoError> {
        crate::store_key::argon2id(passphrase, salt).map(|key| Self(*key))
    }

    /// Encrypts and authenticates `plaintext`, bound to `aad`: a random 24-byte nonce followed
    /// by the ciphertext and its 16-byte tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = XNonce::default();
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any buffer that fits in memory");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Checks and decrypts what [`seal`](Self::seal) made with the same key and `aad`.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] for a wrong key, other associated data, or damaged bytes.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Sealed);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::Sealed)?;
        self.cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Sealed)
    }

    /// A blind index of `value`: HMAC-SHA256 under this key. Equal values give equal tags;
    /// without the key a tag tells nothing about its value.
    pub fn tag(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_and_aad_only() {
        let key = SealKey::random();
        let sealed = key.seal(b"messages.body.1", b"hello \xeb\xb0\xa4");
        assert_eq!(sealed.len(), NONCE_LEN + 9 + 16);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            &key.open(b"messages.body.1", &sealed).unwrap()[..],
            b"hello \xeb\xb0\xa4"
        );
        assert!(matches!(
            key.open(b"messages.body.2", &sealed),
            Err(CryptoError::Sealed)
        ));
        assert!(matches!(
            SealKey::random().open(b"messages.body.1", &sealed),
            Err(CryptoError::Sealed)
        ));
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            key.open(b"messages.body.1", &damaged),
            Err(CryptoError::Sealed)
        ));
        assert!(matches!(
            key.open(b"", &sealed[..10]),
            Err(CryptoError::Sealed)
        ));
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let key = SealKey::random();
        assert_ne!(key.seal(b"", b"same"), key.seal(b"", b"same"));
    }

    #[test]
    fn bytes_round_trip_and_subkeys_differ_by_purpose() {
        let key = SealKey::random();
        let copy = SealKey::from_bytes(*key.to_bytes());
        assert_eq!(*copy.to_bytes(), *key.to_bytes());
        assert_eq!(*key.derive("a").to_bytes(), *copy.derive("a").to_bytes());
        assert_ne!(*key.derive("a").to_bytes(), *key.derive("b").to_bytes());
        assert_ne!(*key.derive("a").to_bytes(), *key.to_bytes());
        let sealed = key.derive("a").seal(b"", b"x");
        assert!(key.derive("b").open(b"", &sealed).is_err());
    }

    #[test]
    fn tags_are_keyed_and_deterministic() {
        let key = SealKey::from_bytes([7; 32]);
        assert_eq!(key.tag(b"alice"), key.tag(b"alice"));
        assert_ne!(key.tag(b"alice"), key.tag(b"bob"));
        assert_ne!(
            key.tag(b"alice"),
            SealKey::from_bytes([8; 32]).tag(b"alice")
        );
    }

    #[test]
    fn a_passphrase_gives_the_same_key_for_the_same_salt_only() {
        let salt = [1u8; 16];
        let a = SealKey::from_passphrase("correct horse", &salt).unwrap();
        let b = SealKey::from_passphrase("correct horse", &salt).unwrap();
        assert_eq!(*a.to_bytes(), *b.to_bytes());
        let other_salt = SealKey::from_passphrase("correct horse", &[2u8; 16]).unwrap();
        assert_ne!(*a.to_bytes(), *other_salt.to_bytes());
        let other = SealKey::from_passphrase("correct horsf", &salt).unwrap();
        assert_ne!(*a.to_bytes(), *other.to_bytes());
        assert!(matches!(
            SealKey::from_passphrase("", &salt),
            Err(CryptoError::KeyDerivation(_))
        ));
    }
}
