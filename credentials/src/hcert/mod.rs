//! EU Digital COVID Certificates (HCERT, EU DCC technical specifications vol. 1–4): the payload
//! as a CWT (`iss`, `iat`, `exp`, `hcert` −260 → {1: payload}) in a COSE_Sign1 signed with ES256
//! by a document signer (`kid` = first 8 bytes of the SHA-256 of its certificate), ZLIB-deflated,
//! base45-encoded and prefixed `HC1:`, for a QR code in alphanumeric mode at ECC level Q.
//!
//! Crates: `coset` (COSE structures), `ciborium` (CBOR), `ring` and `p256` (ECDSA, see `es256`),
//! `base45`, `flate2` (ZLIB), `rcgen` (generating certificates) and `x509-cert` (reading them).

pub mod dsc;
pub mod payload;

use std::io::{Read, Write};

use chrono::{DateTime, Duration, Utc};
use ciborium::Value as Cbor;
use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use dsc::{DocumentSigner, DocumentSigners, DscError};
pub use payload::{Issuer, Unmapped, VaccineMapping};

/// The prefix of an HCERT's text (context identifier, version 1).
pub const PREFIX: &str = "HC1:";
/// CWT claim keys (RFC 8392) and the HCERT claim.
const ISS: i64 = 1;
const EXP: i64 = 4;
const IAT: i64 = 6;
const HCERT: i64 = -260;
/// The EU DCC v1 key inside the `hcert` claim.
const EU_DCC_V1: i64 = 1;
/// The longest `HC1:` text read (a certificate is about 600 characters; a QR holds at most
/// 4,296 alphanumeric characters).
pub const MAX_TEXT: usize = 4_296;
/// The largest inflated CWT read (a payload is a few hundred bytes).
const MAX_CWT: u64 = 16 * 1024;
/// How long a certificate is valid, at most (capped by the signer's own validity).
pub const DEFAULT_VALIDITY: Duration = Duration::days(365);

/// A signed HCERT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hcert {
    /// `HC1:…`, what the QR code holds.
    pub text: String,
    /// The document signer's `kid`, base64 (as trust lists write it).
    pub kid: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Hcert {
    /// SHA-256 of the text, hex: what the certificate log records beside the sealed text.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.text.as_bytes()).into()
    }
}

/// Why an HCERT cannot be issued or read.
#[derive(Debug, thiserror::Error)]
pub enum HcertError {
    #[error("no active EU DCC document signer")]
    NoSigner,
    #[error("the document signer expires at {0}, before the certificate would be issued")]
    SignerExpired(DateTime<Utc>),
    #[error("not an EU DCC: {0}")]
    Malformed(String),
    #[error("signed by an unknown document signer (kid {0})")]
    UnknownKid(String),
    #[error("the signature does not verify with the document signer {0}")]
    BadSignature(String),
    #[error("expired at {0}")]
    Expired(DateTime<Utc>),
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn to_cbor(json: &Value) -> Cbor {
    match json {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cbor::Integer(i.into()),
            None => Cbor::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(items) => Cbor::Array(items.iter().map(to_cbor).collect()),
        Value::Object(map) => Cbor::Map(map.iter().map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v))).collect()),
    }
}

fn to_json(cbor: &Cbor, depth: usize) -> Result<Value, HcertError> {
    if depth > 16 {
        return Err(HcertError::Malformed("nested too deeply".into()));
    }
    Ok(match cbor {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(*b),
        Cbor::Integer(i) => {
            let i: i128 = (*i).into();
            Value::from(i64::try_from(i).map_err(|_| HcertError::Malformed("integer out of range".into()))?)
        }
        Cbor::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Cbor::Text(s) => Value::String(s.clone()),
        Cbor::Array(items) => Value::Array(items.iter().map(|v| to_json(v, depth + 1)).collect::<Result<_, _>>()?),
        Cbor::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| match k {
                    Cbor::Text(k) => Ok((k.clone(), to_json(v, depth + 1)?)),
                    _ => Err(HcertError::Malformed("a payload key is not text".into())),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(HcertError::Malformed("unexpected CBOR type in the payload".into())),
    })
}

/// Signs a payload: a CWT issued by `country` at `issued_at`, valid for `validity` or until the
/// signer's certificate expires, whichever comes first.
pub fn issue(
    payload: &Value,
    country: &str,
    signer: &DocumentSigner,
    issued_at: DateTime<Utc>,
    validity: Duration,
) -> Result<Hcert, HcertError> {
    if signer.not_after <= issued_at {
        return Err(HcertError::SignerExpired(signer.not_after));
    }
    let expires_at = (issued_at + validity).min(signer.not_after);
    let claims = Cbor::Map(vec![
        (Cbor::Integer(ISS.into()), Cbor::Text(country.to_owned())),
        (Cbor::Integer(IAT.into()), Cbor::Integer(issued_at.timestamp().into())),
        (Cbor::Integer(EXP.into()), Cbor::Integer(expires_at.timestamp().into())),
        (
            Cbor::Integer(HCERT.into()),
            Cbor::Map(vec![(Cbor::Integer(EU_DCC_V1.into()), to_cbor(payload))]),
        ),
    ]);
    let mut cwt = Vec::new();
    ciborium::into_writer(&claims, &mut cwt).expect("writing to memory");
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(signer.kid.to_vec())
        .build();
    let mut failed = false;
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(cwt)
        .create_signature(b"", |data| match signer.sign(data) {
            Some(signature) => signature.to_vec(),
            None => {
                failed = true;
                Vec::new()
            }
        })
        .build();
    if failed {
        return Err(HcertError::NoSigner);
    }
    let cose = sign1
        .to_tagged_vec()
        .map_err(|e| HcertError::Malformed(e.to_string()))?;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&cose).expect("writing to memory");
    let deflated = zlib.finish().expect("writing to memory");
    Ok(Hcert {
        text: format!("{PREFIX}{}", base45::encode(&deflated)),
        kid: b64(&signer.kid),
        issued_at: DateTime::from_timestamp(issued_at.timestamp(), 0).expect("in range"),
        expires_at: DateTime::from_timestamp(expires_at.timestamp(), 0).expect("in range"),
    })
}

