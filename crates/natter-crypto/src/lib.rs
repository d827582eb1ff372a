//! Natter's end-to-end encryption for clients, built on vodozemac (Olm and Megolm).
//!
//! The server only ever sees what this crate produces: opaque ciphertexts and to-device
//! payloads. This crate does no I/O and knows nothing of HTTP or storage; the client library
//! persists what it returns as encrypted pickles.
//!
//! Layout:
//! - [`store_key`]: the key that encrypts pickles at rest, derived from a passphrase.
//! - [`seal`]: [`SealKey`], sealing any value at rest (XChaCha20-Poly1305), subkeys and blind
//!   indexes.
//! - [`account`]: a device's Olm account: identity keys, one-time and fallback keys.
//! - [`approval`]: approving a new device of one's own by comparing a code on both screens.
//! - [`backup`]: the key backup's items, the recovery key and the backup key.
//! - [`cross_signing`]: a user's identity (master and self-signing keys) and which of the
//!   user's devices it vouches for.
//! - [`identity`]: verifying other devices' published keys, and safety numbers.
//! - [`olm`]: pairwise device sessions and the to-device payloads they carry.
//! - [`megolm`]: room sessions: one outbound session per conversation per sending device,
//!   inbound sessions from key shares, and the rotation policy.
//! - [`envelope`]: the JSON inside ciphertexts: message text and room key shares.
//! - [`error`]: [`CryptoError`] and [`UnableToDecrypt`].

pub mod account;
pub mod approval;
pub mod backup;
pub mod cross_signing;
pub mod envelope;
pub mod error;
pub mod identity;
pub mod megolm;
pub mod olm;
mod public_keys;
pub mod seal;
pub mod store_key;

pub use account::{DecryptedWith, DeviceAccount};
pub use backup::{BackupKey, BackupKeys, RecoveryKey, Secrets};
pub use cross_signing::{DeviceTrust, IdentitySecrets, MasterKey, UserIdentity};
pub use envelope::{MessageEnvelope, RoomKeyShare};
pub use error::{CryptoError, UnableToDecrypt};
pub use identity::{VerifiedDevice, safety_number, verify_device};
pub use megolm::{InboundRoomSession, OutboundRoomSession, RotationPolicy};
pub use olm::{PairwiseSession, ToDevicePayload};
pub use seal::SealKey;
pub use store_key::StoreKey;
