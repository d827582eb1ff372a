//! The device's local store: one SQLite database (a file, or in a browser pages kept in
//! IndexedDB: [`location`]) holding the account and sessions (pickles), verified device keys,
//! messages, cursors, receipts, the block list, the outbound queue and a key-value table, all
//! encrypted at rest value by value. Each role has its module: [`sessions`], [`messages`] (with
//! [`search`]), [`marks`] and [`members`], [`outbox`], and [`keyring`] for the keys.
//!
//! # Encryption at rest
//! Why value-level and not whole-database encryption: the same core is to run in a browser
//! (compiled to wasm, over IndexedDB), where no encrypting SQLite build is at hand, and rusqlite's
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
mod marks;
mod members;
mod messages;
mod outbox;
mod search;
mod sessions;

pub use outbox::Queued;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use natter_crypto::{StoreKey, UnableToDecrypt};
use natter_proto::{ConversationId, DeviceId, UserId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
