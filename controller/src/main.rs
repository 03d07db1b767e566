use sealsync_engine::telemetry::{LogSettings, init_logging};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = sealsync_controller::Args::from_env();
    if args.version {
        // Upstream's wording, which scripts parse.
        println!("controller version: v{}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    init_logging(LogSettings {
        json: args.log_format.is_json(),
        level: args.log_level.map(Into::into),
        info_to_stdout: args.log_info_stdout,
    });
    sealsync_controller::run(args).await
}
