//! The identity service: users' cross-signing identities, their devices' signatures and the key
//! backup.
//!
//! The server holds no private key and decides no trust: clients check every signature
//! themselves. It checks the same signatures so that a login that holds only the password (a new
//! device nobody approved) cannot replace the identity, sign itself, or write or wipe the
//! backup: an identity is replaced only with a signature of the current master key (a rotation
//! of the self-signing key) or by an explicit reset with the password, and only devices the
//! identity signed write to the backup.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use natter_proto::codes;
use natter_proto::keys::{BackupItem, CrossSigningKeys};
use natter_proto::limits::{BACKUP_ITEM_MAX, BACKUP_ITEMS_MAX, BACKUP_NAME_MAX};
use natter_proto::{DeviceId, UserId};

use crate::service_error::ServiceError;
use crate::store::{DeviceRecord, Store, StoreError};

/// Publishes `user`'s first identity, or rotates its self-signing key under the same master
/// key; the signatures of devices that the new self-signing key did not make are dropped.
///
/// # Errors
/// A malformed key or a signature that does not check; a different master key than the
/// current one (that is a reset, [`reset_identity`]).
pub async fn publish_identity(
    store: &dyn Store,
    user: UserId,
    keys: &CrossSigningKeys,
) -> Result<(), ServiceError> {
    let self_signing = check_identity(user, keys)?;
    if !store
        .set_identity(user, keys, crate::clock::now_ms())
        .await?
    {
        return Err(ServiceError::Conflict(
            "your account has an identity already; a new master key is an identity reset \
             (POST /v1/me/identity/reset with your password)"
                .into(),
        ));
    }
    for device in store.devices(&[user], crate::clock::now_ms()).await? {
        if let Some(signature) = &device.cross_signature
            && !signs_device(&self_signing, user, &device, signature)
        {
            store.sign_device(user, device.id, None).await?;
        }
    }
    Ok(())
}

/// Replaces `user`'s identity with a new one (the caller checked the password): every device
/// signature and the whole key backup go with the old identity.
///
/// # Errors
/// A malformed key or a signature that does not check.
pub async fn reset_identity(
    store: &dyn Store,
    user: UserId,
    keys: &CrossSigningKeys,
) -> Result<(), ServiceError> {
    check_identity(user, keys)?;
    Ok(store
        .reset_identity(user, keys, crate::clock::now_ms())
        .await?)
}

/// Stores the signature of one of `user`'s devices by the current self-signing key.
///
/// # Errors
/// No identity yet; not one of `user`'s devices; a signature the self-signing key did not
/// make over that device's keys.
pub async fn sign_device(
    store: &dyn Store,
    user: UserId,
    device: DeviceId,
    signature: &str,
) -> Result<(), ServiceError> {
    let identity = store.identity(user).await?.ok_or(ServiceError::Denied {
        code: codes::NO_IDENTITY,
        detail: "publish your identity before signing devices".into(),
    })?;
    well_formed_signature("signature", signature)?;
    let self_signing = check_identity(user, &identity)?;
    let record = store
        .devices(&[user], crate::clock::now_ms())
        .await?
        .into_iter()
        .find(|d| d.id == device)
        .ok_or(ServiceError::NotFound("you have no such device"))?;
    if !signs_device(&self_signing, user, &record, signature) {
        return Err(ServiceError::BadSignature(
            "the signature is not your self-signing key's over this device's identity keys".into(),
        ));
    }
    if store.sign_device(user, device, Some(signature)).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("you have no such device"))
    }
}

/// Refuses a device its user's current identity has not signed: only approved devices change
/// the backup. The signature is checked here, so one left over from an earlier self-signing
/// key (a rotation or reset that raced it) grants nothing.
///
/// # Errors
/// [`ServiceError::Denied`] with `not_approved`.
pub async fn require_approved(
    store: &dyn Store,
    user: UserId,
    device: DeviceId,
) -> Result<(), ServiceError> {
    let self_signing = match store.identity(user).await? {
        Some(identity) => check_identity(user, &identity).ok(),
        None => None,
    };
    let signed = match self_signing {
        Some(self_signing) => store
            .devices(&[user], crate::clock::now_ms())
            .await?
            .into_iter()
            .find(|d| d.id == device)
            .is_some_and(|d| {
                d.cross_signature
                    .as_deref()
                    .is_some_and(|signature| signs_device(&self_signing, user, &d, signature))
            }),
        None => false,
    };
    if signed {
        Ok(())
    } else {
        Err(ServiceError::Denied {
            code: codes::NOT_APPROVED,
            detail: "only a device your identity signed changes the key backup; approve this \
                     device first"
                .into(),
        })
    }
}

