//! A device: its Olm account and the pairwise sessions it holds with other devices.

use natter_crypto::{DecryptedWith, DeviceAccount, PairwiseSession, RoomKeyShare, ToDevicePayload};
use natter_proto::keys::UploadKeysRequest;
use natter_proto::{DeviceId, UserId};
use wasm_bindgen::prelude::*;

use crate::error::{id, to_json};
use crate::keys::StoreKey;

/// A device's Olm account and its pairwise sessions, held in wasm memory: private keys and
/// ratchets never cross into JavaScript except encrypted (pickles).
#[wasm_bindgen]
pub struct Device {
    account: DeviceAccount,
    sessions: Vec<PairwiseSession>,
}

#[wasm_bindgen]
impl Device {
    /// A new device with fresh identity keys.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Device {
        Self {
            account: DeviceAccount::new(),
            sessions: Vec::new(),
        }
    }

    /// The Curve25519 identity key (base64).
    pub fn curve25519(&self) -> String {
        self.account.curve25519()
    }

    /// The Ed25519 signing key (base64).
    pub fn ed25519(&self) -> String {
        self.account.ed25519()
    }

    /// The identity keys as published (JSON of `IdentityKeys`), signed over the user and
    /// device ids.
    #[wasm_bindgen(js_name = identityKeys)]
    pub fn identity_keys(&self, user_id: &str, device_id: &str) -> Result<String, JsError> {
        let user: UserId = id(user_id, "user id")?;
        let device: DeviceId = id(device_id, "device id")?;
        Ok(to_json(&self.account.identity_keys(user, device)))
    }

    /// The body of `POST /v1/devices/current/keys`: one-time keys up to the limit given the
    /// server's count (`published`), a fallback key if it has none, and the identity keys
    /// when `with_identity`. Call [`Device::mark_published`] once the server stored them.
    #[wasm_bindgen(js_name = uploadRequest)]
    pub fn upload_request(
        &mut self,
        user_id: &str,
        device_id: &str,
        published: u32,
        has_fallback: bool,
        with_identity: bool,
    ) -> Result<String, JsError> {
        let user: UserId = id(user_id, "user id")?;
        let device: DeviceId = id(device_id, "device id")?;
        let upload = self
            .account
            .keys_to_publish(published as usize, has_fallback);
        Ok(to_json(&UploadKeysRequest {
            identity_keys: with_identity.then(|| self.account.identity_keys(user, device)),
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key,
        }))
    }

    /// Marks the keys of the last [`Device::upload_request`] as published.
    #[wasm_bindgen(js_name = markPublished)]
    pub fn mark_published(&mut self) {
        self.account.mark_published();
    }

    /// Opens a pairwise session with a device from its identity key and a claimed one-time
    /// key; later [`Device::encrypt_to`] that key uses it. Returns the session's id.
    #[wasm_bindgen(js_name = openSession)]
    pub fn open_session(
        &mut self,
        their_curve25519: &str,
        one_time_key: &str,
    ) -> Result<String, JsError> {
        let session = self.account.open_session(their_curve25519, one_time_key)?;
        let session_id = session.session_id();
        self.sessions.push(session);
        Ok(session_id)
    }

    /// Whether this device holds a session with the device of this identity key.
    #[wasm_bindgen(js_name = hasSession)]
    pub fn has_session(&self, their_curve25519: &str) -> bool {
        self.session_with(their_curve25519).is_some()
    }

    /// Encrypts `plaintext` for the device of this identity key into a to-device payload.
    #[wasm_bindgen(js_name = encryptTo)]
    pub fn encrypt_to(
        &mut self,
        their_curve25519: &str,
        plaintext: &str,
    ) -> Result<String, JsError> {
        self.encrypt_bytes_to(their_curve25519, plaintext.as_bytes())
    }

    /// Decrypts a to-device payload with the session its sender uses, or a new one for a first
    /// message.
    pub fn receive(&mut self, payload: &str) -> Result<Received, JsError> {
        let payload = ToDevicePayload::parse(payload)?;
        let (plaintext, with) = self.account.decrypt(&mut self.sessions, &payload)?;
        let new_session = matches!(with, DecryptedWith::New(_));
        if let DecryptedWith::New(session) = with {
            self.sessions.push(*session);
        }
        Ok(Received {
            plaintext: zeroize::Zeroizing::new(plaintext),
            new_session,
        })
    }

    /// The account encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        self.account.pickle(&key.0)
    }

    /// The pairwise sessions encrypted with `key`, one pickle each, for storage.
    #[wasm_bindgen(js_name = sessionPickles)]
    pub fn session_pickles(&self, key: &StoreKey) -> Vec<String> {
        self.sessions.iter().map(|s| s.pickle(&key.0)).collect()
    }

    /// A device from its pickles ([`Device::pickle`], [`Device::session_pickles`]).
    #[wasm_bindgen(js_name = fromPickles)]
    pub fn from_pickles(
        pickle: &str,
        sessions: Vec<String>,
        key: &StoreKey,
    ) -> Result<Device, JsError> {
        Ok(Self {
            account: DeviceAccount::from_pickle(pickle, &key.0)?,
            sessions: sessions
                .iter()
                .map(|s| PairwiseSession::from_pickle(s, &key.0))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Default for Device {
    fn default() -> Self {
        Self::new()
    }
}

impl Device {
    fn session_with(&self, their_curve25519: &str) -> Option<usize> {
        self.sessions
            .iter()
            .rposition(|s| s.their_key() == their_curve25519)
    }

    /// Encrypts bytes for the device of this identity key (the newest session with it).
    pub(crate) fn encrypt_bytes_to(
        &mut self,
        their_curve25519: &str,
        plaintext: &[u8],
    ) -> Result<String, JsError> {
        let own = self.account.curve25519();
        let index = self
            .session_with(their_curve25519)
            .ok_or_else(|| JsError::new("no session with that device: open one first"))?;
        Ok(self.sessions[index].encrypt(&own, plaintext)?)
    }
}

/// A decrypted to-device payload: a room key share, or another payload (device approval).
#[wasm_bindgen]
pub struct Received {
    plaintext: zeroize::Zeroizing<Vec<u8>>,
    new_session: bool,
}

#[wasm_bindgen]
impl Received {
    /// Whether it opened a new pairwise session (a first message from that device).
    #[wasm_bindgen(getter, js_name = newSession)]
    pub fn new_session(&self) -> bool {
        self.new_session
    }

    /// Whether it carries a room key (take it with [`Received::room_key`]).
    #[wasm_bindgen(getter, js_name = isRoomKey)]
    pub fn is_room_key(&self) -> bool {
        self.share().is_some()
    }

    /// The room key it carries, as the terminal client accepts it: only when it is addressed
    /// to `own_device_id` and was sent by the device the server says sent it.
    #[wasm_bindgen(js_name = roomKey)]
    pub fn room_key(
        &self,
        sender_user_id: &str,
        sender_device_id: &str,
        own_device_id: &str,
    ) -> Result<crate::room::InboundGroup, JsError> {
        let share = self
            .share()
            .ok_or_else(|| JsError::new("not a room key share"))?;
        let sender_user: UserId = id(sender_user_id, "user id")?;
        let sender_device: DeviceId = id(sender_device_id, "device id")?;
        let own: DeviceId = id(own_device_id, "device id")?;
        if share.recipient_device_id != own
            || share.sender_device_id != sender_device
            || share.sender_user_id != sender_user
        {
            return Err(JsError::new(
                "a room key share for another device or from another sender",
            ));
        }
        crate::room::InboundGroup::from_share(&share)
    }

    /// The plaintext of a payload that is not a room key (a room key never leaves wasm).
    pub fn text(&self) -> Option<String> {
        if self.is_room_key() {
            return None;
        }
        String::from_utf8(self.plaintext.to_vec()).ok()
    }
}

impl Received {
    fn share(&self) -> Option<RoomKeyShare> {
        serde_json::from_slice(&self.plaintext).ok()
    }
}
