//! [`StoreError`]: how the store fails, in terms that name no database driver. natter-store
//! turns the drivers' errors into these in one place, which decides which failures mean the
//! database is unavailable.

/// A store failure. Policy errors (not found, forbidden) are the service's business.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (such as a taken username).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A row this write refers to does not exist (any more).
    #[error("missing: {0}")]
    Missing(&'static str),
    /// The database failed: the driver's error, and whether the database is unreachable or
    /// going away (retry later) rather than refusing this request.
    #[error("database error: {source}")]
    Database {
        /// The driver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
        /// Whether the failure is the database's, not the request's: see
        /// [`StoreError::is_unavailable`].
        unavailable: bool,
    },
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
            Self::Database { unavailable, .. } => *unavailable,
            _ => false,
        }
    }
}
