//! [`DbError`], the store's own error (a driver's, or natter-core's [`StoreError`]), and the one
//! place it becomes a [`StoreError`]: there it is decided which drivers' errors (sqlx's and
//! rusqlite's) mean the database, not the request, failed. (natter-core's type cannot take a
//! `From` for a driver's error here: the orphan rule.)

use natter_core::store::StoreError;

/// A failure inside the store: a driver's error, or one already in natter-core's terms. Every
/// store operation ends as a [`StoreError`] (in `timed`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// Already in natter-core's terms.
    #[error(transparent)]
    Core(#[from] StoreError),
    /// sqlx failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// rusqlite (SQLite's writer thread) failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

impl From<DbError> for StoreError {
    /// natter-core's terms as they are; a driver's error boxed, with whether it means the
    /// database is unavailable.
    fn from(error: DbError) -> Self {
        let unavailable = match &error {
            DbError::Core(_) => false,
            DbError::Sqlx(error) => sqlx_unavailable(error),
            DbError::Sqlite(error) => error
                .sqlite_error()
                .is_some_and(|e| sqlite_unavailable(e.extended_code)),
        };
        let source: Box<dyn std::error::Error + Send + Sync> = match error {
            DbError::Core(error) => return error,
            DbError::Sqlx(error) => Box::new(error),
            DbError::Sqlite(error) => Box::new(error),
        };
        Self::Database {
            source,
            unavailable,
        }
    }
}

/// Whether sqlx failed because the database is unreachable or going away: lost connections,
/// an exhausted pool, PostgreSQL's connection-exception (08), insufficient-resources (53) and
/// operator-intervention (57P, such as a shutdown) classes, and a SQLite file locked past the
/// busy timeout, full or failing.
fn sqlx_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
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
        _ => false,
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
        let locked = StoreError::from(DbError::from(
            other.execute("INSERT INTO t VALUES (2)", ()).unwrap_err(),
        ));
        assert!(locked.is_unavailable(), "{locked}");
        let mut pooled = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::ZERO)
            .connect()
            .await
            .unwrap();
        let locked = StoreError::from(DbError::from(
            sqlx::query("INSERT INTO t VALUES (3)")
                .execute(&mut pooled)
                .await
                .unwrap_err(),
        ));
        assert!(locked.is_unavailable(), "{locked}");
        // A request's own mistake is not the file's.
        let mistaken = StoreError::from(DbError::from(
            other
                .execute("INSERT INTO nowhere VALUES (1)", ())
                .unwrap_err(),
        ));
        assert!(!mistaken.is_unavailable(), "{mistaken}");
    }
}
