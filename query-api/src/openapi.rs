//! The OpenAPI 3 document served at `/openapi.json`. The handlers take axum extractors that
//! utoipa cannot read, so each operation is described here on a function of the same name; the
//! integration test calls every documented path to keep the two in step.
//!
//! Over 400 lines: one described function per operation (the W3C credential, the EU DCC and the
//! SMART Health Card each have theirs), read as a list.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// An RFC 7807 problem.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    r#type: String,
    title: String,
    status: u16,
    /// Each field and the rule it broke.
    errors: Vec<FieldProblem>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldProblem {
    field: String,
    rule: String,
}

/// The answer of `POST /v1/verify`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyAnswer {
    /// `valid`, `invalid`, `revoked` or `superseded`.
    outcome: String,
    /// Why, in words: bad signature, unknown key, context mismatch, revoked at T for R, superseded by X.
    reasons: Vec<String>,
    certificate_id: Option<String>,
    verification_method: Option<String>,
    revoked_at: Option<String>,
    revocation_reason: Option<String>,
    superseded_by: Option<String>,
    /// `eu-dcc` or `shc` when an EU DCC or a SMART Health Card was verified; absent for the W3C credential.
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/certificates/{id}", tag = "certificates",
    description = "Personal data: the holder's access code (header or `?code=`) or a token whose role may read it (a facility: what its system recorded).",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "Certificate id; `{id}.pdf` gives the printable A4 PDF"),
        ("code" = Option<String>, Query, description = "The holder's access code")),
    responses(
        (status = 200, description = "The signed credential (application/json or application/vc+ld+json); its status in the `Vaxtrail-Certificate-Status` header"),
        (status = 401, description = "Neither an access code nor a token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The code is another certificate's, or the role or source system may not read it", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Past this client's rate; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a certificate id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read models cannot answer; retry", body = Problem, content_type = "application/problem+json")))]
fn certificate() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/status", tag = "certificates",
    params(("id" = String, Path)),
    responses((status = 200, description = "`{certificateId, status}`: active / superseded (with `supersededBy`) / revoked; nothing about the holder"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn certificate_status() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/qr.png", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "QR code (level M) of DIVOC's payload: a ZIP holding certificate.json", content_type = "image/png")))]
fn qr_png() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/qr.svg", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "The same QR code as SVG", content_type = "image/svg+xml")))]
fn qr_svg() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/eu-dcc", tag = "certificates",
    description = "The certificate's EU Digital COVID Certificate (HCERT), as the signer issued and logged it beside the W3C credential. Personal data, read as the certificate is.",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses(
        (status = 200, description = "`{certificateId, format: \"eu-dcc\", hc1, kid, expiresAt, status}`: `hc1` is the `HC1:` text a QR code holds, `kid` the document signer's (base64)"),
        (status = 401, description = "Neither an access code nor a token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not this reader's to read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, or no EU DCC: the vaccine is not in the EU value sets, or EU DCCs were not issued when it was signed", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Erased at its holder's request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a certificate id", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Past this client's rate", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read models cannot answer; retry", body = Problem, content_type = "application/problem+json")))]
fn eu_dcc() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/eu-dcc.png", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "QR code of the `HC1:` text: alphanumeric mode, ECC level Q; its version in `Vaxtrail-Qr-Version`", content_type = "image/png"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn eu_dcc_png() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/eu-dcc.svg", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "The same QR code as SVG", content_type = "image/svg+xml"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn eu_dcc_svg() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/eu-dcc.pdf", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "The printable A4 certificate carrying the EU DCC's QR code", content_type = "application/pdf"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn eu_dcc_pdf() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/shc.pdf", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "The printable A4 certificate carrying the SMART Health Card's QR code", content_type = "application/pdf"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn shc_pdf() {}

#[utoipa::path(get, path = "/v1/trust-lists/eu-dcc", tag = "verification",
    responses((status = 200, description = "`{certificates: [{kid, country, certificateType: \"DSC\", notBefore, notAfter, rawData}]}`: every EU DCC document signer's X.509 certificate (DER, base64), active and retired; `kid` is the first 8 bytes of its SHA-256"),
        (status = 404, description = "This deployment issues no EU DCC", body = Problem, content_type = "application/problem+json")))]
