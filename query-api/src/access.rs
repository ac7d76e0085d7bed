//! Who may read what, decided here and nowhere else.
//!
//! A certificate carries a person's name, birth date, identity and address, so reading it needs
//! either the holder's access code or a token whose role may read it. An anonymous caller learns
//! from a certificate id only where it stands (active, superseded or revoked); a verifier needs
//! nothing from us but the QR code, the DID document and the status lists, all public.
//!
//! The holder's access code is an HMAC of the certificate id under a secret of the query API
//! (`VAXTRAIL_HOLDER_CODE_SECRET`): 80 bits, printed as 16 Crockford base-32 characters. The
//! facility that recorded the dose reads it with the outcome (`GET /v1/events/{id}`) and hands it
//! to the recipient (printed on the vaccination slip, or sent by SMS as a link), as CoWIN sent a
//! reference id and an OTP. It needs no storage, reveals nothing about the person, and is checked
//! in constant time; rotating the secret invalidates every code at once.
//!
//! The table ([`scope`]) says, per route and role, whether a caller reads everything, only what
//! its own source system recorded (a facility: the token subject is its source system), or
//! nothing. The README prints the same table and `tests/tests/access.rs` walks it.

use axum::http::HeaderMap;
use domain::ids::{CertificateId, crockford_decode_80, crockford_encode_80};
use hmac::{Hmac, Mac};
use platform::{
    auth::{Caller, Role},
    problem::Problem,
};
use sha2::Sha256;

/// The header a holder's access code may come in (or `?code=` on links).
pub const ACCESS_CODE_HEADER: &str = "vaxtrail-access-code";

/// The routes that read personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A certificate: its credential, PDF and QR codes.
    Certificate,
    /// What became of a posted event.
    Event,
    /// A recipient's certificates, by recipient key or pre-enrollment code.
    Recipient,
    /// The audit trail (the log's records, checkpoints).
    Audit,
    /// Analytics with cells under the suppression threshold (public answers suppress them).
    FullAnalytics,
}

/// What a role may read on a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    All,
    /// Only what the caller's own source system recorded.
    OwnSource,
    /// Nothing (403).
    Denied,
}

/// The roles table.
pub const fn scope(route: Route, role: Role) -> Scope {
    use Role::*;
    use Route::*;
    match (route, role) {
        (_, Admin) => Scope::All,
        (Certificate | Event | Recipient, Facility) => Scope::OwnSource,
        (Certificate | Event | Recipient, Controller) => Scope::All,
        (Event, Auditor) => Scope::All,
        (Certificate | Recipient, Auditor) => Scope::Denied,
        (Audit, Auditor) => Scope::All,
        (Audit, Facility | Controller) => Scope::Denied,
        (FullAnalytics, Monitoring) => Scope::All,
        (FullAnalytics, Facility | Controller | Auditor) => Scope::Denied,
        (Certificate | Event | Recipient | Audit, Monitoring) => Scope::Denied,
    }
}

/// The widest scope any of the caller's roles gives.
pub fn scope_of(caller: &Caller, route: Route) -> Scope {
    let rank = |s: Scope| match s {
        Scope::All => 2,
        Scope::OwnSource => 1,
        Scope::Denied => 0,
    };
    caller
        .roles
        .iter()
        .map(|role| scope(route, *role))
        .max_by_key(|s| rank(*s))
        .unwrap_or(Scope::Denied)
}

/// Holder access codes.
pub struct HolderCodes {
    key: Vec<u8>,
}

impl HolderCodes {
    /// The secret the local stack uses; refused outside development.
    pub const DEVELOPMENT_SECRET: &'static str = "vaxtrail-local-development-holder-codes";

    pub fn new(secret: &[u8]) -> Self {
        Self { key: secret.to_vec() }
    }

    fn mac(&self, certificate: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"vaxtrail-holder-code:");
        mac.update(certificate.as_bytes());
        mac
    }

    /// The code of a certificate, grouped in fours for print (`ABCD-EFGH-JKMN-PQRS`).
    pub fn code(&self, certificate: &str) -> String {
        let digest = self.mac(certificate).finalize().into_bytes();
        let bits: [u8; 10] = digest[..10].try_into().expect("10 of 32 bytes");
        let plain = crockford_encode_80(&bits);
        plain
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ASCII"))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Whether `presented` is the code of `certificate` (constant time).
    pub fn matches(&self, certificate: &str, presented: &str) -> bool {
        crockford_decode_80(presented).is_some_and(|bits| self.mac(certificate).verify_truncated_left(&bits).is_ok())
    }
}