/// Stores or replaces one of `user`'s backup items.
///
/// # Errors
/// A bad name, data over the size limit, or the user keeps the most items already.
pub async fn put_backup_item(
    store: &dyn Store,
    user: UserId,
    item: &BackupItem,
) -> Result<(), ServiceError> {
    check_backup_name("a backup item's name", &item.name)?;
    if item.data.len() > BACKUP_ITEM_MAX || !item.data.chars().all(|c| matches!(c, ' '..='~')) {
        return Err(ServiceError::Invalid(format!(
            "a backup item's data is printable ASCII, at most {BACKUP_ITEM_MAX} bytes"
        )));
    }
    match store
        .put_backup_item(user, item, crate::clock::now_ms())
        .await
    {
        Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(format!(
            "a user keeps at most {BACKUP_ITEMS_MAX} backup items"
        ))),
        other => Ok(other?),
    }
}

/// Checks a backup item's name (`what` says which): 1 to 128 printable ASCII characters.
///
/// # Errors
/// [`ServiceError::Invalid`] naming `what`.
pub fn check_backup_name(what: &str, name: &str) -> Result<(), ServiceError> {
    if name.is_empty()
        || name.len() > BACKUP_NAME_MAX
        || !name.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ServiceError::Invalid(format!(
            "{what} has 1 to {BACKUP_NAME_MAX} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Checks that the master key signed the self-signing key for `user`; returns the
/// self-signing key.
///
/// # Errors
/// [`ServiceError::Invalid`] for a key that is not 32 bytes of base64;
/// [`ServiceError::BadSignature`] for one that is no Ed25519 key, or a signature that does not
/// verify.
pub fn check_identity(user: UserId, keys: &CrossSigningKeys) -> Result<VerifyingKey, ServiceError> {
    let master = public_key("master_key", &keys.master_key)?;
    let self_signing = public_key("self_signing_key", &keys.self_signing_key)?;
    well_formed_signature(
        "signature (the master key's over the self-signing key)",
        &keys.signature,
    )?;
    let message =
        CrossSigningKeys::self_signing_message(user, &keys.master_key, &keys.self_signing_key);
    if verifies(&master, &message, &keys.signature) {
        Ok(self_signing)
    } else {
        Err(ServiceError::BadSignature(
            "signature must be the master key's over the self-signing key".into(),
        ))
    }
}

/// Whether `signature` is the self-signing key's over `device`'s identity keys.
fn signs_device(
    self_signing: &VerifyingKey,
    user: UserId,
    device: &DeviceRecord,
    signature: &str,
) -> bool {
    device.identity_keys.as_ref().is_some_and(|(keys, _)| {
        let message =
            CrossSigningKeys::device_message(user, device.id, &keys.curve25519, &keys.ed25519);
        verifies(self_signing, &message, signature)
    })
}

/// An Ed25519 public key from unpadded base64: `Invalid` naming `field` if it is not 32
/// bytes of it, `BadSignature` if those are not a key.
fn public_key(field: &str, value: &str) -> Result<VerifyingKey, ServiceError> {
    let bytes = decode::<32>(value).ok_or_else(|| {
        ServiceError::Invalid(format!(
            "{field} must be an Ed25519 public key: 32 bytes in unpadded standard base64"
        ))
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| ServiceError::BadSignature(format!("{field} is not an Ed25519 public key")))
}

/// Refuses (400) a signature that is not 64 bytes of unpadded base64: malformed, not merely
/// made by another key (that is 422 `bad_signature`).
fn well_formed_signature(field: &str, signature: &str) -> Result<(), ServiceError> {
    match decode::<64>(signature) {
        Some(_) => Ok(()),
        None => Err(ServiceError::Invalid(format!(
            "{field} must be 64 bytes in unpadded standard base64"
        ))),
    }
}

/// Whether `signature` (unpadded base64) is `key`'s signature of `message`.
fn verifies(key: &VerifyingKey, message: &str, signature: &str) -> bool {
    decode::<64>(signature).is_some_and(|bytes| {
        key.verify_strict(message.as_bytes(), &Signature::from_bytes(&bytes))
            .is_ok()
    })
}

/// Unpadded base64 of exactly `N` bytes (the length is checked before decoding).
fn decode<const N: usize>(value: &str) -> Option<[u8; N]> {
    if value.len() != (N * 4).div_ceil(3) {
        return None;
    }
    STANDARD_NO_PAD.decode(value).ok()?.try_into().ok()
}
