//! RFC 7807 `application/problem+json` answers: a stable `type`, a human `title`, the HTTP status,
//! and for invalid input every field with the rule it broke. A 5xx tells the caller only what to
//! do next; its cause is logged where the problem is made.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};

/// A problem answer.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: String,
    errors: Vec<Value>,
    retry_after: Option<u32>,
}

impl Problem {
    /// A problem of type `https://vaxtrail.org/problems/<kind>`.
    pub fn new(status: StatusCode, kind: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            title: title.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Invalid input: each field (`{field, rule}`) and its rule. Nothing was changed.
    pub fn invalid<E: Serialize>(errors: Vec<E>) -> Self {
        let mut problem = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request has invalid fields; nothing was accepted",
        );
        problem.errors = errors
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect();
        problem
    }

    /// One field broke one rule.
    pub fn field(field: &str, rule: impl Into<String>) -> Self {
        Self::invalid(vec![json!({ "field": field, "rule": rule.into() })])
    }

    /// The body is not JSON (or not the JSON shape expected).
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::field("", detail)
    }

    /// The body exceeds the configured limit.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The body exceeds the configured limit; nothing was accepted",
        )
    }

    /// Nothing is known under this name.
    pub fn not_found(title: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", title)
    }

    /// A dependency is down: the caller should retry after `retry_after` seconds. Never an answer
    /// about the thing asked for.
    pub fn unavailable(title: impl Into<String>, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "dependency unavailable; answering 503");
        metrics::counter!("vaxtrail_http_unavailable_total").increment(1);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", title).retry_after(5)
    }

    /// Adds a field and the rule it broke (for a 403 that names its rule, say).
    pub fn with_error(mut self, field: &str, rule: impl Into<String>) -> Self {
        self.errors.push(json!({ "field": field, "rule": rule.into() }));
        self
    }

    /// Too many requests from this client: retry after `seconds`.
    pub fn too_many_requests(seconds: u32) -> Self {
        metrics::counter!("vaxtrail_http_refused_total", "reason" => "rate-limited").increment(1);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests from this client; retry after the time Retry-After gives",
        )
        .retry_after(seconds.max(1))
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<crate::auth::AuthError> for Problem {
    fn from(error: crate::auth::AuthError) -> Self {
        let (status, kind) = if error.is_forbidden() {
            (StatusCode::FORBIDDEN, "forbidden")
        } else {
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        };
        metrics::counter!("vaxtrail_http_refused_total", "reason" => kind).increment(1);
        Self::new(status, kind, error.to_string())
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
