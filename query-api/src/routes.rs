//! The public and authenticated read endpoints: certificates (JSON-LD, QR, PDF, status), event
//! outcomes, recipients, verification, the issuer's DID document, the vaccination context and the
//! revocation status lists.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use platform::{
    auth::{Caller, Role},
    problem::Problem,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AppState, pdf, qr,
    store::{Certificate, Unavailable},
};

/// A year: what never changes is cached that long.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A certificate's status can change: caches keep it a minute.
const SHORT: &str = "public, max-age=60";

fn unavailable(error: &Unavailable) -> Problem {
    Problem::unavailable(
        "The read models are unavailable; this says nothing about the certificate. Retry shortly",
        error,
    )
}

fn with_headers(mut response: Response, pairs: &[(header::HeaderName, String)]) -> Response {
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

/// A certificate id as vaxtrail prints it: 1–64 letters, digits and dashes.
fn certificate_id(raw: &str) -> Result<&str, Problem> {
    if raw.is_empty() || raw.len() > 64 || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Problem::field(
            "id",
            "a certificate id is 1 to 64 letters, digits or dashes",
        ));
    }
    Ok(raw)
}

async fn find(state: &AppState, raw: &str) -> Result<Certificate, Problem> {
    let id = certificate_id(raw)?;
    state
        .store
        .certificate(id)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| Problem::not_found(format!("No certificate {id} is known")))
}

/// `active`, `superseded; by=<id>` or `revoked; reason="<reason>"`.
fn status_header(certificate: &Certificate) -> String {
    match &certificate.standing {
        crate::store::Standing::Active => "active".into(),
        crate::store::Standing::Superseded { superseded_by, .. } => format!("superseded; by={superseded_by}"),
        crate::store::Standing::Revoked { reason, .. } => {
            format!("revoked; reason=\"{}\"", reason.replace(['"', '\\'], "'"))
        }
    }
}

/// `GET /v1/certificates/{id}` (and `{id}.pdf`): the signed credential, its status in the
/// `Vaxtrail-Certificate-Status` header.
pub async fn certificate(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(id) = id.strip_suffix(".pdf") {
        return pdf_of(&state, id).await.unwrap_or_else(IntoResponse::into_response);
    }
    let certificate = match find(&state, &id).await {
        Ok(found) => found,
        Err(problem) => return problem.into_response(),
    };
    let wants_ld = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/vc+ld+json"));
    let content_type = if wants_ld {
        "application/vc+ld+json"
    } else {
        "application/json"
    };
    with_headers(
        certificate.credential.clone().into_response(),
        &[
            (header::CONTENT_TYPE, content_type.into()),
            (header::CACHE_CONTROL, SHORT.into()),
            (header::VARY, "Accept".into()),
            (
                header::HeaderName::from_static("vaxtrail-certificate-status"),
                status_header(&certificate),
            ),
        ],
    )
}

/// `GET /v1/certificates/{id}/status`: where the certificate stands.
pub async fn certificate_status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let certificate = find(&state, &id).await?;
    let mut body = serde_json::to_value(&certificate.standing).expect("serializes");
    body["certificateId"] = json!(certificate.id);
    Ok(with_headers(
        Json(body).into_response(),
        &[(header::CACHE_CONTROL, SHORT.into())],
    ))
}

fn qr_code(certificate: &Certificate) -> Result<qrcode::QrCode, Problem> {
    qr::code(&qr::payload(&certificate.credential)).map_err(|e| {
        tracing::error!(certificate = %certificate.id, error = %e, "the credential does not fit a QR code");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "qr-too-large",
            "The credential does not fit a QR code",
        )
    })
}

/// `GET /v1/certificates/{id}/qr.png`.
pub async fn qr_png(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, Problem> {
    let certificate = find(&state, &id).await?;
    let code = qr_code(&certificate)?;
    Ok(with_headers(
        qr::png(&code, 4).into_response(),
        &[
            (header::CONTENT_TYPE, "image/png".into()),
            (header::CACHE_CONTROL, IMMUTABLE.into()),
        ],
    ))
}

/// `GET /v1/certificates/{id}/qr.svg`.
pub async fn qr_svg(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, Problem> {
    let certificate = find(&state, &id).await?;
    let code = qr_code(&certificate)?;
    Ok(with_headers(
        qr::svg(&code).into_response(),
        &[
            (header::CONTENT_TYPE, "image/svg+xml".into()),
            (header::CACHE_CONTROL, IMMUTABLE.into()),
        ],
    ))
}

async fn pdf_of(state: &AppState, id: &str) -> Result<Response, Problem> {
    let certificate = find(state, id).await?;
    let code = qr_code(&certificate)?;
    let credential: Value = serde_json::from_str(&certificate.credential).unwrap_or(Value::Null);
    let sheet = pdf::Sheet::of(&credential);
    let verify_url = format!("{}/verify", state.profile.base_url);
    let bytes = pdf::render(&sheet, &code, &verify_url).map_err(|e| {
        tracing::error!(certificate = %certificate.id, error = %e, "rendering the PDF");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "pdf",
            "The PDF could not be rendered",
        )
    })?;
    Ok(with_headers(
        bytes.into_response(),
        &[
            (header::CONTENT_TYPE, "application/pdf".into()),
            (header::CACHE_CONTROL, IMMUTABLE.into()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"certificate-{}.pdf\"", certificate.id),
            ),
        ],
    ))
}

fn caller(state: &AppState, headers: &HeaderMap, roles: &[Role]) -> Result<Caller, Problem> {
    let caller = state.auth.authenticate(headers)?;
    caller.require(roles)?;
    Ok(caller)
}

