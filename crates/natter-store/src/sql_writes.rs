//! The writes that go through group commit (see [`GroupCommit`]): message appends and cursor
//! moves, the two writes a busy conversation makes per message. One batch is one transaction.

use std::panic::AssertUnwindSafe;

use futures_util::future::BoxFuture;

use super::StoreError;
use super::group_commit::{GroupCommit, Reply};
use super::message_log::{NewMessage, OnStored};
use natter_proto::{ConversationId, DeviceId, UserId};

/// A message waiting for its group commit.
pub(super) struct QueuedMessage {
    /// The conversation (as stored: text).
    pub(super) conversation_id: String,
    /// The sending user.
    pub(super) sender_id: String,
    /// The sending device: with `client_msg_id`, what makes a retry the same message.
    pub(super) sender_device: String,
    /// The sender's id for the message, unique per device.
    pub(super) client_msg_id: String,
    /// The sender's clock when it sent, if it said.
    pub(super) client_ts: Option<i64>,
    /// The end-to-end encrypted body, opaque here.
    pub(super) ciphertext: String,
    /// When the server accepted it (ms).
    pub(super) server_ts: i64,
    /// Called with the seq once the batch commits (taken then, so it runs once).
    pub(super) on_stored: Option<OnStored>,
    /// Its seq once written in the open transaction; `None` if it was already stored.
    pub(super) seq: Option<i64>,
}

/// A cursor move waiting for its group commit: cursors only move forward.
pub(super) struct QueuedCursor {
    /// The device whose cursors move.
    pub(super) device_id: String,
    /// The conversation.
    pub(super) conversation_id: String,
    /// The device's user.
    pub(super) user_id: String,
    /// Delivered up to this seq (kept if the stored one is higher).
    pub(super) delivered_seq: i64,
    /// Read up to this seq (kept if the stored one is higher).
    pub(super) read_seq: i64,
    /// The (delivered, read) cursors once written in the open transaction; `None` if the device
    /// is gone.
    pub(super) after: Option<(i64, i64)>,
}

/// A write waiting for its group commit, with where its result goes.
pub(super) enum Write {
    /// Per message: its seq, or `None` if it was already stored.
    Append(QueuedMessage, Reply<Option<i64>>),
    /// The cursors after the move.
    MoveCursor(QueuedCursor, Reply<(i64, i64)>),
}

/// The group-committing queue of a store's writes.
pub(super) type Writes = GroupCommit<Write>;

/// Appending, step one: the message's seq, unless its (device, client_msg_id) is stored already.
pub(super) const NEXT_SEQ: &str = "UPDATE conversations SET last_seq = last_seq + 1, last_ts = $2 WHERE id = $1 \
     AND NOT EXISTS (SELECT 1 FROM messages WHERE sender_device = $3 AND client_msg_id = $4) \
     RETURNING last_seq";

/// Appending, step two: the message at its seq.
pub(super) const INSERT_MESSAGE: &str = "INSERT INTO messages (conversation_id, seq, sender_id, \
     sender_device, client_msg_id, client_ts, server_ts, ciphertext) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Moves a device's cursors forward (never back) and returns them, or no row for a device that
/// is gone (logged out meanwhile) rather than failing the statement, which would send the rest
/// of its batch back to be written one by one.
pub(super) const MOVE_CURSOR: &str = "INSERT INTO cursors (device_id, conversation_id, user_id, \
     delivered_seq, read_seq) \
     SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1) \
     ON CONFLICT (device_id, conversation_id) DO UPDATE SET \
     delivered_seq = CASE WHEN excluded.delivered_seq > cursors.delivered_seq \
         THEN excluded.delivered_seq ELSE cursors.delivered_seq END, \
     read_seq = CASE WHEN excluded.read_seq > cursors.read_seq \
         THEN excluded.read_seq ELSE cursors.read_seq END \
     RETURNING delivered_seq, read_seq";

