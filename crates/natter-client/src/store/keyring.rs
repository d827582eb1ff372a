//! The store's keys: a random data key, kept on disk only wrapped (sealed) under a key that
//! Argon2id derives from the passphrase, and the subkeys the store uses: one that seals
//! values, one that makes blind indexes, one for vodozemac's pickles.

use natter_crypto::{CryptoError, SealKey, StoreKey};
use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use crate::ClientError;

/// The one-row table that unlocks the store. Nothing in it is secret: the wrapped key opens
/// only with the passphrase.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keyring (
    id INTEGER PRIMARY KEY CHECK (id = 1), kdf TEXT NOT NULL, salt BLOB NOT NULL,
    wrapped BLOB NOT NULL);
";

/// The key derivation the wrapped key was made with (`SealKey::from_passphrase`'s
/// parameters: 19 MiB, 2 passes, 1 lane). A store made with others is refused, not misread.
const KDF: &str = "argon2id;m=19456;t=2;p=1";

/// What the wrapped data key is bound to.
const WRAP_AAD: &[u8] = b"natter-client store: data key";

/// The unwrapped keys of an open store.
pub(super) struct Keyring {
    seal: SealKey,
    index: SealKey,
    pickle: SealKey,
}

/// A keyring made for a new store, with the header that will unlock it again.
pub(crate) struct NewKeyring {
    keyring: Keyring,
    salt: [u8; natter_crypto::store_key::SALT_LEN],
    wrapped: Vec<u8>,
}

impl NewKeyring {
    /// A fresh random data key, wrapped under `passphrase` (which must not be empty).
    pub(crate) fn new(passphrase: &str) -> Result<Self, ClientError> {
        let data_key = SealKey::random();
        let salt = StoreKey::new_salt();
        let wrapped =
            SealKey::from_passphrase(passphrase, &salt)?.seal(WRAP_AAD, &*data_key.to_bytes());
        Ok(Self {
            keyring: Keyring::from_data_key(&data_key),
            salt,
            wrapped,
        })
    }

    /// Writes the header into a new store and returns the keys.
    pub(super) fn install(self, db: &Connection) -> Result<Keyring, ClientError> {
        db.execute(
            "INSERT INTO keyring (id, kdf, salt, wrapped) VALUES (1, ?1, ?2, ?3)",
            params![KDF, &self.salt[..], self.wrapped],
        )
        .map_err(ClientError::Store)?;
        Ok(self.keyring)
    }
}

impl Keyring {
    fn from_data_key(data_key: &SealKey) -> Self {
        Self {
            seal: data_key.derive("natter-client store: seal"),
            index: data_key.derive("natter-client store: blind index"),
            pickle: data_key.derive("natter-client store: pickles"),
        }
    }

    /// Wraps the data key of the store in `db` under `new` instead of `old` (a new salt too):
    /// nothing else in the store changes, and `old` opens it no more.
    ///
    /// # Errors
    /// [`ClientError::WrongPassphrase`] when `old` does not open it; an empty `new`.
    pub(super) fn change_passphrase(
        db: &Connection,
        old: &str,
        new: &str,
    ) -> Result<(), ClientError> {
        let data_key = unwrap(db, old)?;
        let salt = StoreKey::new_salt();
        let wrapped = SealKey::from_passphrase(new, &salt)?.seal(WRAP_AAD, &*data_key.to_bytes());
        db.execute(
            "UPDATE keyring SET kdf = ?1, salt = ?2, wrapped = ?3 WHERE id = 1",
            params![KDF, &salt[..], wrapped],
        )
        .map_err(ClientError::Store)?;
        Ok(())
    }

    /// Unwraps the data key of an existing store with `passphrase`.
    ///
    /// # Errors
    /// [`ClientError::WrongPassphrase`] when the passphrase does not open the wrapped key,
    /// [`ClientError::UnknownStoreFormat`] for a store without a keyring or with another KDF.
    pub(super) fn unlock(db: &Connection, passphrase: &str) -> Result<Self, ClientError> {
        Ok(Self::from_data_key(&unwrap(db, passphrase)?))
    }

    /// The key for vodozemac's pickles.
    pub(super) fn pickle_key(&self) -> StoreKey {
        StoreKey::from_bytes(*self.pickle.to_bytes())
    }

    /// The blind index of an id of some kind (`"conversation"`, `"user"`, ...): equal ids of
    /// one kind give equal tags, the same id of two kinds unrelated ones.
    pub(super) fn tag(&self, kind: &str, id: &str) -> Vec<u8> {
        let mut input = Vec::with_capacity(kind.len() + 1 + id.len());
        input.extend_from_slice(kind.as_bytes());
        input.push(0);
        input.extend_from_slice(id.as_bytes());
        self.index.tag(&input).to_vec()
    }

    /// Seals a value for one place: `column` (`table.column`) of the row whose stored key is
    /// `row`. It opens only there.
    pub(super) fn seal(&self, column: &str, row: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal.seal(&aad(column, row), plaintext)
    }

    /// Opens what [`seal`](Self::seal) made for the same place.
    pub(super) fn open(
        &self,
        column: &str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        Ok(self.seal.open(&aad(column, row), sealed)?)
    }

    /// Opens a sealed text.
    pub(super) fn open_text(
        &self,
        column: &str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<String, ClientError> {
        String::from_utf8(self.open(column, row, sealed)?.to_vec())
            .map_err(|_| ClientError::Crypto(CryptoError::Sealed))
    }
}

/// The associated data of a place: the column's name, a zero byte, the row's stored key.
fn aad(column: &str, row: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(column.len() + 1 + row.len());
    aad.extend_from_slice(column.as_bytes());
    aad.push(0);
    aad.extend_from_slice(row);
    aad
}

/// The data key of the store in `db`, unwrapped with `passphrase`.
fn unwrap(db: &Connection, passphrase: &str) -> Result<SealKey, ClientError> {
    let header: Option<(String, Vec<u8>, Vec<u8>)> = db
        .query_row(
            "SELECT kdf, salt, wrapped FROM keyring WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(ClientError::Store)?;
    let (kdf, salt, wrapped) =
        header.ok_or_else(|| ClientError::UnknownStoreFormat("no keyring".into()))?;
    if kdf != KDF {
        return Err(ClientError::UnknownStoreFormat(kdf));
    }
    let bytes = SealKey::from_passphrase(passphrase, &salt)?
        .open(WRAP_AAD, &wrapped)
        .map_err(|_| ClientError::WrongPassphrase)?;
    let bytes: [u8; 32] = bytes[..]
        .try_into()
        .map_err(|_| ClientError::WrongPassphrase)?;
    Ok(SealKey::from_bytes(bytes))
}
