//! EU DCC document signers (DSC): ECDSA P-256 keys, each with its X.509 certificate, one PEM file
//! per signer in a directory, `<id>.pem`. A file holding a `PRIVATE KEY` (PKCS#8) and a
//! `CERTIFICATE` can sign; a retired signer keeps its certificate alone, still published in the
//! trust list so that what it signed still verifies until it expires. One signer is active.
//!
//! A certificate's `kid` is the first 8 bytes of the SHA-256 of its DER encoding (EU DCC
//! technical specifications, vol. 1, §3.3.1).

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, DecodePem, Encode};

/// Why the document signers cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DscError {
    #[error("cannot read document-signer directory {dir}: {source}")]
    Directory { dir: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("no EU DCC document signer in {dir} (create one with `vaxctl dsc generate --dir {dir}`)")]
    NoSigners { dir: String },
    #[error("the active document signer {id:?} is not in {dir}")]
    UnknownActive { id: String, dir: String },
    #[error("the active document signer {id:?} holds no private key")]
    ActiveWithoutKey { id: String },
    #[error(
        "{dir} holds {count} document signers with private keys; name the one to sign with (VAXTRAIL_EU_DCC_ACTIVE)"
    )]
    AmbiguousActive { dir: String, count: usize },
    #[error("the active document signer {id:?} expired at {not_after}")]
    Expired { id: String, not_after: DateTime<Utc> },
}

/// One document signer.
#[derive(Clone, Debug)]
pub struct DocumentSigner {
    /// Its file name without `.pem`.
    pub id: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    pub kid: [u8; 8],
    pub public: VerifyingKey,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// ISO 3166-1 alpha-2 country of the certificate's subject, when it names one.
    pub country: Option<String>,
    secret: Option<crate::es256::Es256Key>,
}

/// The `kid` of a DER certificate.
pub fn kid_of(der: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(der);
    digest[..8].try_into().expect("8 bytes")
}

fn time(t: &x509_cert::time::Time) -> DateTime<Utc> {
    DateTime::<Utc>::from(t.to_system_time())
}

impl DocumentSigner {
    /// A signer from PEM text: a `CERTIFICATE`, with or without its PKCS#8 `PRIVATE KEY`.
    pub fn from_pem(id: &str, pem: &str) -> Result<Self, String> {
        let cert_pem = pem_block(pem, "CERTIFICATE").ok_or("no CERTIFICATE block")?;
        let cert = x509_cert::Certificate::from_pem(cert_pem.as_bytes()).map_err(|e| format!("certificate: {e}"))?;
        let der = cert.to_der().map_err(|e| format!("certificate: {e}"))?;
        Self::from_der(id, &der, pem_block(pem, "PRIVATE KEY").as_deref())
    }

    /// A signer from a DER certificate and, to sign, its PKCS#8 private key (PEM).
    pub fn from_der(id: &str, der: &[u8], key_pem: Option<&str>) -> Result<Self, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("certificate: {e}"))?;
        let tbs = &cert.tbs_certificate;
        let public = VerifyingKey::from_sec1_bytes(tbs.subject_public_key_info.subject_public_key.raw_bytes())
            .map_err(|_| "the certificate's key is not an ECDSA P-256 key (EU DCC signers use ES256)".to_owned())?;
        let secret = key_pem.map(crate::es256::Es256Key::from_pkcs8_pem).transpose()?;
        if let Some(secret) = &secret
            && secret.verifying_key() != public
        {
            return Err("the private key does not belong to the certificate".into());
        }
        let country = tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|atv| {
            (atv.oid == const_oid_country())
                .then(|| {
                    atv.value
                        .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                        .ok()
                })
                .flatten()
                .map(|s| s.as_str().to_owned())
        });
        Ok(Self {
            id: id.to_owned(),
            kid: kid_of(der),
            der: der.to_vec(),
            public,
            not_before: time(&tbs.validity.not_before),
            not_after: time(&tbs.validity.not_after),
            country,
            secret,
        })
    }

    pub fn can_sign(&self) -> bool {
        self.secret.is_some()
    }

    /// An ES256 signature, `r ‖ s`.
    pub fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        Some(self.secret.as_ref()?.sign(message))
    }

    /// Checks an ES256 signature (`r ‖ s`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        Signature::from_slice(signature).is_ok_and(|s| self.public.verify(message, &s).is_ok())
    }

    /// The certificate as PEM.
    pub fn certificate_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// Its entry in the published trust list.
    pub fn trust_entry(&self) -> Value {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({
            "kid": b64.encode(self.kid),
            "country": self.country,
            "certificateType": "DSC",
            "notBefore": self.not_before.to_rfc3339(),
            "notAfter": self.not_after.to_rfc3339(),
            "rawData": b64.encode(&self.der),
        })
    }
}

fn const_oid_country() -> x509_cert::der::asn1::ObjectIdentifier {
    // id-at-countryName
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.6")
}

/// The first PEM block with this label, whole.
fn pem_block(pem: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = pem[start..].find(&end)? + start + end.len();
    Some(format!("{}\n", &pem[start..stop]))
}