fn eu_dcc_trust_list() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/shc", tag = "certificates",
    description = "The certificate's SMART Health Card, as the signer issued and logged it beside the W3C credential. Personal data, read as the certificate is.",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses(
        (status = 200, description = "`{certificateId, format: \"shc\", verifiableCredential: [<compact JWS>], qr: \"shc:/…\", kid, status}` (the `.smart-health-card` file's shape, with the QR text)"),
        (status = 401, description = "Neither an access code nor a token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not this reader's to read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, or no card: cards were not issued when it was signed", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Erased at its holder's request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a certificate id", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Past this client's rate", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read models cannot answer; retry", body = Problem, content_type = "application/problem+json")))]
fn shc() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/shc.png", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "QR code of the `shc:/` text (numeric mode for the digits, ECC level L); its version in `Vaxtrail-Qr-Version`", content_type = "image/png"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn shc_png() {}

#[utoipa::path(get, path = "/v1/certificates/{id}/shc.svg", tag = "certificates",
    security(("holderCode" = []), ("bearer" = [])),
    params(("id" = String, Path), ("code" = Option<String>, Query, description = "The holder's access code")),
    responses((status = 200, description = "The same QR code as SVG", content_type = "image/svg+xml"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn shc_svg() {}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "verification",
    responses((status = 200, description = "`{keys: [{kty: \"EC\", crv: \"P-256\", kid, use: \"sig\", alg: \"ES256\", x, y}]}`: every SMART Health Card key, active and retired; `kid` is the key's RFC 7638 thumbprint. CORS: any origin"),
        (status = 404, description = "This deployment issues no SMART Health Card", body = Problem, content_type = "application/problem+json")))]
fn jwks() {}

#[utoipa::path(get, path = "/.well-known/crl/{file}", tag = "verification",
    params(("file" = String, Path, description = "`<kid>.json`")),
    responses((status = 200, description = "`{kid, method: \"rid\", ctr, rids}`: the revocation ids of the revoked cards this key signed; `ctr` only grows. CORS: any origin"),
        (status = 404, description = "No such key, or no SMART Health Card issued here", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read models cannot answer; retry", body = Problem, content_type = "application/problem+json")))]
fn crl() {}

#[utoipa::path(get, path = "/v1/events/{eventId}", tag = "events", params(("eventId" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "accepted / issued (certificate id, superseded) / revoked / rejected (rule)"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
fn event() {}

#[utoipa::path(get, path = "/v1/recipients", tag = "recipients", security(("bearer" = [])),
    params(("preEnrollmentCode" = String, Query)),
    responses((status = 200, description = "The recipients with this DIVOC pre-enrollment code and their certificates")))]
fn recipients() {}

#[utoipa::path(get, path = "/v1/recipients/{key}/certificates", tag = "recipients", security(("bearer" = [])),
    params(("key" = String, Path)), responses((status = 200, description = "Every certificate of the recipient, with its status")))]
fn recipient_certificates() {}

#[utoipa::path(post, path = "/v1/verify", tag = "verification",
    request_body(description = "A credential (JSON), `{\"qr\": \"<base64 of the QR payload>\"}`, the raw payload as application/zip, or an EU DCC as scanned: `HC1:…` as text/plain or as `{\"qr\": \"HC1:…\"}`, or a SMART Health Card as scanned (`shc:/…`, the same two ways)",
        content((Object = "application/json"), (Vec<u8> = "application/zip"), (String = "text/plain"))),
    responses((status = 200, body = VerifyAnswer),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Revocation cannot be checked now: never an 'invalid'", body = Problem, content_type = "application/problem+json")))]
fn verify() {}

#[utoipa::path(get, path = "/v1/status-lists/{list}", tag = "verification", params(("list" = u32, Path,
        description = "A Bitstring Status List: 1000 × (n + 1) + partition for a partition's n-th list (VC 2.0 credentials); or a partition number: its StatusList2021 list (data model 1.1 credentials)")),
    responses((status = 200, description = "A signed BitstringStatusListCredential (or StatusList2021Credential)", content_type = "application/vc+ld+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such list was published", body = Problem, content_type = "application/problem+json")))]
fn status_list() {}

#[utoipa::path(get, path = "/.well-known/did.json", tag = "verification",
    responses((status = 200, description = "The issuer's DID document: every key, active and retired", content_type = "application/did+json")))]
fn did_document() {}

