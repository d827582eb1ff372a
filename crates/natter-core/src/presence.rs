//! Who is online: a user with at least one device holding a live connection, to this node or
//! (in a cluster) to any other.

use std::sync::Arc;

use async_trait::async_trait;
use natter_proto::UserId;

use crate::fanout::Registry;

/// The other nodes of a cluster, as far as presence goes (in Redis:
/// natter-cluster's `RemotePresence`).
#[async_trait]
pub trait OtherNodes: Send + Sync {
    /// Whether `user` has a device connected to another live node.
    async fn elsewhere(&self, user: UserId) -> bool;
}

/// Answers whether users are online.
#[derive(Clone)]
pub struct Presence {
    registry: Arc<Registry>,
    /// The other nodes, in a cluster.
    remote: Option<Arc<dyn OtherNodes>>,
}

impl Presence {
    /// Presence from this node's connections and, in a cluster, the other nodes'.
    pub fn new(registry: Arc<Registry>, remote: Option<Arc<dyn OtherNodes>>) -> Self {
        Self { registry, remote }
    }

    /// Whether `user` is online anywhere.
    pub async fn is_online(&self, user: UserId) -> bool {
        if self.registry.has_user(user) {
            return true;
        }
        match &self.remote {
            Some(remote) => remote.elsewhere(user).await,
            None => false,
        }
    }
}
