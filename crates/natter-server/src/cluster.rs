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
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fanout::{Bus, Outbound, Registry};

/// The channel every node publishes to and subscribes to.
const CHANNEL: &str = "natter:fanout";
/// Events waiting to be published before new ones are dropped (and recovered from the store).
const PUBLISH_QUEUE: usize = 65_536;

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
        code: u16,
        reason: String,
    },
}

/// What goes on the channel.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The publishing node, which already delivered it locally.
    origin: String,
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
            Event::Close { code, .. } => Outbound::Close(code, "account suspended"),
        }
    }
}

/// Frame kinds are metric labels: keep them to the known, static set.
fn static_kind(kind: &str) -> &'static str {
    match kind {
        "receipt" => "receipt",
        "typing" => "typing",
        _ => "event",
    }
}

/// The Redis-backed bus of one node.
pub struct RedisBus {
    node: String,
    registry: Arc<Registry>,
    outgoing: mpsc::Sender<String>,
}

impl RedisBus {
    /// Connects to Redis at `url` and starts this node's publisher and subscriber tasks. They
    /// reconnect by themselves whenever Redis goes away.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn start(url: &str, node: String, registry: Arc<Registry>) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid Redis URL: {e}"))?;
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish(client.clone(), queue));
        tokio::spawn(subscribe(client, node.clone(), Arc::clone(&registry)));
        Ok(Self {
            node,
            registry,
            outgoing,
        })
    }

    fn publish(&self, target: Target, event: &Outbound) {
        metrics::counter!("natter_bus_published_total", "bus" => "redis").increment(1);
        let envelope = Envelope {
            origin: self.node.clone(),
            target,
            event: Event::from_outbound(event),
        };
        let text = serde_json::to_string(&envelope).expect("envelopes always serialize");
        if self.outgoing.try_send(text).is_err() {
            // Redis is down or slow: the recipients on other nodes recover from the store.
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
            &event,
        );
    }

    fn publish_to_device(&self, user: UserId, device: DeviceId, event: Outbound) {
        self.registry.deliver_to_device(user, device, &event);
        self.publish(Target::Device { user, device }, &event);
    }
}

/// Waits before reconnecting to Redis.
const RETRY: Duration = Duration::from_secs(1);

/// Publishes queued events in order, reconnecting as needed.
async fn publish(client: redis::Client, mut queue: mpsc::Receiver<String>) {
    let mut pending: Option<String> = None;
    loop {
        let mut connection = match client.get_multiplexed_async_connection().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis to publish; delivering locally only");
                // Drop what piles up meanwhile rather than block senders; the store has it.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let text = match pending.take() {
                Some(text) => text,
                None => match queue.recv().await {
                    Some(text) => text,
                    None => return,
                },
            };
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(&text)
                .query_async(&mut connection)
                .await;
            if let Err(error) = sent {
                tracing::warn!(%error, "publishing to Redis failed; reconnecting");
                pending = Some(text);
                break;
            }
        }
    }
}

/// Delivers events published by other nodes to this node's connections.
async fn subscribe(client: redis::Client, node: String, registry: Arc<Registry>) {
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis to subscribe; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(error) = pubsub.subscribe(CHANNEL).await {
            tracing::warn!(%error, "cannot subscribe to the fan-out channel; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        tracing::info!("subscribed to cluster fan-out");
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
                tracing::warn!("ignoring a malformed fan-out event");
                continue;
            };
            if envelope.origin == node {
                continue;
            }
            metrics::counter!("natter_bus_received_total", "bus" => "redis").increment(1);
            let event = envelope.event.into_outbound();
            match envelope.target {
                Target::Users { users, skip } => registry.deliver(&users, skip, &event),
                Target::Device { user, device } => registry.deliver_to_device(user, device, &event),
            }
        }
        tracing::warn!("lost the Redis subscription; resubscribing");
        tokio::time::sleep(RETRY).await;
    }
}
