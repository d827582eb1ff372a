//! The key backup: items the server keeps for a user and cannot read.
//!
//! - `identity`: the identity's master key, the self-signing key and the backup keys, sealed
//!   with a key derived from the user's [`RecoveryKey`], which only the user holds (written down
//!   at the first login).
//! - `room:<session id>`: one room key each, sealed with the current [`BackupKey`], which every
//!   verified device of the user holds: a device that can read a message backs its key up.
//!   Removing an approved device rotates the backup key ([`Secrets::rotate`]); the earlier keys
//!   stay in [`BackupKeys`] so the items they sealed stay readable.
//! - `trust:<tag>`: whom the user verified, sealed with the backup key, so the user's other
//!   devices learn it (the tag is keyed, so the server cannot tell whom).
//!
//! Every item's sealed data is bound (as associated data) to the user and the item's name, so
//! the server cannot move an item to another name or account.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use natter_proto::UserId;
use natter_proto::keys::BackupItem;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cross_signing::MasterKey;
use crate::seal::SealKey;
use crate::{CryptoError, IdentitySecrets, InboundRoomSession};

/// The name of the item that holds the identity's secrets.
pub const IDENTITY_ITEM: &str = "identity";
/// The prefix of room key items.
pub const ROOM_PREFIX: &str = "room:";
/// The prefix of trust items; it sorts after every other prefix, so they page on their own.
pub const TRUST_PREFIX: &str = "trust:";

/// The key that seals room keys and trust items in the backup; shared by a user's verified
/// devices.
///
/// # Security
/// No `Debug` or `Clone`.
pub struct BackupKey(SealKey);

impl BackupKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(SealKey::random())
    }

    /// The key in base64, to keep in the device's store or send to a newly approved device.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD_NO_PAD.encode(*self.0.to_bytes()))
    }

    /// A key from [`BackupKey::to_base64`].
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything else.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(STANDARD_NO_PAD.decode(text).unwrap_or_default());
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed { what: "backup key" })?;
        Ok(Self(SealKey::from_bytes(bytes)))
    }

    fn copy(&self) -> Self {
        Self(SealKey::from_bytes(*self.0.to_bytes()))
    }

    /// A room key as a backup item.
    pub fn seal_room_key(&self, user: UserId, session: &InboundRoomSession) -> BackupItem {
        let name = format!("{ROOM_PREFIX}{}", session.session_id());
        seal(&self.0, user, name, session.export().as_bytes())
    }

    /// The room key in a backup item.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] for an item not sealed with this key for this user and name.
    pub fn open_room_key(
        &self,
        user: UserId,
        item: &BackupItem,
    ) -> Result<InboundRoomSession, CryptoError> {
        let plaintext = open(&self.0, user, item)?;
        let session =
            InboundRoomSession::import(std::str::from_utf8(&plaintext).map_err(|_| {
                CryptoError::Malformed {
                    what: "backed-up room key",
                }
            })?)?;
        if item.name != format!("{ROOM_PREFIX}{}", session.session_id()) {
            return Err(CryptoError::Malformed {
                what: "backed-up room key (its name does not match)",
            });
        }
        Ok(session)
    }

    /// What this user thinks of `peer` (JSON of the caller's choosing) as a backup item.
    pub fn seal_trust(&self, user: UserId, peer: UserId, json: &str) -> BackupItem {
        let tag = self
            .0
            .derive("natter-backup-trust-tag:v1")
            .tag(peer.to_string().as_bytes());
        let name = format!("{TRUST_PREFIX}{}", STANDARD_NO_PAD.encode(&tag[..16]));
        seal(&self.0, user, name, json.as_bytes())
    }

    /// The JSON in a trust item.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] for an item not sealed with this key for this user and name.
    pub fn open_trust(
        &self,
        user: UserId,
        item: &BackupItem,
    ) -> Result<Zeroizing<String>, CryptoError> {
        let plaintext = open(&self.0, user, item)?;
        String::from_utf8(plaintext.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Malformed { what: "trust item" })
    }
}

/// The backup keys a verified device holds: the current one seals, and every one opens (the
/// earlier ones are kept after a rotation so what they sealed stays readable).
///
/// # Security
/// No `Debug` or `Clone`.
pub struct BackupKeys {
    current: BackupKey,
    earlier: Vec<BackupKey>,
}

impl BackupKeys {
    /// A first, random key.
    pub fn generate() -> Self {
        Self {
            current: BackupKey::generate(),
            earlier: Vec::new(),
        }
    }

    /// The key that seals.
    pub fn current(&self) -> &BackupKey {
        &self.current
    }

