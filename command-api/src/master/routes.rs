//! The master-data endpoints: reading everything, and the changes each role may make.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use domain::master::{FacilityEntry, FacilityStatus, MasterData, MasterRecord, MasterVaccine, Programme};
use platform::auth::{Caller, Role};
use serde_json::{Value, json};

use super::Master;
use crate::{
    Intake,
    problem::Problem,
    routes::{Body, parse_json, rejected},
};

/// Everything, as `GET /v1/master-data` shows it.
fn listing(data: &MasterData) -> Value {
    let list = |records: Vec<MasterRecord>| records.iter().map(MasterRecord::to_json).collect::<Vec<_>>();
    json!({
        "programmes": list(data.programmes().cloned().map(MasterRecord::Programme).collect()),
        "vaccines": list(data.vaccines().cloned().map(MasterRecord::Vaccine).collect()),
        "facilities": list(data.facilities().cloned().map(MasterRecord::Facility).collect()),
        "vaccinators": list(data.vaccinators().cloned().map(MasterRecord::Vaccinator).collect()),
    })
}

fn changed(record: &MasterRecord) -> Response {
    (StatusCode::OK, Json(record.to_json())).into_response()
}

impl Intake {
    fn master(&self) -> Result<&Master, Problem> {
        self.master.as_ref().ok_or_else(|| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "master-data-unavailable",
                "Master data is not followed by this instance",
            )
        })
    }

    async fn change(&self, caller: &Caller, record: MasterRecord) -> Result<Response, Problem> {
        self.master()?.append(&caller.subject, record.clone()).await?;
        Ok(changed(&record))
    }
}

/// `GET /v1/master-data`: every programme, vaccine and facility. Any role.
#[utoipa::path(
    get,
    path = "/v1/master-data",
    description = "Every programme, vaccine and facility. Any role.",
    responses(
        (status = 200, description = "The master data", body = crate::openapi::MasterDataListing),
        crate::openapi::Refusals
    )
)]
pub async fn list(State(intake): State<Arc<Intake>>, headers: HeaderMap) -> Result<Response, Problem> {
    intake
        .authorize(
            &headers,
            &[Role::Facility, Role::Controller, Role::Auditor, Role::Monitoring],
        )
        .await?;
    let master = intake.master()?;
    Ok(Json(master.view.read(listing)).into_response())
}

/// `PUT /v1/master-data/programmes/{id}`: defines or redefines a programme. Administrator.
#[utoipa::path(
    put,
    path = "/v1/master-data/programmes/{id}",
    description = "Define or redefine a programme and its rules. Role: admin.",
    params(("id" = String, Path, description = "The programId records name", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    request_body = crate::openapi::ProgrammeBody,
    responses(
        (status = 200, description = "The programme as now defined", body = crate::openapi::MasterRecordView),
        crate::openapi::Refusals
    )
)]
pub async fn put_programme(
    State(intake): State<Arc<Intake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Admin]).await?;
    let programme = Programme::parse(&id, &parse_json(&body)?).map_err(rejected)?;
    intake.change(&caller, MasterRecord::Programme(programme)).await
}

/// `POST /v1/master-data/vaccines`: adds or redefines a vaccine (by name). Administrator.
#[utoipa::path(
    post,
    path = "/v1/master-data/vaccines",
    description = "Add a vaccine to the master list, or redefine one (matched by name). Role: admin.",
    request_body = crate::openapi::VaccineBody,
    responses(
        (status = 200, description = "The vaccine as now defined", body = crate::openapi::MasterRecordView),
        crate::openapi::Refusals
    )
)]
pub async fn post_vaccine(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Admin]).await?;
    let vaccine = MasterVaccine::parse(&parse_json(&body)?).map_err(rejected)?;
    intake.change(&caller, MasterRecord::Vaccine(vaccine)).await
}

