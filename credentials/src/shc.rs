//! SMART Health Cards (spec 1.4, vaccination IG): a FHIR R4 bundle (Patient, Immunization) in
//! a verifiable credential, DEFLATE-compressed (`zip: DEF`), signed as a compact JWS with ES256
//! under a key whose `kid` is its RFC 7638 thumbprint; in a QR code as `shc:/` and two digits
//! per character (numeric mode). Revocation by `rid`: an identifier of the certificate that
//! reveals nothing about its holder, listed in `/.well-known/crl/<kid>.json` once revoked.
//!
//! Keys: one PKCS#8 P-256 PEM file per key in a directory (`<id>.pem`); a retired key keeps its
//! public half (SPKI) and stays in the JWKS. Crates: `p256` (ECDSA), `flate2` (raw DEFLATE),
//! `base64`, `sha2`.

use std::{io::Read, io::Write, path::Path};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use domain::commands::{Birth, RecordVaccination};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The prefix of a SMART Health Card's QR text.
pub const PREFIX: &str = "shc:/";
/// The longest JWS one QR code carries (version 22 at ECC L in numeric mode, as the spec sets).
pub const MAX_SINGLE_JWS: usize = 1_195;
/// The largest inflated payload read back.
const MAX_PAYLOAD: u64 = 64 * 1024;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// Why a card cannot be issued or read.
#[derive(Debug, thiserror::Error)]
pub enum ShcError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("no SMART Health Card key in {0} (create one with `vaxctl shc-keys generate`)")]
    NoKeys(String),
    #[error("{dir} holds {count} private keys; name the one to sign with (VAXTRAIL_SHC_ACTIVE)")]
    AmbiguousActive { dir: String, count: usize },
    #[error("the active SMART Health Card key {0:?} is not a private key in the directory")]
    UnknownActive(String),
    #[error("not a SMART Health Card: {0}")]
    Malformed(String),
    #[error("signed by an unknown key (kid {0})")]
    UnknownKid(String),
    #[error("the signature does not verify")]
    BadSignature,
}

/// One issuer key.
#[derive(Clone, Debug)]
pub struct ShcKey {
    pub id: String,
    /// RFC 7638 thumbprint, base64url.
    pub kid: String,
    pub public: VerifyingKey,
    secret: Option<crate::es256::Es256Key>,
}

/// The public key as a JWK's `x` and `y`.
fn coordinates(public: &VerifyingKey) -> (String, String) {
    let point = public.to_encoded_point(false);
    (
        b64url(point.x().expect("an uncompressed point")),
        b64url(point.y().expect("an uncompressed point")),
    )
}

/// RFC 7638: the SHA-256 of the JWK's required members in lexicographic order, no spaces.
pub fn thumbprint(public: &VerifyingKey) -> String {
    let (x, y) = coordinates(public);
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64url(&Sha256::digest(canonical.as_bytes()))
}

impl ShcKey {
    /// A key from PEM: a PKCS#8 private key, or an SPKI public key (retired).
    pub fn from_pem(id: &str, pem: &str) -> Result<Self, String> {
        let (public, secret) = if pem.contains("PRIVATE KEY") {
            let secret = crate::es256::Es256Key::from_pkcs8_pem(pem)?;
            (secret.verifying_key(), Some(secret))
        } else {
            let public = VerifyingKey::from_public_key_pem(pem).map_err(|e| format!("not a P-256 public key: {e}"))?;
            (public, None)
        };
        Ok(Self {
            id: id.to_owned(),
            kid: thumbprint(&public),
            public,
            secret,
        })
    }

    pub fn can_sign(&self) -> bool {
        self.secret.is_some()
    }

    /// Its public JWK.
    pub fn jwk(&self) -> Value {
        let (x, y) = coordinates(&self.public);
        json!({"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": x, "y": y})
    }

    /// Its public half as PEM (what a retired key keeps).
    pub fn public_pem(&self) -> String {
        self.public
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }
}

/// A new P-256 key, PKCS#8 PEM.
pub fn generate_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("the system's random source works")
        .serialize_pem()
}

/// The SMART Health Card keys of a deployment.
#[derive(Clone, Debug)]
pub struct ShcKeys {
    keys: Vec<ShcKey>,
    active: Option<usize>,
}