    /// The same keys with a new current one, the old current kept for opening.
    pub fn rotated(&self) -> Self {
        let mut earlier = vec![self.current.copy()];
        earlier.extend(self.earlier.iter().map(BackupKey::copy));
        Self {
            current: BackupKey::generate(),
            earlier,
        }
    }

    /// Adds `held`'s keys (another copy of this user's keys, from before a rotation) to the
    /// earlier ones, so what they sealed stays readable here.
    pub fn keep_earlier(&mut self, held: BackupKeys) {
        let BackupKeys { current, earlier } = held;
        for key in std::iter::once(current).chain(earlier) {
            let known = std::iter::once(&self.current)
                .chain(&self.earlier)
                .any(|k| *k.0.to_bytes() == *key.0.to_bytes());
            if !known {
                self.earlier.push(key);
            }
        }
    }

    /// The room key in a backup item, sealed by any of these keys.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] when none of these keys sealed it for this user and name.
    pub fn open_room_key(
        &self,
        user: UserId,
        item: &BackupItem,
    ) -> Result<InboundRoomSession, CryptoError> {
        self.first_that_opens(|key| key.open_room_key(user, item))
    }

    /// The JSON in a trust item, sealed by any of these keys.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] when none of these keys sealed it for this user and name.
    pub fn open_trust(
        &self,
        user: UserId,
        item: &BackupItem,
    ) -> Result<Zeroizing<String>, CryptoError> {
        self.first_that_opens(|key| key.open_trust(user, item))
    }

    fn first_that_opens<T>(
        &self,
        open: impl Fn(&BackupKey) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let mut result = open(&self.current);
        for key in &self.earlier {
            if result.is_ok() {
                break;
            }
            result = open(key);
        }
        result
    }
}

/// What a verified device holds and hands on: the self-signing key (with the public identity
/// that certifies it) and the backup keys. Never the master key.
pub struct Secrets {
    /// The identity's self-signing key and public identity.
    pub identity: IdentitySecrets,
    /// The backup keys.
    pub backup: BackupKeys,
}

/// How the secrets travel; zeroized when dropped.
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct SecretsWire {
    identity: String,
    backup: String,
    #[serde(default)]
    earlier_backup: Vec<String>,
}

impl Secrets {
    /// A new identity: its master key (for the recovery item only) and the secrets a device
    /// keeps.
    pub fn generate(user: UserId) -> (MasterKey, Self) {
        let master = MasterKey::generate();
        let secrets = Self {
            identity: master.new_self_signing(user),
            backup: BackupKeys::generate(),
        };
        (master, secrets)
    }

    /// The secrets after removing an approved device: a new self-signing key certified by the
    /// same master key (so contacts' safety numbers stay), and a new current backup key. The
    /// removed device's copies then sign nothing others accept and open nothing sealed later.
    pub fn rotate(&self, user: UserId, master: &MasterKey) -> Self {
        Self {
            identity: master.new_self_signing(user),
            backup: self.backup.rotated(),
        }
    }

    /// The secrets as JSON (to keep in the device's store, or to send to a newly approved
    /// device over its pairwise session).
    pub fn to_json(&self) -> Zeroizing<String> {
        let wire = SecretsWire {
            identity: self.identity.to_json().to_string(),
            backup: self.backup.current.to_base64().to_string(),
            earlier_backup: self
                .backup
                .earlier
                .iter()
                .map(|key| key.to_base64().to_string())
                .collect(),
        };
        Zeroizing::new(serde_json::to_string(&wire).expect("secrets serialize"))
    }

    /// Secrets from [`Secrets::to_json`].
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything else.
    pub fn from_json(json: &str) -> Result<Self, CryptoError> {
        let wire: SecretsWire =
            serde_json::from_str(json).map_err(|_| CryptoError::Malformed { what: "secrets" })?;
        Ok(Self {
            identity: IdentitySecrets::from_json(&wire.identity)?,
            backup: BackupKeys {
                current: BackupKey::from_base64(&wire.backup)?,
                earlier: wire
                    .earlier_backup
                    .iter()
                    .map(|key| BackupKey::from_base64(key))
                    .collect::<Result<_, _>>()?,
            },
        })
    }
}

/// What the recovery item holds: the master key and a device's secrets.
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct RecoveryWire {
    master: String,
    secrets: String,
}

/// The key a user writes down at the first login: it opens the backup's identity item, so a
/// user who loses every device keeps the identity and the readable history.
///
/// Shown as 56 characters of Crockford base32 in groups of four: 32 random bytes and a
/// 3-byte checksum that catches typing mistakes.
///
/// # Security
/// No `Debug` or `Clone`.
pub struct RecoveryKey(SealKey);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CHECKSUM_BYTES: usize = 3;

