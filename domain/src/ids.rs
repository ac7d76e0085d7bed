//! Identifiers derived from their sources, so a retry or a zombie writer produces the same id:
//! event ids from the source system and its record id, certificate ids from the event id.
//!
//! Ids that reach the public (event ids posted without an `Idempotency-Key`, certificate ids) are
//! keyed: an HMAC-SHA256 under the deployment's [`IdKey`], so nobody outside the platform can
//! compute a person's certificate id from what they know about the person. Ids of records the
//! platform derives from other ids (an outcome's id from the event it answers) need no key.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::values::FieldError;

/// Namespace of vaxtrail's name-based (v5) ids of derived records.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x7c1f_6b2e_93a4_4d58_b0e1_5a9d_c3f2_8e61);

/// The secret that keys event and certificate ids (`VAXTRAIL_ID_SECRET`). Whoever holds it can
/// compute ids from records, so it is configuration, never data, and never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdKey([u8; 32]);

impl IdKey {
    /// The secret the local stack and the tests use; a service outside development refuses it.
    pub const DEVELOPMENT_SECRET: &'static str = "vaxtrail-local-development-ids";

    /// A key from the configured secret (any length; it is hashed to 32 bytes).
    pub fn new(secret: &[u8]) -> Self {
        use sha2::Digest;
        Self(
            Sha256::new_with_prefix(b"vaxtrail-id-key:")
                .chain_update(secret)
                .finalize()
                .into(),
        )
    }

    /// The development key ([`IdKey::DEVELOPMENT_SECRET`]).
    pub fn development() -> Self {
        Self::new(Self::DEVELOPMENT_SECRET.as_bytes())
    }

    /// The key of the permutation that places certificates in their status lists (so a list's
    /// order tells nothing of when its people were vaccinated).
    pub fn status_permutation_key(&self) -> [u8; 32] {
        self.mac(b"vaxtrail-status-permutation:", &[])
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey([redacted])")
    }
}

/// The id of an event on `vaccination-events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// The id of a source system's record, keyed: the same pair always gives the same id, so a
    /// retried POST appends (at most) the same event, and without the key nobody can compute it.
    /// A UUID of version 8 (custom), so it is told apart from the v5 ids of earlier logs.
    pub fn keyed(key: &IdKey, source_system: &str, record_id: &str) -> Self {
        let digest = key.mac(b"vaxtrail-event:", &[source_system.as_bytes(), record_id.as_bytes()]);
        let bytes: [u8; 16] = digest[..16].try_into().expect("16 of 32 bytes");
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// The id of a record the platform derives from another id it names (an outcome from the
    /// event it answers, a checkpoint from its position): not secret, the same everywhere.
    pub fn derive(source_system: &str, record_id: &str) -> Self {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        let name = format!("{}:{source_system}{record_id}", source_system.len());
        Self(Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes()))
    }

    /// Parses a UUID.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| FieldError::new(field, "must be a UUID"))
    }

    /// The UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Crockford's base32 alphabet: no I, L, O or U, so ids read aloud and typed back stay right.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of the 80-bit body.
const BODY_LEN: usize = 16;

/// A certificate id: 80 bits of an HMAC-SHA256, under the deployment's [`IdKey`], of the event it
/// answers, as 16 Crockford base32 characters, then a Luhn mod 32 check character (catches every
/// single typo and most swaps). At 80 bits, a billion certificates collide with probability about
/// 4 × 10⁻⁷. (Logs written before the ids were keyed hold SHA-256-derived ids of the same form;
/// they parse and stay valid.)
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CertificateId(String);

impl CertificateId {
    /// An id as printed (canonical form: upper case, no separators), as a regular expression.
    /// The check character is beyond a pattern: [`CertificateId::parse`] checks it.
    pub const PATTERN: &str = "^[0-9A-HJKMNP-TV-Z]{17}$";

    /// The id of the certificate issued in answer to `event`.
    pub fn for_event(key: &IdKey, event: EventId) -> Self {
        Self::from_digest(&key.mac(b"vaxtrail-certificate:", &[event.0.as_bytes()]))
    }

