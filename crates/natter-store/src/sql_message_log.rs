//! [`MessageLog`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see `lib.rs`
//! for why a macro).
//!
//! Appends and cursor moves are the per-message writes: they go to the backend's writer
//! (`sqlite_writer`, `pg_writer`), which commits them in groups (`sql_writes`); a retried append
//! (the same client message id) is answered with the first copy. Reads filter by the viewer's
//! membership window and blocks (`visible_to_viewer!` in `sql_messages`).

use async_trait::async_trait;
use natter_proto::conversations::MessageReceipts;
use natter_proto::ws::Message;
use natter_proto::{ConversationId, DeviceId, UserId};

use super::driver_errors::DbError;
use super::sql::{PgStore, SqliteStore, parse_id};
use super::sql_messages::{
    MessageRow, blocks, ids, limit, message_columns, messages, visible_to_viewer,
};
use super::sql_writes::Write;
use super::{Appended, CursorStart, MessageLog, NewMessage, OnStored, StoreError, timed};

/// Implements [`MessageLog`] for a store type with `pool` and `writer` fields.
macro_rules! message_log {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl MessageLog for $store {
            /// Hands the message to the writer's group commit; a copy already stored (the same client id) is answered from `first_copy`.
            async fn append(&self, message: &NewMessage<'_>, on_stored: OnStored) -> Result<Appended, StoreError> {
                timed("append", async move {
                    match self.writes.submit(|reply| Write::append(message, on_stored, reply)).await? {
                        Some(seq) => Ok(Appended {
                            conversation_id: message.conversation_id,
                            seq,
                            server_ts: message.server_ts,
                            duplicate: false,
                        }),
                        // Already stored (or no such conversation): answer with the first copy.
                        None => Ok(first_copy(&self.pool, message).await?.ok_or(StoreError::Missing("conversation"))?),
                    }
                }).await
            }

            /// A page after a seq, as the viewer may see it (membership window and blocks).
            async fn messages_after(
                &self,
                conversation: ConversationId,
                viewer: UserId,
                after: i64,
                up_to: i64,
                limit_to: usize,
            ) -> Result<Vec<Message>, StoreError> {
                timed("messages_after", async move {
                    let rows = sqlx::query_as::<_, MessageRow>(concat!(
                        "SELECT ", message_columns!("m"), " FROM messages m", visible_to_viewer!(),
                        "AND m.seq > $3 AND m.seq <= $4 ORDER BY m.seq LIMIT $5"
                    ))
                    .bind(conversation.to_string())
                    .bind(viewer.to_string())
                    .bind(after)
                    .bind(up_to)
                    .bind(limit(limit_to))
                    .fetch_all(&self.pool)
                    .await?;
                    messages(rows)
                }).await
            }

            /// A page before a seq, newest first, as the viewer may see it.
            async fn messages_before(
                &self,
                conversation: ConversationId,
                viewer: UserId,
                before: i64,
                limit_to: usize,
            ) -> Result<Vec<Message>, StoreError> {
                timed("messages_before", async move {
                    let rows = sqlx::query_as::<_, MessageRow>(concat!(
                        "SELECT ", message_columns!("m"), " FROM messages m", visible_to_viewer!(),
                        "AND m.seq < $3 ORDER BY m.seq DESC LIMIT $4"
                    ))
                    .bind(conversation.to_string())
                    .bind(viewer.to_string())
                    .bind(before)
                    .bind(limit(limit_to))
                    .fetch_all(&self.pool)
                    .await?;
                    messages(rows)
                }).await
            }

            /// A user's messages from any device before a time, newest first.
            async fn sent_by(&self, user: UserId, before: i64, limit_to: usize) -> Result<Vec<Message>, StoreError> {
                timed("sent_by", async move {
                    let rows = sqlx::query_as::<_, MessageRow>(concat!(
                        "SELECT ", message_columns!("m"), " FROM messages m WHERE m.sender_id = $1 \
                         AND m.server_ts < $2 ORDER BY m.server_ts DESC, m.seq DESC LIMIT $3"
                    ))
                    .bind(user.to_string())
                    .bind(before)
                    .bind(limit(limit_to))
                    .fetch_all(&self.pool)
                    .await?;
                    messages(rows)
                }).await
            }

            /// Every conversation of the user with its window and last seq and this device's cursors, where a socket starts delivering.
            async fn cursor_starts(&self, device: DeviceId, user: UserId) -> Result<Vec<CursorStart>, StoreError> {
                timed("cursor_starts", async move {
                    let rows = sqlx::query_as::<_, (String, i64, Option<i64>, i64, Option<i64>, Option<i64>)>(
                        "SELECT mb.conversation_id, mb.joined_seq, mb.left_seq, c.last_seq, cu.delivered_seq, cu.read_seq \
                         FROM members mb JOIN conversations c ON c.id = mb.conversation_id \
                         LEFT JOIN cursors cu ON cu.device_id = $1 AND cu.conversation_id = mb.conversation_id \
                         WHERE mb.user_id = $2",
                    )
                    .bind(device.to_string())
                    .bind(user.to_string())
                    .fetch_all(&self.pool)
                    .await?;
                    let mut starts = Vec::with_capacity(rows.len());
                    for (id, joined, left, last, delivered, read) in rows {
                        let delivered_seq = delivered.unwrap_or(0).max(joined);
                        let last_seq = left.map_or(last, |left| left.min(last));
                        if left.is_some() && delivered_seq >= last_seq {
                            continue; // a finished past membership
                        }
                        starts.push(CursorStart {
                            conversation_id: parse_id(&id, "members.conversation_id")?,
                            delivered_seq,
                            read_seq: read.unwrap_or(0),
                            last_seq,
                        });
                    }
                    Ok(starts)
                }).await
            }

            /// The highest seq a cursor may name: the room's last, or where the member left.
            async fn cursor_bound(
                &self,
                conversation: ConversationId,
                user: UserId,
            ) -> Result<Option<i64>, StoreError> {
                timed("cursor_bound", async move {
                    Ok(sqlx::query_scalar(
                        "SELECT CASE WHEN m.left_seq < c.last_seq THEN m.left_seq ELSE c.last_seq END \
                         FROM conversations c \
                         JOIN members m ON m.conversation_id = c.id AND m.user_id = $2 WHERE c.id = $1",
                    )
                    .bind(conversation.to_string())
                    .bind(user.to_string())
                    .fetch_optional(&self.pool)
                    .await?)
                }).await
            }

            /// Hands the move to the writer's group commit; cursors only move forward.
            async fn move_cursor(
                &self,
                device: DeviceId,
                user: UserId,
                conversation: ConversationId,
                delivered_seq: i64,
                read_seq: i64,
            ) -> Result<(i64, i64), StoreError> {
                timed("move_cursor", async move {
                    self.writes
                        .submit(|reply| Write::move_cursor((device, user, conversation), delivered_seq, read_seq, reply))
                        .await
                        .map_err(DbError::from)
                }).await
            }

            /// Who sent the messages in a seq range (SQLite reads it on the writer thread).
            async fn senders_between(
                &self,
                conversation: ConversationId,
                (after, up_to): (i64, i64),
                apart_from: Option<UserId>,
            ) -> Result<Vec<UserId>, StoreError> {
                timed("senders_between", async move {
                    let rows = self.sender_rows(conversation, (after, up_to), apart_from).await?;
                    ids(rows, "messages.sender_id")
                }).await
            }

            /// The blocks between a set of users and a sender's set, both ways, in one read.
            async fn blocks_with(
                &self,
                conversation: ConversationId,
                users: &[UserId],
            ) -> Result<Vec<(UserId, UserId)>, StoreError> {
                timed("blocks_with", async move {
                    // Per user, two lookups by key (their blocks, and blocks of them), the users'
                    // at the same time; a room-wide join would look up every member.
                    let per_user = users.iter().map(|user| {
                        sqlx::query_as::<_, (String, String)>(
                            "SELECT k.user_id, k.peer_id FROM connections k \
                             JOIN members a ON a.conversation_id = $1 AND a.user_id = k.user_id AND a.left_seq IS NULL \
                             JOIN members b ON b.conversation_id = $1 AND b.user_id = k.peer_id AND b.left_seq IS NULL \
                             WHERE k.state = 'blocked' AND (k.user_id = $2 OR k.peer_id = $2)",
                        )
                        .bind(conversation.to_string())
                        .bind(user.to_string())
                        .fetch_all(&self.pool)
                    });
                    let mut blocks = Vec::new();
                    for rows in futures_util::future::try_join_all(per_user).await? {
                        for (blocker, blocked) in rows {
                            let pair = (parse_id(&blocker, "connections.user_id")?, parse_id(&blocked, "connections.peer_id")?);
                            // A block between two of `users` is found from both sides.
                            if !blocks.contains(&pair) {
                                blocks.push(pair);
                            }
                        }
                    }
                    Ok(blocks)
                }).await
            }

            /// A message's sender and the cursors that reached it (delivered or read), for the REST receipts answer.
            async fn receipts(&self, conversation: ConversationId, seq: i64) -> Result<Option<MessageReceipts>, StoreError> {
                timed("receipts", async move {
                    let sender = sqlx::query_as::<_, (String, String)>(
                        "SELECT sender_id, sender_device FROM messages WHERE conversation_id = $1 AND seq = $2",
                    )
                    .bind(conversation.to_string())
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some((sender_id, sender_device)) = sender else { return Ok(None) };
                    // Only users the message was for: members when it was sent, not in a block
                    // either way with its sender (a blocker's cursor passes what it never got).
                    let cursors = sqlx::query_as::<_, (String, String, i64)>(concat!(
                        "SELECT cu.user_id, cu.device_id, cu.read_seq FROM cursors cu \
                         JOIN members mb ON mb.conversation_id = cu.conversation_id AND mb.user_id = cu.user_id \
                             AND mb.joined_seq < $2 AND (mb.left_seq IS NULL OR $2 <= mb.left_seq) \
                         WHERE cu.conversation_id = $1 AND (cu.delivered_seq >= $2 OR cu.read_seq >= $2) AND NOT ",
                        blocks!("cu.user_id", "$3"),
                        " AND NOT ",
                        blocks!("$3", "cu.user_id"),
                        " ORDER BY cu.user_id",
                    ))
                    .bind(conversation.to_string())
                    .bind(seq)
                    .bind(&sender_id)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut receipts = MessageReceipts {
                        seq,
                        sender_id: parse_id(&sender_id, "messages.sender_id")?,
                        sent: true,
                        delivered_devices: 0,
                        delivered_users: Vec::new(),
                        read_users: Vec::new(),
                    };
                    for (user, device, read) in cursors {
                        if device == sender_device {
                            continue;
                        }
                        receipts.delivered_devices += 1;
                        if user == sender_id {
                            continue;
                        }
                        let user: UserId = parse_id(&user, "cursors.user_id")?;
                        if !receipts.delivered_users.contains(&user) {
                            receipts.delivered_users.push(user);
                        }
                        if read >= seq && !receipts.read_users.contains(&user) {
                            receipts.read_users.push(user);
                        }
                    }
                    Ok(Some(receipts))
                }).await
            }
        }

        /// Where the first copy of a message (by device and client_msg_id) was stored.
        async fn first_copy(
            pool: &sqlx::Pool<$db>,
            message: &NewMessage<'_>,
        ) -> Result<Option<Appended>, DbError> {
            let row = sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT conversation_id, seq, server_ts FROM messages \
                 WHERE sender_device = $1 AND client_msg_id = $2",
            )
            .bind(message.sender_device.to_string())
            .bind(message.client_msg_id)
            .fetch_optional(pool)
            .await?;
            row.map(|(conversation, seq, server_ts)| {
                Ok(Appended {
                    conversation_id: parse_id(&conversation, "messages.conversation_id")?,
                    seq,
                    server_ts,
                    duplicate: true,
                })
            })
            .transpose()
        }
    };
}

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::*;
    message_log!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::*;
    message_log!(PgStore, sqlx::Postgres);
}
