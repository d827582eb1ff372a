//! An authenticated device: everything but registration and login.

use natter_proto::accounts::{
    MeResponse, Profile, SessionResponse, UpdateProfileRequest, UserLookup,
};
use natter_proto::connections::{ConnectionStatus, ConnectionsResponse};
use natter_proto::keys::{
    ClaimedKey, DeviceInfo, DevicesResponse, KeyCountResponse, UploadKeysRequest,
};
use natter_proto::{DeviceId, UserId};
use reqwest::{Method, RequestBuilder};

use crate::{Client, ClientError, checked};

/// A logged-in device.
///
/// # Security
/// Holds the device's bearer token; its `Debug` does not show it.
#[derive(Clone)]
pub struct Session {
    client: Client,
    token: String,
    user_id: UserId,
    device_id: DeviceId,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn from_login(client: Client, login: SessionResponse) -> Self {
        Self {
            client,
            token: login.token,
            user_id: login.user_id,
            device_id: login.device_id,
        }
    }

    /// Resumes a session saved earlier (token, user and device ids).
    pub fn resume(client: Client, token: String, user_id: UserId, device_id: DeviceId) -> Self {
        Self {
            client,
            token,
            user_id,
            device_id,
        }
    }

    /// The logged-in user.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The bearer token, to save for [`Session::resume`].
    pub fn token(&self) -> &str {
        &self.token
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, path).bearer_auth(&self.token)
    }

    fn versioned(&self, method: Method, path: &str, if_match: Option<i64>) -> RequestBuilder {
        let request = self.request(method, path);
        match if_match {
            Some(version) => request.header(reqwest::header::IF_MATCH, format!("\"{version}\"")),
            None => request,
        }
    }

    async fn no_content(&self, request: RequestBuilder) -> Result<(), ClientError> {
        checked(request).await.map(drop)
    }

    /// Logs this device out; the token stops working and the device's keys are removed.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn logout(self) -> Result<(), ClientError> {
        self.no_content(self.request(Method::DELETE, "/v1/sessions/current"))
            .await
    }

    /// Who this session belongs to.
    ///
    /// # Errors
    /// `unauthorized` if the token expired or was revoked.
    pub async fn me(&self) -> Result<MeResponse, ClientError> {
        self.client.send(self.request(Method::GET, "/v1/me")).await
    }

    /// Changes this user's display name and/or avatar URL.
    ///
    /// # Errors
    /// `invalid_request` for a bad name or URL.
    pub async fn update_profile(
        &self,
        update: &UpdateProfileRequest,
    ) -> Result<Profile, ClientError> {
        self.client
            .send_json(self.request(Method::PATCH, "/v1/me/profile"), update)
            .await
    }

    /// A user's profile (this user's own, or a connection's).
    ///
    /// # Errors
    /// `not_found` when not connected.
    pub async fn profile(&self, user: UserId) -> Result<Profile, ClientError> {
        self.client
            .send(self.request(Method::GET, &format!("/v1/users/{user}/profile")))
            .await
    }

    /// Finds a user by username.
    ///
    /// # Errors
    /// `not_found` when nobody has that username.
    pub async fn lookup(&self, username: &str) -> Result<UserLookup, ClientError> {
        let path = format!("/v1/users/by-username/{}", urlencode(username));
        self.client.send(self.request(Method::GET, &path)).await
    }

    /// Publishes this device's keys; returns its stock of one-time keys.
    ///
    /// # Errors
    /// `invalid_request` for a malformed key, `conflict` for a reused key id or too many keys.
    pub async fn upload_keys(
        &self,
        keys: &UploadKeysRequest,
    ) -> Result<KeyCountResponse, ClientError> {
        self.client
            .send_json(self.request(Method::POST, "/v1/devices/current/keys"), keys)
            .await
    }

    /// This device's stock of unclaimed one-time keys.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn key_counts(&self) -> Result<KeyCountResponse, ClientError> {
        self.client
            .send(self.request(Method::GET, "/v1/devices/current/keys"))
            .await
    }

    /// A user's devices and identity keys (this user's own, or a connection's).
    ///
    /// # Errors
    /// `not_found` when not connected.
    pub async fn devices(&self, user: UserId) -> Result<Vec<DeviceInfo>, ClientError> {
        let list: DevicesResponse = self
            .client
            .send(self.request(Method::GET, &format!("/v1/users/{user}/devices")))
            .await?;
        Ok(list.devices)
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
        self.client.send(self.request(Method::POST, &path)).await
    }

    /// This user's connections, pending requests and blocks.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn connections(&self) -> Result<ConnectionsResponse, ClientError> {
        self.client
            .send(self.request(Method::GET, &format!("/connection/user/{}", self.user_id)))
            .await
    }

    /// This user's side of the connection with `peer`, with its version (even with no relationship).
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn connection(&self, peer: UserId) -> Result<ConnectionStatus, ClientError> {
        let path = format!("/connection/user/{}/recipient/{peer}", self.user_id);
        self.client.send(self.request(Method::GET, &path)).await
    }

    /// Asks `peer` to connect (accepting, if they asked first). `if_match` is the version of
    /// this user's side last seen; a stale one is refused with `version_mismatch`.
    ///
    /// # Errors
    /// `blocked_by_you`, `version_mismatch`, `not_found`.
    pub async fn request_connection(
        &self,
        peer: UserId,
        if_match: Option<i64>,
    ) -> Result<ConnectionStatus, ClientError> {
        let path = format!("/connection/user/{}/recipient/{peer}", self.user_id);
        self.client
            .send(self.versioned(Method::POST, &path, if_match))
            .await
    }

    /// Accepts or rejects `peer`'s pending request.
    ///
    /// # Errors
    /// `no_pending_request`, `version_mismatch`.
    pub async fn answer_request(
        &self,
        peer: UserId,
        accept: bool,
        if_match: Option<i64>,
    ) -> Result<ConnectionStatus, ClientError> {
        let path = format!(
            "/connection/user/{}/recipient/{peer}/request/{accept}",
            self.user_id
        );
        self.client
            .send(self.versioned(Method::PUT, &path, if_match))
            .await
    }

    /// Blocks or unblocks `peer`.
    ///
    /// # Errors
    /// `version_mismatch`.
    pub async fn block(
        &self,
        peer: UserId,
        block: bool,
        if_match: Option<i64>,
    ) -> Result<ConnectionStatus, ClientError> {
        let path = format!(
            "/connection/user/{}/recipient/{peer}/block/{block}",
            self.user_id
        );
        self.client
            .send(self.versioned(Method::PUT, &path, if_match))
            .await
    }

    /// Removes the connection with `peer` (or withdraws or declines a request).
    ///
    /// # Errors
    /// `blocked_by_you`, `version_mismatch`.
    pub async fn remove_connection(
        &self,
        peer: UserId,
        if_match: Option<i64>,
    ) -> Result<ConnectionStatus, ClientError> {
        let path = format!("/connection/user/{}/recipient/{peer}", self.user_id);
        self.client
            .send(self.versioned(Method::DELETE, &path, if_match))
            .await
    }
}

/// Percent-encodes a path segment.
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
