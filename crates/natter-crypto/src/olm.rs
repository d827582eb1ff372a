//! Pairwise (Olm) sessions between two devices, and the to-device payloads they produce.

use serde::{Deserialize, Serialize};
use vodozemac::olm::{OlmMessage, Session, SessionPickle};

use crate::{CryptoError, StoreKey};

/// An Olm session with one other device.
///
/// # Security
/// Holds ratchet secrets; no `Debug` or `Clone`.
pub struct PairwiseSession {
    session: Session,
    their_key: String,
}

/// The stored form: the other device's key in clear (to find the session), the ratchet
/// encrypted.
#[derive(Serialize, Deserialize)]
struct Stored {
    their_key: String,
    session: String,
}

impl PairwiseSession {
    pub(crate) fn new(session: Session, their_key: String) -> Self {
        Self { session, their_key }
    }

    /// The other device's Curve25519 identity key.
    pub fn their_key(&self) -> &str {
        &self.their_key
    }

    /// The session's id (the same on both sides).
    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// Encrypts `plaintext` into a to-device payload string; `own_curve25519` is this device's
    /// identity key, which the recipient uses to find the session.
    ///
    /// # Errors
    /// The session cannot encrypt (vodozemac refuses only for a broken session).
    pub fn encrypt(
        &mut self,
        own_curve25519: &str,
        plaintext: &[u8],
    ) -> Result<String, CryptoError> {
        let message = self
            .session
            .encrypt(plaintext)
            .map_err(CryptoError::OlmEncryption)?;
        let wire = Wire {
            sender_key: own_curve25519.to_owned(),
            message,
        };
        Ok(serde_json::to_string(&wire).expect("a to-device payload always serializes"))
    }

    pub(crate) fn decrypt(&mut self, message: &OlmMessage) -> Result<Vec<u8>, CryptoError> {
        self.session
            .decrypt(message)
            .map_err(|e| CryptoError::OlmDecryption(e.to_string()))
    }

    /// The session encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        let stored = Stored {
            their_key: self.their_key.clone(),
            session: self.session.pickle().encrypt(key.bytes()),
        };
        serde_json::to_string(&stored).expect("a pickle always serializes")
    }

    /// Opens a pickle made by [`PairwiseSession::pickle`].
    ///
    /// # Errors
    /// A wrong key or damaged data.
    pub fn from_pickle(pickle: &str, key: &StoreKey) -> Result<Self, CryptoError> {
        let stored: Stored = serde_json::from_str(pickle).map_err(CryptoError::PickleFormat)?;
        let session = SessionPickle::from_encrypted(&stored.session, key.bytes())
            .map_err(CryptoError::Pickle)?;
        Ok(Self {
            session: Session::from_pickle(session),
            their_key: stored.their_key,
        })
    }
}

/// The JSON of a to-device payload: the sender's identity key and an Olm message.
#[derive(Serialize, Deserialize)]
struct Wire {
    sender_key: String,
    #[serde(flatten)]
    message: OlmMessage,
}

/// A parsed to-device payload.
pub struct ToDevicePayload {
    wire: Wire,
}

impl ToDevicePayload {
    /// Parses a payload string from a `to_device` frame.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything this client did not write.
    pub fn parse(payload: &str) -> Result<Self, CryptoError> {
        serde_json::from_str(payload)
            .map(|wire| Self { wire })
            .map_err(|_| CryptoError::Malformed {
                what: "to-device payload",
            })
    }

    /// The sending device's Curve25519 identity key, as the payload claims it. Compare it with
    /// the sender's verified published key before trusting what it carries.
    pub fn sender_key(&self) -> &str {
        &self.wire.sender_key
    }

    pub(crate) fn message(&self) -> &OlmMessage {
        &self.wire.message
    }
}
