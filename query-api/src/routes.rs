//! The public and authenticated read endpoints: certificates (JSON-LD, QR, PDF, status), event
//! outcomes, recipients, verification, the issuer's DID document, the vaccination context and the
//! revocation status lists.
//!
//! Over 400 lines: one handler per endpoint, each beside the utoipa annotation that documents it;
//! access rules live in `access`, reads in `store`, verification in `verify`, the PDF in `pdf`.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use platform::{auth::Caller, problem::Problem};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AppState,
    access::{self, CertificateReader, Route, Scope},
    pdf, qr,
    store::{Certificate, Unavailable},
    verify::Refused,
};

/// A year: what never changes (the vaccination context) is cached that long.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Personal data, and answers that change: no cache, shared or private, keeps them.
pub(crate) const PERSONAL: &str = "private, no-store";

/// `?code=`: a holder's access code on a link.
#[derive(Deserialize)]
pub struct CodeQuery {
    pub(crate) code: Option<String>,
}

pub(crate) fn unavailable(error: &Unavailable) -> Problem {
    Problem::unavailable(
        "The read models are unavailable; this says nothing about the certificate. Retry shortly",
        error,
    )
}

pub(crate) fn with_headers(mut response: Response, pairs: &[(header::HeaderName, String)]) -> Response {
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

/// A certificate id as vaxtrail prints it (checked, with its check character).
pub(crate) fn certificate_id(raw: &str) -> Result<domain::ids::CertificateId, Problem> {
    domain::ids::CertificateId::parse("id", raw).map_err(|e| Problem::field("id", e.rule))
}

async fn find(state: &AppState, id: &domain::ids::CertificateId) -> Result<Certificate, Problem> {
    match state
        .store
        .certificate(id.as_str())
        .await
        .map_err(|e| unavailable(&e))?
    {
        Some(found) => Ok(found),
        None => Err(missing(state, id).await),
    }
}

/// 410 Gone for an erased recipient's certificate, else 404.
async fn missing(state: &AppState, id: &domain::ids::CertificateId) -> Problem {
    match state.store.erased(id.as_str()).await {
        Ok(true) => Problem::new(
            axum::http::StatusCode::GONE,
            "erased",
            format!("Certificate {id} was erased at its holder's request"),
        ),
        Ok(false) => Problem::not_found(format!("No certificate {id} is known")),
        Err(e) => unavailable(&e),
    }
}

/// The certificate, for a reader allowed to read it: its holder (with its access code), a
/// facility whose system recorded it, or a role that reads all. Who may read is decided before
/// anything is looked up, so a stranger learns nothing of whether the id exists.
pub(crate) async fn readable(
    state: &AppState,
    raw: &str,
    headers: &HeaderMap,
    code: Option<&str>,
) -> Result<Certificate, Problem> {
    let id = certificate_id(raw)?;
    let reader = access::certificate_reader(&state.auth, &state.holder_codes, headers, code, &id).await?;
    let certificate = find(state, &id).await?;
    if let CertificateReader::Source(source) = reader {
        let recorded_by = state
            .store
            .certificate_source(id.as_str())
            .await
            .map_err(|e| unavailable(&e))?
            // The cache served the certificate before Postgres read who recorded it: not an
            // answer yet, so neither "yours" nor "not yours".
            .ok_or_else(|| {
                Problem::unavailable(
                    "Who recorded this certificate is not known yet; retry shortly",
                    &"the Postgres read model has not read the certificate yet",
                )
            })?;
        if recorded_by.as_deref() != Some(source.as_str()) {
            return Err(access::not_yours(
                "recorded-by-another-source",
                "This certificate was recorded by another source system",
            ));
        }
    }
    Ok(certificate)
}

/// `active`, `superseded; by=<id>` or `revoked; reason="<reason>"`.
pub(crate) fn status_header(certificate: &Certificate) -> String {
    match &certificate.standing {
        crate::store::Standing::Active => "active".into(),
        crate::store::Standing::Superseded { superseded_by, .. } => format!("superseded; by={superseded_by}"),
        crate::store::Standing::Revoked { reason, .. } => {
            format!("revoked; reason=\"{}\"", reason.replace(['"', '\\'], "'"))
        }
    }
}

/// `GET /v1/certificates/{id}` (and `{id}.pdf`): the signed credential, its status in the
/// `Vaxtrail-Certificate-Status` header. Personal data: the holder's code or a token.
pub async fn certificate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = id.strip_suffix(".pdf") {
        return pdf_of(&state, id, &headers, query.code.as_deref(), PdfCode::W3c)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let certificate = match readable(&state, &id, &headers, query.code.as_deref()).await {
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
            (header::CACHE_CONTROL, PERSONAL.into()),
            (header::VARY, "Accept".into()),
            (
                header::HeaderName::from_static("vaxtrail-certificate-status"),
                status_header(&certificate),
            ),
        ],
    )
}

