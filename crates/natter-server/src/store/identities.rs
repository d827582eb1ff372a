//! Cross-signing identities, device signatures and the key backup: what clients sign and seal,
//! stored as opaque text. [`IdentityStore`] has one body of SQL for both backends.

use async_trait::async_trait;
use natter_proto::keys::{BackupItem, CrossSigningKeys};
use natter_proto::limits::BACKUP_ITEMS_MAX;
use natter_proto::{DeviceId, UserId};

use super::{PgStore, SqliteStore, StoreError, timed};

/// Persistence of identities, device signatures and backup items.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// A user's cross-signing identity, if their first device published one.
    async fn identity(&self, user: UserId) -> Result<Option<CrossSigningKeys>, StoreError>;
    /// Publishes (or replaces, after a reset) a user's identity.
    async fn set_identity(
        &self,
        user: UserId,
        keys: &CrossSigningKeys,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Replaces a user's identity in a reset: with the old identity go every device's
    /// cross-signature and the whole backup.
    async fn reset_identity(
        &self,
        user: UserId,
        keys: &CrossSigningKeys,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Stores (or, with `None`, removes) a device's cross-signature. False if `device` is not
    /// one of `user`'s.
    async fn sign_device(
        &self,
        user: UserId,
        device: DeviceId,
        signature: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Stores or replaces a backup item. `Conflict` when the user already keeps the most items.
    async fn put_backup_item(
        &self,
        user: UserId,
        item: &BackupItem,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Up to `limit` of a user's backup items after the name `after`, in name order.
    async fn backup_items(
        &self,
        user: UserId,
        after: &str,
        limit: u32,
    ) -> Result<Vec<BackupItem>, StoreError>;
    /// Removes all of a user's backup items: how many.
    async fn delete_backup(&self, user: UserId) -> Result<u64, StoreError>;
}

macro_rules! sql_identities {
    ($store:ty, $db:ty) => {
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

            async fn set_identity(
                &self,
                user: UserId,
                keys: &CrossSigningKeys,
                now: i64,
            ) -> Result<(), StoreError> {
                timed("set_identity", async move {
                    let writer = self.writer.lock().await;
                    bind_identity(sqlx::query(UPSERT_IDENTITY), user, keys, now)
                        .execute(&*writer)
                        .await?;
                    Ok(())
                })
                .await
            }

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
                        return Err(StoreError::Conflict("backup item count"));
                    }
                    tx.commit().await?;
                    Ok(())
                })
                .await
            }

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

/// Stores `$2..$4` as user `$1`'s identity (updated at `$5`), replacing any earlier one.
const UPSERT_IDENTITY: &str = "INSERT INTO identities (user_id, master_key, self_signing_key, signature, updated_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
     master_key = excluded.master_key, self_signing_key = excluded.self_signing_key, \
     signature = excluded.signature, updated_at = excluded.updated_at";

mod sqlite_impl {
    use super::super::dialect::sqlite::{BEGIN_WRITE, LOCK_USER};
    use super::*;
    sql_identities!(SqliteStore, sqlx::Sqlite);
}

mod postgres_impl {
    use super::super::dialect::postgres::{BEGIN_WRITE, LOCK_USER};
    use super::*;
    sql_identities!(PgStore, sqlx::Postgres);
}
