//! The JSON inside ciphertexts: a message's text with what it is bound to, and room key shares.

use natter_proto::limits::MESSAGE_CHARS_MAX;
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// What a message's ciphertext decrypts to. The conversation and sending device are inside
/// the encryption so the server cannot move a message to another conversation or sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEnvelope {
    /// The text, at most 1,000 characters.
    pub text: String,
    /// The conversation it was written for.
    pub conversation_id: ConversationId,
    /// The device that wrote it.
    pub sender_device_id: DeviceId,
}

impl MessageEnvelope {
    /// A new envelope after checking the text: not empty, at most 1,000 characters.
    ///
    /// # Errors
    /// [`CryptoError::Empty`] or [`CryptoError::TooLong`].
    pub fn new(
        text: &str,
        conversation_id: ConversationId,
        sender_device_id: DeviceId,
    ) -> Result<Self, CryptoError> {
        check_text(text)?;
        Ok(Self {
            text: text.to_owned(),
            conversation_id,
            sender_device_id,
        })
    }
}

/// Checks a message text before anything is encrypted or queued.
///
/// # Errors
/// [`CryptoError::Empty`] or [`CryptoError::TooLong`].
pub fn check_text(text: &str) -> Result<(), CryptoError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(CryptoError::Empty);
    }
    if chars > MESSAGE_CHARS_MAX {
        return Err(CryptoError::TooLong {
            chars,
            max: MESSAGE_CHARS_MAX,
        });
    }
    Ok(())
}

/// A room key for one conversation, sent to each member device over its pairwise session.
///
/// # Security
/// Carries the Megolm session key; zeroized on drop, with a `Debug` that hides the key.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct RoomKeyShare {
    /// The conversation the key is for.
    #[zeroize(skip)]
    pub conversation_id: ConversationId,
    /// The Megolm session's id.
    pub session_id: String,
    /// The Megolm session key (base64).
    pub session_key: String,
    /// The user who sends with this session.
    #[zeroize(skip)]
    pub sender_user_id: UserId,
    /// The device that sends with this session.
    #[zeroize(skip)]
    pub sender_device_id: DeviceId,
    /// The device this share is for, so it cannot be replayed to another.
    #[zeroize(skip)]
    pub recipient_device_id: DeviceId,
}

impl std::fmt::Debug for RoomKeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKeyShare")
            .field("conversation_id", &self.conversation_id)
            .field("session_id", &self.session_id)
            .field("sender_device_id", &self.sender_device_id)
            .finish_non_exhaustive()
    }
}

/// The message `ciphertext` on the wire: the Megolm session id in clear (so the recipient
/// finds the key) and the Megolm message.
#[derive(Serialize, Deserialize)]
pub(crate) struct MessageWire {
    /// Format version.
    pub v: u8,
    /// The Megolm session id.
    pub s: String,
    /// The Megolm message (base64).
    pub m: String,
}

impl MessageWire {
    /// Parses a ciphertext string.
    pub(crate) fn parse(ciphertext: &str) -> Option<Self> {
        serde_json::from_str::<Self>(ciphertext)
            .ok()
            .filter(|w| w.v == 1)
    }
}

/// The Megolm session id a ciphertext was encrypted with, if it is one of ours.
pub fn session_id_of(ciphertext: &str) -> Option<String> {
    MessageWire::parse(ciphertext).map(|w| w.s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits() {
        let conv = ConversationId(uuid::Uuid::now_v7());
        let dev = DeviceId(uuid::Uuid::now_v7());
        assert!(MessageEnvelope::new(&"é".repeat(1000), conv, dev).is_ok());
        assert!(matches!(
            MessageEnvelope::new(&"é".repeat(1001), conv, dev),
            Err(CryptoError::TooLong {
                chars: 1001,
                max: 1000
            })
        ));
        assert!(matches!(
            MessageEnvelope::new("  ", conv, dev),
            Err(CryptoError::Empty)
        ));
    }
}
