//! [`DeviceKeyStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see
//! `lib.rs` for why a macro).
//!
//! A device's identity keys and fallback key live in its `devices` row; its one-time keys in
//! `one_time_keys`, each taken once (`TAKE_ONE_TIME_KEY` deletes and returns the oldest). An
//! upload is one transaction checked against the stock limit before it commits.

use async_trait::async_trait;
use natter_proto::DeviceId;
use natter_proto::limits::ONE_TIME_KEYS_STORED;

use super::driver_errors::DbError;
use super::sql::{PgStore, SqliteStore, classify};
use super::{ClaimedKeyRecord, DeviceKeyStore, KeyCounts, KeyUpload, StoreError, timed};

/// Implements [`DeviceKeyStore`] for a store type with `pool` and `writer` fields.
macro_rules! device_key_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl DeviceKeyStore for $store {
            /// Identity keys, the fallback key and one-time keys in one transaction; re-uploading a key is
            /// harmless, reusing its id for another key is `Conflict`, and so is passing
            /// `ONE_TIME_KEYS_STORED` (the whole upload is rolled back).
            async fn upload_keys(
                &self,
                device: DeviceId,
                upload: &KeyUpload<'_>,
                now: i64,
            ) -> Result<KeyCounts, StoreError> {
                timed("upload_keys", async move {
                    let writer = self.writer.lock().await;
                    let device_id = device.to_string();
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    if let Some(keys) = upload.identity_keys {
                        sqlx::query(
                            "UPDATE devices SET curve25519 = $2, ed25519 = $3, key_signature = $4, \
                             keys_created_at = $5, cross_signature = CASE WHEN curve25519 = $2 \
                             AND ed25519 = $3 THEN cross_signature END WHERE id = $1",
                        )
                        .bind(&device_id)
                        .bind(&keys.curve25519)
                        .bind(&keys.ed25519)
                        .bind(&keys.signature)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(key) = upload.fallback_key {
                        sqlx::query(
                            "UPDATE devices SET fallback_key_id = $2, fallback_key = $3, \
                             fallback_created_at = $4 WHERE id = $1",
                        )
                        .bind(&device_id)
                        .bind(&key.key_id)
                        .bind(&key.key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for key in upload.one_time_keys {
                        let inserted = sqlx::query(
                            "INSERT INTO one_time_keys (device_id, key_id, key, created_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, key_id) DO NOTHING",
                        )
                        .bind(&device_id)
                        .bind(&key.key_id)
                        .bind(&key.key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| classify(e, "one-time key", "device"))?;
                        if inserted.rows_affected() == 0 {
                            // Re-uploading the same key is harmless; reusing its id for another is not.
                            let stored: String = sqlx::query_scalar(
                                "SELECT key FROM one_time_keys WHERE device_id = $1 AND key_id = $2",
                            )
                            .bind(&device_id)
                            .bind(&key.key_id)
                            .fetch_one(&mut *tx)
                            .await?;
                            if stored != key.key {
                                return Err(StoreError::Conflict("one-time key id").into());
                            }
                        }
                    }
                    let counts = key_counts(&mut *tx, &device_id).await?;
                    if counts.one_time_keys as usize > ONE_TIME_KEYS_STORED {
                        return Err(StoreError::Conflict("one-time key count").into());
                    }
                    tx.commit().await?;
                    Ok(counts)
                }).await
            }

            /// A device's key stock on `conn`: unclaimed one-time keys and whether a fallback key is
            /// stored (inside an upload's transaction, or alone).
            /// The stock `key_counts` reads, on the read pool.
            async fn key_counts(&self, device: DeviceId) -> Result<KeyCounts, StoreError> {
                timed("key_counts", async move {
                    let mut conn = self.pool.acquire().await?;
                    key_counts(&mut *conn, &device.to_string()).await
                }).await
            }

            /// Takes the oldest one-time key (`TAKE_ONE_TIME_KEY`, a delete returning the row), else
            /// the fallback key, which stays.
            async fn claim_key(&self, device: DeviceId) -> Result<Option<ClaimedKeyRecord>, StoreError> {
                timed("claim_key", async move {
                    let device_id = device.to_string();
                    let writer = self.writer.lock().await;
                    let taken = sqlx::query_as::<_, (String, String, i64)>(TAKE_ONE_TIME_KEY)
                        .bind(&device_id)
                        .fetch_optional(&*writer)
                        .await?;
                    drop(writer);
                    if let Some((key_id, key, created_at)) = taken {
                        return Ok(Some(ClaimedKeyRecord { key_id, key, fallback: false, created_at }));
                    }
                    let fallback = sqlx::query_as::<_, (Option<String>, Option<String>, Option<i64>)>(
                        "SELECT fallback_key_id, fallback_key, fallback_created_at FROM devices WHERE id = $1",
                    )
                    .bind(&device_id)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(match fallback {
                        Some((Some(key_id), Some(key), Some(created_at))) => {
                            Some(ClaimedKeyRecord { key_id, key, fallback: true, created_at })
                        }
                        _ => None,
                    })
                }).await
            }
        }

        async fn key_counts(
            conn: &mut <$db as sqlx::Database>::Connection,
            device_id: &str,
        ) -> Result<KeyCounts, DbError> {
            let (count, fallback) = sqlx::query_as::<_, (i64, Option<String>)>(
                "SELECT (SELECT COUNT(*) FROM one_time_keys WHERE device_id = $1), \
                 (SELECT fallback_key_id FROM devices WHERE id = $1)",
            )
            .bind(device_id)
            .fetch_one(conn)
            .await?;
            Ok(KeyCounts {
                one_time_keys: u32::try_from(count).map_err(|_| StoreError::Corrupt("one_time_keys"))?,
                has_fallback: fallback.is_some(),
            })
        }
    };
}

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::*;
    use crate::dialect::sqlite::{BEGIN_WRITE, TAKE_ONE_TIME_KEY};
    device_key_store!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::*;
    use crate::dialect::postgres::{BEGIN_WRITE, TAKE_ONE_TIME_KEY};
    device_key_store!(PgStore, sqlx::Postgres);
}
