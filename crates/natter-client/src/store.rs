//! The device's local store: one SQLite file holding the account and sessions (pickles),
//! verified device keys, messages, cursors, receipts, the block list, the outbound queue and
//! a key-value table, all encrypted at rest value by value.
//!
//! # Encryption at rest
//! Why value-level and not whole-database encryption: the same core is to run in a browser
//! (compiled to wasm, over IndexedDB), where no encrypting SQLite exists, and rusqlite's
//! bundled SQLite has no page encryption without a C dependency (SQLCipher) that this
//! workspace keeps out. Sealing values works the same over any key-value or SQL storage.
//!
//! - **Keys.** A random 32-byte data key is made at login. On disk it exists only wrapped
//!   (XChaCha20-Poly1305) under a key that Argon2id (19 MiB, 2 passes) derives from the
//!   passphrase and a random salt, in the one-row `keyring` table; the passphrase never
//!   encrypts data itself, so changing it would only re-wrap the data key. HKDF-SHA256 derives
//!   three subkeys from the data key: one seals values, one makes blind indexes, one encrypts
//!   vodozemac's pickles. A wrong passphrase fails to unwrap the key
//!   ([`ClientError::WrongPassphrase`]) and reads nothing.
//! - **Values.** Every value that says anything about a message, a contact or the login is
//!   sealed with XChaCha20-Poly1305 (random 24-byte nonce): message contents (text or failure,
//!   sender, sending device, client id), the ciphertexts of messages waiting for a key, the
//!   key-value table's values (server URL, username, user and device ids, token, the account
//!   pickle, the identity's private keys, pinned and verified identities, the recovery key
//!   until shown, and whatever else is stored there), session pickles, contacts' device keys,
//!   cursors, receipts and queued items. The associated data is the column and the row's
//!   stored key, so a value copied to another row or column does not open.
//! - **Lookups.** Ids that rows are found by (conversation, user, device and session ids,
//!   contacts' Curve25519 keys, the client ids of queued messages, the key-value table's
//!   names) are stored as keyed blind indexes: HMAC-SHA256 under the index subkey, separated
//!   by kind. Without the key they say nothing about the id; they are equal wherever the id is.
//! - **Search.** The FTS5 index is never written to disk: it lives in an in-memory database
//!   attached to the connection, built from the decrypted bodies on the first search after the
//!   store is unlocked and kept up to date as messages arrive or become readable. Building it
//!   (decrypting every message and indexing its text) took 0.43 s for 10,000 messages and
//!   5.0 s for 100,000, measured by the ignored test `search_index_build_time` in a debug
//!   build on a busy two-core machine; an optimized build is faster. Only the first search
//!   after unlocking pays it.
//!
//! What someone who copies the directory (database, WAL, SHM) learns without the passphrase:
//! the number of rows of each kind (messages, conversations, contacts' devices, sessions,
//! blocks, queued items, receipts); which messages belong to the same conversation and their
//! seq numbers and server timestamps; which messages share a sender (not who it is); which
//! messages are still waiting for a key; when pairwise sessions were last used; the size of
//! every sealed value (so roughly the length of each message); the Argon2id salt and
//! parameters. They do not learn any text, name, username, id, key, token or server address,
//! nor which conversation or user a blind index stands for. With a key file instead of a
//! passphrase, whoever copies the file as well reads everything; with a weak passphrase, an
//! offline guessing attack costs one Argon2id evaluation per guess.
//!
//! Not covered: the data key and the decrypted index are in this process's memory while the
//! store is open; the length of values is not padded.

