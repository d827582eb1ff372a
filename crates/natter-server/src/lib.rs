//! `natterd`, the Natter server, as a library: [`run`] serves the API on a bound listener
//! until a shutdown signal; `main.rs` only parses flags and calls it.
//!
//! What it is: the transport and the wiring around natter-core's services:
//! - [`routes`]: the HTTP route table and handlers; [`extract`], [`auth`], [`error`]: their
//!   request and response plumbing (errors become problem+json);
//! - [`gateway`]: the WebSocket gateway (each socket's loop, its delivery and its frames);
//! - [`open_store`]: natter-store's SQLite or PostgreSQL store, as configured;
//! - natter-cluster, when `--redis-url` is set: everything Redis (the cluster bus, heartbeats,
//!   presence on other nodes, shared rate-limit buckets), behind natter-core's traits;
//! - [`observe`], [`process_metrics`]: metrics; [`admin`]: the admin listener;
//! - [`config`], [`telemetry`], [`state`], [`datafiles`]: process setup.
//!
//! What it is not: the rules are natter-core's (accounts, keys, connections, conversations,
//! messages, receipts, presence, rate limits, the host assigner, the fan-out bus); the wire
//! types are natter-proto's (with the close codes and the stable error codes); it never sees
//! plaintext or depends on natter-crypto.
pub mod admin;
pub mod auth;
pub mod config;
pub mod datafiles;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod observe;
pub mod process_metrics;
pub mod routes;
pub mod state;
pub mod telemetry;

/// The rate-limit settings [`config::Config`] is made of (natter-core's).
pub use natter_core::ratelimit;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, DatabaseUrl};
use crate::state::{AppState, Services};
use natter_cluster::{Node, Redis, RedisBuckets, RedisBus, RemotePresence};
use natter_core::accounts::Accounts;
use natter_core::assigner::Assigner;
use natter_core::credentials::Passwords;
use natter_core::fanout::{Bus, LocalBus, Registry};
use natter_core::messages::{Admission, Messenger};
use natter_core::presence::{OtherNodes, Presence};
use natter_core::ratelimit::RateLimits;
use natter_core::store::Store;

use natter_store::{PgStore, SqliteStore};

/// Opens the configured store, creating an embedded database's directory and file (private to
/// natterd's user) if needed; a PostgreSQL pool holds up to `pool` connections.
///
/// # Errors
/// The database cannot be opened or migrated.
pub async fn open_store(database: &DatabaseUrl, pool: u32) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database {
        DatabaseUrl::Sqlite(path) => {
            datafiles::prepare(path)?;
            Arc::new(SqliteStore::open(path).await?)
        }
        DatabaseUrl::Postgres(url) => Arc::new(PgStore::open(&url.0, pool).await?),
    })
}

/// Serves the API on `listener` (and metrics and operator actions on `admin`, if given) until
/// `shutdown` completes, then finishes in-flight requests.
///
/// # Errors
/// The store cannot be opened, or serving fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    observe::handle();
    let address = listener
        .local_addr()
        .context("reading the listener's address")?;
    let public_url = public_url(&config, address)?;
    let passwords = Arc::new(Passwords::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
    )?);
    // Held until natterd exits: no second process serves the same SQLite file.
    let _lock = match &config.database {
        DatabaseUrl::Sqlite(path) => Some(datafiles::lock(path)?),
        DatabaseUrl::Postgres(_) => None,
    };
    let store = open_store(&config.database, config.database_pool).await?;
    // A store that opens but cannot write (a read-only file or mount, a read-only PostgreSQL)
    // would answer every write with an error: refuse to start instead.
    store
        .write_probe()
        .await
        .context("the store cannot be written: is the database (its file, directory, mount or PostgreSQL server) read-only?")?;
    let registry = Arc::new(Registry::default());
    let ws_url = public_url
        .clone()
        .unwrap_or_else(|| format!("ws://{address}/v1/ws"));
    let assigner = Arc::new(Assigner::new(ws_url.clone()));
    let redis = config
        .redis_url
        .as_ref()
        .map(|url| Redis::open(&url.0))
        .transpose()?;
    let (bus, limits, remote): (Arc<dyn Bus>, RateLimits, _) = match &redis {
        Some(redis) => {
            let node = Node {
                id: uuid::Uuid::new_v4().to_string(),
                cluster: config.cluster_name.clone(),
                ws_url,
            };
            tracing::info!(node.id = %node.id, cluster = %node.cluster, "cluster mode: fan-out and rate limits through Redis");
            let remote = RemotePresence::new(redis, node.clone(), Arc::clone(&assigner));
            let bus = RedisBus::start(redis, node, Arc::clone(&registry), Arc::clone(&assigner));
            let buckets = RedisBuckets::new(redis, &config.cluster_name);
            let limits = RateLimits::shared(&config.limits, Box::new(buckets));
            let remote: Arc<dyn OtherNodes> = Arc::new(remote);
            (Arc::new(bus), limits, Some(remote))
        }
        None => (
            Arc::new(LocalBus::new(Arc::clone(&registry))),
            RateLimits::new(&config.limits),
            None,
        ),
    };
    let presence = Presence::new(Arc::clone(&registry), remote);
    let limits = Arc::new(limits);
    let (stopping, shutdown_rx) = watch::channel(false);
    let draining = Draining {
        assigner: Arc::clone(&assigner),
        registry: Arc::clone(&registry),
        bus: Arc::clone(&bus),
        window: config.gateway.drain,
    };
    let state = AppState::new(Services {
        accounts: Accounts::new(
            Arc::clone(&store),
            passwords,
            Arc::clone(&limits),
            Arc::clone(&bus),
            presence,
            config.token_ttl,
        ),
        messenger: Messenger::new(
            Arc::clone(&store),
            Arc::clone(&bus),
            Arc::clone(&limits),
            Admission {
                sends_in_flight: config.gateway.sends_in_flight,
                busy_retry: config.gateway.busy_retry,
            },
        ),
        bus,
        assigner,
        store,
        token_ttl: config.token_ttl,
        limits,
        registry,
        gateway: config.gateway,
        ws_url_from_host: public_url.is_none(),
        shutdown: shutdown_rx,
    });
    tracing::info!(%address, "natterd listening");
    if let Some(admin) = admin {
        let address = admin
            .local_addr()
            .context("reading the admin listener's address")?;
        tracing::info!(%address, "admin listener (metrics, operator actions)");
        let mut stop = state.shutdown.clone();
        let router = admin::router(state.clone());
        tokio::spawn(async move {
            let serve = axum::serve(admin, router).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "admin listener failed");
            }
        });
    }
    tokio::spawn(report_gauges(state.clone()));
    tokio::spawn(remove_expired_devices(state.clone()));
    metrics::gauge!("natter_up").set(1.0);
    let assigner_on_stop = Arc::clone(&draining.assigner);
    // WebSocket sessions outlive HTTP's graceful shutdown (they are upgraded connections), so
    // they watch `stopping` and close themselves, telling clients to reconnect.
    let app = routes::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("draining: no new connections; closing open ones");
            assigner_on_stop.drain();
            let _ = stopping.send(true);
        })
        .await
        .context("serving HTTP")?;
    draining.finish().await;
    metrics::gauge!("natter_up").set(0.0);
    tracing::info!("natterd stopped");
    Ok(())
}

