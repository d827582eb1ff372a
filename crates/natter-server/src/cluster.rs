//! Cluster fan-out through Redis: [`RedisBus`] lets several natterd nodes, sharing one
//! PostgreSQL, deliver every event to every online device wherever it is connected.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use natter_proto::close::CloseCode;
use natter_proto::{ConversationId, DeviceId, UserId};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::close;
use crate::fanout::{Bus, Outbound, Registry};

/// Events waiting to be published before new ones are dropped (and recovered from the store).
const PUBLISH_QUEUE: usize = 65_536;

/// The most events published in one round trip to Redis (one pipeline).
const PUBLISH_BATCH: usize = 256;

/// Who an event is for.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Target {
    Users {
        users: Vec<UserId>,
        skip: Option<DeviceId>,
    },
    Device {
        user: UserId,
        device: DeviceId,
    },
    /// Every connection of every node.
    All,
}

/// An [`Outbound`] event as it crosses nodes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum Event {
    Message {
        conversation_id: ConversationId,
        seq: i64,
        server_ts: i64,
        frame: String,
    },
    ToDevice {
        seq: i64,
        frame: String,
    },
    Frame {
        frame_kind: String,
        frame: String,
    },
    Close {
        code: CloseCode,
        reason: String,
    },
    CatchUp,
}

/// What goes on the channel, as JSON that starts with the `origin` field (so a node can skip
/// its own events without parsing them; see [`own_prefix`]).
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The publishing node, which already delivered it locally.
    origin: String,
    /// When it was published (ms since the epoch), for the bus lag.
    #[serde(default)]
    published_ms: i64,
    target: Target,
    event: Event,
}

impl Event {
    fn from_outbound(event: &Outbound) -> Self {
        match event {
            Outbound::Message {
                conversation_id,
                seq,
                server_ts,
                frame,
                ..
            } => Event::Message {
                conversation_id: *conversation_id,
                seq: *seq,
                server_ts: *server_ts,
                frame: frame.as_str().to_owned(),
            },
            Outbound::ToDevice { seq, frame } => Event::ToDevice {
                seq: *seq,
                frame: frame.as_str().to_owned(),
            },
            Outbound::Frame { kind, frame } => Event::Frame {
                frame_kind: (*kind).to_owned(),
                frame: frame.as_str().to_owned(),
            },
            Outbound::Close(code, reason) => Event::Close {
                code: *code,
                reason: (*reason).to_owned(),
            },
            Outbound::CatchUp => Event::CatchUp,
        }
    }

    fn into_outbound(self) -> Outbound {
        match self {
            Event::Message {
                conversation_id,
                seq,
                server_ts,
                frame,
            } => Outbound::Message {
                conversation_id,
                seq,
                server_ts,
                remote: true,
                frame: Utf8Bytes::from(frame),
            },
            Event::ToDevice { seq, frame } => Outbound::ToDevice {
                seq,
                frame: Utf8Bytes::from(frame),
            },
            Event::Frame { frame_kind, frame } => Outbound::Frame {
                kind: static_kind(&frame_kind),
                frame: Utf8Bytes::from(frame),
            },
            Event::Close { code, reason } => Outbound::Close(code, static_reason(&reason)),
            Event::CatchUp => Outbound::CatchUp,
        }
    }
}

/// Close reasons that cross nodes: the known, static set.
fn static_reason(reason: &str) -> &'static str {
    match reason {
        close::SUSPENDED_REASON => close::SUSPENDED_REASON,
        close::SIGNED_OUT => close::SIGNED_OUT,
        _ => "closed by the server",
    }
}

/// Frame kinds are metric labels: keep them to the known, static set.
fn static_kind(kind: &str) -> &'static str {
    match kind {
        "receipt" => "receipt",
        "receipts" => "receipts",
        "typing" => "typing",
        "device_list_changed" => "device_list_changed",
        _ => "event",
    }
}

/// How every envelope `origin` publishes begins.
fn own_prefix(origin: &str) -> String {
    format!(
        "{{\"origin\":{}",
        serde_json::to_string(origin).expect("strings serialize")
    )
}

/// An event waiting for the publisher, which serializes it (off the sender's path).
struct Unpublished {
    published_ms: i64,
    target: Target,
    event: Outbound,
}

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

/// How often a node refreshes its heartbeat and reads the others'.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node whose heartbeat is older than this is gone.
const NODE_TTL_SECS: u64 = 10;

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
    fn channel(&self) -> String {
        format!("{}:fanout", self.cluster)
    }

    fn heartbeat_key(&self) -> String {
        self.heartbeat_key_of(&self.id)
    }

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
/// (docs/benchmarks.md), one node holds about 19,000 idle connections or handles a few hundred
/// sends a second, so a send a second costs about as much as 100 idle connections.
const SEND_WEIGHT: f64 = 100.0;

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

