//! `vaxctl dev-auth init` makes this machine's development signing key (once), and
//! `vaxctl token --role R` signs a bearer token with it, for the local stack only.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use platform::auth::{AuthArgs, DevKey, Role};

#[derive(Clone, Subcommand)]
pub enum DevAuth {
    /// Write a development signing key and the JWKS trusting it into DIR, unless one is there.
    Init {
        /// Where the key (`dev-token-key.json`, private) and JWKS (`dev-jwks.json`) go.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `vaxctl token` arguments.
#[derive(Clone, Args)]
pub struct TokenArgs {
    /// Role(s) the token grants.
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// The token's subject: the calling system or person (the event's source system).
    #[arg(long, default_value = "local-dev")]
    subject: String,
    /// Facility ids (master data) a facility token records for; repeat for several.
    #[arg(long = "facility")]
    facilities: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// The development signing key (written by `vaxctl dev-auth init`).
    #[arg(
        long = "key",
        env = "VAXTRAIL_DEV_TOKEN_KEY",
        default_value = ".vaxtrail/keys/dev-token-key.json"
    )]
    key: PathBuf,
    #[command(flatten)]
    auth: AuthArgs,
}

pub fn init(action: DevAuth) -> anyhow::Result<()> {
    match action {
        DevAuth::Init { dir } => {
            DevKey::write_new_if_missing(&dir)?;
            println!("development token key and JWKS in {}", dir.display());
        }
    }
    Ok(())
}

/// The development signing key, with what to run when it is missing.
pub fn dev_key(path: &std::path::Path) -> anyhow::Result<DevKey> {
    DevKey::read(path).map_err(|e| {
        anyhow::anyhow!(
            "reading {}: {e} (run deploy/local/up, or vaxctl dev-auth init)",
            path.display()
        )
    })
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let key = dev_key(&args.key)?;
    let ttl = Duration::from_secs(args.ttl_secs);
    println!(
        "{}",
        key.token_for(
            &args.subject,
            &args.roles,
            &args.facilities.iter().map(String::as_str).collect::<Vec<_>>(),
            &args.auth.issuer,
            &args.auth.audience,
            ttl
        )
    );
    Ok(())
}