mod keyring;
pub(crate) mod location;
mod members;
mod search;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use natter_crypto::{StoreKey, UnableToDecrypt};
use natter_proto::{ConversationId, DeviceId, UserId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ClientError;
use keyring::Keyring;
pub(crate) use keyring::NewKeyring;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (name BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS olm_sessions (
    their_key BLOB NOT NULL, session BLOB NOT NULL, pickle BLOB NOT NULL,
    used_at INTEGER NOT NULL, PRIMARY KEY (their_key, session));
CREATE TABLE IF NOT EXISTS outbound_sessions (
    conversation BLOB PRIMARY KEY NOT NULL, pickle BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS inbound_sessions (
    session BLOB PRIMARY KEY NOT NULL, conversation BLOB NOT NULL, pickle BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    user BLOB NOT NULL, device BLOB NOT NULL, keys BLOB NOT NULL, PRIMARY KEY (user, device));
CREATE TABLE IF NOT EXISTS messages (
    conversation BLOB NOT NULL, seq INTEGER NOT NULL, sender BLOB NOT NULL,
    server_ts INTEGER NOT NULL, content BLOB NOT NULL, session BLOB, ciphertext BLOB,
    PRIMARY KEY (conversation, seq));
CREATE INDEX IF NOT EXISTS messages_pending ON messages (session) WHERE session IS NOT NULL;
CREATE TABLE IF NOT EXISTS cursors (conversation BLOB PRIMARY KEY NOT NULL, seqs BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    conversation BLOB NOT NULL, user BLOB NOT NULL, seqs BLOB NOT NULL,
    PRIMARY KEY (conversation, user));
CREATE TABLE IF NOT EXISTS blocks (user BLOB PRIMARY KEY NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, message BLOB, item BLOB NOT NULL, ciphertext BLOB);
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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

/// A message's sealed content: everything about it but where it sits (conversation, seq)
/// and when the server stored it.
#[derive(Serialize, Deserialize)]
struct Content {
    conversation_id: ConversationId,
    sender_id: UserId,
    sender_device_id: DeviceId,
    client_msg_id: String,
    body: Option<String>,
    failure: Option<String>,
}

impl Content {
    fn of(message: &StoredMessage) -> Self {
        let (body, failure) = match &message.body {
            Ok(text) => (Some(text.clone()), None),
            Err(reason) => (None, Some(reason.code().to_owned())),
        };
        Self {
            conversation_id: message.conversation_id,
            sender_id: message.sender_id,
            sender_device_id: message.sender_device_id,
            client_msg_id: message.client_msg_id.clone(),
            body,
            failure,
        }
    }

    fn into_message(self, seq: i64, server_ts: i64) -> StoredMessage {
        StoredMessage {
            conversation_id: self.conversation_id,
            seq,
            sender_id: self.sender_id,
            sender_device_id: self.sender_device_id,
            client_msg_id: self.client_msg_id,
            server_ts,
            body: self.body.ok_or_else(|| {
                UnableToDecrypt::from_code(self.failure.as_deref().unwrap_or("corrupt"))
            }),
        }
    }
}

/// A message row as stored: its place, time and sealed content.
struct MessageRow {
    conversation: Vec<u8>,
    seq: i64,
    server_ts: i64,
    content: Vec<u8>,
}

impl MessageRow {
    /// The columns [`MessageRow::read`] reads, in order.
    const COLUMNS: &str = "m.conversation, m.seq, m.server_ts, m.content";

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            conversation: r.get(0)?,
            seq: r.get(1)?,
            server_ts: r.get(2)?,
            content: r.get(3)?,
        })
    }
}

/// The stored key of a message row: its conversation's tag and its seq.
fn message_row(conversation: &[u8], seq: i64) -> Vec<u8> {
    [conversation, &seq.to_be_bytes()].concat()
}

/// The store. Not shared between threads: the device keeps it behind a lock.
pub(crate) struct Store {
    db: std::sync::Mutex<Connection>,
    keys: Keyring,
    /// Whether the in-memory search index holds every readable message yet.
    indexed: AtomicBool,
}

fn sql(e: rusqlite::Error) -> ClientError {
    ClientError::Store(e)
}

/// Opens the SQLite database at `path` with `flags` (WAL mode on native targets), with the
/// schema and the in-memory search database attached.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, ClientError> {
    let db = Connection::open_with_flags(path, flags).map_err(sql)?;
    db.execute_batch(location::PRAGMAS).map_err(sql)?;
    db.execute_batch(keyring::SCHEMA).map_err(sql)?;
    db.execute_batch(SCHEMA).map_err(sql)?;
    db.execute_batch(search::ATTACH).map_err(sql)?;
    Ok(db)
}

impl Store {
    /// Creates a new store at `path`, readable only by this user, locked by `keyring`.
    ///
    /// # Errors
    /// [`ClientError::StoreInUse`] when a file is already there.
    pub(crate) fn create(path: &Path, keyring: NewKeyring) -> Result<Self, ClientError> {
        if location::exists(path) {
            return Err(ClientError::StoreInUse(path.to_owned()));
        }
        location::prepare(path)?;
        let db = connect(path, OpenFlags::default())?;
        location::restrict(path)?;
        let keys = keyring.install(&db)?;
        Ok(Self::with(db, keys))
    }

