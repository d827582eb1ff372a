//! [`SqliteStore`] and [`PgStore`], and the rows and helpers the SQL of every role shares.
//! Each role's SQL (`sql_accounts.rs` and its siblings) is one body compiled once per backend
//! by a macro, so each implementation is concrete (no generic executor bounds) while the
//! queries exist once.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use natter_proto::connections::ConnectionState;
use natter_proto::keys::IdentityKeys;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql_writes::Writes;
use super::sqlite_writer::{self, SqliteWriter, WriteTurn};
use super::{DbError, DeviceRecord, Store, StoreError, UserRecord, timed};
use tokio::sync::MutexGuard;

/// The schema's migrations (`migrations/`), applied by both backends when they open.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The embedded store: one SQLite file in WAL mode.
///
/// SQLite takes one writer at a time. The per-message writes and reads go to one connection on
/// a thread of its own (`sqlite_writer`); other writes go through a pool of one connection.
/// The two take turns (`WriteTurn`) rather than meeting in SQLite's busy handler. Other
/// readers use their own pool and never wait for writers (WAL).
#[derive(Clone)]
pub struct SqliteStore {
    /// The readers' pool.
    pub(super) pool: SqlitePool,
    /// The pool of one connection for writes other than appends and cursor moves.
    pub(super) writer: Writer<SqlitePool>,
    /// The writer thread: appends, cursor moves and the reads that go with them.
    pub(super) writes: SqliteWriter,
}

/// A store's pool for writes, handed out by [`Writer::lock`] with the store's turn to write, so
/// a write cannot forget to wait for it. (A clone of the pool would outlive the turn: keep none.)
#[derive(Clone)]
pub(super) struct Writer<P> {
    pool: P,
    /// `None` on PostgreSQL, which takes concurrent writers.
    turn: Option<WriteTurn>,
}

/// The pool for writes, for as long as the turn is held.
pub(super) struct Writing<'a, P> {
    pool: &'a P,
    _turn: Option<MutexGuard<'a, ()>>,
}

impl<P> Writer<P> {
    /// Waits for the turn to write, if there is one to wait for, and hands out the pool.
    pub(super) async fn lock(&self) -> Writing<'_, P> {
        let turn = match &self.turn {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        Writing {
            pool: &self.pool,
            _turn: turn,
        }
    }
}

impl<P> std::ops::Deref for Writing<'_, P> {
    type Target = P;

    /// The pool, for as long as the turn is held.
    fn deref(&self) -> &P {
        self.pool
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies migrations.
    ///
    /// # Errors
    /// The file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses nothing when the process dies (kill -9); only a power
            // failure can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let cannot_open =
            |e| anyhow::anyhow!("cannot open SQLite database {}: {e}", path.display());
        // Only the writer thread (sqlite_writer.rs) gets a larger page cache; this pool's writer,
        // for the rarer writes, keeps SQLite's default. In WAL mode a reader drops its whole cache
        // whenever another connection has committed, and dropping a large one costs more than
        // re-reading the few pages a query needs (natter-bench's profile). Readers keep 256 KiB
        // each (SQLite's default is 2 MiB): under traffic they are emptied by every commit
        // anyway, and when idle, eight full ones were a fifth of natterd's memory at 10,000
        // connections. Memory-mapping the file made every reader remap it as it grew.
        // No ping before handing out a connection: the database is a file in this process, and
        // each ping is a round trip to the connection's worker thread (sqlx runs every SQLite
        // connection on its own thread), which is what a query costs most on a busy core.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| anyhow::anyhow!("migrating {}: {e}", path.display()))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.read_only(true).pragma("cache_size", "-256"))
            .await
            .map_err(cannot_open)?;
        let turn = WriteTurn::default();
        Ok(Self {
            pool,
            writes: sqlite_writer::start(path, Arc::clone(&turn))?,
            writer: Writer {
                pool: writer,
                turn: Some(turn),
            },
        })
    }
}

/// A pooled PostgreSQL connection idle this long is pinged before it is used again.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The cluster store: PostgreSQL. Readers and writers share one pool.
#[derive(Clone)]
pub struct PgStore {
    /// The pool readers and writers share.
    pub(super) pool: PgPool,
    /// The same pool for writes (PostgreSQL takes concurrent writers: no turn to wait for).
    pub(super) writer: Writer<PgPool>,
    /// The group commit of appends and cursor moves (`pg_writer`).
    pub(super) writes: Writes,
}

impl PgStore {
    /// Connects to `url` with a pool of up to `connections`, and applies migrations.
    ///
    /// # Errors
    /// The server cannot be reached or a migration fails.
    pub async fn open(url: &str, connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every pooled connection on every acquire by default: a round trip
            // per query, several per send. Ping only connections that sat idle a while (a
            // busy one that broke fails its query with `store_unavailable`, and is dropped).
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("migrating PostgreSQL: {e}"))?;
        Ok(Self {
            writes: Self::group_writes(pool.clone()),
            writer: Writer {
                pool: pool.clone(),
                turn: None,
            },
            pool,
        })
    }
}

