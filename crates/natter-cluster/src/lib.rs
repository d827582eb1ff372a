//! natter-cluster: everything natterd keeps in Redis, behind natter-core's traits. Cluster
//! fan-out first: [`RedisBus`] (a [`natter_core::fanout::Bus`]) lets several natterd nodes,
//! sharing one PostgreSQL, deliver every event to every online device wherever it is
//! connected. Then the host assigner's heartbeats (feeding natter-core's
//! [`Assigner`](natter_core::assigner::Assigner)), presence across nodes ([`RemotePresence`],
//! a [`natter_core::presence::OtherNodes`]) and the rate-limit buckets every node shares
//! ([`RedisBuckets`], a [`natter_core::ratelimit::SharedBuckets`]).
//!
//! What it is not: no rules (who may receive what is decided before an event reaches the bus),
//! no HTTP and no database; a node without Redis runs natter-core's `LocalBus` and never loads
//! this crate's types.
//!
//! Each event is delivered to this node's connections at once, then published once on one
//! Redis channel; every other node receives it once and delivers it to its own connections.
//! Cross-node traffic per message is therefore one publish plus one receive per node,
//! independent of how many members a room has.
//!
//! Redis is not in the path of acceptance: a message is acked after the store commits. When
//! Redis is down, nodes keep delivering to their local devices; remote devices get what they
//! missed from the store (the next message past the gap, or their next sync), so nothing acked
//! is lost, only delayed.
//!
//! Layout: [`Redis`] (the connection) and [`Node`] (this node's keys) here; `bus` (the
//! fan-out), `heartbeat` (the host assigner's heartbeats), `remote_presence` (who is online on
//! other nodes), `rate_limits` (the buckets every node shares).
//!
//! The keys, all under the cluster's name (`natter` unless configured), so that several
//! clusters or test runs can share one Redis:
//! - `<cluster>:fanout`: the channel every node publishes events on and subscribes to;
//! - `<cluster>:nodes`: the live nodes' ids, scored by when their heartbeat expires;
//! - `<cluster>:node:<id>`: a node's heartbeat (its URL and load), expiring with it;
//! - `<cluster>:node:<id>:users`: the users connected to that node (its presence hash);
//! - `<cluster>:rl:<kind>:<key>`: a rate-limit bucket, expiring once it would be full.

mod bus;
mod heartbeat;
mod rate_limits;
mod remote_presence;

use std::time::Duration;

use redis::aio::ConnectionManager;

pub use bus::RedisBus;
pub use rate_limits::RedisBuckets;
pub use remote_presence::RemotePresence;

/// How long a command to Redis may take before it counts as failed (Redis is down): senders
/// and heartbeats must not wait on it.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// This node's way to the cluster's Redis.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    /// One shared, self-reconnecting connection for commands: publishing, heartbeats and rate
    /// limits (the subscriber has its own).
    commands: ConnectionManager,
}

impl Redis {
    /// Redis at `url`, connected lazily (a node starts even while Redis is down).
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid Redis URL: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("cannot set up the Redis connection: {e}"))?;
        Ok(Self { client, commands })
    }

    /// The shared connection for commands (cheap to clone).
    pub fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }
}

/// A node whose heartbeat is older than this is gone.
const NODE_TTL_SECS: u64 = 10;

/// The field a presence hash holds once it was written whole: the heartbeat checks for it, since
/// a change written after Redis lost the hash creates a new one holding just that user.
const WHOLE: &str = "*";

/// This node's place in a cluster.
#[derive(Clone, Debug)]
pub struct Node {
    /// A fresh id per process.
    pub id: String,
    /// The cluster's name: the prefix of its Redis keys and channel, so several clusters (or
    /// test runs) can share one Redis.
    pub cluster: String,
    /// The WebSocket URL clients should use to reach this node.
    pub ws_url: String,
}

impl Node {
    /// The one channel every node of the cluster publishes on and subscribes to.
    fn channel(&self) -> String {
        format!("{}:fanout", self.cluster)
    }

    /// This node's heartbeat key.
    fn heartbeat_key(&self) -> String {
        self.heartbeat_key_of(&self.id)
    }

    /// The heartbeat key of node `id`: its advertised load, expiring with it.
    fn heartbeat_key_of(&self, id: &str) -> String {
        format!("{}:node:{id}", self.cluster)
    }

    /// The users with a device connected to node `id` (a hash: user id → 1), expiring with
    /// the node's heartbeat.
    fn users_key_of(&self, id: &str) -> String {
        format!("{}:node:{id}:users", self.cluster)
    }

    /// The live nodes' ids, scored by when their heartbeat expires (ms since the epoch): the
    /// index heartbeats read instead of scanning the keyspace.
    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.cluster)
    }
}

/// Waits before trying Redis again.
pub(crate) const RETRY: Duration = Duration::from_secs(1);
