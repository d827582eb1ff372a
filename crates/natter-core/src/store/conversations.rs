//! [`ConversationStore`]: conversations, their members, and what a send to one needs to know.

use async_trait::async_trait;
use natter_proto::conversations::{ConversationKind, ConversationSummary, Role};
use natter_proto::{ConversationId, UserId};

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

/// Persistence of conversations and their members.
#[async_trait]
pub trait ConversationStore: Send + Sync {
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
}
