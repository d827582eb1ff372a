//! [`DeviceKeyStore`]: the keys devices publish for end-to-end encryption (identity, one-time
//! and fallback keys).

use async_trait::async_trait;
use natter_proto::DeviceId;
use natter_proto::keys::{IdentityKeys, OneTimeKey};

use super::StoreError;

/// What a device publishes in one upload, already validated.
pub struct KeyUpload<'a> {
    /// New identity keys, replacing the old ones.
    pub identity_keys: Option<&'a IdentityKeys>,
    /// New one-time keys.
    pub one_time_keys: &'a [OneTimeKey],
    /// A new fallback key, replacing the old one.
    pub fallback_key: Option<&'a OneTimeKey>,
}

/// A device's key stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCounts {
    /// Unclaimed one-time keys.
    pub one_time_keys: u32,
    /// Whether a fallback key is stored.
    pub has_fallback: bool,
}

/// A key handed out by a claim.
#[derive(Clone, Debug)]
pub struct ClaimedKeyRecord {
    /// The key id.
    pub key_id: String,
    /// The public key.
    pub key: String,
    /// Whether it is the fallback key (which stays) rather than a one-time key (now deleted).
    pub fallback: bool,
    /// Upload time, ms.
    pub created_at: i64,
}

/// Persistence of device keys.
#[async_trait]
pub trait DeviceKeyStore: Send + Sync {
    /// Stores a device's keys. `Conflict` if a one-time key id is reused with another key or
    /// the device would hold too many unclaimed keys.
    async fn upload_keys(
        &self,
        device: DeviceId,
        upload: &KeyUpload<'_>,
        now: i64,
    ) -> Result<KeyCounts, StoreError>;
    /// A device's key stock.
    async fn key_counts(&self, device: DeviceId) -> Result<KeyCounts, StoreError>;
    /// Takes one one-time key of a device (each is handed out once, even under concurrent
    /// claims), or its fallback key when none is left.
    async fn claim_key(&self, device: DeviceId) -> Result<Option<ClaimedKeyRecord>, StoreError>;
}
