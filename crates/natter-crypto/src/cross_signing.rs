//! Cross-signing: a user's long-term identity (a master key that signs a self-signing key,
//! which signs each of the user's devices), and checking the chain from what the server serves.
//!
//! The server stores the public keys and signatures; clients check every link themselves, so a
//! server that adds a device to an account cannot make other clients trust it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use natter_proto::keys::{CrossSigningKeys, DeviceInfo, IdentityKeys};
use natter_proto::{DeviceId, UserId};
use serde::{Deserialize, Serialize};
use vodozemac::{Ed25519PublicKey, Ed25519SecretKey, Ed25519Signature};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::identity::{VerifiedDevice, verify_device};
use crate::public_keys::parse_ed;

/// The identity's master key: it certifies the self-signing key, and so decides what the
/// identity is. Only the recovery item in the key backup keeps it; a device holds it only while
/// it creates the identity or, with the recovery key, rotates the self-signing key, so a device
/// removed later cannot certify a new self-signing key behind its user's back.
///
/// # Security
/// No `Debug` or `Clone`; [`MasterKey::to_base64`] is the only way out, zeroized.
pub struct MasterKey(Ed25519SecretKey);

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Self {
        Self(Ed25519SecretKey::new())
    }

    /// The public key (base64): what safety numbers and pins are about.
    pub fn public_key(&self) -> String {
        self.0.public_key().to_base64()
    }

    /// The key in base64, for the recovery item.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_base64())
    }

    /// A key from [`MasterKey::to_base64`].
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything else.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        parse_secret_key(text)
            .map(Self)
            .ok_or(CryptoError::Malformed { what: "master key" })
    }

    /// New identity secrets: a fresh self-signing key, certified by this master key.
    pub fn new_self_signing(&self, user: UserId) -> IdentitySecrets {
        let self_signing = Ed25519SecretKey::new();
        let public = self.certify(user, &self_signing.public_key().to_base64());
        IdentitySecrets {
            self_signing,
            public,
        }
    }

    fn certify(&self, user: UserId, self_signing_key: &str) -> CrossSigningKeys {
        let master_key = self.public_key();
        let message = CrossSigningKeys::self_signing_message(user, &master_key, self_signing_key);
        CrossSigningKeys {
            signature: self.0.sign(message.as_bytes()).to_base64(),
            master_key,
            self_signing_key: self_signing_key.to_owned(),
        }
    }
}

/// What an approved device holds of its user's identity: the self-signing key, which signs the
/// user's devices, and the public identity that certifies it.
///
/// # Security
/// No `Debug` or `Clone`; [`IdentitySecrets::to_json`] is the only way out, zeroized.
pub struct IdentitySecrets {
    self_signing: Ed25519SecretKey,
    public: CrossSigningKeys,
}

/// How the secrets travel (to a newly approved device, or into the backup).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SecretsWire {
    self_signing: String,
    #[zeroize(skip)]
    public: CrossSigningKeys,
}

impl IdentitySecrets {
    /// The public identity to publish, its self-signing key signed by the master key.
    pub fn public(&self) -> &CrossSigningKeys {
        &self.public
    }

    /// The master public key (base64).
    pub fn master_key(&self) -> String {
        self.public.master_key.clone()
    }

    /// Vouches for one of the user's devices: the signature to store with
    /// `PUT /v1/devices/{id}/signature`.
    pub fn sign_device(&self, user: UserId, device: DeviceId, keys: &IdentityKeys) -> String {
        self.sign_device_keys(user, device, &keys.curve25519, &keys.ed25519)
    }

    /// [`IdentitySecrets::sign_device`] for a device's keys given one by one.
    pub fn sign_device_keys(
        &self,
        user: UserId,
        device: DeviceId,
        curve25519: &str,
        ed25519: &str,
    ) -> String {
        let message = CrossSigningKeys::device_message(user, device, curve25519, ed25519);
        self.self_signing.sign(message.as_bytes()).to_base64()
    }

    /// The secrets as JSON, to seal for the backup or send to a newly approved device.
    pub fn to_json(&self) -> Zeroizing<String> {
        let wire = SecretsWire {
            self_signing: self.self_signing.to_base64(),
            public: self.public.clone(),
        };
        Zeroizing::new(serde_json::to_string(&wire).expect("secrets always serialize"))
    }

    /// Secrets from [`IdentitySecrets::to_json`]; the public identity must name this
    /// self-signing key.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for anything else.
    pub fn from_json(json: &str) -> Result<Self, CryptoError> {
        let malformed = || CryptoError::Malformed {
            what: "identity secrets",
        };
        let wire: SecretsWire = serde_json::from_str(json).map_err(|_| malformed())?;
        let self_signing = parse_secret_key(&wire.self_signing).ok_or_else(malformed)?;
        if self_signing.public_key().to_base64() != wire.public.self_signing_key {
            return Err(malformed());
        }
        Ok(Self {
            self_signing,
            public: wire.public.clone(),
        })
    }
}

