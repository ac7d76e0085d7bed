//! `vaxctl erase`: erases a person through the command API (`POST /v1/erasures`) with an
//! administrator's token, and prints what it answered. The command API holds the key store and
//! the recipient-key secret, so this is the same path an administrator's own tools take.

use clap::Args;
use serde_json::{Value, json};

/// `vaxctl erase` arguments.
#[derive(Clone, Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["identity", "recipient_key"]))]
pub struct EraseArgs {
    /// The identity URI the person's records carry (e.g. `did:in.gov.uidai.aadhaar:…`).
    #[arg(long)]
    identity: Option<String>,
    /// Or their recipient key (64 hex characters, as audit reads show it).
    #[arg(long)]
    recipient_key: Option<String>,
    /// The command API.
    #[arg(
        long = "command-url",
        env = "VAXTRAIL_COMMAND_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    command_url: String,
    /// A bearer token with the admin role (`vaxctl token --role admin` on a developer's machine).
    #[arg(long, env = "VAXTRAIL_TOKEN", hide_env_values = true)]
    token: String,
}

pub async fn run(args: &EraseArgs) -> anyhow::Result<()> {
    let body = match (&args.identity, &args.recipient_key) {
        (Some(identity), None) => json!({ "identity": identity }),
        (None, Some(key)) => json!({ "recipientKey": key }),
        _ => anyhow::bail!("name the person by --identity or --recipient-key"),
    };
    let response = reqwest::Client::new()
        .post(format!("{}/v1/erasures", args.command_url.trim_end_matches('/')))
        .bearer_auth(&args.token)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "the command API answered {status}: {answer}");
    println!("{answer}");
    Ok(())
}
