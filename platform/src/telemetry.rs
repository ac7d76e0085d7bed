//! Tracing set-up: human-readable lines by default, JSON lines when `VAXTRAIL_LOG_FORMAT=json`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogArgs, LogFormat};

/// Installs the global tracing subscriber once; later calls (tests building several apps in one
/// process) keep the first.
pub fn init(service: &'static str, args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match args.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_target(true).with_writer(std::io::stderr))
            .try_init(),
    };
    if installed.is_ok() {
        tracing::debug!(service, version = env!("CARGO_PKG_VERSION"), "telemetry ready");
    }
}
