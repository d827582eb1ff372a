//! What the SQL of the conversation, message-log and inbox roles shares: the rows of the
//! message tables, SQL fragments (as macros, so they join into `concat!`ed statements), the
//! multi-row queries of a send, and each backend's way of running those (on SQLite's writer
//! thread, or from PostgreSQL's pool).

use natter_proto::conversations::{ConversationKind, ConversationSummary, Role};
use natter_proto::ws::Message;
use natter_proto::{ConversationId, UserId};

use super::conversations::MemberRecord;
use super::driver_errors::DbError;
use super::sql::parse_id;
use super::{PgStore, SqliteStore, StoreError};

/// A `messages` row, as [`message_columns!`] selects it.
#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    /// The conversation's id, as text.
    pub(super) conversation_id: String,
    /// The message's place in its conversation.
    pub(super) seq: i64,
    /// The sender's user id, as text.
    pub(super) sender_id: String,
    /// The sender's device id, as text.
    pub(super) sender_device: String,
    /// The sender's id for the message.
    pub(super) client_msg_id: String,
    /// The sender's clock when it sent, if it said.
    pub(super) client_ts: Option<i64>,
    /// When the server accepted it (ms).
    pub(super) server_ts: i64,
    /// The encrypted body.
    pub(super) ciphertext: String,
}

