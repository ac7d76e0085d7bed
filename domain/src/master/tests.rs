use serde_json::json;

use super::*;

fn programme_body() -> Value {
    json!({
        "name": "COVID-19 vaccination", "diseases": ["COVID-19"], "totalDoses": 2, "updateLimit": 3,
        "timeZone": "Asia/Kolkata", "country": "IND", "languages": ["hi"]
    })
}

fn facility(id: &str, name: &str, status: FacilityStatus) -> MasterRecord {
    MasterRecord::Facility(FacilityEntry {
        id: MasterId::parse("id", id).unwrap(),
        name: Text::parse("name", name).unwrap(),
        district: Text::parse("d", "Bengaluru").unwrap(),
        state: Text::parse("s", "Karnataka").unwrap(),
        status,
    })
}

#[test]
fn a_programme_body_is_read_with_its_rules() {
    let programme = Programme::parse("covid19", &programme_body()).unwrap();
    assert_eq!(programme.id.as_str(), "covid19");
    assert_eq!(
        programme.rules,
        ProgrammeRules {
            total_doses: 2,
            update_limit: 3,
            time_zone: chrono_tz::Asia::Kolkata,
        }
    );
    assert_eq!(programme.languages, vec!["hi".to_owned()]);
    assert_eq!(MasterRecord::Programme(programme).key(), "programme/covid19");
}

#[test]
fn every_problem_of_a_programme_body_is_named_with_its_field() {
    let body = json!({
        "name": "", "diseases": "COVID-19", "totalDoses": 0, "updateLimit": -1,
        "timeZone": "Mars/Olympus", "country": "India", "languages": ["not a tag!"], "colour": "red"
    });
    let errors = Programme::parse("bad id!", &body).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "id",
        "name",
        "diseases",
        "totalDoses",
        "updateLimit",
        "timeZone",
        "country",
        "colour",
    ] {
        assert!(fields.contains(&field), "{field} not named in {fields:?}");
    }
    assert!(Programme::parse("p", &json!([1])).is_err());
}

#[test]
fn a_facility_is_registered_suspended_unless_it_says_active() {
    let body = json!({"name": "PHC Whitefield", "district": "Bengaluru", "state": "Karnataka"});
    assert_eq!(
        FacilityEntry::parse("phc-1", &body).unwrap().status,
        FacilityStatus::Suspended
    );
    let mut active = body.clone();
    active["status"] = json!("active");
    assert_eq!(
        FacilityEntry::parse("phc-1", &active).unwrap().status,
        FacilityStatus::Active
    );
    active["status"] = json!("closed");
    let errors = FacilityEntry::parse("phc-1", &active).unwrap_err();
    assert_eq!(errors[0].field, "status");
}

#[test]
fn a_vaccine_body_is_read_and_its_eu_codes_are_checked() {
    let body = json!({
        "name": "Covishield", "manufacturer": "Serum Institute of India", "icd11Code": "XM9QW8",
        "icd11Term": "COVID-19 vaccine, non-replicating viral vector", "vaccineType": "Viral Vector",
        "disease": "COVID-19", "eu": {"product": "EU/1/21/1529", "manufacturer": "ORG-100001699", "prophylaxis": "J07BX03"}
    });
    let vaccine = MasterVaccine::parse(&body).unwrap();
    assert_eq!(vaccine.vaccine.icd11_code, "XM9QW8");
    assert_eq!(vaccine.eu.as_ref().unwrap().prophylaxis.as_str(), "J07BX03");
    let mut partial = body.clone();
    partial["eu"] = json!({"product": "EU/1/21/1529"});
    let errors = MasterVaccine::parse(&partial).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["eu.manufacturer", "eu.prophylaxis"]);
}

#[test]
fn a_facility_records_only_where_it_is_bound_registered_and_active() {
    let mut data = MasterData::default();
    data.apply(facility("phc-1", "PHC Whitefield", FacilityStatus::Active));
    data.apply(facility("phc-2", "PHC Indiranagar", FacilityStatus::Suspended));
    let bound = vec!["phc-1".to_owned(), "phc-2".to_owned()];
    assert_eq!(
        data.may_record_at("phc whitefield ", &bound).unwrap().id.as_str(),
        "phc-1"
    );
    assert_eq!(
        data.may_record_at("PHC Indiranagar", &bound),
        Err(FacilityRefusal::Suspended(MasterId::parse("id", "phc-2").unwrap()))
    );
    assert_eq!(
        data.may_record_at("Nowhere Clinic", &bound),
        Err(FacilityRefusal::Unknown)
    );
    assert_eq!(
        data.may_record_at("PHC Whitefield", &["phc-2".to_owned()]),
        Err(FacilityRefusal::NotBound(MasterId::parse("id", "phc-1").unwrap()))
    );
    // A later record of the same key replaces the earlier: the controller suspends phc-1.
    data.apply(facility("phc-1", "PHC Whitefield", FacilityStatus::Suspended));
    assert_eq!(
        data.may_record_at("PHC Whitefield", &bound).unwrap_err().rule(),
        "facility-suspended"
    );
}

#[test]
fn a_facility_with_registered_vaccinators_records_only_theirs() {
    let mut data = MasterData::default();
    let phc = MasterId::parse("id", "phc-1").unwrap();
    assert!(data.vaccinator_may_record(&phc, "Anyone"), "no registry yet: as before");
    let asha = VaccinatorEntry::parse("v-1", &json!({"name": "Asha Devi", "facilities": ["phc-1"]})).unwrap();
    data.apply(MasterRecord::Vaccinator(asha.clone()));
    assert!(data.vaccinator_may_record(&phc, "asha devi"));
    assert!(!data.vaccinator_may_record(&phc, "Sooraj Singh"));
    let elsewhere = MasterId::parse("id", "phc-2").unwrap();
    assert!(
        data.vaccinator_may_record(&elsewhere, "Sooraj Singh"),
        "another facility has none"
    );
    let mut suspended = asha;
    suspended.status = FacilityStatus::Suspended;
    data.apply(MasterRecord::Vaccinator(suspended));
    assert!(!data.vaccinator_may_record(&phc, "Asha Devi"));
    let errors = VaccinatorEntry::parse("v 2", &json!({"name": "", "facilities": []})).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["id", "name", "facilities"]);
}
