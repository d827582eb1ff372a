//! End-to-end encryption glue: publishing keys, sharing room keys with member devices over
//! pairwise sessions, and decrypting what arrives.

use std::collections::BTreeSet;

use natter_crypto::approval::ApprovalPayload;
use natter_crypto::envelope::session_id_of;
use natter_crypto::{
    DecryptedWith, InboundRoomSession, MessageEnvelope, OutboundRoomSession, PairwiseSession,
    RoomKeyShare, ToDevicePayload, UnableToDecrypt, VerifiedDevice,
};
use natter_proto::conversations::ConversationKind;
use natter_proto::keys::UploadKeysRequest;
use natter_proto::limits::TO_DEVICE_BATCH_MAX;
use natter_proto::ws::{ClientFrame, Message, ToDeviceIn, ToDeviceOut};
use natter_proto::{ConversationId, DeviceId, UserId};

use crate::clock::now_ms;
use crate::device::State;
use crate::store::StoredMessage;
use crate::{ClientError, Device};

/// Below this many one-time keys on the server, the device publishes more.
const ONE_TIME_KEYS_LOW: u32 = 25;

/// What a to-device payload brought ([`Device::receive_to_device`]).
#[derive(Default)]
pub(crate) struct Received {
    /// The stored messages it made readable.
    pub(crate) resolved: Vec<StoredMessage>,
    /// Whether it opened a new Olm session, using up one of this device's one-time keys.
    pub(crate) new_session: bool,
    /// Frames to send in answer (the next step of an approval).
    pub(crate) replies: Vec<ClientFrame>,
    /// What to report about an approval.
    pub(crate) approvals: Vec<crate::ApprovalEvent>,
}

impl Device {
    /// Publishes one-time keys when the server's stock is low (and the identity keys when
    /// `identity` is set).
    pub(crate) async fn publish_keys(&self, identity: bool) -> Result<(), ClientError> {
        let session = &self.inner.session;
        let counts = session.key_counts().await?;
        if !identity && counts.one_time_key_count >= ONE_TIME_KEYS_LOW && counts.has_fallback_key {
            return Ok(());
        }
        let mut state = self.lock().await;
        let published = usize::try_from(counts.one_time_key_count).unwrap_or(usize::MAX);
        let upload = state
            .account
            .keys_to_publish(published, counts.has_fallback_key);
        let request = UploadKeysRequest {
            identity_keys: identity.then(|| {
                state
                    .account
                    .identity_keys(self.user_id(), self.device_id())
            }),
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key,
        };
        session.upload_keys(&request).await?;
        state.account.mark_published();
        self.save_account(&state)
    }

    fn save_account(&self, state: &State) -> Result<(), ClientError> {
        state
            .store
            .set("account", &state.account.pickle(&self.inner.key))
    }

    /// The Curve25519 key of a device and whether its user's identity signed it: a signed
    /// device from the cache, else fetched; else (for this user's own devices only) one whose
    /// own keys are valid but not signed yet, which may take part in an approval and nothing
    /// else. `None` for any other device, or one this user cannot see (anymore).
    async fn curve_key_of(
        &self,
        state: &mut State,
        user: UserId,
        device: DeviceId,
    ) -> Result<Option<(String, bool)>, ClientError> {
        if let Some((curve, _)) = state.store.device_keys(user, device)? {
            return Ok(Some((curve, true)));
        }
        // A user whose identity changed after it was verified gives no keys either.
        let devices = match self.trusted_devices(state, user).await {
            Err(ClientError::IdentityChanged(_)) => Vec::new(),
            devices => devices?,
        };
        if let Some(signed) = devices.into_iter().find(|d| d.device_id == device) {
            return Ok(Some((signed.curve25519, true)));
        }
        if user != self.user_id() {
            return Ok(None);
        }
        Ok(self
            .own_device(device)
            .await?
            .map(|unsigned| (unsigned.curve25519, false)))
    }

