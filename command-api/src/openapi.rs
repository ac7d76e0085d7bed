//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers' annotations and
//! the schema types below (DIVOC's certify record, vaxtrail's answers and problems).

use domain::{
    ids::CertificateId,
    values::{Dose, Text},
};
use serde::Serialize;
use serde_json::json;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::{
        Schema,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// The characters a text field may not hold: controls, and the bidirectional overrides and
/// isolates that could make a printed name read other than it is signed.
const FORBIDDEN: &str = Text::FORBIDDEN;

/// A JSON Schema, written as JSON.
fn schema(value: serde_json::Value) -> Schema {
    serde_json::from_value(value).expect("a valid schema")
}

/// Required text: not blank, at most `max` characters, no forbidden characters.
fn text_of(max: usize) -> Schema {
    schema(json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": Text::pattern()}))
}

fn text() -> Schema {
    text_of(Text::MAX)
}

fn code() -> Schema {
    text_of(64)
}

fn reason() -> Schema {
    text_of(500)
}

/// Optional text: absent, null or blank (DIVOC's systems send `""` for what they lack), or text.
fn optional_text() -> Schema {
    let pattern = format!("^[^{FORBIDDEN}]*$");
    schema(json!({"type": ["string", "null"], "maxLength": Text::MAX, "pattern": pattern}))
}

fn texts() -> Schema {
    schema(json!({"type": ["array", "null"], "items": text()}))
}

/// A URI without spaces (`did:<scheme>:<id>`, `tel:...`); the pre-enrollment code stands in
/// when absent or blank.
fn identity() -> Schema {
    let pattern = format!("^\\s*$|^[^\\s:{FORBIDDEN}]+:[^\\s{FORBIDDEN}]+$");
    schema(json!({"type": ["string", "null"], "maxLength": Text::MAX, "pattern": pattern}))
}

fn gender() -> Schema {
    schema(json!({"type": "string", "enum": ["Male", "Female", "Other"]}))
}

/// ISO 3166-1 alpha-3; the programme's country when absent or blank.
fn country() -> Schema {
    let codes: Vec<&str> = celes::Country::get_countries().iter().map(|c| c.alpha3).collect();
    schema(json!({"anyOf": [
        {"type": "string", "enum": codes},
        {"type": ["string", "null"], "pattern": "^\\s*$"}
    ]}))
}

/// `YYYY-MM-DD`, not after today (in the programme's time zone).
fn date() -> Schema {
    schema(json!({"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}))
}

/// A date of birth, or blank when `age` is given instead.
fn birth_date() -> Schema {
    schema(json!({"anyOf": [date(), {"type": ["string", "null"], "pattern": "^\\s*$"}]}))
}

/// `YYYY-MM-DD`, or an RFC 3339 timestamp reduced to its date in the programme's time zone; not
/// after today.
fn vaccination_date() -> Schema {
    schema(json!({"anyOf": [date(), {"type": "string", "format": "date-time"}]}))
}

/// A dose number from 1 to 10, as a JSON number or digits in a string (DIVOC's clients send
/// both).
fn dose() -> Schema {
    schema(json!({"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": Dose::MAX_DOSES},
        {"type": "string", "pattern": "^(10|[1-9])$"}
    ]}))
}

fn age() -> Schema {
    schema(json!({"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 150},
        {"type": "string", "pattern": "^\\s*(1[0-4][0-9]|150|[0-9]{1,2})\\s*$"},
        {"type": ["string", "null"], "pattern": "^\\s*$"}
    ]}))
}

fn certificate_id() -> Schema {
    schema(json!({"type": "string", "pattern": CertificateId::PATTERN}))
}

fn optional_certificate_id() -> Schema {
    schema(json!({"anyOf": [certificate_id(), {"type": ["string", "null"], "pattern": "^\\s*$"}]}))
}

fn recipient_key() -> Schema {
    schema(json!({"type": "string", "pattern": "^[0-9a-f]{64}$"}))
}

/// A postal address.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[schema(schema_with = text)]
    address_line1: String,
    #[schema(schema_with = optional_text)]
    address_line2: Option<String>,
    #[schema(schema_with = text)]
    district: String,
    #[schema(schema_with = text)]
    state: String,
    #[schema(schema_with = text)]
    pincode: String,
    /// ISO 3166-1 alpha-3; the programme's country when absent.
    #[schema(schema_with = country)]
    country: Option<String>,
}

/// The person vaccinated. `dob` or `age` is required (`dob` wins when both are given).
#[derive(Serialize, ToSchema)]
#[schema(as = Recipient)]
pub struct Recipient {
    /// A URI: `did:<scheme>:<id>`, `tel:...`; the pre-enrollment code stands in when absent.
    #[schema(schema_with = identity)]
    identity: Option<String>,
    #[schema(schema_with = text)]
    name: String,
    /// `YYYY-MM-DD`, not after today; required unless `age` is given.
    #[schema(schema_with = birth_date)]
    dob: Option<String>,
    /// Whole years from 0 to 150 (a number or digits), when no date of birth is known.
    #[schema(schema_with = age)]
    age: Option<String>,
    #[schema(schema_with = gender)]
    gender: String,
    #[schema(schema_with = text)]
    nationality: String,
    #[schema(schema_with = texts)]
    contact: Option<Vec<String>>,
    address: Address,
}

/// The dose given.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vaccination {
    /// A vaccine on the programme's master list (the document lists them).
    #[schema(schema_with = text)]
    name: String,
    #[schema(schema_with = text)]
    batch: String,
    #[schema(schema_with = text)]
    manufacturer: String,
    /// `YYYY-MM-DD`, or an RFC 3339 timestamp reduced to its date in the programme's time zone;
    /// not after today.
    #[schema(schema_with = vaccination_date)]
    date: String,
    /// 1 ≤ dose ≤ totalDoses.
    #[schema(schema_with = dose)]
    dose: i64,
    /// At most 10.
    #[schema(schema_with = dose)]
    total_doses: i64,
    #[schema(schema_with = date)]
    effective_start: String,
    /// Not before `effectiveStart`.
    #[schema(schema_with = date)]
    effective_until: String,
}