/// `GET /v1/certificates/{id}/status`: where the certificate stands, and nothing about whom it
/// was issued to (anyone may ask).
pub async fn certificate_status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = certificate_id(&id)?;
    let Some(standing) = state.store.standing(id.as_str()).await.map_err(|e| unavailable(&e))? else {
        return Err(missing(&state, &id).await);
    };
    let mut body = json!({ "certificateId": id.as_str(), "status": standing.name() });
    if let crate::store::Standing::Superseded { superseded_by, .. } = &standing {
        body["supersededBy"] = json!(superseded_by);
    }
    Ok(with_headers(
        Json(body).into_response(),
        &[(header::CACHE_CONTROL, "no-store".into())],
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

/// A QR code as a PNG or SVG answer: personal data (never cached), its version in
/// `Vaxtrail-Qr-Version`.
pub(crate) fn qr_image(code: &qrcode::QrCode, svg: bool) -> Response {
    let (body, content_type) = if svg {
        (qr::svg(code).into_bytes(), "image/svg+xml")
    } else {
        (qr::png(code, 4), "image/png")
    };
    with_headers(
        body.into_response(),
        &[
            (header::CONTENT_TYPE, content_type.into()),
            (header::CACHE_CONTROL, PERSONAL.into()),
            (
                header::HeaderName::from_static("vaxtrail-qr-version"),
                qr::version(code).to_string(),
            ),
        ],
    )
}

/// `GET /v1/certificates/{id}/qr.png` (personal data, like the credential it carries).
pub async fn qr_png(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let certificate = readable(&state, &id, &headers, query.code.as_deref()).await?;
    let code = qr_code(&certificate)?;
    Ok(with_headers(
        qr::png(&code, 4).into_response(),
        &[
            (header::CONTENT_TYPE, "image/png".into()),
            (header::CACHE_CONTROL, PERSONAL.into()),
        ],
    ))
}

/// `GET /v1/certificates/{id}/qr.svg`.
pub async fn qr_svg(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let certificate = readable(&state, &id, &headers, query.code.as_deref()).await?;
    let code = qr_code(&certificate)?;
    Ok(with_headers(
        qr::svg(&code).into_response(),
        &[
            (header::CONTENT_TYPE, "image/svg+xml".into()),
            (header::CACHE_CONTROL, PERSONAL.into()),
        ],
    ))
}

/// Which QR code a PDF carries.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PdfCode {
    /// DIVOC's ZIP of the W3C credential.
    W3c,
    EuDcc,
    Shc,
}

pub(crate) async fn pdf_of(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    code: Option<&str>,
    which: PdfCode,
) -> Result<Response, Problem> {
    let certificate = readable(state, id, headers, code).await?;
    let code = match which {
        PdfCode::W3c => qr_code(&certificate)?,
        PdfCode::EuDcc => {
            let eu = crate::eu_dcc::of(state, &certificate).await?;
            crate::eu_dcc::code(&eu.text)?
        }
        PdfCode::Shc => crate::shc::code(&crate::shc::of(state, &certificate).await?)?,
    };
    let credential: Value = serde_json::from_str(&certificate.credential).unwrap_or(Value::Null);
    let sheet = pdf::Sheet::of(&credential);
    let verify_url = format!("{}/verify", state.profile.base_url);
    // The labels' languages follow the certificate's programme; while Postgres cannot say which
    // (the certificate came from the cache), the deployment's default languages print.
    let programme = match state.store.certificate_programme(&certificate.id).await {
        Ok(programme) => programme,
        Err(e) => {
            tracing::warn!(certificate = %certificate.id, error = %e, "the certificate's programme is unknown: default PDF languages");
            None
        }
    };
    let words = state.labels.for_programme(programme.as_deref());
    let bytes = pdf::render(&sheet, &code, &verify_url, &state.fonts, &words).map_err(|e| {
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
            (header::CACHE_CONTROL, PERSONAL.into()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"certificate-{}.pdf\"", certificate.id),
            ),
        ],
    ))
}

