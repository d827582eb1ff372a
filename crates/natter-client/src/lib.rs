//! The Natter client library: typed access to a `natterd` server.
//!
//! [`Client`] is anonymous (register, log in); logging in gives a [`Session`], which carries
//! the device's bearer token and offers everything else. Every error the server sends arrives
//! as [`ClientError::Api`] with its RFC 9457 problem document.
//!
//! ```no_run
//! # async fn demo() -> Result<(), natter_client::ClientError> {
//! let client = natter_client::Client::new("http://127.0.0.1:8080")?;
//! client.register("alice", "correct horse", None).await?;
//! let alice = client.login("alice", "correct horse", "laptop").await?;
//! let bob = alice.lookup("bob").await?;
//! alice.request_connection(bob.user_id, None).await?;
//! # Ok(()) }
//! ```
//!
//! [`Session::connect`] opens the real-time [`Connection`]; [`Dedup`] shows each message once.
//!
//! [`Device`] is what applications use: a logged-in device with end-to-end encryption
//! (natter-crypto: Olm between devices, Megolm per conversation), a local SQLite store
//! (messages with full-text search, cursors, block list, encrypted key material) and a queue
//! that holds sends, read cursors and blocks while the server is unreachable.
//!
//! Layout:
//! - [`session`](Session), [`ws`](Connection): the typed REST and WebSocket client.
//! - `device`: [`Device`] and its local operations.
//! - `e2e`: key publishing, room key sharing and decryption.
//! - `link`: the connection loop ([`Device::sync`], [`Device::run`]) with resends and backoff.
//! - `store`: the local SQLite store.

mod device;
mod e2e;
mod error;
mod link;
mod session;
mod store;
mod ws;

pub use device::Device;
pub use error::ClientError;
pub use link::{Event, SyncReport};
pub use natter_crypto::UnableToDecrypt;
pub use session::Session;
pub use store::{Queued, StoredMessage};
pub use ws::{Closed, Connection, Dedup};

use natter_proto::UserId;
use natter_proto::accounts::{
    CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, SessionResponse,
};
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An anonymous connection to a server: registration and login.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client for the server at `base_url` (such as `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// The URL does not start with `http://` or `https://`, or the HTTP client cannot start.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("natter-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Registers a user.
    ///
    /// # Errors
    /// `invalid_request` for a bad username or password, `conflict` if the username is taken.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<UserId, ClientError> {
        let request = CreateAccountRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            display_name: display_name.map(str::to_owned),
        };
        let created: CreateAccountResponse = self
            .send(self.request(Method::POST, "/v1/accounts").json(&request))
            .await?;
        Ok(created.user_id)
    }

    /// Logs in, registering a new device, and returns its session.
    ///
    /// # Errors
    /// `unauthorized` for a wrong username or password.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> Result<Session, ClientError> {
        let request = CreateSessionRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_name: device_name.to_owned(),
        };
        let session: SessionResponse = self
            .send(self.request(Method::POST, "/v1/sessions").json(&request))
            .await?;
        Ok(Session::from_login(self.clone(), session))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = checked(request).await?;
        response.json().await.map_err(ClientError::Http)
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(request.json(body)).await
    }
}

/// Sends a request and turns a non-2xx answer into [`ClientError::Api`].
async fn checked(request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
    let response = request.send().await.map_err(ClientError::Http)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.bytes().await.map_err(ClientError::Http)?;
    Err(match serde_json::from_slice(&body) {
        Ok(problem) => ClientError::Api(Box::new(problem)),
        Err(_) => ClientError::UnexpectedStatus(status.as_u16()),
    })
}
