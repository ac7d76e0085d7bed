//! Master data in the command API: a live view of the compacted `master-data` topic (read from its
//! first record at start, then followed, so a change applies without a restart), the endpoints
//! that change it (an administrator defines programmes, vaccines and facilities; a controller
//! activates and suspends facilities), and what intake asks of it: a programme's time zone and
//! country, the vaccines on the master list, and whether a facility may record.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use avro::{codec::MasterDataCodec, master::MasterEnvelope};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use domain::{
    master::{FacilityEntry, FacilityStatus, MasterData, MasterRecord, MasterVaccine, Programme},
    vaccine::VaccineCatalog,
};
use platform::{
    Shutdown,
    auth::{Caller, Role},
};

use crate::problem::Problem;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::{
    Intake,
    routes::{Body, parse_json, rejected},
};

/// The master data as the topic holds it, followed live.
pub struct MasterView {
    data: RwLock<MasterData>,
    /// The file master list with the vaccines master data adds, rebuilt when they change.
    catalog: RwLock<Arc<VaccineCatalog>>,
    base: VaccineCatalog,
    /// The offset each key was last applied from: a record is applied only if it is newer (the
    /// API applies its own writes at once; the follower then reads them again).
    applied: std::sync::Mutex<HashMap<String, i64>>,
    caught_up: AtomicBool,
}

impl MasterView {
    fn new(base: VaccineCatalog) -> Self {
        Self {
            data: RwLock::new(MasterData::default()),
            catalog: RwLock::new(Arc::new(base.clone())),
            base,
            applied: std::sync::Mutex::new(HashMap::new()),
            caught_up: AtomicBool::new(false),
        }
    }

    /// Reads the master data.
    pub fn read<R>(&self, f: impl FnOnce(&MasterData) -> R) -> R {
        f(&self.data.read().expect("never poisoned"))
    }

    /// The vaccine master list: the file's, and master data's.
    pub fn catalog(&self) -> Arc<VaccineCatalog> {
        self.catalog.read().expect("never poisoned").clone()
    }

    /// Whether the view has read the topic up to where it ended at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    fn apply(&self, offset: i64, record: MasterRecord) {
        let key = record.key();
        {
            let mut applied = self.applied.lock().expect("never poisoned");
            if applied.get(&key).is_some_and(|&seen| seen >= offset) {
                return;
            }
            applied.insert(key, offset);
        }
        let vaccine = matches!(record, MasterRecord::Vaccine(_));
        let mut data = self.data.write().expect("never poisoned");
        data.apply(record);
        if vaccine {
            let catalog = self
                .base
                .clone()
                .with(data.vaccines().map(|v| v.vaccine.clone()));
            *self.catalog.write().expect("never poisoned") = Arc::new(catalog);
        }
        metrics::gauge!("vaxtrail_master_data_records").set(self.applied.lock().expect("never poisoned").len() as f64);
    }
}

/// Appends master-data changes and follows the topic.
pub struct Master {
    pub view: Arc<MasterView>,
    topic: String,
    codec: MasterDataCodec,
    producer: FutureProducer,
    timeout: Duration,
}

impl Master {
    /// Starts following `topic` from its first record.
    pub fn start(
        kafka: &platform::KafkaArgs,
        topic: &str,
        base: VaccineCatalog,
        timeout: Duration,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let client = platform::Kafka::new(&kafka.brokers);
        let view = Arc::new(MasterView::new(base));
        let consumer: StreamConsumer = client.reader(&format!("{topic}-view"))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        tokio::spawn(follow(
            consumer,
            kafka.brokers.clone(),
            topic.to_owned(),
            MasterDataCodec::new(&kafka.schema_registry_url, topic),
            view.clone(),
            shutdown,
        ));
        Ok(Self {
            view,
            topic: topic.to_owned(),
            codec: MasterDataCodec::new(&kafka.schema_registry_url, topic),
            producer: client.producer()?,
            timeout,
        })
    }