/// A user's identity whose self-signing key was checked against its master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIdentity {
    /// The user.
    pub user_id: UserId,
    /// The master key (base64): what safety numbers and pins are about.
    pub master_key: String,
    self_signing: Ed25519PublicKey,
}

/// What a client may make of one device in a user's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceTrust {
    /// Signed by its user's identity: it may be given keys.
    Signed(VerifiedDevice),
    /// Its own keys are valid but no identity of its user vouches for it (a new device not yet
    /// approved, or one the server added): it gets nothing.
    Unsigned(VerifiedDevice),
    /// It published no keys, or keys whose self-signature fails.
    Invalid,
}

impl UserIdentity {
    /// Checks a published identity: both keys parse and the master key signed the
    /// self-signing key for this user.
    ///
    /// # Errors
    /// [`CryptoError::MalformedKey`] or [`CryptoError::BadSignature`].
    pub fn check(user: UserId, keys: &CrossSigningKeys) -> Result<Self, CryptoError> {
        let master = parse_ed(&keys.master_key, "master key")?;
        let self_signing = parse_ed(&keys.self_signing_key, "self-signing key")?;
        let message =
            CrossSigningKeys::self_signing_message(user, &keys.master_key, &keys.self_signing_key);
        verify(&master, &message, &keys.signature, || {
            format!("the identity of {user}")
        })?;
        Ok(Self {
            user_id: user,
            master_key: keys.master_key.clone(),
            self_signing,
        })
    }

    /// Judges one of this user's devices.
    pub fn judge(&self, device: &DeviceInfo) -> DeviceTrust {
        let Ok(Some(verified)) = verify_device(self.user_id, device) else {
            return DeviceTrust::Invalid;
        };
        let signed = device.cross_signature.as_deref().is_some_and(|signature| {
            let message = CrossSigningKeys::device_message(
                self.user_id,
                verified.device_id,
                &verified.curve25519,
                &verified.ed25519,
            );
            verify(&self.self_signing, &message, signature, String::new).is_ok()
        });
        if signed {
            DeviceTrust::Signed(verified)
        } else {
            DeviceTrust::Unsigned(verified)
        }
    }
}

