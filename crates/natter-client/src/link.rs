//! Keeping a device in touch with the server: one connection at a time, sending the queue
//! in order, receiving and decrypting, and reconnecting with backoff and jitter.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use natter_proto::ws::{ClientFrame, Receipt, SendMessage, ServerFrame};
use natter_proto::{ConversationId, codes};
use rand::Rng;
use tokio::sync::mpsc;

use crate::clock::{self, Instant, now_ms};
use crate::store::{Queued, StoredMessage};
use crate::{ClientError, Connection, Device};

/// A send with no ack after this long is sent again with the same `client_msg_id`.
const RESEND_AFTER: Duration = Duration::from_secs(5);
/// How long [`Device::sync`] waits for the server before giving up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Ping when nothing was sent for this long (the server's idle timeout is 60 s).
const PING_EVERY: Duration = Duration::from_secs(15);
/// Backoff between reconnects: from the first to the last, doubling, plus up to half again
/// as random jitter so that many clients do not come back at once.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_LAST: Duration = Duration::from_secs(30);
/// Error codes after which a send is tried again; any other refusal is final.
const RETRYABLE: [&str; 3] = [
    codes::RATE_LIMITED,
    codes::STORE_UNAVAILABLE,
    codes::INTERNAL,
];
/// How long to wait before sending again after a retryable refusal that named no wait.
pub const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);

/// Whether a send refused with `code` is to be made again (after the server's `retry_after_ms`,
/// else [`RETRY_AFTER_DEFAULT`]); any other refusal is final.
pub fn is_retryable(code: &str) -> bool {
    RETRYABLE.contains(&code)
}

/// Something that happened on a live device ([`Device::run`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Connected (again); the sync follows.
    Connected,
    /// The sync reached the present.
    Synced,
    /// The connection dropped; reconnecting after a backoff.
    Disconnected(String),
    /// A new message (decrypted, or with the reason it cannot be), or an earlier one that
    /// just became readable because its key arrived.
    Message(StoredMessage),
    /// A queued message was stored by the server.
    Sent {
        /// The conversation.
        conversation_id: ConversationId,
        /// Its id.
        client_msg_id: String,
        /// Its seq.
        seq: i64,
    },
    /// The server refused a queued message for good; it was dropped from the queue.
    Failed {
        /// Its id.
        client_msg_id: String,
        /// The server's error code.
        code: String,
    },
    /// A member's device moved its delivered or read cursor.
    Receipt(Receipt),
    /// Something to tell the person about whom their messages reach (a safety number that
    /// changed, a device left out, a new device of this account).
    Notice(crate::Notice),
    /// A step of approving a device of this user ([`Device::approve_device`]).
    Approval(crate::ApprovalEvent),
    /// Someone is (not) typing.
    Typing {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who.
        user_id: natter_proto::UserId,
        /// Typing or stopped.
        typing: bool,
    },
}

/// Whether one connection runs until the queue is empty or for good.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    UntilIdle,
    Live,
}

/// One connection's bookkeeping.
struct Link<'a> {
    conn: Connection,
    events: Option<&'a mpsc::Sender<Event>>,
    in_flight: HashMap<String, Instant>,
    synced: bool,
    /// One-time keys may have run low (caught up, or a new session used one): top them up
    /// after the next flush.
    top_up_due: bool,
    last_sent: Instant,
    report: SyncReport,
    /// The nonce of a ping sent after frames the server does not ack (the rotated secrets):
    /// a one-shot sync waits for its pong, which comes only once they were taken in.
    barrier: Option<u64>,
}

/// What a finished [`Device::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// New messages received (including ones from blocked users, which stay hidden).
    pub received: usize,
    /// Queued messages the server acked.
    pub sent: usize,
    /// Queued messages the server refused for good (dropped from the queue), as
    /// (`client_msg_id`, error code).
    pub failed: Vec<(String, String)>,
}

impl Device {
    /// Connects once: receives and decrypts everything waiting, sends the whole queue in
    /// order, tops up one-time keys and waits for every ack, then disconnects.
    ///
    /// # Errors
    /// The server cannot be reached (the queue stays for next time), refuses the token, or
    /// does not finish within a minute.
    pub async fn sync(&self) -> Result<SyncReport, ClientError> {
        let conn = self.inner.session.connect().await?;
        self.refresh_trust().await?;
        let mut link = Link::new(conn, None);
        let driven =
            clock::timeout(SYNC_TIMEOUT, self.drive(&mut link, Mode::UntilIdle, None)).await;
        link.conn.close().await;
        driven.ok_or(ClientError::Timeout)??;
        Ok(link.report)
    }

