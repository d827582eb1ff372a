//! [`IdentityStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see
//! `lib.rs` for why a macro).
//!
//! Tables: `identities` (a user's cross-signing keys, as opaque text the clients signed),
//! `devices.cross_signature`, and `backup_items` (sealed key backup items by name). Who may see
//! whose device lists is one query each way (`VISIBLE_TO`, `AUDIENCE_OF`): connections, and
//! fellow members of rooms, minus blocks.

use async_trait::async_trait;
use natter_proto::keys::{BackupItem, CrossSigningKeys};
use natter_proto::limits::BACKUP_ITEMS_MAX;
use natter_proto::{DeviceId, UserId};

use super::driver_errors::DbError;
use super::{IdentityStore, PgStore, SqliteStore, StoreError, timed};

/// Implements [`IdentityStore`] for a store type with `pool` and `writer` fields.
macro_rules! sql_identities {
    ($store:ty, $db:ty) => {
        /// The users a one-parameter query (`$1`, a user) lists.
        async fn users(
            pool: &sqlx::Pool<$db>,
            sql: &'static str,
            user: UserId,
        ) -> Result<Vec<UserId>, DbError> {
            sqlx::query_scalar::<$db, String>(sql)
                .bind(user.to_string())
                .fetch_all(pool)
                .await?
                .iter()
                .map(|id| parse_user(id))
                .collect()
        }

        /// Binds [`UPSERT_IDENTITY`]'s parameters.
        fn bind_identity<'q>(
            query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            user: UserId,
            keys: &'q CrossSigningKeys,
            now: i64,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            query
                .bind(user.to_string())
                .bind(&keys.master_key)
                .bind(&keys.self_signing_key)
                .bind(&keys.signature)
                .bind(now)
        }

        #[async_trait]
        impl IdentityStore for $store {
            /// One read by user.
            async fn identity(&self, user: UserId) -> Result<Option<CrossSigningKeys>, StoreError> {
                timed("identity", async move {
                    let row = sqlx::query_as::<$db, (String, String, String)>(
                        "SELECT master_key, self_signing_key, signature FROM identities WHERE user_id = $1",
                    )
                    .bind(user.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(|(master_key, self_signing_key, signature)| CrossSigningKeys {
                        master_key,
                        self_signing_key,
                        signature,
                    }))
                })
                .await
            }

            /// The identities of a list of users, in one read.
            async fn identities(
                &self,
                users: &[UserId],
            ) -> Result<Vec<(UserId, CrossSigningKeys)>, StoreError> {
                timed("identities", async move {
                    if users.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT user_id, master_key, self_signing_key, signature FROM identities \
                         WHERE user_id IN (",
                    );
                    let mut list = query.separated(", ");
                    for user in users {
                        list.push_bind(user.to_string());
                    }
                    query.push(")");
                    query
                        .build_query_as::<(String, String, String, String)>()
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(|(user, master_key, self_signing_key, signature)| {
                            Ok((
                                parse_user(&user)?,
                                CrossSigningKeys {
                                    master_key,
                                    self_signing_key,
                                    signature,
                                },
                            ))
                        })
                        .collect()
                })
                .await
            }

            /// The users `VISIBLE_TO` lists for the viewer.
            async fn visible_to(&self, viewer: UserId) -> Result<Vec<UserId>, StoreError> {
                timed("visible_to", async move {
                    users(&self.pool, VISIBLE_TO, viewer).await
                })
                .await
            }

            /// The users `AUDIENCE_OF` lists for the target.
            async fn audience_of(&self, target: UserId) -> Result<Vec<UserId>, StoreError> {
                timed("audience_of", async move {
                    users(&self.pool, AUDIENCE_OF, target).await
                })
                .await
            }

            /// An upsert that only replaces an identity with the same master key (`upsert_identity!`), so a reset is never overwritten.
            async fn set_identity(
                &self,
                user: UserId,
                keys: &CrossSigningKeys,
                now: i64,
            ) -> Result<bool, StoreError> {
                timed("set_identity", async move {
                    let writer = self.writer.lock().await;
                    let done = bind_identity(sqlx::query(SAME_MASTER_UPSERT), user, keys, now)
                        .execute(&*writer)
                        .await?;
                    Ok(done.rows_affected() > 0)
                })
                .await
            }

            /// Replaces the identity and drops every device cross-signature and the backup, in one transaction.
            async fn reset_identity(
                &self,
                user: UserId,
                keys: &CrossSigningKeys,
                now: i64,
            ) -> Result<(), StoreError> {
                timed("reset_identity", async move {
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    bind_identity(sqlx::query(UPSERT_IDENTITY), user, keys, now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE devices SET cross_signature = NULL WHERE user_id = $1")
                        .bind(user.to_string())
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM backup_items WHERE user_id = $1")
                        .bind(user.to_string())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                })
                .await
            }

            /// One update scoped to the user; false when the device is not theirs.
            async fn sign_device(
                &self,
                user: UserId,
                device: DeviceId,
                signature: Option<&str>,
            ) -> Result<bool, StoreError> {
                timed("sign_device", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query(
                        "UPDATE devices SET cross_signature = $3 WHERE id = $1 AND user_id = $2",
                    )
                    .bind(device.to_string())
                    .bind(user.to_string())
                    .bind(signature)
                    .execute(&*writer)
                    .await?;
                    Ok(done.rows_affected() > 0)
                })
                .await
            }

            /// Locks the user (`LOCK_USER`), counts the items and upserts, so two writers cannot pass the item limit together.
            async fn put_backup_item(
                &self,
                user: UserId,
                item: &BackupItem,
                now: i64,
            ) -> Result<(), StoreError> {
                timed("put_backup_item", async move {
                    let writer = self.writer.lock().await;
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    // Concurrent additions of one user take turns, so none passes the bound.
                    sqlx::query(LOCK_USER)
                        .bind(user.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                    // Replacing an item is always allowed; adding one only below the bound.
                    let done = sqlx::query(
                        "INSERT INTO backup_items (user_id, name, data, updated_at) \
                         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM backup_items \
                         WHERE user_id = $1 AND name = $2) \
                         OR (SELECT COUNT(*) FROM backup_items WHERE user_id = $1) < $5 \
                         ON CONFLICT (user_id, name) DO UPDATE SET data = excluded.data, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(user.to_string())
                    .bind(&item.name)
                    .bind(&item.data)
                    .bind(now)
                    .bind(BACKUP_ITEMS_MAX)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Conflict("backup item count").into());
                    }
                    tx.commit().await?;
                    Ok(())
                })
                .await
            }

            /// A page of items after a name, in name order.
            async fn backup_items(
                &self,
                user: UserId,
                after: &str,
                limit: u32,
            ) -> Result<Vec<BackupItem>, StoreError> {
                timed("backup_items", async move {
                    let rows = sqlx::query_as::<$db, (String, String)>(
                        "SELECT name, data FROM backup_items WHERE user_id = $1 AND name > $2 \
                         ORDER BY name LIMIT $3",
                    )
                    .bind(user.to_string())
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(name, data)| BackupItem { name, data })
                        .collect())
                })
                .await
            }

            /// One delete of every item; how many went.
            async fn delete_backup(&self, user: UserId) -> Result<u64, StoreError> {
                timed("delete_backup", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query("DELETE FROM backup_items WHERE user_id = $1")
                        .bind(user.to_string())
                        .execute(&*writer)
                        .await?;
                    Ok(done.rows_affected())
                })
                .await
            }
        }
    };
}

