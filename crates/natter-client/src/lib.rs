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
//! [`Session::connect`] opens the real-time [`Connection`] on the node the gateway assigns;
//! [`Dedup`] shows each message once.
//!
//! [`Device`] is what applications use: a logged-in device with end-to-end encryption
//! (natter-crypto: Olm between devices, Megolm per conversation), a local SQLite store
//! (messages with full-text search, cursors, block list, key material) and a queue that holds
//! sends, read cursors and blocks while the server is unreachable.
//!
//! The store is encrypted at rest, value by value: a random data key, wrapped under an
//! Argon2id key from the passphrase given to [`Device::login`] and [`Device::open`], seals
//! every value (XChaCha20-Poly1305, bound to its table, column and row), the ids rows are
//! found by are keyed blind indexes (HMAC-SHA256), and the search index exists only in memory.
//! A copy of the store without the passphrase shows counts, sizes, sequence numbers and
//! timestamps, never a text, name, id, key or token. The `store` module's docs (and
//! `docs/client-store.md`) say exactly what is encrypted and what leaks.
//!
//! Layout:
//! - [`session`](Session), [`ws`](Connection): the typed REST and WebSocket client.
//! - `device`: [`Device`] and its local operations.
//! - `directory`: the people and conversations a device remembers ([`Directory`]).
//! - `catch_up`: receipts made while this device was away, asked for over REST.
//! - `approval`: approving a new device of this user by comparing a code on both screens.
//! - `e2e`: key publishing, room key sharing and decryption.
//! - `link`: the connection loop ([`Device::sync`], [`Device::run`]) with resends and backoff.
//! - `store`: the local SQLite store, encrypted at rest (`store::keyring`: the keys;
//!   `store::search`: the in-memory full-text index).
//! - `trust`: identities pinned and verified, and the devices trusted with keys.
//! - `recovery`: joining the identity, the recovery key and the key backup.
//! - `notices`: what the person is told about whom their messages reach.

mod approval;
mod catch_up;
mod clock;
mod device;
mod device_lists;
mod directory;
mod e2e;
mod error;
mod link;
mod notices;
mod recovery;
mod revocation;
mod session;
mod store;
mod trust;
mod ws;

pub use approval::ApprovalEvent;
pub use device::Device;
pub use directory::{Directory, label, title};
pub use error::ClientError;
pub use link::{Event, RETRY_AFTER_DEFAULT, SyncReport, is_retryable};
pub use natter_crypto::UnableToDecrypt;
pub use notices::Notice;
pub use revocation::Removal;
pub use session::Session;
pub use store::location::remove as remove_store;
#[cfg(target_arch = "wasm32")]
pub use store::location::{flush_browser_storage, open_browser_storage};
pub use store::{Queued, StoredMessage};
pub use trust::{DeviceStatus, TrustLevel};
pub use ws::{Closed, Connection, Dedup};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_proto::UserId;
use natter_proto::accounts::{
    CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, SessionResponse,
};
use natter_proto::gateway::GatewayResponse;
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;

/// How long opening a connection to a node may take before the node counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An anonymous connection to a server: registration and login.
///
/// A client follows its server's cluster: [`Session::connect`] learns the cluster's nodes from
/// the gateway, and a request the current node cannot be reached for is sent to the next
/// known node, which becomes the current one. Clones share what they know.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    nodes: Arc<Mutex<Nodes>>,
}

/// The nodes a client can reach, as HTTP bases (`http://host:port`, no trailing slash).
#[derive(Debug)]
struct Nodes {
    /// The base given to [`Client::new`], kept as the last resort.
    origin: String,
    /// Where requests go first.
    current: String,
    /// The cluster's nodes, least loaded first, as the gateway last listed them.
    known: Vec<String>,
}

