//! Device keys for end-to-end encryption (Olm identity keys, one-time keys, fallback keys).
//!
//! The server stores keys as opaque strings. It checks only that each is unpadded standard
//! base64 of the right length: 32 bytes for a key, 64 for a signature.

use serde::{Deserialize, Serialize};

use crate::DeviceId;

/// A device's long-lived identity keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityKeys {
    /// The Curve25519 identity key (Olm), unpadded base64.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$")
    )]
    pub curve25519: String,
    /// The Ed25519 signing key, unpadded base64.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$")
    )]
    pub ed25519: String,
    /// The Ed25519 signature, by `ed25519`, of [`IdentityKeys::signed_message`], unpadded base64.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9+/]{85}[AQgw]$"))]
    pub signature: String,
}

impl IdentityKeys {
    /// The text a device signs to bind its identity keys to its user and device ids.
    pub fn signed_message(
        user_id: crate::UserId,
        device_id: DeviceId,
        curve25519: &str,
        ed25519: &str,
    ) -> String {
        format!("natter-device-keys:v1:{user_id}:{device_id}:{curve25519}:{ed25519}")
    }
}

/// A one-time (or fallback) Curve25519 key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OneTimeKey {
    /// The key's id, unique per device: 1 to 64 printable ASCII characters.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[!-~]{1,64}$"))]
    pub key_id: String,
    /// The Curve25519 public key, unpadded base64.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$")
    )]
    pub key: String,
}

/// `POST /v1/devices/current/keys`: publish this device's keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadKeysRequest {
    /// Identity keys; uploading different ones rotates them.
    #[serde(default)]
    pub identity_keys: Option<IdentityKeys>,
    /// New one-time keys (at most 100 at a time, 200 unclaimed in all).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub one_time_keys: Vec<OneTimeKey>,
    /// A fallback key, handed out when one-time keys run out; replaces the previous one.
    #[serde(default)]
    pub fallback_key: Option<OneTimeKey>,
}

/// How many unclaimed one-time keys the device has, so it knows when to upload more.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCountResponse {
    /// Unclaimed one-time keys stored for this device.
    pub one_time_key_count: u32,
    /// Whether a fallback key is stored.
    pub has_fallback_key: bool,
}

/// A device's published identity keys, with when they were uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedIdentityKeys {
    /// The keys.
    #[serde(flatten)]
    pub keys: IdentityKeys,
    /// When they were uploaded (ms since the Unix epoch); newer keys replace older ones.
    pub created_at: i64,
}

/// One device of a user, with its public identity keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// The device's id.
    pub device_id: DeviceId,
    /// The name given at login.
    pub name: String,
    /// When the device logged in (ms since the Unix epoch).
    pub created_at: i64,
    /// The device's identity keys, once it has uploaded them.
    pub identity_keys: Option<PublishedIdentityKeys>,
    /// The signature of the device by its user's self-signing key over
    /// [`CrossSigningKeys::device_message`], once one of the user's verified devices signed
    /// it. Clients trust a device only with a valid one; the server cannot make it.
    #[serde(default)]
    pub cross_signature: Option<String>,
}

/// A device list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicesResponse {
    /// The devices, oldest first.
    pub devices: Vec<DeviceInfo>,
    /// The user's cross-signing identity, once their first device published it.
    #[serde(default)]
    pub identity: Option<CrossSigningKeys>,
}

/// `POST /v1/devices/query`: the device lists of several users in one request (a room's
/// members, before sending to it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicesQuery {
    /// The users: 1 to 1,000 of them.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub user_ids: Vec<crate::UserId>,
}

/// The answer to a [`DevicesQuery`]: the users the caller may see (itself, its connections and
/// fellow room members); the others are left out.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicesQueryResponse {
    /// One entry per user the caller may see, in no particular order.
    pub users: Vec<UserDevices>,
}

/// One user's device list in a [`DevicesQueryResponse`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserDevices {
    /// The user.
    pub user_id: crate::UserId,
    /// The devices and identity, as `GET /v1/users/{id}/devices` answers.
    #[serde(flatten)]
    pub list: DevicesResponse,
}

/// A user's cross-signing identity, public parts only: a long-term master key that signs a
/// self-signing key, which signs each of the user's devices. The private parts never reach
/// the server (except sealed with the user's recovery key, in the key backup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CrossSigningKeys {
    /// The master key (Ed25519), unpadded base64: what safety numbers are computed over.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$")
    )]
    pub master_key: String,
    /// The self-signing key (Ed25519), unpadded base64, which signs the user's devices.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]$")
    )]
    pub self_signing_key: String,
    /// The master key's signature over [`CrossSigningKeys::self_signing_message`], unpadded base64.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9+/]{85}[AQgw]$"))]
    pub signature: String,
}

impl CrossSigningKeys {
    /// The text the master key signs to bind the self-signing key to the user.
    pub fn self_signing_message(
        user_id: crate::UserId,
        master_key: &str,
        self_signing_key: &str,
    ) -> String {
        format!("natter-self-signing:v1:{user_id}:{master_key}:{self_signing_key}")
    }

    /// The text the self-signing key signs to vouch for one device's identity keys.
    pub fn device_message(
        user_id: crate::UserId,
        device_id: DeviceId,
        curve25519: &str,
        ed25519: &str,
    ) -> String {
        format!("natter-device-signature:v1:{user_id}:{device_id}:{curve25519}:{ed25519}")
    }
}

/// `PUT /v1/devices/{device_id}/signature`: one of the caller's devices, signed by the
/// caller's self-signing key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSignatureRequest {
    /// The signature over [`CrossSigningKeys::device_message`], unpadded base64.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9+/]{85}[AQgw]$"))]
    pub signature: String,
}

/// One item of a user's key backup: opaque data the client sealed (the server never reads it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupItem {
    /// The item's name, chosen by the client (1 to 128 printable ASCII characters).
    pub name: String,
    /// The sealed data (printable ASCII, at most 16 KiB).
    pub data: String,
}

/// `POST /v1/me/identity/reset`: replace the caller's identity with a new one (a new master
/// key); every device signature and the key backup go with the old one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetIdentityRequest {
    /// The new identity.
    pub identity: CrossSigningKeys,
    /// The account's password, asked again: a reset is what a stolen login would want.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub password: String,
}

/// `PUT /v1/me/backup/{name}`: store (or replace) one backup item.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutBackupItemRequest {
    /// The sealed data: printable ASCII (the client's base64), at most 16 KiB.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[ -~]*$", max_length = 16384))]
    pub data: String,
}

/// A page of the caller's backup items, in name order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupItemsResponse {
    /// The items after the requested name.
    pub items: Vec<BackupItem>,
}

/// A claimed key for opening an Olm session with a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedKey {
    /// The device the key belongs to.
    pub device_id: DeviceId,
    /// The key's id.
    pub key_id: String,
    /// The Curve25519 public key.
    pub key: String,
    /// True when one-time keys ran out and this is the device's (reusable) fallback key.
    pub fallback: bool,
    /// When the key was uploaded (ms since the Unix epoch).
    pub created_at: i64,
}
