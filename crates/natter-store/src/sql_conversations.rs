//! [`ConversationStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see
//! `lib.rs` for why a macro).
//!
//! Tables: `conversations` (kind, name, the `direct_key` that makes a pair's direct
//! conversation unique, the last seq and the members version) and `members` (a window of seqs
//! from `joined_seq` to `left_seq`, so a former member keeps reading what was sent while they
//! were in). Every membership change bumps `members_version` in the same transaction
//! (`lock_members`), which is what natter-core's member lists compare against. A post's checks
//! are read in one round trip (`send_plan`, `room_check`, with the shared rows in
//! `sql_messages`).

use async_trait::async_trait;
use natter_proto::connections::ConnectionState;
use natter_proto::conversations::ConversationSummary;
use natter_proto::limits::UNREAD_COUNTED_MAX;
use natter_proto::{ConversationId, UserId};

use super::driver_errors::DbError;
use super::sql::{PgStore, SqliteStore, classify, parse_id, parse_state};
use super::sql_messages::{
    CheckRow, MemberRow, PlanRow, ROOM_CHECK, SEND_PLAN, conversations_of, ids, kind, summaries,
};
use super::{
    ConversationRecord, ConversationStore, MemberRecord, RoomCheck, SendPlan, StoreError, timed,
};

/// Implements [`ConversationStore`] for a store type with `pool` and `writer` fields.
macro_rules! conversation_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl ConversationStore for $store {
            /// Reads the pair's `direct_key` first; only when absent takes the writer and inserts, and a racing insert's conflict is answered with the row it made.
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
                        return Ok(existing().await?.ok_or(StoreError::Missing("conversation"))?);
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

            /// The room and its members in one transaction.
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

            /// One read by primary key.
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

            /// One read of a membership row (current or past).
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

            /// The current members (`left_seq IS NULL`).
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

            /// Bumps the members version and takes the room's last seq (`lock_members`), then inserts the newcomers, refusing past the room size limit.
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
                        return Err(StoreError::Conflict("room size").into());
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

            /// Bumps the members version and marks the row left at the room's last seq, so history up to there stays readable.
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

            /// The user's conversations with their last seq and the user's cursors, one query.
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

            /// One conversation of the user, in the same shape as `conversations_of`.
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

            /// Whether two users are current members of one room: one join of their membership rows, `LIMIT 1`.
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

            /// Kind, membership, suspension, connection and blockers for a post, in one round trip (the shared `SEND_PLAN` rows).
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

            /// The smaller read a listed room needs: its members version and the sender's membership and blockers (`ROOM_CHECK`).
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
        }

        /// Locks a conversation's row for a membership change (for the rest of the transaction)
        /// and bumps its members version; returns its last seq.
        async fn lock_members(
            tx: &mut sqlx::Transaction<'static, $db>,
            conversation: ConversationId,
        ) -> Result<i64, DbError> {
            sqlx::query_scalar(
                "UPDATE conversations SET members_version = members_version + 1 WHERE id = $1 RETURNING last_seq",
            )
                .bind(conversation.to_string())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(StoreError::Missing("conversation").into())
        }

        /// Inserts (or revives) memberships starting after `joined_seq`, many rows per statement.
        async fn insert_members(
            tx: &mut sqlx::Transaction<'static, $db>,
            conversation: ConversationId,
            users: Vec<(UserId, &'static str)>,
            joined_seq: i64,
            now: i64,
        ) -> Result<(), DbError> {
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

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::*;
    use crate::dialect::sqlite::BEGIN_WRITE;
    conversation_store!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::*;
    use crate::dialect::postgres::BEGIN_WRITE;
    conversation_store!(PgStore, sqlx::Postgres);
}
