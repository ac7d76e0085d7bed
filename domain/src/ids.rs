//! Identifiers derived from their sources, so a retry or a zombie writer produces the same id:
//! event ids from the source system and its record id, certificate ids from the event id.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::values::FieldError;

/// Namespace of vaxtrail's name-based (v5) event ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x7c1f_6b2e_93a4_4d58_b0e1_5a9d_c3f2_8e61);

/// The id of an event on `vaccination-events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// The id of a source system's record: the same pair always gives the same id, so a retried
    /// POST appends (at most) the same event.
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

/// A certificate id: 80 bits of SHA-256 of the event it answers, as 16 Crockford base32
/// characters, then a Luhn mod 32 check character (catches every single typo and most swaps).
/// At 80 bits, a billion certificates collide with probability about 4 × 10⁻⁷.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CertificateId(String);

impl CertificateId {
    /// The id of the certificate issued in answer to `event`.
    pub fn for_event(event: EventId) -> Self {
        let digest = Sha256::new_with_prefix(b"vaxtrail-certificate:")
            .chain_update(event.0.as_bytes())
            .finalize();
        let mut bits = digest[..10].iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        let mut body = [0u8; BODY_LEN];
        for slot in body.iter_mut().rev() {
            *slot = ALPHABET[(bits & 31) as usize];
            bits >>= 5;
        }
        let mut text = String::from_utf8(body.to_vec()).expect("the alphabet is ASCII");
        text.push(check_character(&body));
        Self(text)
    }

    /// Parses an id as printed or typed: case-insensitive, Crockford's look-alikes (O→0, I/L→1)
    /// accepted, hyphens and spaces ignored; the check character must match.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let normalized: Vec<u8> = raw
            .bytes()
            .filter(|b| *b != b'-' && *b != b' ')
            .map(|b| match b.to_ascii_uppercase() {
                b'O' => b'0',
                b'I' | b'L' => b'1',
                other => other,
            })
            .collect();
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
    fn certificate_ids_are_derived_printable_and_checked() {
        let event = EventId::derive("cowin", "record-1");
        let id = CertificateId::for_event(event);
        assert_eq!(
            id,
            CertificateId::for_event(event),
            "a zombie writer derives the same id"
        );
        assert_eq!(id.as_str().len(), 17);
        assert!(id.as_str().bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(CertificateId::parse("id", &id.as_str().to_lowercase()).unwrap(), id);
        let grouped = format!("{}-{}", &id.as_str()[..8], &id.as_str()[8..]);
        assert_eq!(CertificateId::parse("id", &grouped).unwrap(), id);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let id = CertificateId::for_event(EventId::derive("cowin", "record-9"));
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
            .map(|i| CertificateId::for_event(EventId::derive("load", &i.to_string())))
            .collect();
        assert_eq!(ids.len(), 50_000);
    }
}
