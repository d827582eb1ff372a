//! Shared state handed to every handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::GatewayConfig;
use natter_core::fanout::Registry;
use natter_core::messages::Messenger;
use natter_core::store::Store;

/// What handlers and connections need: one pointer, cheap to clone, and small to keep in
/// each of a node's many connections.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` with every handler and connection.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The account service.
    pub accounts: natter_core::accounts::Accounts,
    /// How long a login's token lasts past its last use.
    pub token_ttl: Duration,
    /// The messaging services.
    pub messenger: Messenger,
    /// Abuse controls.
    pub limits: Arc<natter_core::ratelimit::RateLimits>,
    /// The fan-out bus (this node only, or the cluster through Redis).
    pub bus: Arc<dyn natter_core::fanout::Bus>,
    /// Which node clients should connect to.
    pub assigner: Arc<natter_core::assigner::Assigner>,
    /// The devices connected to this node.
    pub registry: Arc<Registry>,
    /// Gateway settings.
    pub gateway: GatewayConfig,
    /// No `--public-url`, and listening on every interface: `GET /v1/gateway` names this node
    /// by the request's `Host` header.
    pub ws_url_from_host: bool,
    /// Becomes true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}
