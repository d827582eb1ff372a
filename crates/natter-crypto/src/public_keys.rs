//! Public keys as the server serves them (base64), parsed with their length checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};

use crate::CryptoError;

/// Parses a base64 Curve25519 public key.
pub(crate) fn parse_curve(key: &str) -> Result<Curve25519PublicKey, CryptoError> {
    Curve25519PublicKey::from_base64(key).map_err(|_| CryptoError::MalformedKey {
        what: "Curve25519 key",
    })
}

/// Parses a base64 Ed25519 public key (unpadded, 32 bytes). The length is checked here:
/// vodozemac 0.11's `Ed25519PublicKey::from_base64` panics on 44 characters of unpadded base64
/// (33 bytes), and these keys come from the server.
pub(crate) fn parse_ed(key: &str, what: &'static str) -> Result<Ed25519PublicKey, CryptoError> {
    let malformed = || CryptoError::MalformedKey { what };
    let bytes = STANDARD_NO_PAD.decode(key).map_err(|_| malformed())?;
    let bytes: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed())?;
    Ed25519PublicKey::from_slice(bytes).map_err(|_| malformed())
}
