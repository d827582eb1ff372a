//! An authenticated device: everything but registration and login.

use std::sync::Arc;

use natter_proto::accounts::{
    MeResponse, Profile, SessionResponse, UpdateProfileRequest, UserLookup,
};
use natter_proto::connections::{ConnectionStatus, ConnectionsResponse};
use natter_proto::conversations::{
    AddMembersRequest, ConversationDetails, ConversationSummary, ConversationsResponse,
    CreateDirectRequest, CreateRoomRequest, MessageReceipts, MessagesResponse, UndeliveredResponse,
};
use natter_proto::ws::Message;
use natter_proto::{ConversationId, DeviceId, UserId};
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;

use crate::{Client, ClientError};

mod keys;

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
    /// Whether this device logged out, shared by the session's clones. Every request holds it
    /// for reading while in flight, so logging out (which writes it) waits for them, and no
    /// request starts after the token is revoked.
    logged_out: Arc<RwLock<bool>>,
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
            logged_out: Arc::default(),
        }
    }

    /// Resumes a session saved earlier (token, user and device ids).
    pub fn resume(client: Client, token: String, user_id: UserId, device_id: DeviceId) -> Self {
        Self {
            client,
            token,
            user_id,
            device_id,
            logged_out: Arc::default(),
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

    /// The client this session talks through (which node it reaches now: [`Client::base_url`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, path).bearer_auth(&self.token)
    }

    /// One of the seed's connection changes: `method` on this user's side of the connection
    /// with `peer`, plus `action` (`/request/true`, `/block/false`, ...), with `If-Match` when
    /// a version is given.
    async fn change_connection(
        &self,
        method: Method,
        peer: UserId,
        action: &str,
        if_match: Option<i64>,
    ) -> Result<ConnectionStatus, ClientError> {
        let path = format!("/connection/user/{}/recipient/{peer}{action}", self.user_id);
        let request = self.request(method, &path);
        let request = match if_match {
            Some(version) => request.header(reqwest::header::IF_MATCH, format!("\"{version}\"")),
            None => request,
        };
        self.send(request).await
    }

    async fn no_content(&self, request: RequestBuilder) -> Result<(), ClientError> {
        self.checked(request).await.map(drop)
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.checked(request).await?;
        response.json().await.map_err(ClientError::Http)
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(request.json(body)).await
    }

    /// Sends a request unless this device logged out, holding off a logout until it is answered.
    async fn checked(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let logged_out = self.logged_out.read().await;
        if *logged_out {
            return Err(ClientError::LoggedOut);
        }
        self.client.checked(request).await
    }

    /// Opens the real-time connection as this device, on the node the server's gateway
    /// assigns (or, when that node cannot be reached, on the next node it listed).
    ///
    /// # Errors
    /// No node can be reached, or the server refuses the token (401).
    pub async fn connect(&self) -> Result<crate::Connection, ClientError> {
        if *self.logged_out.read().await {
            return Err(ClientError::LoggedOut);
        }
        let mut unreachable = None;
        for url in self.client.gateway().await? {
            match crate::Connection::open(&url, &self.token).await {
                Err(error) if error.is_unreachable() => unreachable = Some(error),
                opened => return opened,
            }
        }
        Err(unreachable.expect("the gateway names at least one node"))
    }

    /// Opens the real-time connection on the current node itself, without asking the
    /// gateway (to reach one particular node of a cluster).
    ///
    /// # Errors
    /// The node cannot be reached, or refuses the token (401).
    pub async fn connect_direct(&self) -> Result<crate::Connection, ClientError> {
        crate::Connection::open(&crate::ws_url(&self.client.base_url()), &self.token).await
    }

    /// Logs this device out; the token stops working and the device's keys are removed.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn logout(self) -> Result<(), ClientError> {
        // Waits for the requests in flight; the ones asked for from now on are refused here
        // rather than sent with a token the server no longer knows.
        let mut logged_out = self.logged_out.write().await;
        if *logged_out {
            return Err(ClientError::LoggedOut);
        }
        let request = self.request(Method::DELETE, "/v1/sessions/current");
        self.client.checked(request).await?;
        *logged_out = true;
        Ok(())
    }

    /// Who this session belongs to.
    ///
    /// # Errors
    /// `unauthorized` if the token expired or was revoked.
    pub async fn me(&self) -> Result<MeResponse, ClientError> {
        self.send(self.request(Method::GET, "/v1/me")).await
    }

    /// Changes this user's display name and/or avatar URL.
    ///
    /// # Errors
    /// `invalid_request` for a bad name or URL.
    pub async fn update_profile(
        &self,
        update: &UpdateProfileRequest,
    ) -> Result<Profile, ClientError> {
        self.send_json(self.request(Method::PATCH, "/v1/me/profile"), update)
            .await
    }

    /// A user's profile (this user's own, or a connection's).
    ///
    /// # Errors
    /// `not_found` when not connected.
    pub async fn profile(&self, user: UserId) -> Result<Profile, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/users/{user}/profile")))
            .await
    }

    /// Finds a user by username.
    ///
    /// # Errors
    /// `not_found` when nobody has that username.
    pub async fn lookup(&self, username: &str) -> Result<UserLookup, ClientError> {
        let path = format!("/v1/users/by-username/{}", path_segment(username));
        self.send(self.request(Method::GET, &path)).await
    }

    /// This user's connections, pending requests and blocks.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn connections(&self) -> Result<ConnectionsResponse, ClientError> {
        self.send(self.request(Method::GET, &format!("/connection/user/{}", self.user_id)))
            .await
    }

    /// This user's side of the connection with `peer`, with its version (even with no relationship).
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn connection(&self, peer: UserId) -> Result<ConnectionStatus, ClientError> {
        let path = format!("/connection/user/{}/recipient/{peer}", self.user_id);
        self.send(self.request(Method::GET, &path)).await
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
        self.change_connection(Method::POST, peer, "", if_match)
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
        self.change_connection(Method::PUT, peer, &format!("/request/{accept}"), if_match)
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
        self.change_connection(Method::PUT, peer, &format!("/block/{block}"), if_match)
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
        self.change_connection(Method::DELETE, peer, "", if_match)
            .await
    }
}

