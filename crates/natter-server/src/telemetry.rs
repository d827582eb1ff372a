//! Log output: human-readable by default, JSON lines with `--log-json`. The writer is a
//! parameter so tests can capture what the server logs. Colours only on a terminal: in a file
//! they are noise, and every connection's span keeps its fields formatted with them.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber, with colours if `ansi` (and `NO_COLOR` is not set).
/// `RUST_LOG` overrides the default filter (`info`).
pub fn init<W>(json: bool, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi && !json && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
        .with_writer(writer);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}
