//! [`SqliteStore`] and [`PgStore`]: one body of SQL, compiled once per backend by
//! [`sql_store!`] so each implementation is concrete (no generic executor bounds) while the
//! queries exist once.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use natter_proto::connections::ConnectionState;
use natter_proto::keys::IdentityKeys;
use natter_proto::{DeviceId, UserId};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::dialect;
use super::sql_writes::Writes;
use super::sqlite_writer::{self, SqliteWriter, WriteTurn};
use super::{
    ClaimedKeyRecord, ConnectionRecord, DeviceRecord, KeyCounts, KeyUpload, NewDevice, NewUser,
    Refusal, Side, Sides, Store, StoreError, TokenOwner, Transition, UserRecord, timed,
};
use natter_proto::limits::ONE_TIME_KEYS_STORED;
use tokio::sync::MutexGuard;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The embedded store: one SQLite file in WAL mode.
///
/// SQLite takes one writer at a time. The per-message writes and reads go to one connection on
/// a thread of its own ([`sqlite_writer`]); other writes go through a pool of one connection.
/// The two take turns ([`WriteTurn`]) rather than meeting in SQLite's busy handler. Other
/// readers use their own pool and never wait for writers (WAL).
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    pub(super) writer: Writer<SqlitePool>,
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
    pub(super) pool: PgPool,
    pub(super) writer: Writer<PgPool>,
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

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    username: String,
    display_name: String,
    avatar_url: Option<String>,
    suspended_at: Option<i64>,
}

impl UserRow {
    fn into_record(self) -> Result<UserRecord, StoreError> {
        Ok(UserRecord {
            id: parse_id(&self.id, "users.id")?,
            username: self.username,
            display_name: self.display_name,
            avatar_url: self.avatar_url,
            suspended: self.suspended_at.is_some(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: String,
    user_id: String,
    name: String,
    created_at: i64,
    curve25519: Option<String>,
    ed25519: Option<String>,
    key_signature: Option<String>,
    keys_created_at: Option<i64>,
    cross_signature: Option<String>,
}

impl DeviceRow {
    fn into_record(self) -> Result<DeviceRecord, StoreError> {
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

#[derive(sqlx::FromRow)]
struct SideRow {
    user_id: String,
    state: String,
    version: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    state: String,
    version: i64,
    updated_at: i64,
    #[sqlx(flatten)]
    peer: UserRow,
}

pub(super) fn parse_id<T: FromStr>(text: &str, column: &'static str) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(column))
}

fn state_name(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::None => "none",
        ConnectionState::Requested => "requested",
        ConnectionState::Incoming => "incoming",
        ConnectionState::Accepted => "accepted",
        ConnectionState::Rejected => "rejected",
        ConnectionState::Blocked => "blocked",
    }
}

pub(super) fn parse_state(name: &str) -> Result<ConnectionState, StoreError> {
    Ok(match name {
        "none" => ConnectionState::None,
        "requested" => ConnectionState::Requested,
        "incoming" => ConnectionState::Incoming,
        "accepted" => ConnectionState::Accepted,
        "rejected" => ConnectionState::Rejected,
        "blocked" => ConnectionState::Blocked,
        _ => return Err(StoreError::Corrupt("connections.state")),
    })
}

const NEVER_WRITTEN: Side = Side {
    state: ConnectionState::None,
    version: 0,
    updated_at: 0,
};

/// Sorts the two stored sides of a pair into (mine, theirs).
fn sides(user: UserId, rows: Vec<SideRow>) -> Result<Sides, StoreError> {
    let mut result = Sides {
        mine: NEVER_WRITTEN,
        theirs: NEVER_WRITTEN,
    };
    let user = user.to_string();
    for row in rows {
        let side = Side {
            state: parse_state(&row.state)?,
            version: row.version,
            updated_at: row.updated_at,
        };
        if row.user_id == user {
            result.mine = side;
        } else {
            result.theirs = side;
        }
    }
    Ok(result)
}

/// Maps constraint violations to what they mean here; anything else is a database error.
pub(super) fn classify(
    error: sqlx::Error,
    unique: &'static str,
    missing: &'static str,
) -> StoreError {
    match error.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict(unique),
        Some(db) if db.is_foreign_key_violation() => StoreError::Missing(missing),
        _ => StoreError::Database(error),
    }
}

/// Implements [`Store`] for a store type with a `pool` field, using the `BEGIN_WRITE`, `LOCK_SIDES` and `TAKE_ONE_TIME_KEY` statements in scope.
macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                timed("ping", async move {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }).await
            }

            async fn write_probe(&self) -> Result<(), StoreError> {
                timed("write_probe", async move {
                    let writer = self.writer.lock().await;
                    let mut probe = writer.begin().await?;
                    sqlx::query("CREATE TABLE natter_write_probe (x INTEGER)")
                        .execute(&mut *probe)
                        .await?;
                    probe.rollback().await?;
                    Ok(())
                }).await
            }

            async fn create_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
                timed("create_user", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query(
                        "INSERT INTO users (id, username, username_lower, password_hash, display_name, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(user.id.to_string())
                    .bind(user.username)
                    .bind(user.username.to_lowercase())
                    .bind(user.password_hash)
                    .bind(user.display_name)
                    .bind(user.created_at)
                    .execute(&*writer)
                    .await
                    .map_err(|e| classify(e, "username", "user"))?;
                    Ok(())
                }).await
            }

            async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
                timed("user", async move {
                    sqlx::query_as::<_, UserRow>(
                        "SELECT id, username, display_name, avatar_url, suspended_at FROM users WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(UserRow::into_record)
                    .transpose()
                }).await
            }

            async fn user_by_username(
                &self,
                username_lower: &str,
            ) -> Result<Option<(UserRecord, String)>, StoreError> {
                timed("user_by_username", async move {
                    #[derive(sqlx::FromRow)]
                    struct Row {
                        #[sqlx(flatten)]
                        user: UserRow,
                        password_hash: String,
                    }
                    let row = sqlx::query_as::<_, Row>(
                        "SELECT id, username, display_name, avatar_url, suspended_at, password_hash FROM users \
                         WHERE username_lower = $1",
                    )
                    .bind(username_lower)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|r| Ok((r.user.into_record()?, r.password_hash))).transpose()
                }).await
            }

