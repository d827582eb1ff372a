//! [`MessageStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see
//! `sql.rs` for why a macro).

use async_trait::async_trait;
use natter_proto::connections::ConnectionState;
use natter_proto::conversations::{ConversationKind, ConversationSummary, MessageReceipts, Role};
use natter_proto::limits::{INBOX_FROM_ONE_DEVICE_MAX, INBOX_PENDING_MAX, UNREAD_COUNTED_MAX};
use natter_proto::ws::{Message, ToDeviceIn};
use natter_proto::{ConversationId, DeviceId, UserId};

use super::dialect;
use super::group_commit::GroupCommit;
use super::messages::{
    Appended, ConversationRecord, CursorStart, MemberRecord, MessageStore, NewMessage, OnStored,
    RoomCheck, SendPlan,
};
use super::sql::{classify, parse_id, parse_state};
use super::sql_writes::{
    INSERT_MESSAGE, MOVE_CURSOR, NEXT_SEQ, QueuedCursor, QueuedMessage, Write, Writes, settle,
};
use super::{PgStore, SqliteStore, StoreError, timed};

#[derive(sqlx::FromRow)]
struct MessageRow {
    conversation_id: String,
    seq: i64,
    sender_id: String,
    sender_device: String,
    client_msg_id: String,
    client_ts: Option<i64>,
    server_ts: i64,
    ciphertext: String,
}

impl MessageRow {
    fn into_message(self) -> Result<Message, StoreError> {
        Ok(Message {
            conversation_id: parse_id(&self.conversation_id, "messages.conversation_id")?,
            seq: self.seq,
            sender_id: parse_id(&self.sender_id, "messages.sender_id")?,
            sender_device_id: parse_id(&self.sender_device, "messages.sender_device")?,
            client_msg_id: self.client_msg_id,
            server_ts: self.server_ts,
            client_ts: self.client_ts,
            ciphertext: self.ciphertext,
        })
    }
}

fn messages(rows: Vec<MessageRow>) -> Result<Vec<Message>, StoreError> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: String,
    role: String,
    joined_seq: i64,
    left_seq: Option<i64>,
}

impl MemberRow {
    fn into_record(self) -> Result<MemberRecord, StoreError> {
        Ok(MemberRecord {
            user_id: parse_id(&self.user_id, "members.user_id")?,
            role: match self.role.as_str() {
                "owner" => Role::Owner,
                "member" => Role::Member,
                _ => return Err(StoreError::Corrupt("members.role")),
            },
            joined_seq: self.joined_seq,
            left_seq: self.left_seq,
        })
    }
}

fn kind(name: &str) -> Result<ConversationKind, StoreError> {
    match name {
        "direct" => Ok(ConversationKind::Direct),
        "room" => Ok(ConversationKind::Room),
        _ => Err(StoreError::Corrupt("conversations.kind")),
    }
}

fn ids<T: std::str::FromStr>(
    rows: Vec<String>,
    column: &'static str,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|id| parse_id(id, column)).collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of a message row, for `SELECT`.
macro_rules! message_columns {
    ($alias:literal) => {
        concat!(
            $alias,
            ".conversation_id, ",
            $alias,
            ".seq, ",
            $alias,
            ".sender_id, ",
            $alias,
            ".sender_device, ",
            $alias,
            ".client_msg_id, ",
            $alias,
            ".client_ts, ",
            $alias,
            ".server_ts, ",
            $alias,
            ".ciphertext"
        )
    };
}

/// Whether user `$who` blocks user `$whom` (SQL expressions): one lookup by primary key. For
/// "either way", use it twice: an `OR` inside one lookup would scan every connection.
macro_rules! blocks {
    ($who:literal, $whom:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM connections k WHERE k.user_id = ",
            $who,
            " AND k.peer_id = ",
            $whom,
            " AND k.state = 'blocked')"
        )
    };
}

/// A user's ($1) current conversations with their unread counts (up to $2), `filter` narrowing
/// which: a [`ConversationSummary`] per row.
macro_rules! conversations_of {
    ($filter:literal) => {
        concat!(
            "SELECT t.id, t.kind, t.name, t.last_seq, t.read_seq, \
               (SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.conversation_id = t.id \
                  AND m.sender_id <> $1 AND m.seq > t.read_seq AND m.seq > t.joined_seq \
                  AND NOT ",
            blocks!("$1", "m.sender_id"),
            " LIMIT $2) u) \
             FROM (SELECT c.id, c.kind, c.name, c.last_seq, c.last_ts, mb.joined_seq, \
                     COALESCE((SELECT MAX(cu.read_seq) FROM cursors cu \
                         WHERE cu.conversation_id = c.id AND cu.user_id = $1), 0) AS read_seq \
                   FROM members mb JOIN conversations c ON c.id = mb.conversation_id \
                   WHERE mb.user_id = $1 AND mb.left_seq IS NULL ",
            $filter,
            ") t ORDER BY t.last_ts DESC, t.id"
        )
    };
}