/// A `users` row as most reads select it (`id, username, display_name, avatar_url,
/// suspended_at`).
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    /// The user id, as text.
    pub(super) id: String,
    /// The username as registered (its lower-cased copy is what is unique).
    pub(super) username: String,
    /// The name shown to others.
    pub(super) display_name: String,
    /// The avatar's URL, if set.
    pub(super) avatar_url: Option<String>,
    /// When an operator suspended the account, if they did.
    pub(super) suspended_at: Option<i64>,
}

impl UserRow {
    /// The record, or `Corrupt` if the id does not parse.
    pub(super) fn into_record(self) -> Result<UserRecord, DbError> {
        Ok(UserRecord {
            id: parse_id(&self.id, "users.id")?,
            username: self.username,
            display_name: self.display_name,
            avatar_url: self.avatar_url,
            suspended: self.suspended_at.is_some(),
        })
    }
}

/// A `devices` row with its identity keys (null until the device uploads them) and its
/// cross-signature.
#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    /// The device id, as text.
    pub(super) id: String,
    /// Its user's id, as text.
    pub(super) user_id: String,
    /// The name its owner gave it.
    pub(super) name: String,
    /// When it logged in (ms).
    pub(super) created_at: i64,
    /// Its Curve25519 identity key.
    pub(super) curve25519: Option<String>,
    /// Its Ed25519 identity key.
    pub(super) ed25519: Option<String>,
    /// The device's signature over its identity keys.
    pub(super) key_signature: Option<String>,
    /// When the identity keys were uploaded (ms).
    pub(super) keys_created_at: Option<i64>,
    /// The owner's self-signing key's signature over the device, if it has one.
    pub(super) cross_signature: Option<String>,
}

impl DeviceRow {
    /// The record: identity keys only when all four columns are set, as an upload writes them
    /// together.
    pub(super) fn into_record(self) -> Result<DeviceRecord, DbError> {
        let identity_keys = match (
            self.curve25519,
            self.ed25519,
            self.key_signature,
            self.keys_created_at,
        ) {
            (Some(curve25519), Some(ed25519), Some(signature), Some(at)) => Some((
                IdentityKeys {
                    curve25519,
                    ed25519,
                    signature,
                },
                at,
            )),
            _ => None,
        };
        Ok(DeviceRecord {
            id: parse_id(&self.id, "devices.id")?,
            user_id: parse_id(&self.user_id, "devices.user_id")?,
            name: self.name,
            created_at: self.created_at,
            identity_keys,
            cross_signature: self.cross_signature,
        })
    }
}

/// Parses an id stored as text; `Corrupt(column)` if it is not one.
pub(super) fn parse_id<T: FromStr>(text: &str, column: &'static str) -> Result<T, DbError> {
    text.parse().map_err(|_| StoreError::Corrupt(column).into())
}

/// A connection state from the `connections.state` column; `Corrupt` for a name this
/// version does not know.
pub(super) fn parse_state(name: &str) -> Result<ConnectionState, DbError> {
    Ok(match name {
        "none" => ConnectionState::None,
        "requested" => ConnectionState::Requested,
        "incoming" => ConnectionState::Incoming,
        "accepted" => ConnectionState::Accepted,
        "rejected" => ConnectionState::Rejected,
        "blocked" => ConnectionState::Blocked,
        _ => return Err(StoreError::Corrupt("connections.state").into()),
    })
}

/// Maps constraint violations to what they mean here; anything else is a database error.
pub(super) fn classify(error: sqlx::Error, unique: &'static str, missing: &'static str) -> DbError {
    match error.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict(unique).into(),
        Some(db) if db.is_foreign_key_violation() => StoreError::Missing(missing).into(),
        _ => error.into(),
    }
}

/// Implements [`Store`] (what is not a role's) for a store type with `pool` and `writer` fields.
macro_rules! sql_store {
    ($store:ty) => {
        #[async_trait]
        impl Store for $store {
            /// `SELECT 1` on the read pool.
            async fn ping(&self) -> Result<(), StoreError> {
                timed("ping", async move {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                })
                .await
            }

            /// Makes a table in a write transaction and rolls it back.
            async fn write_probe(&self) -> Result<(), StoreError> {
                timed("write_probe", async move {
                    let writer = self.writer.lock().await;
                    let mut probe = writer.begin().await?;
                    sqlx::query("CREATE TABLE natter_write_probe (x INTEGER)")
                        .execute(&mut *probe)
                        .await?;
                    probe.rollback().await?;
                    Ok(())
                })
                .await
            }
        }
    };
}

sql_store!(SqliteStore);
sql_store!(PgStore);
