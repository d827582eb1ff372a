//! [`AccountStore`]: users, their devices (each a login) and the devices' bearer tokens.

use async_trait::async_trait;
use natter_proto::keys::IdentityKeys;
use natter_proto::{DeviceId, UserId};

use super::StoreError;

/// A new account.
pub struct NewUser<'a> {
    /// The new id.
    pub id: UserId,
    /// The username as typed.
    pub username: &'a str,
    /// The PHC string of the argon2id hash.
    pub password_hash: &'a str,
    /// The initial display name.
    pub display_name: &'a str,
    /// Creation time, ms.
    pub created_at: i64,
}

/// A stored user.
#[derive(Clone, Debug)]
pub struct UserRecord {
    /// The id.
    pub id: UserId,
    /// The username as registered.
    pub username: String,
    /// The display name.
    pub display_name: String,
    /// The avatar URL.
    pub avatar_url: Option<String>,
    /// Whether an operator suspended the account.
    pub suspended: bool,
}

/// A new login.
pub struct NewDevice<'a> {
    /// The new id.
    pub id: DeviceId,
    /// The user logging in.
    pub user_id: UserId,
    /// The name given at login.
    pub name: &'a str,
    /// SHA-256 of the bearer token, hex.
    pub token_hash: &'a str,
    /// Creation time, ms.
    pub created_at: i64,
    /// Token expiry, ms.
    pub expires_at: i64,
}

/// Who a token belongs to.
#[derive(Clone, Copy, Debug)]
pub struct TokenOwner {
    /// The user.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Token expiry, ms.
    pub expires_at: i64,
    /// Whether the user is suspended.
    pub suspended: bool,
}

/// A stored device with its identity keys.
#[derive(Clone, Debug)]
pub struct DeviceRecord {
    /// The device.
    pub id: DeviceId,
    /// Its user.
    pub user_id: UserId,
    /// The name given at login.
    pub name: String,
    /// Login time, ms.
    pub created_at: i64,
    /// Identity keys and their upload time, once uploaded.
    pub identity_keys: Option<(IdentityKeys, i64)>,
    /// The device's signature by its user's self-signing key, once signed.
    pub cross_signature: Option<String>,
}

/// Persistence of accounts: users, devices and tokens.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Adds a user. `Conflict` if the username (in any case) is taken.
    async fn create_user(&self, user: &NewUser<'_>) -> Result<(), StoreError>;
    /// A user by id.
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// A user and their password hash, by lower-cased username.
    async fn user_by_username(
        &self,
        username_lower: &str,
    ) -> Result<Option<(UserRecord, String)>, StoreError>;
    /// Changes the display name and/or avatar URL (`Some(None)` clears the avatar).
    async fn update_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        avatar_url: Option<Option<&str>>,
    ) -> Result<(), StoreError>;
    /// Suspends (`Some(when)`) or reinstates (`None`) a user. False if there is no such user.
    async fn set_suspended(&self, user: UserId, since: Option<i64>) -> Result<bool, StoreError>;
    /// Adds a device (a login).
    async fn create_device(&self, device: &NewDevice<'_>) -> Result<(), StoreError>;
    /// The owner of a token hash.
    async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>, StoreError>;
    /// Removes a device of a user, its token and its keys. False if there was no such device.
    async fn delete_device(&self, user: UserId, device: DeviceId) -> Result<bool, StoreError>;
    /// Removes up to `batch` devices whose tokens expired before `now` (unused for the token
    /// lifetime), with their keys, cursors and inbox: how many.
    async fn delete_expired_devices(&self, now: i64, batch: u32) -> Result<u64, StoreError>;
    /// Moves a device's token expiry to `expires_at` if that is later. False if the device is
    /// gone.
    async fn extend_device(&self, device: DeviceId, expires_at: i64) -> Result<bool, StoreError>;
    /// The devices of these users whose tokens have not expired by `now`, oldest first.
    async fn devices(&self, users: &[UserId], now: i64) -> Result<Vec<DeviceRecord>, StoreError>;
}