/// Roles that may read recipients and event outcomes.
const READERS: [Role; 4] = [Role::Facility, Role::Controller, Role::Auditor, Role::Admin];

/// `GET /v1/events/{eventId}`: what became of a posted vaccination (authenticated).
pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller(&state, &headers, &READERS)?;
    let id = uuid::Uuid::parse_str(&event_id).map_err(|_| Problem::field("eventId", "must be a UUID"))?;
    let outcome = state
        .store
        .event(id)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "No event {id} has been read from the log yet (an event just accepted appears within seconds)"
            ))
        })?;
    let mut body = serde_json::to_value(&outcome).expect("serializes");
    body["eventId"] = json!(id);
    Ok(Json(body).into_response())
}

/// `GET /v1/recipients/{key}/certificates` (authenticated).
pub async fn recipient_certificates(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller(&state, &headers, &READERS)?;
    if key.is_empty() || key.len() > 128 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Problem::field(
            "key",
            "a recipient key is 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    let certificates = state
        .store
        .recipient_certificates(&key)
        .await
        .map_err(|e| unavailable(&e))?;
    if certificates.is_empty() {
        return Err(Problem::not_found(format!(
            "No certificate is known for recipient {key}"
        )));
    }
    Ok(Json(json!({ "recipientKey": key, "certificates": certificates })).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientQuery {
    pre_enrollment_code: Option<String>,
}

/// `GET /v1/recipients?preEnrollmentCode=...` (authenticated): DIVOC's lookup.
pub async fn recipients(
    State(state): State<Arc<AppState>>,
    query: Result<Query<RecipientQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller(&state, &headers, &READERS)?;
    let code = crate::analytics::query(query)?
        .pre_enrollment_code
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .ok_or_else(|| Problem::field("preEnrollmentCode", "is required, 1 to 64 characters"))?;
    let keys = state
        .store
        .recipients_by_pre_enrollment_code(&code)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut found = Vec::new();
    for key in keys {
        let certificates = state
            .store
            .recipient_certificates(&key)
            .await
            .map_err(|e| unavailable(&e))?;
        found.push(json!({ "recipientKey": key, "certificates": certificates }));
    }
    Ok(Json(json!({ "preEnrollmentCode": code, "recipients": found })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QrInput {
    /// The raw QR payload (the ZIP archive), base64.
    qr: String,
}

/// The credential text from a verify request: a credential (JSON), `{"qr": "<base64>"}`, or the
/// raw payload bytes (`application/zip` / `application/octet-stream`).
fn credential_text(headers: &HeaderMap, body: &[u8]) -> Result<String, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("application/json");
    if content_type.starts_with("application/zip") || content_type.starts_with("application/octet-stream") {
        return qr::credential_of(body).map_err(|e| Problem::field("", e.to_string()));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Problem::malformed(format!("the body is not JSON: {e}")))?;
    if value.get("qr").is_some() {
        let input: QrInput = serde_json::from_value(value)
            .map_err(|e| Problem::field("qr", format!("must be the QR payload in base64 and nothing else: {e}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(input.qr.trim())
            .map_err(|e| Problem::field("qr", format!("is not base64: {e}")))?;
        return qr::credential_of(&bytes).map_err(|e| Problem::field("qr", e.to_string()));
    }
    if !value.is_object() {
        return Err(Problem::malformed(
            "the body is a credential (a JSON object) or {\"qr\": ...}",
        ));
    }
    // The credential as sent (valid UTF-8: it parsed as JSON).
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// `POST /v1/verify`.
pub async fn verify(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let text = credential_text(&headers, &body)?;
    let answer = state
        .verifier
        .verify(&text, &state.store)
        .await
        .map_err(|e| unavailable(&e))?;
    metrics::counter!("vaxtrail_query_verifications_total", "outcome" => answer.outcome).increment(1);
    Ok(with_headers(
        Json(answer).into_response(),
        &[(header::CACHE_CONTROL, "no-store".into())],
    ))
}

/// `GET /.well-known/did.json`: every key, active and retired.
pub async fn did_document(State(state): State<Arc<AppState>>) -> Response {
    with_headers(
        Json(state.verifier_keys.did_document()).into_response(),
        &[
            (header::CONTENT_TYPE, "application/did+json".into()),
            (header::CACHE_CONTROL, "public, max-age=300".into()),
        ],
    )
}

/// `GET /credentials/vaccination/v1`: the context the credentials name.
pub async fn vaccination_context() -> Response {
    with_headers(
        credentials::contexts::VACCINATION_V1_DOCUMENT.into_response(),
        &[
            (header::CONTENT_TYPE, "application/ld+json".into()),
            (header::CACHE_CONTROL, IMMUTABLE.into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
        ],
    )
}

/// `GET /v1/status-lists/{list}`: the signed revocation list of a partition.
pub async fn status_list(State(state): State<Arc<AppState>>, Path(list): Path<String>) -> Result<Response, Problem> {
    let list: u32 = list.parse().ok().filter(|l| *l < state.partitions).ok_or_else(|| {
        Problem::field(
            "list",
            format!(
                "a status list is a partition number, 0 to {}",
                state.partitions.saturating_sub(1)
            ),
        )
    })?;
    let bits = state.store.revocation_bits(list).await.map_err(|e| unavailable(&e))?;
    let text = state.status_lists.credential(list, &bits).await.map_err(|e| {
        tracing::error!(error = %e, list, "signing a status list");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "status-list",
            "The status list could not be signed",
        )
    })?;
    Ok(with_headers(
        (*text).clone().into_response(),
        &[
            (header::CONTENT_TYPE, "application/vc+ld+json".into()),
            (header::CACHE_CONTROL, "public, max-age=300".into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
        ],
    ))
}