            async fn update_profile(
                &self,
                id: UserId,
                display_name: Option<&str>,
                avatar_url: Option<Option<&str>>,
            ) -> Result<(), StoreError> {
                timed("update_profile", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query(
                        "UPDATE users SET display_name = COALESCE($2, display_name), \
                         avatar_url = CASE WHEN $3 THEN $4 ELSE avatar_url END WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .bind(display_name)
                    .bind(avatar_url.is_some())
                    .bind(avatar_url.flatten())
                    .execute(&*writer)
                    .await?;
                    Ok(())
                }).await
            }

            async fn create_device(&self, device: &NewDevice<'_>) -> Result<(), StoreError> {
                timed("create_device", async move {
                    let writer = self.writer.lock().await;
                    sqlx::query(
                        "INSERT INTO devices (id, user_id, name, token_hash, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(device.id.to_string())
                    .bind(device.user_id.to_string())
                    .bind(device.name)
                    .bind(device.token_hash)
                    .bind(device.created_at)
                    .bind(device.expires_at)
                    .execute(&*writer)
                    .await
                    .map_err(|e| classify(e, "token", "user"))?;
                    Ok(())
                }).await
            }

            async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>, StoreError> {
                timed("token_owner", async move {
                    let row = sqlx::query_as::<_, (String, String, i64, Option<i64>)>(
                        "SELECT d.user_id, d.id, d.expires_at, u.suspended_at FROM devices d \
                         JOIN users u ON u.id = d.user_id WHERE d.token_hash = $1",
                    )
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|(user, device, expires_at, suspended_at)| {
                        Ok(TokenOwner {
                            user_id: parse_id(&user, "devices.user_id")?,
                            device_id: parse_id(&device, "devices.id")?,
                            expires_at,
                            suspended: suspended_at.is_some(),
                        })
                    })
                    .transpose()
                }).await
            }

