//! One WebSocket connection: authenticate, register, sync, then relay live events and handle
//! the client's frames until it leaves, idles out, falls behind or the server shuts down.
//!
//! # No gap, no duplicate
//!
//! The connection registers for live events *before* it reads its cursors, so every message is
//! either in the store when sync reads it or arrives live afterwards (or both). Per
//! conversation it keeps a watermark: the highest seq it has sent. A live message at or below
//! the watermark is dropped; one past a gap first pulls the gap from the store. Sync is the
//! same gap-filling from the delivered cursor. So each connection sends every message once,
//! in seq order, whatever the interleaving of sync and live traffic.

mod delivery;
mod frames;
mod hold;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use natter_proto::ConversationId;
use natter_proto::close::CloseCode;
use natter_proto::codes;
use natter_proto::ws::{ClientFrame, ErrorFrame, ServerFrame};
use tracing::Instrument;

use self::hold::SendHold;
use super::{error_frame, read_text_frame};
use crate::auth::{authenticate, renew};
use crate::error::ApiError;
use crate::state::AppState;
use natter_core::close::SIGNED_OUT;
use natter_core::credentials::{Auth, renewal_after, renewal_due_in};
use natter_core::fanout::{Frame, Registration, encode};

/// How long a connection without an `Authorization` header has to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a connection tries again to renew its token after the store failed to.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// How long one frame may take to go out before the connection counts as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection is gone (or must go); stop the session.
struct Closed;

/// What a step of the session returns: `Ok` to go on, [`Closed`] to end the connection.
type Flow = Result<(), Closed>;

/// Where a conversation stands on this connection.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    /// The highest seq sent on this connection.
    sent: i64,
    /// The device's delivered cursor as stored (as last read or moved by this connection).
    delivered: i64,
    /// The device's read cursor as stored (as last read or moved by this connection).
    read: i64,
}

/// A connection's whole life, as one boxed future.
type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a connection to its end.
///
/// An idle connection's memory is mostly this future, so it is built to hold nothing twice:
/// an `async` block keeps what it captures for its whole life, beside whatever that was moved
/// into, so the long-lived part is [`Session::live`], which captures only the session. Without
/// an `Authorization` header, the wait for the `auth` frame is a box of its own, freed when it
/// hands the socket on.
pub fn run(mut socket: WebSocket, auth: Option<Auth>, state: AppState) -> Connection {
    match auth {
        Some(auth) => Box::pin(start(socket, auth, state)),
        None => {
            let authenticating = Box::pin(async move {
                let auth = first_frame_auth(&mut socket, &state).await?;
                Some((socket, auth, state))
            });
            Box::pin(async move {
                if let Some((socket, auth, state)) = authenticating.await {
                    start(socket, auth, state).await;
                }
            })
        }
    }
}

/// Registers an authenticated connection and returns its session's future, in its own span.
fn start(socket: WebSocket, auth: Auth, state: AppState) -> impl Future<Output = ()> {
    let session_id = uuid::Uuid::new_v4();
    let span = tracing::info_span!("ws", session.id = %session_id, user.id = %auth.user_id, device.id = %auth.device_id);
    // Register before reading cursors: see the module docs.
    let registration =
        state
            .registry
            .register(auth.user_id, auth.device_id, state.gateway.outbound_queue);
    let session = Session {
        socket,
        state,
        auth,
        registration,
        conversations: HashMap::new(),
        inbox_sent: 0,
        hold: SendHold::default(),
    };
    session.live().instrument(span)
}

/// Waits for an `auth` frame; on anything else, says why and closes.
async fn first_frame_auth(socket: &mut WebSocket, state: &AppState) -> Option<Auth> {
    let refused = |message: &str| error_frame(codes::UNAUTHORIZED, message.to_owned());
    let outcome = match tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) => match read_text_frame(&text) {
            Ok(ClientFrame::Auth { token }) => authenticate(state, &token)
                .await
                .map_err(|e| refused(e.detail())),
            _ => Err(refused(
                "the first frame must be {\"type\":\"auth\",\"token\":...} (or send an Authorization header)",
            )),
        },
        Ok(Some(Err(error))) => {
            if let Some((code, reason)) = close_for(&error) {
                let _ = socket.send(close_frame(code, reason)).await;
            }
            return None;
        }
        Ok(_) => return None,
        Err(_) => Err(refused("no auth frame within 10 seconds")),
    };
    match outcome {
        Ok(auth) => Some(auth),
        Err(frame) => {
            let _ = socket.send(WsMessage::Text(text(&encode(&frame)))).await;
            let _ = socket
                .send(close_frame(CloseCode::Policy, "unauthorized"))
                .await;
            None
        }
    }
}

