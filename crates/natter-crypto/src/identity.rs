//! Devices' identity keys: checking their self-signatures, and safety numbers.

use natter_proto::keys::{DeviceInfo, IdentityKeys};
use natter_proto::{DeviceId, UserId};
use sha2::{Digest, Sha512};
use vodozemac::Ed25519Signature;

use crate::CryptoError;

/// A device whose identity keys were checked against their signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// The device's user.
    pub user_id: UserId,
    /// The device.
    pub device_id: DeviceId,
    /// Its Curve25519 identity key (base64).
    pub curve25519: String,
    /// Its Ed25519 signing key (base64).
    pub ed25519: String,
}

/// Checks a device's published identity keys: both keys parse and the signature over
/// [`IdentityKeys::signed_message`] (binding them to this user and device) is valid.
/// Returns `Ok(None)` for a device that has not published keys yet.
///
/// # Errors
/// [`CryptoError::MalformedKey`] or [`CryptoError::BadSignature`]: do not talk to this device.
pub fn verify_device(
    user: UserId,
    device: &DeviceInfo,
) -> Result<Option<VerifiedDevice>, CryptoError> {
    let Some(published) = &device.identity_keys else {
        return Ok(None);
    };
    let keys = &published.keys;
    verify_keys(user, device.device_id, keys)?;
    Ok(Some(VerifiedDevice {
        user_id: user,
        device_id: device.device_id,
        curve25519: keys.curve25519.clone(),
        ed25519: keys.ed25519.clone(),
    }))
}

fn verify_keys(user: UserId, device: DeviceId, keys: &IdentityKeys) -> Result<(), CryptoError> {
    crate::public_keys::parse_curve(&keys.curve25519)?;
    let ed = crate::public_keys::parse_ed(&keys.ed25519, "Ed25519 key")?;
    let signature = Ed25519Signature::from_base64(&keys.signature)
        .map_err(|_| CryptoError::MalformedKey { what: "signature" })?;
    let message = IdentityKeys::signed_message(user, device, &keys.curve25519, &keys.ed25519);
    ed.verify(message.as_bytes(), &signature)
        .map_err(|_| CryptoError::BadSignature {
            device: device.to_string(),
        })
}

/// The safety number of two users: 60 digits in 12 groups of 5, the same on both sides.
/// Each user is given with the master key of their identity (cross-signing), so the number
/// stays the same when either adds a device; if the two people read out the same number, no
/// one replaced an identity between them.
pub fn safety_number(a: (UserId, &str), b: (UserId, &str)) -> String {
    let side = |(user, master): (UserId, &str)| format!("{user}:{master}");
    let mut sides = [side(a), side(b)];
    sides.sort();
    let digest = Sha512::new()
        .chain_update(b"natter-safety-number:v1\n")
        .chain_update(sides[0].as_bytes())
        .chain_update(b"\n")
        .chain_update(sides[1].as_bytes())
        .finalize();
    digest
        .chunks(5)
        .take(12)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use natter_proto::keys::PublishedIdentityKeys;

    use super::*;
    use crate::DeviceAccount;

    fn ids() -> (UserId, DeviceId) {
        (UserId(uuid::Uuid::now_v7()), DeviceId(uuid::Uuid::now_v7()))
    }

    fn info(device: DeviceId, keys: IdentityKeys) -> DeviceInfo {
        DeviceInfo {
            device_id: device,
            name: "d".into(),
            created_at: 0,
            cross_signature: None,
            identity_keys: Some(PublishedIdentityKeys {
                keys,
                created_at: 0,
            }),
        }
    }

    /// A device served with a 33-byte Ed25519 key (44 characters of unpadded base64) is
    /// malformed; vodozemac 0.11 alone panics on it (found by the `client_decode` fuzz target).
    #[test]
    fn a_device_key_of_the_wrong_length_is_malformed_not_a_panic() {
        let (user, device) = ids();
        let mut keys = DeviceAccount::new().identity_keys(user, device);
        keys.ed25519 = "KWkr0BCnBcQ0SXhZglmZMhuqanL+q359E4tIXFI+PUZo".to_owned();
        assert!(matches!(
            verify_device(user, &info(device, keys)),
            Err(CryptoError::MalformedKey {
                what: "Ed25519 key"
            })
        ));
    }

    #[test]
    fn signed_keys_verify_and_tampered_ones_do_not() {
        let account = DeviceAccount::new();
        let (user, device) = ids();
        let keys = account.identity_keys(user, device);
        let verified = verify_device(user, &info(device, keys.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(verified.curve25519, account.curve25519());

        let other = DeviceAccount::new();
        let swapped = IdentityKeys {
            curve25519: other.curve25519(),
            ..keys.clone()
        };
        assert!(matches!(
            verify_device(user, &info(device, swapped)),
            Err(CryptoError::BadSignature { .. })
        ));
        let (_, elsewhere) = ids();
        assert!(matches!(
            verify_device(user, &info(elsewhere, keys)),
            Err(CryptoError::BadSignature { .. })
        ));
    }

    #[test]
    fn safety_numbers_are_symmetric_and_key_dependent() {
        let (alice, _) = ids();
        let (bob, _) = ids();
        let one = safety_number((alice, "ka"), (bob, "kb"));
        assert_eq!(one, safety_number((bob, "kb"), (alice, "ka")));
        assert_eq!(one.split(' ').count(), 12);
        assert!(
            one.split(' ')
                .all(|g| g.len() == 5 && g.chars().all(|c| c.is_ascii_digit()))
        );
        assert_ne!(one, safety_number((alice, "ka"), (bob, "kb2")));
    }
}
