//! `vaxctl dsc`: the EU DCC document signers, one PEM file per signer in a directory
//! (`<id>.pem`: its PKCS#8 P-256 key and its X.509 certificate). Managed like the issuer keys:
//! `generate` one, `rotate` (a new one signs, the others keep their certificates alone), `retire`
//! one, `publish` the certificates for the query API (`VAXTRAIL_EU_DCC_PUBLIC`), which serves them
//! as the trust list. In a national deployment the certificate is signed by the country's CSCA
//! and uploaded to the WHO/EU gateway; here it is self-signed (see the README).

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::Subcommand;
use credentials::hcert::dsc;

#[derive(Clone, clap::Args)]
pub struct Subject {
    /// The country, ISO 3166-1 alpha-2 (the certificate's C).
    #[arg(long, env = "VAXTRAIL_EU_DCC_COUNTRY", default_value = "IN")]
    country: String,
    /// The organisation (O).
    #[arg(
        long,
        env = "VAXTRAIL_EU_DCC_ISSUER",
        default_value = "Ministry of Health and Family Welfare"
    )]
    organisation: String,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 730)]
    days: i64,
}

#[derive(Clone, Subcommand)]
pub enum Action {
    /// Write a new document signer, `DIR/ID.pem` (readable by its owner only).
    Generate {
        #[arg(long, env = "VAXTRAIL_EU_DCC_SIGNERS")]
        dir: PathBuf,
        /// By default `dsc-<UTC date and time>`.
        #[arg(long)]
        id: Option<String>,
        /// Succeed without writing if the directory already holds a signer.
        #[arg(long)]
        if_missing: bool,
        #[command(flatten)]
        subject: Subject,
    },
    /// Generate a new signer and retire every other one to its certificate (restart the signers
    /// and the query API to take it up).
    Rotate {
        #[arg(long, env = "VAXTRAIL_EU_DCC_SIGNERS")]
        dir: PathBuf,
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        subject: Subject,
    },
    /// Keep a signer's certificate alone: it no longer signs, and stays in the trust list.
    Retire {
        #[arg(long, env = "VAXTRAIL_EU_DCC_SIGNERS")]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Write every signer's certificate into OUT (the query API's directory).
    Publish {
        #[arg(long, env = "VAXTRAIL_EU_DCC_SIGNERS")]
        dir: PathBuf,
        #[arg(long, env = "VAXTRAIL_EU_DCC_PUBLIC")]
        out: PathBuf,
    },
}

fn default_id() -> String {
    format!("dsc-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))
}

fn pems(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pem"))
                .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes a new signer `DIR/ID.pem`, readable by its owner only.
fn write_new(dir: &std::path::Path, id: &str, subject: &Subject) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "the id {id:?} must be letters, digits, '.', '_' or '-'"
    );
    let pem = dsc::generate(
        &subject.country,
        &subject.organisation,
        &format!("vaxtrail EU DCC document signer {id}"),
        subject.days,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id}.pem"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(path)
}

fn retire(dir: &std::path::Path, id: &str) -> anyhow::Result<bool> {
    let path = dir.join(format!("{id}.pem"));
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let signer = dsc::DocumentSigner::from_pem(id, &pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !signer.can_sign() {
        return Ok(false);
    }
    std::fs::write(&path, signer.certificate_pem()).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Refreshes the public directory the environment names, if any.
fn republish(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some(out) = std::env::var_os("VAXTRAIL_EU_DCC_PUBLIC") {
        let written = dsc::publish(dir, std::path::Path::new(&out))?;
        println!("published {} certificates to {}", written.len(), out.to_string_lossy());
    }
    Ok(())
}

pub fn run(action: Action) -> anyhow::Result<()> {
    let dir = match action {
        Action::Publish { dir, out } => {
            let written = dsc::publish(&dir, &out)?;
            println!(
                "published {} certificates to {}: {}",
                written.len(),
                out.display(),
                written.join(", ")
            );
            return Ok(());
        }
        Action::Generate {
            dir,
            id,
            if_missing,
            subject,
        } => {
            if if_missing && !pems(&dir).is_empty() {
                println!("{} already holds a document signer", dir.display());
                return republish(&dir);
            }
            let path = write_new(&dir, &id.unwrap_or_else(default_id), &subject)?;
            println!("{}", path.display());
            dir
        }
        Action::Rotate { dir, id, subject } => {
            let id = id.unwrap_or_else(default_id);
            let others = pems(&dir);
            anyhow::ensure!(!others.contains(&id), "{id} exists already in {}", dir.display());
            write_new(&dir, &id, &subject)?;
            for old in others {
                if retire(&dir, &old)? {
                    println!("retired {old}: its certificate stays in the trust list");
                }
            }
            println!("{id} now signs; restart the signers and the query API to take it up");
            dir
        }
        Action::Retire { dir, id } => {
            if retire(&dir, &id)? {
                println!("{id} now holds only its certificate");
            } else {
                println!("{id} held only its certificate already");
            }
            dir
        }
    };
    republish(&dir)
}
