//! `natterd`: flags and environment → [`Config`] → logging → [`natter_server::run`].

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use natter_server::config::{Config, DatabaseUrl, GatewayConfig, Secret, defaults};
use natter_server::ratelimit::{Kind, LimitSetting, Limits, Rate};
use tokio::signal::unix::SignalKind;

/// The Natter server. With no flags it keeps an embedded SQLite database in ./natter-data/
/// and listens on 127.0.0.1:8080.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "NATTER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Store: sqlite://PATH (embedded) or postgres://... (for a cluster).
    #[arg(
        long,
        env = "NATTER_DATABASE_URL",
        default_value = "sqlite://natter-data/natter.db",
        hide_env_values = true
    )]
    database_url: DatabaseUrl,
    /// PostgreSQL connections per node (keep nodes x this under PostgreSQL's max_connections).
    #[arg(long, env = "NATTER_DATABASE_POOL", default_value_t = defaults::DATABASE_POOL, value_parser = clap::value_parser!(u32).range(1..=1000))]
    database_pool: u32,
    /// Days a login's token stays valid after its last use (requests and open connections
    /// extend it, at most once a day).
    #[arg(long, env = "NATTER_TOKEN_TTL_DAYS", default_value_t = defaults::TOKEN_TTL_DAYS, value_parser = clap::value_parser!(u64).range(1..=3650))]
    token_ttl_days: u64,
    /// Seconds a WebSocket may stay silent before the server closes it (clients ping).
    #[arg(long, env = "NATTER_IDLE_TIMEOUT_SECS", default_value_t = defaults::IDLE_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(5..=3600))]
    idle_timeout_secs: u64,
    /// A rate limit, NAME=PER_SECOND:BURST (repeatable); see docs/operations.md for the names
    /// and defaults, such as device_messages=10:30.
    #[arg(long = "limit", env = "NATTER_LIMITS", value_delimiter = ',')]
    limits: Vec<LimitSetting>,
    /// Shorthand for --limit device_messages=RATE:BURST --limit user_messages=RATE:BURST.
    #[arg(long, env = "NATTER_SEND_RATE", requires = "send_burst")]
    send_rate: Option<f64>,
    /// The burst for --send-rate.
    #[arg(long, env = "NATTER_SEND_BURST", requires = "send_rate")]
    send_burst: Option<f64>,
    /// Redis for cluster mode (redis://host:6379): fan-out reaches devices on every node.
    #[arg(long, env = "NATTER_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// The cluster's name, the prefix of its Redis keys: nodes of one cluster share it.
    #[arg(long, env = "NATTER_CLUSTER_NAME", default_value = defaults::CLUSTER_NAME)]
    cluster_name: String,
    /// The WebSocket URL clients use to reach this node, as the host assigner hands it out
    /// (default `ws://<listen>/v1/ws`; listening on 0.0.0.0, a single node names itself by the
    /// request's Host header and a cluster node must set it).
    #[arg(long, env = "NATTER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Address of the admin listener (/metrics, operator actions); keep it private.
    #[arg(long, env = "NATTER_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Events queued for one connection before it counts as too slow and is closed.
    #[arg(long, env = "NATTER_OUTBOUND_QUEUE", default_value_t = defaults::OUTBOUND_QUEUE)]
    outbound_queue: usize,
    /// Sends this node works on at once; more are refused with `rate_limited` and a retry time
    /// instead of waiting behind the others.
    #[arg(long, env = "NATTER_SENDS_IN_FLIGHT", default_value_t = defaults::SENDS_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    sends_in_flight: usize,
    /// On SIGTERM (or SIGHUP, SIGINT), seconds over which open connections are closed (at random moments, so
    /// their clients reconnect to other nodes gradually); then the process exits.
    #[arg(long, env = "NATTER_DRAIN_SECS", default_value_t = defaults::DRAIN_SECS, value_parser = clap::value_parser!(u64).range(0..=600))]
    drain_secs: u64,
    /// Argon2id memory cost for password hashes, in KiB (OWASP's minimum is 19,456).
    #[arg(long, env = "NATTER_ARGON2_MEMORY_KIB", default_value_t = defaults::ARGON2_MEMORY_KIB)]
    argon2_memory_kib: u32,
    /// Argon2id passes for password hashes.
    #[arg(long, env = "NATTER_ARGON2_ITERATIONS", default_value_t = defaults::ARGON2_ITERATIONS)]
    argon2_iterations: u32,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "NATTER_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    natter_server::telemetry::init(
        args.log_json,
        std::io::stderr().is_terminal(),
        std::io::stderr,
    );
    let limits = limits(&args);
    let config = Config {
        listen: args.listen,
        database: args.database_url,
        database_pool: args.database_pool,
        token_ttl: Duration::from_secs(args.token_ttl_days * 24 * 3600),
        argon2_memory_kib: args.argon2_memory_kib,
        argon2_iterations: args.argon2_iterations,
        redis_url: args.redis_url.clone().map(Secret),
        cluster_name: args.cluster_name.clone(),
        public_url: args.public_url.clone(),
        limits,
        gateway: GatewayConfig {
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            outbound_queue: args.outbound_queue,
            sends_in_flight: args.sends_in_flight,
            drain: Duration::from_secs(args.drain_secs),
            ..GatewayConfig::default()
        },
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener {}", args.admin_listen))?;
    natter_server::run(config, listener, Some(admin), shutdown_signal()).await
}

/// The defaults, changed by --send-rate/--send-burst, then by each --limit.
fn limits(args: &Args) -> Limits {
    let mut limits = Limits::default();
    if let (Some(rate), Some(burst)) = (args.send_rate, args.send_burst) {
        for kind in [Kind::DeviceMessages, Kind::UserMessages] {
            limits.set(kind, Rate::new(rate, burst));
        }
    }
    for LimitSetting(kind, rate) in &args.limits {
        limits.set(*kind, *rate);
    }
    limits
}

/// Resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP: each drains the node and stops it. (A
/// hang-up, such as the terminal closing, used to kill natterd without draining.)
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT: shutting down"),
        () = unix_signal(SignalKind::terminate(), "SIGTERM") => tracing::info!("SIGTERM: shutting down"),
        () = unix_signal(SignalKind::hangup(), "SIGHUP") => tracing::info!("SIGHUP: shutting down"),
    }
}

/// Resolves when the process receives `kind` (named `name` in the log), or never if it
/// cannot listen for it.
async fn unix_signal(kind: SignalKind, name: &str) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(error) => {
            tracing::error!(%error, "cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}
