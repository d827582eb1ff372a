//! A device's Olm account: long-lived identity keys and the one-time keys others claim.

use natter_proto::keys::{IdentityKeys, OneTimeKey};
use natter_proto::{DeviceId, UserId};
use vodozemac::olm::{Account, AccountPickle, SessionConfig};

use crate::olm::{PairwiseSession, ToDevicePayload};
use crate::public_keys::parse_curve;
use crate::{CryptoError, StoreKey};

/// vodozemac publishes at most this many one-time keys at a time.
pub const ONE_TIME_KEYS_PUBLISHED_MAX: usize = 50;

/// The keys to publish with `POST /v1/devices/current/keys`.
pub struct KeyUpload {
    /// The new one-time keys.
    pub one_time_keys: Vec<OneTimeKey>,
    /// A new fallback key, if one was made.
    pub fallback_key: Option<OneTimeKey>,
}

/// Which pairwise session decrypted a to-device payload: the one whose ratchet moved, and so
/// the one to store again.
pub enum DecryptedWith {
    /// The session at this index of the slice given to [`DeviceAccount::decrypt`].
    Existing(usize),
    /// A new inbound session, made from a pre-key message.
    New(Box<PairwiseSession>),
}

/// A device's Olm account.
///
/// # Security
/// Holds the device's private keys; no `Debug` or `Clone`. Persist it only with
/// [`DeviceAccount::pickle`].
pub struct DeviceAccount {
    account: Account,
}

impl Default for DeviceAccount {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceAccount {
    /// A new account with fresh identity keys.
    pub fn new() -> Self {
        Self {
            account: Account::new(),
        }
    }

    /// The account encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        self.account.pickle().encrypt(key.bytes())
    }

    /// Opens a pickle made by [`DeviceAccount::pickle`].
    ///
    /// # Errors
    /// [`CryptoError::Pickle`] for a wrong key or damaged data.
    pub fn from_pickle(pickle: &str, key: &StoreKey) -> Result<Self, CryptoError> {
        let pickle =
            AccountPickle::from_encrypted(pickle, key.bytes()).map_err(CryptoError::Pickle)?;
        Ok(Self {
            account: Account::from_pickle(pickle),
        })
    }

    /// This device's Curve25519 identity key (base64).
    pub fn curve25519(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// This device's Ed25519 signing key (base64).
    pub fn ed25519(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    /// The identity keys to publish, signed over the user and device ids so the server cannot
    /// move them to another device.
    pub fn identity_keys(&self, user: UserId, device: DeviceId) -> IdentityKeys {
        let (curve, ed) = (self.curve25519(), self.ed25519());
        let message = IdentityKeys::signed_message(user, device, &curve, &ed);
        IdentityKeys {
            signature: self.account.sign(message.as_bytes()).to_base64(),
            curve25519: curve,
            ed25519: ed,
        }
    }

    /// Makes one-time keys until `published` (the server's count) reaches vodozemac's limit,
    /// and a fallback key if `has_fallback` is false. Call
    /// [`DeviceAccount::mark_published`] once the server stored them.
    pub fn keys_to_publish(&mut self, published: usize, has_fallback: bool) -> KeyUpload {
        let missing = ONE_TIME_KEYS_PUBLISHED_MAX.saturating_sub(published);
        if missing > 0 {
            self.account.generate_one_time_keys(missing);
        }
        if !has_fallback {
            self.account.generate_fallback_key();
        }
        let as_key = |(id, key): (vodozemac::KeyId, vodozemac::Curve25519PublicKey)| OneTimeKey {
            key_id: id.to_base64(),
            key: key.to_base64(),
        };
        KeyUpload {
            one_time_keys: self
                .account
                .one_time_keys()
                .into_iter()
                .map(as_key)
                .collect(),
            fallback_key: self.account.fallback_key().into_iter().map(as_key).next(),
        }
    }

    /// Marks the keys from [`DeviceAccount::keys_to_publish`] as published.
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    /// Opens a pairwise session with a device from its identity key and a claimed one-time key.
    ///
    /// # Errors
    /// Malformed keys, or a key that cannot be used.
    pub fn open_session(
        &self,
        their_curve25519: &str,
        one_time_key: &str,
    ) -> Result<PairwiseSession, CryptoError> {
        let identity = parse_curve(their_curve25519)?;
        let one_time = parse_curve(one_time_key)?;
        let session = self
            .account
            .create_outbound_session(SessionConfig::version_1(), identity, one_time)
            .map_err(CryptoError::SessionCreation)?;
        Ok(PairwiseSession::new(session, their_curve25519.to_owned()))
    }

    /// Decrypts a to-device payload with an existing session from its sender, or (for a
    /// first message) a new inbound session, and says which one it was so that only that
    /// session is stored again (a session that fails to decrypt is left unchanged).
    ///
    /// # Errors
    /// [`CryptoError::OlmDecryption`] when no session fits.
    pub fn decrypt(
        &mut self,
        sessions: &mut [PairwiseSession],
        payload: &ToDevicePayload,
    ) -> Result<(Vec<u8>, DecryptedWith), CryptoError> {
        for (index, session) in sessions.iter_mut().enumerate() {
            if session.their_key() == payload.sender_key()
                && let Ok(plaintext) = session.decrypt(payload.message())
            {
                return Ok((plaintext, DecryptedWith::Existing(index)));
            }
        }
        let vodozemac::olm::OlmMessage::PreKey(pre_key) = payload.message() else {
            return Err(CryptoError::OlmDecryption(
                "no session with the sender can decrypt it".into(),
            ));
        };
        let sender = parse_curve(payload.sender_key())?;
        let created = self
            .account
            .create_inbound_session(SessionConfig::version_1(), sender, pre_key)
            .map_err(|e| CryptoError::OlmDecryption(e.to_string()))?;
        let session = PairwiseSession::new(created.session, payload.sender_key().to_owned());
        Ok((created.plaintext, DecryptedWith::New(Box::new(session))))
    }
}
