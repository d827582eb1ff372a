//! Log output: human-readable by default, JSON lines with `--log-json`. The writer is a
//! parameter so tests can capture what the server logs. Colours only on a terminal: in a file
//! they are noise, and every connection's span keeps its fields formatted with them.
//!
//! Third-party crates that log what passes through them at debug or trace level (whole
//! WebSocket frames, request bodies, bound values) are capped at `info` whatever `RUST_LOG`
//! says: message content, tokens and keys are never logged, at any level.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// The crates whose debug and trace output can carry payloads: frames (tungstenite), request
/// and response bodies or headers (hyper, h2, reqwest, axum's rejections, which quote the
/// body), queries and replies (sqlx, redis).
const CAPPED: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "axum",
    "axum_core",
    "sqlx",
    "redis",
    "rustls",
];

/// What [`CAPPED`] crates may log at most.
const CAP: LevelFilter = LevelFilter::INFO;

/// The filter that caps [`CAPPED`] crates at [`CAP`] and lets everything else through (for
/// `RUST_LOG` to decide).
fn payload_cap() -> Targets {
    CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |cap, target| cap.with_target(*target, CAP),
    )
}

/// Installs the global subscriber, with colours if `ansi` (and `NO_COLOR` is not set).
/// `RUST_LOG` overrides the default filter (`info`), under the cap on `CAPPED` crates.
pub fn init<W>(json: bool, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .and(payload_cap());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi && !json && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
        .with_writer(writer);
    if json {
        let layer = layer.json().flatten_event(true).with_current_span(true);
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init();
    }
}
