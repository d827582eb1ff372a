//! The real-time connection (`GET /v1/ws`): typed frames over a WebSocket, and [`Dedup`] for
//! showing each message once.

use std::collections::HashMap;

use futures_util::{SinkExt, StreamExt};
use natter_proto::ConversationId;
use natter_proto::ws::{ClientFrame, Message, SendMessage, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ClientError;

/// An open WebSocket to the server, authenticated as one device.
pub struct Connection {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Why the connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The close code, if the server sent one (4008: too slow, 4001: idle, 1012: restarting).
    pub code: Option<u16>,
    /// The reason it gave.
    pub reason: String,
}

impl Connection {
    /// Opens a connection to `ws_url` with the bearer token in the `Authorization` header;
    /// [`ClientError::Timeout`] if it is not open within [`crate::CONNECT_TIMEOUT`].
    pub(crate) async fn open(ws_url: &str, token: &str) -> Result<Self, ClientError> {
        let mut request = ws_url
            .into_client_request()
            .map_err(ClientError::WebSocket)?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::InvalidUrl("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", bearer);
        // Small buffers, as on the server: many idle connections stay cheap.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        let opening = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _) = tokio::time::timeout(crate::CONNECT_TIMEOUT, opening)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| match e {
                tungstenite::Error::Http(response) => {
                    ClientError::UnexpectedStatus(response.status().as_u16())
                }
                other => ClientError::WebSocket(other),
            })?;
        Ok(Self { socket })
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
        self.socket
            .send(WsMessage::text(text))
            .await
            .map_err(ClientError::WebSocket)
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
        loop {
            let message = match self.socket.next().await {
                Some(Ok(message)) => message,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                ))
                | None => {
                    return Err(ClientError::Closed(Closed {
                        code: None,
                        reason: "connection closed".into(),
                    }));
                }
                Some(Err(e)) => return Err(ClientError::WebSocket(e)),
            };
            match message {
                WsMessage::Text(text) => {
                    return serde_json::from_str(&text)
                        .map_err(|e| ClientError::Protocol(e.to_string()));
                }
                WsMessage::Close(frame) => {
                    return Err(ClientError::Closed(Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    }));
                }
                WsMessage::Binary(_) => {
                    return Err(ClientError::Protocol("unexpected binary frame".into()));
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
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