    /// Appends a change; once the broker has it, the view shows it.
    async fn append(&self, actor: &str, record: MasterRecord) -> Result<(), Problem> {
        let envelope = MasterEnvelope {
            recorded_at: Utc::now(),
            actor: actor.to_owned(),
            record,
        };
        let bytes = self
            .codec
            .encode(&envelope)
            .await
            .map_err(|e| crate::problem::unavailable(&e))?;
        let key = envelope.record.key();
        let delivery = self
            .producer
            .send(FutureRecord::to(&self.topic).key(&key).payload(&bytes), self.timeout)
            .await
            .map_err(|(e, _)| crate::problem::unavailable(&e))?;
        metrics::counter!("vaxtrail_master_data_changes_total").increment(1);
        self.view.apply(delivery.offset, envelope.record);
        Ok(())
    }
}

/// Reads the topic from its first record for as long as the service runs.
async fn follow(
    consumer: StreamConsumer,
    brokers: String,
    topic: String,
    codec: MasterDataCodec,
    view: Arc<MasterView>,
    shutdown: Shutdown,
) {
    // Where the topic ended at start: the view is ready once it has read that far.
    let end = loop {
        let watermarks = platform::log::watermarks_async(&brokers, std::slice::from_ref(&topic)).await;
        match watermarks {
            Ok(marks) => break marks.iter().map(|w| w.high).max().unwrap_or(0),
            Err(error) => {
                tracing::warn!(%error, "reading the master-data topic's end; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    if end == 0 {
        view.caught_up.store(true, Ordering::Release);
    }
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message.detach(),
            Err(error) => {
                tracing::warn!(%error, "reading master-data");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let offset = message.offset();
        // A record that does not decode (a bug, or a newer schema) is skipped with its reason:
        // the rest of the master data still applies.
        let decoded = platform::Backoff::REGISTRY
            .retry(&shutdown, || codec.decode(message.payload().unwrap_or_default()), avro::codec::CodecError::is_retriable)
            .await;
        match decoded {
            Ok(Ok(envelope)) => view.apply(offset, envelope.record),
            Ok(Err(error)) => {
                metrics::counter!("vaxtrail_master_data_undecodable_total").increment(1);
                tracing::error!(offset, %error, "a master-data record does not decode; skipped");
            }
            Err(_) => return,
        }
        if offset + 1 >= end {
            view.caught_up.store(true, Ordering::Release);
        }
    }
}

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
        .authorize(&headers, &[Role::Facility, Role::Controller, Role::Auditor, Role::Monitoring])
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

/// What parsing a record needs, for the programme it names: the programme's time zone and
/// country when master data defines it (else the deployment's), and the master list with master
/// data's vaccines.
pub(crate) struct RecordContext {
    catalog: Arc<VaccineCatalog>,
    zone: chrono_tz::Tz,
    country: domain::values::CountryCode,
    rules: Option<domain::master::ProgrammeRules>,
}

impl RecordContext {
    /// Writes the programme's rules into the record, for the signer and for replays; a record
    /// whose `totalDoses` is not the programme's course is refused.
    pub(crate) fn stamp(
        &self,
        mut record: domain::commands::RecordVaccination,
    ) -> Result<domain::commands::RecordVaccination, Vec<domain::values::FieldError>> {
        if let Some(rules) = self.rules
            && record.vaccination.dose.of() != rules.total_doses
        {
            return Err(vec![domain::values::FieldError::new(
                "vaccination.totalDoses",
                format!(
                    "must be {}: programme {} has a course of {} doses",
                    rules.total_doses, record.programme, rules.total_doses
                ),
            )]);
        }
        record.rules = self.rules;
        Ok(record)
    }

    pub(crate) fn parse_context(&self) -> domain::commands::ParseContext<'_> {
        domain::commands::ParseContext {
            catalog: &self.catalog,
            zone: self.zone,
            default_country: self.country.clone(),
            today: Utc::now().with_timezone(&self.zone).date_naive(),
        }
    }
}

/// Why a caller may not post a record for the facility it names.
pub(crate) enum FacilityCheck {
    /// The facility is unknown or suspended (422, naming the field and rule).
    Field(domain::values::FieldError),
    /// The caller is not bound to it (403).
    Forbidden(Problem),
}

impl Intake {
    /// The context for a record of `programme` (its `programId`).
    pub(crate) fn context_for(&self, programme: Option<&str>) -> RecordContext {
        let defined = self.master.as_ref().and_then(|master| {
            let found = programme.and_then(|id| master.view.read(|data| data.programme(id).cloned()));
            Some((master.view.catalog(), found))
        });
        match defined {
            Some((catalog, Some(programme))) => RecordContext {
                catalog,
                zone: programme.rules.time_zone,
                country: programme.country,
                rules: Some(programme.rules),
            },
            Some((catalog, None)) => RecordContext {
                catalog,
                zone: self.zone,
                country: self.default_country.clone(),
                rules: None,
            },
            None => RecordContext {
                catalog: Arc::new(self.catalog.clone()),
                zone: self.zone,
                country: self.default_country.clone(),
                rules: None,
            },
        }
    }

    /// Whether `caller` may post `record`: a caller bound to facilities (its token's claim; every
    /// facility token when binding is required) only for a registered, active facility it is
    /// bound to; any caller never for a registered facility that is suspended. `field` is the
    /// facility name's path in the body.
    pub(crate) fn check_facility(
        &self,
        caller: &Caller,
        record: &domain::commands::RecordVaccination,
        field: &str,
    ) -> Result<(), FacilityCheck> {
        use domain::master::FacilityRefusal;
        let Some(master) = &self.master else {
            return Ok(());
        };
        let admin = caller.roles.contains(&Role::Admin);
        let bound = !caller.facilities.is_empty()
            || (self.facility_binding == crate::FacilityBinding::Required && !admin);
        let name = record.facility.name.as_str();
        let checked = master.view.read(|data| {
            let allowed: Vec<String> = if bound {
                caller.facilities.clone()
            } else {
                data.facilities().map(|f| f.id.to_string()).collect()
            };
            match data.may_record_at(name, &allowed) {
                Ok(facility) => Ok(Some((
                    facility.id.clone(),
                    data.vaccinator_may_record(&facility.id, record.vaccinator.as_str()),
                ))),
                // Unbound (as before master data): an unknown facility records as before; only a
                // registered facility's suspension holds.
                Err(FacilityRefusal::Unknown) if !bound => Ok(None),
                Err(refusal) => Err(refusal),
            }
        });
        let refusal = match checked {
            Ok(None | Some((_, true))) => return Ok(()),
            Ok(Some((facility, false))) => {
                metrics::counter!("vaxtrail_commands_refused_total", "rule" => "vaccinator-unknown").increment(1);
                let field = field.replace("facility.name", "vaccinator.name");
                return Err(FacilityCheck::Field(domain::values::FieldError::new(
                    field,
                    format!("vaccinator-unknown: no active vaccinator of this name is registered at facility {facility}"),
                )));
            }
            Err(refusal) => refusal,
        };
        let rule = refusal.rule();
        metrics::counter!("vaxtrail_commands_refused_total", "rule" => rule).increment(1);
        Err(match refusal {
            FacilityRefusal::Unknown => FacilityCheck::Field(domain::values::FieldError::new(
                field,
                format!("{rule}: no registered facility has this name"),
            )),
            FacilityRefusal::Suspended(id) => FacilityCheck::Field(domain::values::FieldError::new(
                field,
                format!("{rule}: facility {id} is suspended and may not record vaccinations"),
            )),
            FacilityRefusal::NotBound(id) => FacilityCheck::Forbidden(
                Problem::new(
                    StatusCode::FORBIDDEN,
                    "facility-not-bound",
                    format!("This token is not bound to facility {id}: a facility posts only as the facilities its token names"),
                )
                .with_error(field, rule),
            ),
        })
    }
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
            anyhow::ensure!(ok, "VAXTRAIL_ADMIN_ORIGINS: {o:?} is not an origin (scheme://host[:port], no path)");
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
