//! `vaxctl keystore`: the key-encryption key file of a deployment without a KMS (the local stack),
//! and re-applying recorded erasures after a key-store backup was restored.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Action {
    /// Writes a new random key-encryption key (64 hex characters, mode 0600). Refuses to replace
    /// an existing one: every wrapped data key depends on it.
    Init {
        /// Where (the services' VAXTRAIL_KEK_FILE).
        #[arg(long, env = "VAXTRAIL_KEK_FILE")]
        file: PathBuf,
        /// Succeed quietly when the file exists.
        #[arg(long)]
        if_missing: bool,
    },
    /// After restoring a backup of the key store: deletes again every data key an erasure named,
    /// in the key store's own records or in the log's `RecipientErased` events.
    ReapplyErasures {
        #[command(flatten)]
        environment: platform::EnvironmentArgs,
        #[command(flatten)]
        keystore: platform::keystore::KeystoreArgs,
    },
}

pub async fn run(kafka: &platform::KafkaArgs, action: Action) -> anyhow::Result<()> {
    match action {
        Action::Init { file, if_missing } => {
            if file.exists() {
                anyhow::ensure!(
                    if_missing,
                    "{} exists; a new key would orphan every wrapped data key",
                    file.display()
                );
                return Ok(());
            }
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Written whole under another name, then linked into place: a reader never sees half a
            // key, and of two racing writers one wins and the other keeps its file.
            let partial = file.with_extension(format!("partial-{}", std::process::id()));
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            out.write_all(privacy::FileKek::generate().as_bytes())?;
            out.sync_all()?;
            let linked = std::fs::hard_link(&partial, &file);
            std::fs::remove_file(&partial)?;
            match linked {
                Ok(()) => println!("wrote {}", file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && if_missing => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", file.display())),
            }
            Ok(())
        }
        Action::ReapplyErasures { environment, keystore } => {
            let store = keystore
                .open(&environment)?
                .context("VAXTRAIL_KEYSTORE_URL names no key store")?;
            let logged = logged_erasures(kafka).await?;
            let gone = store.reapply_erasures(&logged).await?;
            println!(
                "deleted {gone} data keys of erased recipients ({} named by the log)",
                logged.len()
            );
            Ok(())
        }
    }
}

/// The data key ids every erasure in `vaccination-events` deleted: those each `RecipientErased`
/// event names, and the keys of every record of that recipient the log holds before it (read in
/// each partition's order; a recipient's records all share one partition). Read as a stream
/// (batches handed from the reading thread, decoded here), without the key store: the key that
/// sealed a record is named in the clear.
async fn logged_erasures(kafka: &platform::KafkaArgs) -> anyhow::Result<Vec<privacy::KeyId>> {
    let topic = kafka.topics().vaccination_events;
    let spans = platform::log::watermarks_async(&kafka.brokers, std::slice::from_ref(&topic))
        .await?
        .iter()
        .map(platform::log::Watermarks::span)
        .collect();
    let (mut batches, reader) = platform::log::stream_spans(&kafka.brokers, spans, None, 1000);
    let codec = avro::codec::VaccinationCodec::new(&kafka.schema_registry_url, &topic);
    let mut ids = Vec::new();
    // Each recipient's keys since their last erasure.
    let mut since: std::collections::HashMap<domain::values::RecipientKey, Vec<privacy::KeyId>> =
        std::collections::HashMap::new();
    while let Some(batch) = batches.recv().await {
        for record in &batch {
            match codec
                .decode(rdkafka::Message::payload(record).unwrap_or_default())
                .await
            {
                Ok(envelope) => {
                    if let domain::events::VaccinationPayload::RecipientErased { erased_keys } = envelope.event.payload
                    {
                        ids.extend(erased_keys.iter().filter_map(|k| privacy::KeyId::parse(k)));
                        ids.extend(since.remove(&envelope.event.recipient_key).unwrap_or_default());
                    }
                }
                Err(avro::codec::CodecError::Sealed {
                    recipient_key, key_id, ..
                }) => since.entry(recipient_key).or_default().push(key_id),
                Err(_) => {}
            }
        }
    }
    reader.await??;
    ids.sort_by_key(|k| k.0);
    ids.dedup();
    Ok(ids)
}