    /// Opens and unlocks the existing store at `path` with `passphrase`.
    ///
    /// # Errors
    /// [`ClientError::WrongPassphrase`], or a file that is not a store of this version.
    pub(crate) fn open(path: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let db = connect(path, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)?;
        let keys = Keyring::unlock(&db, passphrase)?;
        Ok(Self::with(db, keys))
    }

    /// Locks the store with `new` instead of `old` from now on.
    ///
    /// # Errors
    /// [`ClientError::WrongPassphrase`] when `old` is not the passphrase.
    pub(crate) fn change_passphrase(&self, old: &str, new: &str) -> Result<(), ClientError> {
        Keyring::change_passphrase(&self.db(), old, new)
    }

    fn with(db: Connection, keys: Keyring) -> Self {
        Self {
            db: std::sync::Mutex::new(db),
            keys,
            indexed: AtomicBool::new(false),
        }
    }

    /// The key that encrypts vodozemac's pickles (a subkey of the store's data key).
    pub(crate) fn pickle_key(&self) -> StoreKey {
        self.keys.pickle_key()
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

    /// Reads the one value (a sealed blob, usually) a query finds, if any.
    fn find<T: rusqlite::types::FromSql>(
        &self,
        statement: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<T>, ClientError> {
        self.db()
            .query_row(statement, params, |r| r.get(0))
            .optional()
            .map_err(sql)
    }

    /// Seals a value as JSON for one place (see [`Keyring::seal`]).
    fn seal_json(&self, column: &str, row: &[u8], value: &impl Serialize) -> Vec<u8> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(value).expect("the store's records always serialize"),
        );
        self.keys.seal(column, row, &json)
    }

