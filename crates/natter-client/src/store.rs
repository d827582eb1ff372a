//! The device's local store: one SQLite file holding the account and sessions (as encrypted
//! pickles), verified device keys, decrypted messages with a full-text index, cursors, the
//! block list and the outbound queue.

use std::path::Path;

use natter_crypto::UnableToDecrypt;
use natter_proto::{ConversationId, DeviceId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::ClientError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS olm_sessions (
    their_key TEXT NOT NULL, session_id TEXT NOT NULL, pickle TEXT NOT NULL,
    used_at INTEGER NOT NULL, PRIMARY KEY (their_key, session_id));
CREATE TABLE IF NOT EXISTS outbound_sessions (
    conversation_id TEXT PRIMARY KEY NOT NULL, pickle TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inbound_sessions (
    session_id TEXT PRIMARY KEY NOT NULL, conversation_id TEXT NOT NULL, pickle TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    user_id TEXT NOT NULL, device_id TEXT NOT NULL, curve25519 TEXT NOT NULL,
    ed25519 TEXT NOT NULL, PRIMARY KEY (user_id, device_id));
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, sender_id TEXT NOT NULL,
    sender_device_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, server_ts INTEGER NOT NULL,
    body TEXT, failure TEXT, session_id TEXT, ciphertext TEXT,
    PRIMARY KEY (conversation_id, seq));
CREATE INDEX IF NOT EXISTS messages_pending ON messages (session_id) WHERE body IS NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    body, conversation_id UNINDEXED, sender_id UNINDEXED, seq UNINDEXED);
CREATE TABLE IF NOT EXISTS cursors (
    conversation_id TEXT PRIMARY KEY NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    read INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS receipts (
    conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, delivered INTEGER NOT NULL,
    read INTEGER NOT NULL, PRIMARY KEY (conversation_id, user_id));
CREATE TABLE IF NOT EXISTS blocks (user_id TEXT PRIMARY KEY NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, conversation_id TEXT,
    user_id TEXT, seq INTEGER, client_msg_id TEXT, body TEXT, ciphertext TEXT);
";

/// A message as this device knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its place in the conversation.
    pub seq: i64,
    /// The sender.
    pub sender_id: UserId,
    /// The sending device.
    pub sender_device_id: DeviceId,
    /// The sender's id for it.
    pub client_msg_id: String,
    /// When the server stored it (ms).
    pub server_ts: i64,
    /// The text, or why this device cannot read it.
    pub body: Result<String, UnableToDecrypt>,
}

/// One queued operation, sent in order once the server is reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Queued {
    /// A message; `ciphertext` is set once it was encrypted (resends reuse it).
    Send {
        /// The conversation.
        conversation_id: ConversationId,
        /// Its id, the same on every resend.
        client_msg_id: String,
        /// The text.
        text: String,
        /// The encrypted form, once made.
        ciphertext: Option<String>,
    },
    /// A read cursor.
    Read {
        /// The conversation.
        conversation_id: ConversationId,
        /// Everything up to here was read.
        seq: i64,
    },
    /// A block (true) or unblock (false).
    Block {
        /// The user.
        user_id: UserId,
        /// Block or unblock.
        block: bool,
    },
}

/// The store. Not shared between threads: the device keeps it behind a lock.
pub(crate) struct Store {
    db: std::sync::Mutex<Connection>,
}

fn sql(e: rusqlite::Error) -> ClientError {
    ClientError::Store(e)
}

fn parse_id<T: std::str::FromStr>(text: &str) -> rusqlite::Result<T> {
    text.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "not a UUID".into(),
        )
    })
}

