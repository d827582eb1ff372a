//! The host assigner: every node advertises its load in Redis (a heartbeat) and reads the
//! others', and [`Assigner`] hands clients the least loaded live node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{NODE_TTL_SECS, Node, WHOLE};
use crate::fanout::Registry;

/// How often a node refreshes its heartbeat and reads the others'.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// A node's advertised load.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Heartbeat {
    /// The node's id (the key it was read from, not part of the stored value).
    #[serde(skip)]
    id: String,
    ws_url: String,
    connections: u64,
    /// Sends (messages, to-device frames) received per second since the previous heartbeat.
    #[serde(default)]
    sends_per_sec: f64,
}

/// How many idle connections one send a second weighs when ranking nodes. From the bench
/// (docs/benchmarks.md), one node holds about 19,000 idle connections or handles 3,000-4,000
/// direct sends a second on a core, so a send a second costs about what 5-10 idle connections
/// do. A heavier weight let the noise in a lightly loaded node's sends outweigh whole
/// reconnect bursts (a killed node's 333 devices went 50 / 284 to the two others at 100).
const SEND_WEIGHT: f64 = 10.0;

impl Heartbeat {
    /// Lower is better: connections plus recent traffic, in connection units.
    fn score(&self) -> f64 {
        self.connections as f64 + SEND_WEIGHT * self.sends_per_sec
    }
}

/// The host assigner: which live node a client should connect to.
pub struct Assigner {
    own_url: String,
    live: std::sync::RwLock<Vec<Heartbeat>>,
    /// The last heartbeat's outcome: unknown (no Redis configured), ok, or unreachable.
    redis: AtomicU8,
    /// This node is shutting down: send clients elsewhere.
    draining: AtomicBool,
    /// Wakes the heartbeat task to withdraw this node at once.
    drained: tokio::sync::Notify,
    /// The heartbeat is withdrawn (or withdrawing failed): nothing more to do in Redis.
    withdrawn: AtomicBool,
}

/// [`Assigner`]'s last heartbeat outcome: no Redis is configured.
const REDIS_NONE: u8 = 0;

/// The last heartbeat reached Redis.
const REDIS_OK: u8 = 1;

/// The last heartbeat failed: Redis is unreachable.
const REDIS_DOWN: u8 = 2;

impl Assigner {
    /// An assigner that knows only this node until heartbeats tell it about others.
    pub fn new(own_url: String) -> Self {
        Self {
            own_url,
            live: std::sync::RwLock::new(Vec::new()),
            redis: AtomicU8::new(REDIS_NONE),
            draining: AtomicBool::new(false),
            drained: tokio::sync::Notify::new(),
            withdrawn: AtomicBool::new(false),
        }
    }

    /// Redis as the last heartbeat found it: `not configured`, `ok` or `unreachable`.
    pub fn redis_status(&self) -> &'static str {
        match self.redis.load(Ordering::Relaxed) {
            REDIS_OK => "ok",
            REDIS_DOWN => "unreachable",
            _ => "not configured",
        }
    }

    /// Stops handing out this node (it is shutting down) and withdraws its heartbeat.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.drained.notify_one();
    }

    /// Whether a draining node is done with Redis: it never heartbeated (no Redis
    /// configured) or its heartbeat has been withdrawn.
    pub fn is_withdrawn(&self) -> bool {
        self.redis.load(Ordering::Relaxed) == REDIS_NONE || self.withdrawn.load(Ordering::Relaxed)
    }

    /// Whether this node is shutting down (and sends clients elsewhere).
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Keeps the live nodes a heartbeat read, or notes that it failed (`None`): this node then
    /// assigns itself only.
    fn record(&self, live: Option<Vec<Heartbeat>>) {
        let up = live.is_some();
        let mut live = live.unwrap_or_default();
        live.sort_by(|a, b| a.score().total_cmp(&b.score()));
        *self.live.write().expect("assigner lock poisoned") = live;
        self.redis
            .store(if up { REDIS_OK } else { REDIS_DOWN }, Ordering::Relaxed);
        metrics::gauge!("natter_redis_up").set(if up { 1.0 } else { 0.0 });
    }

    /// The WebSocket URLs of the live nodes, least loaded (by connections and recent
    /// traffic) first. Without heartbeats (a single node, or Redis down) it is this node
    /// alone; a draining node leaves itself out whenever another node is live.
    pub fn ranked(&self) -> Vec<String> {
        let live = self.live.read().expect("assigner lock poisoned");
        let mut urls: Vec<String> = live.iter().map(|h| h.ws_url.clone()).collect();
        if self.is_draining() {
            urls.retain(|url| *url != self.own_url);
        }
        if urls.is_empty() {
            urls.push(self.own_url.clone());
        }
        urls
    }

    /// The ids of the other live nodes, as the last heartbeat found them.
    pub(super) fn others(&self, own_id: &str) -> Vec<String> {
        let live = self.live.read().expect("assigner lock poisoned");
        live.iter()
            .filter(|h| h.id != own_id)
            .map(|h| h.id.clone())
            .collect()
    }

    /// Where the next client should go: the less loaded of two live nodes drawn at random
    /// ("power of two choices"; equal loads go to the first drawn), counting the clients this
    /// node has sent to each since the last heartbeat. Loads are up to 2 s old: always naming
    /// the least loaded node would send a whole reconnect storm to it, and even two random
    /// choices over stale loads favour it (a third of a burst with six nodes); counting our
    /// own assignments as they are made spreads a burst evenly.
    pub fn pick(&self) -> String {
        let mut live = self.live.write().expect("assigner lock poisoned");
        let draining = self.is_draining();
        let candidates: Vec<usize> = (0..live.len())
            .filter(|i| !(draining && live[*i].ws_url == self.own_url))
            .collect();
        let chosen = match candidates.len() {
            0 => return self.own_url.clone(),
            1 => candidates[0],
            n => {
                let i = rand::random_range(0..n);
                let j = (i + rand::random_range(1..n)) % n;
                let (first, second) = (candidates[i], candidates[j]);
                if live[second].score() < live[first].score() {
                    second
                } else {
                    first
                }
            }
        };
        live[chosen].connections += 1;
        live[chosen].ws_url.clone()
    }
}

