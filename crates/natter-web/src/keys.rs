//! Keys at rest: the pickle key from a passphrase, and sealing values (XChaCha20-Poly1305).

use wasm_bindgen::prelude::*;

/// The key that encrypts Olm and Megolm pickles at rest.
#[wasm_bindgen]
pub struct StoreKey(pub(crate) natter_crypto::StoreKey);

#[wasm_bindgen]
impl StoreKey {
    /// The key Argon2id derives from a passphrase and a salt (as the terminal client does).
    #[wasm_bindgen(js_name = fromPassphrase)]
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<StoreKey, JsError> {
        Ok(Self(natter_crypto::StoreKey::from_passphrase(
            passphrase, salt,
        )?))
    }

    /// A fresh random salt for a new store.
    #[wasm_bindgen(js_name = newSalt)]
    pub fn new_salt() -> Vec<u8> {
        natter_crypto::StoreKey::new_salt().to_vec()
    }
}

/// A 32-byte key that seals values at rest, bound to where they are stored.
#[wasm_bindgen]
pub struct SealKey(natter_crypto::SealKey);

#[wasm_bindgen]
impl SealKey {
    /// A fresh random key (Web Crypto's random source).
    pub fn random() -> SealKey {
        Self(natter_crypto::SealKey::random())
    }

    /// The key Argon2id derives from a passphrase and a salt.
    #[wasm_bindgen(js_name = fromPassphrase)]
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<SealKey, JsError> {
        Ok(Self(natter_crypto::SealKey::from_passphrase(
            passphrase, salt,
        )?))
    }

    /// A subkey for one purpose (HKDF-SHA256).
    pub fn derive(&self, purpose: &str) -> SealKey {
        Self(self.0.derive(purpose))
    }

    /// This key as the key of pickles (a subkey of the store's data key).
    #[wasm_bindgen(js_name = toStoreKey)]
    pub fn to_store_key(&self) -> StoreKey {
        StoreKey(natter_crypto::StoreKey::from_bytes(*self.0.to_bytes()))
    }

    /// Seals `plaintext`; `aad` (where it is stored) must be the same to open it.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.0.seal(aad, plaintext)
    }

    /// Opens what [`SealKey::seal`] sealed; fails for a wrong key, another `aad` or damage.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, JsError> {
        Ok(self.0.open(aad, sealed)?.to_vec())
    }

    /// A keyed blind index of `value` (HMAC-SHA256), for finding rows without storing ids.
    pub fn tag(&self, value: &[u8]) -> Vec<u8> {
        self.0.tag(value).to_vec()
    }
}