            async fn set_suspended(&self, user: UserId, since: Option<i64>) -> Result<bool, StoreError> {
                timed("set_suspended", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query("UPDATE users SET suspended_at = $2 WHERE id = $1")
                        .bind(user.to_string())
                        .bind(since)
                        .execute(&*writer)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }).await
            }

            async fn inbox_depth(&self) -> Result<i64, StoreError> {
                timed("inbox_depth", async move {
                    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM inbox").fetch_one(&self.pool).await?)
                }).await
            }

            async fn delete_device(&self, user: UserId, device: DeviceId) -> Result<bool, StoreError> {
                timed("delete_device", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
                        .bind(device.to_string())
                        .bind(user.to_string())
                        .execute(&*writer)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }).await
            }

            async fn delete_expired_devices(&self, now: i64, batch: u32) -> Result<u64, StoreError> {
                timed("delete_expired_devices", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query(
                        "DELETE FROM devices WHERE id IN \
                         (SELECT id FROM devices WHERE expires_at < $1 LIMIT $2)",
                    )
                    .bind(now)
                    .bind(i64::from(batch))
                    .execute(&*writer)
                    .await?;
                    Ok(done.rows_affected())
                }).await
            }

            async fn extend_device(&self, device: DeviceId, expires_at: i64) -> Result<bool, StoreError> {
                timed("extend_device", async move {
                    let writer = self.writer.lock().await;
                    let done = sqlx::query(
                        "UPDATE devices SET expires_at = CASE WHEN expires_at < $2 THEN $2 ELSE expires_at END \
                         WHERE id = $1",
                    )
                    .bind(device.to_string())
                    .bind(expires_at)
                    .execute(&*writer)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }).await
            }

            async fn devices(&self, users: &[UserId], now: i64) -> Result<Vec<DeviceRecord>, StoreError> {
                timed("devices", async move {
                    if users.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, user_id, name, created_at, curve25519, ed25519, key_signature, \
                         keys_created_at, cross_signature FROM devices WHERE user_id IN (",
                    );
                    let mut list = query.separated(", ");
                    for user in users {
                        list.push_bind(user.to_string());
                    }
                    query.push(") AND expires_at > ");
                    query.push_bind(now);
                    query.push(" ORDER BY created_at, id");
                    query
                        .build_query_as::<DeviceRow>()
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(DeviceRow::into_record)
                        .collect()
                }).await
            }

            async fn upload_keys(
                &self,
                device: DeviceId,
                upload: &KeyUpload<'_>,
                now: i64,
            ) -> Result<KeyCounts, StoreError> {
                timed("upload_keys", async move {
                    let writer = self.writer.lock().await;
                    let device_id = device.to_string();
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    if let Some(keys) = upload.identity_keys {
                        sqlx::query(
                            "UPDATE devices SET curve25519 = $2, ed25519 = $3, key_signature = $4, \
                             keys_created_at = $5, cross_signature = CASE WHEN curve25519 = $2 \
                             AND ed25519 = $3 THEN cross_signature END WHERE id = $1",
                        )
                        .bind(&device_id)
                        .bind(&keys.curve25519)
                        .bind(&keys.ed25519)
                        .bind(&keys.signature)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(key) = upload.fallback_key {
                        sqlx::query(
                            "UPDATE devices SET fallback_key_id = $2, fallback_key = $3, \
                             fallback_created_at = $4 WHERE id = $1",
                        )
                        .bind(&device_id)
                        .bind(&key.key_id)
                        .bind(&key.key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for key in upload.one_time_keys {
                        let inserted = sqlx::query(
                            "INSERT INTO one_time_keys (device_id, key_id, key, created_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, key_id) DO NOTHING",
                        )
                        .bind(&device_id)
                        .bind(&key.key_id)
                        .bind(&key.key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| classify(e, "one-time key", "device"))?;
                        if inserted.rows_affected() == 0 {
                            // Re-uploading the same key is harmless; reusing its id for another is not.
                            let stored: String = sqlx::query_scalar(
                                "SELECT key FROM one_time_keys WHERE device_id = $1 AND key_id = $2",
                            )
                            .bind(&device_id)
                            .bind(&key.key_id)
                            .fetch_one(&mut *tx)
                            .await?;
                            if stored != key.key {
                                return Err(StoreError::Conflict("one-time key id"));
                            }
                        }
                    }
                    let counts = key_counts(&mut *tx, &device_id).await?;
                    if counts.one_time_keys as usize > ONE_TIME_KEYS_STORED {
                        return Err(StoreError::Conflict("one-time key count"));
                    }
                    tx.commit().await?;
                    Ok(counts)
                }).await
            }

            async fn key_counts(&self, device: DeviceId) -> Result<KeyCounts, StoreError> {
                timed("key_counts", async move {
                    let mut conn = self.pool.acquire().await?;
                    key_counts(&mut *conn, &device.to_string()).await
                }).await
            }

            async fn claim_key(&self, device: DeviceId) -> Result<Option<ClaimedKeyRecord>, StoreError> {
                timed("claim_key", async move {
                    let device_id = device.to_string();
                    let writer = self.writer.lock().await;
                    let taken = sqlx::query_as::<_, (String, String, i64)>(TAKE_ONE_TIME_KEY)
                        .bind(&device_id)
                        .fetch_optional(&*writer)
                        .await?;
                    drop(writer);
                    if let Some((key_id, key, created_at)) = taken {
                        return Ok(Some(ClaimedKeyRecord { key_id, key, fallback: false, created_at }));
                    }
                    let fallback = sqlx::query_as::<_, (Option<String>, Option<String>, Option<i64>)>(
                        "SELECT fallback_key_id, fallback_key, fallback_created_at FROM devices WHERE id = $1",
                    )
                    .bind(&device_id)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(match fallback {
                        Some((Some(key_id), Some(key), Some(created_at))) => {
                            Some(ClaimedKeyRecord { key_id, key, fallback: true, created_at })
                        }
                        _ => None,
                    })
                }).await
            }

            async fn connection(&self, user: UserId, peer: UserId) -> Result<Sides, StoreError> {
                timed("connection", async move {
                    let rows = sqlx::query_as::<_, SideRow>(
                        "SELECT user_id, state, version, updated_at FROM connections \
                         WHERE (user_id = $1 AND peer_id = $2) OR (user_id = $2 AND peer_id = $1)",
                    )
                    .bind(user.to_string())
                    .bind(peer.to_string())
                    .fetch_all(&self.pool)
                    .await?;
                    sides(user, rows)
                }).await
            }

            async fn accepted_among(
                &self,
                user: UserId,
                candidates: &[UserId],
            ) -> Result<std::collections::HashSet<UserId>, StoreError> {
                timed("accepted_among", async move {
                    let mut found = std::collections::HashSet::new();
                    for chunk in candidates.chunks(500) {
                        let mut query = sqlx::QueryBuilder::<$db>::new(
                            "SELECT peer_id FROM connections WHERE state = 'accepted' AND user_id = ",
                        );
                        query.push_bind(user.to_string()).push(" AND peer_id IN (");
                        let mut list = query.separated(", ");
                        for candidate in chunk {
                            list.push_bind(candidate.to_string());
                        }
                        query.push(")");
                        let rows: Vec<(String,)> = query.build_query_as().fetch_all(&self.pool).await?;
                        for (peer,) in rows {
                            found.insert(parse_id(&peer, "connections.peer_id")?);
                        }
                    }
                    Ok(found)
                }).await
            }

            async fn connections_of(&self, user: UserId) -> Result<Vec<ConnectionRecord>, StoreError> {
                timed("connections_of", async move {
                    sqlx::query_as::<_, ConnectionRow>(
                        "SELECT c.state, c.version, c.updated_at, u.id, u.username, u.display_name, \
                         u.avatar_url, u.suspended_at FROM connections c JOIN users u ON u.id = c.peer_id \
                         WHERE c.user_id = $1 AND c.state <> 'none' ORDER BY c.updated_at DESC, u.id",
                    )
                    .bind(user.to_string())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|row| {
                        Ok(ConnectionRecord {
                            side: Side {
                                state: parse_state(&row.state)?,
                                version: row.version,
                                updated_at: row.updated_at,
                            },
                            peer: row.peer.into_record()?,
                        })
                    })
                    .collect()
                }).await
            }

            async fn change_connection(
                &self,
                user: UserId,
                peer: UserId,
                now: i64,
                transition: Transition<'_>,
            ) -> Result<Result<Sides, Refusal>, StoreError> {
                timed("change_connection", async move {
                    let writer = self.writer.lock().await;
                    let (user_text, peer_text) = (user.to_string(), peer.to_string());
                    // Insert missing sides in key order, so concurrent callers lock in one order.
                    let (first, second) =
                        if user_text < peer_text { (&user_text, &peer_text) } else { (&peer_text, &user_text) };
                    let mut tx = writer.begin_with(BEGIN_WRITE).await?;
                    sqlx::query(
                        "INSERT INTO connections (user_id, peer_id, state, version, updated_at) \
                         VALUES ($1, $2, 'none', 0, 0), ($2, $1, 'none', 0, 0) ON CONFLICT DO NOTHING",
                    )
                    .bind(first)
                    .bind(second)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(e, "connection", "user"))?;
                    let rows = sqlx::query_as::<_, SideRow>(LOCK_SIDES)
                        .bind(&user_text)
                        .bind(&peer_text)
                        .fetch_all(&mut *tx)
                        .await?;
                    let before = sides(user, rows)?;
                    let (mine, theirs) = match transition(before) {
                        Ok(states) => states,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let mut after = before;
                    for (side, state, owner, other) in [
                        (&mut after.mine, mine, &user_text, &peer_text),
                        (&mut after.theirs, theirs, &peer_text, &user_text),
                    ] {
                        if side.state == state {
                            continue;
                        }
                        sqlx::query(
                            "UPDATE connections SET state = $3, version = version + 1, updated_at = $4 \
                             WHERE user_id = $1 AND peer_id = $2",
                        )
                        .bind(owner)
                        .bind(other)
                        .bind(state_name(state))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        *side = Side { state, version: side.version + 1, updated_at: now };
                    }
                    tx.commit().await?;
                    Ok(Ok(after))
                }).await
            }
        }

        async fn key_counts(
            conn: &mut <$db as sqlx::Database>::Connection,
            device_id: &str,
        ) -> Result<KeyCounts, StoreError> {
            let (count, fallback) = sqlx::query_as::<_, (i64, Option<String>)>(
                "SELECT (SELECT COUNT(*) FROM one_time_keys WHERE device_id = $1), \
                 (SELECT fallback_key_id FROM devices WHERE id = $1)",
            )
            .bind(device_id)
            .fetch_one(conn)
            .await?;
            Ok(KeyCounts {
                one_time_keys: u32::try_from(count).map_err(|_| StoreError::Corrupt("one_time_keys"))?,
                has_fallback: fallback.is_some(),
            })
        }
    };
}

mod sqlite_impl {
    use super::dialect::sqlite::{BEGIN_WRITE, LOCK_SIDES, TAKE_ONE_TIME_KEY};
    use super::*;
    sql_store!(SqliteStore, sqlx::Sqlite);
}

mod postgres_impl {
    use super::dialect::postgres::{BEGIN_WRITE, LOCK_SIDES, TAKE_ONE_TIME_KEY};
    use super::*;
    sql_store!(PgStore, sqlx::Postgres);
}