    /// Stays connected until `shutdown` completes: reports [`Event`]s, sends what is queued
    /// at once, and reconnects after a drop with exponential backoff and jitter, resuming from
    /// the server-side cursors.
    ///
    /// # Errors
    /// The server refuses the token (log in again); network failures are retried.
    pub async fn run(
        &self,
        events: mpsc::Sender<Event>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        tokio::pin!(shutdown);
        let mut backoff = BACKOFF_FIRST;
        loop {
            let outcome = tokio::select! {
                () = &mut shutdown => return Ok(()),
                outcome = self.live_once(&events, &mut backoff) => outcome,
            };
            if let Err(error) = outcome {
                if error.is_device_refused() {
                    return Err(error);
                }
                let _ = events.send(Event::Disconnected(error.to_string())).await;
            }
            let jitter = rand::rng().random_range(0..=backoff.as_millis() / 2);
            let wait = backoff + Duration::from_millis(u64::try_from(jitter).unwrap_or(0));
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = clock::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_LAST);
        }
    }

    async fn live_once(
        &self,
        events: &mpsc::Sender<Event>,
        backoff: &mut Duration,
    ) -> Result<(), ClientError> {
        let conn = self.inner.session.connect().await?;
        self.refresh_trust().await?;
        *backoff = BACKOFF_FIRST;
        let _ = events.send(Event::Connected).await;
        let (frames, mut typing) = mpsc::unbounded_channel();
        *self.inner.live.lock().expect("never poisoned") = Some(frames);
        let mut link = Link::new(conn, Some(events));
        let outcome = self.drive(&mut link, Mode::Live, Some(&mut typing)).await;
        *self.inner.live.lock().expect("never poisoned") = None;
        outcome
    }

    async fn drive(
        &self,
        link: &mut Link<'_>,
        mode: Mode,
        mut typing: Option<&mut mpsc::UnboundedReceiver<ClientFrame>>,
    ) -> Result<(), ClientError> {
        loop {
            if link.synced {
                let remaining = self.flush(link).await?;
                self.report_notices(link).await;
                if std::mem::take(&mut link.top_up_due) {
                    self.top_up().await;
                }
                if let Err(error) = self.back_up_keys().await {
                    tracing::warn!(%error, "could not back the room keys up; trying again later");
                }
                let rotation = self.rotation_frames().await?;
                if !rotation.is_empty() {
                    for frame in &rotation {
                        link.send(frame).await?;
                    }
                    let nonce = rand::random();
                    link.send(&ClientFrame::Ping { nonce: Some(nonce) }).await?;
                    link.barrier = Some(nonce);
                }
                if mode == Mode::UntilIdle && remaining == 0 && link.barrier.is_none() {
                    return Ok(());
                }
            }
            if link.last_sent.elapsed() >= PING_EVERY {
                link.send(&ClientFrame::Ping { nonce: None }).await?;
            }
            tokio::select! {
                frame = link.conn.next() => self.handle(link, frame?).await?,
                Some(frame) = async {
                    match typing.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => link.send(&frame).await?,
                () = self.inner.wake.notified() => {}
                () = clock::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Sends what is queued, in order; returns how many items are still waiting (for acks).
    async fn flush(&self, link: &mut Link<'_>) -> Result<usize, ClientError> {
        let mut state = self.lock().await;
        let outbox = state.store.outbox()?;
        let mut remaining = 0;
        for (id, item) in outbox {
            match item {
                Queued::Send {
                    conversation_id,
                    client_msg_id,
                    text,
                    ciphertext,
                } => {
                    remaining += 1;
                    if link
                        .in_flight
                        .get(&client_msg_id)
                        .is_some_and(|sent| sent.elapsed() < RESEND_AFTER)
                    {
                        continue;
                    }
                    let ciphertext = match ciphertext {
                        Some(ciphertext) => ciphertext,
                        None => match self
                            .encrypt_message(&mut state, conversation_id, &text)
                            .await
                        {
                            Ok((frames, ciphertext)) => {
                                for frame in &frames {
                                    link.send(frame).await?;
                                }
                                state.store.set_ciphertext(id, &ciphertext)?;
                                ciphertext
                            }
                            Err(error) if is_final(&error) => {
                                state.store.dequeue(id)?;
                                remaining -= 1;
                                let code = error.code_or_local().to_owned();
                                link.fail(client_msg_id, code).await;
                                continue;
                            }
                            Err(error) => return Err(error),
                        },
                    };
                    link.send(&ClientFrame::Send(SendMessage {
                        conversation_id,
                        client_msg_id: client_msg_id.clone(),
                        ciphertext,
                        client_ts: Some(now_ms()),
                    }))
                    .await?;
                    link.in_flight.insert(client_msg_id, Instant::now());
                }
                Queued::Read {
                    conversation_id,
                    seq,
                } => {
                    link.send(&ClientFrame::Read {
                        conversation_id,
                        seq,
                    })
                    .await?;
                    state.store.advance_cursor(conversation_id, seq, true)?;
                    state.store.dequeue(id)?;
                }
                Queued::Block { user_id, block } => {
                    match self.inner.session.block(user_id, block, None).await {
                        Ok(_) => {}
                        // Refused for good (the user is gone, say): nothing to retry.
                        Err(error) if error.status().is_some() => {}
                        Err(error) => return Err(error),
                    }
                    state.store.dequeue(id)?;
                }
            }
        }
        Ok(remaining)
    }

    async fn handle(&self, link: &mut Link<'_>, frame: ServerFrame) -> Result<(), ClientError> {
        match frame {
            // Stored, then reported, then acknowledged: once stored, a message is never
            // reported again, so a connection lost before the acknowledgement must not skip
            // the report. A message the server sends again (one this device has) lacks the
            // acknowledgement, which a connection lost before it skipped: it is sent now.
            ServerFrame::Message(message) => {
                let state = self.lock().await;
                let (stored, new) = self.accept_message(&state, &message)?;
                let delivered =
                    state
                        .store
                        .advance_cursor(message.conversation_id, message.seq, false)?;
                let hidden = state.store.is_blocked(message.sender_id)?;
                drop(state);
                if new {
                    link.report.received += 1;
                    if !hidden {
                        link.emit(Event::Message(stored)).await;
                    }
                }
                if delivered || !new {
                    link.send(&ClientFrame::Delivered {
                        conversation_id: message.conversation_id,
                        seq: message.seq,
                    })
                    .await?;
                }
            }
            ServerFrame::ToDevice(item) => {
                let mut state = self.lock().await;
                let received = self.receive_to_device(&mut state, &item).await?;
                drop(state);
                for frame in &received.replies {
                    link.send(frame).await?;
                }
                for stored in received.resolved {
                    link.emit(Event::Message(stored)).await;
                }
                for approval in received.approvals {
                    link.emit(Event::Approval(approval)).await;
                }
                link.send(&ClientFrame::ToDeviceAck { seq: item.seq })
                    .await?;
                // The new session used up a one-time key: top up after the next flush (once
                // synced), and once for any number of new sessions in a burst.
                link.top_up_due |= received.new_session;
            }
            ServerFrame::Ack(ack) => {
                let state = self.lock().await;
                link.in_flight.remove(&ack.client_msg_id);
                if let Some(text) = state.store.take_sent(&ack.client_msg_id)? {
                    let own = StoredMessage {
                        conversation_id: ack.conversation_id,
                        seq: ack.seq,
                        sender_id: self.user_id(),
                        sender_device_id: self.device_id(),
                        client_msg_id: ack.client_msg_id.clone(),
                        server_ts: ack.server_ts,
                        body: Ok(text),
                    };
                    state.store.insert_message(&own, None, None)?;
                    drop(state);
                    link.report.sent += 1;
                    link.emit(Event::Sent {
                        conversation_id: ack.conversation_id,
                        client_msg_id: ack.client_msg_id,
                        seq: ack.seq,
                    })
                    .await;
                }
            }
            ServerFrame::Error(error) => {
                if error.code == codes::INBOX_FULL {
                    // A key share did not reach a device whose inbox was full: sessions that
                    // count it as shared would leave it unable to read what follows. Start new
                    // ones, shared again to every device with the next message.
                    self.lock().await.store.forget_outbound_sessions()?;
                }
                let Some(client_msg_id) = error.client_msg_id else {
                    return Ok(());
                };
                if is_retryable(&error.code) {
                    // Resend once the server's wait is over.
                    let wait = error
                        .retry_after_ms
                        .map_or(RETRY_AFTER_DEFAULT, Duration::from_millis);
                    let resend_at = Instant::now() + wait;
                    link.in_flight.insert(
                        client_msg_id,
                        resend_at.checked_sub(RESEND_AFTER).unwrap_or(resend_at),
                    );
                } else {
                    link.in_flight.remove(&client_msg_id);
                    self.lock().await.store.take_sent(&client_msg_id)?;
                    link.fail(client_msg_id, error.code).await;
                }
            }
            // Caught up, so every key claimed while this device was away is known: the
            // one-time keys are topped up (a live device as well as a sync), but only after
            // saying so and sending the queue, which need no HTTP round trips first.
            ServerFrame::Synced { .. } => {
                link.synced = true;
                link.top_up_due = true;
                link.emit(Event::Synced).await;
            }
            ServerFrame::Receipt(receipt) => self.take_receipts(link, vec![receipt]).await?,
            ServerFrame::Receipts { receipts } => self.take_receipts(link, receipts).await?,
            ServerFrame::Typing {
                conversation_id,
                user_id,
                typing,
            } => {
                link.emit(Event::Typing {
                    conversation_id,
                    user_id,
                    typing,
                })
                .await;
            }
            ServerFrame::DeviceListChanged { user_id } => self.forget_device_lists(Some(user_id)),
            ServerFrame::Pong { nonce } => {
                if nonce.is_some() && nonce == link.barrier {
                    link.barrier = None;
                }
            }
            ServerFrame::Ready { .. } => {}
        }
        Ok(())
    }

    /// Saves other devices' cursor moves (one `receipt` frame's, or a `receipts` frame's),
    /// then reports each.
    async fn take_receipts(
        &self,
        link: &Link<'_>,
        receipts: Vec<Receipt>,
    ) -> Result<(), ClientError> {
        self.lock().await.store.save_receipts(&receipts)?;
        for receipt in receipts {
            link.emit(Event::Receipt(receipt)).await;
        }
        Ok(())
    }

    /// Reports the notices recorded since the last report.
    async fn report_notices(&self, link: &Link<'_>) {
        let fresh = std::mem::take(&mut self.lock().await.fresh_notices);
        for notice in fresh {
            link.emit(Event::Notice(notice)).await;
        }
    }

    /// Publishes one-time keys if the server's stock is low. A failure is logged, not
    /// returned: the link goes on sending, and the next new session or connection tries again.
    async fn top_up(&self) {
        if let Err(error) = self.publish_keys(false).await {
            tracing::warn!(%error, "could not top up the one-time keys");
        }
    }
}

/// Whether a failure to encrypt a queued send means it can never be sent (rather than
/// "try again when the server is back").
fn is_final(error: &ClientError) -> bool {
    error.status().is_some_and(|s| s != 429 && s < 500)
        || matches!(
            error,
            ClientError::NotMember(_)
                | ClientError::Crypto(_)
                | ClientError::IdentityChanged(_)
                | ClientError::MembersChanged(_)
                | ClientError::NotApproved
        )
}

impl<'a> Link<'a> {
    fn new(conn: Connection, events: Option<&'a mpsc::Sender<Event>>) -> Self {
        Self {
            conn,
            events,
            in_flight: HashMap::new(),
            synced: false,
            top_up_due: false,
            last_sent: Instant::now(),
            report: SyncReport::default(),
            barrier: None,
        }
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.last_sent = Instant::now();
        self.conn.send(frame).await
    }

    /// Reports a queued message the server refused for good.
    async fn fail(&mut self, client_msg_id: String, code: String) {
        self.report
            .failed
            .push((client_msg_id.clone(), code.clone()));
        self.emit(Event::Failed {
            client_msg_id,
            code,
        })
        .await;
    }

    async fn emit(&self, event: Event) {
        if let Some(events) = self.events {
            // A consumer that went away just stops hearing about events.
            let _ = events.send(event).await;
        }
    }
}
