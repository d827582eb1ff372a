//! Who is online: a user with at least one device holding a live connection, to this node or
//! (in a cluster) to any other.

use std::sync::Arc;

use natter_proto::UserId;

use crate::cluster::RemotePresence;
use crate::fanout::Registry;

/// Answers whether users are online.
#[derive(Clone)]
pub struct Presence {
    registry: Arc<Registry>,
    /// The other nodes, in a cluster.
    remote: Option<Arc<RemotePresence>>,
}

impl Presence {
    /// Presence from this node's connections and, in a cluster, the other nodes'.
    pub fn new(registry: Arc<Registry>, remote: Option<RemotePresence>) -> Self {
        Self {
            registry,
            remote: remote.map(Arc::new),
        }
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
