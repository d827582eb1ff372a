//! natter-core: the Natter server's rules, with no transport and no database driver.
//!
//! What it is:
//! - the services (rules and authorization), failing with [`service_error::ServiceError`]:
//!   [`accounts`], [`keys`], [`connections`] (the social relationship, with its state machine),
//!   [`conversations`], [`messages`] (the sender service), [`receipts`], [`member_lists`],
//!   [`identity`], [`device_lists`]; [`visibility`]: who may see whom; [`credentials`]:
//!   password hashes and tokens; [`ratelimit`]: abuse controls; [`presence`]: who is online;
//! - [`store`]: the store's contract, one trait per role, with a [`store::StoreError`] that
//!   names no driver;
//! - [`fanout`]: who is connected to this node (the registry) and the [`fanout::Bus`] that
//!   reaches them, carrying serialized frames as [`fanout::Frame`]s (bytes, not a WebSocket
//!   library's type);
//! - [`assigner`]: the host assigner's ranking of nodes; [`close`]: why connections are
//!   closed; [`clock`]: the wall clock every timestamp comes from.
//!
//! What it is not: it knows no HTTP or WebSocket library (natter-server has the handlers and
//! the gateway), no database driver (natter-store implements [`store::Store`] for SQLite and
//! PostgreSQL) and no Redis (natter-cluster implements the bus, presence and rate-limit
//! buckets across nodes behind [`fanout::Bus`], [`presence::OtherNodes`] and
//! [`ratelimit::SharedBuckets`]). CI checks that it has no normal dependency on axum, sqlx,
//! rusqlite or redis. The wire types are natter-proto's.
pub mod accounts;
pub mod assigner;
pub mod clock;
pub mod close;
pub mod connections;
pub mod conversations;
pub mod credentials;
pub mod device_lists;
pub mod fanout;
pub mod identity;
pub mod keys;
pub mod member_lists;
pub mod messages;
pub mod presence;
pub mod ratelimit;
pub mod receipts;
pub mod service_error;
pub mod store;
pub mod visibility;