    /// Encrypts a text for a conversation: rotates the outbound session when needed, shares
    /// its key with every member device that lacks it, and returns the to-device frames to
    /// send first and the message ciphertext.
    pub(crate) async fn encrypt_message(
        &self,
        state: &mut State,
        conversation: ConversationId,
        text: &str,
    ) -> Result<(Vec<ClientFrame>, String), ClientError> {
        let me = (self.user_id(), self.device_id());
        if state.secrets.is_none() {
            return Err(ClientError::NotApproved);
        }
        let details = self.inner.session.conversation(conversation).await?;
        let members = details.members;
        if !members.iter().any(|m| m.user_id == me.0) {
            return Err(ClientError::NotMember(conversation));
        }
        // A direct conversation is two people: a third listed by the server gets nothing.
        let distinct: BTreeSet<UserId> = members.iter().map(|m| m.user_id).collect();
        if details.summary.kind == ConversationKind::Direct && distinct.len() != 2 {
            return Err(ClientError::MembersChanged(conversation));
        }
        self.note_new_members(state, conversation, &distinct)?;
        let users: Vec<UserId> = distinct.iter().copied().collect();
        self.fetch_device_lists(&users).await?;
        let mut recipients = BTreeSet::new();
        let mut curve_keys = Vec::new();
        for member in &members {
            // Only devices signed by their user's identity get the key. A room member this
            // user cannot see cannot be given it (they see "unable to decrypt"), nor can this
            // user's own devices when the server shows another identity.
            let devices = match self.trusted_devices(state, member.user_id).await {
                Err(ClientError::IdentityChanged(user)) if user == me.0 => Vec::new(),
                devices => devices?,
            };
            for device in devices {
                if (device.user_id, device.device_id) != me {
                    recipients.insert((device.user_id, device.device_id));
                    curve_keys.push(device);
                }
            }
        }
        let key = &self.inner.key;
        let now = now_ms();
        let mut outbound = match state.store.outbound(conversation)? {
            Some(pickle) => Some(OutboundRoomSession::from_pickle(&pickle, key)?),
            None => None,
        }
        .filter(|o| !o.needs_rotation(now, &self.inner.policy, &recipients))
        .map_or_else(|| self.new_outbound(state, conversation, now), Ok)?;

        let mut payloads = Vec::new();
        for (user, device) in outbound.unshared(&recipients) {
            let Some(target) = curve_keys.iter().find(|d| d.device_id == device) else {
                continue;
            };
            let Some(mut pairwise) = self.pairwise_for(state, target).await? else {
                continue;
            };
            let share = outbound.share_for(me, device);
            let plaintext = serde_json::to_vec(&share).expect("a key share always serializes");
            let payload = pairwise.encrypt(&state.account.curve25519(), &plaintext)?;
            state.store.save_olm_session(
                pairwise.their_key(),
                &pairwise.session_id(),
                &pairwise.pickle(key),
                now,
            )?;
            payloads.push(ToDeviceOut {
                user_id: user,
                device_id: device,
                payload,
            });
            outbound.mark_shared((user, device));
        }
        let envelope = MessageEnvelope::new(text, conversation, me.1)?;
        let ciphertext = outbound.encrypt(&envelope);
        state
            .store
            .save_outbound(conversation, &outbound.pickle(key))?;
        let frames = payloads
            .chunks(TO_DEVICE_BATCH_MAX)
            .map(|chunk| ClientFrame::ToDevice {
                messages: chunk.to_vec(),
            })
            .collect();
        Ok((frames, ciphertext))
    }

    /// A new outbound session; this device keeps an inbound copy to read its own messages
    /// in history.
    fn new_outbound(
        &self,
        state: &State,
        conversation: ConversationId,
        now: i64,
    ) -> Result<OutboundRoomSession, ClientError> {
        let outbound = OutboundRoomSession::new(conversation, now);
        let own = outbound.share_for((self.user_id(), self.device_id()), self.device_id());
        let inbound = InboundRoomSession::from_share(&own)?;
        self.keep_inbound(state, &inbound, true)?;
        Ok(outbound)
    }