impl Nodes {
    /// Every base to try, in order: the current one, the known nodes, then the origin.
    fn candidates(&self) -> Vec<String> {
        let mut all = vec![self.current.clone()];
        for base in self.known.iter().chain([&self.origin]) {
            if !all.contains(base) {
                all.push(base.clone());
            }
        }
        all
    }
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
        let builder = reqwest::Client::builder();
        // In the browser, fetch has its own connect timeout and sets the user agent itself.
        #[cfg(not(target_arch = "wasm32"))]
        let builder = builder
            .user_agent(concat!("natter-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT);
        let http = builder.build().map_err(ClientError::Http)?;
        let base = base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            nodes: Arc::new(Mutex::new(Nodes {
                origin: base.clone(),
                current: base,
                known: Vec::new(),
            })),
        })
    }

    /// The base URL requests go to now: the one given to [`Client::new`], or the node the
    /// client failed over to.
    pub fn base_url(&self) -> String {
        self.nodes().current.clone()
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes
            .lock()
            .expect("the node list lock is never poisoned")
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

    /// The WebSocket URLs to try: the gateway's pick, then the cluster's other nodes
    /// (remembered for failover) in random order, or this node's own when the server has no
    /// gateway. Random, because the gateway may still name a node that just died: clients
    /// that all fell back to the same next node would pile onto it.
    ///
    /// # Errors
    /// The server cannot be reached, or refuses.
    pub async fn gateway(&self) -> Result<Vec<String>, ClientError> {
        use rand::seq::SliceRandom;
        let Some(gateway) = self.cluster_gateway().await? else {
            return Ok(vec![ws_url(&self.base_url())]);
        };
        let mut others: Vec<String> = gateway
            .nodes
            .into_iter()
            .filter(|u| *u != gateway.url)
            .collect();
        others.shuffle(&mut rand::rng());
        Ok(std::iter::once(gateway.url).chain(others).collect())
    }

    /// The gateway's answer as it is (its cluster's nodes are remembered for failover), or
    /// `None` when the server has no gateway (404), unlike [`Client::gateway`], which then
    /// falls back to the node itself.
    ///
    /// # Errors
    /// The server cannot be reached, or refuses with anything but 404.
    pub async fn cluster_gateway(&self) -> Result<Option<GatewayResponse>, ClientError> {
        let gateway: GatewayResponse =
            match self.send(self.request(Method::GET, "/v1/gateway")).await {
                Ok(gateway) => gateway,
                Err(error) if error.status() == Some(404) => return Ok(None),
                Err(error) => return Err(error),
            };
        self.nodes().known = gateway.nodes.iter().filter_map(|u| http_base(u)).collect();
        Ok(Some(gateway))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url()))
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.checked(request).await?;
        response.json().await.map_err(ClientError::Http)
    }

    /// Sends a request and turns a non-2xx answer into [`ClientError::Api`].
    async fn checked(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = self.execute(request).await?;
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

    /// Sends a request to the current node or, while nodes cannot be reached, to the next
    /// candidate; the first that answers becomes the current node.
    ///
    /// Only a failure to connect moves on: the request never reached a server, so sending it
    /// again (even a POST) cannot do anything twice. Any other error is returned as it is.
    async fn execute(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let request = request.build().map_err(ClientError::Http)?;
        let mut unreachable = None;
        // Bound first: a guard in the loop's head would live through the whole loop.
        let candidates = self.nodes().candidates();
        for base in candidates {
            let mut attempt = request
                .try_clone()
                .expect("the client's request bodies are in memory, so they clone");
            if !retarget(attempt.url_mut(), &base) {
                continue;
            }
            match self.http.execute(attempt).await {
                Ok(response) => {
                    self.nodes().current = base;
                    return Ok(response);
                }
                Err(error) if http_unreachable(&error) => unreachable = Some(error),
                Err(error) => return Err(ClientError::Http(error)),
            }
        }
        Err(ClientError::Http(
            unreachable.expect("the current node is always a candidate"),
        ))
    }
}

/// Whether an HTTP request failed before reaching the server, so that another node may take it.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn http_unreachable(error: &reqwest::Error) -> bool {
    error.is_connect()
}

/// Whether an HTTP request failed before reaching the server, so that another node may take it:
/// in the browser, a fetch that got no response at all.
#[cfg(target_arch = "wasm32")]
pub(crate) fn http_unreachable(error: &reqwest::Error) -> bool {
    error.is_request() && error.status().is_none()
}

/// Points `url` at the node with HTTP base `base`. The nodes of one cluster serve the API
/// under the same path, so only the scheme, host and port change. False if `base` is not a
/// usable URL.
fn retarget(url: &mut Url, base: &str) -> bool {
    let Ok(target) = Url::parse(base) else {
        return false;
    };
    url.set_scheme(target.scheme()).is_ok()
        && url.set_host(target.host_str()).is_ok()
        && url.set_port(target.port()).is_ok()
}

/// The WebSocket URL of the node with HTTP base `base`: `http://h:p` → `ws://h:p/v1/ws`.
pub fn ws_url(base: &str) -> String {
    format!("{}/v1/ws", base.replacen("http", "ws", 1))
}

/// The HTTP base of the node with WebSocket URL `ws_url` (the inverse of [`ws_url`]), or
/// `None` for a URL that is not a node's `ws(s)://…/v1/ws`.
fn http_base(ws_url: &str) -> Option<String> {
    let rest = ws_url.strip_suffix("/v1/ws")?;
    if let Some(host) = rest.strip_prefix("wss://") {
        Some(format!("https://{host}"))
    } else {
        rest.strip_prefix("ws://")
            .map(|host| format!("http://{host}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{Nodes, http_base, retarget, ws_url};

    #[test]
    fn node_urls_convert_both_ways() {
        for (base, ws) in [
            ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/ws"),
            ("https://chat.example.com", "wss://chat.example.com/v1/ws"),
            (
                "https://example.com/natter",
                "wss://example.com/natter/v1/ws",
            ),
        ] {
            assert_eq!(ws_url(base), ws);
            assert_eq!(http_base(ws).as_deref(), Some(base));
        }
        assert_eq!(http_base("ws://127.0.0.1:8080/other"), None);
        assert_eq!(http_base("http://127.0.0.1:8080/v1/ws"), None);
    }

    #[test]
    fn requests_move_to_another_node_with_path_and_query() {
        let mut url = "http://127.0.0.1:8080/v1/conversations/x/messages?after=3"
            .parse()
            .unwrap();
        assert!(retarget(&mut url, "https://10.0.0.2:9443"));
        assert_eq!(
            url.as_str(),
            "https://10.0.0.2:9443/v1/conversations/x/messages?after=3"
        );
        assert!(retarget(&mut url, "http://node-c"));
        assert_eq!(
            url.as_str(),
            "http://node-c/v1/conversations/x/messages?after=3"
        );
        assert!(!retarget(&mut url, "not a url"));
    }

    #[test]
    fn candidates_are_current_then_known_then_origin_once_each() {
        let nodes = Nodes {
            origin: "http://a".into(),
            current: "http://b".into(),
            known: vec!["http://c".into(), "http://b".into(), "http://a".into()],
        };
        assert_eq!(nodes.candidates(), ["http://b", "http://c", "http://a"]);
    }
}
