//! vaxtrail's verifiable credentials: the bundled JSON-LD contexts, the issuer's keys and DID
//! document, and Ed25519 Data Integrity proofs (`eddsa-rdfc-2022`) through `ssi`.
//!
//! Contexts are bundled and never fetched: a credential naming an unknown context, or a property
//! no context defines, fails to sign and fails to verify. Keep it that way.

pub mod checkpoint;
pub mod compiled;
pub mod contexts;
pub mod keys;
mod proof;
pub mod published;
pub mod status_list;

use std::path::PathBuf;

use domain::credential::IssuerProfile;

pub use keys::{IssuerKey, KeyError, Keyring};
pub use proof::{CredentialSigner, CredentialVerifier, SignError, SignedCredential, Verdict};
pub use published::PublishedKeys;

/// The issuer: who signs, with which keys, and where its certificates are published.
#[derive(Clone, Debug, clap::Args)]
pub struct IssuerArgs {
    /// The issuer's DID (`did:web:<host>`), the credentials' `issuer`; its DID document is
    /// published by the query API at `/.well-known/did.json`.
    #[arg(
        long = "issuer-did",
        env = "VAXTRAIL_ISSUER_DID",
        default_value = "did:web:127.0.0.1%3A8090"
    )]
    pub did: String,
    /// Directory of the issuer's keys, `<key id>.pem` each: PKCS#8 private keys, or SPKI public
    /// keys for retired ones (`vaxctl keys generate` makes one).
    #[arg(long = "issuer-keys", env = "VAXTRAIL_ISSUER_KEYS")]
    pub keys: PathBuf,
    /// The key id that signs; needed when the directory holds several private keys.
    #[arg(long = "issuer-active-key", env = "VAXTRAIL_ISSUER_ACTIVE_KEY")]
    pub active_key: Option<String>,
    /// Public base URL of the query API: evidence ids and status lists are named under it.
    #[arg(
        long = "public-base-url",
        env = "VAXTRAIL_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub public_base_url: String,
}

impl IssuerArgs {
    /// The keyring, checked.
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        Ok(Keyring::load(&self.did, &self.keys, self.active_key.as_deref())?)
    }

    /// The issuer's profile for credentials.
    pub fn profile(&self) -> IssuerProfile {
        IssuerProfile {
            issuer: self.did.clone(),
            base_url: self.public_base_url.trim_end_matches('/').to_owned(),
        }
    }
}
