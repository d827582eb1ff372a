//! A session's handling of the client's frames: each parsed into a [`ClientFrame`] and
//! answered, calling the same services as the REST handlers.
//!
//! What a frame does is decided in natter-core (the messenger service and the store traits);
//! this module only maps frames to those calls, counts them, and turns a [`ServiceError`] into
//! an error frame through [`Session::refuse`]. Delivery of what others send is in `delivery`.

use std::time::Instant;

use axum::extract::ws::Message as WsMessage;
use natter_proto::ConversationId;
use natter_proto::codes;
use natter_proto::ws::{ClientFrame, ServerFrame};

use super::{Closed, Flow, Session};
use crate::gateway::{error_frame, read_text_frame};
use crate::observe::seconds;
use natter_core::service_error::ServiceError;

impl Session {
    /// Handles one WebSocket message: text is parsed into a client frame and answered (or
    /// refused), binary is refused, a close ends the connection, pings and pongs pass.
    /// A text frame that does not parse gets an error frame and the connection stays open;
    /// only a close, or a failed send of the answer, returns [`Closed`].
    pub(super) async fn on_message(&mut self, message: WsMessage) -> Flow {
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

    /// Answers one client frame by calling the services:
    /// - `auth` again is refused with `invalid_frame`: the connection is already authenticated;
    /// - `send` is stored and acked, unless sends are held behind an earlier refusal, in which
    ///   case it is refused with the wait left; a refusal that tells a wait holds later sends;
    /// - `delivered` and `read` move this device's cursors (see [`Self::move_cursor`]);
    /// - `to_device` queues payloads for other devices' inboxes, `to_device_ack` deletes this
    ///   device's inbox items up to a seq;
    /// - `sync` is charged to the device's `device_events` allowance, forgets the watermarks
    ///   and resyncs;
    /// - `typing` is relayed to the conversation, `ping` answered with `pong`.
    ///
    /// A refused frame gets an error frame (with the `client_msg_id` of a refused send) and the
    /// connection stays open.
    pub(super) async fn on_frame(&mut self, frame: ClientFrame) -> Flow {
        let now = natter_core::clock::now_ms();
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

    /// Moves this device's cursors in a conversation through the sender service.
    ///
    /// `delivered` and `read` are the seqs the client claims (a `delivered` frame passes 0 as
    /// `read`). The service is given the cursors as this connection last knew them and the
    /// highest seq sent here (moves within it cost no rate check), and returns where the
    /// cursors stand, which the connection then remembers.
    pub(super) async fn move_cursor(
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
