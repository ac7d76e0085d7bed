//! Realistic synthetic vaccinations in DIVOC's certify-request shape: vaccines from the master
//! list with their makers, Indian states and districts, ages from 12 to 90, both genders and
//! `Other`, dates spread over the weeks before `today`, and second doses 28 days after the first.
//! Person `i` is the same person in every run (deterministic from `i`), so a demo or a benchmark
//! can post a person's second dose, a correction or a revocation later.

use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

/// Vaccines of DIVOC's master list, with their makers and dose counts.
const VACCINES: [(&str, &str, u8); 6] = [
    ("covishield", "Serum Institute of India", 2),
    ("covaxin", "Bharat Biotech", 2),
    ("sputnik v", "Gamaleya Research Institute", 2),
    ("corbevax", "Biological E", 2),
    ("zycov-d", "Zydus Cadila", 3),
    ("janssen", "Janssen", 1),
];

/// States with a few of their districts (where their facilities are).
const PLACES: [(&str, &[&str]); 8] = [
    ("Karnataka", &["Bengaluru Urban", "Mysuru", "Belagavi"]),
    ("Maharashtra", &["Mumbai", "Pune", "Nagpur"]),
    ("Tamil Nadu", &["Chennai", "Coimbatore", "Madurai"]),
    ("Uttar Pradesh", &["Lucknow", "Kanpur Nagar", "Varanasi"]),
    ("West Bengal", &["Kolkata", "Howrah"]),
    ("Gujarat", &["Ahmedabad", "Surat"]),
    ("Kerala", &["Thiruvananthapuram", "Ernakulam"]),
    ("Delhi", &["New Delhi", "South Delhi"]),
];

const GIVEN: [&str; 10] = [
    "Aarav", "Ananya", "Vihaan", "Diya", "Arjun", "Isha", "Kabir", "Meera", "Rohan", "Saanvi",
];
const FAMILY: [&str; 8] = ["Sharma", "Patel", "Reddy", "Iyer", "Singh", "Das", "Nair", "Khan"];

/// One synthetic person.
#[derive(Clone, Debug)]
pub struct Person {
    pub index: u64,
    name: String,
    gender: &'static str,
    dob: NaiveDate,
    vaccine: (&'static str, &'static str, u8),
    state: &'static str,
    district: &'static str,
    first_dose: NaiveDate,
}

impl Person {
    /// Person `index`, whose first dose falls within `days` days before `today` plus the time
    /// the schedule's later doses need.
    pub fn new(index: u64, today: NaiveDate, days: u32) -> Self {
        let mut rng = StdRng::seed_from_u64(index);
        let (state, districts) = *PLACES.choose(&mut rng).expect("not empty");
        let age_days = rng.random_range(12 * 365..90 * 365);
        let vaccine = *VACCINES.choose(&mut rng).expect("not empty");
        // Early enough that the last dose is not in the future.
        let first_dose =
            today - Duration::days(28 * i64::from(vaccine.2 - 1) + i64::from(rng.random_range(0..days.max(1))));
        Self {
            index,
            name: format!(
                "{} {}",
                GIVEN.choose(&mut rng).expect("not empty"),
                FAMILY.choose(&mut rng).expect("not empty")
            ),
            gender: ["Male", "Female", "Male", "Female", "Other"][rng.random_range(0..5)],
            dob: today - Duration::days(age_days),
            vaccine,
            state,
            district: districts.choose(&mut rng).expect("not empty"),
            first_dose,
        }
    }

    /// Doses in this person's schedule.
    pub fn doses(&self) -> u8 {
        self.vaccine.2
    }

    /// The person's identity URI (what the recipient key is derived from).
    pub fn identity(&self) -> String {
        format!("did:in.gov.uidai.aadhaar:{:012}", 100_000_000_000 + self.index)
    }

