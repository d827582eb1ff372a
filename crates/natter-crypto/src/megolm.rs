//! Room (Megolm) sessions: each sending device encrypts every message once with its outbound
//! session for the conversation, and shares the session key with every member device.

use std::collections::BTreeSet;
use std::time::Duration;

use natter_proto::ws::Message;
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::{Deserialize, Serialize};
use vodozemac::megolm::{
    DecryptionError, ExportedSessionKey, GroupSession, GroupSessionPickle, InboundGroupSession,
    InboundGroupSessionPickle, MegolmMessage, SessionConfig, SessionKey,
};
use zeroize::Zeroizing;

use crate::envelope::MessageWire;
use crate::{CryptoError, MessageEnvelope, RoomKeyShare, StoreKey, UnableToDecrypt};

/// When an outbound session is replaced by a new one (key validity).
#[derive(Clone, Copy, Debug)]
pub struct RotationPolicy {
    /// After this many messages.
    pub max_messages: u32,
    /// After this long.
    pub max_age: Duration,
}

impl Default for RotationPolicy {
    /// Matrix's defaults: 100 messages or 7 days.
    fn default() -> Self {
        Self {
            max_messages: 100,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A device that a room key was (or is to be) given to.
pub type Recipient = (UserId, DeviceId);

/// This device's outbound session in one conversation.
///
/// # Security
/// Holds the ratchet; no `Debug` or `Clone`.
pub struct OutboundRoomSession {
    session: GroupSession,
    stored: OutboundMeta,
}

#[derive(Serialize, Deserialize)]
struct OutboundMeta {
    conversation_id: ConversationId,
    created_at_ms: i64,
    shared_with: BTreeSet<Recipient>,
}

/// The stored form of a room session: what it is for in clear, next to the ratchet
/// encrypted with the store key (vodozemac's encrypted pickle).
#[derive(Serialize, Deserialize)]
struct Pickled<M> {
    #[serde(flatten)]
    meta: M,
    session: String,
}

impl<M: Serialize> Pickled<M> {
    fn to_json(meta: M, session: String) -> String {
        serde_json::to_string(&Self { meta, session }).expect("a pickle always serializes")
    }
}

impl<M: serde::de::DeserializeOwned> Pickled<M> {
    fn from_json(pickle: &str) -> Result<Self, CryptoError> {
        serde_json::from_str(pickle).map_err(CryptoError::PickleFormat)
    }
}

impl OutboundRoomSession {
    /// A new session for `conversation_id`, created at `now_ms`.
    pub fn new(conversation_id: ConversationId, now_ms: i64) -> Self {
        Self {
            session: GroupSession::new(SessionConfig::version_1()),
            stored: OutboundMeta {
                conversation_id,
                created_at_ms: now_ms,
                shared_with: BTreeSet::new(),
            },
        }
    }

    /// The session's id.
    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// How many messages it encrypted.
    pub fn messages(&self) -> u32 {
        self.session.message_index()
    }

    /// Whether it must be replaced before the next message: it is too old or has encrypted
    /// too many messages, or a device it was shared with is no longer among `recipients`
    /// (a member left or was removed, or a device was deleted).
    pub fn needs_rotation(
        &self,
        now_ms: i64,
        policy: &RotationPolicy,
        recipients: &BTreeSet<Recipient>,
    ) -> bool {
        let age_ms = u128::try_from(now_ms.saturating_sub(self.stored.created_at_ms)).unwrap_or(0);
        self.messages() >= policy.max_messages
            || age_ms >= policy.max_age.as_millis()
            || !self.stored.shared_with.is_subset(recipients)
    }

    /// The recipients that do not have the key yet.
    pub fn unshared(&self, recipients: &BTreeSet<Recipient>) -> Vec<Recipient> {
        recipients
            .difference(&self.stored.shared_with)
            .copied()
            .collect()
    }

    /// Notes that a recipient was given the key.
    pub fn mark_shared(&mut self, recipient: Recipient) {
        self.stored.shared_with.insert(recipient);
    }

    /// The key share for one recipient: the session key from the next message on, so a device
    /// added later reads only what is sent after it joined.
    pub fn share_for(&self, sender: Recipient, recipient: DeviceId) -> RoomKeyShare {
        RoomKeyShare {
            conversation_id: self.stored.conversation_id,
            session_id: self.session_id(),
            session_key: self.session.session_key().to_base64(),
            sender_user_id: sender.0,
            sender_device_id: sender.1,
            recipient_device_id: recipient,
        }
    }

    /// Encrypts a message once for every member; returns the `ciphertext` for the `send` frame.
    pub fn encrypt(&mut self, envelope: &MessageEnvelope) -> String {
        let plaintext = serde_json::to_vec(envelope).expect("an envelope always serializes");
        let message = self.session.encrypt(plaintext);
        let wire = MessageWire {
            v: 1,
            s: self.session_id(),
            m: message.to_base64(),
        };
        serde_json::to_string(&wire).expect("a message always serializes")
    }

    /// The session encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        Pickled::to_json(&self.stored, self.session.pickle().encrypt(key.bytes()))
    }

    /// Opens a pickle made by [`OutboundRoomSession::pickle`].
    ///
    /// # Errors
    /// A wrong key or damaged data.
    pub fn from_pickle(pickle: &str, key: &StoreKey) -> Result<Self, CryptoError> {
        let pickled = Pickled::<OutboundMeta>::from_json(pickle)?;
        let session = GroupSessionPickle::from_encrypted(&pickled.session, key.bytes())
            .map_err(CryptoError::Pickle)?;
        Ok(Self {
            session: GroupSession::from_pickle(session),
            stored: pickled.meta,
        })
    }
}

/// A session this device decrypts one sender device's messages in one conversation with.
///
/// # Security
/// Holds the ratchet; no `Debug` or `Clone`.
pub struct InboundRoomSession {
    session: InboundGroupSession,
    meta: InboundMeta,
}

#[derive(Serialize, Deserialize)]
struct InboundMeta {
    // Kept in exports too, so a restored session checks senders like the original.
    conversation_id: ConversationId,
    sender_user_id: UserId,
    sender_device_id: DeviceId,
}

impl InboundRoomSession {
    /// A session from a key share.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] when the key does not parse or does not match its id.
    pub fn from_share(share: &RoomKeyShare) -> Result<Self, CryptoError> {
        let key = SessionKey::from_base64(&share.session_key)
            .map_err(|_| CryptoError::Malformed { what: "room key" })?;
        let session = InboundGroupSession::new(&key, SessionConfig::version_1());
        if session.session_id() != share.session_id {
            return Err(CryptoError::Malformed {
                what: "room key (its id does not match)",
            });
        }
        Ok(Self {
            session,
            meta: InboundMeta {
                conversation_id: share.conversation_id,
                sender_user_id: share.sender_user_id,
                sender_device_id: share.sender_device_id,
            },
        })
    }

    /// The session's id.
    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// The first message index it can decrypt; a lower one is the better key to keep.
    pub fn first_known_index(&self) -> u32 {
        self.session.first_known_index()
    }

    /// The conversation it is for.
    pub fn conversation_id(&self) -> ConversationId {
        self.meta.conversation_id
    }

    /// Decrypts a message, checking it came from this session's device and conversation.
    ///
    /// # Errors
    /// [`UnableToDecrypt`] with the reason.
    pub fn decrypt(&mut self, message: &Message) -> Result<MessageEnvelope, UnableToDecrypt> {
        if message.sender_device_id != self.meta.sender_device_id
            || message.sender_id != self.meta.sender_user_id
            || message.conversation_id != self.meta.conversation_id
        {
            return Err(UnableToDecrypt::Mismatch);
        }
        let wire = MessageWire::parse(&message.ciphertext)
            .ok_or_else(|| UnableToDecrypt::Corrupt("not a Natter ciphertext".into()))?;
        let megolm = MegolmMessage::from_base64(&wire.m)
            .map_err(|e| UnableToDecrypt::Corrupt(e.to_string()))?;
        let decrypted = self.session.decrypt(&megolm).map_err(|e| match e {
            DecryptionError::UnknownMessageIndex(..) => UnableToDecrypt::TooOld,
            other => UnableToDecrypt::Corrupt(other.to_string()),
        })?;
        let envelope: MessageEnvelope = serde_json::from_slice(&decrypted.plaintext)
            .map_err(|_| UnableToDecrypt::Corrupt("the decrypted envelope is not valid".into()))?;
        if envelope.conversation_id != message.conversation_id
            || envelope.sender_device_id != message.sender_device_id
        {
            return Err(UnableToDecrypt::Mismatch);
        }
        Ok(envelope)
    }

    /// The session encrypted with `key`, for storage.
    pub fn pickle(&self, key: &StoreKey) -> String {
        Pickled::to_json(&self.meta, self.session.pickle().encrypt(key.bytes()))
    }

    /// The session as JSON from its first known index on, for the key backup: whoever opens it
    /// reads every message this session can.
    pub fn export(&self) -> Zeroizing<String> {
        let key = self.session.export_at_first_known_index().to_base64();
        Zeroizing::new(Pickled::to_json(&self.meta, key))
    }

    /// A session from [`InboundRoomSession::export`].
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything else.
    pub fn import(export: &str) -> Result<Self, CryptoError> {
        let malformed = || CryptoError::Malformed {
            what: "exported room key",
        };
        let pickled = Pickled::<InboundMeta>::from_json(export).map_err(|_| malformed())?;
        let key = ExportedSessionKey::from_base64(&pickled.session).map_err(|_| malformed())?;
        Ok(Self {
            session: InboundGroupSession::import(&key, SessionConfig::version_1()),
            meta: pickled.meta,
        })
    }

    /// Opens a pickle made by [`InboundRoomSession::pickle`].
    ///
    /// # Errors
    /// A wrong key or damaged data.
    pub fn from_pickle(pickle: &str, key: &StoreKey) -> Result<Self, CryptoError> {
        let pickled = Pickled::<InboundMeta>::from_json(pickle)?;
        let session = InboundGroupSessionPickle::from_encrypted(&pickled.session, key.bytes())
            .map_err(CryptoError::Pickle)?;
        Ok(Self {
            session: InboundGroupSession::from_pickle(session),
            meta: pickled.meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecryptedWith, DeviceAccount, PairwiseSession, ToDevicePayload};

    fn id() -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }

    /// Message 1 of `conversation`, sent by `device` of `sender` with `ciphertext`.
    fn message(
        conversation: ConversationId,
        sender: UserId,
        device: DeviceId,
        ciphertext: String,
    ) -> Message {
        Message {
            conversation_id: conversation,
            seq: 1,
            sender_id: sender,
            sender_device_id: device,
            client_msg_id: "m1".into(),
            server_ts: 0,
            client_ts: None,
            ciphertext,
        }
    }

    #[test]
    fn a_key_shared_over_olm_decrypts_room_messages() {
        let mut alice = DeviceAccount::new();
        let mut bob = DeviceAccount::new();
        let upload = bob.keys_to_publish(0, false);
        bob.mark_published();
        assert_eq!(upload.one_time_keys.len(), 50);
        assert!(upload.fallback_key.is_some());

        let (alice_user, alice_dev, bob_user, bob_dev) =
            (UserId(id()), DeviceId(id()), UserId(id()), DeviceId(id()));
        let conversation = ConversationId(id());
        let mut outbound = OutboundRoomSession::new(conversation, 0);
        let mut pairwise = alice
            .open_session(&bob.curve25519(), &upload.one_time_keys[0].key)
            .unwrap();
        let share = outbound.share_for((alice_user, alice_dev), bob_dev);
        let payload = pairwise
            .encrypt(&alice.curve25519(), &serde_json::to_vec(&share).unwrap())
            .unwrap();

        let parsed = ToDevicePayload::parse(&payload).unwrap();
        assert_eq!(parsed.sender_key(), alice.curve25519());
        let (plaintext, used) = bob.decrypt(&mut [], &parsed).unwrap();
        let DecryptedWith::New(mut bobs_side) = used else {
            panic!("a first message makes a new session");
        };
        let received: RoomKeyShare = serde_json::from_slice(&plaintext).unwrap();
        // Bob answers over his new session; alice decrypts with the session she has, and is
        // told which one it was.
        let answer = bobs_side.encrypt(&bob.curve25519(), b"thanks").unwrap();
        let answer = ToDevicePayload::parse(&answer).unwrap();
        let (plaintext, used) = alice
            .decrypt(std::slice::from_mut(&mut pairwise), &answer)
            .unwrap();
        assert_eq!(plaintext, b"thanks");
        assert!(matches!(used, DecryptedWith::Existing(0)));
        let mut inbound = InboundRoomSession::from_share(&received).unwrap();

        let envelope = MessageEnvelope::new("hello bob", conversation, alice_dev).unwrap();
        let message = message(
            conversation,
            alice_user,
            alice_dev,
            outbound.encrypt(&envelope),
        );
        assert_eq!(inbound.decrypt(&message).unwrap().text, "hello bob");

        let moved = Message {
            conversation_id: ConversationId(id()),
            ..message.clone()
        };
        assert_eq!(inbound.decrypt(&moved), Err(UnableToDecrypt::Mismatch));
        let forged = Message {
            sender_id: bob_user,
            ..message.clone()
        };
        assert_eq!(inbound.decrypt(&forged), Err(UnableToDecrypt::Mismatch));
        let damaged = Message {
            ciphertext: "garbage".into(),
            ..message
        };
        assert!(matches!(
            inbound.decrypt(&damaged),
            Err(UnableToDecrypt::Corrupt(_))
        ));

        let recipients = BTreeSet::from([(bob_user, bob_dev)]);
        outbound.mark_shared((bob_user, bob_dev));
        let policy = RotationPolicy::default();
        assert!(!outbound.needs_rotation(1, &policy, &recipients));
        assert!(outbound.needs_rotation(1, &policy, &BTreeSet::new()));
        assert!(outbound.needs_rotation(8 * 24 * 3600 * 1000, &policy, &recipients));
        for _ in 1..policy.max_messages {
            outbound.encrypt(&envelope);
        }
        assert_eq!(outbound.messages(), 100);
        assert!(outbound.needs_rotation(1, &policy, &recipients));
    }

    #[test]
    fn the_session_that_decrypts_is_named_among_several_with_the_sender() {
        let alice = DeviceAccount::new();
        let mut bob = DeviceAccount::new();
        let upload = bob.keys_to_publish(0, false);
        bob.mark_published();
        // Alice opened two sessions with bob (two claimed one-time keys); bob has both.
        let mut first = alice
            .open_session(&bob.curve25519(), &upload.one_time_keys[0].key)
            .unwrap();
        let mut second = alice
            .open_session(&bob.curve25519(), &upload.one_time_keys[1].key)
            .unwrap();
        let payload = |session: &mut PairwiseSession, text: &[u8]| {
            ToDevicePayload::parse(&session.encrypt(&alice.curve25519(), text).unwrap()).unwrap()
        };
        let mut bobs = Vec::new();
        for session in [&mut first, &mut second] {
            let (_, used) = bob.decrypt(&mut [], &payload(session, b"hello")).unwrap();
            let DecryptedWith::New(session) = used else {
                panic!("a first message makes a new session");
            };
            bobs.push(*session);
        }

        // The first session cannot decrypt what the second encrypted; the second one can.
        let (plaintext, used) = bob
            .decrypt(&mut bobs, &payload(&mut second, b"two"))
            .unwrap();
        assert_eq!(plaintext, b"two");
        assert!(matches!(used, DecryptedWith::Existing(1)));
        let (plaintext, used) = bob
            .decrypt(&mut bobs, &payload(&mut first, b"one"))
            .unwrap();
        assert_eq!(plaintext, b"one");
        assert!(matches!(used, DecryptedWith::Existing(0)));
    }

    #[test]
    fn pickles_need_the_right_key() {
        let salt = StoreKey::new_salt();
        let key = StoreKey::from_passphrase("right", &salt).unwrap();
        let wrong = StoreKey::from_passphrase("wrong", &salt).unwrap();
        let outbound = OutboundRoomSession::new(ConversationId(id()), 0);
        let pickle = outbound.pickle(&key);
        let back = OutboundRoomSession::from_pickle(&pickle, &key).unwrap();
        assert_eq!(back.session_id(), outbound.session_id());
        assert!(matches!(
            OutboundRoomSession::from_pickle(&pickle, &wrong),
            Err(CryptoError::Pickle(_))
        ));
        assert!(matches!(
            OutboundRoomSession::from_pickle("not json", &key),
            Err(CryptoError::PickleFormat(_))
        ));
    }

    #[test]
    fn pickled_sessions_keep_what_they_are_for() {
        let key = StoreKey::from_passphrase("right", &StoreKey::new_salt()).unwrap();
        let (user, device, other) = (UserId(id()), DeviceId(id()), DeviceId(id()));
        let conversation = ConversationId(id());
        let mut outbound = OutboundRoomSession::new(conversation, 0);
        outbound.mark_shared((user, other));
        let inbound =
            InboundRoomSession::from_share(&outbound.share_for((user, device), other)).unwrap();

        // The outbound session remembers who has its key; the inbound one whose it is.
        let mut outbound = OutboundRoomSession::from_pickle(&outbound.pickle(&key), &key).unwrap();
        assert!(
            outbound
                .unshared(&BTreeSet::from([(user, other)]))
                .is_empty()
        );
        let mut inbound = InboundRoomSession::from_pickle(&inbound.pickle(&key), &key).unwrap();
        assert_eq!(inbound.conversation_id(), conversation);
        let envelope = MessageEnvelope::new("kept", conversation, device).unwrap();
        let message = message(conversation, user, device, outbound.encrypt(&envelope));
        assert_eq!(inbound.decrypt(&message).unwrap().text, "kept");
        let wrong = StoreKey::from_passphrase("wrong", &StoreKey::new_salt()).unwrap();
        assert!(matches!(
            InboundRoomSession::from_pickle(&inbound.pickle(&key), &wrong),
            Err(CryptoError::Pickle(_))
        ));
    }

    #[test]
    fn an_exported_session_reads_what_the_original_reads_and_checks_senders_alike() {
        let (user, device, other) = (UserId(id()), DeviceId(id()), DeviceId(id()));
        let conversation = ConversationId(id());
        let mut outbound = OutboundRoomSession::new(conversation, 0);
        let inbound =
            InboundRoomSession::from_share(&outbound.share_for((user, device), other)).unwrap();
        let envelope = MessageEnvelope::new("restored", conversation, device).unwrap();
        let sent = message(conversation, user, device, outbound.encrypt(&envelope));

        let mut restored = InboundRoomSession::import(&inbound.export()).unwrap();
        assert_eq!(restored.session_id(), inbound.session_id());
        assert_eq!(restored.decrypt(&sent).unwrap().text, "restored");
        let forged = Message {
            sender_device_id: other,
            ..sent
        };
        assert_eq!(restored.decrypt(&forged), Err(UnableToDecrypt::Mismatch));
        assert!(InboundRoomSession::import("{}").is_err());
    }
}
