//! A session's keys: this device's one-time keys, users' devices and identities, key claims,
//! device signatures and the key backup.

use natter_proto::keys::{
    BackupItem, BackupItemsResponse, ClaimedKey, CrossSigningKeys, DeviceInfo,
    DeviceSignatureRequest, DevicesQuery, DevicesQueryResponse, DevicesResponse, KeyCountResponse,
    PutBackupItemRequest, ResetIdentityRequest, UploadKeysRequest, UserDevices,
};
use natter_proto::limits::BACKUP_NAME_MAX;
use natter_proto::{DeviceId, UserId};
use reqwest::Method;

use super::{Session, path_segment};
use crate::ClientError;

impl Session {
    /// Publishes this device's keys; returns its stock of one-time keys.
    ///
    /// # Errors
    /// `invalid_request` for a malformed key, `conflict` for a reused key id or too many keys.
    pub async fn upload_keys(
        &self,
        keys: &UploadKeysRequest,
    ) -> Result<KeyCountResponse, ClientError> {
        self.send_json(self.request(Method::POST, "/v1/devices/current/keys"), keys)
            .await
    }

    /// This device's stock of unclaimed one-time keys.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn key_counts(&self) -> Result<KeyCountResponse, ClientError> {
        self.send(self.request(Method::GET, "/v1/devices/current/keys"))
            .await
    }

    /// A user's devices and identity keys (this user's own, or a connection's).
    ///
    /// # Errors
    /// `not_found` when not connected.
    pub async fn devices(&self, user: UserId) -> Result<Vec<DeviceInfo>, ClientError> {
        Ok(self.devices_and_identity(user).await?.devices)
    }

    /// A user's devices with their identity keys and the user's cross-signing identity, as the
    /// server claims them: check them before trusting any (natter-crypto's `UserIdentity`).
    ///
    /// # Errors
    /// `not_found` when not connected.
    pub async fn devices_and_identity(&self, user: UserId) -> Result<DevicesResponse, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/users/{user}/devices")))
            .await
    }

    /// The device lists of several users in one request: those this user may see (the others
    /// are left out).
    ///
    /// # Errors
    /// `invalid_request` for no users or more than 1,000.
    pub async fn query_devices(&self, users: &[UserId]) -> Result<Vec<UserDevices>, ClientError> {
        let body = DevicesQuery {
            user_ids: users.to_vec(),
        };
        let answer: DevicesQueryResponse = self
            .send(self.request(Method::POST, "/v1/devices/query").json(&body))
            .await?;
        Ok(answer.users)
    }

    /// Publishes this user's cross-signing identity, or a new self-signing key certified by
    /// the same master key.
    ///
    /// # Errors
    /// `invalid_request` for malformed keys or a signature that does not check; `conflict` for
    /// another master key (that is [`Session::reset_identity`]).
    pub async fn publish_identity(&self, keys: &CrossSigningKeys) -> Result<(), ClientError> {
        self.no_content(self.request(Method::PUT, "/v1/me/identity").json(keys))
            .await
    }

    /// Replaces this user's identity with a new master key (the password asked again): every
    /// device signature and the key backup go with the old one.
    ///
    /// # Errors
    /// A wrong password (`wrong_password`), malformed keys, too many attempts.
    pub async fn reset_identity(
        &self,
        keys: &CrossSigningKeys,
        password: &str,
    ) -> Result<(), ClientError> {
        let body = ResetIdentityRequest {
            identity: keys.clone(),
            password: password.to_owned(),
        };
        self.no_content(
            self.request(Method::POST, "/v1/me/identity/reset")
                .json(&body),
        )
        .await
    }

    /// Stores the cross-signature of one of this user's devices.
    ///
    /// # Errors
    /// `not_found` when it is not this user's device.
    pub async fn sign_device(&self, device: DeviceId, signature: &str) -> Result<(), ClientError> {
        let body = DeviceSignatureRequest {
            signature: signature.to_owned(),
        };
        let path = format!("/v1/devices/{device}/signature");
        self.no_content(self.request(Method::PUT, &path).json(&body))
            .await
    }

    /// Stores (or replaces) one item of this user's key backup.
    ///
    /// # Errors
    /// `invalid_request` for a bad name or data, `conflict` when the backup is full.
    pub async fn put_backup_item(&self, item: &BackupItem) -> Result<(), ClientError> {
        let body = PutBackupItemRequest {
            data: item.data.clone(),
        };
        let path = format!("/v1/me/backup/{}", path_segment(&item.name));
        self.no_content(self.request(Method::PUT, &path).json(&body))
            .await
    }

    /// Every item of this user's key backup whose name sorts after `after`, in name order.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn backup_items(&self, after: &str) -> Result<Vec<BackupItem>, ClientError> {
        let mut items: Vec<BackupItem> = Vec::new();
        let mut after = after.to_owned();
        loop {
            let page: BackupItemsResponse = self
                .send(
                    self.request(Method::GET, "/v1/me/backup")
                        .query(&[("after", after.as_str())]),
                )
                .await?;
            let Some(last) = page.items.last() else {
                return Ok(items);
            };
            // Names only grow from page to page; a server that repeats itself is refused.
            if last.name <= after {
                return Err(ClientError::Protocol(
                    "the backup's pages did not move forward".into(),
                ));
            }
            after = last.name.clone();
            items.extend(page.items);
        }
    }

    /// One item of this user's key backup, by name: one request, whatever the backup holds.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn backup_item(&self, name: &str) -> Result<Option<BackupItem>, ClientError> {
        let page: BackupItemsResponse = self
            .send(
                self.request(Method::GET, "/v1/me/backup")
                    .query(&[("after", name_before(name).as_str()), ("limit", "1")]),
            )
            .await?;
        Ok(page.items.into_iter().find(|item| item.name == name))
    }

    /// Removes this user's whole key backup.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn delete_backup(&self) -> Result<(), ClientError> {
        self.no_content(self.request(Method::DELETE, "/v1/me/backup"))
            .await
    }

    /// Removes another device of this user.
    ///
    /// # Errors
    /// `not_found` when it is not this user's device.
    pub async fn delete_device(&self, device: DeviceId) -> Result<(), ClientError> {
        self.no_content(self.request(Method::DELETE, &format!("/v1/devices/{device}")))
            .await
    }

    /// Claims a one-time key (or the fallback key) of a connection's device.
    ///
    /// # Errors
    /// `not_found` when not connected or the device has no keys.
    pub async fn claim_key(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<ClaimedKey, ClientError> {
        let path = format!("/v1/users/{user}/devices/{device}/claim");
        self.send(self.request(Method::POST, &path)).await
    }
}

/// The greatest backup item name that sorts before `name` (names are 1 to 128 printable ASCII
/// characters, compared bytewise): `name` with its last character lowered by one and filled up
/// with `~`, or, when that character is the lowest (`!`), `name` without it.
fn name_before(name: &str) -> String {
    let mut before = name.to_owned();
    match before.pop() {
        Some('!') | None => before,
        Some(last) => {
            before.push(char::from(last as u8 - 1));
            let fill = BACKUP_NAME_MAX.saturating_sub(before.len());
            before.extend(std::iter::repeat_n('~', fill));
            before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_before;

    #[test]
    fn the_name_before_sorts_just_before() {
        assert_eq!(name_before("identity").len(), 128);
        assert!(name_before("identity").as_str() < "identity");
        assert!(name_before("identity").as_str() > "identitx~");
        assert_eq!(name_before("ab!"), "ab");
        assert!(name_before("room:a").as_str() < "room:a");
    }
}
