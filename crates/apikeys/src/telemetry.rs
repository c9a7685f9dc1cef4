//! Logging: `tracing` to stderr, human-readable or JSON.
//!
//! Nothing logged here or in the HTTP layer contains a full key, a key hash,
//! the hash key or an `Authorization` header (docs/api.md, "Secrets").

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. `RUST_LOG` sets the filter (default
/// `info`). Text is coloured only when stderr is a terminal. When the filter
/// lets `debug` through (`RUST_LOG=info,domain=debug,infra_postgres=debug`),
/// every span logs its time as it closes: the use case and each repository
/// call of a request, so a slow request shows where its time went
/// (docs/metrics.md, "Tracing"). Calling it twice is harmless: the second
/// call does nothing.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let span_events = if filter
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG)
    {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
        .with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is already set, which is fine.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
