//! The JSON lines between the coordinating process and its workers: commands on the worker's
//! stdin, events on its stdout.

use natter_proto::ConversationId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One device a worker holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Its bearer token.
    pub token: String,
    /// The WebSocket URL of the node it connects to (`ws://host:port/v1/ws`).
    pub server: String,
    /// The source address it connects from.
    pub source: Ipv4Addr,
    /// Conversations it sends to (it picks one at random for each message).
    pub conversations: Vec<ConversationId>,
}

/// A command to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// The worker's devices and settings; the first command.
    Plan {
        /// The devices.
        devices: Vec<DeviceSpec>,
        /// Random bytes per message body.
        payload_bytes: usize,
        /// Stamped in every body, so deliveries of earlier runs are told apart.
        run: u64,
        /// Handshakes in flight.
        connect_concurrency: usize,
        /// How often devices send their `delivered` cursors (ms).
        ack_interval_ms: u64,
        /// With `--gateway`, the HTTP base whose host assigner a device asks again before
        /// each reconnection, as natter-client does; without it, devices keep their node.
        #[serde(default)]
        gateway: Option<String>,
    },
    /// Open every device's connection (reconnecting with backoff whenever it drops).
    Connect,
    /// Send `rate` messages a second in total from random devices for `secs` seconds.
    Load {
        /// Messages per second from this worker.
        rate: f64,
        /// Seconds.
        secs: f64,
    },
    /// Drop every connection abruptly (no close frame); devices reconnect with backoff.
    Cut,
    /// Drop the connections of a random `fraction` of the devices (0 to 1) the same way.
    Churn {
        /// Share of the devices cut.
        fraction: f64,
    },
    /// Send the last cursors, close, report [`Event::Final`] and exit.
    Finish,
}

/// Cumulative counters of one worker (summed over workers by the coordinator).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Connections open now.
    pub open: u64,
    /// Connections that finished their sync (`synced`), in total over reconnections.
    pub syncs: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Connections the server closed (or that broke) without being asked.
    pub dropped: u64,
    /// Sends asked of the devices by the pacer.
    pub issued: u64,
    /// Messages sent (resends after a reconnect not counted again).
    pub sent: u64,
    /// Sends refused with an `error` frame and given up (no retry time).
    pub refused: u64,
    /// Refusals with a retry time (`rate_limited`), or of a kind natter-client retries
    /// (`store_unavailable`), after each of which the send was queued to be made again once
    /// the wait is over, as clients do; one send can be refused several times.
    pub retried: u64,
    /// Messages acked.
    pub acked: u64,
    /// Messages of this run delivered for the first time to a device.
    pub delivered: u64,
    /// Messages delivered again on the same connection (a protocol violation).
    pub duplicates: u64,
    /// Messages delivered again on a new connection of the same device, below its highest
    /// seq seen (expected after a reconnect until the delivered cursor caught up; dropped).
    pub redelivered: u64,
    /// Messages from earlier runs (sync of old traffic).
    pub stale: u64,
    /// Sends skipped because the device's queue was full (it was reconnecting).
    pub skipped: u64,
    /// Reconnections that the host assigner sent to another node than the last one.
    pub moved: u64,
}

impl Counters {
    /// Adds another worker's counters to these. Every field is summed, `open` too: the total
    /// is the connections open across the fleet.
    pub fn add(&mut self, other: &Self) {
        self.open += other.open;
        self.syncs += other.syncs;
        self.connect_failures += other.connect_failures;
        self.dropped += other.dropped;
        self.issued += other.issued;
        self.sent += other.sent;
        self.refused += other.refused;
        self.retried += other.retried;
        self.acked += other.acked;
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.redelivered += other.redelivered;
        self.stale += other.stale;
        self.skipped += other.skipped;
        self.moved += other.moved;
    }
}

/// A latency histogram in transit: (value in µs, count) pairs.
pub type Buckets = Vec<(u64, u64)>;

/// An event from a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The counters now (every 200 ms).
    Stats(Counters),
    /// The `Load` command finished its sends.
    LoadDone,
    /// The last counters and the latency histograms; the worker exits after this.
    Final {
        /// Counters.
        counters: Counters,
        /// Send to delivery.
        delivery: Buckets,
        /// Send to ack.
        ack: Buckets,
        /// The first connection and server errors the worker saw (at most a few), for the
        /// report.
        errors: Vec<String>,
        /// How many devices were last connected to each node (WebSocket URL).
        #[serde(default)]
        nodes: BTreeMap<String, u64>,
    },
}