impl Store {
    /// Opens (creating if needed) the store at `path`, readable only by this user.
    pub(crate) fn open(path: &Path) -> Result<Self, ClientError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(ClientError::Io)?;
        }
        let db = Connection::open(path).map_err(sql)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(ClientError::Io)?;
        }
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
            .map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self {
            db: std::sync::Mutex::new(db),
        })
    }

    /// The connection. The device's own lock already serializes access; this one only makes
    /// the store shareable across the tasks that hold that lock.
    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one statement; returns how many rows it changed.
    fn execute(
        &self,
        statement: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize, ClientError> {
        self.db().execute(statement, params).map_err(sql)
    }

    /// Runs one statement whose count of changed rows does not matter.
    fn run(&self, statement: &str, params: impl rusqlite::Params) -> Result<(), ClientError> {
        self.execute(statement, params).map(drop)
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.db()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql)
    }

    pub(crate) fn set(&self, key: &str, value: &str) -> Result<(), ClientError> {
        self.run(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )
    }

    /// Pickles of the pairwise sessions with a device, most recently used first.
    pub(crate) fn olm_sessions(&self, their_key: &str) -> Result<Vec<String>, ClientError> {
        let db = self.db();
        let mut statement = db
            .prepare("SELECT pickle FROM olm_sessions WHERE their_key = ?1 ORDER BY used_at DESC")
            .map_err(sql)?;
        let rows = statement
            .query_map([their_key], |r| r.get(0))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub(crate) fn save_olm_session(
        &self,
        their_key: &str,
        session_id: &str,
        pickle: &str,
        used_at: i64,
    ) -> Result<(), ClientError> {
        self.run(
            "INSERT INTO olm_sessions (their_key, session_id, pickle, used_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (their_key, session_id)
             DO UPDATE SET pickle = excluded.pickle, used_at = excluded.used_at",
            params![their_key, session_id, pickle, used_at],
        )
    }

    pub(crate) fn outbound(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<String>, ClientError> {
        self.db()
            .query_row(
                "SELECT pickle FROM outbound_sessions WHERE conversation_id = ?1",
                [conversation.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    pub(crate) fn save_outbound(
        &self,
        conversation: ConversationId,
        pickle: &str,
    ) -> Result<(), ClientError> {
        self.run(
            "INSERT INTO outbound_sessions (conversation_id, pickle) VALUES (?1, ?2)
             ON CONFLICT (conversation_id) DO UPDATE SET pickle = excluded.pickle",
            params![conversation.to_string(), pickle],
        )
    }

    /// Drops every outbound room session: the next message in each conversation starts a new
    /// one, shared to all its devices.
    pub(crate) fn forget_outbound_sessions(&self) -> Result<(), ClientError> {
        self.run("DELETE FROM outbound_sessions", [])
    }

    pub(crate) fn inbound(&self, session_id: &str) -> Result<Option<String>, ClientError> {
        self.db()
            .query_row(
                "SELECT pickle FROM inbound_sessions WHERE session_id = ?1",
                [session_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    pub(crate) fn save_inbound(
        &self,
        session_id: &str,
        conversation: ConversationId,
        pickle: &str,
    ) -> Result<(), ClientError> {
        self.run(
            "INSERT INTO inbound_sessions (session_id, conversation_id, pickle) VALUES (?1, ?2, ?3)
             ON CONFLICT (session_id) DO UPDATE SET pickle = excluded.pickle",
            params![session_id, conversation.to_string(), pickle],
        )
    }

    /// A device's verified keys (Curve25519, Ed25519), if cached.
    pub(crate) fn device_keys(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<Option<(String, String)>, ClientError> {
        self.db()
            .query_row(
                "SELECT curve25519, ed25519 FROM devices WHERE user_id = ?1 AND device_id = ?2",
                [user.to_string(), device.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql)
    }

    pub(crate) fn save_device(
        &self,
        device: &natter_crypto::VerifiedDevice,
    ) -> Result<(), ClientError> {
        self.run(
            "INSERT INTO devices (user_id, device_id, curve25519, ed25519) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, device_id)
             DO UPDATE SET curve25519 = excluded.curve25519, ed25519 = excluded.ed25519",
            params![
                device.user_id.to_string(),
                device.device_id.to_string(),
                device.curve25519,
                device.ed25519
            ],
        )
    }

    /// Stores a message once per (conversation, seq); false when it was already there.
    pub(crate) fn insert_message(
        &self,
        message: &StoredMessage,
        session_id: Option<&str>,
        ciphertext: Option<&str>,
    ) -> Result<bool, ClientError> {
        let (body, failure) = match &message.body {
            Ok(text) => (Some(text.as_str()), None),
            Err(reason) => (None, Some(reason.code())),
        };
        let inserted = self.execute(
            "INSERT OR IGNORE INTO messages (conversation_id, seq, sender_id, sender_device_id,
             client_msg_id, server_ts, body, failure, session_id, ciphertext)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                message.conversation_id.to_string(),
                message.seq,
                message.sender_id.to_string(),
                message.sender_device_id.to_string(),
                message.client_msg_id,
                message.server_ts,
                body,
                failure,
                session_id,
                // Kept only while undecrypted, to retry when the key arrives.
                if body.is_none() { ciphertext } else { None },
            ],
        )? == 1;
        if inserted && let Some(text) = body {
            self.index(message, text)?;
        }
        Ok(inserted)
    }

    fn index(&self, message: &StoredMessage, text: &str) -> Result<(), ClientError> {
        self.run(
            "INSERT INTO messages_fts (body, conversation_id, sender_id, seq) VALUES (?1, ?2, ?3, ?4)",
            params![
                text,
                message.conversation_id.to_string(),
                message.sender_id.to_string(),
                message.seq
            ],
        )
    }

    /// Messages still waiting for the key of `session_id`, with their ciphertexts.
    pub(crate) fn pending(
        &self,
        session_id: &str,
    ) -> Result<Vec<(StoredMessage, String)>, ClientError> {
        let db = self.db();
        let mut statement = db
            .prepare(&format!(
                "SELECT {COLUMNS}, m.ciphertext FROM messages m
                 WHERE m.session_id = ?1 AND m.body IS NULL AND m.ciphertext IS NOT NULL
                 ORDER BY m.seq"
            ))
            .map_err(sql)?;
        let rows = statement
            .query_map([session_id], |r| Ok((row_message(r)?, r.get(8)?)))
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Records that a pending message was decrypted.
    pub(crate) fn resolve(&self, message: &StoredMessage, text: &str) -> Result<(), ClientError> {
        self.run(
            "UPDATE messages SET body = ?3, failure = NULL, ciphertext = NULL
             WHERE conversation_id = ?1 AND seq = ?2",
            params![message.conversation_id.to_string(), message.seq, text],
        )?;
        self.index(message, text)
    }

    /// The newest `limit` messages of a conversation, oldest first, without blocked senders.
    pub(crate) fn messages(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let db = self.db();
        let mut statement = db
            .prepare(&format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM messages m WHERE m.conversation_id = ?1
                 AND m.sender_id NOT IN (SELECT user_id FROM blocks) ORDER BY m.seq DESC LIMIT ?2)
                 ORDER BY seq"
            ))
            .map_err(sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![conversation.to_string(), limit], row_message)
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Full-text search over decrypted messages, newest first, without blocked senders.
    pub(crate) fn search(
        &self,
        query: &str,
        conversation: Option<ConversationId>,
        sender: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        // Each word is quoted so user input is never FTS5 syntax.
        let words: Vec<String> = query
            .split_whitespace()
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db();
        let mut statement = db
            .prepare(&format!(
                "SELECT {COLUMNS} FROM messages m JOIN messages_fts f
                   ON f.conversation_id = m.conversation_id AND f.seq = m.seq
                 WHERE messages_fts MATCH ?1
                   AND (?2 IS NULL OR m.conversation_id = ?2)
                   AND (?3 IS NULL OR m.sender_id = ?3)
                   AND m.sender_id NOT IN (SELECT user_id FROM blocks)
                 ORDER BY m.server_ts DESC LIMIT ?4"
            ))
            .map_err(sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(
                params![
                    words.join(" "),
                    conversation.map(|c| c.to_string()),
                    sender.map(|s| s.to_string()),
                    limit
                ],
                row_message,
            )
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// This device's (delivered, read) cursors in a conversation.
    pub(crate) fn cursors(&self, conversation: ConversationId) -> Result<(i64, i64), ClientError> {
        self.db()
            .query_row(
                "SELECT delivered, read FROM cursors WHERE conversation_id = ?1",
                [conversation.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map(|c| c.unwrap_or((0, 0)))
            .map_err(sql)
    }

    /// Moves a cursor forward (never back); returns true when it moved.
    pub(crate) fn advance_cursor(
        &self,
        conversation: ConversationId,
        seq: i64,
        read: bool,
    ) -> Result<bool, ClientError> {
        let column = if read { "read" } else { "delivered" };
        let changed = self.execute(
            &format!(
                "INSERT INTO cursors (conversation_id, {column}) VALUES (?1, ?2)
                 ON CONFLICT (conversation_id) DO UPDATE SET {column} = excluded.{column}
                 WHERE excluded.{column} > cursors.{column}"
            ),
            params![conversation.to_string(), seq],
        )?;
        Ok(changed == 1)
    }

    /// Records other users' cursors (the furthest of each user's devices), all in one
    /// transaction: a `receipts` frame can carry many, and this runs under the device lock.
    pub(crate) fn save_receipts(
        &self,
        receipts: &[natter_proto::ws::Receipt],
    ) -> Result<(), ClientError> {
        let mut db = self.db();
        let transaction = db.transaction().map_err(sql)?;
        {
            let mut statement = transaction
                .prepare(
                    "INSERT INTO receipts (conversation_id, user_id, delivered, read)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (conversation_id, user_id) DO UPDATE SET
                     delivered = max(delivered, excluded.delivered), read = max(read, excluded.read)",
                )
                .map_err(sql)?;
            for receipt in receipts {
                statement
                    .execute(params![
                        receipt.conversation_id.to_string(),
                        receipt.user_id.to_string(),
                        receipt.delivered_seq,
                        receipt.read_seq
                    ])
                    .map_err(sql)?;
            }
        }
        transaction.commit().map_err(sql)
    }

    /// How far others got in a conversation: (highest delivered, highest read) over other users.
    pub(crate) fn receipts(
        &self,
        conversation: ConversationId,
        me: UserId,
    ) -> Result<(i64, i64), ClientError> {
        self.db()
            .query_row(
                "SELECT coalesce(max(delivered), 0), coalesce(max(read), 0) FROM receipts
                 WHERE conversation_id = ?1 AND user_id != ?2",
                [conversation.to_string(), me.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql)
    }

    pub(crate) fn set_blocked(&self, user: UserId, blocked: bool) -> Result<(), ClientError> {
        let statement = if blocked {
            "INSERT OR IGNORE INTO blocks (user_id) VALUES (?1)"
        } else {
            "DELETE FROM blocks WHERE user_id = ?1"
        };
        self.run(statement, [user.to_string()])
    }

    pub(crate) fn is_blocked(&self, user: UserId) -> Result<bool, ClientError> {
        self.db()
            .query_row(
                "SELECT 1 FROM blocks WHERE user_id = ?1",
                [user.to_string()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(sql)
    }

    pub(crate) fn enqueue(&self, item: &Queued) -> Result<(), ClientError> {
        let (kind, conversation, user, seq, id, body) = match item {
            Queued::Send {
                conversation_id,
                client_msg_id,
                text,
                ..
            } => (
                "send",
                Some(conversation_id.to_string()),
                None,
                None,
                Some(client_msg_id.as_str()),
                Some(text.as_str()),
            ),
            Queued::Read {
                conversation_id,
                seq,
            } => (
                "read",
                Some(conversation_id.to_string()),
                None,
                Some(*seq),
                None,
                None,
            ),
            Queued::Block { user_id, block } => (
                if *block { "block" } else { "unblock" },
                None,
                Some(user_id.to_string()),
                None,
                None,
                None,
            ),
        };
        self.run(
            "INSERT INTO outbox (kind, conversation_id, user_id, seq, client_msg_id, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![kind, conversation, user, seq, id, body],
        )
    }

    /// The queue, oldest first, with each item's row id.
    pub(crate) fn outbox(&self) -> Result<Vec<(i64, Queued)>, ClientError> {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT id, kind, conversation_id, user_id, seq, client_msg_id, body, ciphertext
                 FROM outbox ORDER BY id",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map([], |r| {
                let kind: String = r.get(1)?;
                let conversation =
                    || -> rusqlite::Result<ConversationId> { parse_id(&r.get::<_, String>(2)?) };
                let item = match kind.as_str() {
                    "send" => Queued::Send {
                        conversation_id: conversation()?,
                        client_msg_id: r.get(5)?,
                        text: r.get(6)?,
                        ciphertext: r.get(7)?,
                    },
                    "read" => Queued::Read {
                        conversation_id: conversation()?,
                        seq: r.get(4)?,
                    },
                    _ => Queued::Block {
                        user_id: parse_id(&r.get::<_, String>(3)?)?,
                        block: kind == "block",
                    },
                };
                Ok((r.get(0)?, item))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    pub(crate) fn set_ciphertext(&self, id: i64, ciphertext: &str) -> Result<(), ClientError> {
        self.run(
            "UPDATE outbox SET ciphertext = ?2 WHERE id = ?1",
            params![id, ciphertext],
        )
    }

    pub(crate) fn dequeue(&self, id: i64) -> Result<(), ClientError> {
        self.run("DELETE FROM outbox WHERE id = ?1", [id])
    }

    /// Removes an acked send and returns its text.
    pub(crate) fn take_sent(&self, client_msg_id: &str) -> Result<Option<String>, ClientError> {
        self.db()
            .query_row(
                "DELETE FROM outbox WHERE kind = 'send' AND client_msg_id = ?1 RETURNING body",
                [client_msg_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }
}

const COLUMNS: &str = "m.conversation_id, m.seq, m.sender_id, m.sender_device_id, m.client_msg_id, m.server_ts, m.body, m.failure";

fn row_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let body: Option<String> = r.get(6)?;
    let failure: Option<String> = r.get(7)?;
    Ok(StoredMessage {
        conversation_id: parse_id(&r.get::<_, String>(0)?)?,
        seq: r.get(1)?,
        sender_id: parse_id(&r.get::<_, String>(2)?)?,
        sender_device_id: parse_id(&r.get::<_, String>(3)?)?,
        client_msg_id: r.get(4)?,
        server_ts: r.get(5)?,
        body: body
            .ok_or_else(|| UnableToDecrypt::from_code(failure.as_deref().unwrap_or("corrupt"))),
    })
}

#[cfg(test)]
mod tests {
    use natter_proto::ws::Receipt;
    use natter_proto::{ConversationId, DeviceId, UserId};

    use super::Store;

    /// Frames in the store's write-ahead log: each commit appends the pages it changed.
    fn wal_frames(store: &Store) -> i64 {
        store
            .db()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[test]
    fn a_batch_of_receipts_is_saved_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.db")).unwrap();
        let conversation = ConversationId::new();
        let users: Vec<UserId> = (0..50).map(|_| UserId::new()).collect();
        let receipt = |user: UserId, delivered_seq, read_seq| Receipt {
            conversation_id: conversation,
            user_id: user,
            device_id: DeviceId::new(),
            delivered_seq,
            read_seq,
        };
        let mut batch: Vec<Receipt> = users.iter().map(|u| receipt(*u, 4, 2)).collect();
        // A later cursor of the first user's other device, and an earlier one of the second's.
        batch.push(receipt(users[0], 9, 7));
        batch.push(receipt(users[1], 1, 1));
        store
            .db()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        store.save_receipts(&batch).unwrap();
        // One commit writes each changed page once; a commit per receipt writes at least one
        // page for each.
        let frames = wal_frames(&store);
        assert!(
            frames < 10,
            "{frames} frames in the log for {} receipts",
            batch.len()
        );
        assert_eq!(store.receipts(conversation, users[2]).unwrap(), (9, 7));
        assert_eq!(store.receipts(conversation, users[0]).unwrap(), (4, 2));
    }
}
