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

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use natter_proto::ConversationId;
use natter_proto::close::CloseCode;
use natter_proto::codes;
use natter_proto::limits::PAGE_MAX;
use natter_proto::ws::{ClientFrame, ErrorFrame, ServerFrame};
use tracing::Instrument;

use super::{error_frame, read_text_frame};
use crate::auth::{authenticate, renew};
use crate::close::SIGNED_OUT;
use crate::credentials::{Auth, renewal_after, renewal_due_in};
use crate::error::{ApiError, ServiceError};
use crate::fanout::{Outbound, Registration, encode};
use crate::observe::seconds;
use crate::state::AppState;

/// How long a connection without an `Authorization` header has to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a connection tries again to renew its token after the store failed to.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// How long one frame may take to go out before the connection counts as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection is gone (or must go); stop the session.
struct Closed;

type Flow = Result<(), Closed>;

/// Where a conversation stands on this connection.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    /// The highest seq sent on this connection.
    sent: i64,
    /// The device's cursors as stored.
    delivered: i64,
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
            let _ = socket.send(WsMessage::Text(encode(&frame))).await;
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

fn close_frame(code: CloseCode, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(reason),
    }))
}

struct Session {
    socket: WebSocket,
    state: AppState,
    auth: Auth,
    registration: Registration,
    conversations: HashMap<ConversationId, Cursor>,
    /// The highest to-device seq sent on this connection.
    inbox_sent: i64,
    /// How long sends wait after one was refused for a while (busy node, rate, store).
    hold: SendHold,
}

/// The longest wait after a refused send that holds the connection's later sends too. A
/// longer one (a byte allowance spent on big messages can take an hour to refill) lets later
/// sends that fit through, as the allowance decides: order is kept for short waits, and the
/// connection is not stopped for long ones.
const HOLD_AT_MOST: Duration = Duration::from_secs(5);

/// After a send is refused for a while (the node is busy, the sender's rate, the store is
/// unavailable), the connection's later sends wait as long (up to [`HOLD_AT_MOST`]): the
/// client resends in its order, so a later message cannot take a place freed meanwhile and be
/// stored before the refused one. For a busy node the wait doubles with each such refusal in a
/// row (up to 16 times the node's base wait), with up to half again at random, so that clients
/// of an overloaded node back off and do not all come back at once; an accepted send resets
/// it.
#[derive(Debug, Default)]
struct SendHold {
    until: Option<tokio::time::Instant>,
    refusals_in_a_row: u32,
    /// What the sends held behind the hold count under in `natter_rate_limited_total`: the
    /// `kind` of the refusal that set it (a limit's name, `node_sends`, or the error code).
    cause: &'static str,
}

impl SendHold {
    /// The wait left, while sends are held. (Waits are told rounded up to whole milliseconds, so
    /// a resend after the told wait never arrives before the hold ends.)
    fn held(&self, now: tokio::time::Instant) -> Option<Duration> {
        self.until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
    }

    /// The wait for a send refused because the node is busy, from the node's `base` wait.
    fn busy(&mut self, base: Duration) -> Duration {
        let doublings = self.refusals_in_a_row.min(4);
        self.refusals_in_a_row = self.refusals_in_a_row.saturating_add(1);
        (base * (1 << doublings)).mul_f64(1.0 + rand::random::<f64>() / 2.0)
    }

    /// Holds later sends for the `wait` a refused send was told, if it is at most
    /// [`HOLD_AT_MOST`] (or the send was refused because the node is busy, whose waits grow past
    /// it). Returns whether it holds.
    fn hold(&mut self, wait: Duration, busy: bool, now: tokio::time::Instant) -> bool {
        let holds = busy || wait <= HOLD_AT_MOST;
        if holds {
            self.until = Some(self.until.map_or(now + wait, |until| until.max(now + wait)));
        }
        holds
    }

