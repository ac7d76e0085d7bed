//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers' annotations and
//! the schema types below (DIVOC's certify record, vaxtrail's answers and problems).

use serde::Serialize;
use serde_json::json;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// The request bodies: the wire model the parser reads (`domain::commands::wire`), each field
/// with the JSON Schema of what its parser accepts.
pub use domain::commands::wire::{
    Address, CertifyRecord, Correction, Facility, Named, Recipient, Revocation, Vaccination,
};

/// Whom to erase: exactly one of `identity` (the URI their records carry) and `recipientKey`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    #[schema(schema_with = domain::commands::wire::schemas::identity)]
    identity: Option<String>,
    #[schema(schema_with = domain::commands::wire::schemas::recipient_key)]
    recipient_key: Option<String>,
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

/// A programme's definition (the precise schema is set by [`document`], from `domain::master`).
#[derive(ToSchema)]
pub struct ProgrammeBody;

/// A vaccine's definition.
#[derive(ToSchema)]
pub struct VaccineBody;

/// A facility's registration.
#[derive(ToSchema)]
pub struct FacilityBody;

/// A vaccinator's registration.
#[derive(ToSchema)]
pub struct VaccinatorBody;

/// A facility's new status.
#[derive(ToSchema)]
pub struct FacilityStatusBody;

/// A programme, vaccine or facility as now defined: the body sent, with `kind` and `id`.
#[derive(ToSchema)]
pub struct MasterRecordView;

/// Every programme, vaccine and facility.
#[derive(ToSchema)]
pub struct MasterDataListing;

/// RFC 7807 problem details (for the answers that name no field).
pub type ProblemDetails = Problem;

/// The master-data schemas: what `domain::master`'s parsers accept, exactly.
fn master_schemas() -> [(&'static str, serde_json::Value); 7] {
    use domain::{
        master::{ICD11_PATTERN, LANGUAGE_PATTERN},
        values::Text,
    };
    let text = json!({"type": "string", "minLength": 1, "maxLength": Text::MAX, "pattern": Text::pattern()});
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let countries: Vec<&str> = celes::Country::get_countries().iter().map(|c| c.alpha3).collect();
    let status = json!({"type": "string", "enum": ["active", "suspended"]});
    let eu = json!({
        "type": ["object", "null"], "additionalProperties": false,
        "required": ["product", "manufacturer", "prophylaxis"],
        "properties": {"product": text, "manufacturer": text, "prophylaxis": text},
        "description": "EU DCC value-set codes, when known"
    });
    let programme = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "totalDoses", "updateLimit", "timeZone", "country"],
        "properties": {
            "name": text,
            "diseases": {"type": ["array", "null"], "maxItems": 16, "items": text},
            "totalDoses": {"type": "integer", "minimum": 1, "maximum": 10},
            "updateLimit": {"type": "integer", "minimum": 0, "maximum": 100, "description": "How many times a dose's certificate may be corrected"},
            "timeZone": {"type": "string", "enum": zones, "description": "IANA time zone: a vaccination timestamp is reduced to its date there"},
            "country": {"type": "string", "enum": countries},
            "languages": {"type": ["array", "null"], "maxItems": 8, "items": {"type": "string", "maxLength": 35, "pattern": LANGUAGE_PATTERN}, "description": "BCP 47 languages of the certificate besides English"}
        }
    });
    let vaccine = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "icd11Code", "icd11Term", "vaccineType", "disease"],
        "properties": {
            "name": text,
            "manufacturer": {"type": ["string", "null"], "minLength": 1, "maxLength": Text::MAX, "pattern": Text::pattern()},
            "icd11Code": {"type": "string", "pattern": ICD11_PATTERN},
            "icd11Term": text, "vaccineType": text, "disease": text, "eu": eu
        }
    });
    let facility = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "district", "state"],
        "properties": {
            "name": text, "district": text, "state": text,
            "status": {"type": ["string", "null"], "enum": ["active", "suspended", null], "description": "Suspended when absent: a controller activates it"}
        }
    });
    let vaccinator = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "facilities"],
        "properties": {
            "name": text,
            "facilities": {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string", "pattern": domain::master::ID_PATTERN}},
            "status": {"type": ["string", "null"], "enum": ["active", "suspended", null], "description": "Active when absent"}
        }
    });
    let view = json!({
        "type": "object", "required": ["kind", "id"],
        "properties": {"kind": {"type": "string", "enum": ["programme", "vaccine", "facility", "vaccinator"]}, "id": {"type": "string"}},
        "description": "The record as defined: the body's fields with kind and id"
    });
    let listing = json!({
        "type": "object", "required": ["programmes", "vaccines", "facilities", "vaccinators"],
        "properties": {
            "programmes": {"type": "array", "items": view},
            "vaccines": {"type": "array", "items": view},
            "facilities": {"type": "array", "items": view},
            "vaccinators": {"type": "array", "items": view}
        }
    });
    [
        ("ProgrammeBody", programme),
        ("VaccineBody", vaccine),
        ("FacilityBody", facility),
        ("VaccinatorBody", vaccinator),
        (
            "FacilityStatusBody",
            json!({"type": "object", "additionalProperties": false, "required": ["status"], "properties": {"status": status}}),
        ),
        ("MasterRecordView", view),
        ("MasterDataListing", listing),
    ]
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
    /// Erasure only: this deployment has no key store.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
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
        crate::routes::erasure,
        crate::bulk::bulk,
        crate::master::routes::list,
        crate::master::routes::put_programme,
        crate::master::routes::post_vaccine,
        crate::master::routes::put_facility,
        crate::master::routes::facility_status,
        crate::master::routes::put_vaccinator
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
    if let Some(serde_json::Value::Object(erasure)) = document.pointer_mut("/components/schemas/Erasure") {
        erasure.insert(
            "oneOf".into(),
            json!([{"required": ["identity"]}, {"required": ["recipientKey"]}]),
        );
    }
    for (name, schema) in master_schemas() {
        if let Some(slot) = document.pointer_mut(&format!("/components/schemas/{name}")) {
            *slot = schema;
        }
    }
    if let Some(name) = document.pointer_mut("/components/schemas/Vaccination/properties/name") {
        *name = json!({"type": "string", "enum": names, "description": "A vaccine on the programme's master list"});
    }
    document
}
