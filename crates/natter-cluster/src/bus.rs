//! [`RedisBus`]: events published once on the cluster's Redis channel, and delivered by every
//! other node to its own connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::StreamExt;
use natter_proto::close::CloseCode;
use natter_proto::{ConversationId, DeviceId, UserId};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use super::heartbeat::heartbeat;
use super::remote_presence::write_presence;
use super::{Node, RETRY, Redis};
use natter_core::assigner::Assigner;
use natter_core::close;
use natter_core::fanout::{Bus, Frame, Outbound, Registry};

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
    /// The event as it crosses nodes (frames as text).
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

    /// The event for this node's connections; reasons and frame kinds map back to the static
    /// set metrics and close frames use.
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
                frame: Frame::from(frame),
            },
            Event::ToDevice { seq, frame } => Outbound::ToDevice {
                seq,
                frame: Frame::from(frame),
            },
            Event::Frame { frame_kind, frame } => Outbound::Frame {
                kind: static_kind(&frame_kind),
                frame: Frame::from(frame),
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

    /// Queues an event for the publisher without waiting: if the queue is full, the event is
    /// dropped and the other nodes are later told to catch up from the store.
    fn publish(&self, target: Target, event: Outbound) {
        metrics::counter!("natter_bus_published_total", "bus" => "redis").increment(1);
        let unpublished = Unpublished {
            published_ms: natter_core::clock::now_ms(),
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
            .then(|| (natter_core::clock::now_ms(), Target::All, Outbound::CatchUp))
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
            let lag = (natter_core::clock::now_ms() - envelope.published_ms).max(0) as f64 / 1000.0;
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
}
