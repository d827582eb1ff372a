//! Room (Megolm) sessions: this device's outbound session per conversation, and the inbound
//! sessions made from other devices' key shares.

use natter_crypto::{InboundRoomSession, MessageEnvelope, OutboundRoomSession, RoomKeyShare};
use natter_proto::ws::Message;
use natter_proto::{ConversationId, DeviceId, UserId};
use wasm_bindgen::prelude::*;

use crate::device::Device;
use crate::error::{id, json};
use crate::keys::StoreKey;

/// This device's outbound session in one conversation.
#[wasm_bindgen]
pub struct OutboundGroup(OutboundRoomSession);

#[wasm_bindgen]
impl OutboundGroup {
    /// A new session for a conversation, created at `now_ms` (for its rotation by age).
    #[wasm_bindgen(constructor)]
    pub fn new(conversation_id: &str, now_ms: f64) -> Result<OutboundGroup, JsError> {
        let conversation: ConversationId = id(conversation_id, "conversation id")?;
        Ok(Self(OutboundRoomSession::new(conversation, now_ms as i64)))
    }

    /// The session's id.
    #[wasm_bindgen(getter, js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.0.session_id()
    }

    /// How many messages it encrypted.
    #[wasm_bindgen(getter)]
    pub fn messages(&self) -> u32 {
        self.0.messages()
    }

    /// Encrypts a message text (checked: not empty, at most 1,000 characters) bound to its
    /// conversation and sending device; returns the `ciphertext` of the `send` frame.
    pub fn encrypt(
        &mut self,
        text: &str,
        conversation_id: &str,
        sender_device_id: &str,
    ) -> Result<String, JsError> {
        let conversation: ConversationId = id(conversation_id, "conversation id")?;
        let device: DeviceId = id(sender_device_id, "device id")?;
        let envelope = MessageEnvelope::new(text, conversation, device)?;
        Ok(self.0.encrypt(&envelope))
    }

    /// Shares the session key with one member device over `device`'s pairwise session with
    /// it: returns the to-device payload, so the key never reaches JavaScript in clear.
    #[wasm_bindgen(js_name = shareWith)]
    pub fn share_with(
        &mut self,
        device: &mut Device,
        sender_user_id: &str,
        sender_device_id: &str,
        recipient_user_id: &str,
        recipient_device_id: &str,
        recipient_curve25519: &str,
    ) -> Result<String, JsError> {
        let sender = (
            id::<UserId>(sender_user_id, "user id")?,
            id::<DeviceId>(sender_device_id, "device id")?,
        );
        let recipient = (
            id::<UserId>(recipient_user_id, "user id")?,
            id::<DeviceId>(recipient_device_id, "device id")?,
        );
        let share = self.0.share_for(sender, recipient.1);
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&share).expect("a room key share always serializes"),
        );
        let payload = device.encrypt_bytes_to(recipient_curve25519, &plaintext)?;
        self.0.mark_shared(recipient);
        Ok(payload)
    }

    /// The session encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        self.0.pickle(&key.0)
    }

    /// A session from [`OutboundGroup::pickle`].
    #[wasm_bindgen(js_name = fromPickle)]
    pub fn from_pickle(pickle: &str, key: &StoreKey) -> Result<OutboundGroup, JsError> {
        Ok(Self(OutboundRoomSession::from_pickle(pickle, &key.0)?))
    }
}

/// Another device's room session, from its key share: decrypts that device's messages.
#[wasm_bindgen]
pub struct InboundGroup(InboundRoomSession);

#[wasm_bindgen]
impl InboundGroup {
    /// The session's id.
    #[wasm_bindgen(getter, js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.0.session_id()
    }

    /// The conversation it is for.
    #[wasm_bindgen(getter, js_name = conversationId)]
    pub fn conversation_id(&self) -> String {
        self.0.conversation_id().to_string()
    }

    /// Decrypts a message (JSON of the server's `Message`) and returns its text, after
    /// checking it came from this session's device and conversation. An error's message is
    /// the "unable to decrypt" code (`too_old`, `mismatch`, `corrupt`...).
    pub fn decrypt(&mut self, message: &str) -> Result<String, JsError> {
        let message: Message = json(message, "message")?;
        self.0
            .decrypt(&message)
            .map(|envelope| envelope.text)
            .map_err(|e| JsError::new(e.code()))
    }

    /// The session encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        self.0.pickle(&key.0)
    }

    /// A session from [`InboundGroup::pickle`].
    #[wasm_bindgen(js_name = fromPickle)]
    pub fn from_pickle(pickle: &str, key: &StoreKey) -> Result<InboundGroup, JsError> {
        Ok(Self(InboundRoomSession::from_pickle(pickle, &key.0)?))
    }
}

impl InboundGroup {
    /// A session from a key share that was checked against its sender.
    pub(crate) fn from_share(share: &RoomKeyShare) -> Result<Self, JsError> {
        Ok(Self(InboundRoomSession::from_share(share)?))
    }
}
