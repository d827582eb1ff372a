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
//! What it is not: no rules (natter-core's services decide who may do what; the store only
//! keeps what they decide), no HTTP and no Redis. Its own tests, and natter-core's checks that
//! need a real store, run on both backends (PostgreSQL where `NATTER_TEST_DATABASE_URL` is set).

mod dialect;
mod driver_errors;
mod group_commit;
mod pg_writer;
#[cfg(test)]
mod service_checks;
mod sql;
mod sql_accounts;
mod sql_connections;
mod sql_conversations;
mod sql_device_keys;
mod sql_identities;
mod sql_inbox;
mod sql_message_log;
mod sql_messages;
mod sql_writes;
mod sqlite_writer;
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