/// The rows of [`conversations_of!`] as summaries.
fn summaries(
    rows: Vec<(String, String, Option<String>, i64, i64, i64)>,
) -> Result<Vec<ConversationSummary>, StoreError> {
    rows.into_iter()
        .map(|(id, k, name, last_seq, read_seq, unread)| {
            Ok(ConversationSummary {
                id: parse_id(&id, "conversations.id")?,
                kind: kind(&k)?,
                name,
                last_seq,
                read_seq,
                unread,
            })
        })
        .collect()
}

/// What a viewer may see of a conversation's log: their membership window, minus senders they block.
macro_rules! visible_to_viewer {
    () => {
        concat!(
            " JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = $2 \
              WHERE m.conversation_id = $1 AND m.seq > mb.joined_seq \
              AND (mb.left_seq IS NULL OR m.seq <= mb.left_seq) AND NOT ",
            blocks!("$2", "m.sender_id"),
            " "
        )
    };
}

/// A send plan's rows, one per current member: the conversation's kind and members version,
/// the member, the sender's side of a connection towards them and theirs towards the sender,
/// and when the member was suspended.
type PlanRow = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The [`PlanRow`]s of conversation `$1` for sender `$2`.
const SEND_PLAN: &str = "SELECT c.kind, c.members_version, m.user_id, \
     (SELECT k.state FROM connections k WHERE k.user_id = $2 AND k.peer_id = m.user_id), \
     (SELECT k.state FROM connections k WHERE k.user_id = m.user_id AND k.peer_id = $2), \
     u.suspended_at \
     FROM conversations c JOIN members m ON m.conversation_id = c.id AND m.left_seq IS NULL \
     JOIN users u ON u.id = m.user_id \
     WHERE c.id = $1";

/// A room check's rows: the members version, whether the sender is a member, when the sender
/// was suspended, and one user blocking the sender per row (one row with none if none does).
type CheckRow = (i64, bool, Option<i64>, Option<String>);

/// The [`CheckRow`]s of room `$1` for sender `$2`.
const ROOM_CHECK: &str = "SELECT c.members_version, \
     EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = c.id AND m.user_id = $2 \
         AND m.left_seq IS NULL), \
     (SELECT u.suspended_at FROM users u WHERE u.id = $2), \
     b.user_id \
     FROM conversations c LEFT JOIN connections b ON b.peer_id = $2 AND b.state = 'blocked' \
     WHERE c.id = $1";

/// The current members who sent messages `($2, $3]` of conversation `$1`, but those in a block
/// with user `$4`. Two lookups by primary key (an OR would scan every connection); with no `$4`,
/// `= NULL` never holds: nobody is left out.
const SENDERS_BETWEEN: &str = concat!(
    "SELECT DISTINCT m.sender_id FROM messages m \
     JOIN members mb ON mb.conversation_id = m.conversation_id \
         AND mb.user_id = m.sender_id AND mb.left_seq IS NULL \
     WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq <= $3 AND NOT ",
    blocks!("$4", "m.sender_id"),
    " AND NOT ",
    blocks!("m.sender_id", "$4"),
);