/// Parses an Ed25519 secret key as `to_base64` writes it (unpadded base64 of 32 bytes; padded
/// is taken too). The length is checked here: vodozemac 0.11's `Ed25519SecretKey::from_base64`
/// panics on 44 characters of unpadded base64 (33 bytes).
fn parse_secret_key(text: &str) -> Option<Ed25519SecretKey> {
    let bytes = Zeroizing::new(
        STANDARD_NO_PAD
            .decode(text)
            .or_else(|_| STANDARD.decode(text))
            .ok()?,
    );
    let bytes: &[u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(Ed25519SecretKey::from_slice(bytes))
}

fn verify(
    key: &Ed25519PublicKey,
    message: &str,
    signature: &str,
    whose: impl Fn() -> String,
) -> Result<(), CryptoError> {
    let bad = || CryptoError::BadSignature { device: whose() };
    let signature = Ed25519Signature::from_base64(signature).map_err(|_| bad())?;
    key.verify(message.as_bytes(), &signature)
        .map_err(|_| bad())
}

/// A short, stable fingerprint of a master key for display (`ab12 cd34 …`, 8 groups).
pub fn fingerprint(master_key: &str) -> String {
    let bytes = STANDARD_NO_PAD.decode(master_key).unwrap_or_default();
    bytes
        .chunks(2)
        .take(8)
        .map(|pair| pair.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use natter_proto::keys::PublishedIdentityKeys;

    use super::*;
    use crate::DeviceAccount;

    /// Found by the `client_decode` fuzz target: 44 characters of unpadded base64 (33 bytes)
    /// made vodozemac panic instead of refusing the key.
    const KEY_OF_33_BYTES: &str = "oHtC2a4U1o9qj8w1x4wH1V8G/xq4W0m0A1b2c3d4e5f0";

    #[test]
    fn a_secret_key_of_the_wrong_length_is_malformed_not_a_panic() {
        assert!(matches!(
            MasterKey::from_base64(KEY_OF_33_BYTES),
            Err(CryptoError::Malformed { what: "master key" })
        ));
        let user = UserId(uuid::Uuid::now_v7());
        let secrets = MasterKey::generate().new_self_signing(user);
        let mut wire: serde_json::Value =
            serde_json::from_str(&secrets.to_json()).expect("secrets are JSON");
        wire["self_signing"] = KEY_OF_33_BYTES.into();
        assert!(matches!(
            IdentitySecrets::from_json(&wire.to_string()),
            Err(CryptoError::Malformed { .. })
        ));
    }

    /// Found by the `client_decode` fuzz target: an identity served with a 33-byte
    /// self-signing key made vodozemac panic in the client that checked it.
    #[test]
    fn an_identity_with_a_public_key_of_the_wrong_length_is_malformed_not_a_panic() {
        let user = UserId(uuid::Uuid::now_v7());
        let mut keys = MasterKey::generate()
            .new_self_signing(user)
            .public()
            .clone();
        keys.self_signing_key = KEY_OF_33_BYTES.to_owned();
        assert!(matches!(
            UserIdentity::check(user, &keys),
            Err(CryptoError::MalformedKey {
                what: "self-signing key"
            })
        ));
        keys.master_key = KEY_OF_33_BYTES.to_owned();
        assert!(matches!(
            UserIdentity::check(user, &keys),
            Err(CryptoError::MalformedKey { what: "master key" })
        ));
    }

    #[test]
    fn secret_keys_read_back_unpadded_or_padded() {
        let master = MasterKey::generate();
        let text = master.to_base64();
        assert_eq!(text.len(), 43);
        let read = MasterKey::from_base64(&text).expect("unpadded");
        assert_eq!(read.public_key(), master.public_key());
        let padded = MasterKey::from_base64(&format!("{}=", *text)).expect("padded");
        assert_eq!(padded.public_key(), master.public_key());
        let user = UserId(uuid::Uuid::now_v7());
        let secrets = master.new_self_signing(user);
        let again = IdentitySecrets::from_json(&secrets.to_json()).expect("secrets read back");
        assert_eq!(*again.to_json(), *secrets.to_json());
    }

    fn device(
        user: UserId,
        account: &DeviceAccount,
        signed_by: Option<&IdentitySecrets>,
    ) -> DeviceInfo {
        let device_id = DeviceId(uuid::Uuid::now_v7());
        let keys = account.identity_keys(user, device_id);
        DeviceInfo {
            device_id,
            name: "d".into(),
            created_at: 0,
            cross_signature: signed_by.map(|s| s.sign_device(user, device_id, &keys)),
            identity_keys: Some(PublishedIdentityKeys {
                keys,
                created_at: 0,
            }),
        }
    }

    #[test]
    fn only_devices_signed_by_the_identity_are_trusted() {
        let user = UserId(uuid::Uuid::now_v7());
        let secrets = MasterKey::generate().new_self_signing(user);
        let identity = UserIdentity::check(user, secrets.public()).unwrap();
        let account = DeviceAccount::new();
        assert!(matches!(
            identity.judge(&device(user, &account, Some(&secrets))),
            DeviceTrust::Signed(_)
        ));
        assert!(matches!(
            identity.judge(&device(user, &account, None)),
            DeviceTrust::Unsigned(_)
        ));
        // A ghost identity's signature does not count for the real one.
        let ghost = MasterKey::generate().new_self_signing(user);
        assert!(matches!(
            identity.judge(&device(user, &account, Some(&ghost))),
            DeviceTrust::Unsigned(_)
        ));
        // A signature for one device does not move to another.
        let mut moved = device(user, &account, Some(&secrets));
        moved.device_id = DeviceId(uuid::Uuid::now_v7());
        assert_eq!(identity.judge(&moved), DeviceTrust::Invalid);
    }

    #[test]
    fn an_identity_binds_its_user_and_keys() {
        let user = UserId(uuid::Uuid::now_v7());
        let master = MasterKey::generate();
        let secrets = master.new_self_signing(user);
        let public = secrets.public().clone();
        assert!(UserIdentity::check(UserId(uuid::Uuid::now_v7()), &public).is_err());
        let other = MasterKey::generate()
            .new_self_signing(user)
            .public()
            .clone();
        let spliced = CrossSigningKeys {
            self_signing_key: other.self_signing_key.clone(),
            ..public.clone()
        };
        assert!(UserIdentity::check(user, &spliced).is_err());
        let back = IdentitySecrets::from_json(&secrets.to_json()).unwrap();
        assert_eq!(back.public(), &public);
        // Secrets whose public part names another self-signing key are refused.
        let mismatched = secrets
            .to_json()
            .replace(&public.self_signing_key, &other.self_signing_key);
        assert!(IdentitySecrets::from_json(&mismatched).is_err());
        // A rotation keeps the master key and changes the self-signing key.
        let rotated = master.new_self_signing(user);
        assert_eq!(rotated.master_key(), public.master_key);
        assert_ne!(rotated.public().self_signing_key, public.self_signing_key);
        assert!(UserIdentity::check(user, rotated.public()).is_ok());
    }
}
