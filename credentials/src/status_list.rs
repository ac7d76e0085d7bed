//! Revocation status lists, bit `i` set when the certificate with status index `i` is revoked:
//! `BitstringStatusListCredential`s (Bitstring Status List v1.0, VC 2.0) of
//! [`domain::status::LIST_SIZE`] entries each for VC 2.0 credentials, and the
//! `StatusList2021Credential` of each partition of `certificate-events` for the data model 1.1
//! credentials issued before (see [`domain::status`]). The signer, which owns the partition,
//! builds and signs its lists from the partition's own log and publishes them there; the query
//! API only serves what was published. A verifier that holds a list checks revocation offline.

use std::io::Write;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{
    credential::{CREDENTIALS_V1, CREDENTIALS_V2, DATA_INTEGRITY_V2, IssuerProfile},
    status::{LIST_SIZE, is_bitstring_list},
};
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};

/// The status list context (bundled with ssi).
pub const STATUS_LIST_2021_V1: &str = "https://w3id.org/vc/status-list/2021/v1";

/// The smallest bitstring a list publishes (16 KB, 131,072 entries), so a list does not tell how
/// many certificates a partition holds.
pub const MIN_BITS: usize = 131_072;

/// `encodedList`: the bitstring padded to at least [`MIN_BITS`], GZIP-compressed, base64url
/// without padding.
pub fn encode(bits: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gzip_padded(bits, bits.len().max(MIN_BITS / 8)))
}

/// The bits zero-padded to `bytes`, GZIP-compressed.
fn gzip_padded(bits: &[u8], bytes: usize) -> Vec<u8> {
    let mut padded = bits.to_vec();
    padded.resize(bytes, 0);
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&padded).expect("writing to memory");
    gzip.finish().expect("writing to memory")
}

/// A Bitstring Status List's `encodedList`: exactly [`LIST_SIZE`] bits, GZIP-compressed, as
/// multibase base64url (`u`, no padding).
pub fn encode_bitstring(bits: &[u8]) -> String {
    multibase::encode(multibase::Base::Base64Url, gzip_padded(bits, (LIST_SIZE / 8) as usize))
}

/// The bitstring of an `encodedList`, StatusList2021's (base64url) or a Bitstring Status List's
/// (multibase base64url, `u` first): at most 16 MiB once inflated.
pub fn decode(encoded: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let compressed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.strip_prefix('u').unwrap_or(encoded).trim_end_matches('='))
        .map_err(|e| format!("encodedList is not base64url: {e}"))?;
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(16 * 1024 * 1024)
        .read_to_end(&mut bits)
        .map_err(|e| format!("encodedList is not GZIP: {e}"))?;
    Ok(bits)
}

/// Whether bit `index` is set in an `encodedList`.
pub fn is_set(encoded: &str, index: u64) -> Result<bool, String> {
    Ok(bit(&decode(encoded)?, index))
}

/// The bitstring a signed list credential (its JSON text) carries.
pub fn bits_of(credential: &str) -> Result<Vec<u8>, String> {
    let value: Value = serde_json::from_str(credential).map_err(|e| format!("the list is not JSON: {e}"))?;
    let encoded = value["credentialSubject"]["encodedList"]
        .as_str()
        .ok_or("the list has no credentialSubject.encodedList")?;
    decode(encoded)
}

/// Sets in `bits` every bit set in `published`, and answers the indexes that were missing: a
/// list never goes backwards (no revocation is ever lifted), so a published bit the bits lack is
/// a fault to report, and to mend before the next list is signed.
pub fn keep_published(bits: &mut Vec<u8>, published: &[u8]) -> Vec<u64> {
    let mut missing = Vec::new();
    for (byte, set) in published.iter().enumerate() {
        let lacking = set & !bits.get(byte).copied().unwrap_or(0);
        for shift in 0..8u64 {
            if lacking & (0x80 >> shift) != 0 {
                missing.push(byte as u64 * 8 + shift);
            }
        }
    }
    for &index in &missing {
        self::set(bits, index);
    }
    missing
}

/// Bit `index` of a bitstring, the first byte's high bit first (StatusList2021's order, and
/// Redis `SETBIT`'s).
pub fn bit(bits: &[u8], index: u64) -> bool {
    usize::try_from(index / 8)
        .ok()
        .and_then(|byte| bits.get(byte))
        .is_some_and(|b| b & (0x80 >> (index % 8)) != 0)
}

/// Sets bit `index`, growing the bitstring as needed.
pub fn set(bits: &mut Vec<u8>, index: u64) {
    let byte = (index / 8) as usize;
    if bits.len() <= byte {
        bits.resize(byte + 1, 0);
    }
    bits[byte] |= 0x80 >> (index % 8);
}

