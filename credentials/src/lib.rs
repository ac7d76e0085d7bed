//! vaxtrail's verifiable credentials: the bundled JSON-LD contexts, the issuer's keys and DID
//! document, and Ed25519 Data Integrity proofs (`eddsa-rdfc-2022`) through `ssi`.
//!
//! Contexts are bundled and never fetched: a credential naming an unknown context, or a property
//! no context defines, fails to sign and fails to verify. Keep it that way.

pub mod checkpoint;
pub mod compiled;
pub mod contexts;
pub mod es256;
pub mod hcert;
pub mod keys;
mod proof;
pub mod published;
pub mod shc;
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

/// The EU Digital COVID Certificates a deployment issues (none unless `VAXTRAIL_EU_DCC_SIGNERS`
/// names a directory of document signers).
#[derive(Clone, Debug, clap::Args)]
pub struct EuDccArgs {
    /// Directory of EU DCC document signers, `<id>.pem` each (`vaxctl dsc generate`): the signer
    /// worker is given the private keys, the query API only the certificates (`vaxctl dsc
    /// publish`). Unset: no EU DCC is issued or verified.
    #[arg(id = "eu-dcc-signers", long = "eu-dcc-signers", env = "VAXTRAIL_EU_DCC_SIGNERS")]
    pub signers: Option<PathBuf>,
    /// The document signer that signs; needed when the directory holds several private keys.
    #[arg(id = "eu-dcc-active", long = "eu-dcc-active", env = "VAXTRAIL_EU_DCC_ACTIVE")]
    pub active: Option<String>,
    /// The certificate issuer written in each EU DCC (`is`, at most 80 characters).
    #[arg(
        id = "eu-dcc-issuer",
        long = "eu-dcc-issuer",
        env = "VAXTRAIL_EU_DCC_ISSUER",
        default_value = "Ministry of Health and Family Welfare"
    )]
    pub issuer: String,
    /// The issuing country, ISO 3166-1 alpha-2 (the CWT's `iss` and the UVCI's country).
    #[arg(
        id = "eu-dcc-country",
        long = "eu-dcc-country",
        env = "VAXTRAIL_EU_DCC_COUNTRY",
        default_value = "IN"
    )]
    pub country: String,
    /// Mapping of the vaccine master list to EU value-set codes (the bundled
    /// `domain/master-lists/eu-dcc-vaccines.json` when unset).
    #[arg(id = "eu-dcc-vaccines", long = "eu-dcc-vaccines", env = "VAXTRAIL_EU_DCC_VACCINES")]
    pub vaccines: Option<PathBuf>,
    /// Days an EU DCC is valid, at most (never past its document signer's certificate).
    #[arg(
        id = "eu-dcc-validity-days",
        long = "eu-dcc-validity-days",
        env = "VAXTRAIL_EU_DCC_VALIDITY_DAYS",
        default_value_t = 365
    )]
    pub validity_days: u32,
}

/// What the signer needs to issue EU DCCs.
#[derive(Clone, Debug)]
pub struct EuDccIssuer {
    pub signers: hcert::DocumentSigners,
    pub mapping: hcert::VaccineMapping,
    pub issuer: String,
    pub country: String,
    pub validity: chrono::Duration,
}

impl EuDccArgs {
    fn checked_country(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.country.len() == 2 && self.country.chars().all(|c| c.is_ascii_uppercase()),
            "VAXTRAIL_EU_DCC_COUNTRY {:?} must be an ISO 3166-1 alpha-2 code in upper case, e.g. IN",
            self.country
        );
        anyhow::ensure!(
            !self.issuer.trim().is_empty() && self.issuer.chars().count() <= 80,
            "VAXTRAIL_EU_DCC_ISSUER must be 1 to 80 characters"
        );
        Ok(())
    }

    /// The issuing side, when configured: the signers (one active, not expired), the mapping.
    pub fn issuer(&self) -> anyhow::Result<Option<EuDccIssuer>> {
        let Some(dir) = &self.signers else {
            return Ok(None);
        };
        self.checked_country()?;
        let signers = hcert::DocumentSigners::load(dir, self.active.as_deref(), true)?;
        let mapping = match &self.vaccines {
            Some(path) => hcert::VaccineMapping::parse(
                &std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => hcert::VaccineMapping::bundled(),
        };
        Ok(Some(EuDccIssuer {
            signers,
            mapping,
            issuer: self.issuer.clone(),
            country: self.country.clone(),
            validity: chrono::Duration::days(i64::from(self.validity_days.clamp(1, 3650))),
        }))
    }
}

/// The EU DCC document signers a verifying service trusts: their certificates alone.
#[derive(Clone, Debug, clap::Args)]
pub struct EuDccTrustArgs {
    /// Directory of the EU DCC document signers' certificates (`vaxctl dsc publish`), served as
    /// the trust list and used to verify `HC1:` texts. Unset: EU DCCs are neither served nor
    /// verified. A file holding a private key is refused.
    #[arg(id = "eu-dcc-public", long = "eu-dcc-public", env = "VAXTRAIL_EU_DCC_PUBLIC")]
    pub public: Option<PathBuf>,
}

impl EuDccTrustArgs {
    /// The published certificates, when configured.
    pub fn trusted(&self) -> anyhow::Result<Option<hcert::DocumentSigners>> {
        let Some(dir) = &self.public else {
            return Ok(None);
        };
        Ok(Some(hcert::DocumentSigners::published(dir)?))
    }
}

/// The SMART Health Cards a deployment issues (none unless `VAXTRAIL_SHC_KEYS` names a
/// directory of P-256 keys).
#[derive(Clone, Debug, clap::Args)]
pub struct ShcArgs {
    /// Directory of SMART Health Card keys, `<id>.pem` each (`vaxctl shc-keys generate`): the
    /// signer worker is given the private keys, the query API their public halves. Unset: no
    /// SMART Health Card is issued. Cards are issued by `VAXTRAIL_PUBLIC_BASE_URL` (`iss`).
    #[arg(id = "shc-keys", long = "shc-keys", env = "VAXTRAIL_SHC_KEYS")]
    pub keys: Option<PathBuf>,
    /// The key that signs; needed when the directory holds several private keys.
    #[arg(id = "shc-active", long = "shc-active", env = "VAXTRAIL_SHC_ACTIVE")]
    pub active: Option<String>,
}

impl ShcArgs {
    /// The keys, with one that signs, when configured.
    pub fn keys(&self) -> anyhow::Result<Option<shc::ShcKeys>> {
        let Some(dir) = &self.keys else {
            return Ok(None);
        };
        Ok(Some(shc::ShcKeys::load(dir, self.active.as_deref(), true)?))
    }
}

/// The SMART Health Card keys a verifying service publishes and trusts: public halves only.
#[derive(Clone, Debug, clap::Args)]
pub struct ShcTrustArgs {
    /// Directory of the SMART Health Card keys' public halves (`vaxctl shc-keys publish`),
    /// served at `/.well-known/jwks.json`. Unset: cards are neither served nor verified. A
    /// private key there is refused.
    #[arg(id = "shc-public", long = "shc-public", env = "VAXTRAIL_SHC_PUBLIC")]
    pub public: Option<PathBuf>,
}

impl ShcTrustArgs {
    pub fn keys(&self) -> anyhow::Result<Option<shc::ShcKeys>> {
        let Some(dir) = &self.public else {
            return Ok(None);
        };
        Ok(Some(shc::ShcKeys::published(dir)?))
    }
}
