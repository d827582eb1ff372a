//! `natterd`, the Natter server, as a library: [`run`] serves the API on a bound listener
//! until a shutdown signal; `main.rs` only parses flags and calls it.
//!
//! The modules are named for the seed's services:
//! - [`accounts`], [`keys`], [`connections`], [`conversations`], [`messages`]: the services
//!   (rules and authorization);
//! - [`gateway`]: the WebSocket gateway; [`fanout`]: who is connected here and the bus that
//!   reaches them;
//! - [`store`]: persistence behind the [`store::Store`] trait (SQLite or PostgreSQL);
//! - [`routes`]: the HTTP route table and handlers; [`extract`], [`auth`], [`error`]: their
//!   request and response plumbing;
//! - [`config`], [`telemetry`], [`state`]: process setup.

pub mod accounts;
pub mod auth;
pub mod config;
pub mod connections;
pub mod conversations;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod gateway;
pub mod keys;
pub mod messages;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Passwords;
use crate::config::{Config, DatabaseUrl};
use crate::fanout::{LocalBus, Registry};
use crate::messages::Messenger;
use crate::state::AppState;
use crate::store::{PgStore, SqliteStore, Store};

/// Opens the configured store, creating an embedded database's directory if needed.
///
/// # Errors
/// The database cannot be opened or migrated.
pub async fn open_store(database: &DatabaseUrl) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database {
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            Arc::new(SqliteStore::open(path).await?)
        }
        DatabaseUrl::Postgres(url) => Arc::new(PgStore::open(&url.0).await?),
    })
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
///
/// # Errors
/// The store cannot be opened, or serving fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let passwords = Arc::new(Passwords::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
    )?);
    let store = open_store(&config.database).await?;
    let registry = Arc::new(Registry::default());
    let bus = Arc::new(LocalBus::new(Arc::clone(&registry)));
    let (stopping, shutdown_rx) = watch::channel(false);
    let state = AppState {
        messenger: Messenger::new(Arc::clone(&store), bus),
        store,
        token_ttl: config.token_ttl,
        passwords,
        registry,
        gateway: config.gateway,
        shutdown: shutdown_rx,
    };
    let address = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%address, "natterd listening");
    // WebSocket sessions outlive HTTP's graceful shutdown (they are upgraded connections), so
    // they watch `stopping` and close themselves, telling clients to reconnect.
    axum::serve(listener, routes::app(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(true);
        })
        .await
        .context("serving HTTP")?;
    tracing::info!("natterd stopped");
    Ok(())
}

/// Milliseconds since the Unix epoch: the time format of every stored and sent timestamp.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
