//! [`ConnectionStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see
//! `lib.rs` for why a macro).
//!
//! A connection (the social relationship) is two rows in `connections`, one per side, each
//! with its state and a version. A change creates both rows if they are missing, locks them
//! (`LOCK_SIDES`), reads both sides and lets natter-core's transition decide, then writes the
//! sides that changed, all in one transaction: two requests on one pair cannot both act on the
//! same old state. A refusal ([`Refusal`]) commits nothing.

use async_trait::async_trait;
use natter_proto::UserId;
use natter_proto::connections::ConnectionState;

use super::driver_errors::DbError;
use super::sql::{PgStore, SqliteStore, UserRow, classify, parse_id, parse_state};
use super::{
    ConnectionRecord, ConnectionStore, Refusal, Side, Sides, StoreError, Transition, timed,
};

/// One stored side of a pair, as read for [`sides`].
#[derive(sqlx::FromRow)]
struct SideRow {
    user_id: String,
    state: String,
    version: i64,
    updated_at: i64,
}

/// One of a user's sides with the peer's user row, as [`ConnectionStore::connections_of`]
/// lists them.
#[derive(sqlx::FromRow)]
struct ConnectionRow {
    state: String,
    version: i64,
    updated_at: i64,
    #[sqlx(flatten)]
    peer: UserRow,
}

/// A connection state as the `connections.state` column holds it (the inverse of
/// `parse_state`).
fn state_name(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::None => "none",
        ConnectionState::Requested => "requested",
        ConnectionState::Incoming => "incoming",
        ConnectionState::Accepted => "accepted",
        ConnectionState::Rejected => "rejected",
        ConnectionState::Blocked => "blocked",
    }
}

/// A side that has no row: no relationship, never changed.
const NEVER_WRITTEN: Side = Side {
    state: ConnectionState::None,
    version: 0,
    updated_at: 0,
};

/// Sorts the two stored sides of a pair into (mine, theirs).
fn sides(user: UserId, rows: Vec<SideRow>) -> Result<Sides, DbError> {
    let mut result = Sides {
        mine: NEVER_WRITTEN,
        theirs: NEVER_WRITTEN,
    };
    let user = user.to_string();
    for row in rows {
        let side = Side {
            state: parse_state(&row.state)?,
            version: row.version,
            updated_at: row.updated_at,
        };
        if row.user_id == user {
            result.mine = side;
        } else {
            result.theirs = side;
        }
    }
    Ok(result)
}

/// Implements [`ConnectionStore`] for a store type with `pool` and `writer` fields.
macro_rules! connection_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl ConnectionStore for $store {
            /// Both sides' rows of one pair, read at once (see `sides`).
            async fn connection(&self, user: UserId, peer: UserId) -> Result<Sides, StoreError> {
                timed("connection", async move {
                    let rows = sqlx::query_as::<_, SideRow>(
                        "SELECT user_id, state, version, updated_at FROM connections \
                         WHERE (user_id = $1 AND peer_id = $2) OR (user_id = $2 AND peer_id = $1)",
                    )
                    .bind(user.to_string())
                    .bind(peer.to_string())
                    .fetch_all(&self.pool)
                    .await?;
                    sides(user, rows)
                }).await
            }

            /// Which of `others` have an accepted connection with `user`, in one read with an id list.
            async fn accepted_among(
                &self,
                user: UserId,
                candidates: &[UserId],
            ) -> Result<std::collections::HashSet<UserId>, StoreError> {
                timed("accepted_among", async move {
                    let mut found = std::collections::HashSet::new();
                    for chunk in candidates.chunks(500) {
                        let mut query = sqlx::QueryBuilder::<$db>::new(
                            "SELECT peer_id FROM connections WHERE state = 'accepted' AND user_id = ",
                        );
                        query.push_bind(user.to_string()).push(" AND peer_id IN (");
                        let mut list = query.separated(", ");
                        for candidate in chunk {
                            list.push_bind(candidate.to_string());
                        }
                        query.push(")");
                        let rows: Vec<(String,)> = query.build_query_as().fetch_all(&self.pool).await?;
                        for (peer,) in rows {
                            found.insert(parse_id(&peer, "connections.peer_id")?);
                        }
                    }
                    Ok(found)
                }).await
            }

            /// A user's connections joined to the peers' profiles, newest change first.
            async fn connections_of(&self, user: UserId) -> Result<Vec<ConnectionRecord>, StoreError> {
                timed("connections_of", async move {
                    sqlx::query_as::<_, ConnectionRow>(
                        "SELECT c.state, c.version, c.updated_at, u.id, u.username, u.display_name, \
                         u.avatar_url, u.suspended_at FROM connections c JOIN users u ON u.id = c.peer_id \
                         WHERE c.user_id = $1 AND c.state <> 'none' ORDER BY c.updated_at DESC, u.id",
                    )
                    .bind(user.to_string())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|row| {
                        Ok(ConnectionRecord {
                            side: Side {
                                state: parse_state(&row.state)?,
                                version: row.version,
                                updated_at: row.updated_at,
                            },
                            peer: row.peer.into_record()?,
                        })
                    })
                    .collect()
                }).await
            }

            /// Creates both rows if missing, locks them (`LOCK_SIDES`: `FOR UPDATE` on PostgreSQL, the write transaction on SQLite) and applies the transition in one transaction, bumping each changed side's version.
            async fn change_connection(
                &self,
                user: UserId,
                peer: UserId,
                now: i64,
                transition: Transition<'_>,
            ) -> Result<Result<Sides, Refusal>, StoreError> {
                timed("change_connection", async move {
                    let writer = self.writer.lock().await;
                    let (user_text, peer_text) = (user.to_string(), peer.to_string());
                    // Insert missing sides in key order, so concurrent callers lock in one order.
                    let (first, second) =
                        if user_text < peer_text { (&user_text, &peer_text) } else { (&peer_text, &user_text) };
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    sqlx::query(
                        "INSERT INTO connections (user_id, peer_id, state, version, updated_at) \
                         VALUES ($1, $2, 'none', 0, 0), ($2, $1, 'none', 0, 0) ON CONFLICT DO NOTHING",
                    )
                    .bind(first)
                    .bind(second)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(e, "connection", "user"))?;
                    let rows = sqlx::query_as::<_, SideRow>(LOCK_SIDES)
                        .bind(&user_text)
                        .bind(&peer_text)
                        .fetch_all(&mut *tx)
                        .await?;
                    let before = sides(user, rows)?;
                    let (mine, theirs) = match transition(before) {
                        Ok(states) => states,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let mut after = before;
                    for (side, state, owner, other) in [
                        (&mut after.mine, mine, &user_text, &peer_text),
                        (&mut after.theirs, theirs, &peer_text, &user_text),
                    ] {
                        if side.state == state {
                            continue;
                        }
                        sqlx::query(
                            "UPDATE connections SET state = $3, version = version + 1, updated_at = $4 \
                             WHERE user_id = $1 AND peer_id = $2",
                        )
                        .bind(owner)
                        .bind(other)
                        .bind(state_name(state))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        *side = Side { state, version: side.version + 1, updated_at: now };
                    }
                    tx.commit().await?;
                    Ok(Ok(after))
                }).await
            }
        }
    };
}

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::*;
    use crate::dialect::sqlite::{BEGIN_WRITE, LOCK_SIDES};
    connection_store!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::*;
    use crate::dialect::postgres::{BEGIN_WRITE, LOCK_SIDES};
    connection_store!(PgStore, sqlx::Postgres);
}
