//! The Confluent Schema Registry REST API: the endpoints `schema_registry_converter` and operators
//! use, with Confluent's paths, bodies and `error_code`s.
//!
//! Over 400 lines: one handler per Confluent endpoint, with the error codes Confluent's clients
//! expect beside each; the state and the compatibility check are modules of their own.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    compat::{Check, CompatibilityLevel},
    log::{SchemaLog, StoreError},
    records::{ConfigValue, RecordKey, SchemaValue},
    state::{Normalized, Plan, RegistryState, Version, normalize},
};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Shared = Arc<SchemaLog>;
type Record = (Vec<u8>, Option<Vec<u8>>);

/// The registry's routes.
pub fn router(log: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/schemas/ids/{id}", get(get_by_id))
        .route("/schemas/ids/{id}/schema", get(get_raw_by_id))
        .route("/schemas/ids/{id}/versions", get(get_id_usages))
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_against_version),
        )
        .route("/compatibility/subjects/{subject}/versions", post(test_against_subject))
        .with_state(log)
}

/// An error in Confluent's shape: an HTTP status, an `error_code` and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn subject_not_found(subject: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."))
    }
    fn version_not_found(version: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40402, format!("Version {version} not found."))
    }
    fn schema_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, "Schema not found")
    }
    fn invalid_schema(why: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, why)
    }
    fn incompatible(problems: Vec<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema: {}",
                problems.join("; ")
            ),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "schema store unavailable");
        let code = if matches!(error, StoreError::CatchUpTimeout(_)) {
            50002
        } else {
            50001
        };
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            format!("Error in the backend data store: {error}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.code, "message": self.message });
        (self.status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn reply(body: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], Json(body)).into_response()
}

/// The body every schema-carrying request has.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

fn parse_schema_request(body: &[u8]) -> Result<Normalized, ApiError> {
    let request: SchemaRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Invalid request body: {e}"),
        )
    })?;
    if request
        .schema_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("AVRO"))
    {
        return Err(ApiError::invalid_schema("Only AVRO schemas are supported"));
    }
    if !request.references.is_empty() {
        return Err(ApiError::invalid_schema("Schema references are not supported"));
    }
    normalize(&request.schema).map_err(ApiError::invalid_schema)
}

fn version_entry(subject: &str, v: &Version) -> Value {
    json!({ "subject": subject, "version": v.version, "id": v.id, "schema": v.schema })
}

/// Resolves `latest` or a version number to a live version of the subject.
fn resolve<'s>(state: &'s RegistryState, subject: &str, version: &str) -> Result<&'s Version, ApiError> {
    let versions = state
        .versions(subject)
        .ok_or_else(|| ApiError::subject_not_found(subject))?;
    if version == "latest" || version == "-1" {
        return Ok(versions.last().copied().expect("a listed subject has a live version"));
    }
    let number: u32 = version.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!("The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""),
        )
    })?;
    versions
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| ApiError::version_not_found(version))
}

async fn list_subjects(State(log): State<Shared>) -> ApiResult {
    log.catch_up().await?;
    Ok(reply(json!(log.read(|s| s.subjects()))))
}

async fn list_versions(State(log): State<Shared>, Path(subject): Path<String>) -> ApiResult {
    log.catch_up().await?;
    log.read(|s| {
        let versions = s
            .versions(&subject)
            .ok_or_else(|| ApiError::subject_not_found(&subject))?;
        Ok(reply(json!(versions.iter().map(|v| v.version).collect::<Vec<_>>())))
    })
}

async fn get_version(State(log): State<Shared>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    log.catch_up().await?;
    log.read(|s| Ok(reply(version_entry(&subject, resolve(s, &subject, &version)?))))
}

async fn get_version_schema(State(log): State<Shared>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    log.catch_up().await?;
    log.read(|s| {
        let schema = resolve(s, &subject, &version)?.schema.clone();
        Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], schema).into_response())
    })
}

async fn register(State(log): State<Shared>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let candidate = parse_schema_request(&body)?;
    let outcome = log
        .write(|state| match state.plan(&subject, &candidate) {
            Ok(Plan::Existing(id)) => Ok((id, Vec::new())),
            Ok(Plan::New { id, version }) => {
                let value = SchemaValue {
                    subject: subject.clone(),
                    version,
                    id,
                    schema: candidate.text.clone(),
                    deleted: false,
                    schema_type: None,
                };
                let record = (to_json(&RecordKey::schema(&subject, version)), Some(to_json(&value)));
                Ok((id, vec![record]))
            }
            Err(problems) => Err(ApiError::incompatible(problems)),
        })
        .await??;
    metrics::counter!("vaxtrail_registry_registrations_total").increment(1);
    Ok(reply(json!({ "id": outcome })))
}

async fn lookup(State(log): State<Shared>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let candidate = parse_schema_request(&body)?;
    log.catch_up().await?;
    log.read(|s| {
        s.versions(&subject)
            .ok_or_else(|| ApiError::subject_not_found(&subject))?;
        let found = s
            .find(&subject, &candidate.text)
            .ok_or_else(ApiError::schema_not_found)?;
        Ok(reply(version_entry(&subject, found)))
    })
}

