//! `vaxctl schemas register`: registers each event topic's Avro schema under its `-value`
//! subject with BACKWARD_TRANSITIVE compatibility. Idempotent.

use avro::client::RegistryClient;
use clap::Subcommand;
use platform::KafkaArgs;

#[derive(Clone, Copy, Subcommand)]
pub enum Action {
    /// Register the bundled schemas (a schema already registered keeps its id).
    Register,
}

pub async fn run(kafka: &KafkaArgs, action: Action) -> anyhow::Result<()> {
    match action {
        Action::Register => {
            let client = RegistryClient::new(&kafka.schema_registry_url);
            for (subject, id) in client.register_event_schemas(&kafka.topic_prefix).await? {
                println!("registered  {subject}  id {id}  BACKWARD_TRANSITIVE");
            }
        }
    }
    Ok(())
}
