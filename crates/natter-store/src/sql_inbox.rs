//! [`InboxStore`] for [`SqliteStore`] and [`PgStore`], from one body of portable SQL (see `lib.rs`
//! for why a macro).
//!
//! Each device has an inbox of to-device items (`inbox`), numbered by the device's own
//! `inbox_seq`, bounded in total and per sending device, and emptied up to a seq when the
//! device acknowledges it.

use async_trait::async_trait;
use natter_proto::limits::{INBOX_FROM_ONE_DEVICE_MAX, INBOX_PENDING_MAX};
use natter_proto::ws::ToDeviceIn;
use natter_proto::{DeviceId, UserId};

use super::sql::{PgStore, SqliteStore, parse_id};
use super::sql_messages::limit;
use super::{InboxStore, StoreError, timed};

/// Implements [`InboxStore`] for a store type with `pool` and `writer` fields.
macro_rules! inbox_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl InboxStore for $store {
            /// Per recipient device, in one transaction: counts what waits in its inbox (and from this sender), takes the next seq (`inbox_seq + 1`) and inserts; `None` where the inbox is full, `Missing("device")` for a device that is gone.
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

            /// A page of the device's items after a seq, in seq order.
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

            /// Deletes the device's items up to a seq.
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

            /// The user a device belongs to, if it exists.
            async fn device_owner(&self, device: DeviceId) -> Result<Option<UserId>, StoreError> {
                timed("device_owner", async move {
                    let owner: Option<String> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
                        .bind(device.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                    owner.map(|o| parse_id(&o, "devices.user_id")).transpose()
                }).await
            }

            /// Items waiting in every inbox, for the gauge.
            async fn inbox_depth(&self) -> Result<i64, StoreError> {
                timed("inbox_depth", async move {
                    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM inbox").fetch_one(&self.pool).await?)
                }).await
            }
        }
    };
}

/// The body above, compiled for [`SqliteStore`].
mod sqlite_impl {
    use super::*;
    use crate::dialect::sqlite::BEGIN_WRITE;
    inbox_store!(SqliteStore, sqlx::Sqlite);
}

/// The body above, compiled for [`PgStore`].
mod postgres_impl {
    use super::*;
    use crate::dialect::postgres::BEGIN_WRITE;
    inbox_store!(PgStore, sqlx::Postgres);
}