/// A new document signer: a P-256 key and a certificate for it, valid from now for `days`, its
/// subject `C=<country>, O=<organisation>, CN=<common name>`. Returns the PEM file's text (key
/// and certificate).
pub fn generate(country: &str, organisation: &str, common_name: &str, days: i64) -> Result<String, String> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "country {country:?} must be an ISO 3166-1 alpha-2 code in upper case, e.g. IN"
        ));
    }
    if !(1..=3650).contains(&days) {
        return Err(format!("validity of {days} days must be between 1 and 3650"));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CountryName,
        rcgen::DnValue::PrintableString(country.try_into().map_err(|e| format!("{e}"))?),
    );
    name.push(DnType::OrganizationName, organisation);
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let now = Utc::now();
    params.not_before = to_offset(now - Duration::minutes(5));
    params.not_after = to_offset(now + Duration::days(days));
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(|_| "no randomness")?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}

fn to_offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).expect("in range")
}

/// The document signers of a deployment.
#[derive(Clone, Debug)]
pub struct DocumentSigners {
    signers: Vec<DocumentSigner>,
    active: Option<usize>,
}

impl DocumentSigners {
    /// Every signer in `dir`; the active one named, or the only one with a private key. With
    /// `need_active`, a directory without one that can sign is refused.
    pub fn load(dir: &Path, active: Option<&str>, need_active: bool) -> Result<Self, DscError> {
        let entries = std::fs::read_dir(dir).map_err(|source| DscError::Directory {
            dir: dir.display().to_string(),
            source,
        })?;
        let mut signers = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "pem") {
                continue;
            }
            let failed = |reason: String| DscError::File {
                path: path.display().to_string(),
                reason,
            };
            let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let pem = std::fs::read_to_string(&path).map_err(|e| failed(e.to_string()))?;
            signers.push(DocumentSigner::from_pem(&id, &pem).map_err(failed)?);
        }
        signers.sort_by(|a, b| a.id.cmp(&b.id));
        let dir_name = dir.display().to_string();
        if signers.is_empty() {
            return Err(DscError::NoSigners { dir: dir_name });
        }
        let active = match active {
            Some(id) => {
                let index = signers
                    .iter()
                    .position(|s| s.id == id)
                    .ok_or_else(|| DscError::UnknownActive {
                        id: id.to_owned(),
                        dir: dir_name.clone(),
                    })?;
                if !signers[index].can_sign() {
                    return Err(DscError::ActiveWithoutKey { id: id.to_owned() });
                }
                Some(index)
            }
            None => {
                let able: Vec<usize> = (0..signers.len()).filter(|&i| signers[i].can_sign()).collect();
                match able.len() {
                    0 => None,
                    1 => Some(able[0]),
                    count => {
                        return Err(DscError::AmbiguousActive { dir: dir_name, count });
                    }
                }
            }
        };
        if need_active {
            let Some(index) = active else {
                return Err(DscError::NoSigners { dir: dir_name });
            };
            let signer = &signers[index];
            if signer.not_after <= Utc::now() {
                return Err(DscError::Expired {
                    id: signer.id.clone(),
                    not_after: signer.not_after,
                });
            }
        }
        Ok(Self { signers, active })
    }

    /// Signers from certificates alone (a verifier's trust list).
    pub fn trusting(signers: Vec<DocumentSigner>) -> Self {
        Self { signers, active: None }
    }

    pub fn active(&self) -> Option<&DocumentSigner> {
        self.active.map(|i| &self.signers[i])
    }

    pub fn all(&self) -> &[DocumentSigner] {
        &self.signers
    }

    /// The signer with this `kid`.
    pub fn by_kid(&self, kid: &[u8]) -> Option<&DocumentSigner> {
        self.signers.iter().find(|s| s.kid.as_slice() == kid)
    }

    /// The trust list: every certificate, private keys never.
    pub fn trust_list(&self) -> Value {
        json!({ "certificates": self.signers.iter().map(DocumentSigner::trust_entry).collect::<Vec<_>>() })
    }
}

impl DocumentSigners {
    /// The certificates a verifying service is given: a file holding a private key is refused.
    pub fn published(dir: &Path) -> Result<Self, DscError> {
        let signers = Self::load(dir, None, false)?;
        if let Some(signer) = signers.signers.iter().find(|s| s.can_sign()) {
            return Err(DscError::File {
                path: dir.join(format!("{}.pem", signer.id)).display().to_string(),
                reason:
                    "holds a private key: a service that only verifies is given certificates (`vaxctl dsc publish`)"
                        .into(),
            });
        }
        Ok(signers)
    }
}

/// Writes every signer's certificate (never its key) into `out`, and removes the files of `out`
/// that `dir` no longer holds. Returns the ids written.
pub fn publish(dir: &Path, out: &Path) -> Result<Vec<String>, DscError> {
    let signers = DocumentSigners::load(dir, None, false)?;
    let failed = |path: &Path, reason: String| DscError::File {
        path: path.display().to_string(),
        reason,
    };
    let files: Vec<(String, String)> = signers
        .all()
        .iter()
        .map(|s| (s.id.clone(), s.certificate_pem()))
        .collect();
    crate::keys::sync_pem_dir(out, &files).map_err(|(path, reason)| failed(&path, reason))
}
