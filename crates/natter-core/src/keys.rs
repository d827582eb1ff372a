//! The key service: devices publish identity, one-time and fallback keys; connected users list
//! devices (one user's, or many at once) and claim one-time keys to open Olm sessions.
//!
//! Keys are opaque to the server: it checks only that each is unpadded standard base64 of the
//! right length, and never interprets them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use natter_proto::keys::{
    ClaimedKey, DeviceInfo, DevicesResponse, IdentityKeys, OneTimeKey, PublishedIdentityKeys,
    UploadKeysRequest, UserDevices,
};
use natter_proto::limits::{
    KEY_ID_MAX, ONE_TIME_KEYS_PER_UPLOAD, ONE_TIME_KEYS_STORED, PUBLIC_KEY_BYTES, ROOM_MEMBERS_MAX,
    SIGNATURE_BYTES,
};
use natter_proto::{DeviceId, UserId};

use crate::service_error::ServiceError;
use crate::store::{DeviceRecord, KeyCounts, KeyUpload, Store, StoreError};
use crate::visibility::can_see;

/// Stores keys uploaded by `device`.
///
/// # Errors
/// A key is malformed, a key id is reused for another key, or the device would hold too many.
pub async fn upload(
    store: &dyn Store,
    device: DeviceId,
    request: &UploadKeysRequest,
    now: i64,
) -> Result<KeyCounts, ServiceError> {
    if let Some(keys) = &request.identity_keys {
        check_identity_keys(keys)?;
    }
    if request.one_time_keys.len() > ONE_TIME_KEYS_PER_UPLOAD {
        return Err(ServiceError::Invalid(format!(
            "upload at most {ONE_TIME_KEYS_PER_UPLOAD} one-time keys at a time"
        )));
    }
    for key in request.one_time_keys.iter().chain(&request.fallback_key) {
        check_one_time_key(key)?;
    }
    let upload = KeyUpload {
        identity_keys: request.identity_keys.as_ref(),
        one_time_keys: &request.one_time_keys,
        fallback_key: request.fallback_key.as_ref(),
    };
    match store.upload_keys(device, &upload, now).await {
        Err(StoreError::Conflict("one-time key count")) => Err(ServiceError::Conflict(format!(
            "a device holds at most {ONE_TIME_KEYS_STORED} unclaimed one-time keys"
        ))),
        Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(
            "a one-time key id was already used for a different key".into(),
        )),
        other => Ok(other?),
    }
}

/// The devices of `target`, with identity keys, and `target`'s cross-signing identity, if
/// `viewer` may see them.
///
/// # Errors
/// Not found when `viewer` is not `target` and not connected.
pub async fn devices_of(
    store: &dyn Store,
    viewer: UserId,
    target: UserId,
) -> Result<DevicesResponse, ServiceError> {
    if !can_see(store, viewer, target).await? {
        return Err(ServiceError::NotFound(
            "no such user, or you are not connected",
        ));
    }
    let devices = store
        .devices(&[target], crate::clock::now_ms())
        .await?
        .into_iter()
        .map(device_info)
        .collect();
    let identity = store.identity(target).await?;
    Ok(DevicesResponse { devices, identity })
}

/// The device lists of those of `users` that `viewer` may see (itself, its connections, fellow
/// room members who did not block it), in one go.
///
/// # Errors
/// [`ServiceError::Invalid`] for an empty list or more than [`ROOM_MEMBERS_MAX`] users.
pub async fn devices_of_many(
    store: &dyn Store,
    viewer: UserId,
    users: &[UserId],
) -> Result<Vec<UserDevices>, ServiceError> {
    if users.is_empty() || users.len() > ROOM_MEMBERS_MAX {
        return Err(ServiceError::Invalid(format!(
            "user_ids lists 1 to {ROOM_MEMBERS_MAX} users"
        )));
    }
    let visible: HashSet<UserId> = store.visible_to(viewer).await?.into_iter().collect();
    let wanted: BTreeSet<UserId> = users
        .iter()
        .copied()
        .filter(|user| *user == viewer || visible.contains(user))
        .collect();
    let wanted: Vec<UserId> = wanted.into_iter().collect();
    let mut lists: BTreeMap<UserId, DevicesResponse> = wanted
        .iter()
        .map(|user| {
            let list = DevicesResponse {
                devices: Vec::new(),
                identity: None,
            };
            (*user, list)
        })
        .collect();
    for device in store.devices(&wanted, crate::clock::now_ms()).await? {
        if let Some(list) = lists.get_mut(&device.user_id) {
            list.devices.push(device_info(device));
        }
    }
    for (user, identity) in store.identities(&wanted).await? {
        if let Some(list) = lists.get_mut(&user) {
            list.identity = Some(identity);
        }
    }
    Ok(lists
        .into_iter()
        .map(|(user_id, list)| UserDevices { user_id, list })
        .collect())
}

