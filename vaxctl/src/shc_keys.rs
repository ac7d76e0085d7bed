//! `vaxctl shc-keys`: the SMART Health Card signing keys, one PKCS#8 P-256 PEM file per key in a
//! directory (`<id>.pem`), managed like the issuer keys: `generate`, `rotate` (a new key signs,
//! the others keep their public halves and stay in the JWKS), `retire`, `publish` the public
//! halves for the query API (`VAXTRAIL_SHC_PUBLIC`), which serves them at
//! `/.well-known/jwks.json`.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::Subcommand;
use credentials::shc;

#[derive(Clone, Subcommand)]
pub enum Action {
    /// Write a new key, `DIR/ID.pem` (readable by its owner only).
    Generate {
        #[arg(long, env = "VAXTRAIL_SHC_KEYS")]
        dir: PathBuf,
        /// By default `shc-<UTC date and time>`.
        #[arg(long)]
        id: Option<String>,
        /// Succeed without writing if the directory already holds a key.
        #[arg(long)]
        if_missing: bool,
    },
    /// Generate a new key and retire every other one to its public half.
    Rotate {
        #[arg(long, env = "VAXTRAIL_SHC_KEYS")]
        dir: PathBuf,
        #[arg(long)]
        id: Option<String>,
    },
    /// Keep a key's public half alone: it no longer signs, and stays in the JWKS.
    Retire {
        #[arg(long, env = "VAXTRAIL_SHC_KEYS")]
        dir: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Write every key's public half into OUT (the query API's directory).
    Publish {
        #[arg(long, env = "VAXTRAIL_SHC_KEYS")]
        dir: PathBuf,
        #[arg(long, env = "VAXTRAIL_SHC_PUBLIC")]
        out: PathBuf,
    },
}

fn default_id() -> String {
    format!("shc-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))
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

fn write_new(dir: &std::path::Path, id: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "the id {id:?} must be letters, digits, '.', '_' or '-'"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id}.pem"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(shc::generate_pem().as_bytes())?;
    Ok(path)
}

fn retire(dir: &std::path::Path, id: &str) -> anyhow::Result<bool> {
    let path = dir.join(format!("{id}.pem"));
    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let key = shc::ShcKey::from_pem(id, &pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !key.can_sign() {
        return Ok(false);
    }
    std::fs::write(&path, key.public_pem()).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

fn republish(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some(out) = std::env::var_os("VAXTRAIL_SHC_PUBLIC") {
        let written = shc::publish(dir, std::path::Path::new(&out))?;
        println!("published {} public keys to {}", written.len(), out.to_string_lossy());
    }
    Ok(())
}

pub fn run(action: Action) -> anyhow::Result<()> {
    let dir = match action {
        Action::Publish { dir, out } => {
            let written = shc::publish(&dir, &out)?;
            println!(
                "published {} public keys to {}: {}",
                written.len(),
                out.display(),
                written.join(", ")
            );
            return Ok(());
        }
        Action::Generate { dir, id, if_missing } => {
            if if_missing && !pems(&dir).is_empty() {
                println!("{} already holds a SMART Health Card key", dir.display());
                return republish(&dir);
            }
            println!("{}", write_new(&dir, &id.unwrap_or_else(default_id))?.display());
            dir
        }
        Action::Rotate { dir, id } => {
            let id = id.unwrap_or_else(default_id);
            let others = pems(&dir);
            anyhow::ensure!(!others.contains(&id), "{id} exists already in {}", dir.display());
            write_new(&dir, &id)?;
            for old in others {
                if retire(&dir, &old)? {
                    println!("retired {old}: its public key stays in the JWKS");
                }
            }
            println!("{id} now signs; restart the signers and the query API to take it up");
            dir
        }
        Action::Retire { dir, id } => {
            if retire(&dir, &id)? {
                println!("{id} now holds only its public key");
            } else {
                println!("{id} held only its public key already");
            }
            dir
        }
    };
    republish(&dir)
}