impl ShcKeys {
    /// Every key in `dir`; the active one named, or the only private one. `need_active`: a
    /// directory without one that can sign is refused.
    pub fn load(dir: &Path, active: Option<&str>, need_active: bool) -> Result<Self, ShcError> {
        let name = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| ShcError::File {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "pem") {
                continue;
            }
            let failed = |reason: String| ShcError::File {
                path: path.display().to_string(),
                reason,
            };
            let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let pem = std::fs::read_to_string(&path).map_err(|e| failed(e.to_string()))?;
            keys.push(ShcKey::from_pem(&id, &pem).map_err(failed)?);
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        if keys.is_empty() {
            return Err(ShcError::NoKeys(name));
        }
        let active = match active {
            Some(id) => Some(
                keys.iter()
                    .position(|k| k.id == id && k.can_sign())
                    .ok_or_else(|| ShcError::UnknownActive(id.to_owned()))?,
            ),
            None => {
                let able: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].can_sign()).collect();
                match able.len() {
                    0 => None,
                    1 => Some(able[0]),
                    count => return Err(ShcError::AmbiguousActive { dir: name, count }),
                }
            }
        };
        if need_active && active.is_none() {
            return Err(ShcError::NoKeys(name));
        }
        Ok(Self { keys, active })
    }

    /// Public keys only (a verifying service): a private key is refused.
    pub fn published(dir: &Path) -> Result<Self, ShcError> {
        let keys = Self::load(dir, None, false)?;
        if let Some(key) = keys.keys.iter().find(|k| k.can_sign()) {
            return Err(ShcError::File {
                path: dir.join(format!("{}.pem", key.id)).display().to_string(),
                reason:
                    "holds a private key: a service that only verifies is given public keys (`vaxctl shc-keys publish`)"
                        .into(),
            });
        }
        Ok(keys)
    }

    pub fn keys(&self) -> &[ShcKey] {
        &self.keys
    }

    pub fn active(&self) -> Option<&ShcKey> {
        self.active.map(|i| &self.keys[i])
    }

    pub fn by_kid(&self, kid: &str) -> Option<&ShcKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(ShcKey::jwk).collect::<Vec<_>>()})
    }
}

/// Writes every key's public half into `out`, removing what `dir` no longer holds.
pub fn publish(dir: &Path, out: &Path) -> Result<Vec<String>, ShcError> {
    let keys = ShcKeys::load(dir, None, false)?;
    let failed = |path: &Path, reason: String| ShcError::File {
        path: path.display().to_string(),
        reason,
    };
    let files: Vec<(String, String)> = keys.keys().iter().map(|k| (k.id.clone(), k.public_pem())).collect();
    crate::keys::sync_pem_dir(out, &files).map_err(|(path, reason)| failed(&path, reason))
}

/// A certificate's revocation id ([`domain::ids::shc_rid`]).
pub fn rid(certificate_id: &str) -> String {
    domain::ids::shc_rid(certificate_id)
}

/// The FHIR R4 bundle of one dose (SMART Health Cards vaccination IG: Patient, Immunization;
/// the vaccine coded in ICD-11 MMS, which the IG accepts beside CVX and SNOMED CT).
pub fn bundle(record: &RecordVaccination) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "name": [{"text": record.recipient.name.as_str()}],
    });
    if let Birth::Date(date) = &record.recipient.birth {
        patient["birthDate"] = json!(date.to_string());
    }
    let vaccination = &record.vaccination;
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "resource:0", "resource": patient},
            {"fullUrl": "resource:1", "resource": {
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"coding": [{
                    "system": "http://id.who.int/icd/release/11/mms",
                    "code": vaccination.vaccine.icd11_code,
                }]},
                "patient": {"reference": "resource:0"},
                "occurrenceDateTime": vaccination.date.to_string(),
                "lotNumber": vaccination.batch.as_str(),
                "performer": [{"actor": {"display": record.facility.name.as_str()}}],
                "protocolApplied": [{
                    "doseNumberPositiveInt": vaccination.dose.number(),
                    "seriesDosesPositiveInt": vaccination.dose.of(),
                }],
            }},
        ],
    })
}

/// A signed card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    /// The compact JWS.
    pub jws: String,
    pub kid: String,
}

impl Card {
    /// `shc:/` and two digits per character (its code minus 45).
    pub fn qr_text(&self) -> String {
        let mut out = String::with_capacity(PREFIX.len() + self.jws.len() * 2);
        out.push_str(PREFIX);
        for byte in self.jws.bytes() {
            out.push_str(&format!("{:02}", byte - 45));
        }
        out
    }
}

/// The JWS inside a `shc:/` text.
pub fn jws_of_qr(text: &str) -> Result<String, ShcError> {
    let digits = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| ShcError::Malformed("it does not begin with shc:/".into()))?;
    if digits.contains('/') {
        return Err(ShcError::Malformed(
            "a card split over several QR codes is not read".into(),
        ));
    }
    if digits.len() % 2 != 0 || digits.len() > 2 * MAX_SINGLE_JWS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ShcError::Malformed("not pairs of digits".into()));
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let n = (pair[0] - b'0') * 10 + (pair[1] - b'0');
            (n <= 77).then_some((n + 45) as char)
        })
        .collect::<Option<String>>()
        .ok_or_else(|| ShcError::Malformed("a digit pair out of range".into()))
}

