//! [`MessageStore`]: conversations, members, the message log, cursors and the to-device inbox.

use async_trait::async_trait;
use natter_proto::conversations::{ConversationKind, ConversationSummary, MessageReceipts, Role};
use natter_proto::ws::{Message, ToDeviceIn};
use natter_proto::{ConversationId, DeviceId, UserId};

use super::StoreError;

/// A stored conversation.
#[derive(Clone, Debug)]
pub struct ConversationRecord {
    /// The id.
    pub id: ConversationId,
    /// Direct or room.
    pub kind: ConversationKind,
    /// A room's name.
    pub name: Option<String>,
    /// The last seq handed out.
    pub last_seq: i64,
}

/// A membership, current or past.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// They see messages after this seq.
    pub joined_seq: i64,
    /// Once they left: they see messages up to this seq.
    pub left_seq: Option<i64>,
}

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

/// What a send (or a typing notice) needs to know about a conversation, read in one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendPlan {
    /// Direct or room.
    pub kind: ConversationKind,
    /// The conversation's members version (bumped by every membership change).
    pub members_version: i64,
    /// Whether the sender is a current member.
    pub is_member: bool,
    /// Whether an operator suspended the sender (whose connections on other nodes may not have
    /// heard yet).
    pub sender_suspended: bool,
    /// Whether the sender's side of the connection to every other current member is
    /// `accepted` (what a direct conversation requires; a room's plan from a member list
    /// leaves it true).
    pub connected: bool,
    /// The current members, the sender included, except those who block the sender.
    pub recipients: Vec<UserId>,
    /// The current members who block the sender.
    pub blockers: Vec<UserId>,
}

impl SendPlan {
    /// How many current members there are.
    pub fn members(&self) -> usize {
        self.recipients.len() + self.blockers.len()
    }
}

/// What a post to a room needs beyond its member list, for a caller that holds the list as of
/// some members version: the few rows that can change without a membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomCheck {
    /// The conversation's members version now.
    pub members_version: i64,
    /// Whether the sender is a current member.
    pub is_member: bool,
    /// Whether an operator suspended the sender.
    pub sender_suspended: bool,
    /// Every user who blocks the sender (members or not).
    pub blockers: Vec<UserId>,
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

/// Persistence of conversations and messages.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// The direct conversation of two users, created if there is none. Returns its id.
    async fn direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        now: i64,
    ) -> Result<ConversationId, StoreError>;
    /// Creates a room owned by `owner` with `members`.
    async fn create_room(
        &self,
        id: ConversationId,
        name: &str,
        owner: UserId,
        members: &[UserId],
        now: i64,
    ) -> Result<(), StoreError>;
    /// A conversation.
    async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError>;
    /// A user's membership (current or past) in a conversation.
    async fn member(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<Option<MemberRecord>, StoreError>;
    /// The current members.
    async fn members(&self, conversation: ConversationId) -> Result<Vec<MemberRecord>, StoreError>;
    /// Adds (or re-adds) users to a room; `Conflict("room size")` if it would exceed `max`
    /// current members. Returns the users that were not already members.
    async fn add_members(
        &self,
        conversation: ConversationId,
        users: &[UserId],
        max: usize,
        now: i64,
    ) -> Result<Vec<UserId>, StoreError>;
    /// Ends a membership at the current seq. If the owner leaves, the longest-standing member
    /// becomes owner. False if the user was not a member.
    async fn remove_member(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool, StoreError>;
    /// A user's current conversations with unread counts, most recently active first.
    async fn conversations_of(&self, user: UserId) -> Result<Vec<ConversationSummary>, StoreError>;
    /// One of a user's current conversations, as [`Self::conversations_of`] lists it.
    async fn conversation_of(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<Option<ConversationSummary>, StoreError>;
    /// Whether two users are both current members of some room. (A direct conversation does not
    /// count: it outlives the connection it was opened on.)
    async fn share_room(&self, a: UserId, b: UserId) -> Result<bool, StoreError>;

    /// What `sender` sending to `conversation` involves; `None` if the conversation has no
    /// current members (or does not exist).
    async fn send_plan(
        &self,
        conversation: ConversationId,
        sender: UserId,
    ) -> Result<Option<SendPlan>, StoreError>;
    /// What a post to `conversation` needs beyond its member list; `None` if there is no such
    /// conversation.
    async fn room_check(
        &self,
        conversation: ConversationId,
        sender: UserId,
    ) -> Result<Option<RoomCheck>, StoreError>;
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

    /// Stores payloads for devices, each under the next seq of its device's inbox, except where
    /// that inbox is full ([`natter_proto::limits::INBOX_PENDING_MAX`] waiting, or
    /// [`natter_proto::limits::INBOX_FROM_ONE_DEVICE_MAX`] from this sender): per item, what was
    /// stored, or `None`.
    async fn push_inbox(
        &self,
        sender: UserId,
        sender_device: DeviceId,
        items: &[(DeviceId, &str)],
        now: i64,
    ) -> Result<Vec<Option<ToDeviceIn>>, StoreError>;
    /// A device's inbox items with `seq > after`, oldest first.
    async fn inbox(
        &self,
        device: DeviceId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ToDeviceIn>, StoreError>;
    /// Deletes a device's inbox items up to `seq`.
    async fn ack_inbox(&self, device: DeviceId, seq: i64) -> Result<(), StoreError>;
    /// The user a device belongs to.
    async fn device_owner(&self, device: DeviceId) -> Result<Option<UserId>, StoreError>;
}
