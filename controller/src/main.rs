use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = sealsync_controller::Args::parse();
    sealsync_engine::telemetry::init_logging(args.log_format.is_json());
    sealsync_controller::run(args).await
}
