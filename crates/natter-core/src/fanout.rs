//! Fan-out: the node-local registry of connected devices, and the [`Bus`] that carries events
//! to them.
//!
//! The registry is node-local state (who is connected *here*); everything shared lives in the
//! store. [`LocalBus`] delivers straight into this node's registry; a cluster bus (Redis)
//! implements the same trait by publishing to the nodes that hold the recipients.
//!
//! Each connection has a bounded queue. Publishing never waits: when a connection's queue is
//! full, the connection is told to close (it reconnects and resyncs from its cursors), so a
//! slow recipient can neither slow a sender nor grow the server's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use natter_proto::close::CloseCode;
use natter_proto::ws::ServerFrame;
use natter_proto::{ConversationId, DeviceId, UserId};
use tokio::sync::{Notify, mpsc};

/// Serializes a frame once, for every recipient.
pub fn encode(frame: &ServerFrame) -> Frame {
    Frame::from(serde_json::to_string(frame).expect("server frames always serialize"))
}

/// A serialized server frame: JSON text, shared by every recipient without copying. It is
/// only made from a `String`, so it always holds UTF-8; the gateway hands its bytes to the
/// socket as a text message, which checks them again (15-40 ns a frame: docs/benchmarks.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// The frame's bytes (UTF-8 JSON), cheap to clone.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The frame's text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a Frame is made from a String")
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

/// An event for one connection. Frames are serialized once and shared by every recipient; the
/// event itself is queued as one [`Arc`] for all of a publish's recipients, which keeps each
/// connection's idle queue (its first block of slots) small.
#[derive(Clone, Debug)]
pub enum Outbound {
    /// A stored message: the connection checks it against its per-conversation watermark, so
    /// nothing is sent twice and gaps are filled from the store.
    Message {
        /// The conversation.
        conversation_id: ConversationId,
        /// The message's seq.
        seq: i64,
        /// When it was accepted (ms), for the accept-to-push latency.
        server_ts: i64,
        /// Accepted on another node (it came through the cluster bus).
        remote: bool,
        /// The `message` frame.
        frame: Frame,
    },
    /// A to-device item, checked against the device's inbox watermark.
    ToDevice {
        /// The inbox seq.
        seq: i64,
        /// The `to_device` frame.
        frame: Frame,
    },
    /// Any other frame (receipts, typing), sent as is; `kind` is its type.
    Frame {
        /// The frame's type, for metrics.
        kind: &'static str,
        /// The frame.
        frame: Frame,
    },
    /// Close the connection with this code and reason (an operator suspended the account).
    Close(CloseCode, &'static str),
    /// The cluster bus may have lost events (Redis went away): send whatever the store holds
    /// past the connection's watermarks.
    CatchUp,
}

/// Delivers events to the connected devices of users, wherever they are connected.
pub trait Bus: Send + Sync {
    /// To every connected device of `users`, except `skip` (the device that caused the event).
    fn publish_to_users(&self, users: &[UserId], skip: Option<DeviceId>, event: Outbound);
    /// To one device.
    fn publish_to_device(&self, user: UserId, device: DeviceId, event: Outbound);
    /// Events accepted but not yet handed to other nodes (a draining node waits for none).
    fn unpublished(&self) -> usize {
        0
    }
}

/// The single-node bus: delivers into this node's registry.
pub struct LocalBus {
    registry: Arc<Registry>,
}

impl LocalBus {
    /// A bus over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl Bus for LocalBus {
    fn publish_to_users(&self, users: &[UserId], skip: Option<DeviceId>, event: Outbound) {
        metrics::counter!("natter_bus_published_total", "bus" => "local").increment(1);
        self.registry.deliver(users, skip, &event);
    }