    /// The certify request for dose `dose` (1-based), given 28 days apart; `batch_suffix` makes a
    /// corrected record differ from the original.
    pub fn certify_request(&self, dose: u8, batch_suffix: &str) -> Value {
        let (vaccine, manufacturer, total) = self.vaccine;
        let date = self.first_dose + Duration::days(28 * i64::from(dose.saturating_sub(1)));
        let address = json!({
            "addressLine1": format!("{} Main Road", 1 + self.index % 200),
            "district": self.district,
            "state": self.state,
            "pincode": format!("{}", 110_001 + self.index % 800_000),
        });
        json!({
            "preEnrollmentCode": format!("{:010}", 1_000_000_000 + self.index),
            "programId": "covid-19",
            "recipient": {
                "name": self.name,
                "dob": self.dob.format("%Y-%m-%d").to_string(),
                "gender": self.gender,
                "nationality": "Indian",
                "identity": self.identity(),
                "contact": [format!("tel:9{:09}", self.index % 1_000_000_000)],
                "address": address,
            },
            "vaccination": {
                "name": vaccine,
                "batch": format!("{}{}{batch_suffix}", &vaccine[..2].to_uppercase(), 1000 + self.index % 89),
                "manufacturer": manufacturer,
                "date": format!("{}T10:15:00+05:30", date.format("%Y-%m-%d")),
                "dose": dose,
                "totalDoses": total,
                "effectiveStart": date.format("%Y-%m-%d").to_string(),
                "effectiveUntil": (date + Duration::days(365)).format("%Y-%m-%d").to_string(),
            },
            "vaccinator": { "name": format!("Vaccinator {}", self.index % 50) },
            "facility": {
                "name": format!("{} PHC {}", self.district, self.index % 7),
                "address": address,
            },
        })
    }
}

/// A credential of vaxtrail's shape as the certificate PDF reads it (issuer, subject with address,
/// this dose's evidence listing the earlier ones): dose `doses` of `doses`, batches `4121Z001`…,
/// for the PDF benchmark and the PDF tests. Not signed: the page reads nothing else of it.
pub fn printable_credential(name: &str, street: &str, district: &str, doses: usize) -> Value {
    let doses = doses.max(1);
    let dose = |n: usize| {
        json!({"dose": n, "totalDoses": doses, "date": format!("2021-{:02}-01", n.min(12)),
               "vaccine": "Covishield", "manufacturer": "Serum Institute of India",
               "batch": format!("4121Z{n:03}"), "facility": {"name": "PHC Mysuru"}})
    };
    let mut evidence = dose(doses);
    evidence["certificateId"] = json!("ABCD1234EFGH5678J");
    evidence["prophylaxis"] = json!("COVID-19 vaccine, non-replicating viral vector");
    evidence["effectiveStart"] = json!("2021-05-01");
    evidence["effectiveUntil"] = json!("2022-05-01");
    evidence["facility"]["address"] = json!({"addressCountry": "IND"});
    if doses > 1 {
        evidence["previousDoses"] = (1..doses).map(dose).collect();
    }
    json!({
        "issuer": "did:web:certificates.example.gov",
        "credentialSubject": {
            "name": name, "dob": "1990-04-02", "gender": "Female",
            "id": "did:in.gov.uidai.aadhaar:123456789012",
            "address": {"streetAddress": street, "district": district, "addressRegion": "Karnataka",
                        "addressCountry": "IND", "postalCode": "560034"},
        },
        "evidence": [evidence],
    })
}

#[cfg(test)]
mod tests {
    use domain::{
        commands::{ParseContext, RecordVaccination},
        vaccine::VaccineCatalog,
        values::CountryCode,
    };

    use super::*;

    #[test]
    fn every_dose_of_many_people_is_a_valid_divoc_record() {
        let catalog = VaccineCatalog::divoc_default();
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let ctx = ParseContext {
            catalog: &catalog,
            zone: chrono_tz::Asia::Kolkata,
            default_country: CountryCode::parse("c", "IND").unwrap(),
            today,
        };
        let mut vaccines = std::collections::BTreeSet::new();
        for i in 0..300 {
            let person = Person::new(i, today, 60);
            for dose in 1..=person.doses() {
                let body = person.certify_request(dose, "");
                let record = RecordVaccination::parse(&body, &ctx)
                    .unwrap_or_else(|e| panic!("person {i} dose {dose}: {e:?}\n{body:#}"));
                assert_eq!(record.vaccination.dose.number(), dose);
                assert!(record.vaccination.date.date() <= today);
                vaccines.insert(record.vaccination.vaccine.name.clone());
            }
        }
        assert_eq!(vaccines.len(), VACCINES.len(), "every vaccine appears");
    }

    #[test]
    fn a_person_is_the_same_in_every_run_and_differs_from_the_next() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let a = Person::new(7, today, 60).certify_request(1, "");
        assert_eq!(a, Person::new(7, today, 60).certify_request(1, ""));
        assert_ne!(
            a["recipient"],
            Person::new(8, today, 60).certify_request(1, "")["recipient"]
        );
    }
}