/// Conversations and history.
impl Session {
    /// Opens (or finds) the direct conversation with a connection.
    ///
    /// # Errors
    /// `not_connected`.
    pub async fn open_direct(&self, peer: UserId) -> Result<ConversationDetails, ClientError> {
        let body = CreateDirectRequest { user_id: peer };
        self.send_json(
            self.request(Method::POST, "/v1/conversations/direct"),
            &body,
        )
        .await
    }

    /// Creates a room with some of this user's connections.
    ///
    /// # Errors
    /// `invalid_request`, `not_connected`, `room_full`.
    pub async fn create_room(
        &self,
        name: &str,
        members: &[UserId],
    ) -> Result<ConversationDetails, ClientError> {
        let body = CreateRoomRequest {
            name: name.to_owned(),
            members: members.to_vec(),
        };
        self.send_json(self.request(Method::POST, "/v1/conversations/rooms"), &body)
            .await
    }

    /// This user's conversations with unread counts.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, ClientError> {
        let list: ConversationsResponse = self
            .send(self.request(Method::GET, "/v1/conversations"))
            .await?;
        Ok(list.conversations)
    }

    /// A conversation and its members.
    ///
    /// # Errors
    /// `not_found` for non-members.
    pub async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<ConversationDetails, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/conversations/{id}")))
            .await
    }

    /// Adds connections to a room this user owns.
    ///
    /// # Errors
    /// `not_owner`, `not_connected`, `room_full`.
    pub async fn add_members(
        &self,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<ConversationDetails, ClientError> {
        let body = AddMembersRequest {
            user_ids: users.to_vec(),
        };
        self.send_json(
            self.request(Method::POST, &format!("/v1/conversations/{id}/members")),
            &body,
        )
        .await
    }

    /// Removes a member from a room this user owns, or leaves when `user` is this user.
    ///
    /// # Errors
    /// `not_owner`, `not_found`.
    pub async fn remove_member(&self, id: ConversationId, user: UserId) -> Result<(), ClientError> {
        self.no_content(self.request(
            Method::DELETE,
            &format!("/v1/conversations/{id}/members/{user}"),
        ))
        .await
    }

    /// A page of history, oldest first: after `after`, or else the newest before `before`.
    ///
    /// # Errors
    /// `not_found` for users who were never members.
    pub async fn history(
        &self,
        id: ConversationId,
        after: Option<i64>,
        before: Option<i64>,
        limit: Option<usize>,
    ) -> Result<Vec<Message>, ClientError> {
        let mut query = Vec::new();
        query.extend(after.map(|v| ("after", v.to_string())));
        query.extend(before.map(|v| ("before", v.to_string())));
        query.extend(limit.map(|v| ("limit", v.to_string())));
        let request = self
            .request(Method::GET, &format!("/v1/conversations/{id}/messages"))
            .query(&query);
        let page: MessagesResponse = self.send(request).await?;
        Ok(page.messages)
    }

    /// How far one message got.
    ///
    /// # Errors
    /// `not_found`.
    pub async fn receipts(
        &self,
        id: ConversationId,
        seq: i64,
    ) -> Result<MessageReceipts, ClientError> {
        self.send(self.request(
            Method::GET,
            &format!("/v1/conversations/{id}/messages/{seq}/receipts"),
        ))
        .await
    }

    /// What this user sent, newest first.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn sent(&self, limit: Option<usize>) -> Result<Vec<Message>, ClientError> {
        let query: Vec<(&str, String)> = limit
            .map(|v| ("limit", v.to_string()))
            .into_iter()
            .collect();
        let page: MessagesResponse = self
            .send(self.request(Method::GET, "/v1/messages/sent").query(&query))
            .await?;
        Ok(page.messages)
    }

    /// Everything a sync would send this device (messages past its delivered cursors, not its
    /// own), every page of it.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn undelivered(&self) -> Result<Vec<Message>, ClientError> {
        let (mut messages, mut after) = (Vec::new(), None);
        loop {
            let page = self.undelivered_page(after.as_deref(), Some(500)).await?;
            messages.extend(page.messages);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(messages),
            }
        }
    }

    /// One page of [`Self::undelivered`]: at most `limit`, after the cursor `after` (a
    /// previous page's `next`).
    ///
    /// # Errors
    /// The server cannot be reached, or refuses the cursor or limit.
    pub async fn undelivered_page(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<UndeliveredResponse, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.send(
            self.request(Method::GET, "/v1/messages/undelivered")
                .query(&query),
        )
        .await
    }
}

/// `text` as one URL path segment: every byte but unreserved ones (RFC 3986) percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