/// Every [`HEARTBEAT`], advertises this node's load in Redis (expiring after [`NODE_TTL_SECS`],
/// so a dead node disappears) and reads every live node's into the assigner. The live nodes
/// are found through a sorted set of ids, not a keyspace scan (the keyspace also holds every
/// rate-limit bucket).
pub(super) async fn heartbeat(
    mut redis: ConnectionManager,
    node: Node,
    registry: Arc<Registry>,
    presence_lost: Arc<Notify>,
    assigner: Arc<Assigner>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut meter = registry.send_meter();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = assigner.drained.notified() => {}
        }
        if assigner.is_draining() {
            withdraw(&mut redis, &node).await;
            assigner.withdrawn.store(true, Ordering::Relaxed);
            return;
        }
        let beat = Heartbeat {
            id: node.id.clone(),
            ws_url: node.ws_url.clone(),
            connections: registry.connections(),
            sends_per_sec: meter.per_second(),
        };
        match beat_once(&mut redis, &node, &beat, &presence_lost).await {
            Ok(live) => assigner.record(Some(live)),
            Err(error) => {
                tracing::warn!(%error, "cluster heartbeat failed; assigning this node only");
                assigner.record(None);
            }
        }
    }
}

/// Deletes this node's heartbeat so no node hands it out any more.
async fn withdraw(redis: &mut ConnectionManager, node: &Node) {
    let deleted: redis::RedisResult<()> = redis::pipe()
        .cmd("ZREM")
        .arg(node.nodes_key())
        .arg(&node.id)
        .ignore()
        .cmd("DEL")
        .arg(node.heartbeat_key())
        .arg(node.users_key_of(&node.id))
        .ignore()
        .query_async(redis)
        .await;
    match deleted {
        Ok(_) => tracing::info!("draining: withdrew this node from the host assigner"),
        Err(error) => {
            tracing::warn!(%error, "draining: cannot withdraw the heartbeat; it expires in {NODE_TTL_SECS} s")
        }
    }
}

/// Lists a node in the index (`KEYS[1]`) until its heartbeat expires (`ARGV[1]`, the node;
/// `ARGV[2]`, the heartbeat's lifetime in ms) and drops the nodes whose time is up, both by
/// Redis's clock: one clock for every node, so a node whose own clock is off or steps neither
/// drops the others nor is dropped by them.
const LIST_NODE: &str = "local t = redis.call('TIME') \
    local now = t[1] * 1000 + math.floor(t[2] / 1000) \
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) \
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) \
    return 0";

