//! Cross-signing identities, device signatures and the key backup: what clients sign and seal,
//! stored as opaque text; and who may see whose device lists.

use async_trait::async_trait;
use natter_proto::keys::{BackupItem, CrossSigningKeys};
use natter_proto::{DeviceId, UserId};

use super::StoreError;

/// Persistence of identities, device signatures and backup items.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// A user's cross-signing identity, if their first device published one.
    async fn identity(&self, user: UserId) -> Result<Option<CrossSigningKeys>, StoreError>;
    /// The identities of those of `users` that have one.
    async fn identities(
        &self,
        users: &[UserId],
    ) -> Result<Vec<(UserId, CrossSigningKeys)>, StoreError>;
    /// The users whose device lists `viewer` may see, besides its own: its connections, and
    /// fellow members of its rooms who did not block it.
    async fn visible_to(&self, viewer: UserId) -> Result<Vec<UserId>, StoreError>;
    /// The users who may see `target`'s device list, besides `target`: the other side of
    /// [`IdentityStore::visible_to`].
    async fn audience_of(&self, target: UserId) -> Result<Vec<UserId>, StoreError>;
    /// Publishes a user's first identity, or replaces one with the same master key (a new
    /// self-signing key). False, and nothing changed, when the stored identity has another
    /// master key (checked in the same statement, so a reset cannot be overwritten).
    async fn set_identity(
        &self,
        user: UserId,
        keys: &CrossSigningKeys,
        now: i64,
    ) -> Result<bool, StoreError>;
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