    /// What a refused send is told (a busy node's wait grown, see [`Self::busy`]); any wait it
    /// tells holds later sends, unless the send was itself held behind an earlier refusal,
    /// whose hold stands as it is.
    ///
    /// A send held behind the hold is counted in `natter_rate_limited_total` under the cause of
    /// the hold (the refusal that set it was counted where it was refused), so that every send
    /// refused with `rate_limited` is counted once.
    fn refused(&mut self, error: ServiceError, now: tokio::time::Instant) -> ApiError {
        let busy = matches!(error, ServiceError::Busy { .. });
        let held = matches!(error, ServiceError::HeldBehind { .. });
        let limit = match &error {
            ServiceError::RateLimited { kind, .. } => Some(*kind),
            ServiceError::Busy { .. } => Some(crate::messages::NODE_SENDS),
            _ => None,
        };
        let error = ApiError::from(match error {
            ServiceError::Busy { retry_after: base } => ServiceError::Busy {
                retry_after: self.busy(base),
            },
            error => error,
        });
        if held {
            metrics::counter!("natter_rate_limited_total", "kind" => self.cause).increment(1);
        } else if let Some(wait) = error.retry_after()
            && self.hold(wait, busy, now)
        {
            self.cause = limit.unwrap_or(error.code());
        }
        error
    }

    /// A send went through: the next refusal starts from the base wait again.
    fn accepted(&mut self) {
        self.refusals_in_a_row = 0;
    }
}