/// The statement of [`UPSERT_IDENTITY`], for building on it.
macro_rules! upsert_identity {
    () => {
        "INSERT INTO identities (user_id, master_key, self_signing_key, signature, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
         master_key = excluded.master_key, self_signing_key = excluded.self_signing_key, \
         signature = excluded.signature, updated_at = excluded.updated_at"
    };
}

/// Stores `$2..$4` as user `$1`'s identity (updated at `$5`), replacing any earlier one.
const UPSERT_IDENTITY: &str = upsert_identity!();

/// [`UPSERT_IDENTITY`] only over an identity with the same master key.
const SAME_MASTER_UPSERT: &str = concat!(
    upsert_identity!(),
    " WHERE identities.master_key = excluded.master_key"
);

/// The users whose device lists user `$1` may see (see [`IdentityStore::visible_to`]).
const VISIBLE_TO: &str = "SELECT peer_id FROM connections WHERE user_id = $1 AND state = 'accepted' \
     UNION SELECT y.user_id FROM members x \
     JOIN conversations c ON c.id = x.conversation_id AND c.kind = 'room' \
     JOIN members y ON y.conversation_id = x.conversation_id AND y.left_seq IS NULL \
     WHERE x.user_id = $1 AND x.left_seq IS NULL AND y.user_id <> $1 \
     AND NOT EXISTS (SELECT 1 FROM connections b WHERE b.user_id = y.user_id \
     AND b.peer_id = $1 AND b.state = 'blocked')";

/// The users who may see user `$1`'s device list (see [`IdentityStore::audience_of`]).
const AUDIENCE_OF: &str = "SELECT user_id FROM connections WHERE peer_id = $1 AND state = 'accepted' \
     UNION SELECT y.user_id FROM members x \
     JOIN conversations c ON c.id = x.conversation_id AND c.kind = 'room' \
     JOIN members y ON y.conversation_id = x.conversation_id AND y.left_seq IS NULL \
     WHERE x.user_id = $1 AND x.left_seq IS NULL AND y.user_id <> $1 \
     AND NOT EXISTS (SELECT 1 FROM connections b WHERE b.user_id = $1 \
     AND b.peer_id = y.user_id AND b.state = 'blocked')";

/// Parses a user id column.
fn parse_user(text: &str) -> Result<UserId, DbError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt("a user id").into())
}

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::super::dialect::sqlite::{BEGIN_WRITE, LOCK_USER};
    use super::*;
    sql_identities!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::super::dialect::postgres::{BEGIN_WRITE, LOCK_USER};
    use super::*;
    sql_identities!(PgStore, sqlx::Postgres);
}
