//! The store: persistence only, no policy. One [`Store`] trait, made of a trait per role,
//! with two implementations, [`SqliteStore`] (the embedded default) and [`PgStore`] (for
//! clusters), generated from one body of SQL per role because their SQL is the same;
//! `dialect` holds the few statements that differ.
//!
//! Layout:
//! - the roles: [`accounts`] (users, devices, tokens), [`device_keys`], [`connections`],
//!   [`conversations`], [`message_log`] (messages and cursors), [`inbox`] (to-device),
//!   [`identities`] (cross-signing identities and key backups): each a trait and its records;
//! - their SQL: `sql_accounts`, `sql_device_keys`, `sql_connections`, `sql_conversations`,
//!   `sql_message_log`, `sql_inbox`, over the stores of `sql` and the rows and queries the
//!   message tables share (`sql_messages`);
//! - the writers: `sql_writes` (appends and cursor moves, group-committed), `sqlite_writer`
//!   (SQLite's writer thread), `pg_writer` (PostgreSQL's), `group_commit` (the queue both use).
//!
//! Callers hold an `Arc<dyn Store>` and call any role's methods on it: the roles are apart so
//! that each one's contract can be read on its own, not for callers to pick one, and a driver's
//! error never leaves the store except boxed inside [`StoreError::Database`].

pub mod accounts;
pub mod connections;
pub mod conversations;
pub mod device_keys;
mod dialect;
mod driver_errors;
mod error;
mod group_commit;
pub mod identities;
pub mod inbox;
pub mod message_log;
mod pg_writer;
mod sql;
mod sql_accounts;
mod sql_connections;
mod sql_conversations;
mod sql_device_keys;
mod sql_inbox;
mod sql_message_log;
mod sql_messages;
mod sql_writes;
mod sqlite_writer;
#[cfg(test)]
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
pub use sql::{PgStore, SqliteStore};

/// Runs one store operation, recording its latency and failures by operation name. (Each
/// operation's error counter exists, at zero, from its first use: `rate()` sees its first
/// failures.)
async fn timed<T>(
    op: &'static str,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let errors = metrics::counter!("natter_store_errors_total", "op" => op);
    let start = std::time::Instant::now();
    let result = work.await;
    metrics::histogram!("natter_store_op_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    if matches!(
        result,
        Err(StoreError::Database { .. } | StoreError::Corrupt(_) | StoreError::Unavailable(_))
    ) {
        errors.increment(1);
    }
    result
}

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