/// A named person or place.
#[derive(Serialize, ToSchema)]
pub struct Named {
    #[schema(schema_with = text)]
    name: String,
}

/// Where the dose was given.
#[derive(Serialize, ToSchema)]
pub struct Facility {
    #[schema(schema_with = text)]
    name: String,
    address: Address,
}

/// One record of DIVOC's certify request, accepted as-is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertifyRecord {
    #[schema(schema_with = code)]
    pre_enrollment_code: String,
    #[schema(schema_with = text)]
    program_id: String,
    recipient: Recipient,
    vaccination: Vaccination,
    vaccinator: Named,
    facility: Facility,
    #[schema(schema_with = texts)]
    comorbidities: Option<Vec<String>>,
}

/// A correction: the whole corrected record, optionally naming the certificate it corrects
/// (else the recipient's current certificate for that programme and dose).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    #[schema(schema_with = optional_certificate_id)]
    certificate_id: Option<String>,
    #[serde(flatten)]
    record: CertifyRecord,
}

/// A revocation request.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    #[schema(schema_with = certificate_id)]
    certificate_id: String,
    /// Shown to verifiers.
    #[schema(schema_with = reason)]
    reason: String,
    /// The certificate holder's recipient key (from the query API).
    #[schema(schema_with = recipient_key)]
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

/// The document this deployment serves: [`ApiDoc`] with the vaccines of its master list as the
/// only names `vaccination.name` accepts, and its limit on records per certify request.
pub fn document(catalog: &domain::vaccine::VaccineCatalog, max_records: usize) -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let certify = "/paths/~1v1~1certify/post/requestBody/content/application~1json/schema";
    if let Some(serde_json::Value::Object(array)) = document.pointer_mut(certify) {
        array.insert("minItems".into(), json!(1));
        array.insert("maxItems".into(), json!(max_records));
    }
    let mut names: Vec<&str> = catalog.vaccines().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    if let Some(name) = document.pointer_mut("/components/schemas/Vaccination/properties/name") {
        *name = json!({"type": "string", "enum": names, "description": "A vaccine on the programme's master list"});
    }
    document
}
