//! [`MessageLog`]: each conversation's log of messages, and each device's cursors in it.

use async_trait::async_trait;
use natter_proto::conversations::MessageReceipts;
use natter_proto::ws::Message;
use natter_proto::{ConversationId, DeviceId, UserId};

use super::StoreError;

/// A message to append.
pub struct NewMessage<'a> {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The sender.
    pub sender_id: UserId,
    /// The sending device.
    pub sender_device: DeviceId,
    /// The device's id for it.
    pub client_msg_id: &'a str,
    /// The sender's clock.
    pub client_ts: Option<i64>,
    /// The opaque body.
    pub ciphertext: &'a str,
    /// Now, ms.
    pub server_ts: i64,
}

/// Told a new message's seq once it is committed. Appends committed together are told in seq
/// order, so fan-out leaves in the order recipients must show them.
pub type OnStored = Box<dyn FnOnce(i64) + Send + Sync>;

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The conversation it is stored in (for a duplicate: where the first copy went).
    pub conversation_id: ConversationId,
    /// Its seq.
    pub seq: i64,
    /// When it was stored.
    pub server_ts: i64,
    /// True when this (device, client_msg_id) was already stored and nothing new was written.
    pub duplicate: bool,
}

/// Where a device's sync starts in one conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorStart {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The device's delivered cursor (or where the member joined, if further).
    pub delivered_seq: i64,
    /// The device's read cursor.
    pub read_seq: i64,
    /// The conversation's last seq now.
    pub last_seq: i64,
}

/// Persistence of the message log and the cursors in it.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// Appends a message, assigning the next seq, and calls `on_stored` once it is committed;
    /// a resend of a stored (device, client_msg_id) returns the first copy's place, writes
    /// nothing and calls nothing.
    async fn append(
        &self,
        message: &NewMessage<'_>,
        on_stored: OnStored,
    ) -> Result<Appended, StoreError>;
    /// Messages with `after < seq <= up_to` that `viewer` may see (in their membership window,
    /// not from users they block), oldest first, at most `limit`.
    async fn messages_after(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        after: i64,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// Messages with `seq < before` that `viewer` may see, newest first, at most `limit`.
    async fn messages_before(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// Messages `user` sent from any device with `server_ts < before`, newest first.
    async fn sent_by(
        &self,
        user: UserId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// Where a device's sync starts in each conversation it may still receive messages from.
    async fn cursor_starts(
        &self,
        device: DeviceId,
        user: UserId,
    ) -> Result<Vec<CursorStart>, StoreError>;
    /// How far `user`'s cursors may go, if `user` is or was a member: the conversation's last
    /// seq, or for a past member the last seq they saw (`left_seq`).
    async fn cursor_bound(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Option<i64>, StoreError>;
    /// Moves a device's cursors forward (never back); returns them after the move.
    async fn move_cursor(
        &self,
        device: DeviceId,
        user: UserId,
        conversation: ConversationId,
        delivered_seq: i64,
        read_seq: i64,
    ) -> Result<(i64, i64), StoreError>;
    /// The current members who sent messages with `after < seq <= up_to`, except any in a block
    /// (either way) with `apart_from`.
    async fn senders_between(
        &self,
        conversation: ConversationId,
        span: (i64, i64),
        apart_from: Option<UserId>,
    ) -> Result<Vec<UserId>, StoreError>;
    /// Every (blocker, blocked) pair among a conversation's current members with one side
    /// among `users`.
    async fn blocks_with(
        &self,
        conversation: ConversationId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, UserId)>, StoreError>;
    /// How far one message got, from the cursors.
    async fn receipts(
        &self,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<Option<MessageReceipts>, StoreError>;
}