    /// The id whose body is the first 80 bits of `digest`.
    fn from_digest(digest: &[u8]) -> Self {
        let mut text = crockford_encode_80(digest[..10].try_into().expect("at least 10 bytes"));
        text.push(check_character(text.as_bytes()));
        Self(text)
    }

    /// Parses an id as printed or typed: case-insensitive, Crockford's look-alikes (O→0, I/L→1)
    /// accepted, hyphens and spaces ignored; the check character must match.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let normalized: Vec<u8> = as_typed(raw).collect();
        if normalized.len() != BODY_LEN + 1 || !normalized.iter().all(|b| ALPHABET.contains(b)) {
            return Err(FieldError::new(field, "must be a 17-character certificate id"));
        }
        if check_character(&normalized[..BODY_LEN]) as u8 != normalized[BODY_LEN] {
            return Err(FieldError::new(
                field,
                "is not a valid certificate id (check character mismatch)",
            ));
        }
        Ok(Self(String::from_utf8(normalized).expect("the alphabet is ASCII")))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Crockford text as people type it: hyphens and spaces dropped, upper-cased, look-alikes read as
/// the digits they stand for (O→0, I/L→1).
fn as_typed(raw: &str) -> impl Iterator<Item = u8> + '_ {
    raw.bytes()
        .filter(|b| *b != b'-' && *b != b' ')
        .map(|b| match b.to_ascii_uppercase() {
            b'O' => b'0',
            b'I' | b'L' => b'1',
            other => other,
        })
}

/// 80 bits as 16 Crockford base-32 characters (holder access codes use it too).
pub fn crockford_encode_80(bytes: &[u8; 10]) -> String {
    let mut bits = bytes.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let mut body = [0u8; BODY_LEN];
    for slot in body.iter_mut().rev() {
        *slot = ALPHABET[(bits & 31) as usize];
        bits >>= 5;
    }
    String::from_utf8(body.to_vec()).expect("the alphabet is ASCII")
}

/// The 80 bits of 16 Crockford base-32 characters as typed: case-insensitive, look-alikes
/// (O→0, I/L→1) accepted, hyphens and spaces ignored.
pub fn crockford_decode_80(text: &str) -> Option<[u8; 10]> {
    let mut bits = 0u128;
    let mut count = 0;
    for byte in as_typed(text) {
        let value = ALPHABET.iter().position(|a| *a == byte)?;
        bits = (bits << 5) | value as u128;
        count += 1;
        if count > BODY_LEN {
            return None;
        }
    }
    (count == BODY_LEN).then(|| {
        let bytes = bits.to_be_bytes();
        bytes[6..16].try_into().expect("10 bytes")
    })
}

/// Luhn mod N over the base32 alphabet.
fn check_character(body: &[u8]) -> char {
    const N: usize = 32;
    let mut factor = 2;
    let mut sum = 0;
    for symbol in body.iter().rev() {
        let value = ALPHABET
            .iter()
            .position(|a| a == symbol)
            .expect("body characters are in the alphabet");
        let addend = factor * value;
        sum += addend / N + addend % N;
        factor = if factor == 2 { 1 } else { 2 };
    }
    ALPHABET[(N - sum % N) % N] as char
}