/// Writes `batch` with `write_in_one` (one transaction for the writes it is given, recording
/// each write's outcome), in lock order (see [`Write::lock_order`]), and answers every write.
/// If the batch fails because of one write, each is tried in its own transaction, so a bad
/// write fails alone; if the database is unreachable, the whole batch (or the rest of it) fails
/// at once (trying each would wait out the outage once per write).
pub(super) async fn settle(
    mut batch: Vec<Write>,
    mut write_in_one: impl for<'a> FnMut(&'a mut [Write]) -> BoxFuture<'a, Result<(), StoreError>>,
) {
    metrics::histogram!("natter_store_batch_size").record(batch.len() as f64);
    batch.sort_by(|a, b| a.lock_order().cmp(&b.lock_order()));
    // Why the database is unavailable, once it is: every write left fails with that at once.
    let mut unavailable: Option<String> = None;
    if batch.len() > 1 {
        match write_in_one(&mut batch).await {
            Ok(()) => return batch.into_iter().for_each(Write::committed),
            Err(e) if e.is_unavailable() => unavailable = Some(e.to_string()),
            Err(_) => {}
        }
    }
    for mut write in batch {
        if let Some(why) = &unavailable {
            write.failed(StoreError::Unavailable(why.clone()));
            continue;
        }
        match write_in_one(std::slice::from_mut(&mut write)).await {
            Ok(()) => write.committed(),
            Err(e) => {
                if e.is_unavailable() {
                    unavailable = Some(e.to_string());
                }
                write.failed(e);
            }
        }
    }
}

impl Write {
    /// An append of `message`, answered on `reply`.
    pub(super) fn append(
        message: &NewMessage<'_>,
        on_stored: OnStored,
        reply: Reply<Option<i64>>,
    ) -> Self {
        Self::Append(
            QueuedMessage {
                conversation_id: message.conversation_id.to_string(),
                sender_id: message.sender_id.to_string(),
                sender_device: message.sender_device.to_string(),
                client_msg_id: message.client_msg_id.to_owned(),
                client_ts: message.client_ts,
                ciphertext: message.ciphertext.to_owned(),
                server_ts: message.server_ts,
                on_stored: Some(on_stored),
                seq: None,
            },
            reply,
        )
    }

    /// A move of a device's cursors to at least (`delivered_seq`, `read_seq`).
    pub(super) fn move_cursor(
        (device, user, conversation): (DeviceId, UserId, ConversationId),
        delivered_seq: i64,
        read_seq: i64,
        reply: Reply<(i64, i64)>,
    ) -> Self {
        Self::MoveCursor(
            QueuedCursor {
                device_id: device.to_string(),
                conversation_id: conversation.to_string(),
                user_id: user.to_string(),
                delivered_seq,
                read_seq,
                after: None,
            },
            reply,
        )
    }

    /// The order a batch writes in: appends by conversation, then cursor moves by device and
    /// conversation. Every batch takes its row locks in this order, so two batches (from two
    /// nodes on PostgreSQL) cannot deadlock; the sort is stable, so each conversation's
    /// messages keep their arrival order.
    pub(super) fn lock_order(&self) -> (u8, &str, &str) {
        match self {
            Self::Append(message, _) => (0, &message.conversation_id, ""),
            Self::MoveCursor(cursor, _) => (1, &cursor.device_id, &cursor.conversation_id),
        }
    }

    /// After the commit: tells an appended message's `on_stored` (fan-out) and answers.
    pub(super) fn committed(self) {
        // A caller that gave up (its connection closed) has nobody to tell.
        match self {
            Self::Append(mut message, reply) => {
                if let (Some(seq), Some(on_stored)) = (message.seq, message.on_stored.take()) {
                    // A fan-out that panics must not turn a stored message into a failed send:
                    // the sender would think it lost. Recipients fetch it when they sync.
                    let told = std::panic::catch_unwind(AssertUnwindSafe(|| on_stored(seq)));
                    if told.is_err() {
                        tracing::error!(
                            conversation.id = %message.conversation_id,
                            seq,
                            "fanning out a stored message panicked"
                        );
                    }
                }
                let _ = reply.send(Ok(message.seq));
            }
            Self::MoveCursor(cursor, reply) => {
                let _ = reply.send(cursor.after.ok_or(StoreError::Missing("device")));
            }
        }
    }

    /// Answers with the failure of the transaction that held the write. An append refused as a
    /// conflict was stored first by a concurrent resend (from another node): it answers as a
    /// duplicate.
    pub(super) fn failed(self, error: StoreError) {
        match self {
            Self::Append(_, reply) => {
                let _ = reply.send(match error {
                    StoreError::Conflict(_) => Ok(None),
                    error => Err(error),
                });
            }
            Self::MoveCursor(_, reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}
