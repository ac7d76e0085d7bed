//! Runs `projectors`.

use projectors::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = platform::config::from_env();
    platform::telemetry::init("projectors", &config.log);
    let shutdown = platform::shutdown::on_signals();
    let app = Application::build(&config, shutdown).await?;
    tracing::info!(address = %app.local_addr(), "projectors listening");
    app.run_until_stopped().await
}