/// The WebSocket URL the host assigner hands out for this node: `--public-url`, else
/// `ws://<listen>/v1/ws`. A node listening on every interface (`0.0.0.0`, `::`) has no such
/// address: alone, it names itself by each request's `Host` header (`None` here); in a cluster,
/// where other nodes hand its URL out, it must be told.
///
/// # Errors
/// A cluster node listens on every interface without `--public-url`.
fn public_url(config: &Config, address: std::net::SocketAddr) -> anyhow::Result<Option<String>> {
    match &config.public_url {
        Some(url) => Ok(Some(url.clone())),
        None if !address.ip().is_unspecified() => Ok(Some(format!("ws://{address}/v1/ws"))),
        None if config.redis_url.is_some() => anyhow::bail!(
            "--listen {address} names every interface, not an address clients can reach: in a \
             cluster set --public-url (NATTER_PUBLIC_URL) to the WebSocket URL clients use for \
             this node, such as ws://node1.example.com:8080/v1/ws"
        ),
        None => Ok(None),
    }
}

/// What a stopping node waits for before it exits.
struct Draining {
    /// Withdraws the node, so clients are no longer sent to it.
    assigner: Arc<Assigner>,
    /// This node's connections, waited for until none is left.
    registry: Arc<Registry>,
    /// The fan-out bus, waited for until it has published every event.
    bus: Arc<dyn Bus>,
    /// The window over which sessions close.
    window: std::time::Duration,
}

impl Draining {
    /// Waits (boundedly) until every session has closed, answering what it was handling,
    /// every event has gone out to the other nodes, and the node is withdrawn from the host
    /// assigner.
    async fn finish(&self) {
        use std::time::Duration;
        // Closing may wait a second on a slow peer; past that, give up on stragglers.
        let deadline = tokio::time::Instant::now() + self.window + Duration::from_secs(3);
        while self.registry.connections() > 0
            || self.bus.unpublished() > 0
            || !self.assigner.is_withdrawn()
        {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    connections = self.registry.connections(),
                    unpublished = self.bus.unpublished(),
                    "draining: giving up waiting"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("drained");
    }
}

/// Every few seconds until shutdown, sets the gauges that are read rather than counted.
async fn report_gauges(state: AppState) {
    let mut stop = state.shutdown.clone();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut sends = state.registry.send_meter();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => return,
            _ = tick.tick() => {}
        }
        metrics::gauge!("natter_connections").set(state.registry.connections() as f64);
        metrics::gauge!("natter_outbound_queued").set(state.registry.queued() as f64);
        metrics::gauge!("natter_sends_per_second").set(sends.per_second());
        if let Ok(depth) = state.store.inbox_depth().await {
            metrics::gauge!("natter_inbox_depth").set(depth as f64);
        }
    }
}

/// How often a node removes the devices whose tokens expired (each node does; it is idempotent).
const EXPIRED_DEVICES_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Devices removed per statement, so a large first removal holds the writer only briefly.
const EXPIRED_DEVICES_BATCH: u32 = 500;

/// Removes devices unused for the token lifetime, at start and then every
/// [`EXPIRED_DEVICES_EVERY`], in batches: their keys go with them, so nobody encrypts to them
/// any more. (Listings leave out expired devices meanwhile.)
async fn remove_expired_devices(state: AppState) {
    let mut stop = state.shutdown.clone();
    let mut tick = tokio::time::interval(EXPIRED_DEVICES_EVERY);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => return,
            _ = tick.tick() => {}
        }
        let (now, mut removed) = (natter_core::clock::now_ms(), 0);
        loop {
            match state
                .store
                .delete_expired_devices(now, EXPIRED_DEVICES_BATCH)
                .await
            {
                Ok(0) => break,
                Ok(batch) => removed += batch,
                Err(error) => {
                    tracing::warn!(%error, "could not remove expired devices");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed devices whose tokens expired");
        }
    }
}
