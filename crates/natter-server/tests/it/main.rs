//! natterd's integration tests: one binary, the real server on an ephemeral port with a fresh
//! database, driven over HTTP by the real client library. Every test runs on SQLite and on
//! PostgreSQL (see `helpers::backend_tests!`).

mod helpers;

mod abuse;
mod accounts;
mod cluster;
mod connections;
mod delivery;
mod errors;
mod failover;
mod identity;
mod keys;
mod lifecycle;
mod messaging;
mod metrics;
mod outage;
mod presence;
mod process;
mod rooms;
mod web;
mod ws;
