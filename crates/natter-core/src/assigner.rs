//! The host assigner: every node advertises its load (a heartbeat, kept in Redis by
//! natter-cluster) and reads the others', and [`Assigner`] hands clients the least loaded live
//! node. This module ranks and picks; it does not talk to Redis.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// A node's advertised load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's id (the key it was read from, not part of the stored value).
    #[serde(skip)]
    pub id: String,
    /// The WebSocket URL clients use for the node.
    pub ws_url: String,
    /// The connections the node holds.
    pub connections: u64,
    /// Sends (messages, to-device frames) received per second since the previous heartbeat.
    #[serde(default)]
    pub sends_per_sec: f64,
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
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Waits until [`Assigner::drain`] is called (at once if it was called since the last wait).
    pub async fn drain_requested(&self) {
        self.drained.notified().await;
    }

    /// Notes that this node's heartbeat is withdrawn (or that withdrawing failed).
    pub fn mark_withdrawn(&self) {
        self.withdrawn.store(true, Ordering::Relaxed);
    }

    /// Keeps the live nodes a heartbeat read, or notes that it failed (`None`): this node then
    /// assigns itself only.
    pub fn record(&self, live: Option<Vec<Heartbeat>>) {
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
    pub fn others(&self, own_id: &str) -> Vec<String> {
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
