//! The host assigner's heartbeats in Redis: every node writes its load and reads the others'
//! into natter-core's [`Assigner`].

use std::sync::Arc;
use std::time::Duration;

use natter_core::assigner::{Assigner, Heartbeat};
use natter_core::fanout::Registry;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use super::{NODE_TTL_SECS, Node, WHOLE};

/// How often a node refreshes its heartbeat and reads the others'.
const HEARTBEAT: Duration = Duration::from_secs(2);

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
            () = assigner.drain_requested() => {}
        }
        if assigner.is_draining() {
            withdraw(&mut redis, &node).await;
            assigner.mark_withdrawn();
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
