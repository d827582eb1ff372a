//! The store: persistence only, no policy. One [`Store`] trait with two implementations,
//! [`SqliteStore`] (the embedded default) and [`PgStore`] (for clusters), generated from one
//! body in [`sql`] because their SQL is the same; [`dialect`] holds the few statements that
//! differ.

mod dialect;
mod group_commit;
mod identities;
mod messages;
mod sql;
mod sql_messages;
mod sql_writes;
mod sqlite_writer;
#[cfg(test)]
pub mod testing;

use async_trait::async_trait;
use natter_proto::connections::ConnectionState;
use natter_proto::keys::{IdentityKeys, OneTimeKey};
use natter_proto::{DeviceId, UserId};

pub use identities::IdentityStore;
pub use messages::{
    Appended, ConversationRecord, CursorStart, MemberRecord, MessageStore, NewMessage, OnStored,
    RoomCheck, SendPlan,
};
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

/// One side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    /// The state.
    pub state: ConnectionState,
    /// Bumped on every change; 0 for a side that was never written.
    pub version: i64,
    /// Last change, ms (0 if never).
    pub updated_at: i64,
}

/// Both sides of a connection, from one user's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    /// The acting user's side.
    pub mine: Side,
    /// The peer's side.
    pub theirs: Side,
}

/// A stored side with the peer it is about.
#[derive(Clone, Debug)]
pub struct ConnectionRecord {
    /// The peer.
    pub peer: UserRecord,
    /// This user's side.
    pub side: Side,
}

/// Why a connection change was refused: what a [`Transition`] returns, and the store hands
/// back unchanged (the rules themselves are in [`crate::connections`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `If-Match` named an older version of the side.
    #[error("this connection changed since version {expected}; it is now at version {current}")]
    VersionMismatch {
        /// The version the caller expected.
        expected: i64,
        /// The side's current version.
        current: i64,
    },
    /// Accept or reject without a pending request from that user.
    #[error("there is no pending connection request from this user")]
    NoPendingRequest,
    /// Request or remove while the caller blocks the user.
    #[error("you have blocked this user; unblock them first")]
    Blocked,
}

/// A connection change: given both sides as stored (locked), the new states or a refusal.
pub type Transition<'a> =
    &'a (dyn Fn(Sides) -> Result<(ConnectionState, ConnectionState), Refusal> + Send + Sync);

/// Persistence for every service. Implementations must be safe to share across tasks.
#[async_trait]
pub trait Store: MessageStore + IdentityStore + Send + Sync + 'static {
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Checks the database takes writes (it makes a table in a transaction it rolls back).
    async fn write_probe(&self) -> Result<(), StoreError>;

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
    /// To-device payloads waiting in all inboxes.
    async fn inbox_depth(&self) -> Result<i64, StoreError>;

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

    /// Both sides of the connection between `user` and `peer`.
    async fn connection(&self, user: UserId, peer: UserId) -> Result<Sides, StoreError>;
    /// Those of `candidates` that `user` has an accepted connection with.
    async fn accepted_among(
        &self,
        user: UserId,
        candidates: &[UserId],
    ) -> Result<std::collections::HashSet<UserId>, StoreError>;
    /// Every side of `user` that is not `none`, with the peer's record.
    async fn connections_of(&self, user: UserId) -> Result<Vec<ConnectionRecord>, StoreError>;
    /// Applies `transition` to both sides atomically (both locked), bumping the version of each
    /// side whose state changes. Returns the sides after the change, or the transition's refusal.
    async fn change_connection(
        &self,
        user: UserId,
        peer: UserId,
        now: i64,
        transition: Transition<'_>,
    ) -> Result<Result<Sides, Refusal>, StoreError>;
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
