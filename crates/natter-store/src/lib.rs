//! natter-store: natter-core's [`Store`] for SQLite ([`SqliteStore`], the embedded default) and
//! PostgreSQL ([`PgStore`], for clusters), with the schema's migrations (`migrations/`).
//!
//! What it is: one body of SQL per role for both backends, because their SQL is the same;
//! `dialect` holds the few statements that differ. Layout:
//! - each role's SQL: `sql_accounts`, `sql_device_keys`, `sql_connections`,
//!   `sql_conversations`, `sql_message_log`, `sql_inbox`, `sql_identities`, over the stores of
//!   `sql` and the rows and queries the message tables share (`sql_messages`). Each is a
//!   `macro_rules!` body instantiated once per backend: sqlx's `Pool<DB>`, `Transaction<DB>`
//!   and `FromRow` bounds over a generic `DB` would have to be spelled out on every query
//!   (`for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>`, an `Encode` and a
//!   `Type` bound per bound value type), which costs more reading than the macro does;
//! - the writers: `sql_writes` (appends and cursor moves, group-committed), `sqlite_writer`
//!   (SQLite's writer thread), `pg_writer` (PostgreSQL's), `group_commit` (the queue both use);
//! - `driver_errors`: the crate's own error (a driver's, or natter-core's) and the one place it
//!   becomes natter-core's [`StoreError`], deciding which failures mean the database is
//!   unavailable.
//!
//! The two backends behave the same (the tests run each on both); they differ in how they
//! write:
//! - SQLite takes one writer at a time. Appends and cursor moves, and the reads a send needs
//!   next to them, run on one connection on a thread of its own (`sqlite_writer`); other writes
//!   go through a pool of one connection; the two take turns (`WriteTurn`), and readers use a
//!   pool of their own that never waits for writers (WAL).
//! - PostgreSQL takes concurrent writers: readers and writers share one pool, and only the
//!   per-message writes are batched (`pg_writer`).
//! - Both open by applying the migrations, so a new binary upgrades the schema on start.
//!
//! What it is not: no rules (natter-core's services decide who may do what; the store only
//! keeps what they decide), no HTTP and no Redis. Its own tests, and natter-core's checks that
//! need a real store, run on both backends (PostgreSQL where `NATTER_TEST_DATABASE_URL` is set).

/// The few statements that differ between SQLite and PostgreSQL (write locks, taking a key).
mod dialect;
/// The crate's own error, and the one place it becomes natter-core's `StoreError`.
mod driver_errors;
/// The queue both writers batch their jobs through.
mod group_commit;
/// PostgreSQL's writer: appends and cursor moves, group-committed on the pool.
mod pg_writer;
/// natter-core's checks that need a real store, on each backend.
#[cfg(test)]
mod service_checks;
/// The two stores, and the rows and helpers every role's SQL shares.
mod sql;
/// Users, devices and tokens.
mod sql_accounts;
/// Connections between users (the social relationship).
mod sql_connections;
/// Conversations and their members.
mod sql_conversations;
/// Devices' identity, fallback and one-time keys.
mod sql_device_keys;
/// Cross-signing identities, device signatures and key backups.
mod sql_identities;
/// To-device inboxes.
mod sql_inbox;
/// Messages and cursors.
mod sql_message_log;
/// The rows, columns and queries the message tables share.
mod sql_messages;
/// The per-message writes (appends, cursor moves) and how a batch of them settles.
mod sql_writes;
/// SQLite's writer thread.
mod sqlite_writer;
/// Stores on each backend for the tests.
#[cfg(test)]
pub mod testing;

use natter_core::store::*;
pub use sql::{PgStore, SqliteStore};

use driver_errors::DbError;

/// Runs one store operation, recording its latency and failures by operation name. (Each
/// operation's error counter exists, at zero, from its first use: `rate()` sees its first
/// failures.)
async fn timed<T>(
    op: &'static str,
    work: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, StoreError> {
    let errors = metrics::counter!("natter_store_errors_total", "op" => op);
    let start = std::time::Instant::now();
    let result = work.await.map_err(StoreError::from);
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