impl RecoveryKey {
    /// A new random recovery key.
    pub fn generate() -> Self {
        Self(SealKey::random())
    }

    /// The key as the user writes it down.
    pub fn to_display(&self) -> Zeroizing<String> {
        let key = self.0.to_bytes();
        let mut bytes = Zeroizing::new(key.to_vec());
        bytes.extend_from_slice(&Sha256::digest(*key)[..CHECKSUM_BYTES]);
        let mut text = Zeroizing::new(String::new());
        let (mut buffer, mut bits) = (0u32, 0u32);
        for byte in bytes.iter() {
            buffer = (buffer << 8) | u32::from(*byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                push_group_char(&mut text, CROCKFORD[((buffer >> bits) & 31) as usize]);
            }
        }
        text
    }

    /// Reads a key as the user typed it: case, spaces and dashes do not matter, and `O`, `I`
    /// and `L` read as `0`, `1` and `1`.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] when it is not a recovery key (a typo fails the checksum).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let malformed = || CryptoError::Malformed {
            what: "recovery key (check it for typing mistakes)",
        };
        let mut bytes = Zeroizing::new(Vec::with_capacity(32 + CHECKSUM_BYTES));
        let (mut buffer, mut bits) = (0u32, 0u32);
        for c in text.chars().filter(|c| !c.is_whitespace() && *c != '-') {
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            let value = CROCKFORD
                .iter()
                .position(|d| char::from(*d) == c)
                .ok_or_else(malformed)?;
            buffer = (buffer << 5) | u32::try_from(value).map_err(|_| malformed())?;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                bytes.push(u8::try_from((buffer >> bits) & 0xff).map_err(|_| malformed())?);
            }
        }
        if bytes.len() != 32 + CHECKSUM_BYTES {
            return Err(malformed());
        }
        let (key, checksum) = bytes.split_at(32);
        if Sha256::digest(key)[..CHECKSUM_BYTES] != *checksum {
            return Err(malformed());
        }
        let key: [u8; 32] = key.try_into().map_err(|_| malformed())?;
        Ok(Self(SealKey::from_bytes(key)))
    }

    /// The master key and the secrets as the backup's identity item.
    pub fn seal_secrets(&self, user: UserId, master: &MasterKey, secrets: &Secrets) -> BackupItem {
        let wire = RecoveryWire {
            master: master.to_base64().to_string(),
            secrets: secrets.to_json().to_string(),
        };
        let json = Zeroizing::new(serde_json::to_string(&wire).expect("secrets serialize"));
        seal(&self.key(), user, IDENTITY_ITEM.to_owned(), json.as_bytes())
    }

    /// The master key and the secrets in the backup's identity item.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] when this is not the key the item was sealed with;
    /// [`CryptoError::Malformed`] when the master key does not match the secrets.
    pub fn open_secrets(
        &self,
        user: UserId,
        item: &BackupItem,
    ) -> Result<(MasterKey, Secrets), CryptoError> {
        let malformed = || CryptoError::Malformed { what: "secrets" };
        let plaintext = open(&self.key(), user, item)?;
        let wire: RecoveryWire = serde_json::from_slice(&plaintext).map_err(|_| malformed())?;
        let master = MasterKey::from_base64(&wire.master)?;
        let secrets = Secrets::from_json(&wire.secrets)?;
        if master.public_key() != secrets.identity.master_key() {
            return Err(malformed());
        }
        Ok((master, secrets))
    }

    fn key(&self) -> SealKey {
        self.0.derive("natter-recovery:v1")
    }
}

fn push_group_char(text: &mut String, c: u8) {
    let written = text.chars().filter(|c| *c != ' ').count();
    if written > 0 && written % 4 == 0 {
        text.push(' ');
    }
    text.push(char::from(c));
}

fn associated(user: UserId, name: &str) -> Vec<u8> {
    format!("natter-backup:v1:{user}:{name}").into_bytes()
}

fn seal(key: &SealKey, user: UserId, name: String, plaintext: &[u8]) -> BackupItem {
    let sealed = key.seal(&associated(user, &name), plaintext);
    BackupItem {
        name,
        data: STANDARD_NO_PAD.encode(sealed),
    }
}

fn open(key: &SealKey, user: UserId, item: &BackupItem) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let sealed = STANDARD_NO_PAD
        .decode(&item.data)
        .map_err(|_| CryptoError::Malformed {
            what: "backup item",
        })?;
    key.open(&associated(user, &item.name), &sealed)
}