/// One heartbeat: writes this node's load and keeps its presence hash alive, drops
/// expired nodes from the index, notices a presence hash Redis lost (telling
/// `presence_lost`), and reads every live node's load.
async fn beat_once(
    redis: &mut ConnectionManager,
    node: &Node,
    beat: &Heartbeat,
    presence_lost: &Notify,
) -> redis::RedisResult<Vec<Heartbeat>> {
    let text = serde_json::to_string(beat).expect("heartbeats always serialize");
    let (whole, ids): (bool, Vec<String>) = redis::pipe()
        .cmd("SET")
        .arg(node.heartbeat_key())
        .arg(text)
        .arg("EX")
        .arg(NODE_TTL_SECS)
        .ignore()
        .cmd("EVAL")
        .arg(LIST_NODE)
        .arg(1)
        .arg(node.nodes_key())
        .arg(&node.id)
        .arg(NODE_TTL_SECS * 1000)
        .ignore()
        .cmd("EXPIRE")
        .arg(node.users_key_of(&node.id))
        .arg(NODE_TTL_SECS)
        .ignore()
        .cmd("HEXISTS")
        .arg(node.users_key_of(&node.id))
        .arg(WHOLE)
        .cmd("ZRANGE")
        .arg(node.nodes_key())
        .arg(0)
        .arg(-1)
        .query_async(redis)
        .await?;
    // Redis lost the hash written whole (it restarted, or was flushed); one change written
    // since may have made a new hash of one user: presence must be written whole again.
    if !whole {
        presence_lost.notify_one();
    }
    let keys: Vec<String> = ids.iter().map(|id| node.heartbeat_key_of(id)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(redis).await?;
    Ok(ids
        .into_iter()
        .zip(values)
        .filter_map(|(id, value)| {
            let beat: Heartbeat = serde_json::from_str(&value?).ok()?;
            Some(Heartbeat { id, ..beat })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(url: &str, connections: u64, sends_per_sec: f64) -> Heartbeat {
        Heartbeat {
            id: url.into(),
            ws_url: url.into(),
            connections,
            sends_per_sec,
        }
    }

    /// How often each node is picked in `count` picks.
    fn picks(assigner: &Assigner, count: u32) -> std::collections::HashMap<String, u32> {
        let mut seen = std::collections::HashMap::new();
        for _ in 0..count {
            *seen.entry(assigner.pick()).or_insert(0) += 1;
        }
        seen
    }

    #[test]
    fn two_random_choices_avoid_the_most_loaded() {
        let assigner = Assigner::new("light".into());
        assigner.record(Some(vec![
            beat("heavy", 3000, 0.0),
            beat("light", 100, 0.0),
            beat("middle", 200, 0.0),
        ]));
        let seen = picks(&assigner, 300);
        assert!(!seen.contains_key("heavy"), "{seen:?}");
        assert!(seen["light"] > seen["middle"], "{seen:?}");
        // With two nodes the less loaded wins until it is as loaded; alone (or without
        // Redis), a node names itself.
        assigner.record(Some(vec![beat("busy", 5, 0.0), beat("idle", 1, 0.0)]));
        for _ in 0..4 {
            assert_eq!(assigner.pick(), "idle");
        }
        // Now both count 5, and each pick counts: the next ones go to both (without the
        // counting, `idle` would win every time).
        let seen = picks(&assigner, 100);
        assert!(
            seen.contains_key("busy") && seen.contains_key("idle"),
            "{seen:?}"
        );
        assigner.record(None);
        assert_eq!(assigner.pick(), "light");
    }

    #[test]
    fn a_burst_between_heartbeats_spreads_evenly() {
        // Six nodes whose loads differ a little, and 6,000 clients before the next heartbeat:
        // with stale loads alone the least loaded node got a third of them.
        let assigner = Assigner::new("n0".into());
        assigner.record(Some(
            (0..6)
                .map(|i| beat(&format!("n{i}"), 16_600 + i * 20, 0.0))
                .collect(),
        ));
        let seen = picks(&assigner, 6000);
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert!(seen.values().all(|n| (900..=1100).contains(n)), "{seen:?}");
        // Equal loads spread evenly too (a fixed tie-break would favour one node).
        assigner.record(Some(vec![
            beat("a", 0, 0.0),
            beat("b", 0, 0.0),
            beat("c", 0, 0.0),
        ]));
        assert!(picks(&assigner, 3000).values().all(|n| *n > 700));
    }

    #[test]
    fn nodes_rank_by_connections_and_traffic() {
        let assigner = Assigner::new("ws://self/v1/ws".into());
        assigner.record(Some(vec![
            beat("ws://busy/v1/ws", 1000, 500.0),
            beat("ws://self/v1/ws", 3000, 0.0),
            beat("ws://quiet/v1/ws", 2000, 0.0),
        ]));
        assert_eq!(
            assigner.ranked(),
            ["ws://quiet/v1/ws", "ws://self/v1/ws", "ws://busy/v1/ws"]
        );
        assigner.drain();
        assert_eq!(assigner.ranked(), ["ws://quiet/v1/ws", "ws://busy/v1/ws"]);
        assert!(!picks(&assigner, 100).contains_key("ws://self/v1/ws"));
    }
}
