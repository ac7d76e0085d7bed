//! SMART Health Cards: a certificate's card as the signer logged it (the JWS, its `shc:/` text
//! and QR code), the issuer's JWKS, the revocation list of each key, and verifying a scanned
//! `shc:/` text.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use credentials::shc;
use platform::problem::Problem;
use qrcode::{EcLevel, QrCode};
use serde_json::json;

use crate::{
    AppState, qr,
    routes::{CodeQuery, PERSONAL, qr_image, readable, status_header, unavailable, with_headers},
    store::Standing,
    verify::Answer,
};

fn not_issued() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "shc-not-configured",
        "This deployment issues no SMART Health Card (VAXTRAIL_SHC_PUBLIC is not set)",
    )
}

/// The certificate's card, for a reader allowed to read the certificate.
async fn readable_card(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    code: Option<&str>,
) -> Result<(crate::store::Certificate, shc::Card), Problem> {
    let certificate = readable(state, id, headers, code).await?;
    let card = of(state, &certificate).await?;
    Ok((certificate, card))
}

/// The card of a certificate already read, or why it has none.
pub async fn of(state: &AppState, certificate: &crate::store::Certificate) -> Result<shc::Card, Problem> {
    match state.store.shc(&certificate.id).await.map_err(|e| unavailable(&e))? {
        Some(Some((jws, kid))) => Ok(shc::Card { jws, kid }),
        None => Err(Problem::unavailable(
            "The certificate's SMART Health Card is not readable yet; retry shortly",
            &"the Postgres read model has not read the certificate yet",
        )),
        Some(None) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-shc",
            format!(
                "Certificate {} has no SMART Health Card: they were not issued when it was signed",
                certificate.id
            ),
        )),
    }
}

/// The QR code of a card as the specification sets it: two segments, `shc:/` in byte mode and
/// the digits in numeric mode, ECC level L, in the smallest version that holds them.
pub fn code(card: &shc::Card) -> Result<QrCode, Problem> {
    let text = card.qr_text();
    let (prefix, digits) = text.split_at(shc::PREFIX.len());
    qr::segmented(EcLevel::L, |bits| {
        bits.push_byte_data(prefix.as_bytes())?;
        bits.push_numeric_data(digits.as_bytes())
    })
    .ok_or_else(|| {
        tracing::error!(length = text.len(), "a SMART Health Card does not fit a QR code");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "qr-too-large",
            "The SMART Health Card does not fit a QR code",
        )
    })
}

/// `GET /v1/certificates/{id}/shc`.
pub async fn document(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (certificate, card) = readable_card(&state, &id, &headers, query.code.as_deref()).await?;
    let body = json!({
        "certificateId": certificate.id,
        "format": "shc",
        "verifiableCredential": [card.jws],
        "qr": card.qr_text(),
        "kid": card.kid,
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
    let (_, card) = readable_card(state, id, headers, code).await?;
    Ok(qr_image(&self::code(&card)?, svg))
}

/// `GET /v1/certificates/{id}/shc.png`.
pub async fn qr_png(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    qr_response(&state, &id, &headers, query.code.as_deref(), false).await
}

/// `GET /v1/certificates/{id}/shc.svg`.
pub async fn qr_svg(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CodeQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    qr_response(&state, &id, &headers, query.code.as_deref(), true).await
}

fn public_json(body: serde_json::Value) -> Response {
    with_headers(
        Json(body).into_response(),
        &[
            (header::CACHE_CONTROL, "public, max-age=300".into()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
        ],
    )
}

/// `GET /.well-known/jwks.json`: every card key's public JWK, active and retired.
pub async fn jwks(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let keys = state.shc_keys.as_ref().ok_or_else(not_issued)?;
    Ok(public_json(keys.jwks()))
}

/// `GET /.well-known/crl/{kid}.json`: the `rid`s of the revoked cards a key signed.
pub async fn crl(State(state): State<Arc<AppState>>, Path(file): Path<String>) -> Result<Response, Problem> {
    let keys = state.shc_keys.as_ref().ok_or_else(not_issued)?;
    let kid = file
        .strip_suffix(".json")
        .filter(|kid| keys.by_kid(kid).is_some())
        .ok_or_else(|| Problem::not_found(format!("No SMART Health Card key has the revocation list {file}")))?;
    let revoked = state.store.revoked_shc(kid).await.map_err(|e| unavailable(&e))?;
    let rids: Vec<String> = revoked.iter().map(|id| shc::rid(id)).collect();
    // Revocations are never undone, so the count of revoked cards only grows: it is the list's
    // version counter.
    Ok(public_json(
        json!({"kid": kid, "method": "rid", "ctr": rids.len(), "rids": rids}),
    ))
}

/// Verifies a scanned `shc:/` text: the signature against the published keys, then the
/// certificate's standing (its `rid` names it only to the issuer, who looks it up).
pub async fn verify(state: &AppState, text: &str) -> Result<Answer, Problem> {
    let keys = state.shc_keys.as_ref().ok_or_else(not_issued)?;
    let invalid = |reason: String| {
        let mut answer = Answer::invalid(format!("SMART Health Card: {reason}"));
        answer.format = Some("shc");
        answer
    };
    let jws = match shc::jws_of_qr(text) {
        Ok(jws) => jws,
        Err(error) => return Ok(invalid(error.to_string())),
    };
    let card = match shc::verify(&jws, keys) {
        Ok(card) => card,
        Err(error) => return Ok(invalid(error.to_string())),
    };
    if card.payload["iss"] != state.profile.base_url.as_str() {
        return Ok(invalid(format!(
            "issued by {}, not by this issuer",
            card.payload["iss"]
        )));
    }
    let mut answer = Answer::valid(None, Some(format!("shc:{}", card.kid)));
    answer.format = Some("shc");
    let Some(rid) = card.rid else {
        return Ok(answer);
    };
    // The card names its certificate only through the rid.
    let Some(id) = state
        .store
        .shc_by_rid(&card.kid, &rid)
        .await
        .map_err(|e| unavailable(&e))?
    else {
        return Ok(answer);
    };
    answer.certificate_id = Some(id.clone());
    match state.store.standing(&id).await.map_err(|e| unavailable(&e))? {
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
        _ => {}
    }
    Ok(answer)
}

/// `GET /v1/certificates/{id}/shc.pdf`: the printable certificate carrying the card's QR code.
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
        crate::routes::PdfCode::Shc,
    )
    .await
}