const REDIS_NONE: u8 = 0;
const REDIS_OK: u8 = 1;
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

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

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
    fn others(&self, own_id: &str) -> Vec<String> {
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
async fn heartbeat(
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

async fn beat_once(
    redis: &mut ConnectionManager,
    node: &Node,
    beat: &Heartbeat,
    presence_lost: &Notify,
) -> redis::RedisResult<Vec<Heartbeat>> {
    let text = serde_json::to_string(beat).expect("heartbeats always serialize");
    let now = crate::clock::now_ms();
    let expires = now + i64::try_from(NODE_TTL_SECS * 1000).unwrap_or(i64::MAX);
    let (whole, ids): (bool, Vec<String>) = redis::pipe()
        .cmd("SET")
        .arg(node.heartbeat_key())
        .arg(text)
        .arg("EX")
        .arg(NODE_TTL_SECS)
        .ignore()
        .cmd("ZADD")
        .arg(node.nodes_key())
        .arg(expires)
        .arg(&node.id)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(node.nodes_key())
        .arg("-inf")
        .arg(now)
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

/// The Redis-backed bus of one node.
pub struct RedisBus {
    registry: Arc<Registry>,
    outgoing: mpsc::Sender<Unpublished>,
    /// Events queued or being published, not yet on Redis (or dropped).
    unpublished: Arc<AtomicUsize>,
    /// Set when an event was dropped: the other nodes are then told to catch up.
    lost: Arc<AtomicBool>,
}

impl RedisBus {
    /// Starts this node's publisher, subscriber and heartbeat tasks on `redis`. They carry on
    /// by themselves whenever Redis goes away and comes back.
    pub fn start(
        redis: &Redis,
        node: Node,
        registry: Arc<Registry>,
        assigner: Arc<Assigner>,
    ) -> Self {
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let unpublished = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicBool::new(false));
        tokio::spawn(publish(
            redis.commands(),
            node.clone(),
            queue,
            Arc::clone(&unpublished),
            Arc::clone(&lost),
        ));
        tokio::spawn(subscribe(
            redis.client.clone(),
            node.clone(),
            Arc::clone(&registry),
        ));
        let (changes, changed) = mpsc::unbounded_channel();
        registry.watch_presence(changes);
        let presence_lost = Arc::new(Notify::new());
        tokio::spawn(write_presence(
            redis.commands(),
            node.clone(),
            Arc::clone(&registry),
            changed,
            Arc::clone(&presence_lost),
        ));
        tokio::spawn(heartbeat(
            redis.commands(),
            node.clone(),
            Arc::clone(&registry),
            presence_lost,
            assigner,
        ));
        Self {
            registry,
            outgoing,
            unpublished,
            lost,
        }
    }

    fn publish(&self, target: Target, event: Outbound) {
        metrics::counter!("natter_bus_published_total", "bus" => "redis").increment(1);
        let unpublished = Unpublished {
            published_ms: crate::clock::now_ms(),
            target,
            event,
        };
        self.unpublished.fetch_add(1, Ordering::Relaxed);
        if self.outgoing.try_send(unpublished).is_err() {
            self.unpublished.fetch_sub(1, Ordering::Relaxed);
            // Redis is down or slow: the recipients on other nodes catch up from the store
            // once the publisher tells them to.
            self.lost.store(true, Ordering::Relaxed);
            metrics::counter!("natter_bus_dropped_total", "bus" => "redis").increment(1);
        }
    }
}

impl Bus for RedisBus {
    fn publish_to_users(&self, users: &[UserId], skip: Option<DeviceId>, event: Outbound) {
        self.registry.deliver(users, skip, &event);
        self.publish(
            Target::Users {
                users: users.to_vec(),
                skip,
            },
            event,
        );
    }

    fn publish_to_device(&self, user: UserId, device: DeviceId, event: Outbound) {
        self.registry.deliver_to_device(user, device, &event);
        self.publish(Target::Device { user, device }, event);
    }

    fn unpublished(&self) -> usize {
        self.unpublished.load(Ordering::Relaxed)
    }
}

/// Waits before trying Redis again.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// Publishes queued events in order, as many as are waiting in one pipeline. A batch that
/// fails twice is dropped with everything queued behind it (senders are never blocked), and
/// publishing pauses for [`RETRY`]. After any event was dropped, the next pipeline that reaches
/// Redis first tells every node to catch up from the store ([`Outbound::CatchUp`]), so the
/// recipients of what was dropped get it within a few seconds of Redis coming back, whether or
/// not anything else is sent.
async fn publish(
    mut redis: ConnectionManager,
    node: Node,
    mut queue: mpsc::Receiver<Unpublished>,
    unpublished: Arc<AtomicUsize>,
    lost: Arc<AtomicBool>,
) {
    let channel = node.channel();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        tokio::select! {
            count = queue.recv_many(&mut batch, PUBLISH_BATCH) => if count == 0 {
                return;
            },
            () = tokio::time::sleep(RETRY), if lost.load(Ordering::Relaxed) => {}
        }
        let count = batch.len();
        let tell_gap = lost.swap(false, Ordering::Relaxed);
        let mut pipe = redis::pipe();
        let envelopes = tell_gap
            .then(|| (crate::clock::now_ms(), Target::All, Outbound::CatchUp))
            .into_iter()
            .chain(batch.drain(..).map(
                |Unpublished {
                     published_ms,
                     target,
                     event,
                 }| (published_ms, target, event),
            ));
        for (published_ms, target, event) in envelopes {
            let envelope = Envelope {
                origin: node.id.clone(),
                published_ms,
                target,
                event: Event::from_outbound(&event),
            };
            let text = serde_json::to_string(&envelope).expect("envelopes always serialize");
            pipe.cmd("PUBLISH").arg(&channel).arg(text).ignore();
        }
        let mut sent = pipe.query_async::<()>(&mut redis).await;
        if sent.is_err() {
            // Once more: the connection may just have been re-established.
            sent = pipe.query_async::<()>(&mut redis).await;
        }
        match sent {
            Ok(()) => {
                unpublished.fetch_sub(count, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot publish to Redis; delivering locally only");
                lost.store(true, Ordering::Relaxed);
                let mut dropped = count;
                while queue.try_recv().is_ok() {
                    dropped += 1;
                }
                unpublished.fetch_sub(dropped, Ordering::Relaxed);
                metrics::counter!("natter_bus_dropped_total", "bus" => "redis")
                    .increment(dropped as u64);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The field a presence hash holds once it was written whole: the heartbeat checks for it, since
/// a change written after Redis lost the hash creates a new one holding just that user.
const WHOLE: &str = "*";

/// Keeps this node's presence hash (`<cluster>:node:<id>:users`) in step with who is
/// connected here: each change as it comes (batched), and the whole set again after a write
/// failed or the heartbeat found the hash gone (`lost`: Redis restarted), since changes made
/// meanwhile were lost.
async fn write_presence(
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

    /// Whether `user` has a device connected to another live node. A node that died stops
    /// counting when it drops out of the heartbeats (within 10 s), and its hash expires with
    /// it. Without Redis, nobody elsewhere is known to be online.
    pub async fn elsewhere(&self, user: UserId) -> bool {
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

/// Delivers events published by other nodes to this node's connections.
async fn subscribe(client: redis::Client, node: Node, registry: Arc<Registry>) {
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis to subscribe; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(error) = pubsub.subscribe(node.channel()).await {
            tracing::warn!(%error, "cannot subscribe to the fan-out channel; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        tracing::info!("subscribed to cluster fan-out");
        // Whatever was published while this node was not subscribed is lost to it.
        registry.catch_up_all();
        let own = own_prefix(&node.id);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            // This node delivered its own events already.
            if text.starts_with(&own) {
                continue;
            }
            let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
                tracing::warn!("ignoring a malformed fan-out event");
                continue;
            };
            metrics::counter!("natter_bus_received_total", "bus" => "redis").increment(1);
            let lag = (crate::clock::now_ms() - envelope.published_ms).max(0) as f64 / 1000.0;
            metrics::histogram!("natter_bus_lag_seconds").record(lag);
            let event = envelope.event.into_outbound();
            match envelope.target {
                Target::Users { users, skip } => registry.deliver(&users, skip, &event),
                Target::Device { user, device } => registry.deliver_to_device(user, device, &event),
                Target::All => registry.catch_up_all(),
            }
        }
        tracing::warn!("lost the Redis subscription; resubscribing");
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_recognises_its_own_envelopes_by_their_start() {
        let envelope = |origin: &str| Envelope {
            origin: origin.into(),
            published_ms: 1,
            target: Target::Device {
                user: UserId::new(),
                device: DeviceId::new(),
            },
            event: Event::Close {
                code: CloseCode::Suspended,
                reason: "x".into(),
            },
        };
        let text = |origin| serde_json::to_string(&envelope(origin)).unwrap();
        let own = own_prefix("node \"a\"");
        assert!(text("node \"a\"").starts_with(&own));
        assert!(!text("node \"a\"2").starts_with(&own));
        assert!(!text("node b").starts_with(&own));
    }

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
            beat("ws://busy/v1/ws", 1000, 50.0),
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