/// A holder code presented with a request, from the header or `?code=`. A code presented blank
/// is presented (and wrong): a request carrying a credential that does not hold is refused, even
/// beside another that would.
pub fn presented_code<'a>(headers: &'a HeaderMap, query_code: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(ACCESS_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(query_code)
        .map(str::trim)
}

/// Who reads a certificate.
pub enum CertificateReader {
    /// The holder, with the certificate's access code.
    Holder,
    /// A caller reading everything.
    All,
    /// A facility: only what its source system recorded.
    Source(String),
}

/// 401 for no credentials at all: the same answer whether the certificate exists or not.
pub fn needs_credentials() -> Problem {
    Problem::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "A certificate is personal data: present the holder's access code (Vaxtrail-Access-Code or ?code=) or a bearer token; anyone may read its standing at /status",
    )
}

/// 403 for a caller outside its scope, naming the rule.
pub fn not_yours(rule: &'static str, title: &str) -> Problem {
    metrics::counter!("vaxtrail_query_refused_total", "rule" => rule).increment(1);
    Problem::new(axum::http::StatusCode::FORBIDDEN, "forbidden", title).with_error("", rule)
}

/// The reader of `certificate`: its holder (with the right code) or an authorized caller.
pub async fn certificate_reader(
    auth: &platform::auth::Verifier,
    codes: &HolderCodes,
    headers: &HeaderMap,
    query_code: Option<&str>,
    certificate: &CertificateId,
) -> Result<CertificateReader, Problem> {
    if let Some(code) = presented_code(headers, query_code) {
        if codes.matches(certificate.as_str(), code) {
            return Ok(CertificateReader::Holder);
        }
        metrics::counter!("vaxtrail_query_refused_total", "rule" => "wrong-access-code").increment(1);
        return Err(Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "The access code does not belong to this certificate",
        )
        .with_error("code", "wrong-access-code"));
    }
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Err(needs_credentials());
    }
    let caller = auth.authenticate(headers).await?;
    match scope_of(&caller, Route::Certificate) {
        Scope::All => Ok(CertificateReader::All),
        Scope::OwnSource => Ok(CertificateReader::Source(caller.subject)),
        Scope::Denied => Err(not_yours(
            "role-may-not-read-certificates",
            "This role may not read certificates",
        )),
    }
}

/// The caller of a route that needs a token, with its scope (403 when the table denies it).
pub async fn caller_for(
    auth: &platform::auth::Verifier,
    headers: &HeaderMap,
    route: Route,
) -> Result<(Caller, Scope), Problem> {
    let caller = auth.authenticate(headers).await?;
    match scope_of(&caller, route) {
        Scope::Denied => Err(not_yours("role-may-not-read-this", "This role may not read this")),
        scope => Ok((caller, scope)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_code_opens_its_own_certificate_only() {
        let codes = HolderCodes::new(b"secret");
        let code = codes.code("ABCDEFGHJKMNPQRS0");
        assert_eq!(code.len(), 19, "{code}");
        assert!(codes.matches("ABCDEFGHJKMNPQRS0", &code));
        assert!(codes.matches("ABCDEFGHJKMNPQRS0", &code.replace('-', "").to_lowercase()));
        assert!(!codes.matches("ABCDEFGHJKMNPQRS1", &code));
        assert!(!HolderCodes::new(b"other").matches("ABCDEFGHJKMNPQRS0", &code));
        assert!(!codes.matches("ABCDEFGHJKMNPQRS0", "not a code"));
    }

    #[test]
    fn the_widest_role_wins_and_no_role_reads_nothing() {
        let caller = |roles: Vec<Role>| Caller {
            subject: "s".into(),
            roles,
            facilities: vec![],
        };
        assert_eq!(
            scope_of(&caller(vec![Role::Facility]), Route::Certificate),
            Scope::OwnSource
        );
        assert_eq!(
            scope_of(&caller(vec![Role::Facility, Role::Controller]), Route::Certificate),
            Scope::All
        );
        assert_eq!(scope_of(&caller(vec![]), Route::Event), Scope::Denied);
        assert_eq!(
            scope_of(&caller(vec![Role::Auditor]), Route::Certificate),
            Scope::Denied
        );
    }
}