/// The unsigned list credential for `list` with these bits, issued at `issued_at`: a
/// `BitstringStatusListCredential` for a Bitstring Status List, a `StatusList2021Credential`
/// for a partition's data model 1.1 list.
pub fn unsigned(profile: &IssuerProfile, list: u32, bits: &[u8], issued_at: DateTime<Utc>) -> Value {
    let url = profile.status_list_url(list);
    let issued = issued_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    if is_bitstring_list(list) {
        return json!({
            "@context": [CREDENTIALS_V2],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": profile.issuer,
            "validFrom": issued,
            "credentialSubject": {
                "id": format!("{url}#list"),
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": encode_bitstring(bits),
            },
        });
    }
    json!({
        "@context": [CREDENTIALS_V1, STATUS_LIST_2021_V1, DATA_INTEGRITY_V2],
        "id": url,
        "type": ["VerifiableCredential", "StatusList2021Credential"],
        "issuer": profile.issuer,
        "issuanceDate": issued,
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "StatusList2021",
            "statusPurpose": "revocation",
            "encodedList": encode(bits),
        },
    })
}

/// Bits set in a bitstring.
pub fn count(bits: &[u8]) -> u64 {
    bits.iter().map(|b| u64::from(b.count_ones())).sum()
}

/// The list URL and index a credential's `credentialStatus` names.
pub fn entry(credential: &Value) -> Option<(String, u64)> {
    let status = &credential["credentialStatus"];
    let index = match &status["statusListIndex"] {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    Some((status["statusListCredential"].as_str()?.to_owned(), index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_bit_is_kept_and_reported_when_the_bits_lack_it() {
        let mut published = Vec::new();
        for index in [3, 9, 200_000] {
            set(&mut published, index);
        }
        let mut bits = Vec::new();
        set(&mut bits, 9);
        set(&mut bits, 11);
        let published = decode(&encode(&published)).unwrap();
        assert_eq!(keep_published(&mut bits, &published), vec![3, 200_000]);
        for index in [3, 9, 11, 200_000] {
            assert!(bit(&bits, index), "{index}");
        }
        assert_eq!(count(&bits), 4);
        assert!(keep_published(&mut bits, &published).is_empty());
    }

    #[test]
    fn bits_round_trip_through_the_encoding_high_bit_first() {
        let mut bits = vec![0_u8; 4];
        bits[0] = 0b1000_0000; // index 0
        bits[2] = 0b0000_0100; // index 21
        let encoded = encode(&bits);
        for index in 0..40 {
            assert_eq!(is_set(&encoded, index).unwrap(), index == 0 || index == 21, "{index}");
        }
        assert!(!is_set(&encoded, (MIN_BITS - 1) as u64).unwrap());
        assert!(!is_set(&encoded, 10 * MIN_BITS as u64).unwrap());
    }

    #[test]
    fn set_builds_the_bits_that_bit_reads() {
        let mut bits = Vec::new();
        set(&mut bits, 0);
        set(&mut bits, 21);
        assert_eq!(bits, vec![0b1000_0000, 0, 0b0000_0100]);
        assert!(bit(&bits, 0) && bit(&bits, 21) && !bit(&bits, 20) && !bit(&bits, 1_000));
    }

    #[test]
    fn a_bitstring_list_is_multibase_and_exactly_its_size() {
        let mut bits = Vec::new();
        set(&mut bits, 5);
        set(&mut bits, LIST_SIZE - 1);
        let encoded = encode_bitstring(&bits);
        assert!(encoded.starts_with('u') && !encoded.contains('='), "{encoded}");
        let decoded = decode(&encoded).unwrap();
        assert_eq!(decoded.len() as u64 * 8, LIST_SIZE);
        assert!(bit(&decoded, 5) && bit(&decoded, LIST_SIZE - 1) && count(&decoded) == 2);
        let list = unsigned(
            &IssuerProfile {
                issuer: "did:web:x".into(),
                base_url: "https://x".into(),
            },
            2003,
            &bits,
            Utc::now(),
        );
        assert_eq!(list["type"][1], "BitstringStatusListCredential");
        assert_eq!(list["credentialSubject"]["type"], "BitstringStatusList");
        assert_eq!(list["id"], "https://x/v1/status-lists/2003");
        assert!(list["validFrom"].is_string());
    }

    #[test]
    fn an_empty_list_is_padded_to_the_minimum_and_stays_small() {
        let encoded = encode(&[]);
        assert!(encoded.len() < 300, "{} chars", encoded.len());
    }
}
