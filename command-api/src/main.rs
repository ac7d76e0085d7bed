//! Runs `command-api`.

use command_api::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = platform::config::from_env();
    platform::telemetry::init("command-api", &config.log);
    let shutdown = platform::shutdown::on_signals();
    let app = Application::build(&config, shutdown).await?;
    tracing::info!(address = %app.local_addr(), "command-api listening");
    app.run_until_stopped().await
}