/// `PUT /v1/master-data/facilities/{id}`: registers or redefines a facility. Administrator.
#[utoipa::path(
    put,
    path = "/v1/master-data/facilities/{id}",
    description = "Register or redefine a facility (suspended unless the body says active). Role: admin.",
    params(("id" = String, Path, description = "The facility's id (what facility tokens are bound to)", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    request_body = crate::openapi::FacilityBody,
    responses(
        (status = 200, description = "The facility as now registered", body = crate::openapi::MasterRecordView),
        crate::openapi::Refusals
    )
)]
pub async fn put_facility(
    State(intake): State<Arc<Intake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Admin]).await?;
    let facility = FacilityEntry::parse(&id, &parse_json(&body)?).map_err(rejected)?;
    intake.change(&caller, MasterRecord::Facility(facility)).await
}

/// `PUT /v1/master-data/vaccinators/{id}`: registers or redefines a vaccinator. Administrator.
#[utoipa::path(
    put,
    path = "/v1/master-data/vaccinators/{id}",
    description = "Register or redefine a vaccinator at facilities (active unless the body says suspended). A facility with vaccinators registered records only theirs. Role: admin.",
    params(("id" = String, Path, description = "The vaccinator's id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    request_body = crate::openapi::VaccinatorBody,
    responses(
        (status = 200, description = "The vaccinator as now registered", body = crate::openapi::MasterRecordView),
        crate::openapi::Refusals
    )
)]
pub async fn put_vaccinator(
    State(intake): State<Arc<Intake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Admin]).await?;
    let vaccinator = domain::master::VaccinatorEntry::parse(&id, &parse_json(&body)?).map_err(rejected)?;
    intake.change(&caller, MasterRecord::Vaccinator(vaccinator)).await
}

/// `POST /v1/master-data/facilities/{id}/status`: `{"status": "active" | "suspended"}`.
/// Controller.
#[utoipa::path(
    post,
    path = "/v1/master-data/facilities/{id}/status",
    description = "Activate or suspend a registered facility. Role: controller.",
    params(("id" = String, Path, description = "The facility's id", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    request_body = crate::openapi::FacilityStatusBody,
    responses(
        (status = 200, description = "The facility with its new status", body = crate::openapi::MasterRecordView),
        (status = 404, description = "No facility has this id", body = crate::openapi::ProblemDetails, content_type = "application/problem+json"),
        crate::openapi::Refusals
    )
)]
pub async fn facility_status(
    State(intake): State<Arc<Intake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Controller]).await?;
    let body = parse_json(&body)?;
    let status = match body.get("status").and_then(Value::as_str) {
        Some("active") => FacilityStatus::Active,
        Some("suspended") => FacilityStatus::Suspended,
        _ => {
            return Err(rejected(vec![domain::values::FieldError::new(
                "status",
                "must be \"active\" or \"suspended\"",
            )]));
        }
    };
    if let Some(extra) = body.as_object().and_then(|o| o.keys().find(|k| *k != "status")) {
        return Err(rejected(vec![domain::values::FieldError::new(
            extra.clone(),
            "is not a field of this body",
        )]));
    }
    let master = intake.master()?;
    let Some(mut facility) = master.view.read(|data| data.facility(&id).cloned()) else {
        return Err(Problem::not_found(format!("no facility has the id {id:?}")));
    };
    facility.status = status;
    intake.change(&caller, MasterRecord::Facility(facility)).await
}

/// The master-data routes, callable from `origins` in a browser (CORS: the bearer token in the
/// `Authorization` header, no cookies). A malformed origin stops the start, naming it.
pub(crate) fn cors(routes: axum::Router, origins: &[String]) -> anyhow::Result<axum::Router> {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(|o| {
            let ok = (o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/');
            anyhow::ensure!(
                ok,
                "VAXTRAIL_ADMIN_ORIGINS: {o:?} is not an origin (scheme://host[:port], no path)"
            );
            Ok(HeaderValue::from_str(o)?)
        })
        .collect::<anyhow::Result<_>>()?;
    if origins.is_empty() {
        return Ok(routes);
    }
    Ok(routes.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::PUT, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    ))
}
