//! Logs of the controllers: human-readable or JSON lines, level from `RUST_LOG`
//! (default `info`), one tracing span per reconciled object.

use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber; call once from `main`.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