#[cfg(test)]
mod tests {
    use natter_proto::{ConversationId, DeviceId};

    use super::*;
    use crate::OutboundRoomSession;

    fn user() -> UserId {
        UserId(uuid::Uuid::now_v7())
    }

    #[test]
    fn a_recovery_key_reads_back_as_typed_and_catches_typos() {
        let key = RecoveryKey::generate();
        let shown = key.to_display();
        assert_eq!(shown.split(' ').count(), 14, "{}", shown.as_str());
        let typed = shown.to_lowercase().replace(' ', "-");
        let again = RecoveryKey::parse(&typed).unwrap();
        assert_eq!(again.to_display().as_str(), shown.as_str());
        let mut typo: Vec<char> = shown.chars().collect();
        typo[5] = if typo[5] == 'A' { 'B' } else { 'A' };
        assert!(RecoveryKey::parse(&typo.into_iter().collect::<String>()).is_err());
        assert!(RecoveryKey::parse("").is_err());
    }

    #[test]
    fn the_identity_item_opens_only_with_its_recovery_key_user_and_name() {
        let (alice, mallory) = (user(), user());
        let (master, secrets) = Secrets::generate(alice);
        let key = RecoveryKey::generate();
        let item = key.seal_secrets(alice, &master, &secrets);
        let (opened_master, opened) = key.open_secrets(alice, &item).unwrap();
        assert_eq!(opened.identity.master_key(), secrets.identity.master_key());
        assert_eq!(opened_master.public_key(), master.public_key());
        assert!(RecoveryKey::generate().open_secrets(alice, &item).is_err());
        assert!(key.open_secrets(mallory, &item).is_err());
        let renamed = BackupItem {
            name: "identity2".into(),
            ..item
        };
        assert!(key.open_secrets(alice, &renamed).is_err());
    }

    #[test]
    fn room_keys_and_trust_round_trip_and_stay_in_place() {
        let alice = user();
        let backup = BackupKey::generate();
        let outbound = OutboundRoomSession::new(ConversationId(uuid::Uuid::now_v7()), 0);
        let device = DeviceId(uuid::Uuid::now_v7());
        let inbound =
            InboundRoomSession::from_share(&outbound.share_for((alice, device), device)).unwrap();
        let item = backup.seal_room_key(alice, &inbound);
        assert!(item.name.starts_with(ROOM_PREFIX));
        let restored = backup.open_room_key(alice, &item).unwrap();
        assert_eq!(restored.session_id(), inbound.session_id());
        let moved = BackupItem {
            name: format!("{ROOM_PREFIX}other"),
            ..item
        };
        assert!(backup.open_room_key(alice, &moved).is_err());

        let bob = user();
        let trust = backup.seal_trust(alice, bob, r#"{"verified":true}"#);
        assert!(trust.name.starts_with(TRUST_PREFIX) && !trust.name.contains(&bob.to_string()));
        assert_eq!(
            backup.open_trust(alice, &trust).unwrap().as_str(),
            r#"{"verified":true}"#
        );
        let again = BackupKey::from_base64(&backup.to_base64()).unwrap();
        assert_eq!(again.seal_trust(alice, bob, "x").name, trust.name);
    }

    #[test]
    fn a_rotation_keeps_what_was_sealed_readable_and_seals_anew() {
        let alice = user();
        let (master, secrets) = Secrets::generate(alice);
        let before = secrets.backup.current().seal_trust(alice, user(), "before");
        let rotated = secrets.rotate(alice, &master);
        let after = rotated.backup.current().seal_trust(alice, user(), "after");
        // The rotated secrets (and their JSON round trip) open both items.
        let rotated = Secrets::from_json(&rotated.to_json()).unwrap();
        assert_eq!(
            rotated.backup.open_trust(alice, &before).unwrap().as_str(),
            "before"
        );
        assert_eq!(
            rotated.backup.open_trust(alice, &after).unwrap().as_str(),
            "after"
        );
        // The secrets from before the rotation (a removed device's) open only the old item.
        assert!(secrets.backup.open_trust(alice, &after).is_err());
        // A device that held older keys keeps them beside the rotated ones, once each.
        let mut merged = Secrets::from_json(&rotated.to_json()).unwrap();
        merged.backup.keep_earlier(secrets.backup);
        assert_eq!(merged.backup.earlier.len(), 1);
        assert_eq!(rotated.identity.master_key(), secrets.identity.master_key());
        assert_ne!(
            rotated.identity.public().self_signing_key,
            secrets.identity.public().self_signing_key
        );
    }
}
