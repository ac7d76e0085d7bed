//! Runs the Confluent-compatible schema registry of the local stack.

use schema_registry::{Registry, RegistryConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: RegistryConfig = platform::config::from_env();
    platform::telemetry::init("vaxtrail-registry", &config.log);
    let shutdown = platform::shutdown::on_signals();
    let registry = Registry::build(&config, shutdown).await?;
    tracing::info!(address = %registry.local_addr(), topic = %config.topic, "schema registry listening");
    registry.run_until_stopped().await?;
    tracing::info!("schema registry stopped");
    Ok(())
}
