//! Logging: `tracing` to stderr, human-readable or JSON.
//!
//! Nothing logged here or in the HTTP layer contains a full key, a key hash,
//! the hash key or an `Authorization` header (docs/api.md, "Secrets").

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. `RUST_LOG` sets the filter (default
/// `info`). Calling it twice is harmless: the second call does nothing.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is already set, which is fine.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
