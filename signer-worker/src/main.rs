//! Runs `signer-worker`.

use signer_worker::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = platform::config::from_env();
    platform::telemetry::init("signer-worker", &config.log);
    let shutdown = platform::shutdown::on_signals();
    let app = Application::build(&config, shutdown).await?;
    tracing::info!(address = %app.local_addr(), "signer-worker listening");
    app.run_until_stopped().await
}