#[utoipa::path(get, path = "/credentials/vaccination/{version}", tag = "verification", params(("version" = String, Path, description = "v1 (data model 1.1 credentials) or v2 (VC 2.0)")),
    responses((status = 200, description = "vaxtrail's vaccination JSON-LD context (immutable)", content_type = "application/ld+json"),
        (status = 404, description = "No such version", body = Problem, content_type = "application/problem+json")))]
fn vaccination_context() {}

#[utoipa::path(get, path = "/v1/analytics/doses", tag = "analytics",
    description = "Public: cells under the suppression threshold are withheld (`suppressed`). A `monitoring` or `admin` token reads every cell; any other token is refused. By vaccinator: a `monitoring` or `admin` token only (401 without one).",
    security((), ("bearer" = [])),
    params(("by" = Option<String>, Query, description = "day, vaccine, dose, state, district, gender, ageBand, facility, vaccinator"),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("programme" = Option<String>, Query)),
    responses((status = 200, description = "Doses given, grouped"), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
fn doses() {}

#[utoipa::path(get, path = "/v1/analytics/certificates", tag = "analytics",
    description = "Public: cells under the suppression threshold are withheld (`suppressed`). A `monitoring` or `admin` token reads every cell; any other token is refused.",
    security((), ("bearer" = [])),
    params(("by" = Option<String>, Query, description = "outcome, day, rule"), ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, description = "Certificates issued / superseded / revoked / rejected"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
fn certificates() {}

#[utoipa::path(get, path = "/v1/analytics/signing-latency", tag = "analytics",
    params(("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, description = "p50 / p90 / p99 / max of outcome time minus event time, ms")))]
fn signing_latency() {}

#[utoipa::path(get, path = "/v1/pipeline/lag", tag = "analytics",
    responses((status = 200, description = "Records each projection has still to apply, per topic")))]
fn lag() {}

#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(("recipient" = Option<String>, Query), ("certificate" = Option<String>, Query),
        ("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, description = "Records from the log with position, SHA-256 and chain hashes"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
fn audit_events() {}

#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    params(("partition" = Option<i32>, Query)),
    responses((status = 200, description = "The signer's signed checkpoints")))]
fn audit_checkpoints() {}

#[utoipa::path(get, path = "/dashboard", tag = "pages", responses((status = 200, content_type = "text/html")))]
fn dashboard() {}

#[utoipa::path(get, path = "/verify", tag = "pages", responses((status = 200, content_type = "text/html")))]
fn verifier_page() {}

#[utoipa::path(get, path = "/verify/app.js", tag = "pages", responses((status = 200, content_type = "text/javascript")))]
fn verifier_script() {}

#[utoipa::path(get, path = "/verify-sw.js", tag = "pages", responses((status = 200, content_type = "text/javascript", description = "The verifier page's service worker (scope /verify)")))]
fn verifier_worker() {}

#[utoipa::path(get, path = "/verify/trust.json", tag = "pages", responses(
    (status = 200, content_type = "application/json", description = "What the verifier page needs offline: the issuer's DID document (did), the status lists' URL prefix (listBase) and published numbers (lists), the JSON-LD contexts by URL (contexts), and the guidance per language (guidance, defaultLanguage)"),
    (status = 503, description = "The store cannot list the status lists", content_type = "application/problem+json")))]
