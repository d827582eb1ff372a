//! Users' identities (cross-signing): a user's own private keys, checking other users'
//! published identities and devices, and safety numbers.

use natter_crypto::cross_signing::fingerprint as master_fingerprint;
use natter_crypto::{DeviceTrust, IdentitySecrets, MasterKey, UserIdentity};
use natter_proto::keys::{CrossSigningKeys, DeviceInfo, IdentityKeys};
use natter_proto::{DeviceId, UserId};
use wasm_bindgen::prelude::*;

use crate::error::{id, json, to_json};

/// What an approved device holds of its user's identity: the self-signing key and the public
/// identity that certifies it (never the master key: see natter-crypto's `MasterKey`).
#[wasm_bindgen]
pub struct CrossSigning(pub(crate) IdentitySecrets);

#[wasm_bindgen]
impl CrossSigning {
    /// A new identity for `user_id` (its master key is made and dropped: use
    /// `AccountSecrets.generate` to keep it sealed for the recovery key).
    pub fn generate(user_id: &str) -> Result<CrossSigning, JsError> {
        let user: UserId = id(user_id, "user id")?;
        Ok(Self(MasterKey::generate().new_self_signing(user)))
    }

    /// The public half to publish (JSON of `CrossSigningKeys`).
    #[wasm_bindgen(js_name = publicKeys)]
    pub fn public_keys(&self) -> String {
        to_json(self.0.public())
    }

    /// The master key (base64): what safety numbers are computed over.
    #[wasm_bindgen(getter, js_name = masterKey)]
    pub fn master_key(&self) -> String {
        self.0.master_key()
    }

    /// Signs one of this user's devices (its published `IdentityKeys` as JSON), so others
    /// give it keys.
    #[wasm_bindgen(js_name = signDevice)]
    pub fn sign_device(
        &self,
        user_id: &str,
        device_id: &str,
        identity_keys: &str,
    ) -> Result<String, JsError> {
        let user: UserId = id(user_id, "user id")?;
        let device: DeviceId = id(device_id, "device id")?;
        let keys: IdentityKeys = json(identity_keys, "identity keys")?;
        Ok(self.0.sign_device(user, device, &keys))
    }
}

/// Another user's published identity, checked (its master key signed its self-signing key).
#[wasm_bindgen]
pub struct Identity(UserIdentity);

#[wasm_bindgen]
impl Identity {
    /// Checks a user's published identity (JSON of `CrossSigningKeys`).
    pub fn check(user_id: &str, keys: &str) -> Result<Identity, JsError> {
        let keys: CrossSigningKeys = json(keys, "cross-signing keys")?;
        Ok(Self(UserIdentity::check(id(user_id, "user id")?, &keys)?))
    }

    /// The master key (base64).
    #[wasm_bindgen(getter, js_name = masterKey)]
    pub fn master_key(&self) -> String {
        self.0.master_key.clone()
    }

    /// What to make of one of this user's devices (JSON of `DeviceInfo`): `signed` (it may be
    /// given keys), `unsigned` (valid keys, not vouched for: it gets nothing) or `invalid`.
    pub fn judge(&self, device: &str) -> Result<String, JsError> {
        let device: DeviceInfo = json(device, "device")?;
        Ok(match self.0.judge(&device) {
            DeviceTrust::Signed(_) => "signed",
            DeviceTrust::Unsigned(_) => "unsigned",
            DeviceTrust::Invalid => "invalid",
        }
        .to_owned())
    }
}

/// The safety number of two users given with their identities' master keys: 60 digits in 12
/// groups of 5, the same on both sides and in the terminal client.
#[wasm_bindgen(js_name = safetyNumber)]
pub fn safety_number(
    user_a: &str,
    master_a: &str,
    user_b: &str,
    master_b: &str,
) -> Result<String, JsError> {
    Ok(natter_crypto::safety_number(
        (id(user_a, "user id")?, master_a),
        (id(user_b, "user id")?, master_b),
    ))
}

/// A short fingerprint of a master key for display (8 groups of 4 hex digits).
#[wasm_bindgen]
pub fn fingerprint(master_key: &str) -> String {
    master_fingerprint(master_key)
}

/// Checks a device's published identity keys (JSON of `DeviceInfo`) against their
/// self-signature: `true` when valid, `false` when it published none; an error when the
/// signature fails (do not talk to that device).
#[wasm_bindgen(js_name = verifyDevice)]
pub fn verify_device(user_id: &str, device: &str) -> Result<bool, JsError> {
    let device: DeviceInfo = json(device, "device")?;
    Ok(natter_crypto::verify_device(id(user_id, "user id")?, &device)?.is_some())
}