/// A certificate's SMART Health Card revocation id (`rid`): 72 bits of a SHA-256 of its id
/// under a fixed label, hex (18 characters, all in base64url's alphabet). It names the
/// certificate, not the person; the issuer finds it by lookup.
pub fn shc_rid(certificate_id: &str) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(format!("vaxtrail-shc-rid|{certificate_id}").as_bytes());
    digest[..9].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_source_record_always_gets_the_same_event_id() {
        let first = EventId::derive("cowin", "record-1");
        assert_eq!(first, EventId::derive("cowin", "record-1"));
        assert_ne!(first, EventId::derive("cowin", "record-2"));
        assert_ne!(EventId::derive("ab", "c"), EventId::derive("a", "bc"));
        assert_eq!(EventId::parse("id", &first.to_string()).unwrap(), first);
    }

    #[test]
    fn keyed_ids_are_deterministic_and_cannot_be_computed_without_the_secret() {
        let key = IdKey::new(b"the deployment's secret");
        let event = EventId::keyed(&key, "cowin", "1112/1234/dose-1");
        assert_eq!(
            event,
            EventId::keyed(&key, "cowin", "1112/1234/dose-1"),
            "a retry gets the same id"
        );
        assert_eq!(event.uuid().get_version_num(), 8);
        assert_ne!(event, EventId::keyed(&key, "cowin", "1112/1234/dose-2"));
        assert_ne!(EventId::keyed(&key, "ab", "c"), EventId::keyed(&key, "a", "bc"));
        // Whoever knows the record but not the secret computes other ids: under the old scheme
        // (v5 of the record, SHA-256 of the event) and under any other key.
        let guess_key = IdKey::development();
        assert_ne!(event, EventId::keyed(&guess_key, "cowin", "1112/1234/dose-1"));
        assert_ne!(event, EventId::derive("cowin", "1112/1234/dose-1"));
        let certificate = CertificateId::for_event(&key, event);
        assert_eq!(
            certificate,
            CertificateId::for_event(&key, event),
            "a zombie derives the same id"
        );
        assert_ne!(certificate, CertificateId::for_event(&guess_key, event));
        let old_scheme = {
            use sha2::Digest;
            let digest = Sha256::new_with_prefix(b"vaxtrail-certificate:")
                .chain_update(event.uuid().as_bytes())
                .finalize();
            CertificateId::from_digest(&digest)
        };
        assert_ne!(certificate, old_scheme);
        // Ids of the old scheme, already in logs, still parse.
        assert_eq!(CertificateId::parse("id", old_scheme.as_str()).unwrap(), old_scheme);
        assert!(!format!("{key:?}").contains("secret"));
    }

    #[test]
    fn certificate_ids_are_derived_printable_and_checked() {
        let event = EventId::derive("cowin", "record-1");
        let key = IdKey::development();
        let id = CertificateId::for_event(&key, event);
        assert_eq!(
            id,
            CertificateId::for_event(&key, event),
            "a zombie writer derives the same id"
        );
        assert_eq!(id.as_str().len(), 17);
        assert!(id.as_str().bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(CertificateId::parse("id", &id.as_str().to_lowercase()).unwrap(), id);
        let grouped = format!("{}-{}", &id.as_str()[..8], &id.as_str()[8..]);
        assert_eq!(CertificateId::parse("id", &grouped).unwrap(), id);
    }

    #[test]
    fn crockford_80_bits_round_trip_as_typed() {
        let bytes = [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 0xff, 0x10];
        let text = crockford_encode_80(&bytes);
        assert_eq!(text.len(), 16);
        assert_eq!(crockford_decode_80(&text), Some(bytes));
        let typed = format!("{}-{}", &text[..8], &text[8..]).to_lowercase();
        assert_eq!(crockford_decode_80(&typed), Some(bytes));
        assert_eq!(crockford_decode_80(&text[..15]), None);
        assert_eq!(crockford_decode_80(&format!("{text}0")), None);
        assert_eq!(crockford_decode_80("UUUUUUUUUUUUUUUU"), None);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let id = CertificateId::for_event(&IdKey::development(), EventId::derive("cowin", "record-9"));
        for position in 0..id.as_str().len() {
            for replacement in ALPHABET.iter().filter(|c| **c != id.as_str().as_bytes()[position]) {
                let mut typo = id.as_str().as_bytes().to_vec();
                typo[position] = *replacement;
                let typo = String::from_utf8(typo).unwrap();
                assert!(CertificateId::parse("id", &typo).is_err(), "{typo} accepted");
            }
        }
    }

    #[test]
    fn ids_from_many_events_do_not_collide() {
        let ids: std::collections::HashSet<_> = (0..50_000)
            .map(|i| CertificateId::for_event(&IdKey::development(), EventId::derive("load", &i.to_string())))
            .collect();
        assert_eq!(ids.len(), 50_000);
    }
}