impl Session {
    /// Serves the connection until it ends, and unregisters it.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` would copy `self` into its body and keep both copies"
    )]
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

    async fn send(&mut self, frame: &ServerFrame) -> Flow {
        self.send_raw(frame.kind(), encode(frame)).await
    }

    async fn send_raw(&mut self, kind: &'static str, frame: Utf8Bytes) -> Flow {
        metrics::counter!("natter_frames_out_total", "type" => kind).increment(1);
        // A peer that does not read for this long is as good as gone.
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(WsMessage::Text(frame))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Closed),
        }
    }

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

    /// Where this device's cursors stand in each of its conversations; a store failure is
    /// told to the client and closes the connection (it resyncs).
    async fn cursor_starts(&mut self) -> Result<Vec<crate::store::CursorStart>, Closed> {
        match self
            .state
            .store
            .cursor_starts(self.auth.device_id, self.auth.user_id)
            .await
        {
            Ok(starts) => Ok(starts),
            Err(e) => self.refuse(e, None).await.and(Err(Closed)),
        }
    }

    /// Sends everything past this device's cursors, then `synced`.
    async fn sync(&mut self) -> Flow {
        let started = Instant::now();
        let starts = self.cursor_starts().await?;
        let mut sent = 0u64;
        for start in &starts {
            self.conversations.insert(
                start.conversation_id,
                Cursor {
                    sent: start.delivered_seq,
                    delivered: start.delivered_seq,
                    read: start.read_seq,
                },
            );
        }
        for start in starts {
            sent += self.fill(start.conversation_id, start.last_seq).await?;
        }
        self.inbox_sent = 0;
        let to_device = self.fill_inbox(i64::MAX).await?;
        metrics::histogram!("natter_sync_messages").record(sent as f64);
        metrics::histogram!("natter_sync_seconds").record(seconds(started.elapsed()));
        tracing::debug!(
            messages = sent,
            to_device,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "synced"
        );
        self.send(&ServerFrame::Synced {
            messages: sent,
            to_device,
        })
        .await
    }

    /// Sends what the store holds past this connection's watermarks (messages in every
    /// conversation, and to-device items), after the cluster bus may have lost events; nothing
    /// already sent goes again. Unlike [`Self::sync`], it sends no `synced`.
    async fn catch_up(&mut self) -> Flow {
        let starts = self.cursor_starts().await?;
        let mut sent = 0;
        for start in starts {
            self.conversations
                .entry(start.conversation_id)
                .or_insert(Cursor {
                    sent: start.delivered_seq,
                    delivered: start.delivered_seq,
                    read: start.read_seq,
                });
            sent += self.fill(start.conversation_id, start.last_seq).await?;
        }
        let to_device = self.fill_inbox(i64::MAX).await?;
        metrics::counter!("natter_catch_ups_total").increment(1);
        tracing::debug!(messages = sent, to_device, "caught up after a bus gap");
        Ok(())
    }

    /// Sends the messages after the conversation's watermark up to `up_to` from the store, a
    /// page at a time. Returns how many it sent.
    async fn fill(&mut self, conversation: ConversationId, up_to: i64) -> Result<u64, Closed> {
        let mut count = 0;
        loop {
            let after = self.conversations.get(&conversation).map_or(0, |c| c.sent);
            if after >= up_to {
                return Ok(count);
            }
            let page = self
                .state
                .store
                .messages_after(conversation, self.auth.user_id, after, up_to, PAGE_MAX)
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    // Without the gap the connection cannot go on in order: the client resyncs.
                    self.refuse(e, None).await?;
                    return Err(Closed);
                }
            };
            let full = page.len() == PAGE_MAX;
            let mut last = after;
            for message in page {
                last = message.seq;
                // A device's own messages are not sent back: its ack was its copy.
                if message.sender_device_id != self.auth.device_id {
                    self.send(&ServerFrame::Message(message)).await?;
                    metrics::counter!("natter_deliveries_total", "path" => "sync").increment(1);
                    count += 1;
                }
            }
            let reached = if full { last } else { up_to };
            self.conversations.entry(conversation).or_default().sent = reached;
            // Live events wait in the connection's queue meanwhile; if a long backlog lets it
            // fill, the connection is closed as too slow and resumes from its cursors.
            if !full {
                return Ok(count);
            }
        }
    }

    /// Sends to-device items past the inbox watermark up to `up_to`. Returns how many.
    async fn fill_inbox(&mut self, up_to: i64) -> Result<u64, Closed> {
        let mut count = 0;
        loop {
            let page = match self
                .state
                .store
                .inbox(self.auth.device_id, self.inbox_sent, PAGE_MAX)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    self.refuse(e, None).await?;
                    return Err(Closed);
                }
            };
            let full = page.len() == PAGE_MAX;
            for item in page.into_iter().take_while(|item| item.seq <= up_to) {
                self.inbox_sent = item.seq;
                self.send(&ServerFrame::ToDevice(item)).await?;
                count += 1;
            }
            if !full || self.inbox_sent >= up_to {
                return Ok(count);
            }
        }
    }

    async fn on_event(&mut self, event: &Outbound) -> Flow {
        match *event {
            Outbound::Message {
                conversation_id,
                seq,
                server_ts,
                remote,
                ref frame,
            } => {
                if !self.conversations.contains_key(&conversation_id) {
                    // A conversation joined since sync: it starts where the membership starts.
                    let joined = match self
                        .state
                        .store
                        .member(conversation_id, self.auth.user_id)
                        .await
                    {
                        Ok(member) => member.map_or(seq - 1, |m| m.joined_seq),
                        Err(e) => return self.refuse(e, None).await.and(Err(Closed)),
                    };
                    self.conversations.insert(
                        conversation_id,
                        Cursor {
                            sent: joined,
                            delivered: joined,
                            read: 0,
                        },
                    );
                }
                let sent = self.conversations[&conversation_id].sent;
                if seq <= sent {
                    return Ok(());
                }
                if seq > sent + 1 {
                    self.fill(conversation_id, seq - 1).await?;
                }
                self.send_raw("message", frame.clone()).await?;
                self.conversations.entry(conversation_id).or_default().sent = seq;
                let waited = (crate::clock::now_ms() - server_ts).max(0) as f64 / 1000.0;
                let locality = if remote { "remote" } else { "local" };
                metrics::histogram!("natter_accept_to_push_seconds", "locality" => locality)
                    .record(waited);
                metrics::counter!("natter_deliveries_total", "path" => "live").increment(1);
                tracing::trace!(conversation.id = %conversation_id, seq, delivery = locality, "pushed");
                Ok(())
            }
            Outbound::ToDevice { seq, ref frame } => {
                if seq <= self.inbox_sent {
                    return Ok(());
                }
                if seq > self.inbox_sent + 1 {
                    self.fill_inbox(seq - 1).await?;
                }
                self.inbox_sent = seq;
                self.send_raw("to_device", frame.clone()).await
            }
            Outbound::Frame { kind, ref frame } => self.send_raw(kind, frame.clone()).await,
            Outbound::CatchUp => self.catch_up().await,
            Outbound::Close(code, reason) => {
                self.close(code, reason).await;
                Err(Closed)
            }
        }
    }

    async fn on_message(&mut self, message: WsMessage) -> Flow {
        match message {
            WsMessage::Text(text) => match read_text_frame(&text) {
                Ok(frame) => {
                    metrics::counter!("natter_frames_in_total", "type" => frame.kind())
                        .increment(1);
                    self.on_frame(frame).await
                }
                Err(refusal) => self.send(&ServerFrame::Error(refusal)).await,
            },
            WsMessage::Binary(_) => {
                self.send(&error_frame(
                    codes::INVALID_FRAME,
                    "frames are JSON text, not binary".into(),
                ))
                .await
            }
            WsMessage::Close(_) => Err(Closed),
            WsMessage::Ping(_) | WsMessage::Pong(_) => Ok(()),
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Flow {
        let now = crate::clock::now_ms();
        let messenger = self.state.messenger.clone();
        match frame {
            ClientFrame::Auth { .. } => {
                self.send(&error_frame(
                    codes::INVALID_FRAME,
                    "already authenticated".into(),
                ))
                .await
            }
            ClientFrame::Send(message) => {
                self.state.registry.note_send();
                let started = Instant::now();
                let outcome = match self.hold.held(tokio::time::Instant::now()) {
                    Some(retry_after) => Err(ServiceError::HeldBehind { retry_after }),
                    None => messenger.send(self.auth, &message, now).await,
                };
                match outcome {
                    Ok(ack) => {
                        self.hold.accepted();
                        // The ack is this device's copy: step the watermark over its own
                        // message, so the next one from a peer is not mistaken for a gap.
                        if let Some(cursor) = self.conversations.get_mut(&ack.conversation_id)
                            && cursor.sent == ack.seq - 1
                        {
                            cursor.sent = ack.seq;
                        }
                        self.send(&ServerFrame::Ack(ack)).await?;
                        metrics::histogram!("natter_send_ack_seconds")
                            .record(seconds(started.elapsed()));
                        Ok(())
                    }
                    Err(e) => {
                        let crowded = matches!(
                            e,
                            ServiceError::Busy { .. } | ServiceError::HeldBehind { .. }
                        );
                        // Whatever told a wait (busy, the sender's rate, the store) holds the
                        // connection's later sends for it, so they keep their order.
                        let error = self.hold.refused(e, tokio::time::Instant::now());
                        metrics::counter!("natter_messages_rejected_total", "reason" => error.code()).increment(1);
                        if crowded {
                            // An overloaded node refuses many: counted, not logged one by one.
                            tracing::debug!(conversation.id = %message.conversation_id, "message refused for its rate");
                        } else {
                            tracing::info!(
                                conversation.id = %message.conversation_id,
                                bytes = message.ciphertext.len(),
                                reason = error.code(),
                                "message rejected"
                            );
                        }
                        self.refuse(error, Some(message.client_msg_id)).await
                    }
                }
            }
            ClientFrame::Delivered {
                conversation_id,
                seq,
            } => self.move_cursor(conversation_id, seq, 0).await,
            ClientFrame::Read {
                conversation_id,
                seq,
            } => self.move_cursor(conversation_id, seq, seq).await,
            ClientFrame::ToDevice { messages } => {
                self.state.registry.note_send();
                match messenger.to_device(self.auth, &messages, now).await {
                    Ok(_) => Ok(()),
                    Err(e) => self.refuse(e, None).await,
                }
            }
            ClientFrame::ToDeviceAck { seq } => {
                match self.state.store.ack_inbox(self.auth.device_id, seq).await {
                    Ok(()) => Ok(()),
                    Err(e) => self.refuse(e, None).await,
                }
            }
            ClientFrame::Sync => match messenger.charge_event(self.auth).await {
                Ok(()) => {
                    self.conversations.clear();
                    self.sync().await
                }
                Err(e) => self.refuse(e, None).await,
            },
            ClientFrame::Typing {
                conversation_id,
                typing,
            } => match messenger.typing(self.auth, conversation_id, typing).await {
                Ok(()) => Ok(()),
                Err(e) => self.refuse(e, None).await,
            },
            ClientFrame::Ping { nonce } => self.send(&ServerFrame::Pong { nonce }).await,
        }
    }

    async fn move_cursor(
        &mut self,
        conversation: ConversationId,
        delivered: i64,
        read: i64,
    ) -> Flow {
        let known = self.conversations.get(&conversation);
        let before = known.map_or((0, 0), |c| (c.delivered, c.read));
        let sent_here = known.map(|c| c.sent);
        match self
            .state
            .messenger
            .move_cursor(
                self.auth,
                conversation,
                before,
                (delivered, read),
                sent_here,
            )
            .await
        {
            Ok((delivered, read)) => {
                let cursor = self.conversations.entry(conversation).or_default();
                cursor.delivered = delivered;
                cursor.read = read;
                Ok(())
            }
            Err(e) => self.refuse(e, None).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_wait_holds_later_sends_and_a_long_one_does_not() {
        let now = tokio::time::Instant::now();
        let wait = Duration::from_micros(1_500_200);
        let mut hold = SendHold::default();
        assert!(hold.hold(wait, false, now));
        assert_eq!(hold.held(now), Some(wait));
        assert_eq!(hold.held(now + wait), None, "held no longer than it said");
        // A shorter wait after it does not shorten the hold; a long one does not hold at all,
        // unless the node is busy.
        assert!(hold.hold(Duration::from_millis(10), false, now));
        assert_eq!(hold.held(now), Some(wait));
        let mut long = SendHold::default();
        assert!(!long.hold(HOLD_AT_MOST * 2, false, now));
        assert_eq!(long.held(now), None);
        assert!(long.hold(HOLD_AT_MOST * 2, true, now));
        assert_eq!(long.held(now), Some(HOLD_AT_MOST * 2));
    }

    #[test]
    fn a_refusal_holds_for_the_wait_it_tells_but_a_held_send_moves_no_hold() {
        let now = tokio::time::Instant::now();
        let mut hold = SendHold::default();
        let rate = |wait| ServiceError::RateLimited {
            kind: "user_bytes",
            retry_after: wait,
        };
        let told = hold.refused(rate(Duration::from_secs(2)), now);
        assert_eq!(told.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(hold.held(now), Some(Duration::from_secs(2)));
        // A later send held behind it, a second on, is told the rest and leaves the hold (its
        // refusal is handled a little after the rest was measured).
        let later = now + Duration::from_secs(1);
        let left = hold.held(later).unwrap();
        let handled = later + Duration::from_millis(100);
        let told = hold.refused(ServiceError::HeldBehind { retry_after: left }, handled);
        assert_eq!(told.retry_after(), Some(left));
        assert_eq!(hold.held(now), Some(Duration::from_secs(2)), "not moved");
        // A busy node's wait grows and holds; a long wait for the rate holds nothing.
        let busy = hold.refused(
            ServiceError::Busy {
                retry_after: HOLD_AT_MOST,
            },
            now,
        );
        assert!(busy.retry_after().is_some_and(|wait| wait >= HOLD_AT_MOST));
        assert_eq!(hold.held(now), busy.retry_after());
        let mut long = SendHold::default();
        long.refused(rate(HOLD_AT_MOST * 2), now);
        assert_eq!(long.held(now), None);
    }

    #[test]
    fn busy_refusals_in_a_row_double_the_wait_up_to_sixteen_times_with_jitter() {
        let base = Duration::from_millis(100);
        let mut busy = SendHold::default();
        for (refusal, factor) in [1, 2, 4, 8, 16, 16].into_iter().enumerate() {
            let wait = busy.busy(base);
            let least = base * factor;
            assert!(
                wait >= least && wait <= least.mul_f64(1.5),
                "refusal {refusal}: {wait:?}"
            );
        }
        busy.accepted();
        assert!(busy.busy(base) <= base.mul_f64(1.5));
    }

    #[test]
    fn waits_are_told_in_whole_milliseconds_rounded_up() {
        let told = |wait| {
            let error = ApiError::from(ServiceError::Busy { retry_after: wait });
            error.retry_after_ms()
        };
        assert_eq!(told(Duration::from_micros(1_500_200)), Some(1_501));
        assert_eq!(told(Duration::from_millis(250)), Some(250));
        assert_eq!(told(Duration::from_micros(10)), Some(1));
        let past_a_millisecond = Duration::from_millis(1) + Duration::from_nanos(1);
        assert_eq!(
            told(past_a_millisecond),
            Some(2),
            "never early, to the nanosecond"
        );
        // The words say the same.
        let busy = ApiError::from(ServiceError::Busy {
            retry_after: past_a_millisecond,
        });
        assert!(busy.detail().contains("retry in 2 ms"), "{}", busy.detail());
    }
}
