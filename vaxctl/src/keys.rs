//! `vaxctl keys`: the issuer's signing keys, one PKCS#8 PEM file per key in a directory
//! (`<key id>.pem`). Rotation: `generate` a new key, point `VAXTRAIL_ISSUER_ACTIVE_KEY` at it,
//! restart the signers, then `retire` the old one (its public half stays published, so what it
//! signed still verifies). The query API is given only the public halves, in a directory of their
//! own (`publish`; `generate`, `rotate` and `retire` refresh it when `VAXTRAIL_ISSUER_PUBLIC_KEYS`
//! names it), so the internet-facing service holds no key that signs.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::Subcommand;
use credentials::keys;

#[derive(Clone, Subcommand)]
pub enum Action {
    /// Write a new Ed25519 key, `DIR/ID.pem` (PKCS#8, readable by its owner only).
    Generate {
        #[arg(long, env = "VAXTRAIL_ISSUER_KEYS")]
        dir: PathBuf,
        /// The key id (the DID URL fragment); by default `key-<UTC date and time>`.
        #[arg(long)]
        id: Option<String>,
        /// Succeed without writing if the directory already holds a key.
        #[arg(long)]
        if_missing: bool,
    },
    /// Generate a new key and retire every other private key to its public half, so the new key
    /// is the only one that signs (restart the signers and the query API to take it up). What the
    /// old keys signed still verifies: they stay published.
    Rotate {
        #[arg(long, env = "VAXTRAIL_ISSUER_KEYS")]
        dir: PathBuf,
        /// The new key's id; by default `key-<UTC date and time>`.
        #[arg(long)]
        id: Option<String>,
    },
    /// Replace a key by its public half: it no longer signs, and stays published for verifying.
    Retire {
        #[arg(long, env = "VAXTRAIL_ISSUER_KEYS")]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Write the public half of every key into OUT (the query API's `VAXTRAIL_ISSUER_PUBLIC_KEYS`),
    /// removing keys OUT holds that DIR no longer does.
    Publish {
        #[arg(long, env = "VAXTRAIL_ISSUER_KEYS")]
        dir: PathBuf,
        #[arg(long, env = "VAXTRAIL_ISSUER_PUBLIC_KEYS")]
        out: PathBuf,
    },
}

/// Refreshes the public directory the environment names, if any.
fn republish(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some(out) = std::env::var_os("VAXTRAIL_ISSUER_PUBLIC_KEYS") {
        let written = keys::publish(dir, std::path::Path::new(&out))?;
        println!("published {} public keys to {}", written.len(), out.to_string_lossy());
    }
    Ok(())
}

fn has_key(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "pem"))
        })
        .unwrap_or(false)
}

fn default_id() -> String {
    format!("key-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))
}

pub fn run(action: Action) -> anyhow::Result<()> {
    let dir = match &action {
        Action::Generate { dir, .. } | Action::Rotate { dir, .. } | Action::Retire { dir, .. } => dir.clone(),
        Action::Publish { dir, out } => {
            let written = keys::publish(dir, out)?;
            println!(
                "published {} public keys to {}: {}",
                written.len(),
                out.display(),
                written.join(", ")
            );
            return Ok(());
        }
    };
    change(action)?;
    republish(&dir)
}

fn change(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Publish { .. } => unreachable!("handled by run"),
        Action::Rotate { dir, id } => {
            let id = id.unwrap_or_else(default_id);
            let others: Vec<String> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pem"))
                .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
                .collect();
            anyhow::ensure!(!others.contains(&id), "{id} exists already in {}", dir.display());
            write_new(&dir, &id)?;
            for old in others {
                let path = dir.join(format!("{old}.pem"));
                let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                if credentials::IssuerKey::from_pem(&old, &pem).is_ok_and(|k| k.can_sign()) {
                    let public = keys::public_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    std::fs::write(&path, public).with_context(|| format!("writing {}", path.display()))?;
                    println!("retired {old}: it stays published for verifying");
                }
            }
            if std::env::var_os("VAXTRAIL_ISSUER_ACTIVE_KEY").is_some() {
                println!("VAXTRAIL_ISSUER_ACTIVE_KEY is set: point it at {id}");
            }
            println!("{id} now signs; restart the signers and the query API to take it up");
        }
        Action::Generate { dir, id, if_missing } => {
            if if_missing && has_key(&dir) {
                println!("{} already holds an issuer key", dir.display());
                return Ok(());
            }
            let id = id.unwrap_or_else(default_id);
            let path = write_new(&dir, &id)?;
            println!("{}", path.display());
        }

        Action::Retire { dir, id } => {
            let path = dir.join(format!("{id}.pem"));
            let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let public = keys::public_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            std::fs::write(&path, public).with_context(|| format!("writing {}", path.display()))?;
            println!("{} now holds only the public key", path.display());
        }
    }
    Ok(())
}

/// Writes a new key `DIR/ID.pem`, readable by its owner only.
fn write_new(dir: &std::path::Path, id: &str) -> anyhow::Result<PathBuf> {
    let pem = keys::generate_pem();
    credentials::IssuerKey::from_pem(id, &pem).map_err(|e| anyhow::anyhow!(e))?;
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
