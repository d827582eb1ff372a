//! The socket on native targets: tokio-tungstenite, with the token in the `Authorization`
//! header of the upgrade request.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use natter_proto::problem::Problem;

use super::Closed;
use crate::ClientError;

/// An open WebSocket.
pub(super) struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Socket {
    /// Connects to `ws_url` as the holder of `token`.
    pub(super) async fn open(ws_url: &str, token: &str) -> Result<Self, ClientError> {
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
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| match e {
                // Refused before the upgrade: natterd explains why in a problem document.
                tungstenite::Error::Http(response) => match response
                    .body()
                    .as_deref()
                    .and_then(|body| serde_json::from_slice::<Problem>(body).ok())
                {
                    Some(problem) => ClientError::Api(Box::new(problem)),
                    None => ClientError::UnexpectedStatus(response.status().as_u16()),
                },
                other => ClientError::WebSocket(other),
            })?;
        Ok(Self(socket))
    }

    /// Sends a text frame.
    pub(super) async fn send(&mut self, text: String) -> Result<(), ClientError> {
        self.0
            .send(WsMessage::text(text))
            .await
            .map_err(ClientError::WebSocket)
    }

    /// The next text frame; [`ClientError::Closed`] once the connection has ended.
    pub(super) async fn next_text(&mut self) -> Result<String, ClientError> {
        loop {
            let message = match self.0.next().await {
                Some(Ok(message)) => message,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                ))
                | None => return Err(ClientError::Closed(Closed::abruptly())),
                Some(Err(e)) => return Err(ClientError::WebSocket(e)),
            };
            match message {
                WsMessage::Text(text) => return Ok(text.to_string()),
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
    pub(super) async fn close(mut self) {
        let _ = self.0.close(None).await;
    }
}
