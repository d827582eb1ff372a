//! Presence across nodes: each node keeps a hash of who is connected to it in Redis
//! ([`write_presence`]), and [`RemotePresence`] asks the other live nodes' hashes.

use std::sync::Arc;

use async_trait::async_trait;
use natter_proto::UserId;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, mpsc};

use super::{NODE_TTL_SECS, Node, RETRY, Redis, WHOLE};
use natter_core::assigner::Assigner;
use natter_core::fanout::Registry;
use natter_core::presence::OtherNodes;

/// Keeps this node's presence hash (`<cluster>:node:<id>:users`) in step with who is
/// connected here: each change as it comes (batched), and the whole set again after a write
/// failed or the heartbeat found the hash gone (`lost`: Redis restarted), since changes made
/// meanwhile were lost.
pub(super) async fn write_presence(
    mut redis: ConnectionManager,
    node: Node,
    registry: Arc<Registry>,
    mut changes: mpsc::UnboundedReceiver<(UserId, bool)>,
    lost: Arc<Notify>,
) {
    let key = node.users_key_of(&node.id);
    let mut in_step = false;
    loop {
        let mut pipe = redis::pipe();
        if in_step {
            let first = tokio::select! {
                change = changes.recv() => change,
                () = lost.notified() => {
                    in_step = false;
                    continue;
                }
            };
            let Some(first) = first else {
                return;
            };
            let mut batch = vec![first];
            while let Ok(change) = changes.try_recv() {
                batch.push(change);
            }
            for (user, online) in batch {
                if online {
                    pipe.hset(&key, user.to_string(), 1).ignore();
                } else {
                    pipe.hdel(&key, user.to_string()).ignore();
                }
            }
        } else {
            // The whole set covers whatever is queued. Readers never see it half written.
            while changes.try_recv().is_ok() {}
            pipe.atomic().del(&key).ignore();
            pipe.hset(&key, WHOLE, 1).ignore();
            let users: Vec<(String, u8)> = registry
                .users()
                .iter()
                .map(|u| (u.to_string(), 1))
                .collect();
            for chunk in users.chunks(1000) {
                pipe.hset_multiple(&key, chunk).ignore();
            }
        }
        // Changes too: one that recreated a hash Redis lost must not leave it without expiry.
        pipe.expire(&key, NODE_TTL_SECS as i64).ignore();
        match pipe.query_async::<()>(&mut redis).await {
            Ok(()) => in_step = true,
            Err(error) => {
                if in_step {
                    tracing::warn!(%error, "cannot write presence to Redis; rewriting it when Redis is back");
                }
                in_step = false;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Whether users are connected to other nodes of the cluster, from their presence hashes.
pub struct RemotePresence {
    redis: ConnectionManager,
    node: Node,
    assigner: Arc<Assigner>,
}

impl RemotePresence {
    /// Presence as node `node` sees it, through `redis`, over the nodes `assigner` knows.
    pub fn new(redis: &Redis, node: Node, assigner: Arc<Assigner>) -> Self {
        Self {
            redis: redis.commands(),
            node,
            assigner,
        }
    }
}

#[async_trait]
impl OtherNodes for RemotePresence {
    /// Whether `user` has a device connected to another live node. A node that died stops
    /// counting when it drops out of the heartbeats (within 10 s), and its hash expires with
    /// it. Without Redis, nobody elsewhere is known to be online.
    async fn elsewhere(&self, user: UserId) -> bool {
        let others = self.assigner.others(&self.node.id);
        if others.is_empty() {
            return false;
        }
        let mut pipe = redis::pipe();
        for id in &others {
            pipe.hexists(self.node.users_key_of(id), user.to_string());
        }
        match pipe.query_async::<Vec<bool>>(&mut self.redis.clone()).await {
            Ok(found) => found.into_iter().any(|online| online),
            Err(error) => {
                // Per request, while Redis is away: the heartbeat already warns every 2 s.
                tracing::debug!(%error, "cannot read presence from Redis");
                false
            }
        }
    }
}