impl MessageRow {
    /// The message as the wire carries it, or `Corrupt` if an id does not parse.
    pub(super) fn into_message(self) -> Result<Message, DbError> {
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

/// Every row as a message, in the rows' order.
pub(super) fn messages(rows: Vec<MessageRow>) -> Result<Vec<Message>, DbError> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

/// A `members` row: one membership, current (`left_seq` null) or past.
#[derive(sqlx::FromRow)]
pub(super) struct MemberRow {
    /// The member's user id, as text.
    pub(super) user_id: String,
    /// `owner` or `member`.
    pub(super) role: String,
    /// The room's last seq when they joined: they read what comes after.
    pub(super) joined_seq: i64,
    /// The room's last seq when they left, if they did: they read up to it.
    pub(super) left_seq: Option<i64>,
}

impl MemberRow {
    /// The record, or `Corrupt` for an unknown role.
    pub(super) fn into_record(self) -> Result<MemberRecord, DbError> {
        Ok(MemberRecord {
            user_id: parse_id(&self.user_id, "members.user_id")?,
            role: match self.role.as_str() {
                "owner" => Role::Owner,
                "member" => Role::Member,
                _ => return Err(StoreError::Corrupt("members.role").into()),
            },
            joined_seq: self.joined_seq,
            left_seq: self.left_seq,
        })
    }
}

/// A conversation's kind from `conversations.kind`.
pub(super) fn kind(name: &str) -> Result<ConversationKind, DbError> {
    match name {
        "direct" => Ok(ConversationKind::Direct),
        "room" => Ok(ConversationKind::Room),
        _ => Err(StoreError::Corrupt("conversations.kind").into()),
    }
}

/// Parses a column of ids.
pub(super) fn ids<T: std::str::FromStr>(
    rows: Vec<String>,
    column: &'static str,
) -> Result<Vec<T>, DbError> {
    rows.iter().map(|id| parse_id(id, column)).collect()
}

/// A page size as SQL takes it (saturating: no page is that large).
pub(super) fn limit(n: usize) -> i64 {
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
pub(super) use message_columns;

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
pub(super) use blocks;

/// A user's ($1) current conversations with their unread counts (up to $2), `filter` narrowing
/// which: a [`ConversationSummary`] per row.
macro_rules! conversations_of {
    ($filter:literal) => {
        concat!(
            "SELECT t.id, t.kind, t.name, t.last_seq, t.read_seq, \
               (SELECT COUNT(*) FROM (SELECT 1 FROM messages m WHERE m.conversation_id = t.id \
                  AND m.sender_id <> $1 AND m.seq > t.read_seq AND m.seq > t.joined_seq \
                  AND NOT ",
            $crate::sql_messages::blocks!("$1", "m.sender_id"),
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
pub(super) use conversations_of;

/// The rows of [`conversations_of!`] as summaries.
pub(super) fn summaries(
    rows: Vec<(String, String, Option<String>, i64, i64, i64)>,
) -> Result<Vec<ConversationSummary>, DbError> {
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
            $crate::sql_messages::blocks!("$2", "m.sender_id"),
            " "
        )
    };
}
pub(super) use visible_to_viewer;

/// A send plan's rows, one per current member: the conversation's kind and members version,
/// the member, the sender's side of a connection towards them and theirs towards the sender,
/// and when the member was suspended.
pub(super) type PlanRow = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The [`PlanRow`]s of conversation `$1` for sender `$2`.
pub(super) const SEND_PLAN: &str = "SELECT c.kind, c.members_version, m.user_id, \
     (SELECT k.state FROM connections k WHERE k.user_id = $2 AND k.peer_id = m.user_id), \
     (SELECT k.state FROM connections k WHERE k.user_id = m.user_id AND k.peer_id = $2), \
     u.suspended_at \
     FROM conversations c JOIN members m ON m.conversation_id = c.id AND m.left_seq IS NULL \
     JOIN users u ON u.id = m.user_id \
     WHERE c.id = $1";

/// A room check's rows: the members version, whether the sender is a member, when the sender
/// was suspended, and one user blocking the sender per row (one row with none if none does).
pub(super) type CheckRow = (i64, bool, Option<i64>, Option<String>);

/// The [`CheckRow`]s of room `$1` for sender `$2`.
pub(super) const ROOM_CHECK: &str = "SELECT c.members_version, \
     EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = c.id AND m.user_id = $2 \
         AND m.left_seq IS NULL), \
     (SELECT u.suspended_at FROM users u WHERE u.id = $2), \
     b.user_id \
     FROM conversations c LEFT JOIN connections b ON b.peer_id = $2 AND b.state = 'blocked' \
     WHERE c.id = $1";

/// The current members who sent messages `($2, $3]` of conversation `$1`, but those in a block
/// with user `$4`. Two lookups by primary key (an OR would scan every connection); with no `$4`,
/// `= NULL` never holds: nobody is left out.
pub(super) const SENDERS_BETWEEN: &str = concat!(
    "SELECT DISTINCT m.sender_id FROM messages m \
     JOIN members mb ON mb.conversation_id = m.conversation_id \
         AND mb.user_id = m.sender_id AND mb.left_seq IS NULL \
     WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq <= $3 AND NOT ",
    blocks!("$4", "m.sender_id"),
    " AND NOT ",
    blocks!("m.sender_id", "$4"),
);

/// SQLite's reads of a send plan's rows and of senders: on the writer thread
/// (`SqliteWriter::read`).
mod sqlite_impl {
    use super::*;
    use crate::sqlite_writer::rows;

    /// The per-message reads, on the writer thread.
    impl SqliteStore {
        /// The rows of `sql` (a [`SEND_PLAN`] or [`ROOM_CHECK`]) for `conversation` and `sender`.
        pub(crate) async fn rows_for<T>(
            &self,
            sql: &'static str,
            conversation: ConversationId,
            sender: UserId,
        ) -> Result<Vec<T>, DbError>
        where
            T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error> + Send + 'static,
        {
            let args = (conversation.to_string(), sender.to_string());
            Ok(self.writes.read(move |db| rows(db, sql, args)).await?)
        }

        /// The rows of [`SENDERS_BETWEEN`]: who sent messages `(after, up_to]`, but those in a
        /// block with `apart_from`.
        pub(crate) async fn sender_rows(
            &self,
            conversation: ConversationId,
            (after, up_to): (i64, i64),
            apart_from: Option<UserId>,
        ) -> Result<Vec<String>, DbError> {
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

/// PostgreSQL's reads of the same rows: on the pool.
mod postgres_impl {
    use super::*;

    /// The per-message reads, from the pool.
    impl PgStore {
        /// The rows of `sql` (a [`SEND_PLAN`] or [`ROOM_CHECK`]) for `conversation` and `sender`.
        pub(crate) async fn rows_for<T>(
            &self,
            sql: &'static str,
            conversation: ConversationId,
            sender: UserId,
        ) -> Result<Vec<T>, DbError>
        where
            T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
        {
            Ok(sqlx::query_as(sql)
                .bind(conversation.to_string())
                .bind(sender.to_string())
                .fetch_all(&self.pool)
                .await?)
        }

        /// The rows of [`SENDERS_BETWEEN`], from the pool.
        pub(crate) async fn sender_rows(
            &self,
            conversation: ConversationId,
            (after, up_to): (i64, i64),
            apart_from: Option<UserId>,
        ) -> Result<Vec<String>, DbError> {
            Ok(sqlx::query_scalar(SENDERS_BETWEEN)
                .bind(conversation.to_string())
                .bind(after)
                .bind(up_to)
                .bind(apart_from.map(|user| user.to_string()))
                .fetch_all(&self.pool)
                .await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use natter_proto::DeviceId;
    use natter_proto::connections::ConnectionState;
    use natter_proto::limits::{INBOX_FROM_ONE_DEVICE_MAX, INBOX_PENDING_MAX, UNREAD_COUNTED_MAX};

    use super::*;
    use crate::{NewDevice, NewMessage, Store, testing};

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
