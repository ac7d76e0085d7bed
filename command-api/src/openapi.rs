//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers' annotations and
//! the schema types below (DIVOC's certify record, vaxtrail's answers and problems).

use serde::Serialize;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// A postal address.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    address_line1: String,
    address_line2: Option<String>,
    district: String,
    state: String,
    pincode: String,
    /// ISO 3166-1 alpha-3; the programme's country when absent.
    country: Option<String>,
}

/// The person vaccinated.
#[derive(Serialize, ToSchema)]
pub struct Recipient {
    /// A URI: `did:<scheme>:<id>`, `tel:...`.
    identity: String,
    name: String,
    /// `YYYY-MM-DD`; required unless `age` is given.
    dob: Option<String>,
    /// Whole years (a number or digits), when no date of birth is known.
    age: Option<String>,
    /// `Male`, `Female` or `Other`.
    gender: String,
    nationality: String,
    contact: Vec<String>,
    address: Address,
}

/// The dose given.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vaccination {
    /// A vaccine on the master list.
    name: String,
    batch: String,
    manufacturer: String,
    /// `YYYY-MM-DD`, or an RFC 3339 timestamp reduced to its date in the programme's time zone.
    date: String,
    /// 1 ≤ dose ≤ totalDoses.
    dose: i64,
    /// At most 10.
    total_doses: i64,
    effective_start: String,
    effective_until: String,
}

/// A named person or place.
#[derive(Serialize, ToSchema)]
pub struct Named {
    name: String,
}

/// Where the dose was given.
#[derive(Serialize, ToSchema)]
pub struct Facility {
    name: String,
    address: Address,
}

/// One record of DIVOC's certify request, accepted as-is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertifyRecord {
    pre_enrollment_code: String,
    program_id: String,
    recipient: Recipient,
    vaccination: Vaccination,
    vaccinator: Named,
    facility: Facility,
    comorbidities: Vec<String>,
}

/// A correction: the whole corrected record, optionally naming the certificate it corrects
/// (else the recipient's current certificate for that programme and dose).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    certificate_id: Option<String>,
    #[serde(flatten)]
    record: CertifyRecord,
}

/// A revocation request.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    certificate_id: String,
    /// Shown to verifiers.
    reason: String,
    /// The certificate holder's recipient key (from the query API).
    recipient_key: String,
}

/// An accepted record: the broker has it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    event_id: String,
    /// Where the outcome can be looked up.
    status: String,
    /// True when an earlier request with the same id already appended it.
    duplicate: bool,
}

/// The answer to a bulk CSV: each row's event id or its problems by column.
#[derive(Serialize, ToSchema)]
pub struct BulkResult {
    accepted: u64,
    rejected: u64,
    rows: Vec<serde_json::Value>,
}

/// A field that broke a rule.
#[derive(Serialize, ToSchema)]
pub struct FieldProblem {
    /// Path of the field, e.g. `[1].recipient.gender`.
    field: String,
    rule: String,
}

/// RFC 7807 problem details (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    r#type: String,
    title: String,
    status: u16,
    errors: Vec<FieldProblem>,
}

/// The refusals every command endpoint can answer, all as problem+json.
#[derive(utoipa::IntoResponses)]
pub enum Refusals {
    /// No valid bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(#[to_schema] Problem),
    /// The token lacks the role.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// The body exceeds the limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Invalid fields, each named; nothing accepted.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// The broker did not acknowledge; retry with the same Idempotency-Key.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "vaxtrail command API", description = "Post what happened: each accepted record is an event on vaccination-events, acknowledged by the broker before the 202."),
    paths(
        crate::routes::certify,
        crate::routes::vaccination,
        crate::routes::correction,
        crate::routes::revocation,
        crate::bulk::bulk
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;
