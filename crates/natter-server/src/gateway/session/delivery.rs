//! A session's delivery: the sync on connect, live events checked against the per-conversation
//! and inbox watermarks, and the gaps filled from the store, so a device gets every message
//! once and in order.
//!
//! The store reads (cursor starts, message pages, the to-device inbox) go through natter-core's
//! store traits; the live events come from natter-core's fan-out registry, fed across nodes by
//! natter-cluster. A store failure here closes the connection: the client reconnects and
//! resumes from its cursors rather than go on with a hole.

use std::time::Instant;

use natter_proto::ConversationId;
use natter_proto::limits::PAGE_MAX;
use natter_proto::ws::ServerFrame;

use super::{Closed, Cursor, Flow, Session};
use crate::observe::seconds;
use natter_core::fanout::Outbound;

impl Session {
    /// Where this device's cursors stand in each of its conversations; a store failure is
    /// told to the client and closes the connection (it resyncs).
    pub(super) async fn cursor_starts(
        &mut self,
    ) -> Result<Vec<natter_core::store::CursorStart>, Closed> {
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
    ///
    /// Each conversation's watermark starts at the delivered cursor, so messages already
    /// delivered to this device are not sent again; the inbox is sent from its start. The
    /// `synced` frame counts the messages and to-device items sent.
    pub(super) async fn sync(&mut self) -> Flow {
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
    pub(super) async fn catch_up(&mut self) -> Flow {
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
    ///
    /// The watermark moves over the device's own messages too, without sending them. A store
    /// failure is told to the client and returns [`Closed`].
    pub(super) async fn fill(
        &mut self,
        conversation: ConversationId,
        up_to: i64,
    ) -> Result<u64, Closed> {
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
    ///
    /// Items stay in the store until the device acks them (`to_device_ack`); the watermark
    /// only keeps this connection from sending one twice. A store failure returns [`Closed`].
    pub(super) async fn fill_inbox(&mut self, up_to: i64) -> Result<u64, Closed> {
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

    /// Relays a live event: a message or to-device item past its watermark (pulling any gap
    /// from the store first), a frame as is, a catch-up, or a close.
    ///
    /// A message in a conversation not seen since sync starts its watermark at the member's
    /// `joined_seq`. A message or item at or below its watermark is dropped. A close event
    /// sends the close frame and returns [`Closed`].
    pub(super) async fn on_event(&mut self, event: &Outbound) -> Flow {
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
                let waited = (natter_core::clock::now_ms() - server_ts).max(0) as f64 / 1000.0;
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
}
