//! The store's contract: one [`Store`] trait made of a trait per role, and [`StoreError`],
//! naming no database driver. natter-store implements it for SQLite and PostgreSQL.
//!
//! The roles: [`accounts`] (users, devices, tokens), [`device_keys`], [`connections`],
//! [`conversations`], [`message_log`] (messages and cursors), [`inbox`] (to-device),
//! [`identities`] (cross-signing identities and key backups): each a trait and its records.
//!
//! Callers hold an `Arc<dyn Store>` and call any role's methods on it: the roles are apart so
//! that each one's contract can be read on its own, not for callers to pick one, and a driver's
//! error never leaves the store except boxed inside [`StoreError::Database`].

pub mod accounts;
pub mod connections;
pub mod conversations;
pub mod device_keys;
mod error;
pub mod identities;
pub mod inbox;
pub mod message_log;
#[cfg(feature = "store-checks")]
pub mod testing;

use async_trait::async_trait;

pub use accounts::{AccountStore, DeviceRecord, NewDevice, NewUser, TokenOwner, UserRecord};
pub use connections::{ConnectionRecord, ConnectionStore, Refusal, Side, Sides, Transition};
pub use conversations::{ConversationRecord, ConversationStore, MemberRecord, RoomCheck, SendPlan};
pub use device_keys::{ClaimedKeyRecord, DeviceKeyStore, KeyCounts, KeyUpload};
pub use error::StoreError;
pub use identities::IdentityStore;
pub use inbox::InboxStore;
pub use message_log::{Appended, CursorStart, MessageLog, NewMessage, OnStored};

/// Persistence for every service. Implementations must be safe to share across tasks.
#[async_trait]
pub trait Store:
    AccountStore
    + DeviceKeyStore
    + ConnectionStore
    + ConversationStore
    + MessageLog
    + InboxStore
    + IdentityStore
    + Send
    + Sync
    + 'static
{
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Checks the database takes writes (it makes a table in a transaction it rolls back).
    async fn write_probe(&self) -> Result<(), StoreError>;
}
