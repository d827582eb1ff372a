//! The WebSocket gateway (`GET /v1/ws`): authenticates a device, then runs one `session`
//! task per connection that syncs, relays live traffic and handles the client's frames.
//!
//! The frames' types are natter-proto's (`ws`), what they do natter-core's messenger and store;
//! live events reach a connection through natter-core's fan-out registry, and from other nodes
//! through natter-cluster's bus. The protocol is described in docs/protocol.md.

mod session;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use natter_proto::codes;
use natter_proto::limits::WS_MESSAGE_MAX;
use natter_proto::ws::{ClientFrame, ErrorFrame, ServerFrame};

use crate::auth::{authenticate, bearer_token};
use crate::error::ApiError;
use crate::state::AppState;
use natter_core::credentials::Auth;
use natter_core::ratelimit::Kind;

/// Frames larger than this close the connection (protecting memory); frames between
/// [`WS_MESSAGE_MAX`] and this get a `too_large` error frame and the connection stays.
const WS_HARD_LIMIT: usize = 4 * WS_MESSAGE_MAX;

/// Reads a text frame from a client: the frame, or the `error` frame's body that refuses it (over
/// [`WS_MESSAGE_MAX`] bytes: `too_large`; not a frame: `invalid_frame`). Either way the
/// connection stays open.
///
/// # Errors
/// The refusal to send back.
pub fn read_text_frame(text: &str) -> Result<ClientFrame, ErrorFrame> {
    if text.len() > WS_MESSAGE_MAX {
        let detail = format!(
            "frames are at most {WS_MESSAGE_MAX} bytes; this one has {}",
            text.len()
        );
        return Err(refusal(codes::TOO_LARGE, detail));
    }
    serde_json::from_str::<ClientFrame>(text)
        .map_err(|e| refusal(codes::INVALID_FRAME, format!("not a valid frame: {e}")))
}

/// An `error` frame that is not about a `send`.
fn error_frame(code: &str, message: String) -> ServerFrame {
    ServerFrame::Error(refusal(code, message))
}

/// An `error` frame with this code and message.
fn refusal(code: &str, message: String) -> ErrorFrame {
    ErrorFrame {
        code: code.to_owned(),
        message,
        client_msg_id: None,
        retry_after_ms: None,
    }
}

/// `GET /v1/ws`: upgrades to a WebSocket. With an `Authorization: Bearer` header the token is
/// checked before the upgrade (a bad one gets 401 and no connection); without one, the first
/// frame must be `auth`.
///
/// # Errors
/// 429 `rate_limited` past the client address's connect rate; 401 for a malformed
/// `Authorization` header or a token that is unknown or expired, 403 `suspended` for a
/// suspended account, 503 `store_unavailable` when the store is down.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state
        .limits
        .check(Kind::AddressConnects, &peer.ip().to_string(), 1.0)
        .await?;
    let auth: Option<Auth> = match bearer_token(&headers)? {
        Some(token) => Some(authenticate(&state, token).await?),
        None => None,
    };
    // Small buffers: an idle connection costs a few KiB instead of tungstenite's 128 KiB default.
    // Frames are ~0.5 KiB; a larger one grows the read buffer for itself.
    Ok(upgrade
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(WS_HARD_LIMIT)
        .max_frame_size(WS_HARD_LIMIT)
        .on_upgrade(move |socket| session::run(socket, auth, state)))
}
