//! The store: persistence only, no policy. One [`Store`] trait, made of a trait per role,
//! with two implementations, [`SqliteStore`] (the embedded default) and [`PgStore`] (for
//! clusters), generated from one body of SQL per role because their SQL is the same;
//! [`dialect`] holds the few statements that differ.
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

pub mod accounts;
pub mod connections;
pub mod conversations;
pub mod device_keys;
mod dialect;
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
        Err(StoreError::Database(_)
            | StoreError::Sqlite(_)
            | StoreError::Corrupt(_)
            | StoreError::Unavailable(_))
    ) {
        errors.increment(1);
    }
    result
}

/// A store failure. Policy errors (not found, forbidden) are the service's business.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (such as a taken username).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A row this write refers to does not exist (any more).
    #[error("missing: {0}")]
    Missing(&'static str),
    /// The database could not be reached or failed; the request may be retried.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite writer's connection failed (see [`sqlite_writer`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database holds a value this version cannot read.
    #[error("corrupt value in column {0}")]
    Corrupt(&'static str),
    /// The database could not be reached for work done on the caller's behalf (a group commit
    /// that failed as a whole); the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the database is unreachable or going away (retry later) rather than refusing this
    /// request: lost connections, an exhausted pool, PostgreSQL's connection-exception (08),
    /// insufficient-resources (53) and operator-intervention (57P, such as a shutdown) classes,
    /// and a SQLite file locked past the busy timeout, full or failing, through either driver.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
            ) => true,
            Self::Database(sqlx::Error::Database(db)) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    let class = pg.code();
                    class.starts_with("08") || class.starts_with("53") || class.starts_with("57P")
                } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // sqlx gives SQLite's extended result code, in decimal.
                    db.code()
                        .and_then(|code| code.parse().ok())
                        .is_some_and(sqlite_unavailable)
                } else {
                    false
                }
            }
            Self::Sqlite(error) => error
                .sqlite_error()
                .is_some_and(|e| sqlite_unavailable(e.extended_code)),
            _ => false,
        }
    }
}

/// Whether a SQLite (extended) result code means the file, not the request, failed: busy or
/// locked past the busy timeout, out of memory, an I/O error, full, or not openable.
fn sqlite_unavailable(code: i32) -> bool {
    use rusqlite::ffi;
    matches!(
        code & 0xff,
        ffi::SQLITE_BUSY
            | ffi::SQLITE_LOCKED
            | ffi::SQLITE_NOMEM
            | ffi::SQLITE_IOERR
            | ffi::SQLITE_FULL
            | ffi::SQLITE_CANTOPEN
    )
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::ConnectOptions;

    use super::*;

    #[tokio::test]
    async fn a_locked_sqlite_file_is_unavailable_through_either_driver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (x); \
                 BEGIN IMMEDIATE; INSERT INTO t VALUES (1);",
            )
            .unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        let locked = StoreError::from(other.execute("INSERT INTO t VALUES (2)", ()).unwrap_err());
        assert!(locked.is_unavailable(), "{locked}");
        let mut pooled = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::ZERO)
            .connect()
            .await
            .unwrap();
        let locked = StoreError::from(
            sqlx::query("INSERT INTO t VALUES (3)")
                .execute(&mut pooled)
                .await
                .unwrap_err(),
        );
        assert!(locked.is_unavailable(), "{locked}");
        // A request's own mistake is not the file's.
        let mistaken = StoreError::from(
            other
                .execute("INSERT INTO nowhere VALUES (1)", ())
                .unwrap_err(),
        );
        assert!(!mistaken.is_unavailable(), "{mistaken}");
    }
}