/// `GET /v1/events/{eventId}`: what became of a posted vaccination (authenticated; a facility
/// reads only its own system's events). An issued certificate comes with the holder's access
/// code, for the facility to hand to the recipient.
pub async fn event(
    State(state): State<Arc<AppState>>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (caller, scope) = access::caller_for(&state.auth, &headers, Route::Event).await?;
    let id = uuid::Uuid::parse_str(&event_id).map_err(|_| Problem::field("eventId", "must be a UUID"))?;
    let missing = || {
        Problem::not_found(format!(
            "No event {id} has been read from the log yet (an event just accepted appears within seconds)"
        ))
    };
    if scope == Scope::OwnSource {
        let source = state.store.event_source(id).await.map_err(|e| unavailable(&e))?;
        match source {
            None => return Err(missing()),
            Some(source) if source != caller.subject => {
                return Err(access::not_yours(
                    "recorded-by-another-source",
                    "This event was posted by another source system",
                ));
            }
            Some(_) => {}
        }
    }
    let outcome = state
        .store
        .event(id)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(missing)?;
    let mut body = serde_json::to_value(&outcome).expect("serializes");
    body["eventId"] = json!(id);
    if let Some(certificate) = &outcome.certificate_id {
        body["holderCode"] = json!(state.holder_codes.code(certificate));
    }
    Ok(with_headers(
        Json(body).into_response(),
        &[(header::CACHE_CONTROL, PERSONAL.into())],
    ))
}

/// A recipient's certificates as the caller may see them, each with its holder code.
async fn certificates_for(state: &AppState, caller: &Caller, scope: Scope, key: &str) -> Result<Vec<Value>, Problem> {
    let source = (scope == Scope::OwnSource).then_some(caller.subject.as_str());
    let certificates = state
        .store
        .recipient_certificates(key, source)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(certificates
        .into_iter()
        .map(|c| {
            let mut row = serde_json::to_value(&c).expect("serializes");
            row["holderCode"] = json!(state.holder_codes.code(&c.certificate_id));
            row
        })
        .collect())
}

