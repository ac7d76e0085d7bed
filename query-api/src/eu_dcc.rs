//! EU Digital COVID Certificates: a certificate's HCERT as the signer logged it (JSON, or its QR
//! code in alphanumeric mode at ECC level Q), the document signers' trust list, and verifying an
//! `HC1:` text against it.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use credentials::hcert;
use platform::problem::Problem;
use qrcode::{EcLevel, QrCode};
use serde_json::json;

use crate::{
    AppState, qr,
    routes::{CodeQuery, PERSONAL, qr_image, readable, status_header, unavailable, with_headers},
    store::{EuDcc, Standing, Store, Unavailable},
    verify::Answer,
};

/// The certificate's EU DCC, for a reader allowed to read the certificate.
async fn readable_eu_dcc(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    code: Option<&str>,
) -> Result<(crate::store::Certificate, EuDcc), Problem> {
    let certificate = readable(state, id, headers, code).await?;
    let eu = of(state, &certificate).await?;
    Ok((certificate, eu))
}

/// The EU DCC of a certificate already read, or why it has none.
pub async fn of(state: &AppState, certificate: &crate::store::Certificate) -> Result<EuDcc, Problem> {
    match state.store.eu_dcc(&certificate.id).await.map_err(|e| unavailable(&e))? {
        Some(Some(eu)) => Ok(eu),
        // Read from the cache, not yet in Postgres.
        None => Err(Problem::unavailable(
            "The certificate's EU DCC is not readable yet; retry shortly",
            &"the Postgres read model has not read the certificate yet",
        )),
        Some(None) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-eu-dcc",
            format!(
                "Certificate {} has no EU DCC: its vaccine is not in the EU value sets (eu-dcc-vaccines.json), or EU DCCs were not issued when it was signed",
                certificate.id
            ),
        )),
    }
}

/// The QR code of an `HC1:` text: one alphanumeric segment (base45's alphabet is QR's; the EU
/// DCC specification asks for alphanumeric mode, and a scanner reading mixed segments has been
/// seen to append stray digits), ECC level Q, in the smallest version that holds it.
pub fn code(text: &str) -> Result<QrCode, Problem> {
    qr::segmented(EcLevel::Q, |bits| bits.push_alphanumeric_data(text.as_bytes())).ok_or_else(|| {
        tracing::error!(length = text.len(), "an EU DCC does not fit a QR code");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "qr-too-large",
            "The EU DCC does not fit a QR code",
        )
    })
}

/// `GET /v1/certificates/{id}/eu-dcc`.
pub async fn document(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (certificate, eu) = readable_eu_dcc(&state, &id, &headers, query.code.as_deref()).await?;
    let body = json!({
        "certificateId": certificate.id,
        "format": "eu-dcc",
        "hc1": eu.text,
        "kid": eu.kid,
        "expiresAt": eu.expires_at,
        "status": certificate.standing.name(),
    });
    Ok(with_headers(
        Json(body).into_response(),
        &[
            (header::CACHE_CONTROL, PERSONAL.into()),
            (
                header::HeaderName::from_static("vaxtrail-certificate-status"),
                status_header(&certificate),
            ),
        ],
    ))
}

async fn qr_response(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    code: Option<&str>,
    svg: bool,
) -> Result<Response, Problem> {
    let (_, eu) = readable_eu_dcc(state, id, headers, code).await?;
    Ok(qr_image(&self::code(&eu.text)?, svg))
}

/// `GET /v1/certificates/{id}/eu-dcc.png`.
pub async fn qr_png(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    qr_response(&state, &id, &headers, query.code.as_deref(), false).await
}

/// `GET /v1/certificates/{id}/eu-dcc.svg`.
pub async fn qr_svg(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    qr_response(&state, &id, &headers, query.code.as_deref(), true).await
}

fn not_issued() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "eu-dcc-not-configured",
        "This deployment issues no EU DCC (VAXTRAIL_EU_DCC_SIGNERS is not set)",
    )
}

/// `GET /v1/trust-lists/eu-dcc`: every document signer's certificate, for verifiers.
pub async fn trust_list(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let trusted = state.eu_dcc_trust.as_ref().ok_or_else(not_issued)?;
    Ok(with_headers(
        Json(trusted.trust_list()).into_response(),
        &[
            (header::CACHE_CONTROL, "public, max-age=300".into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
        ],
    ))
}

/// Verifies an `HC1:` text: the signature against the trust list, the expiry, then where the
/// certificate it names stands in the read models.
pub async fn verify(state: &AppState, text: &str) -> Result<Answer, Problem> {
    let trusted = state.eu_dcc_trust.as_ref().ok_or_else(not_issued)?;
    let verified = match hcert::verify(text, trusted, Utc::now()) {
        Ok(verified) => verified,
        Err(error) => {
            let mut answer = Answer::invalid(format!("EU DCC: {error}"));
            answer.format = Some("eu-dcc");
            return Ok(answer);
        }
    };
    let mut answer = Answer::valid(None, Some(format!("eu-dcc:{}", verified.kid)));
    answer.format = Some("eu-dcc");
    let Some(id) = verified
        .certificate_id
        .as_deref()
        .and_then(hcert::certificate_id_of_uvci)
        .and_then(|id| domain::ids::CertificateId::parse("ci", id).ok())
    else {
        return Ok(Answer::invalid("EU DCC: its UVCI names no certificate of this issuer"));
    };
    answer.certificate_id = Some(id.as_str().to_owned());
    standing(&mut answer, &state.store, id.as_str())
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(answer)
}

async fn standing(answer: &mut Answer, store: &Store, id: &str) -> Result<(), Unavailable> {
    match store.standing(id).await? {
        Some(Standing::Active) => {}
        Some(Standing::Revoked { reason, revoked_at }) => {
            answer.outcome = "revoked";
            answer.reasons.push(format!("revoked for: {reason}"));
            answer.revoked_at = revoked_at;
            answer.revocation_reason = Some(reason);
        }
        Some(Standing::Superseded { superseded_by, .. }) => {
            answer.outcome = "superseded";
            answer
                .reasons
                .push(format!("superseded by certificate {superseded_by}"));
            answer.superseded_by = Some(superseded_by);
        }
        // Not (yet) in the read models, or its holder was erased (what a citizen holds still
        // verifies, as their W3C credential does): the signature decides.
        None => {}
    }
    Ok(())
}

/// `GET /v1/certificates/{id}/eu-dcc.pdf`: the printable certificate carrying the EU DCC's QR
/// code.
pub async fn pdf(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    crate::routes::pdf_of(
        &state,
        &id,
        &headers,
        query.code.as_deref(),
        crate::routes::PdfCode::EuDcc,
    )
    .await
}
