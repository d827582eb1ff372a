//! Conversations (direct and rooms), members, history and receipts over REST.

use serde::{Deserialize, Serialize};

use crate::ws::Message;
use crate::{ConversationId, UserId};

/// Direct or room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Between two connected users.
    Direct,
    /// A named room of 2 to 1,000 members.
    Room,
}

/// A member's role in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the room (or inherited it): may add and remove members.
    Owner,
    /// May send, read and leave.
    Member,
}

/// `POST /v1/conversations/direct`: the direct conversation with a connected user (created
/// on first use, the same one afterwards).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateDirectRequest {
    /// The other user; must be a connection.
    pub user_id: UserId,
}

/// `POST /v1/conversations/rooms`: a new room owned by the caller.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRoomRequest {
    /// 1 to 100 characters (leading and trailing spaces are trimmed), no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: String,
    /// The first members besides the caller (1 to 999); each must be the caller's connection.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 999))]
    pub members: Vec<UserId>,
}

/// `POST /v1/conversations/{id}/members`: add members (owner only).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMembersRequest {
    /// The users to add (1 to 1,000 at a time); each must be the caller's connection.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub user_ids: Vec<UserId>,
}

/// A member of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
}

/// One of my conversations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationSummary {
    /// The conversation.
    pub id: ConversationId,
    /// Direct or room.
    pub kind: ConversationKind,
    /// The room's name (none for direct conversations).
    pub name: Option<String>,
    /// The newest message's seq (0 when empty).
    pub last_seq: i64,
    /// The furthest any of my devices has read.
    pub read_seq: i64,
    /// Messages from others past `read_seq` (never those of users I block), counted up to
    /// [`crate::limits::UNREAD_COUNTED_MAX`].
    pub unread: i64,
}

/// `GET /v1/conversations`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationsResponse {
    /// My conversations, most recently active first.
    pub conversations: Vec<ConversationSummary>,
}

/// `GET /v1/conversations/{id}`: a conversation and its members.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationDetails {
    /// The summary.
    #[serde(flatten)]
    pub summary: ConversationSummary,
    /// The current members.
    pub members: Vec<Member>,
}

/// A page of messages, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessagesResponse {
    /// The messages.
    pub messages: Vec<Message>,
}

/// `GET /v1/messages/undelivered`: a page of what a sync would send this device.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UndeliveredResponse {
    /// The messages, by conversation and oldest first in each.
    pub messages: Vec<Message>,
    /// Pass as `after` for the next page; absent when there are no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/conversations/{id}/messages/{seq}/receipts`: how far one message got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageReceipts {
    /// The message.
    pub seq: i64,
    /// Its sender.
    pub sender_id: UserId,
    /// Stored by the server: always true for a listed message.
    pub sent: bool,
    /// How many devices (other than the sending one) have received it.
    pub delivered_devices: u32,
    /// The users (other than the sender) with at least one device that received it.
    pub delivered_users: Vec<UserId>,
    /// The users (other than the sender) who read it on some device.
    pub read_users: Vec<UserId>,
}
