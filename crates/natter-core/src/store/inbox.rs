//! [`InboxStore`]: each device's to-device inbox (key shares and other payloads for one device).

use async_trait::async_trait;
use natter_proto::ws::ToDeviceIn;
use natter_proto::{DeviceId, UserId};

use super::StoreError;

/// Persistence of to-device inboxes.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Stores payloads for devices, each under the next seq of its device's inbox, except where
    /// that inbox is full ([`natter_proto::limits::INBOX_PENDING_MAX`] waiting, or
    /// [`natter_proto::limits::INBOX_FROM_ONE_DEVICE_MAX`] from this sender): per item, what was
    /// stored, or `None`.
    async fn push_inbox(
        &self,
        sender: UserId,
        sender_device: DeviceId,
        items: &[(DeviceId, &str)],
        now: i64,
    ) -> Result<Vec<Option<ToDeviceIn>>, StoreError>;
    /// A device's inbox items with `seq > after`, oldest first.
    async fn inbox(
        &self,
        device: DeviceId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ToDeviceIn>, StoreError>;
    /// Deletes a device's inbox items up to `seq`.
    async fn ack_inbox(&self, device: DeviceId, seq: i64) -> Result<(), StoreError>;
    /// The user a device belongs to.
    async fn device_owner(&self, device: DeviceId) -> Result<Option<UserId>, StoreError>;
    /// To-device payloads waiting in all inboxes.
    async fn inbox_depth(&self) -> Result<i64, StoreError>;
}
