//! The statements that differ between SQLite and PostgreSQL.
//!
//! SQLite has one writer at a time, so a write transaction starts with `BEGIN IMMEDIATE`
//! (taking the write lock up front instead of failing to upgrade a read lock later) and needs
//! no row locks. PostgreSQL runs writers concurrently, so the same statements lock rows.

/// SQLite.
pub mod sqlite {
    /// Starts a write transaction.
    pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
    /// Both sides of a connection, locked for the rest of the transaction.
    pub const LOCK_SIDES: &str = "SELECT user_id, state, version, updated_at FROM connections \
         WHERE (user_id = $1 AND peer_id = $2) OR (user_id = $2 AND peer_id = $1)";
    /// Deletes and returns the oldest one-time key of a device.
    pub const TAKE_ONE_TIME_KEY: &str = "DELETE FROM one_time_keys \
         WHERE device_id = $1 AND key_id = (SELECT key_id FROM one_time_keys \
             WHERE device_id = $1 ORDER BY created_at, key_id LIMIT 1) \
         RETURNING key_id, key, created_at";
    /// A user's row, locked for the rest of the transaction (the write lock already is).
    pub const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1";
}

/// PostgreSQL.
pub mod postgres {
    /// Starts a write transaction.
    pub const BEGIN_WRITE: &str = "BEGIN";
    /// Both sides of a connection, locked for the rest of the transaction (in key order, the
    /// same order for every caller, so two transactions on one pair cannot deadlock).
    pub const LOCK_SIDES: &str = "SELECT user_id, state, version, updated_at FROM connections \
         WHERE (user_id = $1 AND peer_id = $2) OR (user_id = $2 AND peer_id = $1) \
         ORDER BY user_id FOR UPDATE";
    /// Deletes and returns the oldest one-time key of a device. SKIP LOCKED lets concurrent
    /// claims each take a different key instead of queueing on the same one.
    pub const TAKE_ONE_TIME_KEY: &str = "DELETE FROM one_time_keys \
         WHERE device_id = $1 AND key_id = (SELECT key_id FROM one_time_keys \
             WHERE device_id = $1 ORDER BY created_at, key_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING key_id, key, created_at";
    /// A user's row, locked for the rest of the transaction: writes that count the user's rows
    /// before adding one take turns.
    pub const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";
}
