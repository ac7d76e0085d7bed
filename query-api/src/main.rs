//! Runs `query-api`.

use query_api::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = platform::config::from_env();
    platform::telemetry::init("query-api", &config.log);
    let shutdown = platform::shutdown::on_signals();
    let app = Application::build(&config, shutdown).await?;
    tracing::info!(address = %app.local_addr(), "query-api listening");
    app.run_until_stopped().await
}
