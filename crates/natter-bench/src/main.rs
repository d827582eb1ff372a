//! `natter-bench`: a load generator for `natterd` that speaks Natter's real protocol.
//!
//! Every simulated device is a real account logged in over REST (created once in a setup phase
//! and cached in a JSON file), holding a real WebSocket to `GET /v1/ws`. Message bodies are
//! random bytes of a realistic ciphertext size: the server never decrypts, so encryption is left
//! out of the load path. Connections are spread over several worker processes (this binary
//! re-executed with the hidden `worker` subcommand, driven over stdin/stdout JSON lines) and
//! several source addresses in 127.0.0.0/8, because one process may hold only 20,000 open files
//! and one address pair has only ~28,000 ephemeral ports.

mod cli;
mod conn;
mod control;
mod fleet;
mod payload;
mod procstat;
mod report;
mod scenarios;
mod setup;
mod stats;
mod worker;

use clap::Parser;

/// Runs one scenario, or a worker when the coordinator started this binary as one. A single
/// thread per process: the load is spread over worker processes instead.
fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            cli::Command::Worker => worker::run().await,
            cli::Command::Idle(args) => scenarios::idle::run(cli.common, args).await,
            cli::Command::Direct(args) => scenarios::direct::run(cli.common, args).await,
            cli::Command::Room(args) => scenarios::room::run(cli.common, args).await,
            cli::Command::Offline(args) => scenarios::offline::run(cli.common, args).await,
            cli::Command::Reconnect(args) => scenarios::reconnect::run(cli.common, args).await,
            cli::Command::Soak(args) => scenarios::soak::run(cli.common, args).await,
            cli::Command::Overload(args) => scenarios::overload::run(cli.common, args).await,
        }
    })
}
