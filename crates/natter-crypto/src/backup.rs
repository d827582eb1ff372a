//! The key backup: items the server keeps for a user and cannot read.
//!
//! - `identity`: the identity's private keys and the backup key, sealed with a key derived from
//!   the user's [`RecoveryKey`], which only the user holds (written down at the first login).
//! - `room:<session id>`: one room key each, sealed with the [`BackupKey`], which every
//!   verified device of the user holds: a device that can read a message backs its key up.
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

/// What a verified device holds and hands on: the identity's private keys and the backup key.
pub struct Secrets {
    /// The identity's private keys.
    pub identity: IdentitySecrets,
    /// The backup key.
    pub backup: BackupKey,
}

/// How the secrets travel; zeroized when dropped.
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct SecretsWire {
    identity: String,
    backup: String,
}

impl Secrets {
    /// New secrets for a new identity.
    pub fn generate() -> Self {
        Self {
            identity: IdentitySecrets::generate(),
            backup: BackupKey::generate(),
        }
    }

    /// The secrets as JSON (to keep in the device's store, or to send to a newly approved
    /// device over its pairwise session).
    pub fn to_json(&self) -> Zeroizing<String> {
        let wire = SecretsWire {
            identity: self.identity.to_json().to_string(),
            backup: self.backup.to_base64().to_string(),
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
            backup: BackupKey::from_base64(&wire.backup)?,
        })
    }
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

    /// The secrets as the backup's identity item.
    pub fn seal_secrets(&self, user: UserId, secrets: &Secrets) -> BackupItem {
        seal(
            &self.key(),
            user,
            IDENTITY_ITEM.to_owned(),
            secrets.to_json().as_bytes(),
        )
    }

    /// The secrets in the backup's identity item.
    ///
    /// # Errors
    /// [`CryptoError::Sealed`] when this is not the key the item was sealed with.
    pub fn open_secrets(&self, user: UserId, item: &BackupItem) -> Result<Secrets, CryptoError> {
        let plaintext = open(&self.key(), user, item)?;
        Secrets::from_json(
            std::str::from_utf8(&plaintext)
                .map_err(|_| CryptoError::Malformed { what: "secrets" })?,
        )
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
        let secrets = Secrets::generate();
        let key = RecoveryKey::generate();
        let item = key.seal_secrets(alice, &secrets);
        let opened = key.open_secrets(alice, &item).unwrap();
        assert_eq!(opened.identity.master_key(), secrets.identity.master_key());
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
}