    fn publish_to_device(&self, user: UserId, device: DeviceId, event: Outbound) {
        metrics::counter!("natter_bus_published_total", "bus" => "local").increment(1);
        self.registry.deliver_to_device(user, device, &event);
    }
}

/// What the registry keeps of one connection: its queue, and how to tell it to close when
/// the queue is full.
struct Handle {
    id: u64,
    device: DeviceId,
    queue: mpsc::Sender<Arc<Outbound>>,
    kick: Arc<Notify>,
}

/// The devices connected to this node, by user.
#[derive(Default)]
pub struct Registry {
    users: RwLock<HashMap<UserId, Vec<Handle>>>,
    next_id: AtomicU64,
    connected: AtomicU64,
    sends: AtomicU64,
    /// Told when a user's first connection here opens (`true`) or their last one closes
    /// (`false`): cluster presence.
    presence: std::sync::OnceLock<mpsc::UnboundedSender<(UserId, bool)>>,
}

/// A connection's place in the registry; dropping it unregisters the connection.
pub struct Registration {
    registry: Arc<Registry>,
    user: UserId,
    id: u64,
    /// Events for this connection.
    pub events: mpsc::Receiver<Arc<Outbound>>,
    /// Notified when the connection fell too far behind and must close.
    pub kick: Arc<Notify>,
}

impl Registry {
    /// Registers a connection of `device` with a queue of `capacity` events.
    pub fn register(
        self: &Arc<Self>,
        user: UserId,
        device: DeviceId,
        capacity: usize,
    ) -> Registration {
        let (queue, events) = mpsc::channel(capacity.max(1));
        let kick = Arc::new(Notify::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Handle {
            id,
            device,
            queue,
            kick: Arc::clone(&kick),
        };
        let mut map = self.users.write().expect("registry lock poisoned");
        // Most users have one device connected here: room for one, not the default four.
        let handles = map.entry(user).or_insert_with(|| Vec::with_capacity(1));
        handles.push(handle);
        if handles.len() == 1 {
            self.tell_presence(user, true);
        }
        drop(map);
        self.connected.fetch_add(1, Ordering::Relaxed);
        Registration {
            registry: Arc::clone(self),
            user,
            id,
            events,
            kick,
        }
    }

    /// How many connections this node holds.
    pub fn connections(&self) -> u64 {
        self.connected.load(Ordering::Relaxed)
    }

    /// Sends every change of which users are connected here to `changes` from now on.
    pub fn watch_presence(&self, changes: mpsc::UnboundedSender<(UserId, bool)>) {
        let _ = self.presence.set(changes);
    }

    /// Tells the cluster presence watcher, if any, that `user` came online or went offline
    /// here.
    fn tell_presence(&self, user: UserId, online: bool) {
        if let Some(changes) = self.presence.get() {
            let _ = changes.send((user, online));
        }
    }

    /// Whether any device of `user` is connected to this node.
    pub fn has_user(&self, user: UserId) -> bool {
        self.users
            .read()
            .expect("registry lock poisoned")
            .contains_key(&user)
    }

    /// The users with a device connected to this node.
    pub fn users(&self) -> Vec<UserId> {
        self.users
            .read()
            .expect("registry lock poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Counts a send (message or to-device frame) from a client: the node's traffic, for the
    /// host assigner. Pings and cursor moves do not count: every idle connection sends them.
    pub fn note_send(&self) {
        self.sends.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends received from clients since the node started.
    pub fn sends(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }

    /// A meter of sends per second, starting now.
    pub fn send_meter(self: &Arc<Self>) -> SendMeter {
        SendMeter {
            registry: Arc::clone(self),
            last: (std::time::Instant::now(), self.sends()),
        }
    }

    /// Events queued for this node's connections, not yet taken by their sessions.
    pub fn queued(&self) -> usize {
        let map = self.users.read().expect("registry lock poisoned");
        map.values()
            .flatten()
            .map(|h| h.queue.max_capacity() - h.queue.capacity())
            .sum()
    }

    /// Tells every connection here to catch up from the store ([`Outbound::CatchUp`]).
    pub fn catch_up_all(&self) {
        let map = self.users.read().expect("registry lock poisoned");
        let event = Arc::new(Outbound::CatchUp);
        for handle in map.values().flatten() {
            offer(handle, &event);
        }
    }

    /// Queues `event` for every connection here of `users`, but the device `skip`.
    pub fn deliver(&self, users: &[UserId], skip: Option<DeviceId>, event: &Outbound) {
        let map = self.users.read().expect("registry lock poisoned");
        // Put behind an `Arc` once a local recipient is found (most cluster publishes have
        // none on a given node).
        let mut shared = None;
        for user in users {
            for handle in map.get(user).into_iter().flatten() {
                if Some(handle.device) != skip {
                    offer(
                        handle,
                        shared.get_or_insert_with(|| Arc::new(event.clone())),
                    );
                }
            }
        }
    }

    /// Queues `event` for the connections here of one device.
    pub fn deliver_to_device(&self, user: UserId, device: DeviceId, event: &Outbound) {
        let map = self.users.read().expect("registry lock poisoned");
        let mut shared = None;
        for handle in map
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|h| h.device == device)
        {
            offer(
                handle,
                shared.get_or_insert_with(|| Arc::new(event.clone())),
            );
        }
    }
}

/// Measures a node's traffic: sends received per second between readings.
pub struct SendMeter {
    registry: Arc<Registry>,
    last: (std::time::Instant, u64),
}

impl SendMeter {
    /// Sends per second since the previous reading.
    pub fn per_second(&mut self) -> f64 {
        let now = (std::time::Instant::now(), self.registry.sends());
        let elapsed = now.0.duration_since(self.last.0).as_secs_f64().max(0.001);
        let rate = now.1.saturating_sub(self.last.1) as f64 / elapsed;
        self.last = now;
        rate
    }
}

/// Queues an event without waiting; a full queue means the connection must go.
fn offer(handle: &Handle, event: &Arc<Outbound>) {
    metrics::counter!("natter_bus_received_total", "bus" => "local").increment(1);
    if let Err(mpsc::error::TrySendError::Full(_)) = handle.queue.try_send(Arc::clone(event)) {
        handle.kick.notify_one();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.registry.users.write().expect("registry lock poisoned");
        if let Some(handles) = map.get_mut(&self.user) {
            handles.retain(|h| h.id != self.id);
            if handles.is_empty() {
                map.remove(&self.user);
                self.registry.tell_presence(self.user, false);
            }
        }
        self.registry.connected.fetch_sub(1, Ordering::Relaxed);
    }
}
