//! RFC 7807 `application/problem+json` answers: a stable `type`, a human `title`, the HTTP status,
//! and for invalid input every field with the rule it broke. A 5xx tells the caller only a
//! correlation id; its cause is logged once, here.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use domain::values::FieldError;
use serde_json::json;

/// A problem answer.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: String,
    errors: Vec<FieldError>,
    retry_after: Option<u32>,
}

impl Problem {
    /// Invalid input: each field and its rule. Nothing was accepted.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid-request",
            title: "The request has invalid fields; nothing was accepted".into(),
            errors,
            retry_after: None,
        }
    }

    /// The body is not JSON (or not the JSON shape expected).
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new("", detail)])
    }

    /// The broker (or another dependency) is unavailable: retry the same request later.
    pub fn unavailable(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "dependency unavailable; answering 503");
        metrics::counter!("vaxtrail_commands_unavailable_total").increment(1);
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "unavailable",
            title: "The event log is unavailable; nothing was accepted that was not acknowledged. Retry with the same Idempotency-Key".into(),
            errors: Vec::new(),
            retry_after: Some(5),
        }
    }

    /// The broker failed part-way through a bulk file.
    pub fn unavailable_after(cause: &dyn std::error::Error, accepted: usize) -> Self {
        let mut problem = Self::unavailable(cause);
        problem.title = format!(
            "The event log became unavailable after {accepted} rows were acknowledged; post the same file again with the same Idempotency-Key: acknowledged rows are not appended twice"
        );
        problem
    }

    /// The body exceeds the configured limit (`VAXTRAIL_MAX_BODY_BYTES`).
    pub fn too_large() -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too-large",
            title: "The body exceeds the configured limit; nothing was accepted".into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }
}

impl From<platform::auth::AuthError> for Problem {
    fn from(error: platform::auth::AuthError) -> Self {
        let (status, kind) = if error.is_forbidden() {
            (StatusCode::FORBIDDEN, "forbidden")
        } else {
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        };
        metrics::counter!("vaxtrail_commands_refused_total", "reason" => kind).increment(1);
        Self {
            status,
            kind,
            title: error.to_string(),
            errors: Vec::new(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("https://vaxtrail.org/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "errors": self.errors,
        });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