fn verifier_trust() {}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "holderCode",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("Vaxtrail-Access-Code"),
            )),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "vaxtrail query API", description = "Certificates, verification, status lists, analytics and audit reads."),
    paths(certificate, certificate_status, qr_png, qr_svg, eu_dcc, eu_dcc_png, eu_dcc_svg, eu_dcc_pdf, eu_dcc_trust_list, shc, shc_png, shc_svg, shc_pdf, jwks, crl, event, recipients, recipient_certificates, verify,
          status_list, did_document, vaccination_context, doses, certificates, signing_latency, lag,
          audit_events, audit_checkpoints, dashboard, verifier_page, verifier_script, verifier_worker, verifier_trust),
    components(schemas(Problem, FieldProblem, VerifyAnswer)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// What a parameter accepts, by operation path and name: the rules the handlers enforce.
fn parameter_schemas() -> Vec<(&'static str, &'static str, Value)> {
    let certificate = json!({"type": "string", "pattern": domain::ids::CertificateId::PATTERN});
    let day = json!({"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"});
    let time = json!({"type": "string", "format": "date-time"});
    let recipient = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"});
    let list = json!({"type": "integer", "minimum": 0, "maximum": i32::MAX});
    let mut rules = vec![
        (
            "/v1/events/{eventId}",
            "eventId",
            json!({"type": "string", "format": "uuid"}),
        ),
        (
            "/v1/recipients",
            "preEnrollmentCode",
            json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": domain::values::Text::pattern()}),
        ),
        ("/v1/recipients/{key}/certificates", "key", recipient.clone()),
        ("/v1/status-lists/{list}", "list", list),
        (
            "/credentials/vaccination/{version}",
            "version",
            json!({"type": "string", "enum": ["v1", "v2"]}),
        ),
        ("/v1/audit/events", "recipient", recipient.clone()),
        ("/v1/audit/events", "certificate", certificate.clone()),
        ("/v1/audit/events", "from", time.clone()),
        ("/v1/audit/events", "to", time),
        (
            "/v1/audit/events",
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        (
            "/v1/audit/checkpoints",
            "partition",
            json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
        ),
        (
            "/v1/analytics/doses",
            "by",
            json!({"type": "string", "enum": names(&crate::analytics::DOSES_BY)}),
        ),
        (
            "/v1/analytics/certificates",
            "by",
            json!({"type": "string", "enum": names(&crate::analytics::CERTIFICATES_BY)}),
        ),
    ];
    for path in [
        "/v1/certificates/{id}",
        "/v1/certificates/{id}/status",
        "/v1/certificates/{id}/qr.png",
        "/v1/certificates/{id}/qr.svg",
        "/v1/certificates/{id}/eu-dcc",
        "/v1/certificates/{id}/eu-dcc.png",
        "/v1/certificates/{id}/eu-dcc.svg",
        "/v1/certificates/{id}/eu-dcc.pdf",
        "/v1/certificates/{id}/shc",
        "/v1/certificates/{id}/shc.png",
        "/v1/certificates/{id}/shc.svg",
        "/v1/certificates/{id}/shc.pdf",
    ] {
        rules.push((path, "id", certificate.clone()));
    }
    for path in [
        "/v1/analytics/doses",
        "/v1/analytics/certificates",
        "/v1/analytics/signing-latency",
    ] {
        rules.push((path, "from", day.clone()));
        rules.push((path, "to", day.clone()));
    }
    rules
}

fn names(groupings: &[(&'static str, &str)]) -> Vec<&'static str> {
    groupings.iter().map(|(name, _)| *name).collect()
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// The document this deployment serves: [`ApiDoc`], each parameter with the rules its handler
/// enforces, and every operation with the refusals it can answer (problem+json): 429 past a
/// client's rate, 503 when a store cannot answer or the service sheds load, 401/403 where a
/// credential is needed, 404 where a path names something, 422 where anything is read.
pub fn document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let rules = parameter_schemas();
    if let Some(zip) = document.pointer_mut("/paths/~1v1~1verify/post/requestBody/content/application~1zip/schema") {
        *zip = json!({"type": "string", "format": "binary"});
    }
    let Some(Value::Object(paths)) = document.get_mut("paths") else {
        return document;
    };
    for (path, item) in paths.iter_mut() {
        let Some(Value::Object(operations)) = Some(item) else {
            continue;
        };
        for operation in operations.values_mut() {
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let secured = operation.get("security").is_some();
            let has_body = operation.contains_key("requestBody");
            let mut reads = has_body;
            let mut named = false;
            if let Some(Value::Array(parameters)) = operation.get_mut("parameters") {
                for parameter in parameters.iter_mut() {
                    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                    reads = true;
                    named |= parameter["in"] == "path";
                    if let Some((_, _, schema)) = rules.iter().find(|(p, n, _)| p == path && *n == name) {
                        parameter["schema"] = schema.clone();
                    }
                }
            }
            let responses = operation
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses is an object");
            let mut add = |status: &str, description: &str| {
                responses.entry(status).or_insert_with(|| problem(description));
            };
            add("429", "Past this client's rate; retry after Retry-After");
            add(
                "503",
                "A store cannot answer now, or the service is shedding load; retry",
            );
            if secured {
                add("401", "No valid credential");
                add("403", "The credential may not read this");
            }
            if named {
                add("404", "Not known");
                add("410", "Erased at its holder's request (crypto-shredding)");
            }
            if reads {
                add("422", "A parameter or the body broke a rule, named in `errors`");
            }
            if has_body {
                add("413", "The body is larger than the limit");
            }
        }
    }
    document
}
