//! WebSocket frames (`GET /v1/ws`): JSON text frames, each an object with a `type`.
//! docs/protocol.md describes the protocol with examples.
//!
//! Message bodies (`ciphertext`) and to-device `payload`s are opaque strings: the server stores
//! and relays them and never interprets them.

use serde::{Deserialize, Serialize};

use crate::ids::ConversationId;
use crate::{DeviceId, UserId};

/// A frame from a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticates a connection opened without an `Authorization` header (browsers).
    Auth {
        /// The bearer token.
        token: String,
    },
    /// Sends a message to a conversation.
    Send(SendMessage),
    /// Everything up to `seq` in the conversation reached this device (cumulative).
    Delivered {
        /// The conversation.
        conversation_id: ConversationId,
        /// The highest seq received, with every seq before it.
        seq: i64,
    },
    /// Everything up to `seq` in the conversation was read on this device (cumulative).
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// The highest seq read.
        seq: i64,
    },
    /// Sends opaque payloads to specific devices (key shares).
    ToDevice {
        /// The payloads, one per target device.
        messages: Vec<ToDeviceOut>,
    },
    /// Removes to-device payloads up to `seq` from this device's inbox (cumulative).
    ToDeviceAck {
        /// The highest inbox seq handled.
        seq: i64,
    },
    /// Sends everything past this device's cursors again, then `synced`.
    Sync,
    /// Tells the conversation's other members this user is (not) typing.
    Typing {
        /// The conversation.
        conversation_id: ConversationId,
        /// Typing or stopped.
        typing: bool,
    },
    /// Heartbeat; the server answers `pong`.
    Ping {
        /// Echoed back in the pong.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ClientFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth { .. } => "auth",
            Self::Send(_) => "send",
            Self::Delivered { .. } => "delivered",
            Self::Read { .. } => "read",
            Self::ToDevice { .. } => "to_device",
            Self::ToDeviceAck { .. } => "to_device_ack",
            Self::Sync => "sync",
            Self::Typing { .. } => "typing",
            Self::Ping { .. } => "ping",
        }
    }
}

/// The body of a `send` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Chosen by the client, unique per device (a UUID is fine); a resend with the same id is
    /// acked again and stored once.
    pub client_msg_id: String,
    /// The encrypted message (opaque to the server).
    pub ciphertext: String,
    /// The client's clock when sending (ms), informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ts: Option<i64>,
}

/// One to-device payload, from the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDeviceOut {
    /// The target device's user.
    pub user_id: UserId,
    /// The target device.
    pub device_id: DeviceId,
    /// The payload (opaque to the server), such as an Olm-encrypted room key.
    pub payload: String,
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The connection is authenticated; sync follows.
    Ready {
        /// The user.
        user_id: UserId,
        /// This device.
        device_id: DeviceId,
        /// The server closes a connection that sends nothing for this long; send a `ping` at
        /// least every third of it.
        idle_timeout_secs: u64,
    },
    /// A message was stored ("sent").
    Ack(Ack),
    /// A message in one of this user's conversations.
    Message(Message),
    /// Sync reached the present: every stored message past this device's cursors was sent;
    /// what follows is live.
    Synced {
        /// How many messages the sync sent.
        messages: u64,
        /// How many to-device payloads it sent.
        to_device: u64,
    },
    /// A device's cursor moved in a conversation where this user has messages.
    Receipt(Receipt),
    /// Several cursor moves in one conversation, gathered while it was busy (at most one such
    /// frame per conversation every 250 ms); each is what a `receipt` frame would have said.
    Receipts {
        /// The latest move of each device, in no particular order.
        receipts: Vec<Receipt>,
    },
    /// An opaque payload from another device.
    ToDevice(ToDeviceIn),
    /// Someone is (not) typing.
    Typing {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who.
        user_id: UserId,
        /// Typing or stopped.
        typing: bool,
    },
    /// A user's device list or identity changed (a device added or removed, new keys, a new
    /// signature): a client that keeps device lists fetches this user's again before giving
    /// out keys. Sent to the user's own devices and to everyone who may see the list.
    DeviceListChanged {
        /// Whose.
        user_id: UserId,
    },
    /// The answer to `ping`.
    Pong {
        /// The ping's nonce.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// A frame was refused; the connection stays open (unless `code` says it closes).
    Error(ErrorFrame),
}

impl ServerFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "ready",
            Self::Ack(_) => "ack",
            Self::Message(_) => "message",
            Self::Synced { .. } => "synced",
            Self::Receipt(_) => "receipt",
            Self::Receipts { .. } => "receipts",
            Self::ToDevice(_) => "to_device",
            Self::Typing { .. } => "typing",
            Self::DeviceListChanged { .. } => "device_list_changed",
            Self::Pong { .. } => "pong",
            Self::Error(_) => "error",
        }
    }
}

/// `ack`: the message is stored with this seq.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The client's id for the message.
    pub client_msg_id: String,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message's place in the conversation.
    pub seq: i64,
    /// When the server stored it (ms).
    pub server_ts: i64,
}

/// `message`: a stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Strictly increasing per conversation; (conversation_id, seq) identifies the message.
    pub seq: i64,
    /// The sender.
    pub sender_id: UserId,
    /// The sending device.
    pub sender_device_id: DeviceId,
    /// The sender's id for the message.
    pub client_msg_id: String,
    /// When the server stored it (ms).
    pub server_ts: i64,
    /// The sender's clock (ms), informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ts: Option<i64>,
    /// The encrypted message.
    pub ciphertext: String,
}

/// `receipt`: a device's delivered and read cursors in a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The user whose device moved.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Everything up to here reached the device.
    pub delivered_seq: i64,
    /// Everything up to here was read on the device.
    pub read_seq: i64,
}

/// `to_device`: a payload in this device's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDeviceIn {
    /// The inbox seq; acknowledge with `to_device_ack`.
    pub seq: i64,
    /// The sending user.
    pub sender_id: UserId,
    /// The sending device.
    pub sender_device_id: DeviceId,
    /// The payload.
    pub payload: String,
}

/// `error`: why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// A stable code: `invalid_frame`, `too_large`, `not_member`, `blocked`, `rate_limited`,
    /// `unauthorized`, `store_unavailable`, `too_slow`, `idle_timeout`, ... (see [`crate::codes`]).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The `client_msg_id` of the refused `send`, if it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// When `rate_limited`: how long to wait before sending again (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}
