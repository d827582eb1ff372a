//! [`AccountStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see
//! `lib.rs` for why a macro).
//!
//! Tables: `users` (the account, its lower-cased username for case-insensitive uniqueness, the
//! password hash and `suspended_at`) and `devices` (a login: its token's hash, its expiry and,
//! once uploaded, its keys). Every write takes the store's write turn (`Writer::lock` in `sql`); reads
//! go to the read pool and never wait for writers. A device's expiry only moves forward, and
//! expired devices are left out of listings until `delete_expired_devices` removes them in
//! batches.

use async_trait::async_trait;
use natter_proto::{DeviceId, UserId};

use super::sql::{DeviceRow, PgStore, SqliteStore, UserRow, classify, parse_id};
use super::{
    AccountStore, DeviceRecord, NewDevice, NewUser, StoreError, TokenOwner, UserRecord, timed,
};

/// Implements [`AccountStore`] for a store type with `pool` and `writer` fields.
macro_rules! account_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl AccountStore for $store {
            /// One insert under the writer lock; a taken username (case-insensitive, `username_lower`) is `Conflict("username")`.
            async fn create_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
                timed("create_user", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query(
                        "INSERT INTO users (id, username, username_lower, password_hash, display_name, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(user.id.to_string())
                    .bind(user.username)
                    .bind(user.username.to_lowercase())
                    .bind(user.password_hash)
                    .bind(user.display_name)
                    .bind(user.created_at)
                    .execute(&*writer)
                    .await
                    .map_err(|e| classify(e, "username", "user"))?;
                    Ok(())
                }).await
            }

            /// One read by primary key, on the read pool.
            async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
                timed("user", async move {
                    sqlx::query_as::<_, UserRow>(
                        "SELECT id, username, display_name, avatar_url, suspended_at FROM users WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(UserRow::into_record)
                    .transpose()
                }).await
            }

            /// One read through the unique `username_lower` index, with the password hash for the login check.
            async fn user_by_username(
                &self,
                username_lower: &str,
            ) -> Result<Option<(UserRecord, String)>, StoreError> {
                timed("user_by_username", async move {
                    /// A user's row with the password hash.
                    #[derive(sqlx::FromRow)]
                    struct Row {
                        #[sqlx(flatten)]
                        user: UserRow,
                        password_hash: String,
                    }
                    let row = sqlx::query_as::<_, Row>(
                        "SELECT id, username, display_name, avatar_url, suspended_at, password_hash FROM users \
                         WHERE username_lower = $1",
                    )
                    .bind(username_lower)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|r| Ok((r.user.into_record()?, r.password_hash))).transpose()
                }).await
            }

            /// One update; `COALESCE` keeps an absent display name, the `CASE` an absent avatar.
            async fn update_profile(
                &self,
                id: UserId,
                display_name: Option<&str>,
                avatar_url: Option<Option<&str>>,
            ) -> Result<(), StoreError> {
                timed("update_profile", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query(
                        "UPDATE users SET display_name = COALESCE($2, display_name), \
                         avatar_url = CASE WHEN $3 THEN $4 ELSE avatar_url END WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .bind(display_name)
                    .bind(avatar_url.is_some())
                    .bind(avatar_url.flatten())
                    .execute(&*writer)
                    .await?;
                    Ok(())
                }).await
            }

            /// One update; false when no such user.
            async fn set_suspended(&self, user: UserId, since: Option<i64>) -> Result<bool, StoreError> {
                timed("set_suspended", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query("UPDATE users SET suspended_at = $2 WHERE id = $1")
                        .bind(user.to_string())
                        .bind(since)
                        .execute(&*writer)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }).await
            }

            /// One insert; the token hash is unique, so a clash is `Conflict("token")`, an unknown user `Missing("user")`.
            async fn create_device(&self, device: &NewDevice<'_>) -> Result<(), StoreError> {
                timed("create_device", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query(
                        "INSERT INTO devices (id, user_id, name, token_hash, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(device.id.to_string())
                    .bind(device.user_id.to_string())
                    .bind(device.name)
                    .bind(device.token_hash)
                    .bind(device.created_at)
                    .bind(device.expires_at)
                    .execute(&*writer)
                    .await
                    .map_err(|e| classify(e, "token", "user"))?;
                    Ok(())
                }).await
            }

            /// One read by the token hash joined to the user, for the suspension check every request makes.
            async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>, StoreError> {
                timed("token_owner", async move {
                    let row = sqlx::query_as::<_, (String, String, i64, Option<i64>)>(
                        "SELECT d.user_id, d.id, d.expires_at, u.suspended_at FROM devices d \
                         JOIN users u ON u.id = d.user_id WHERE d.token_hash = $1",
                    )
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|(user, device, expires_at, suspended_at)| {
                        Ok(TokenOwner {
                            user_id: parse_id(&user, "devices.user_id")?,
                            device_id: parse_id(&device, "devices.id")?,
                            expires_at,
                            suspended: suspended_at.is_some(),
                        })
                    })
                    .transpose()
                }).await
            }

            /// One delete, scoped to the user; the rows that name the device (its keys, cursors and inbox) go with it (`ON DELETE CASCADE`).
            async fn delete_device(&self, user: UserId, device: DeviceId) -> Result<bool, StoreError> {
                timed("delete_device", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
                        .bind(device.to_string())
                        .bind(user.to_string())
                        .execute(&*writer)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }).await
            }

            /// Deletes at most `batch` expired devices through the `expires_at` index, so one call holds the writer briefly.
            async fn delete_expired_devices(&self, now: i64, batch: u32) -> Result<u64, StoreError> {
                timed("delete_expired_devices", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query(
                        "DELETE FROM devices WHERE id IN \
                         (SELECT id FROM devices WHERE expires_at < $1 LIMIT $2)",
                    )
                    .bind(now)
                    .bind(i64::from(batch))
                    .execute(&*writer)
                    .await?;
                    Ok(done.rows_affected())
                }).await
            }

            /// Moves the expiry forward only (`CASE`), so two renewals racing never shorten it.
            async fn extend_device(&self, device: DeviceId, expires_at: i64) -> Result<bool, StoreError> {
                timed("extend_device", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query(
                        "UPDATE devices SET expires_at = CASE WHEN expires_at < $2 THEN $2 ELSE expires_at END \
                         WHERE id = $1",
                    )
                    .bind(device.to_string())
                    .bind(expires_at)
                    .execute(&*writer)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }).await
            }

            /// One read of the users' unexpired devices with their keys, built with `QueryBuilder` for the id list.
            async fn devices(&self, users: &[UserId], now: i64) -> Result<Vec<DeviceRecord>, StoreError> {
                timed("devices", async move {
                    if users.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, user_id, name, created_at, curve25519, ed25519, key_signature, \
                         keys_created_at, cross_signature FROM devices WHERE user_id IN (",
                    );
                    let mut list = query.separated(", ");
                    for user in users {
                        list.push_bind(user.to_string());
                    }
                    query.push(") AND expires_at > ");
                    query.push_bind(now);
                    query.push(" ORDER BY created_at, id");
                    query
                        .build_query_as::<DeviceRow>()
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(DeviceRow::into_record)
                        .collect()
                }).await
            }
        }
    };
}

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::*;
    account_store!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::*;
    account_store!(PgStore, sqlx::Postgres);
}