/// When to close one connection of a draining node: a random point in the drain window, so
/// its clients do not all reconnect to the other nodes at the same moment.
fn drain_delay(window: Duration) -> Duration {
    window.mul_f64(rand::random::<f64>())
}

/// The close a failed receive calls for when it failed on a bad frame rather than on the
/// connection: a frame over the hard size limit (1009), a text frame that is not UTF-8 (1007,
/// as RFC 6455 asks). `None` for a broken connection, which gets no close frame.
fn close_for(error: &axum::Error) -> Option<(CloseCode, &'static str)> {
    let inner: &(dyn std::error::Error + 'static) = error;
    std::iter::successors(Some(inner), |e| e.source()).find_map(|e| {
        match e.downcast_ref::<tungstenite::Error>()? {
            tungstenite::Error::Capacity(_) => Some((CloseCode::TooBig, "frame too large")),
            tungstenite::Error::Utf8(_) => {
                Some((CloseCode::InvalidData, "text frame is not UTF-8"))
            }
            _ => None,
        }
    })
}

/// A frame as the socket's text: checked as UTF-8 again (a [`Frame`] always is; 15-40 ns for
/// a 200-1,000-byte frame, see docs/benchmarks.md), with no copy.
fn text(frame: &Frame) -> Utf8Bytes {
    Utf8Bytes::try_from(frame.bytes().clone()).expect("a Frame holds UTF-8 text")
}

/// A close frame with a code and a static reason.
fn close_frame(code: CloseCode, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// One authenticated connection: its socket, its registration for live events, its
/// watermarks, and what it holds behind a refused send.
struct Session {
    /// The client's WebSocket.
    socket: WebSocket,
    /// The node's shared state: store, services, fan-out registry and gateway settings.
    state: AppState,
    /// The authenticated user and device.
    auth: Auth,
    /// This connection's entry in the fan-out registry, the source of its live events.
    registration: Registration,
    /// Per conversation the device is in, its watermark and cursors; filled by sync and by
    /// live messages from conversations joined since.
    conversations: HashMap<ConversationId, Cursor>,
    /// The highest to-device seq sent on this connection.
    inbox_sent: i64,
    /// How long sends wait after one was refused for a while (busy node, rate, store).
    hold: SendHold,
}

impl Session {
    /// Serves the connection until it ends, and unregisters it.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` would copy `self` into its body and keep both copies"
    )]
    /// Serves the connection; once it ends, leaves the registry (dropping the session) and
    /// counts and logs why it ended.
    fn live(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let connections = self.state.registry.connections();
            metrics::counter!("natter_connects_total").increment(1);
            metrics::gauge!("natter_connections").set(connections as f64);
            tracing::info!(connections, "connected");
            let reason = self.serve().await;
            drop(self);
            metrics::counter!("natter_disconnects_total", "reason" => reason).increment(1);
            tracing::info!(reason, "disconnected");
        }
    }

    /// The connection's main loop; returns why it ended.
    async fn serve(&mut self) -> &'static str {
        let ready = ServerFrame::Ready {
            user_id: self.auth.user_id,
            device_id: self.auth.device_id,
            idle_timeout_secs: self.state.gateway.idle_timeout.as_secs(),
        };
        // A removal between authenticating and registering told no connection: look once.
        let device = self.auth.device_id;
        if let Ok(None) = Box::pin(self.state.store.device_owner(device)).await {
            Box::pin(self.close(CloseCode::Policy, SIGNED_OUT)).await;
            return "device removed";
        }
        // Boxed, like the handlers below: the future of a long-lived connection keeps only the
        // state of its idle wait, which is most of an idle connection's memory.
        let greeted = Box::pin(self.send(&ready)).await;
        drop(ready);
        if greeted.is_err() || Box::pin(self.sync()).await.is_err() {
            return "closed during sync";
        }
        let idle = self.state.gateway.idle_timeout;
        let mut last_received = tokio::time::Instant::now();
        // An open connection is the device in use: its token is extended as a request's would
        // be, and the extension finds a device removed meanwhile (if this node missed the close).
        let renewal = renewal_after(self.state.token_ttl);
        let mut renew_at =
            last_received + renewal_due_in(self.auth.expires_at, self.state.token_ttl);
        // One timer for the three things a connection waits for: idling out, renewing its
        // token, and its moment to close when the node drains. It is re-armed when it fires,
        // not moved on every frame received.
        let timer = tokio::time::sleep_until((last_received + idle).min(renew_at));
        let mut shutdown = self.state.shutdown.clone();
        let shutdown_started = shutdown.changed();
        // Set when the server starts draining: the connection keeps working until then.
        let mut close_at: Option<tokio::time::Instant> = None;
        let kick = std::sync::Arc::clone(&self.registration.kick);
        let kicked = kick.notified();
        tokio::pin!(timer, shutdown_started, kicked);
        loop {
            let flow = tokio::select! {
                biased;
                () = &mut kicked => {
                    Box::pin(self.close(CloseCode::TooSlow, "too slow; reconnect and sync")).await;
                    return "too slow";
                }
                _ = &mut shutdown_started, if close_at.is_none() => {
                    let at = tokio::time::Instant::now() + drain_delay(self.state.gateway.drain);
                    close_at = Some(at);
                    if at < timer.deadline() {
                        timer.as_mut().reset(at);
                    }
                    Ok(())
                }
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if close_at.is_some_and(|at| at <= now) {
                        Box::pin(self.close(CloseCode::Restart, "server shutting down; reconnect")).await;
                        return "server shutdown";
                    }
                    if renew_at <= now {
                        match Box::pin(renew(&self.state, self.auth.device_id)).await {
                            Ok(Some(expires_at)) => {
                                self.auth.expires_at = expires_at;
                                renew_at = now + renewal;
                            }
                            Ok(None) => {
                                Box::pin(self.close(CloseCode::Policy, SIGNED_OUT)).await;
                                return "device removed";
                            }
                            // The store is down: the token stands as it is; try again soon.
                            Err(_) => renew_at = now + RENEW_RETRY.min(renewal),
                        }
                    }
                    let idle_at = last_received + idle;
                    if idle_at <= now {
                        let frame = error_frame(codes::IDLE_TIMEOUT, format!("nothing received for {} s", idle.as_secs()));
                        let _ = Box::pin(self.send(&frame)).await;
                        Box::pin(self.close(CloseCode::Idle, "idle")).await;
                        return "idle";
                    }
                    let next = idle_at.min(renew_at);
                    timer.as_mut().reset(close_at.map_or(next, |at| at.min(next)));
                    continue;
                }
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(message)) => {
                        last_received = tokio::time::Instant::now();
                        Box::pin(self.on_message(message)).await
                    }
                    Some(Err(error)) => match close_for(&error) {
                        Some((code, reason)) => {
                            // Best effort: the unread rest of the frame may reset the connection first.
                            Box::pin(self.close(code, reason)).await;
                            return reason;
                        }
                        None => return "connection error",
                    },
                    None => return "client closed",
                },
                Some(event) = self.registration.events.recv() => Box::pin(self.on_event(&event)).await,
            };
            if flow.is_err() {
                return "closed";
            }
        }
    }

    /// Sends a frame, serialized here.
    async fn send(&mut self, frame: &ServerFrame) -> Flow {
        self.send_raw(frame.kind(), encode(frame)).await
    }

    /// Sends an already serialized frame of type `kind`, counting it; a send that fails or
    /// takes longer than [`SEND_TIMEOUT`] ends the connection.
    async fn send_raw(&mut self, kind: &'static str, frame: Frame) -> Flow {
        metrics::counter!("natter_frames_out_total", "type" => kind).increment(1);
        // A peer that does not read for this long is as good as gone.
        match tokio::time::timeout(
            SEND_TIMEOUT,
            self.socket.send(WsMessage::Text(text(&frame))),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Closed),
        }
    }

    /// Sends a close frame, waiting a second at most (the peer may be the slow one).
    async fn close(&mut self, code: CloseCode, reason: &'static str) {
        // The peer may be the slow one: don't wait on it for long.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(close_frame(code, reason)),
        )
        .await;
    }

    /// Reports a failed frame; the connection stays open.
    async fn refuse(&mut self, error: impl Into<ApiError>, client_msg_id: Option<String>) -> Flow {
        let error = error.into();
        error.log_internal();
        let frame = ErrorFrame {
            code: error.code().to_owned(),
            message: error.detail().to_owned(),
            client_msg_id,
            retry_after_ms: error.retry_after_ms(),
        };
        self.send(&ServerFrame::Error(frame)).await
    }
}