/// Claims a one-time key (or the fallback key) of `target`'s `device`.
///
/// # Errors
/// Not found when not connected, when the device is not `target`'s, or when it has no keys.
pub async fn claim(
    store: &dyn Store,
    viewer: UserId,
    target: UserId,
    device: DeviceId,
) -> Result<ClaimedKey, ServiceError> {
    let devices = devices_of(store, viewer, target).await?.devices;
    if !devices.iter().any(|d| d.device_id == device) {
        return Err(ServiceError::NotFound("this user has no such device"));
    }
    let key = store
        .claim_key(device)
        .await?
        .ok_or(ServiceError::NotFound(
            "this device has no one-time or fallback keys left",
        ))?;
    Ok(ClaimedKey {
        device_id: device,
        key_id: key.key_id,
        key: key.key,
        fallback: key.fallback,
        created_at: key.created_at,
    })
}

/// A stored device as the API shows it.
pub fn device_info(device: DeviceRecord) -> DeviceInfo {
    DeviceInfo {
        device_id: device.id,
        name: device.name,
        created_at: device.created_at,
        identity_keys: device
            .identity_keys
            .map(|(keys, created_at)| PublishedIdentityKeys { keys, created_at }),
        cross_signature: device.cross_signature,
    }
}

/// Checks a device's identity keys: Curve25519 and Ed25519 keys and a signature of the right
/// sizes in unpadded standard base64.
///
/// # Errors
/// [`ServiceError::Invalid`] naming the field.
pub fn check_identity_keys(keys: &IdentityKeys) -> Result<(), ServiceError> {
    check_base64(
        "identity_keys.curve25519",
        &keys.curve25519,
        PUBLIC_KEY_BYTES,
    )?;
    check_base64("identity_keys.ed25519", &keys.ed25519, PUBLIC_KEY_BYTES)?;
    check_base64("identity_keys.signature", &keys.signature, SIGNATURE_BYTES)
}

/// Checks a one-time key: an id of 1 to [`KEY_ID_MAX`] printable ASCII characters and a
/// Curve25519 key in unpadded standard base64.
///
/// # Errors
/// [`ServiceError::Invalid`] saying which.
pub fn check_one_time_key(key: &OneTimeKey) -> Result<(), ServiceError> {
    if key.key_id.is_empty()
        || key.key_id.len() > KEY_ID_MAX
        || !key.key_id.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ServiceError::Invalid(format!(
            "a key id has 1 to {KEY_ID_MAX} printable ASCII characters"
        )));
    }
    check_base64("one-time key", &key.key, PUBLIC_KEY_BYTES)
}

/// Checks that `value` is unpadded standard base64 of `bytes` bytes; `Invalid` naming
/// `field` otherwise.
fn check_base64(field: &str, value: &str, bytes: usize) -> Result<(), ServiceError> {
    // Bound the work before decoding: unpadded base64 of n bytes is ceil(4n/3) characters.
    let valid = value.len() == (bytes * 4).div_ceil(3)
        && STANDARD_NO_PAD
            .decode(value)
            .is_ok_and(|decoded| decoded.len() == bytes);
    if valid {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{field} must be {bytes} bytes in unpadded standard base64"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_is_checked() {
        let key = STANDARD_NO_PAD.encode([7u8; 32]);
        assert!(check_base64("k", &key, 32).is_ok());
        assert!(check_base64("k", &format!("{key}="), 32).is_err());
        assert!(check_base64("k", &STANDARD_NO_PAD.encode([7u8; 31]), 32).is_err());
        assert!(check_base64("k", &"!".repeat(43), 32).is_err());
        assert!(check_base64("k", &STANDARD_NO_PAD.encode([1u8; 64]), 64).is_ok());
    }
}
