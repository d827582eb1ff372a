//! How a WebSocket fails or ends: the socket's own errors (per target) and the close.

#[cfg(not(target_arch = "wasm32"))]
use tokio_tungstenite::tungstenite;

/// Why the connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The close code, if the server sent one (4008: too slow, 4001: idle, 1012: restarting).
    pub code: Option<u16>,
    /// The reason it gave.
    pub reason: String,
}

impl Closed {
    /// A connection that ended without a close frame.
    pub(crate) fn abruptly() -> Self {
        Self {
            code: None,
            reason: "connection closed".into(),
        }
    }
}

/// What a failed WebSocket reports.
#[cfg(not(target_arch = "wasm32"))]
pub type SocketError = tungstenite::Error;

/// Whether the failure means the server could not be reached at all.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn is_unreachable(error: &SocketError) -> bool {
    matches!(error, tungstenite::Error::Io(_))
}

/// What a failed browser WebSocket reports: browsers say no more than that it failed.
#[cfg(target_arch = "wasm32")]
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SocketError {
    pub(super) reason: String,
    /// It failed before it opened: the server could not be reached.
    pub(super) before_open: bool,
}

/// Whether the failure means the server could not be reached at all.
#[cfg(target_arch = "wasm32")]
pub(crate) fn is_unreachable(error: &SocketError) -> bool {
    error.before_open
}
