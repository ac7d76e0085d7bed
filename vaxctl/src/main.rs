//! vaxctl: the operator's CLI.

use clap::{Parser, Subcommand};
use platform::{KafkaArgs, LogArgs};

mod audit;
mod auth;

mod bench;
mod demo;
mod dsc;
mod erase;
mod keys;
mod keystore;
mod master_data;
mod replay;
mod schemas;
mod shc_keys;
mod topics;

#[derive(Parser)]
#[command(name = "vaxctl", version, about = "Operate a vaxtrail deployment")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Topics: list them with partitions and high watermarks, or create what is missing.
    Topics {
        #[command(subcommand)]
        action: Option<topics::Action>,
    },
    /// Avro schemas: register the event topics' schemas with BACKWARD_TRANSITIVE compatibility.
    Schemas {
        #[command(subcommand)]
        action: schemas::Action,
    },
    /// Write and read a record through each server of the stack, and say which answered.
    Smoke(vaxctl::smoke::SmokeArgs),
    /// Development authentication: a machine-local signing key the local stack trusts.
    DevAuth {
        #[command(subcommand)]
        action: auth::DevAuth,
    },
    /// Print a bearer token signed with the development key.
    Token(auth::TokenArgs),
    /// The issuer's signing keys: generate one, or retire one to its public half.
    Keys {
        #[command(subcommand)]
        action: keys::Action,
    },
    /// The EU DCC document signers: generate, rotate, retire, publish their certificates.
    Dsc {
        #[command(subcommand)]
        action: dsc::Action,
    },
    /// The SMART Health Card keys: generate, rotate, retire, publish their public halves.
    ShcKeys {
        #[command(subcommand)]
        action: shc_keys::Action,
    },
    /// Erase a person (crypto-shredding) through the command API: their data keys go and every
    /// read model drops them.
    Erase(erase::EraseArgs),
    /// Master data: load DIVOC's master lists (and a programme) through the command API.
    MasterData {
        #[command(subcommand)]
        action: master_data::Action,
    },
    /// The key store: the key-encryption key file, erasures after a key-store restore.
    Keystore {
        #[command(subcommand)]
        action: keystore::Action,
    },
    /// Audit the log: the hash chain, the signed checkpoints, one outcome per vaccination.
    Audit {
        #[command(subcommand)]
        action: audit::Action,
    },
    /// Rebuild a read model from the log beside the live one, then swap it in atomically.
    Replay(replay::ReplayArgs),
    /// Back the log up into Avro container files with a manifest, or verify a backup offline.
    Backup(vaxctl::backup::BackupArgs),
    /// Restore a backup into an empty cluster, then read it back and compare.
    Restore(vaxctl::backup::RestoreArgs),
    /// Post realistic synthetic vaccinations through the command API, and say where to look.
    Demo(demo::DemoArgs),
    /// Benchmarks that print figures and a ratio against a baseline run in the same process.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Vaccinations posted over HTTP vs. the same records from a raw rdkafka producer.
    Ingest(bench::IngestArgs),
    /// Credentials signed with ssi per core-second vs. raw Ed25519 signatures of the same bytes.
    Sign(bench::SignArgs),
    /// Each projection replayed from offset zero vs. a bare consumer and a Postgres COPY.
    Replay(bench::replay::ReplayArgs),
    /// `vaxctl backup` of the event topics vs. a bare read of the same partitions.
    Backup(bench::backup::BackupBenchArgs),
    /// POST /v1/verify and GET /v1/certificates/{id} against a query API vs. its /healthz.
    Verify(bench::verify::VerifyArgs),
    /// The running services end to end: POST to queryable at a fixed rate, the highest sustained
    /// rate, and the broker's own ceiling.
    E2e(bench::e2e::E2eArgs),
    /// The signer's partition state at population scale: memory against the cache bound, and a
    /// restart from the local store vs. a full rebuild.
    SignerState(bench::signer_state::SignerStateArgs),
    /// Certificate PDFs (Latin, Devanagari with Hindi labels, twelve doses) vs. the QR code alone.
    Pdf(bench::pdf::PdfArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = platform::config::from_env();
    platform::telemetry::init("vaxctl", &cli.log);
    match cli.command {
        Command::Topics { action } => topics::run(&cli.kafka, action.unwrap_or_default()).await,
        Command::Schemas { action } => schemas::run(&cli.kafka, action).await,
        Command::Smoke(args) => vaxctl::smoke::run(&cli.kafka, &args).await,
        Command::DevAuth { action } => auth::init(action),
        Command::Token(args) => auth::token(args),
        Command::Keys { action } => keys::run(action),
        Command::Dsc { action } => dsc::run(action),
        Command::ShcKeys { action } => shc_keys::run(action),
        Command::Erase(args) => erase::run(&args).await,
        Command::MasterData { action } => master_data::run(action).await,
        Command::Keystore { action } => keystore::run(&cli.kafka, action).await,
        Command::Audit { action } => audit::run(&cli.kafka, action).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Backup(args) => vaxctl::backup::backup(&cli.kafka, args).await,
        Command::Restore(args) => vaxctl::backup::restore(&cli.kafka, args).await,
        Command::Replay(args) => replay::run(&cli.kafka, &args).await,
        Command::Bench {
            which: Bench::Ingest(args),
        } => bench::ingest(&cli.kafka, &args).await,
        Command::Bench {
            which: Bench::Sign(args),
        } => bench::sign(&args).await,
        Command::Bench {
            which: Bench::Replay(args),
        } => bench::replay::run(&cli.kafka, &args).await,
        Command::Bench {
            which: Bench::Backup(args),
        } => bench::backup::run(&cli.kafka, &args).await,
        Command::Bench {
            which: Bench::Verify(args),
        } => bench::verify::run(&cli.kafka, &args).await,
        Command::Bench {
            which: Bench::E2e(args),
        } => bench::e2e::run(&cli.kafka, &args).await,
        Command::Bench {
            which: Bench::SignerState(args),
        } => tokio::task::spawn_blocking(move || bench::signer_state::run(&args)).await?,
        Command::Bench {
            which: Bench::Pdf(args),
        } => tokio::task::spawn_blocking(move || bench::pdf::run(&args)).await?,
    }
}