/// Signs a card: the bundle in a verifiable credential issued by `issuer` (the URL whose
/// `/.well-known/jwks.json` serves the key) at `issued_at`, with the certificate's `rid`.
pub fn issue(bundle: &Value, issuer: &str, issued_at: DateTime<Utc>, rid: &str, key: &ShcKey) -> Option<Card> {
    let secret = key.secret.as_ref()?;
    let payload = json!({
        "iss": issuer,
        "nbf": issued_at.timestamp(),
        "vc": {
            "type": ["https://smarthealth.cards#health-card", "https://smarthealth.cards#immunization"],
            "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": bundle},
            "rid": rid,
        },
    });
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate
        .write_all(payload.to_string().as_bytes())
        .expect("writing to memory");
    let compressed = deflate.finish().expect("writing to memory");
    let header = json!({"alg": "ES256", "zip": "DEF", "kid": key.kid});
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(&compressed));
    let signature = secret.sign(signing_input.as_bytes());
    Some(Card {
        jws: format!("{signing_input}.{}", b64url(&signature)),
        kid: key.kid.clone(),
    })
}

/// A card read back and verified.
#[derive(Clone, Debug)]
pub struct VerifiedCard {
    pub kid: String,
    pub payload: Value,
    pub rid: Option<String>,
}

/// Verifies a compact JWS against the keys.
pub fn verify(jws: &str, keys: &ShcKeys) -> Result<VerifiedCard, ShcError> {
    let malformed = |why: &str| ShcError::Malformed(why.to_owned());
    if jws.len() > MAX_SINGLE_JWS * 4 {
        return Err(malformed("too long"));
    }
    let mut parts = jws.split('.');
    let (Some(header), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a compact JWS"));
    };
    let header: Value = unb64url(header)
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| malformed("the header is not base64url JSON"))?;
    if header["alg"] != "ES256" || header["zip"] != "DEF" {
        return Err(malformed("not ES256 with zip DEF"));
    }
    let kid = header["kid"].as_str().ok_or_else(|| malformed("no kid"))?;
    let key = keys.by_kid(kid).ok_or_else(|| ShcError::UnknownKid(kid.to_owned()))?;
    let signature = unb64url(signature)
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or_else(|| malformed("the signature is not 64 bytes of base64url"))?;
    let signing_input = &jws[..jws.len() - jws.rsplit('.').next().map_or(0, str::len) - 1];
    key.public
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| ShcError::BadSignature)?;
    let compressed = unb64url(body).ok_or_else(|| malformed("the payload is not base64url"))?;
    let mut text = Vec::new();
    flate2::read::DeflateDecoder::new(compressed.as_slice())
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut text)
        .map_err(|_| malformed("the payload is not DEFLATE"))?;
    if text.len() as u64 > MAX_PAYLOAD {
        return Err(malformed("the payload inflates too far"));
    }
    let payload: Value = serde_json::from_slice(&text).map_err(|_| malformed("the payload is not JSON"))?;
    Ok(VerifiedCard {
        kid: kid.to_owned(),
        rid: payload["vc"]["rid"].as_str().map(str::to_owned),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ShcKey {
        ShcKey::from_pem("shc-1", &generate_pem()).unwrap()
    }

    #[test]
    fn a_card_verifies_and_its_qr_text_round_trips() {
        let key = key();
        let keys = ShcKeys {
            keys: vec![key.clone()],
            active: Some(0),
        };
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": []});
        let card = issue(&bundle, "https://example.gov", Utc::now(), &rid("CERT1"), &key).unwrap();
        let verified = verify(&card.jws, &keys).unwrap();
        assert_eq!(verified.payload["vc"]["credentialSubject"]["fhirBundle"], bundle);
        assert_eq!(verified.rid.as_deref(), Some(rid("CERT1").as_str()));
        let qr = card.qr_text();
        assert!(qr[5..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(jws_of_qr(&qr).unwrap(), card.jws);
        // Tampered payload, another key, junk.
        let mut parts: Vec<&str> = card.jws.split('.').collect();
        let other = issue(&json!({"x": 1}), "https://example.gov", Utc::now(), "r", &key).unwrap();
        let other_body = other.jws.split('.').nth(1).unwrap().to_owned();
        parts[1] = &other_body;
        assert!(matches!(verify(&parts.join("."), &keys), Err(ShcError::BadSignature)));
        let stranger = ShcKeys {
            keys: vec![self::key()],
            active: None,
        };
        assert!(matches!(verify(&card.jws, &stranger), Err(ShcError::UnknownKid(_))));
        for junk in ["", "a.b", "shc:/12", "e30.e30.e30"] {
            assert!(verify(junk, &keys).is_err(), "{junk}");
        }
        assert!(jws_of_qr("shc:/1/2/5678").is_err());
        assert!(jws_of_qr("shc:/99").is_err());
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 7638's method on a fixed key: the members in order, no whitespace, SHA-256.
        let key = key();
        let jwk = key.jwk();
        let canonical = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["kty"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(key.kid, b64url(&Sha256::digest(canonical.as_bytes())));
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        // A retired key (its public half) has the same kid and cannot sign.
        let retired = ShcKey::from_pem("shc-1", &key.public_pem()).unwrap();
        assert_eq!(retired.kid, key.kid);
        assert!(!retired.can_sign());
    }
}