/// Implements [`MessageStore`] for a store type with `pool`, `writer` and `writes` fields and
/// the per-message reads (`rows_for`, `sender_rows`).
macro_rules! message_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl MessageStore for $store {
            async fn direct_conversation(&self, a: UserId, b: UserId, now: i64) -> Result<ConversationId, StoreError> {
                timed("direct_conversation", async move {
                    let (low, high) = if a.to_string() < b.to_string() { (a, b) } else { (b, a) };
                    let key = format!("{low}:{high}");
                    let existing = || async {
                        let id: Option<String> = sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
                            .bind(&key)
                            .fetch_optional(&self.pool)
                            .await?;
                        id.map(|id| parse_id(&id, "conversations.id")).transpose()
                    };
                    if let Some(id) = existing().await? {
                        return Ok(id);
                    }
                    let id = ConversationId::new();
                    // Only creating it is a write: an existing chat is found without the turn.
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    let created = sqlx::query(
                        "INSERT INTO conversations (id, kind, name, direct_key, created_at, last_seq, last_ts) \
                         VALUES ($1, 'direct', NULL, $2, $3, 0, $3) ON CONFLICT (direct_key) DO NOTHING",
                    )
                    .bind(id.to_string())
                    .bind(&key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if created.rows_affected() == 0 {
                        // Rolled back before the turn is given up, not after.
                        tx.rollback().await?;
                        drop(writer);
                        return existing().await?.ok_or(StoreError::Missing("conversation"));
                    }
                    for user in [low, high] {
                        sqlx::query(
                            "INSERT INTO members (conversation_id, user_id, role, joined_seq, joined_at) \
                             VALUES ($1, $2, 'member', 0, $3)",
                        )
                        .bind(id.to_string())
                        .bind(user.to_string())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| classify(e, "member", "user"))?;
                    }
                    tx.commit().await?;
                    Ok(id)
                }).await
            }

            async fn create_room(
                &self,
                id: ConversationId,
                name: &str,
                owner: UserId,
                members: &[UserId],
                now: i64,
            ) -> Result<(), StoreError> {
                timed("create_room", async move {
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    sqlx::query(
                        "INSERT INTO conversations (id, kind, name, direct_key, created_at, last_seq, last_ts) \
                         VALUES ($1, 'room', $2, NULL, $3, 0, $3)",
                    )
                    .bind(id.to_string())
                    .bind(name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let everyone = std::iter::once((owner, "owner")).chain(members.iter().map(|m| (*m, "member")));
                    insert_members(&mut tx, id, everyone.collect(), 0, now).await?;
                    tx.commit().await?;
                    Ok(())
                }).await
            }

            async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationRecord>, StoreError> {
                timed("conversation", async move {
                    let row = sqlx::query_as::<_, (String, Option<String>, i64)>(
                        "SELECT kind, name, last_seq FROM conversations WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|(k, name, last_seq)| Ok(ConversationRecord { id, kind: kind(&k)?, name, last_seq }))
                        .transpose()
                }).await
            }

            async fn member(&self, conversation: ConversationId, user: UserId) -> Result<Option<MemberRecord>, StoreError> {
                timed("member", async move {
                    sqlx::query_as::<_, MemberRow>(
                        "SELECT user_id, role, joined_seq, left_seq FROM members \
                         WHERE conversation_id = $1 AND user_id = $2",
                    )
                    .bind(conversation.to_string())
                    .bind(user.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(MemberRow::into_record)
                    .transpose()
                }).await
            }

            async fn members(&self, conversation: ConversationId) -> Result<Vec<MemberRecord>, StoreError> {
                timed("members", async move {
                    sqlx::query_as::<_, MemberRow>(
                        "SELECT user_id, role, joined_seq, left_seq FROM members \
                         WHERE conversation_id = $1 AND left_seq IS NULL ORDER BY joined_at, user_id",
                    )
                    .bind(conversation.to_string())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(MemberRow::into_record)
                    .collect()
                }).await
            }

            async fn add_members(
                &self,
                conversation: ConversationId,
                users: &[UserId],
                max: usize,
                now: i64,
            ) -> Result<Vec<UserId>, StoreError> {
                timed("add_members", async move {
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    let last_seq = lock_members(&mut tx, conversation).await?;
                    let current: Vec<String> = sqlx::query_scalar(
                        "SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq IS NULL",
                    )
                    .bind(conversation.to_string())
                    .fetch_all(&mut *tx)
                    .await?;
                    let current: std::collections::HashSet<UserId> = ids(current, "members.user_id")?.into_iter().collect();
                    let mut added: Vec<UserId> = Vec::new();
                    for user in users {
                        if !current.contains(user) && !added.contains(user) {
                            added.push(*user);
                        }
                    }
                    if current.len() + added.len() > max {
                        return Err(StoreError::Conflict("room size"));
                    }
                    if added.is_empty() {
                        // Nothing changed: rolled back, so the members version stays.
                        return Ok(added);
                    }
                    insert_members(&mut tx, conversation, added.iter().map(|u| (*u, "member")).collect(), last_seq, now).await?;
                    tx.commit().await?;
                    Ok(added)
                }).await
            }

            async fn remove_member(&self, conversation: ConversationId, user: UserId) -> Result<bool, StoreError> {
                timed("remove_member", async move {
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    let last_seq = lock_members(&mut tx, conversation).await?;
                    let left = sqlx::query(
                        "UPDATE members SET left_seq = $3, role = 'member' \
                         WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL",
                    )
                    .bind(conversation.to_string())
                    .bind(user.to_string())
                    .bind(last_seq)
                    .execute(&mut *tx)
                    .await?;
                    if left.rows_affected() == 0 {
                        // Not a member: rolled back, so the members version stays.
                        return Ok(false);
                    }
                    // A room always has an owner while it has members: the longest-standing one inherits.
                    sqlx::query(
                        "UPDATE members SET role = 'owner' WHERE conversation_id = $1 AND user_id = \
                         (SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq IS NULL \
                          ORDER BY joined_at, user_id LIMIT 1) \
                         AND NOT EXISTS (SELECT 1 FROM members WHERE conversation_id = $1 \
                             AND left_seq IS NULL AND role = 'owner') \
                         AND (SELECT kind FROM conversations WHERE id = $1) = 'room'",
                    )
                    .bind(conversation.to_string())
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                }).await
            }

            async fn conversations_of(&self, user: UserId) -> Result<Vec<ConversationSummary>, StoreError> {
                timed("conversations_of", async move {
                    let rows = sqlx::query_as(conversations_of!(""))
                        .bind(user.to_string())
                        .bind(UNREAD_COUNTED_MAX)
                        .fetch_all(&self.pool)
                        .await?;
                    summaries(rows)
                }).await
            }

            async fn conversation_of(&self, user: UserId, id: ConversationId) -> Result<Option<ConversationSummary>, StoreError> {
                timed("conversation_of", async move {
                    let rows = sqlx::query_as(conversations_of!("AND c.id = $3"))
                        .bind(user.to_string())
                        .bind(UNREAD_COUNTED_MAX)
                        .bind(id.to_string())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(summaries(rows)?.pop())
                }).await
            }

            async fn share_room(&self, a: UserId, b: UserId) -> Result<bool, StoreError> {
                timed("share_room", async move {
                    let shared: Option<i32> = sqlx::query_scalar(
                        "SELECT 1 FROM members x JOIN members y ON x.conversation_id = y.conversation_id \
                         JOIN conversations c ON c.id = x.conversation_id AND c.kind = 'room' \
                         WHERE x.user_id = $1 AND y.user_id = $2 AND x.left_seq IS NULL AND y.left_seq IS NULL LIMIT 1",
                    )
                    .bind(a.to_string())
                    .bind(b.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(shared.is_some())
                }).await
            }

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
                        None => first_copy(&self.pool, message).await?.ok_or(StoreError::Missing("conversation")),
                    }
                }).await
            }

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
                }).await
            }

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

            async fn send_plan(
                &self,
                conversation: ConversationId,
                sender: UserId,
            ) -> Result<Option<SendPlan>, StoreError> {
                timed("send_plan", async move {
                    // Per current member: the sender's side towards them, and theirs towards
                    // the sender (`blocked` keeps the message from them).
                    let rows: Vec<PlanRow> = self.rows_for(SEND_PLAN, conversation, sender).await?;
                    let Some((first_kind, members_version, ..)) = rows.first() else {
                        return Ok(None);
                    };
                    let mut plan = SendPlan {
                        kind: kind(first_kind)?,
                        members_version: *members_version,
                        is_member: false,
                        sender_suspended: false,
                        connected: true,
                        recipients: Vec::with_capacity(rows.len()),
                        blockers: Vec::new(),
                    };
                    let state = |side: Option<String>| side.map_or(Ok(ConnectionState::None), |s| parse_state(&s));
                    for (_, _, user, mine, theirs, suspended_at) in rows {
                        let user: UserId = parse_id(&user, "members.user_id")?;
                        if user == sender {
                            plan.is_member = true;
                            plan.sender_suspended = suspended_at.is_some();
                        } else if state(mine)? != ConnectionState::Accepted {
                            plan.connected = false;
                        }
                        if state(theirs)? == ConnectionState::Blocked {
                            plan.blockers.push(user);
                        } else {
                            plan.recipients.push(user);
                        }
                    }
                    Ok(Some(plan))
                }).await
            }

            async fn room_check(
                &self,
                conversation: ConversationId,
                sender: UserId,
            ) -> Result<Option<RoomCheck>, StoreError> {
                timed("room_check", async move {
                    let rows: Vec<CheckRow> = self.rows_for(ROOM_CHECK, conversation, sender).await?;
                    let Some(&(members_version, is_member, suspended_at, _)) = rows.first() else {
                        return Ok(None);
                    };
                    let blockers = rows.into_iter().filter_map(|(.., blocker)| blocker).collect();
                    Ok(Some(RoomCheck {
                        members_version,
                        is_member,
                        sender_suspended: suspended_at.is_some(),
                        blockers: ids(blockers, "connections.user_id")?,
                    }))
                }).await
            }

            async fn push_inbox(
                &self,
                sender: UserId,
                sender_device: DeviceId,
                items: &[(DeviceId, &str)],
                now: i64,
            ) -> Result<Vec<Option<ToDeviceIn>>, StoreError> {
                timed("push_inbox", async move {
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    let mut stored = Vec::with_capacity(items.len());
                    for (device, payload) in items {
                        // Acknowledgements remove a prefix, so what waits is oldest..=last.
                        let (last, oldest, from_sender): (i64, Option<i64>, i64) = sqlx::query_as(
                            "SELECT d.inbox_seq, (SELECT MIN(seq) FROM inbox WHERE device_id = d.id), \
                               (SELECT COUNT(*) FROM inbox WHERE device_id = d.id AND sender_device = $2) \
                             FROM devices d WHERE d.id = $1",
                        )
                        .bind(device.to_string())
                        .bind(sender_device.to_string())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or(StoreError::Missing("device"))?;
                        let waiting = oldest.map_or(0, |oldest| last - oldest + 1);
                        if waiting >= INBOX_PENDING_MAX || from_sender >= INBOX_FROM_ONE_DEVICE_MAX {
                            stored.push(None);
                            continue;
                        }
                        let seq: i64 = sqlx::query_scalar(
                            "UPDATE devices SET inbox_seq = inbox_seq + 1 WHERE id = $1 RETURNING inbox_seq",
                        )
                        .bind(device.to_string())
                        .fetch_one(&mut *tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO inbox (device_id, seq, sender_id, sender_device, payload, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(device.to_string())
                        .bind(seq)
                        .bind(sender.to_string())
                        .bind(sender_device.to_string())
                        .bind(*payload)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        stored.push(Some(ToDeviceIn { seq, sender_id: sender, sender_device_id: sender_device, payload: (*payload).to_owned() }));
                    }
                    tx.commit().await?;
                    Ok(stored)
                }).await
            }

            async fn inbox(&self, device: DeviceId, after: i64, limit_to: usize) -> Result<Vec<ToDeviceIn>, StoreError> {
                timed("inbox", async move {
                    let rows = sqlx::query_as::<_, (i64, String, String, String)>(
                        "SELECT seq, sender_id, sender_device, payload FROM inbox \
                         WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    )
                    .bind(device.to_string())
                    .bind(after)
                    .bind(limit(limit_to))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map(|(seq, sender, sender_device, payload)| {
                            Ok(ToDeviceIn {
                                seq,
                                sender_id: parse_id(&sender, "inbox.sender_id")?,
                                sender_device_id: parse_id(&sender_device, "inbox.sender_device")?,
                                payload,
                            })
                        })
                        .collect()
                }).await
            }

            async fn ack_inbox(&self, device: DeviceId, seq: i64) -> Result<(), StoreError> {
                timed("ack_inbox", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query("DELETE FROM inbox WHERE device_id = $1 AND seq <= $2")
                        .bind(device.to_string())
                        .bind(seq)
                        .execute(&*writer)
                        .await?;
                    Ok(())
                }).await
            }

            async fn device_owner(&self, device: DeviceId) -> Result<Option<UserId>, StoreError> {
                timed("device_owner", async move {
                    let owner: Option<String> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
                        .bind(device.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                    owner.map(|o| parse_id(&o, "devices.user_id")).transpose()
                }).await
            }
        }

        /// Where the first copy of a message (by device and client_msg_id) was stored.
        async fn first_copy(
            pool: &sqlx::Pool<$db>,
            message: &NewMessage<'_>,
        ) -> Result<Option<Appended>, StoreError> {
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

        /// Locks a conversation's row for a membership change (for the rest of the transaction)
        /// and bumps its members version; returns its last seq.
        async fn lock_members(
            tx: &mut sqlx::Transaction<'static, $db>,
            conversation: ConversationId,
        ) -> Result<i64, StoreError> {
            sqlx::query_scalar(
                "UPDATE conversations SET members_version = members_version + 1 WHERE id = $1 RETURNING last_seq",
            )
                .bind(conversation.to_string())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(StoreError::Missing("conversation"))
        }

        /// Inserts (or revives) memberships starting after `joined_seq`, many rows per statement.
        async fn insert_members(
            tx: &mut sqlx::Transaction<'static, $db>,
            conversation: ConversationId,
            users: Vec<(UserId, &'static str)>,
            joined_seq: i64,
            now: i64,
        ) -> Result<(), StoreError> {
            for chunk in users.chunks(500) {
                let mut insert = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO members (conversation_id, user_id, role, joined_seq, joined_at) ",
                );
                insert.push_values(chunk, |mut row, (user, role)| {
                    row.push_bind(conversation.to_string())
                        .push_bind(user.to_string())
                        .push_bind(*role)
                        .push_bind(joined_seq)
                        .push_bind(now);
                });
                insert.push(
                    " ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, \
                     joined_seq = excluded.joined_seq, joined_at = excluded.joined_at, left_seq = NULL",
                );
                insert.build().execute(&mut **tx).await.map_err(|e| classify(e, "member", "user"))?;
            }
            Ok(())
        }
    };
}

mod sqlite_impl {
    use super::dialect::sqlite::BEGIN_WRITE;
    use super::*;
    use crate::store::sqlite_writer::rows;
    message_store!(SqliteStore, sqlx::Sqlite);

    /// The per-message reads, on the writer thread.
    impl SqliteStore {
        /// The rows of `sql` (a [`SEND_PLAN`] or [`ROOM_CHECK`]) for `conversation` and `sender`.
        async fn rows_for<T>(
            &self,
            sql: &'static str,
            conversation: ConversationId,
            sender: UserId,
        ) -> Result<Vec<T>, StoreError>
        where
            T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error> + Send + 'static,
        {
            let args = (conversation.to_string(), sender.to_string());
            self.writes.read(move |db| rows(db, sql, args)).await
        }

        async fn sender_rows(
            &self,
            conversation: ConversationId,
            (after, up_to): (i64, i64),
            apart_from: Option<UserId>,
        ) -> Result<Vec<String>, StoreError> {
            let args = (
                conversation.to_string(),
                after,
                up_to,
                apart_from.map(|user| user.to_string()),
            );
            let senders = self
                .writes
                .read(move |db| rows::<(String,)>(db, SENDERS_BETWEEN, args))
                .await?;
            Ok(senders.into_iter().map(|(sender,)| sender).collect())
        }
    }
}

mod postgres_impl {
    use super::dialect::postgres::BEGIN_WRITE;
    use super::*;
    message_store!(PgStore, sqlx::Postgres);

    /// The per-message reads, from the pool.
    impl PgStore {
        /// The rows of `sql` (a [`SEND_PLAN`] or [`ROOM_CHECK`]) for `conversation` and `sender`.
        async fn rows_for<T>(
            &self,
            sql: &'static str,
            conversation: ConversationId,
            sender: UserId,
        ) -> Result<Vec<T>, StoreError>
        where
            T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
        {
            Ok(sqlx::query_as(sql)
                .bind(conversation.to_string())
                .bind(sender.to_string())
                .fetch_all(&self.pool)
                .await?)
        }

        async fn sender_rows(
            &self,
            conversation: ConversationId,
            (after, up_to): (i64, i64),
            apart_from: Option<UserId>,
        ) -> Result<Vec<String>, StoreError> {
            Ok(sqlx::query_scalar(SENDERS_BETWEEN)
                .bind(conversation.to_string())
                .bind(after)
                .bind(up_to)
                .bind(apart_from.map(|user| user.to_string()))
                .fetch_all(&self.pool)
                .await?)
        }
    }

    impl PgStore {
        /// Starts the task that group-commits appends and cursor moves on `writer`.
        pub(in crate::store) fn group_writes(writer: sqlx::Pool<sqlx::Postgres>) -> Writes {
            GroupCommit::spawn(move |batch| {
                let writer = writer.clone();
                async move { write_batch(&writer, batch).await }
            })
        }
    }

    /// Writes a batch (see [`settle`]).
    async fn write_batch(writer: &sqlx::Pool<sqlx::Postgres>, batch: Vec<Write>) {
        settle(batch, |writes| {
            let writer = writer.clone();
            Box::pin(async move { write_in_one(&writer, writes).await })
        })
        .await;
    }

    /// Writes in one transaction, recording each write's outcome in it.
    async fn write_in_one(
        writer: &sqlx::Pool<sqlx::Postgres>,
        batch: &mut [Write],
    ) -> Result<(), StoreError> {
        let mut tx = writer.begin_with(BEGIN_WRITE).await?;
        for write in batch.iter_mut() {
            match write {
                Write::Append(message, _) => message.seq = append_one(&mut tx, message).await?,
                Write::MoveCursor(cursor, _) => cursor.after = move_one(&mut tx, cursor).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends a message: its seq, or `None` if this (device, client_msg_id) is already stored.
    async fn append_one(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        message: &QueuedMessage,
    ) -> Result<Option<i64>, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar(NEXT_SEQ)
            .bind(&message.conversation_id)
            .bind(message.server_ts)
            .bind(&message.sender_device)
            .bind(&message.client_msg_id)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(seq) = seq else { return Ok(None) };
        sqlx::query(INSERT_MESSAGE)
            .bind(&message.conversation_id)
            .bind(seq)
            .bind(&message.sender_id)
            .bind(&message.sender_device)
            .bind(&message.client_msg_id)
            .bind(message.client_ts)
            .bind(message.server_ts)
            .bind(&message.ciphertext)
            .execute(&mut **tx)
            .await
            .map_err(|e| classify(e, "message", "conversation"))?;
        Ok(Some(seq))
    }

    /// Moves a device's cursors (see [`MOVE_CURSOR`]).
    async fn move_one(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        cursor: &QueuedCursor,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        sqlx::query_as::<_, (i64, i64)>(MOVE_CURSOR)
            .bind(&cursor.device_id)
            .bind(&cursor.conversation_id)
            .bind(&cursor.user_id)
            .bind(cursor.delivered_seq)
            .bind(cursor.read_seq)
            .fetch_optional(&mut **tx)
            .await
            // A device gone is no row (see MOVE_CURSOR); a missing reference is the conversation.
            .map_err(|e| classify(e, "cursor", "conversation"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewDevice, NewMessage, Store, testing};

    #[tokio::test]
    async fn unread_counts_leave_out_blocked_senders_and_stop_at_the_cap() {
        testing::on_each_backend(async |store| {
            let store = store.as_ref();
            let users = testing::users(store, ["reader", "poster", "blocked"]).await;
            let (reader, poster, blocked) = (users[0], users[1], users[2]);
            let room = ConversationId::new();
            store
                .create_room(room, "room", poster, &[reader, blocked], 0)
                .await
                .unwrap();
            let block = |_| Ok((ConnectionState::Blocked, ConnectionState::None));
            store
                .change_connection(reader, blocked, 0, &block)
                .await
                .unwrap()
                .unwrap();
            let post = async |sender, n: usize| {
                for i in 0..n {
                    let message = NewMessage {
                        conversation_id: room,
                        sender_id: sender,
                        sender_device: DeviceId::new(),
                        client_msg_id: &format!("{sender}-{i}"),
                        client_ts: None,
                        ciphertext: "opaque",
                        server_ts: 0,
                    };
                    store.append(&message, Box::new(|_| {})).await.unwrap();
                }
            };
            post(blocked, 3).await;
            post(poster, 2).await;
            let unread = async || store.conversation_of(reader, room).await.unwrap().unwrap();
            let summary = unread().await;
            assert_eq!((summary.last_seq, summary.unread), (5, 2));
            assert_eq!(store.conversations_of(reader).await.unwrap(), [summary]);
            post(poster, UNREAD_COUNTED_MAX as usize).await;
            assert_eq!(unread().await.unread, UNREAD_COUNTED_MAX);
            assert!(
                store
                    .conversation_of(poster, ConversationId::new())
                    .await
                    .unwrap()
                    .is_none()
            );
        })
        .await;
    }

    #[tokio::test]
    async fn expired_devices_are_removed_in_batches_with_their_inbox() {
        testing::on_each_backend(async |store| {
            let store = store.as_ref();
            let users = testing::users(store, ["owner"]).await;
            for (n, expires_at) in [10, 20, 30, 1_000].into_iter().enumerate() {
                let id = DeviceId::new();
                let hash = format!("hash-{n}");
                let new = NewDevice {
                    id,
                    user_id: users[0],
                    name: "device",
                    token_hash: &hash,
                    created_at: 0,
                    expires_at,
                };
                store.create_device(&new).await.unwrap();
                store
                    .push_inbox(users[0], id, &[(id, "share")], 0)
                    .await
                    .unwrap();
            }
            let listed = async || store.devices(&users, 100).await.unwrap().len();
            assert_eq!(listed().await, 1, "expired devices are not listed");
            assert_eq!(store.delete_expired_devices(100, 2).await.unwrap(), 2);
            assert_eq!(store.delete_expired_devices(100, 2).await.unwrap(), 1);
            assert_eq!(store.delete_expired_devices(100, 2).await.unwrap(), 0);
            assert_eq!(
                store.devices(&users, 0).await.unwrap().len(),
                1,
                "the live one stays"
            );
            assert_eq!(
                store.inbox_depth().await.unwrap(),
                1,
                "their inboxes went with them"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn an_inbox_takes_a_bounded_share_from_each_sender_and_in_all() {
        testing::on_each_backend(async |store| {
            let store = store.as_ref();
            let users = testing::users(store, ["owner"]).await;
            let target = DeviceId::new();
            let device = NewDevice {
                id: target,
                user_id: users[0],
                name: "target",
                token_hash: "hash",
                created_at: 0,
                expires_at: i64::MAX,
            };
            store.create_device(&device).await.unwrap();
            let one = [(target, "one more")];
            let push = async |sender, items: &[(DeviceId, &str)]| {
                store.push_inbox(users[0], sender, items, 0).await.unwrap()
            };
            let share = vec![(target, "share"); INBOX_FROM_ONE_DEVICE_MAX as usize];
            for _ in 0..INBOX_PENDING_MAX / INBOX_FROM_ONE_DEVICE_MAX {
                let sender = DeviceId::new();
                assert!(push(sender, &share).await.iter().all(Option::is_some));
                assert_eq!(push(sender, &one).await, [None], "a sender's share is full");
            }
            assert_eq!(
                push(DeviceId::new(), &one).await,
                [None],
                "the inbox is full"
            );
            // Acknowledging the oldest thousand makes room for a new sender.
            store
                .ack_inbox(target, INBOX_FROM_ONE_DEVICE_MAX)
                .await
                .unwrap();
            assert!(push(DeviceId::new(), &one).await[0].is_some());
        })
        .await;
    }

    #[tokio::test]
    async fn a_bad_write_among_others_fails_alone_and_skips_no_seq() {
        testing::on_each_backend(async |store| {
            let store = store.as_ref();
            let users = testing::users(store, ["alice", "bob"]).await;
            let (alice, bob) = (users[0], users[1]);
            let chat = store.direct_conversation(alice, bob, 0).await.unwrap();
            let phone = DeviceId::new();
            let device = NewDevice {
                id: phone,
                user_id: bob,
                name: "phone",
                token_hash: "hash",
                created_at: 0,
                expires_at: i64::MAX,
            };
            store.create_device(&device).await.unwrap();
            let message = |id| NewMessage {
                conversation_id: chat,
                sender_id: alice,
                sender_device: DeviceId::new(),
                client_msg_id: id,
                client_ts: None,
                ciphertext: "opaque",
                server_ts: 0,
            };
            // Submitted together, so a group commit takes them in one batch.
            let first = message("first");
            let (stored, moved, no_conversation, no_device) = tokio::join!(
                store.append(&first, Box::new(|_| {})),
                store.move_cursor(phone, bob, chat, 1, 0),
                store.move_cursor(phone, bob, ConversationId::new(), 1, 0),
                store.move_cursor(DeviceId::new(), bob, chat, 1, 0),
            );
            assert_eq!(stored.unwrap().seq, 1);
            assert_eq!(moved.unwrap(), (1, 0));
            assert!(
                matches!(no_conversation, Err(StoreError::Missing("conversation"))),
                "{no_conversation:?}"
            );
            assert!(
                matches!(no_device, Err(StoreError::Missing("device"))),
                "{no_device:?}"
            );
            let next = store.append(&message("second"), Box::new(|_| {})).await;
            assert_eq!(next.unwrap().seq, 2, "a failed batch left no seq behind");
        })
        .await;
    }

    /// The room's members version, as a send plan reads it.
    async fn version(store: &dyn Store, room: ConversationId, member: UserId) -> i64 {
        let plan = store.send_plan(room, member).await.unwrap().unwrap();
        plan.members_version
    }

    #[tokio::test]
    async fn only_a_membership_change_that_changes_something_bumps_the_members_version() {
        testing::on_each_backend(async |store| {
            let store = store.as_ref();
            let users = testing::users(store, ["owner", "member", "outsider"]).await;
            let (owner, member, outsider) = (users[0], users[1], users[2]);
            let room = ConversationId::new();
            store
                .create_room(room, "room", owner, &[member], 0)
                .await
                .unwrap();
            let start = version(store, room, owner).await;
            // Adding a member again, and removing a non-member, change nothing.
            assert!(
                store
                    .add_members(room, &[member], 10, 0)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(!store.remove_member(room, outsider).await.unwrap());
            assert_eq!(version(store, room, owner).await, start);
            // Real changes move it.
            assert_eq!(
                store.add_members(room, &[outsider], 10, 0).await.unwrap(),
                [outsider]
            );
            assert!(store.remove_member(room, member).await.unwrap());
            assert_eq!(version(store, room, owner).await, start + 2);
        })
        .await;
    }

    #[tokio::test]
    async fn blocks_with_finds_both_sides_of_the_given_users_blocks_once() {
        testing::on_each_backend(async |store| {
            let store = store.as_ref();
            let users = testing::users(store, (0..6).map(|i| format!("user{i}"))).await;
            let room = ConversationId::new();
            store
                .create_room(room, "room", users[0], &users[1..5], 0)
                .await
                .unwrap();
            let block = |_| Ok((ConnectionState::Blocked, ConnectionState::None));
            // 0 blocks 1 (both asked about), 4 blocks 1, 2 blocks 3 and 3 blocks 4 (neither
            // asked about), 1 blocks 5 (never a member) and 0 blocks 2 (who leaves).
            for (blocker, blocked) in [(0, 1), (4, 1), (2, 3), (3, 4), (1, 5), (0, 2)] {
                store
                    .change_connection(users[blocker], users[blocked], 0, &block)
                    .await
                    .unwrap()
                    .unwrap();
            }
            assert!(store.remove_member(room, users[2]).await.unwrap());
            let mut blocks = store
                .blocks_with(room, &[users[0], users[1]])
                .await
                .unwrap();
            blocks.sort();
            let mut expected = vec![(users[0], users[1]), (users[4], users[1])];
            expected.sort();
            assert_eq!(blocks, expected);
            assert!(store.blocks_with(room, &[]).await.unwrap().is_empty());
        })
        .await;
    }
}
