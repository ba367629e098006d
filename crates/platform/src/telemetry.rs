//! Structured logging with `tracing`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogConfig;

/// Installs the global subscriber once; later calls are ignored (tests start many servers).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if config.format == "json" {
        registry.with(fmt::layer().json().with_current_span(true)).try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
}
