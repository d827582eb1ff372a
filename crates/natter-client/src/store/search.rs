//! The full-text index over decrypted bodies. It lives in an in-memory database attached to
//! the store's connection (`search`), so no word of it ever reaches the disk: it is built from
//! the sealed bodies on the first search after the store is unlocked, kept up to date by every
//! later insert, and gone when the store closes.

use rusqlite::{Connection, params};

use crate::ClientError;

/// Attaches the (empty) in-memory index to a connection; temporary tables and sorts stay in
/// memory too.
pub(super) const ATTACH: &str = "
PRAGMA temp_store = MEMORY;
ATTACH DATABASE ':memory:' AS search;
CREATE VIRTUAL TABLE search.bodies USING fts5(body, conversation UNINDEXED, seq UNINDEXED);
";

/// Adds one body, keyed by its message's stored conversation tag and seq.
pub(super) fn add(
    db: &Connection,
    conversation: &[u8],
    seq: i64,
    body: &str,
) -> Result<(), ClientError> {
    db.prepare_cached("INSERT INTO search.bodies (body, conversation, seq) VALUES (?1, ?2, ?3)")
        .and_then(|mut statement| statement.execute(params![body, conversation, seq]))
        .map(drop)
        .map_err(ClientError::Store)
}

/// The query for FTS5: each word quoted, so user input is never FTS5 syntax; `None` for no
/// words.
pub(super) fn phrase(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}
