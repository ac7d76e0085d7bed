//! Value types that parse instead of validate: once one exists, it is valid. Each parse names
//! the field and the rule it broke, so the API can answer with exactly what was wrong.

use std::fmt;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A field that broke a rule: what the API reports, one per problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `vaccination.dose`.
    pub field: String,
    /// The rule it broke, in words.
    pub rule: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// Trimmed, non-empty text of bounded length without control characters. Control characters are
/// refused everywhere: what is signed is the text as written, and JSON-LD stacks escape them
/// differently, so a credential carrying one would not verify everywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    /// Longest text accepted by default.
    pub const MAX: usize = 256;

    /// Parses `raw` for `field`, at most `max` characters.
    pub fn parse_max(field: &str, raw: &str, max: usize) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if trimmed.chars().count() > max {
            return Err(FieldError::new(field, format!("must be at most {max} characters")));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters (tab, newline, ...)",
            ));
        }
        // Zero-width joiners (ZWJ, ZWNJ) stay: Indic scripts need them. Bidirectional overrides
        // and isolates could make a printed name or batch read other than it is signed.
        if trimmed.chars().any(is_bidi_control) {
            return Err(FieldError::new(
                field,
                "must not contain bidirectional override or isolate controls (U+202A-U+202E, U+2066-U+2069)",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Parses `raw` for `field`, at most [`Text::MAX`] characters.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::parse_max(field, raw, Self::MAX)
    }

    /// The characters text may not hold, as a regular expression class body: controls, and the
    /// bidirectional overrides and isolates [`Text::parse_max`] refuses.
    pub const FORBIDDEN: &str = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069";

    /// What [`Text::parse_max`] accepts as a regular expression (the length aside): not blank,
    /// none of [`Text::FORBIDDEN`].
    pub fn pattern() -> String {
        let forbidden = Self::FORBIDDEN;
        format!("^[^{forbidden}]*[^\\s{forbidden}][^{forbidden}]*$")
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The bidirectional embedding, override and isolate controls.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A calendar date written `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IsoDate(NaiveDate);

impl IsoDate {
    /// Parses exactly `YYYY-MM-DD`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let well_formed = raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-';
        well_formed
            .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| FieldError::new(field, "must be a date written YYYY-MM-DD"))
    }

    /// The date of a vaccination: a `YYYY-MM-DD` date as it is, or an RFC 3339 timestamp reduced to
    /// its date in the programme's time zone (a dose given at 23:30 local time is that day's dose,
    /// whatever the UTC date).
    pub fn of_vaccination(field: &str, raw: &str, zone: Tz) -> Result<Self, FieldError> {
        if raw.len() == 10 {
            return Self::parse(field, raw);
        }
        DateTime::parse_from_rfc3339(raw)
            .map(|at| Self(at.with_timezone(&zone).date_naive()))
            .map_err(|_| FieldError::new(field, "must be a date (YYYY-MM-DD) or an RFC 3339 timestamp"))
    }

    /// The date.
    pub fn date(self) -> NaiveDate {
        self.0
    }
}

impl From<NaiveDate> for IsoDate {
    fn from(date: NaiveDate) -> Self {
        Self(date)
    }
}

impl fmt::Display for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// Dose `number` of `of`: 1 ≤ number ≤ of ≤ 10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dose {
    number: u8,
    of: u8,
}

impl Dose {
    /// Most doses a schedule may have.
    pub const MAX_DOSES: i64 = 10;

    /// Checks 1 ≤ number ≤ of ≤ 10; errors name `vaccination.dose` or `vaccination.totalDoses`.
    pub fn new(number: i64, of: i64) -> Result<Self, FieldError> {
        if !(1..=Self::MAX_DOSES).contains(&of) {
            return Err(FieldError::new("vaccination.totalDoses", "must be between 1 and 10"));
        }
        if !(1..=of).contains(&number) {
            return Err(FieldError::new(
                "vaccination.dose",
                format!("must be between 1 and totalDoses ({of})"),
            ));
        }
        Ok(Self {
            number: number as u8,
            of: of as u8,
        })
    }

    /// The dose number.
    pub fn number(self) -> u8 {
        self.number
    }

    /// Doses in the schedule.
    pub fn of(self) -> u8 {
        self.of
    }
}

/// An ISO 3166-1 alpha-3 country code, upper case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CountryCode(String);

impl CountryCode {
    /// Parses a code that ISO 3166-1 assigns (case-insensitive).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let upper = raw.trim().to_ascii_uppercase();
        celes::Country::from_alpha3(&upper)
            .map(|_| Self(upper))
            .map_err(|_| FieldError::new(field, "must be an ISO 3166-1 alpha-3 country code, e.g. IND"))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Gender as recorded on the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Gender {
    Male,
    Female,
    Other,
}

impl Gender {
    /// Parses `Male`, `Female` or `Other` (case-insensitive).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "male" => Ok(Self::Male),
            "female" => Ok(Self::Female),
            "other" => Ok(Self::Other),
            _ => Err(FieldError::new(field, "must be one of Male, Female, Other")),
        }
    }
}

impl fmt::Display for Gender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A recipient's identity as a URI (`did:in.gov.uidai.aadhaar:2342343334`, `tel:...`). The raw
/// identity stays inside the event payload; it never becomes a Kafka key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Identity(String);

impl Identity {
    /// The identity DIVOC gives a record that names none: a URI made from its pre-enrollment
    /// code. Two people registered under the same code get the same identity (see the README).
    pub fn from_pre_enrollment_code(code: &Text) -> Self {
        let mut uri = String::from("urn:vaxtrail:pre-enrollment-code:");
        for byte in code.as_str().bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                uri.push(byte as char);
            } else {
                uri.push_str(&format!("%{byte:02X}"));
            }
        }
        Self(uri)
    }

    /// Parses `scheme:value` with no whitespace or control characters.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let text = Text::parse(field, raw)?;
        let valid = text.as_str().split_once(':').is_some_and(|(scheme, value)| {
            !scheme.is_empty() && !value.is_empty() && !text.as_str().chars().any(char::is_whitespace)
        });
        if !valid {
            return Err(FieldError::new(
                field,
                "must be a URI such as did:<scheme>:<id>, without spaces",
            ));
        }
        Ok(Self(text.0))
    }

    /// The identity.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The secret that keys recipient hashes. Whoever holds it can test guesses of identities, so it
/// is configuration, never data.
#[derive(Clone)]
pub struct RecipientKeySecret(Vec<u8>);

impl RecipientKeySecret {
    /// A secret from its bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl fmt::Debug for RecipientKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecipientKeySecret([redacted])")
    }
}

/// The record key of a recipient: HMAC-SHA256 of the identity under the programme's secret, hex.
/// Keeps one person's events ordered on one partition without putting a national id on the wire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecipientKey(String);

impl RecipientKey {
    /// The key of an identity.
    pub fn derive(secret: &RecipientKeySecret, identity: &Identity) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
        mac.update(identity.as_str().as_bytes());
        Self(hex_lower(&mac.finalize().into_bytes()))
    }

    /// Parses a key as written on the topic (64 lowercase hex characters).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let valid = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid
            .then(|| Self(raw.to_owned()))
            .ok_or_else(|| FieldError::new(field, "must be 64 lowercase hex characters"))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_refuses_empty_long_and_control_characters() {
        assert_eq!(Text::parse("name", "  Bhaya Mitra ").unwrap().as_str(), "Bhaya Mitra");
        assert_eq!(Text::parse("name", "   ").unwrap_err().rule, "must not be empty");
        assert!(
            Text::parse_max("name", "abcd", 3)
                .unwrap_err()
                .rule
                .contains("at most 3")
        );
        let tab = Text::parse("vaccination.batch", "MB\t3428").unwrap_err();
        assert_eq!(tab.field, "vaccination.batch");
        assert!(tab.rule.contains("control"));
    }

    #[test]
    fn indic_joiners_are_kept_and_bidi_controls_refused() {
        // "क्‍ष" with a ZWJ, and a Malayalam chillu written with ZWNJ.
        for name in ["क्\u{200D}ष", "ന\u{200C}്", "Bhaya Mitra"] {
            assert_eq!(Text::parse("recipient.name", name).unwrap().as_str(), name);
        }
        for bidi in ['\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}'] {
            let error = Text::parse("recipient.name", &format!("Bhaya{bidi}Mitra")).unwrap_err();
            assert_eq!(error.field, "recipient.name");
            assert!(error.rule.contains("bidirectional"), "{}", error.rule);
        }
    }

    #[test]
    fn an_identity_made_from_a_pre_enrollment_code_is_a_uri() {
        let code = Text::parse("c", "98 80/41#4889").unwrap();
        let identity = Identity::from_pre_enrollment_code(&code);
        assert_eq!(
            identity.as_str(),
            "urn:vaxtrail:pre-enrollment-code:98%2080%2F41%234889"
        );
        assert_eq!(Identity::parse("i", identity.as_str()).unwrap(), identity);
    }

    #[test]
    fn dates_must_be_written_yyyy_mm_dd() {
        assert_eq!(IsoDate::parse("dob", "1994-11-30").unwrap().to_string(), "1994-11-30");
        for bad in ["1994-11-31", "30-11-1994", "1994-1-30", "19941130", ""] {
            assert!(IsoDate::parse("dob", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_vaccination_at_23_30_local_time_is_that_local_day() {
        // 23:30 in Kolkata (UTC+05:30) is 18:00 UTC the same day: no shift.
        let kolkata = IsoDate::of_vaccination("d", "2021-03-01T23:30:00+05:30", chrono_tz::Asia::Kolkata).unwrap();
        assert_eq!(kolkata.to_string(), "2021-03-01");
        // The same instant written in UTC is still 1 March in Kolkata.
        let utc_written = IsoDate::of_vaccination("d", "2021-03-01T18:00:00Z", chrono_tz::Asia::Kolkata).unwrap();
        assert_eq!(utc_written.to_string(), "2021-03-01");
        // 23:30 UTC on 1 March is already 2 March in Kolkata (05:00 next morning).
        let late = IsoDate::of_vaccination("d", "2021-03-01T23:30:00Z", chrono_tz::Asia::Kolkata).unwrap();
        assert_eq!(late.to_string(), "2021-03-02");
        // In the default zone (UTC) it stays 1 March.
        let in_utc = IsoDate::of_vaccination("d", "2021-03-01T23:30:00Z", chrono_tz::UTC).unwrap();
        assert_eq!(in_utc.to_string(), "2021-03-01");
        // DIVOC's sample sends milliseconds.
        let divoc = IsoDate::of_vaccination("d", "2020-12-02T19:21:18.646Z", chrono_tz::UTC).unwrap();
        assert_eq!(divoc.to_string(), "2020-12-02");
        assert!(IsoDate::of_vaccination("d", "yesterday", chrono_tz::UTC).is_err());
    }

    #[test]
    fn doses_are_between_one_and_the_total_and_totals_at_most_ten() {
        let dose = Dose::new(2, 3).unwrap();
        assert_eq!((dose.number(), dose.of()), (2, 3));
        assert_eq!(Dose::new(0, 2).unwrap_err().field, "vaccination.dose");
        assert_eq!(Dose::new(3, 2).unwrap_err().field, "vaccination.dose");
        assert_eq!(Dose::new(1, 11).unwrap_err().field, "vaccination.totalDoses");
        assert_eq!(Dose::new(1, 0).unwrap_err().field, "vaccination.totalDoses");
    }

    #[test]
    fn country_codes_are_assigned_iso_alpha_3_codes() {
        assert_eq!(CountryCode::parse("c", "ind").unwrap().as_str(), "IND");
        assert!(CountryCode::parse("c", "IN").is_err());
        assert!(CountryCode::parse("c", "XYZ").is_err());
    }

    #[test]
    fn gender_is_one_of_three_values() {
        assert_eq!(Gender::parse("g", "male").unwrap(), Gender::Male);
        assert_eq!(Gender::parse("g", "FEMALE").unwrap().to_string(), "Female");
        assert!(
            Gender::parse("g", "M")
                .unwrap_err()
                .rule
                .contains("Male, Female, Other")
        );
    }

    #[test]
    fn identities_are_uris_without_spaces() {
        assert!(Identity::parse("i", "did:in.gov.uidai.aadhaar:2342343334").is_ok());
        for bad in ["2342343334", ":123", "did:", "did:in gov:1"] {
            assert!(Identity::parse("i", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recipient_keys_are_keyed_hashes_that_hide_the_identity() {
        let identity = Identity::parse("i", "did:in.gov.uidai.aadhaar:2342343334").unwrap();
        let key = RecipientKey::derive(&RecipientKeySecret::new("programme secret"), &identity);
        assert_eq!(
            key,
            RecipientKey::derive(&RecipientKeySecret::new("programme secret"), &identity)
        );
        assert_ne!(
            key,
            RecipientKey::derive(&RecipientKeySecret::new("another secret"), &identity)
        );
        assert!(!key.as_str().contains("2342343334"));
        assert_eq!(RecipientKey::parse("k", key.as_str()).unwrap(), key);
        assert!(RecipientKey::parse("k", "ABC").is_err());
        assert!(!format!("{:?}", RecipientKeySecret::new("programme secret")).contains("programme"));
    }
}