/// Checks a recipient key named in `field`: 1 to 128 letters, digits, '-' or '_'.
pub fn recipient_key(key: &str, field: &str) -> Result<(), Problem> {
    if key.is_empty() || key.len() > 128 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Problem::field(
            field,
            "a recipient key is 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

/// `GET /v1/recipients/{key}/certificates` (authenticated; a facility sees what it recorded).
pub async fn recipient_certificates(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (caller, scope) = access::caller_for(&state.auth, &headers, Route::Recipient).await?;
    recipient_key(&key, "key")?;
    let certificates = certificates_for(&state, &caller, scope, &key).await?;
    if certificates.is_empty() {
        return Err(Problem::not_found(format!(
            "No certificate is known for recipient {key}"
        )));
    }
    Ok(with_headers(
        Json(json!({ "recipientKey": key, "certificates": certificates })).into_response(),
        &[(header::CACHE_CONTROL, PERSONAL.into())],
    ))
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
    let (caller, scope) = access::caller_for(&state.auth, &headers, Route::Recipient).await?;
    let raw = crate::analytics::query(query)?
        .pre_enrollment_code
        .ok_or_else(|| Problem::field("preEnrollmentCode", "is required, 1 to 64 characters"))?;
    // The command API's rule for the code: what it could never have stored is refused here.
    let code = domain::values::Text::parse_max("preEnrollmentCode", &raw, 64)
        .map_err(|e| Problem::field("preEnrollmentCode", e.rule))?
        .as_str()
        .to_owned();
    let keys = state
        .store
        .recipients_by_pre_enrollment_code(&code)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut found = Vec::new();
    for key in keys.into_iter().take(100) {
        let certificates = certificates_for(&state, &caller, scope, &key).await?;
        if !certificates.is_empty() || scope == Scope::All {
            found.push(json!({ "recipientKey": key, "certificates": certificates }));
        }
    }
    Ok(with_headers(
        Json(json!({ "preEnrollmentCode": code, "recipients": found })).into_response(),
        &[(header::CACHE_CONTROL, PERSONAL.into())],
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QrInput {
    /// The raw QR payload (the ZIP archive), base64.
    qr: String,
}

/// The credential text from a verify request: a credential (JSON), `{"qr": "<base64>"}`, or the
/// raw payload bytes (`application/zip` / `application/octet-stream`).
/// What a scanner read from an EU DCC or a SMART Health Card: a `text/plain` body, or
/// `{"qr": "HC1:…"}` / `{"qr": "shc:/…"}`.
fn scanned_text(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Problem> {
    let compact =
        |text: &str| text.starts_with(credentials::hcert::PREFIX) || text.starts_with(credentials::shc::PREFIX);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("application/json");
    if content_type.starts_with("text/plain") {
        let text = std::str::from_utf8(body).map_err(|_| Problem::field("", "a text/plain body must be UTF-8"))?;
        let text = text.trim();
        if !compact(text) {
            return Err(Problem::field(
                "",
                "a text/plain body is a scanned EU DCC (HC1:…) or SMART Health Card (shc:/…)",
            ));
        }
        return Ok(Some(text.to_owned()));
    }
    if content_type.starts_with("application/json")
        && let Ok(QrInput { qr }) = serde_json::from_slice::<QrInput>(body)
        && compact(qr.trim())
    {
        return Ok(Some(qr.trim().to_owned()));
    }
    Ok(None)
}

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
    if let Some(scanned) = scanned_text(&headers, &body)? {
        let answer = if scanned.starts_with(credentials::shc::PREFIX) {
            crate::shc::verify(&state, &scanned).await?
        } else {
            crate::eu_dcc::verify(&state, &scanned).await?
        };
        metrics::counter!("vaxtrail_query_verifications_total", "outcome" => answer.outcome).increment(1);
        return Ok(with_headers(
            Json(answer).into_response(),
            &[(header::CACHE_CONTROL, "no-store".into())],
        ));
    }
    let text = credential_text(&headers, &body)?;
    let answer = state
        .verifier
        .verify(&text, &state.store)
        .await
        .map_err(|refused| match refused {
            Refused::Unavailable(e) => unavailable(&e),
            Refused::Shape(e) => Problem::field(&e.field, e.rule),
            Refused::Busy => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Every verification slot is busy; retry shortly (nothing was decided about the credential)",
            )
            .retry_after(1),
            Refused::TooSlow => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-slow",
                "The verification took longer than allowed; retry shortly (nothing was decided about the credential)",
            )
            .retry_after(1),
        })?;
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

/// `GET /credentials/vaccination/v1` and `/v2`: the contexts the credentials name (v1 for data
/// model 1.1 credentials, v2 for VC 2.0 ones).
pub async fn vaccination_context(Path(version): Path<String>) -> Result<Response, Problem> {
    let document = match version.as_str() {
        "v1" => credentials::contexts::VACCINATION_V1_DOCUMENT,
        "v2" => credentials::contexts::VACCINATION_V2_DOCUMENT,
        _ => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "no-such-context",
                "There are vaccination contexts v1 and v2",
            ));
        }
    };
    Ok(with_headers(
        document.into_response(),
        &[
            (header::CONTENT_TYPE, "application/ld+json".into()),
            (header::CACHE_CONTROL, IMMUTABLE.into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
        ],
    ))
}

/// `GET /v1/status-lists/{list}`: a revocation list as the signer signed and published it in
/// the log: a Bitstring Status List (from 1000 on), or a partition's StatusList2021 list of data
/// model 1.1 credentials (the partition's number).
pub async fn status_list(State(state): State<Arc<AppState>>, Path(list): Path<String>) -> Result<Response, Problem> {
    use domain::status::{FIRST_BITSTRING_LIST, is_bitstring_list, list_partition};
    let list: u32 = list.parse().ok().filter(|&l| i32::try_from(l).is_ok()).ok_or_else(|| {
        Problem::field(
            "list",
            "a status list is 1000 × (n + 1) + partition (a Bitstring Status List) or a partition number (a StatusList2021 list), at most 2147483647",
        )
    })?;
    let missing = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-status-list",
            "No such status list was published",
        )
    };
    if list_partition(list) >= state.partitions {
        // A partition this deployment does not have: no store is asked.
        return Err(missing());
    }
    let published = state
        .store
        .published_status_list(list)
        .await
        .map_err(|e| unavailable(&e))?;
    let text = match published {
        Some(text) => text,
        None => {
            // The partition's next list may be moments from its first publication (the signer
            // publishes a list within seconds of placing a certificate in it): retry. Any other
            // list does not exist.
            let next = is_bitstring_list(list)
                && state
                    .store
                    .last_bitstring_list(list_partition(list))
                    .await
                    .map_err(|e| unavailable(&e))?
                    .map_or(list < 2 * FIRST_BITSTRING_LIST, |last| {
                        list <= last + FIRST_BITSTRING_LIST
                    });
            return Err(if next {
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not-published-yet",
                    "The signer has not published this status list yet (it does within seconds of placing a certificate in it); retry shortly",
                )
                .retry_after(2)
            } else {
                missing()
            });
        }
    };
    Ok(with_headers(
        text.into_response(),
        &[
            (header::CONTENT_TYPE, "application/vc+ld+json".into()),
            (header::CACHE_CONTROL, "public, max-age=60".into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
        ],
    ))
}
