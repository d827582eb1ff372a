//! Server configuration, parsed from flags and `NATTER_*` environment variables by `natterd`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the store lives, chosen by the database URL's scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded SQLite file (`sqlite:path` or `sqlite://path`).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://...` or `postgresql://...`).
    Postgres(Secret),
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    /// Parses `sqlite:path`, `sqlite://path` (any `?` options dropped) or `postgres://...` /
    /// `postgresql://...`; the error says which forms are accepted.
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(Secret(url.to_owned())))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(
                    "a sqlite: URL needs a file path, such as sqlite://natter-data/natter.db"
                        .into(),
                );
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else {
            Err("the database URL must start with sqlite:// or postgres://".into())
        }
    }
}

/// A string that may hold a password (a database URL): its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where clients connect (informational; `run` takes a bound listener).
    pub listen: SocketAddr,
    /// The store.
    pub database: DatabaseUrl,
    /// PostgreSQL connections this node may hold (nodes × this must stay under the server's
    /// `max_connections`).
    pub database_pool: u32,
    /// How long a login's token lasts.
    pub token_ttl: Duration,
    /// Argon2id memory cost, KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Redis, for cluster fan-out; without it the node delivers to its own connections only.
    pub redis_url: Option<Secret>,
    /// The cluster's name: the prefix of its Redis keys (default `natter`).
    pub cluster_name: String,
    /// The WebSocket URL clients use to reach this node (default `ws://<listen>/v1/ws`).
    pub public_url: Option<String>,
    /// Rate limits.
    pub limits: natter_core::ratelimit::Limits,
    /// WebSocket gateway settings.
    pub gateway: GatewayConfig,
}

/// Gateway settings.
#[derive(Clone, Copy, Debug)]
pub struct GatewayConfig {
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Events queued for one connection before it counts as too slow and is closed.
    pub outbound_queue: usize,
    /// Sends this node works on at once; past that, a send is refused with `rate_limited`
    /// and a retry time, rather than queued behind the others for seconds.
    pub sends_in_flight: usize,
    /// How long a send refused because the node is busy first waits; the wait doubles while
    /// the connection's refusals continue.
    pub busy_retry: Duration,
    /// When the server shuts down, its connections are closed at random moments over this
    /// long, so their clients reconnect to other nodes gradually rather than all at once.
    pub drain: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(defaults::IDLE_TIMEOUT_SECS),
            outbound_queue: defaults::OUTBOUND_QUEUE,
            sends_in_flight: defaults::SENDS_IN_FLIGHT,
            busy_retry: Duration::from_millis(defaults::BUSY_RETRY_MS),
            drain: Duration::from_secs(defaults::DRAIN_SECS),
        }
    }
}

/// natterd's defaults, shared by its flags and [`Config::new`].
pub mod defaults {
    /// PostgreSQL connections per node.
    pub const DATABASE_POOL: u32 = 16;
    /// Days a login's token stays valid after its last use.
    pub const TOKEN_TTL_DAYS: u64 = 30;
    /// Argon2id memory cost, KiB (OWASP's minimum).
    pub const ARGON2_MEMORY_KIB: u32 = 19_456;
    /// Argon2id passes.
    pub const ARGON2_ITERATIONS: u32 = 2;
    /// The prefix of a cluster's Redis keys.
    pub const CLUSTER_NAME: &str = "natter";
    /// Seconds a WebSocket may stay silent.
    pub const IDLE_TIMEOUT_SECS: u64 = 60;
    /// Events queued for one connection before it counts as too slow.
    pub const OUTBOUND_QUEUE: usize = 1024;
    /// Sends one node works on at once: about 1.5 s of work for one core at the measured
    /// ~2,800 messages a second, so bursts queue and only a lasting overload is refused
    /// (docs/benchmarks.md, fourth round).
    pub const SENDS_IN_FLIGHT: usize = 4096;
    /// Milliseconds a send refused because the node is busy first waits (then more, while
    /// refusals continue).
    pub const BUSY_RETRY_MS: u64 = 250;
    /// Seconds over which a draining node closes its connections.
    pub const DRAIN_SECS: u64 = 5;
}

impl Config {
    /// The defaults natterd uses when no flag says otherwise, for a node on `listen` with
    /// `database`: 30-day tokens, OWASP's argon2id minimum, no Redis, default limits.
    pub fn new(listen: SocketAddr, database: DatabaseUrl) -> Self {
        Self {
            listen,
            database,
            database_pool: defaults::DATABASE_POOL,
            token_ttl: Duration::from_secs(defaults::TOKEN_TTL_DAYS * 24 * 3600),
            argon2_memory_kib: defaults::ARGON2_MEMORY_KIB,
            argon2_iterations: defaults::ARGON2_ITERATIONS,
            redis_url: None,
            cluster_name: defaults::CLUSTER_NAME.to_owned(),
            public_url: None,
            limits: natter_core::ratelimit::Limits::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            "sqlite://natter-data/natter.db".parse(),
            Ok(DatabaseUrl::Sqlite("natter-data/natter.db".into()))
        );
        assert_eq!(
            "sqlite:/tmp/x.db?mode=rwc".parse(),
            Ok(DatabaseUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(matches!(
            "postgres://u:pw@h/db".parse(),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!("mysql://h/db".parse::<DatabaseUrl>().is_err());
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
        assert_eq!(
            format!("{:?}", Secret("postgres://u:hunter2@h".into())),
            "Secret(..)"
        );
    }
}