    /// Opens a value sealed by [`seal_json`](Self::seal_json).
    fn open_json<T: DeserializeOwned>(
        &self,
        column: &str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<T, ClientError> {
        serde_json::from_slice(&self.keys.open(column, row, sealed)?)
            .map_err(|_| ClientError::Crypto(natter_crypto::CryptoError::Sealed))
    }

    fn conversation_tag(&self, conversation: ConversationId) -> Vec<u8> {
        self.keys.tag("conversation", &conversation.to_string())
    }

    fn user_tag(&self, user: UserId) -> Vec<u8> {
        self.keys.tag("user", &user.to_string())
    }

    /// A value of the key-value table (token, username, account pickle, ...).
    pub(crate) fn get(&self, key: &str) -> Result<Option<String>, ClientError> {
        let name = self.keys.tag("kv", key);
        self.find::<Vec<u8>>("SELECT value FROM kv WHERE name = ?1", [&name])?
            .map(|sealed| self.keys.open_text("kv.value", &name, &sealed))
            .transpose()
    }

    /// Sets a value of the key-value table; name and value are both encrypted, so it holds
    /// secrets safely.
    pub(crate) fn set(&self, key: &str, value: &str) -> Result<(), ClientError> {
        let name = self.keys.tag("kv", key);
        let sealed = self.keys.seal("kv.value", &name, value.as_bytes());
        self.run(
            "INSERT INTO kv (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, sealed],
        )
    }

    /// Pickles of the pairwise sessions with a device, most recently used first.
    pub(crate) fn olm_sessions(&self, their_key: &str) -> Result<Vec<String>, ClientError> {
        let their = self.keys.tag("curve25519", their_key);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = {
            let db = self.db();
            let mut statement = db
                .prepare(
                    "SELECT session, pickle FROM olm_sessions WHERE their_key = ?1
                     ORDER BY used_at DESC",
                )
                .map_err(sql)?;
            let rows = statement
                .query_map([&their], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .map(|(session, pickle)| {
                self.keys.open_text(
                    "olm_sessions.pickle",
                    &[&their[..], &session].concat(),
                    &pickle,
                )
            })
            .collect()
    }

    pub(crate) fn save_olm_session(
        &self,
        their_key: &str,
        session_id: &str,
        pickle: &str,
        used_at: i64,
    ) -> Result<(), ClientError> {
        let their = self.keys.tag("curve25519", their_key);
        let session = self.keys.tag("olm_session", session_id);
        let row = [&their[..], &session].concat();
        let pickle = self
            .keys
            .seal("olm_sessions.pickle", &row, pickle.as_bytes());
        self.run(
            "INSERT INTO olm_sessions (their_key, session, pickle, used_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (their_key, session)
             DO UPDATE SET pickle = excluded.pickle, used_at = excluded.used_at",
            params![their, session, pickle, used_at],
        )
    }

    pub(crate) fn outbound(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<String>, ClientError> {
        let tag = self.conversation_tag(conversation);
        self.find::<Vec<u8>>(
            "SELECT pickle FROM outbound_sessions WHERE conversation = ?1",
            [&tag],
        )?
        .map(|pickle| {
            self.keys
                .open_text("outbound_sessions.pickle", &tag, &pickle)
        })
        .transpose()
    }

    pub(crate) fn save_outbound(
        &self,
        conversation: ConversationId,
        pickle: &str,
    ) -> Result<(), ClientError> {
        let tag = self.conversation_tag(conversation);
        let pickle = self
            .keys
            .seal("outbound_sessions.pickle", &tag, pickle.as_bytes());
        self.run(
            "INSERT INTO outbound_sessions (conversation, pickle) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET pickle = excluded.pickle",
            params![tag, pickle],
        )
    }

    /// Drops every outbound room session: the next message in each conversation starts a new
    /// one, shared to all its devices.
    pub(crate) fn forget_outbound_sessions(&self) -> Result<(), ClientError> {
        self.run("DELETE FROM outbound_sessions", [])
    }

    pub(crate) fn inbound(&self, session_id: &str) -> Result<Option<String>, ClientError> {
        let tag = self.keys.tag("room_session", session_id);
        self.find::<Vec<u8>>(
            "SELECT pickle FROM inbound_sessions WHERE session = ?1",
            [&tag],
        )?
        .map(|pickle| {
            self.keys
                .open_text("inbound_sessions.pickle", &tag, &pickle)
        })
        .transpose()
    }

    pub(crate) fn save_inbound(
        &self,
        session_id: &str,
        conversation: ConversationId,
        pickle: &str,
    ) -> Result<(), ClientError> {
        let tag = self.keys.tag("room_session", session_id);
        let pickle = self
            .keys
            .seal("inbound_sessions.pickle", &tag, pickle.as_bytes());
        self.run(
            "INSERT INTO inbound_sessions (session, conversation, pickle) VALUES (?1, ?2, ?3)
             ON CONFLICT (session) DO UPDATE SET pickle = excluded.pickle",
            params![tag, self.conversation_tag(conversation), pickle],
        )
    }

    /// The stored key of a device row: its user's and its own tag.
    fn device_row(&self, user: UserId, device: DeviceId) -> (Vec<u8>, Vec<u8>) {
        (
            self.user_tag(user),
            self.keys.tag("device", &device.to_string()),
        )
    }

    /// A device's verified keys (Curve25519, Ed25519), if cached.
    pub(crate) fn device_keys(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<Option<(String, String)>, ClientError> {
        let (user, device) = self.device_row(user, device);
        self.find::<Vec<u8>>(
            "SELECT keys FROM devices WHERE user = ?1 AND device = ?2",
            [&user, &device],
        )?
        .map(|keys| self.open_json("devices.keys", &[user, device].concat(), &keys))
        .transpose()
    }

    fn save_device(&self, device: &natter_crypto::VerifiedDevice) -> Result<(), ClientError> {
        let (user, id) = self.device_row(device.user_id, device.device_id);
        let keys = self.seal_json(
            "devices.keys",
            &[&user[..], &id].concat(),
            &(&device.curve25519, &device.ed25519),
        );
        self.run(
            "INSERT INTO devices (user, device, keys) VALUES (?1, ?2, ?3)
             ON CONFLICT (user, device) DO UPDATE SET keys = excluded.keys",
            params![user, id, keys],
        )
    }

    /// Replaces the cached devices of `user` with `devices` (those its identity signs now), in
    /// one transaction: a device no longer signed (removed, or of a replaced identity) drops
    /// out of the cache.
    pub(crate) fn replace_devices(
        &self,
        user: UserId,
        devices: &[natter_crypto::VerifiedDevice],
    ) -> Result<(), ClientError> {
        self.run("SAVEPOINT replace_devices", [])?;
        let replaced = self
            .run("DELETE FROM devices WHERE user = ?1", [self.user_tag(user)])
            .and_then(|()| devices.iter().try_for_each(|d| self.save_device(d)));
        match replaced {
            Ok(()) => self.run("RELEASE replace_devices", []),
            Err(error) => {
                self.run("ROLLBACK TO replace_devices", [])?;
                self.run("RELEASE replace_devices", [])?;
                Err(error)
            }
        }
    }

    /// Stores a message once per (conversation, seq); false when it was already there.
    pub(crate) fn insert_message(
        &self,
        message: &StoredMessage,
        session_id: Option<&str>,
        ciphertext: Option<&str>,
    ) -> Result<bool, ClientError> {
        let conversation = self.conversation_tag(message.conversation_id);
        let row = message_row(&conversation, message.seq);
        // The ciphertext is kept only while undecrypted, to retry when the key arrives.
        let waiting = match (&message.body, session_id, ciphertext) {
            (Err(_), Some(session), Some(ciphertext)) => Some((
                self.keys.tag("room_session", session),
                self.keys
                    .seal("messages.ciphertext", &row, ciphertext.as_bytes()),
            )),
            _ => None,
        };
        let (session, ciphertext) = waiting.unzip();
        let db = self.db();
        let inserted = db
            .execute(
                "INSERT OR IGNORE INTO messages (conversation, seq, sender, server_ts, content,
                 session, ciphertext) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    conversation,
                    message.seq,
                    self.user_tag(message.sender_id),
                    message.server_ts,
                    self.seal_json("messages.content", &row, &Content::of(message)),
                    session,
                    ciphertext,
                ],
            )
            .map_err(sql)?
            == 1;
        if inserted
            && let Ok(text) = &message.body
            && self.indexed.load(Ordering::Relaxed)
        {
            search::add(&db, &conversation, message.seq, text)?;
        }
        Ok(inserted)
    }

    /// Opens the sealed content of a message row.
    fn open_content(&self, row: &MessageRow) -> Result<Content, ClientError> {
        let place = message_row(&row.conversation, row.seq);
        self.open_json("messages.content", &place, &row.content)
    }

    /// Opens a message row.
    fn open_message(&self, row: &MessageRow) -> Result<StoredMessage, ClientError> {
        Ok(self.open_content(row)?.into_message(row.seq, row.server_ts))
    }

    /// Messages still waiting for the key of `session_id`, with their ciphertexts.
    pub(crate) fn pending(
        &self,
        session_id: &str,
    ) -> Result<Vec<(StoredMessage, String)>, ClientError> {
        let session = self.keys.tag("room_session", session_id);
        let rows: Vec<(MessageRow, Vec<u8>)> = {
            let db = self.db();
            let mut statement = db
                .prepare(&format!(
                    "SELECT {}, m.ciphertext FROM messages m
                     WHERE m.session = ?1 AND m.ciphertext IS NOT NULL ORDER BY m.seq",
                    MessageRow::COLUMNS
                ))
                .map_err(sql)?;
            let rows = statement
                .query_map([&session], |r| Ok((MessageRow::read(r)?, r.get(4)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .map(|(row, ciphertext)| {
                let place = message_row(&row.conversation, row.seq);
                let ciphertext = self
                    .keys
                    .open_text("messages.ciphertext", &place, &ciphertext)?;
                Ok((self.open_message(&row)?, ciphertext))
            })
            .collect()
    }

    /// Records that a pending message was decrypted.
    pub(crate) fn resolve(&self, message: &StoredMessage, text: &str) -> Result<(), ClientError> {
        let conversation = self.conversation_tag(message.conversation_id);
        let row = message_row(&conversation, message.seq);
        let readable = StoredMessage {
            body: Ok(text.to_owned()),
            ..message.clone()
        };
        let db = self.db();
        db.execute(
            "UPDATE messages SET content = ?3, session = NULL, ciphertext = NULL
             WHERE conversation = ?1 AND seq = ?2",
            params![
                conversation,
                message.seq,
                self.seal_json("messages.content", &row, &Content::of(&readable))
            ],
        )
        .map_err(sql)?;
        if self.indexed.load(Ordering::Relaxed) {
            search::add(&db, &conversation, message.seq, text)?;
        }
        Ok(())
    }

    /// Runs a query of [`MessageRow::COLUMNS`] and opens the messages it finds.
    fn query_messages(
        &self,
        db: &Connection,
        statement: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let rows: Vec<MessageRow> = {
            let mut statement = db.prepare(statement).map_err(sql)?;
            let rows = statement.query_map(params, MessageRow::read).map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.iter().map(|row| self.open_message(row)).collect()
    }

    /// The newest `limit` messages of a conversation, oldest first, without blocked senders.
    pub(crate) fn messages(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_messages(
            &self.db(),
            &format!(
                "SELECT * FROM (SELECT {} FROM messages m WHERE m.conversation = ?1
                 AND m.sender NOT IN (SELECT user FROM blocks) ORDER BY m.seq DESC LIMIT ?2)
                 ORDER BY seq",
                MessageRow::COLUMNS
            ),
            params![self.conversation_tag(conversation), limit],
        )
    }

    /// Fills the in-memory search index from every readable message, once per unlock.
    fn build_index(&self, db: &mut Connection) -> Result<(), ClientError> {
        if self.indexed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let transaction = db.transaction().map_err(sql)?;
        {
            let mut statement = transaction
                .prepare(&format!(
                    "SELECT {} FROM messages m WHERE m.session IS NULL",
                    MessageRow::COLUMNS
                ))
                .map_err(sql)?;
            let mut rows = statement.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let row = MessageRow::read(row).map_err(sql)?;
                if let Some(body) = &self.open_content(&row)?.body {
                    search::add(&transaction, &row.conversation, row.seq, body)?;
                }
            }
        }
        transaction.commit().map_err(sql)?;
        self.indexed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Full-text search over decrypted messages, newest first, without blocked senders.
    pub(crate) fn search(
        &self,
        query: &str,
        conversation: Option<ConversationId>,
        sender: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let Some(phrase) = search::phrase(query) else {
            return Ok(Vec::new());
        };
        let mut db = self.db();
        self.build_index(&mut db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_messages(
            &db,
            &format!(
                "SELECT {} FROM messages m JOIN search.bodies f
                   ON f.conversation = m.conversation AND f.seq = m.seq
                 WHERE bodies MATCH ?1
                   AND (?2 IS NULL OR m.conversation = ?2)
                   AND (?3 IS NULL OR m.sender = ?3)
                   AND m.sender NOT IN (SELECT user FROM blocks)
                 ORDER BY m.server_ts DESC LIMIT ?4",
                MessageRow::COLUMNS
            ),
            params![
                phrase,
                conversation.map(|c| self.conversation_tag(c)),
                sender.map(|s| self.user_tag(s)),
                limit
            ],
        )
    }

    /// This device's (delivered, read) cursors in a conversation.
    pub(crate) fn cursors(&self, conversation: ConversationId) -> Result<(i64, i64), ClientError> {
        let tag = self.conversation_tag(conversation);
        self.find::<Vec<u8>>("SELECT seqs FROM cursors WHERE conversation = ?1", [&tag])?
            .map_or(Ok((0, 0)), |seqs| {
                self.open_json("cursors.seqs", &tag, &seqs)
            })
    }

    /// Moves a cursor forward (never back); returns true when it moved.
    pub(crate) fn advance_cursor(
        &self,
        conversation: ConversationId,
        seq: i64,
        read: bool,
    ) -> Result<bool, ClientError> {
        let (mut delivered, mut was_read) = self.cursors(conversation)?;
        let cursor = if read { &mut was_read } else { &mut delivered };
        if seq <= *cursor {
            return Ok(false);
        }
        *cursor = seq;
        let tag = self.conversation_tag(conversation);
        let seqs = self.seal_json("cursors.seqs", &tag, &(delivered, was_read));
        self.run(
            "INSERT INTO cursors (conversation, seqs) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET seqs = excluded.seqs",
            params![tag, seqs],
        )?;
        Ok(true)
    }

    /// Records other users' cursors (the furthest of each user's devices), all in one
    /// transaction: a `receipts` frame can carry many, and this runs under the device lock.
    pub(crate) fn save_receipts(
        &self,
        receipts: &[natter_proto::ws::Receipt],
    ) -> Result<(), ClientError> {
        let mut db = self.db();
        let transaction = db.transaction().map_err(sql)?;
        for receipt in receipts {
            let conversation = self.conversation_tag(receipt.conversation_id);
            let user = self.user_tag(receipt.user_id);
            let row = [&conversation[..], &user].concat();
            let known: Option<Vec<u8>> = transaction
                .query_row(
                    "SELECT seqs FROM receipts WHERE conversation = ?1 AND user = ?2",
                    [&conversation, &user],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            let (delivered, read): (i64, i64) = known.map_or(Ok((0, 0)), |seqs| {
                self.open_json("receipts.seqs", &row, &seqs)
            })?;
            let seqs = (
                receipt.delivered_seq.max(delivered),
                receipt.read_seq.max(read),
            );
            transaction
                .execute(
                    "INSERT INTO receipts (conversation, user, seqs) VALUES (?1, ?2, ?3)
                     ON CONFLICT (conversation, user) DO UPDATE SET seqs = excluded.seqs",
                    params![
                        conversation,
                        user,
                        self.seal_json("receipts.seqs", &row, &seqs)
                    ],
                )
                .map_err(sql)?;
        }
        transaction.commit().map_err(sql)
    }

    /// How far others got in a conversation: (highest delivered, highest read) over other users.
    pub(crate) fn receipts(
        &self,
        conversation: ConversationId,
        me: UserId,
    ) -> Result<(i64, i64), ClientError> {
        let conversation = self.conversation_tag(conversation);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = {
            let db = self.db();
            let mut statement = db
                .prepare("SELECT user, seqs FROM receipts WHERE conversation = ?1 AND user != ?2")
                .map_err(sql)?;
            let rows = statement
                .query_map([&conversation, &self.user_tag(me)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .try_fold((0, 0), |(delivered, read), (user, seqs)| {
                let row = [&conversation[..], &user].concat();
                let (d, r): (i64, i64) = self.open_json("receipts.seqs", &row, &seqs)?;
                Ok((delivered.max(d), read.max(r)))
            })
    }

    pub(crate) fn set_blocked(&self, user: UserId, blocked: bool) -> Result<(), ClientError> {
        let statement = if blocked {
            "INSERT OR IGNORE INTO blocks (user) VALUES (?1)"
        } else {
            "DELETE FROM blocks WHERE user = ?1"
        };
        self.run(statement, [self.user_tag(user)])
    }

    pub(crate) fn is_blocked(&self, user: UserId) -> Result<bool, ClientError> {
        Ok(self
            .find::<i64>(
                "SELECT 1 FROM blocks WHERE user = ?1",
                [self.user_tag(user)],
            )?
            .is_some())
    }

    pub(crate) fn enqueue(&self, item: &Queued) -> Result<(), ClientError> {
        let message = match item {
            Queued::Send { client_msg_id, .. } => Some(self.keys.tag("client_msg", client_msg_id)),
            Queued::Read { .. } | Queued::Block { .. } => None,
        };
        let mut db = self.db();
        // The row id is part of the sealed item's associated data, so the row comes first.
        let transaction = db.transaction().map_err(sql)?;
        let id: i64 = transaction
            .query_row(
                "INSERT INTO outbox (message, item) VALUES (?1, x'') RETURNING id",
                [message],
                |r| r.get(0),
            )
            .map_err(sql)?;
        transaction
            .execute(
                "UPDATE outbox SET item = ?2 WHERE id = ?1",
                params![id, self.seal_json("outbox.item", &id.to_be_bytes(), item)],
            )
            .map_err(sql)?;
        transaction.commit().map_err(sql)
    }

    /// The queue, oldest first, with each item's row id.
    pub(crate) fn outbox(&self) -> Result<Vec<(i64, Queued)>, ClientError> {
        let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = {
            let db = self.db();
            let mut statement = db
                .prepare("SELECT id, item, ciphertext FROM outbox ORDER BY id")
                .map_err(sql)?;
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        rows.into_iter()
            .map(|(id, item, sealed)| {
                let mut item: Queued = self.open_json("outbox.item", &id.to_be_bytes(), &item)?;
                if let (Queued::Send { ciphertext, .. }, Some(sealed)) = (&mut item, sealed) {
                    *ciphertext = Some(self.keys.open_text(
                        "outbox.ciphertext",
                        &id.to_be_bytes(),
                        &sealed,
                    )?);
                }
                Ok((id, item))
            })
            .collect()
    }

    pub(crate) fn set_ciphertext(&self, id: i64, ciphertext: &str) -> Result<(), ClientError> {
        let sealed = self.keys.seal(
            "outbox.ciphertext",
            &id.to_be_bytes(),
            ciphertext.as_bytes(),
        );
        self.run(
            "UPDATE outbox SET ciphertext = ?2 WHERE id = ?1",
            params![id, sealed],
        )
    }

    pub(crate) fn dequeue(&self, id: i64) -> Result<(), ClientError> {
        self.run("DELETE FROM outbox WHERE id = ?1", [id])
    }

    /// Removes an acked send and returns its text.
    pub(crate) fn take_sent(&self, client_msg_id: &str) -> Result<Option<String>, ClientError> {
        let taken: Option<(i64, Vec<u8>)> = self
            .db()
            .query_row(
                "DELETE FROM outbox WHERE message = ?1 RETURNING id, item",
                [self.keys.tag("client_msg", client_msg_id)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql)?;
        let Some((id, item)) = taken else {
            return Ok(None);
        };
        match self.open_json("outbox.item", &id.to_be_bytes(), &item)? {
            Queued::Send { text, .. } => Ok(Some(text)),
            Queued::Read { .. } | Queued::Block { .. } => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use natter_proto::ws::Receipt;
    use natter_proto::{ConversationId, DeviceId, UserId};

    use super::{NewKeyring, Store, StoredMessage};
    use crate::ClientError;

    /// A new store in `dir`, locked with the passphrase "pass".
    fn create(dir: &std::path::Path) -> Store {
        Store::create(&dir.join("store.db"), NewKeyring::new("pass").unwrap()).unwrap()
    }

    /// A readable message `seq` in `conversation`.
    fn message(conversation: ConversationId, seq: i64, text: &str) -> StoredMessage {
        StoredMessage {
            conversation_id: conversation,
            seq,
            sender_id: UserId::new(),
            sender_device_id: DeviceId::new(),
            client_msg_id: format!("m{seq}"),
            server_ts: seq,
            body: Ok(text.to_owned()),
        }
    }

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
        let store = create(dir.path());
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

    #[test]
    fn a_sealed_value_moved_to_another_row_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = create(dir.path());
        store.set("token", "secret token").unwrap();
        store.set("username", "alice").unwrap();
        assert_eq!(store.get("token").unwrap().as_deref(), Some("secret token"));
        // Someone with the file copies the token's sealed value over the username's.
        store
            .db()
            .execute(
                "UPDATE kv SET value = (SELECT value FROM kv WHERE name = ?1) WHERE name = ?2",
                [
                    store.keys.tag("kv", "token"),
                    store.keys.tag("kv", "username"),
                ],
            )
            .unwrap();
        assert!(matches!(
            store.get("username"),
            Err(ClientError::Crypto(natter_crypto::CryptoError::Sealed))
        ));
    }

    #[test]
    fn the_store_opens_with_its_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let conversation = ConversationId::new();
        let first = message(conversation, 1, "hello there");
        {
            let store = create(dir.path());
            store.set("username", "alice").unwrap();
            store.insert_message(&first, None, None).unwrap();
        }
        assert!(matches!(
            Store::open(&path, "wrong"),
            Err(ClientError::WrongPassphrase)
        ));
        let store = Store::open(&path, "pass").unwrap();
        assert_eq!(store.get("username").unwrap().as_deref(), Some("alice"));
        let found = store.search("hello", None, None, 10).unwrap();
        assert_eq!(found, [first]);
        // After the index is built, new and resolved messages are searchable at once.
        let mut waiting = message(conversation, 2, "");
        waiting.body = Err(natter_crypto::UnableToDecrypt::MissingKey);
        store
            .insert_message(&waiting, Some("session"), Some("ciphertext"))
            .unwrap();
        store
            .insert_message(&message(conversation, 3, "hello again"), None, None)
            .unwrap();
        let (pending, ciphertext) = store.pending("session").unwrap().remove(0);
        assert_eq!((pending.seq, ciphertext.as_str()), (2, "ciphertext"));
        store.resolve(&pending, "hello late").unwrap();
        assert!(store.pending("session").unwrap().is_empty());
        let found: Vec<i64> = store
            .search("hello", Some(conversation), None, 10)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(found, [3, 2, 1]);
    }

    /// How long the first search after unlocking takes to build the in-memory index, for
    /// `NATTER_INDEX_MESSAGES` messages (10,000 by default). Run with `--ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn search_index_build_time() {
        let count: i64 = std::env::var("NATTER_INDEX_MESSAGES")
            .map_or(10_000, |n| n.parse().expect("a number of messages"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let conversations: Vec<ConversationId> = (0..20).map(|_| ConversationId::new()).collect();
        {
            let store = create(dir.path());
            store.db().execute_batch("BEGIN").unwrap();
            for seq in 1..=count {
                let conversation = conversations[usize::try_from(seq).unwrap() % 20];
                let text = format!(
                    "message {seq}: a sentence of ordinary length about lunch, trains and the weather"
                );
                store
                    .insert_message(&message(conversation, seq, &text), None, None)
                    .unwrap();
            }
            store.db().execute_batch("COMMIT").unwrap();
        }
        let store = Store::open(&path, "pass").unwrap();
        let started = std::time::Instant::now();
        let found = store.search("trains", None, None, 10).unwrap();
        let built = started.elapsed();
        assert_eq!(found.len(), 10);
        let started = std::time::Instant::now();
        store.search("weather", None, None, 10).unwrap();
        println!(
            "{count} messages: first search (builds the index) {built:?}, next search {:?}",
            started.elapsed()
        );
    }
}