async fn delete_subject(State(log): State<Shared>, Path(subject): Path<String>) -> ApiResult {
    let deleted = log
        .write(|state| {
            let versions = state
                .versions(&subject)
                .ok_or_else(|| ApiError::subject_not_found(&subject))?;
            let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
            let records: Vec<Record> = versions
                .iter()
                .map(|v| {
                    let value = SchemaValue {
                        subject: subject.clone(),
                        version: v.version,
                        id: v.id,
                        schema: v.schema.clone(),
                        deleted: true,
                        schema_type: None,
                    };
                    (to_json(&RecordKey::schema(&subject, v.version)), Some(to_json(&value)))
                })
                .collect();
            Ok::<_, ApiError>((numbers, records))
        })
        .await??;
    Ok(reply(json!(deleted)))
}

async fn get_by_id(State(log): State<Shared>, Path(id): Path<u32>) -> ApiResult {
    log.catch_up().await?;
    log.read(|s| {
        let schema = s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        Ok(reply(json!({ "schema": schema })))
    })
}

async fn get_raw_by_id(State(log): State<Shared>, Path(id): Path<u32>) -> ApiResult {
    log.catch_up().await?;
    log.read(|s| {
        let schema = s.schema(id).ok_or_else(ApiError::schema_not_found)?.to_owned();
        Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], schema).into_response())
    })
}

async fn get_id_usages(State(log): State<Shared>, Path(id): Path<u32>) -> ApiResult {
    log.catch_up().await?;
    log.read(|s| {
        s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        let usages: Vec<Value> = s
            .usages(id)
            .into_iter()
            .map(|(subject, version)| json!({ "subject": subject, "version": version }))
            .collect();
        Ok(reply(json!(usages)))
    })
}

/// Body of a compatibility update.
#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

fn parse_level(body: &[u8]) -> Result<CompatibilityLevel, ApiError> {
    let invalid = |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, 42203, why);
    let request: ConfigRequest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid compatibility request: {e}")))?;
    request.compatibility.parse().map_err(invalid)
}

async fn write_level(
    log: &SchemaLog,
    subject: Option<&str>,
    level: Option<CompatibilityLevel>,
) -> Result<(), ApiError> {
    let key = to_json(&RecordKey::config(subject));
    let value = level.map(|l| {
        to_json(&ConfigValue {
            compatibility_level: l.to_string(),
        })
    });
    log.write(|_| Ok::<_, ApiError>(((), vec![(key, value)]))).await??;
    Ok(())
}

async fn get_global_config(State(log): State<Shared>) -> ApiResult {
    log.catch_up().await?;
    Ok(reply(
        json!({ "compatibilityLevel": log.read(|s| s.global_level()).to_string() }),
    ))
}

async fn put_global_config(State(log): State<Shared>, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    write_level(&log, None, Some(level)).await?;
    Ok(reply(json!({ "compatibility": level.to_string() })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigQuery {
    #[serde(default)]
    default_to_global: bool,
}

async fn get_subject_config(
    State(log): State<Shared>,
    Path(subject): Path<String>,
    Query(query): Query<ConfigQuery>,
) -> ApiResult {
    log.catch_up().await?;
    let level = log.read(|s| match s.subject_level(&subject) {
        Some(level) => Some(level),
        None if query.default_to_global => Some(s.global_level()),
        None => None,
    });
    let level = level.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    })?;
    Ok(reply(json!({ "compatibilityLevel": level.to_string() })))
}

async fn put_subject_config(State(log): State<Shared>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    write_level(&log, Some(&subject), Some(level)).await?;
    Ok(reply(json!({ "compatibility": level.to_string() })))
}

async fn delete_subject_config(State(log): State<Shared>, Path(subject): Path<String>) -> ApiResult {
    log.catch_up().await?;
    let level = log
        .read(|s| s.subject_level(&subject))
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    write_level(&log, Some(&subject), None).await?;
    Ok(reply(json!({ "compatibilityLevel": level.to_string() })))
}

#[derive(Deserialize)]
struct VerboseQuery {
    #[serde(default)]
    verbose: bool,
}

fn compatibility_answer(problems: Vec<String>, verbose: bool) -> Response {
    let mut body = json!({ "is_compatible": problems.is_empty() });
    if verbose {
        body["messages"] = json!(problems);
    }
    reply(body)
}

async fn test_against_version(
    State(log): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<VerboseQuery>,
    body: Bytes,
) -> ApiResult {
    let candidate = parse_schema_request(&body)?;
    log.catch_up().await?;
    let problems = log.read(|s| {
        let target = resolve(s, &subject, &version)?;
        let history: Vec<_> = s
            .parsed_history(&subject)
            .into_iter()
            .filter(|(v, _)| *v == target.version)
            .collect();
        Ok::<_, ApiError>(s.level(&subject).check(&candidate.schema, &history))
    })?;
    Ok(compatibility_answer(problems, query.verbose))
}

async fn test_against_subject(
    State(log): State<Shared>,
    Path(subject): Path<String>,
    Query(query): Query<VerboseQuery>,
    body: Bytes,
) -> ApiResult {
    let candidate = parse_schema_request(&body)?;
    log.catch_up().await?;
    let problems = log.read(|s| s.level(&subject).check(&candidate.schema, &s.parsed_history(&subject)));
    Ok(compatibility_answer(problems, query.verbose))
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records always serialize")
}
