//! A small client for the registry's REST API: what vaxctl and the services need at start-up
//! (set a subject's compatibility, register a schema) with Confluent's error codes surfaced.

use serde_json::json;

use crate::compatibility::CompatibilityLevel;

/// Errors talking to a schema registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("schema registry unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("schema registry refused ({status}, error_code {code}): {message}")]
    Refused { status: u16, code: i64, message: String },
}

/// A registry at a base URL.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

impl RegistryClient {
    /// A client for the registry at `base` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value, ClientError> {
        let response = request
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            code: body["error_code"].as_i64().unwrap_or_default(),
            message: body["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Sets a subject's compatibility level.
    pub async fn set_compatibility(&self, subject: &str, level: CompatibilityLevel) -> Result<(), ClientError> {
        let url = format!("{}/config/{subject}", self.base);
        self.call(self.http.put(url).json(&json!({ "compatibility": level.to_string() })))
            .await?;
        Ok(())
    }

    /// Registers a schema under a subject (a no-op answering the same id when already there).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, ClientError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let body = self
            .call(self.http.post(url).json(&json!({ "schema": schema })))
            .await?;
        Ok(body["id"].as_u64().unwrap_or_default() as u32)
    }

    /// The schema text registered under an id.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, ClientError> {
        let body = self
            .call(self.http.get(format!("{}/schemas/ids/{id}", self.base)))
            .await?;
        Ok(body["schema"].as_str().unwrap_or_default().to_owned())
    }

    /// Sets BACKWARD_TRANSITIVE on each event topic's value subject and registers its schema;
    /// returns (subject, id) pairs.
    pub async fn register_event_schemas(&self, topic_prefix: &str) -> Result<Vec<(String, u32)>, ClientError> {
        let mut registered = Vec::new();
        for (topic, schema) in crate::schemas::by_topic() {
            let subject = crate::schemas::value_subject(&format!("{topic_prefix}{topic}"));
            self.set_compatibility(&subject, CompatibilityLevel::BackwardTransitive)
                .await?;
            registered.push((subject.clone(), self.register(&subject, schema).await?));
        }
        Ok(registered)
    }
}
