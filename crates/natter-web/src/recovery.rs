//! The recovery key a user writes down, and the secrets it seals into the key backup.

use natter_crypto::{MasterKey, RecoveryKey, Secrets};
use natter_proto::UserId;
use natter_proto::keys::BackupItem;
use wasm_bindgen::prelude::*;

use crate::error::{id, json, to_json};
use crate::identity::CrossSigning;

/// What a verified device holds (the self-signing key and the backup keys), and, for a new
/// identity or one opened with the recovery key, the master key to seal into the recovery item.
#[wasm_bindgen]
pub struct AccountSecrets {
    master: MasterKey,
    secrets: Secrets,
}

#[wasm_bindgen]
impl AccountSecrets {
    /// New secrets for a new identity of `user_id`.
    pub fn generate(user_id: &str) -> Result<AccountSecrets, JsError> {
        let (master, secrets) = Secrets::generate(id(user_id, "user id")?);
        Ok(Self { master, secrets })
    }

    /// The identity's private keys as a device holds them.
    #[wasm_bindgen(js_name = crossSigning)]
    pub fn cross_signing(&self) -> Result<CrossSigning, JsError> {
        let json = self.secrets.identity.to_json();
        Ok(CrossSigning(natter_crypto::IdentitySecrets::from_json(
            &json,
        )?))
    }
}

/// The recovery key: 56 characters of Crockford base32 with a checksum.
#[wasm_bindgen]
pub struct Recovery(RecoveryKey);

#[wasm_bindgen]
impl Recovery {
    /// A new random recovery key.
    pub fn generate() -> Recovery {
        Self(RecoveryKey::generate())
    }

    /// Reads a key as the user typed it (spaces, dashes and case do not matter; the checksum
    /// catches typing mistakes).
    pub fn parse(text: &str) -> Result<Recovery, JsError> {
        Ok(Self(RecoveryKey::parse(text)?))
    }

    /// The key as the user writes it down.
    pub fn display(&self) -> String {
        self.0.to_display().to_string()
    }

    /// Seals the secrets into the backup's identity item (JSON of `BackupItem`).
    #[wasm_bindgen(js_name = sealSecrets)]
    pub fn seal_secrets(&self, user_id: &str, secrets: &AccountSecrets) -> Result<String, JsError> {
        let user: UserId = id(user_id, "user id")?;
        Ok(to_json(&self.0.seal_secrets(
            user,
            &secrets.master,
            &secrets.secrets,
        )))
    }

    /// Opens the backup's identity item (JSON of `BackupItem`).
    #[wasm_bindgen(js_name = openSecrets)]
    pub fn open_secrets(&self, user_id: &str, item: &str) -> Result<AccountSecrets, JsError> {
        let user: UserId = id(user_id, "user id")?;
        let item: BackupItem = json(item, "backup item")?;
        let (master, secrets) = self.0.open_secrets(user, &item)?;
        Ok(AccountSecrets { master, secrets })
    }
}
