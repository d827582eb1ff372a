//! The host assigner's answer (`GET /v1/gateway`).

use serde::{Deserialize, Serialize};

/// Where a client should open its WebSocket, and which nodes it can fall back to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayResponse {
    /// The WebSocket URL of a lightly loaded live node (the less loaded of two drawn at
    /// random, so a burst of clients spreads out).
    pub url: String,
    /// The WebSocket URLs of every live node, least loaded first (just this node's when it
    /// runs alone): a client that loses its node can ask any of these for a new one.
    pub nodes: Vec<String>,
}