    /// The pairwise session to use with a device: the most recent one, or a new one from a
    /// claimed one-time key. `None` when the device has no keys left to claim.
    pub(crate) async fn pairwise_for(
        &self,
        state: &State,
        target: &VerifiedDevice,
    ) -> Result<Option<PairwiseSession>, ClientError> {
        if let Some(pickle) = state.store.olm_sessions(&target.curve25519)?.first() {
            return Ok(Some(PairwiseSession::from_pickle(pickle, &self.inner.key)?));
        }
        let claimed = match self
            .inner
            .session
            .claim_key(target.user_id, target.device_id)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(
            state
                .account
                .open_session(&target.curve25519, &claimed.key)?,
        ))
    }

    /// Handles a to-device payload: a room key from another device. Payloads that are not
    /// valid for this device, or come from a device this user cannot see (a member who left),
    /// are dropped (`Ok` with nothing); only a failure to reach the server is an error.
    pub(crate) async fn receive_to_device(
        &self,
        state: &mut State,
        item: &ToDeviceIn,
    ) -> Result<Received, ClientError> {
        let Ok(payload) = ToDevicePayload::parse(&item.payload) else {
            return Ok(Received::default());
        };
        let Some((curve, signed)) = self
            .curve_key_of(state, item.sender_id, item.sender_device_id)
            .await?
        else {
            tracing::warn!(
                sender = %item.sender_id,
                device = %item.sender_device_id,
                "dropped a to-device payload from a device this user cannot see"
            );
            return Ok(Received::default());
        };
        if curve != payload.sender_key() {
            return Ok(Received::default());
        }
        let key = &self.inner.key;
        let mut sessions = state
            .store
            .olm_sessions(&curve)?
            .iter()
            .map(|p| PairwiseSession::from_pickle(p, key))
            .collect::<Result<Vec<_>, _>>()?;
        let Ok((plaintext, used)) = state.account.decrypt(&mut sessions, &payload) else {
            return Ok(Received::default());
        };
        // Only the session that decrypted moved; it becomes the most recently used.
        let session = match &used {
            DecryptedWith::Existing(index) => &sessions[*index],
            DecryptedWith::New(session) => session,
        };
        state.store.save_olm_session(
            &curve,
            &session.session_id(),
            &session.pickle(key),
            now_ms(),
        )?;
        let new_session = matches!(used, DecryptedWith::New(_));
        if new_session {
            // Making the session used up one of the account's one-time keys.
            self.save_account(state)?;
        }
        if let Ok(payload) = serde_json::from_slice::<ApprovalPayload>(&plaintext) {
            let mut received = self
                .take_approval_step(state, item, payload.approval)
                .await?;
            received.new_session = new_session;
            return Ok(received);
        }
        // Room keys only from devices their user's identity signed.
        let resolved = if signed {
            self.accept_share(state, item, &plaintext)?
        } else {
            Vec::new()
        };
        Ok(Received {
            resolved,
            new_session,
            ..Received::default()
        })
    }

    /// Takes in a decrypted room key share; returns the stored messages it made readable.
    fn accept_share(
        &self,
        state: &State,
        item: &ToDeviceIn,
        plaintext: &[u8],
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let Ok(share) = serde_json::from_slice::<RoomKeyShare>(plaintext) else {
            return Ok(Vec::new());
        };
        if share.recipient_device_id != self.device_id()
            || share.sender_device_id != item.sender_device_id
            || share.sender_user_id != item.sender_id
        {
            return Ok(Vec::new());
        }
        let Ok(inbound) = InboundRoomSession::from_share(&share) else {
            return Ok(Vec::new());
        };
        self.keep_inbound(state, &inbound, true)
    }

    /// Decrypts messages that arrived before their key.
    pub(crate) fn retry_pending(
        &self,
        state: &State,
        session_id: &str,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let mut resolved = Vec::new();
        for (mut stored, ciphertext) in state.store.pending(session_id)? {
            let message = Message {
                conversation_id: stored.conversation_id,
                seq: stored.seq,
                sender_id: stored.sender_id,
                sender_device_id: stored.sender_device_id,
                client_msg_id: stored.client_msg_id.clone(),
                server_ts: stored.server_ts,
                client_ts: None,
                ciphertext,
            };
            if let Ok(text) = self.decrypt_with(state, Some(session_id), &message)? {
                state.store.resolve(&stored, &text)?;
                stored.body = Ok(text);
                resolved.push(stored);
            }
        }
        Ok(resolved)
    }

    /// Decrypts one message with the keys this device holds; `session_id` is the one its
    /// ciphertext names ([`session_id_of`]), which callers already know.
    fn decrypt_with(
        &self,
        state: &State,
        session_id: Option<&str>,
        message: &Message,
    ) -> Result<Result<String, UnableToDecrypt>, ClientError> {
        let Some(session_id) = session_id else {
            return Ok(Err(UnableToDecrypt::Corrupt(
                "not a Natter ciphertext".into(),
            )));
        };
        let Some(pickle) = state.store.inbound(session_id)? else {
            return Ok(Err(UnableToDecrypt::MissingKey));
        };
        let mut inbound = InboundRoomSession::from_pickle(&pickle, &self.inner.key)?;
        Ok(inbound
            .decrypt(message)
            .map(|envelope| envelope.text.clone()))
    }

    /// Decrypts and stores a message from the server (once per conversation and seq).
    /// Returns it with `true` the first time this device sees it.
    pub(crate) fn accept_message(
        &self,
        state: &State,
        message: &Message,
    ) -> Result<(StoredMessage, bool), ClientError> {
        let session_id = session_id_of(&message.ciphertext);
        let body = self.decrypt_with(state, session_id.as_deref(), message)?;
        let stored = StoredMessage {
            conversation_id: message.conversation_id,
            seq: message.seq,
            sender_id: message.sender_id,
            sender_device_id: message.sender_device_id,
            client_msg_id: message.client_msg_id.clone(),
            server_ts: message.server_ts,
            body,
        };
        let new = state.store.insert_message(
            &stored,
            session_id.as_deref(),
            Some(&message.ciphertext),
        )?;
        Ok((stored, new))
    }

    /// Decrypts a message (from history, say) without storing it.
    ///
    /// # Errors
    /// The store cannot be read; a message this device cannot read is `Ok(Err(reason))`.
    pub async fn decrypt(
        &self,
        message: &Message,
    ) -> Result<Result<String, UnableToDecrypt>, ClientError> {
        let session_id = session_id_of(&message.ciphertext);
        let state = self.lock().await;
        self.decrypt_with(&state, session_id.as_deref(), message)
    }

    /// Fetches a conversation's history from the server after `after`, decrypts and stores
    /// it, and returns the stored messages in order.
    ///
    /// # Errors
    /// The server refuses (`not_found` for non-members) or cannot be reached.
    pub async fn fetch_history(
        &self,
        conversation: ConversationId,
        after: i64,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let mut after = after;
        let mut fetched = Vec::new();
        loop {
            let page = self
                .inner
                .session
                .history(conversation, Some(after), None, None)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let state = self.lock().await;
            for message in &page {
                fetched.push(self.accept_message(&state, message)?.0);
            }
        }
        Ok(fetched)
    }
}
