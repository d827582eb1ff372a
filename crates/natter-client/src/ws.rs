//! The real-time connection (`GET /v1/ws`): typed frames over a WebSocket, and [`Dedup`] for
//! showing each message once.

use std::collections::HashMap;

use natter_proto::ConversationId;
use natter_proto::ws::{ClientFrame, Message, SendMessage, ServerFrame};

use crate::ClientError;

/// The socket under a [`Connection`]: tokio-tungstenite on native targets, the browser's
/// `WebSocket` in wasm.
#[cfg_attr(not(target_arch = "wasm32"), path = "ws/native.rs")]
#[cfg_attr(target_arch = "wasm32", path = "ws/browser.rs")]
mod socket;

mod failure;

pub(crate) use failure::is_unreachable;
pub use failure::{Closed, SocketError};

/// An open WebSocket to the server, authenticated as one device.
pub struct Connection {
    socket: socket::Socket,
}

impl Connection {
    /// Opens a connection to `ws_url` authenticated by `token`;
    /// [`ClientError::Timeout`] if it is not open within [`crate::CONNECT_TIMEOUT`].
    pub(crate) async fn open(ws_url: &str, token: &str) -> Result<Self, ClientError> {
        crate::clock::timeout(crate::CONNECT_TIMEOUT, socket::Socket::open(ws_url, token))
            .await
            .ok_or(ClientError::Timeout)?
            .map(|socket| Self { socket })
    }

    /// Sends a frame.
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let text = serde_json::to_string(frame).expect("client frames always serialize");
        self.send_text(text).await
    }

    /// Sends raw text (for testing what the server does with malformed frames).
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.socket.send(text).await
    }

    /// Sends a message to a conversation; the server answers with `ack` (or `error`).
    ///
    /// # Errors
    /// The connection is gone.
    pub async fn send_message(
        &mut self,
        conversation_id: ConversationId,
        client_msg_id: &str,
        ciphertext: &str,
    ) -> Result<(), ClientError> {
        self.send(&ClientFrame::Send(SendMessage {
            conversation_id,
            client_msg_id: client_msg_id.to_owned(),
            ciphertext: ciphertext.to_owned(),
            client_ts: None,
        }))
        .await
    }

    /// The next frame from the server; `Err(Closed)` once the connection has ended.
    ///
    /// # Errors
    /// The connection ended (with the server's close code, if any), or the server sent a
    /// frame this client does not understand.
    pub async fn next(&mut self) -> Result<ServerFrame, ClientError> {
        let text = self.socket.next_text().await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.socket.close().await;
    }
}

/// Drops messages already shown, by (conversation, seq).
///
/// The server sends each connection's messages in seq order per conversation, and a
/// reconnecting device resumes from its delivered cursor, so "at or below the highest seq
/// seen" is exactly "already seen" (seqs may have gaps: messages hidden from this user).
#[derive(Debug, Default)]
pub struct Dedup {
    highest: HashMap<ConversationId, i64>,
}

impl Dedup {
    /// True the first time a message is offered; false for every repeat.
    pub fn accept(&mut self, message: &Message) -> bool {
        let highest = self.highest.entry(message.conversation_id).or_insert(0);
        if message.seq <= *highest {
            return false;
        }
        *highest = message.seq;
        true
    }

    /// The highest seq seen in a conversation (0 for none).
    pub fn highest(&self, conversation: ConversationId) -> i64 {
        self.highest.get(&conversation).copied().unwrap_or(0)
    }
}
