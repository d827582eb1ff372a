//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load generator for natterd: real accounts, real WebSockets, random ciphertext-sized payloads.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios (and the hidden worker).
#[derive(Subcommand)]
pub enum Command {
    /// Open N connections and hold them: connect rate, natterd memory per connection, idle CPU.
    Idle(IdleArgs),
    /// N online users send 1:1 messages to random peers at a total rate.
    Direct(DirectArgs),
    /// Rooms of K members, posts at a total rate; every delivered copy counts.
    Room(RoomArgs),
    /// Queue M messages for an offline device, connect it, time until it has them all.
    Offline(OfflineArgs),
    /// N devices under light traffic lose their connections: time until all are back and synced.
    Reconnect(ReconnectArgs),
    /// Hours of 1:1 traffic with reconnect churn: natterd's memory and open files sampled, and
    /// every message delivered once.
    Soak(SoakArgs),
    /// 1:1 traffic above what natterd sustains: fails unless every acked message is
    /// delivered once within the promise (10 s) and the excess is refused with a retry time.
    Overload(OverloadArgs),
    /// Internal: holds connections for the coordinating process (JSON lines on stdin/stdout).
    #[command(hide = true)]
    Worker,
}

/// Flags every scenario takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// natterd's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Where accounts, tokens and conversations made in setup are cached for later runs.
    #[arg(long, global = true, default_value = "natter-bench-accounts.json")]
    pub accounts: PathBuf,
    /// Worker processes holding the connections (each may hold at most ~19,000).
    #[arg(long, global = true, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Source addresses 127.0.0.1, 127.0.0.2, ... to spread connections over (ephemeral ports).
    #[arg(long, global = true, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=250))]
    pub source_addrs: u32,
    /// Random bytes per message body before base64 (a short text's Megolm ciphertext is ~200-400).
    #[arg(long, global = true, default_value_t = 256, value_parser = clap::value_parser!(u32).range(24..=6000))]
    pub payload_bytes: u32,
    /// REST calls in flight during setup.
    #[arg(long, global = true, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// WebSocket handshakes in flight per worker.
    #[arg(long, global = true, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// How often devices send their cumulative `delivered` cursors, in ms.
    #[arg(long, global = true, default_value_t = 1000)]
    pub ack_interval_ms: u64,
    /// natterd's process ids (several for a cluster, comma-separated or repeated), to report
    /// their memory and CPU, summed.
    #[arg(long, global = true, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Ask --server's host assigner (GET /v1/gateway) which node each device should connect
    /// to, as clients of a cluster do, instead of connecting every device to --server (not
    /// for `offline`, which refuses it). A server without a host assigner is an error.
    #[arg(long, global = true)]
    pub gateway: bool,
    /// Also write the JSON result to this file (it is always printed after the table).
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
}

/// `idle`.
#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    /// Connections (one device each).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold them once all are open (heartbeats only).
    #[arg(long, default_value_t = 10.0)]
    pub hold_secs: f64,
}

/// Traffic shape shared by the scenarios that send messages.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Messages per second, in total over all senders.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Seconds to wait after sending for the last acks and deliveries.
    #[arg(long, default_value_t = 15.0)]
    pub drain_secs: f64,
}

/// `direct`.
#[derive(Args, Clone, Debug)]
pub struct DirectArgs {
    /// Online users (one device each).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub users: usize,
    /// Each user i is connected to users i+1 ..= i+peers (mod n), so has 2 x peers conversations.
    #[arg(long, default_value_t = 1)]
    pub peers: usize,
    /// Rate and duration.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `room`.
#[derive(Args, Clone, Debug)]
pub struct RoomArgs {
    /// Members per room (2 to 1,000), all online.
    #[arg(short = 'k', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub members: u32,
    /// Rooms (with distinct members).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Rate and duration.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `offline`.
#[derive(Args, Clone, Debug)]
pub struct OfflineArgs {
    /// Messages queued for the offline device.
    #[arg(short = 'm', long, default_value_t = 10_000)]
    pub messages: usize,
    /// Sends in flight (awaiting their ack) while queueing.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Give up after this many seconds in any phase.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_secs: f64,
}

/// `reconnect`.
#[derive(Args, Clone, Debug)]
pub struct ReconnectArgs {
    /// Devices (users with one device each, paired in direct conversations).
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub users: usize,
    /// SIGTERM this natterd instead of cutting the connections on the client side; something
    /// else (a supervisor loop) must start it again on the same address and database.
    #[arg(long, conflicts_with = "kill_pid")]
    pub restart_pid: Option<u32>,
    /// SIGKILL this natterd, one node of a cluster, and leave it dead: with --gateway the
    /// devices that were on it reconnect to the nodes the host assigner names (a failover).
    #[arg(long, conflicts_with = "restart_pid")]
    pub kill_pid: Option<u32>,
    /// SIGSTOP this natterd for --pause-secs, then SIGCONT it (a node that hangs and comes
    /// back): its devices keep their connections; everything must still arrive once.
    #[arg(long, conflicts_with_all = ["restart_pid", "kill_pid"])]
    pub pause_pid: Option<u32>,
    /// How long --pause-pid stays stopped.
    #[arg(long, default_value_t = 5.0)]
    pub pause_secs: f64,
    /// Give up waiting for everyone to be back after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_secs: f64,
    /// Background traffic; the cut comes a third of the way through it.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `overload`.
#[derive(Args, Clone, Debug)]
pub struct OverloadArgs {
    /// The direct traffic, at the offered rate (e.g. 2x and 5x what natterd sustains).
    #[command(flatten)]
    pub direct: DirectArgs,
    /// The delivery promise: every acked message reaches its recipient within this many
    /// seconds of the send the server accepted.
    #[arg(long, default_value_t = 10.0)]
    pub promise_secs: f64,
}

/// `soak`.
#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// Online users (one device each), paired in direct conversations.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub users: usize,
    /// Cut a share of the devices' connections this often (seconds; 0: never).
    #[arg(long, default_value_t = 30.0)]
    pub churn_every_secs: f64,
    /// The share of the devices cut each time (they reconnect with backoff).
    #[arg(long, default_value_t = 0.1)]
    pub churn_fraction: f64,
    /// Sample natterd's memory and open files (of --pid) this often (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub sample_every_secs: f64,
    /// Rate and duration (an hour: --secs 3600).
    #[command(flatten)]
    pub load: LoadArgs,
}