/// An HCERT read back and verified.
#[derive(Clone, Debug)]
pub struct Verified {
    pub payload: Value,
    pub kid: String,
    /// `iss`.
    pub country: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The `ci` of its vaccination entry.
    pub certificate_id: Option<String>,
}

/// The COSE_Sign1 inside an `HC1:` text.
fn open(text: &str) -> Result<CoseSign1, HcertError> {
    let malformed = |why: &str| HcertError::Malformed(why.to_owned());
    if text.len() > MAX_TEXT {
        return Err(HcertError::Malformed(format!("longer than {MAX_TEXT} characters")));
    }
    let body = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| malformed("it does not begin with HC1:"))?;
    let deflated = base45::decode(body).map_err(|_| malformed("not base45"))?;
    let mut cose = Vec::new();
    flate2::read::ZlibDecoder::new(deflated.as_slice())
        .take(MAX_CWT + 1)
        .read_to_end(&mut cose)
        .map_err(|_| malformed("not ZLIB"))?;
    if cose.len() as u64 > MAX_CWT {
        return Err(HcertError::Malformed(format!("inflates past {MAX_CWT} bytes")));
    }
    CoseSign1::from_tagged_slice(&cose)
        .or_else(|_| CoseSign1::from_slice(&cose))
        .map_err(|_| malformed("not a COSE_Sign1"))
}

/// Verifies an `HC1:` text against the trusted document signers, at `now`.
pub fn verify(text: &str, trusted: &DocumentSigners, now: DateTime<Utc>) -> Result<Verified, HcertError> {
    let sign1 = open(text.trim())?;
    if sign1.protected.header.alg != Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256)) {
        return Err(HcertError::Malformed("not signed with ES256".into()));
    }
    let kid = if sign1.protected.header.key_id.is_empty() {
        &sign1.unprotected.key_id
    } else {
        &sign1.protected.header.key_id
    };
    let signer = trusted.by_kid(kid).ok_or_else(|| HcertError::UnknownKid(b64(kid)))?;
    sign1
        .verify_signature(b"", |signature, data| {
            signer.verify(data, signature).then_some(()).ok_or(())
        })
        .map_err(|_| HcertError::BadSignature(signer.id.clone()))?;
    let cwt = sign1
        .payload
        .as_deref()
        .ok_or_else(|| HcertError::Malformed("no payload".into()))?;
    let claims: Cbor = ciborium::from_reader(cwt).map_err(|_| HcertError::Malformed("the CWT is not CBOR".into()))?;
    let claim = |key: i64| {
        claims.as_map().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_integer().is_some_and(|i| i128::from(i) == i128::from(key)))
                .map(|(_, v)| v)
        })
    };
    let time = |key: i64, name: &str| -> Result<DateTime<Utc>, HcertError> {
        claim(key)
            .and_then(Cbor::as_integer)
            .and_then(|i| i64::try_from(i).ok())
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| HcertError::Malformed(format!("no {name}")))
    };
    let issued_at = time(IAT, "iat")?;
    let expires_at = time(EXP, "exp")?;
    if expires_at <= now {
        return Err(HcertError::Expired(expires_at));
    }
    let dcc = claim(HCERT)
        .and_then(Cbor::as_map)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_integer().is_some_and(|i| i128::from(i) == i128::from(EU_DCC_V1)))
        })
        .map(|(_, v)| v)
        .ok_or_else(|| HcertError::Malformed("no hcert claim".into()))?;
    let payload = to_json(dcc, 0)?;
    let certificate_id = payload.pointer("/v/0/ci").and_then(Value::as_str).map(str::to_owned);
    Ok(Verified {
        country: claim(ISS).and_then(Cbor::as_text).unwrap_or_default().to_owned(),
        kid: b64(kid),
        payload,
        issued_at,
        expires_at,
        certificate_id,
    })
}

/// The vaxtrail certificate id inside a UVCI written by [`payload::uvci`].
pub fn certificate_id_of_uvci(uvci: &str) -> Option<&str> {
    let rest = uvci.strip_prefix("URN:UVCI:01:")?;
    let (_country, id) = rest.split_once(':')?;
    Some(id.split('#').next().unwrap_or(id))
}

#[cfg(test)]
mod tests;
