//! What a record's intake asks of master data: the context it is parsed in (its programme's time
//! zone, country and rules; the master list with master data's vaccines), and whether its caller
//! may record for the facility and vaccinator it names.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::Utc;
use domain::vaccine::VaccineCatalog;
use platform::auth::{Caller, Role};

use crate::{Intake, problem::Problem};

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
        let defined = self.master.as_ref().map(|master| {
            let found = programme.and_then(|id| master.view.read(|data| data.programme(id).cloned()));
            (master.view.catalog(), found)
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
        let bound =
            !caller.facilities.is_empty() || (self.facility_binding == crate::FacilityBinding::Required && !admin);
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
                    format!(
                        "vaccinator-unknown: no active vaccinator of this name is registered at facility {facility}"
                    ),
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
