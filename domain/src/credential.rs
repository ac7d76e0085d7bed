//! The credential model: the unsigned W3C Verifiable Credential (data model 1.1) a certificate is,
//! shaped like DIVOC's so its templates and apps read it, but under vaxtrail's own vaccination
//! context where every field has its own predicate (DIVOC's maps `dose` and `totalDoses`, and
//! others, to the same one, so their values could be swapped under a valid signature).
//!
//! What is built here is plain JSON; signing it is the `credentials` crate's job.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{
    commands::{Address, Birth, RecordVaccination},
    ids::CertificateId,
    values::{Dose, IsoDate},
};

/// The W3C credentials data model 1.1 context.
pub const CREDENTIALS_V1: &str = "https://www.w3.org/2018/credentials/v1";
/// The W3C Verifiable Credentials Data Model 2.0 context (it defines `DataIntegrityProof` and the
/// Bitstring Status List terms too).
pub const CREDENTIALS_V2: &str = "https://www.w3.org/ns/credentials/v2";
/// vaxtrail's vaccination context, version 1. A later version gets a new URL; v1 never changes.
pub const VACCINATION_V1: &str = "https://vaxtrail.org/credentials/vaccination/v1";
/// vaxtrail's vaccination context for VC 2.0 credentials: v1's terms less those the W3C v2
/// context defines itself (`name`, protected there with the same IRI) and the StatusList2021
/// terms (a Bitstring Status List entry's are the v2 context's).
pub const VACCINATION_V2: &str = "https://vaxtrail.org/credentials/vaccination/v2";
/// The Data Integrity context that defines `DataIntegrityProof`.
pub const DATA_INTEGRITY_V2: &str = "https://w3id.org/security/data-integrity/v2";

/// The SHA-256 of a vaccination record's canonical form: two records are the same vaccination
/// exactly when their fingerprints are equal. Kept in the lineage instead of the whole record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The SHA-256 of the record's JSON form (fields in declaration order, values as parsed).
    pub fn of(record: &RecordVaccination) -> Self {
        let canonical = serde_json::to_vec(record).expect("a record always serializes");
        Self(Sha256::digest(canonical).into())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Who issues, and where its certificates and status lists live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerProfile {
    /// The issuer's DID (`did:web:certificates.example.gov`), the credential's `issuer`.
    pub issuer: String,
    /// The public base URL of the query side (`https://certificates.example.gov`), no trailing `/`.
    pub base_url: String,
}

impl IssuerProfile {
    /// The URL that names one certified dose (the evidence `id`).
    pub fn evidence_id(&self, certificate: &CertificateId) -> String {
        format!("{}/vaccine/{certificate}", self.base_url)
    }

    /// The URL of a status list credential.
    pub fn status_list_url(&self, list: u32) -> String {
        format!("{}/v1/status-lists/{list}", self.base_url)
    }
}

/// Where a certificate's revocation bit lives: status list `list`, bit `index`. A list below
/// [`crate::status::FIRST_BITSTRING_LIST`] is a partition's `StatusList2021` list (data model
/// 1.1 credentials); a list from it on is a Bitstring Status List (VC 2.0 credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatusSlot {
    pub list: u32,
    pub index: u64,
}

/// A certified dose as earlier certificates of the same programme list it, for the template's
/// table of doses. Read back from a credential's evidence when the lineage is rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedDose {
    pub certificate_id: CertificateId,
    pub dose: Dose,
    pub vaccine: String,
    pub manufacturer: String,
    pub batch: String,
    pub date: IsoDate,
    pub facility: String,
}

impl CertifiedDose {
    /// The dose a record certifies.
    pub fn of(certificate_id: &CertificateId, record: &RecordVaccination) -> Self {
        let vaccination = &record.vaccination;
        Self {
            certificate_id: certificate_id.clone(),
            dose: vaccination.dose,
            vaccine: vaccination.vaccine.name.clone(),
            manufacturer: vaccination.manufacturer.as_str().to_owned(),
            batch: vaccination.batch.as_str().to_owned(),
            date: vaccination.date,
            facility: record.facility.name.as_str().to_owned(),
        }
    }

    /// The dose certified by a credential built here (its first `evidence`), from its JSON text.
    /// Reads only the evidence: decoding `certificate-events` calls this for every issue.
    pub fn from_credential(credential: &str) -> Result<Self, CredentialError> {
        #[derive(Deserialize)]
        struct Credential {
            evidence: Value,
        }
        let credential: Credential = serde_json::from_str(credential).map_err(|e| CredentialError(e.to_string()))?;
        Self::from_evidence(first(&credential.evidence))
    }

    /// The same, from a credential already parsed.
    pub fn from_document(credential: &Value) -> Result<Self, CredentialError> {
        Self::from_evidence(first_evidence(credential))
    }

    fn from_evidence(evidence: Option<&Value>) -> Result<Self, CredentialError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Evidence {
            certificate_id: String,
            dose: i64,
            total_doses: i64,
            vaccine: String,
            manufacturer: String,
            batch: String,
            date: String,
            facility: Facility,
        }
        #[derive(Deserialize)]
        struct Facility {
            name: String,
        }
        let bad = |e: &dyn fmt::Display| CredentialError(e.to_string());
        let first = evidence.ok_or_else(|| CredentialError("evidence is empty".into()))?;
        let evidence = Evidence::deserialize(first).map_err(|e| bad(&e))?;
        Ok(Self {
            certificate_id: CertificateId::parse("evidence.certificateId", &evidence.certificate_id)
                .map_err(|e| bad(&e))?,
            dose: Dose::new(evidence.dose, evidence.total_doses).map_err(|e| bad(&e))?,
            vaccine: evidence.vaccine,
            manufacturer: evidence.manufacturer,
            batch: evidence.batch,
            date: IsoDate::parse("evidence.date", &evidence.date).map_err(|e| bad(&e))?,
            facility: evidence.facility.name,
        })
    }

    fn to_json(&self, profile: &IssuerProfile) -> Value {
        json!({
            "id": profile.evidence_id(&self.certificate_id),
            "certificateId": self.certificate_id.as_str(),
            "dose": self.dose.number(),
            "totalDoses": self.dose.of(),
            "vaccine": self.vaccine,
            "manufacturer": self.manufacturer,
            "batch": self.batch,
            "date": self.date.to_string(),
            "facility": {"name": self.facility},
        })
    }
}

/// A credential's first `evidence`: ssi writes a one-element array as the element itself.
pub fn first_evidence(credential: &Value) -> Option<&Value> {
    first(&credential["evidence"])
}

fn first(evidence: &Value) -> Option<&Value> {
    match evidence {
        Value::Array(items) => items.first(),
        Value::Null => None,
        one => Some(one),
    }
}

/// A credential that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("the credential is not one vaxtrail issued: {0}")]
pub struct CredentialError(String);

/// What one certificate says.
pub struct CredentialInput<'a> {
    pub profile: &'a IssuerProfile,
    pub certificate_id: &'a CertificateId,
    pub record: &'a RecordVaccination,
    /// Earlier doses of the same programme, as certified now.
    pub previous: &'a [CertifiedDose],
    pub status: StatusSlot,
    pub issued_at: DateTime<Utc>,
}

/// The unsigned credential. Every string is the validated text as it will be signed; doses are
/// JSON integers (xsd:integer); every evidence and sub-node that repeats has an `id`.
pub fn unsigned_credential(input: &CredentialInput<'_>) -> Value {
    let CredentialInput {
        profile,
        certificate_id,
        record,
        previous,
        status,
        issued_at,
    } = input;
    let recipient = &record.recipient;
    let vaccination = &record.vaccination;

    let mut subject = Map::new();
    subject.insert("type".into(), "Person".into());
    subject.insert("id".into(), recipient.identity.as_str().into());
    subject.insert("refId".into(), record.pre_enrollment_code.as_str().into());
    subject.insert("name".into(), recipient.name.as_str().into());
    subject.insert("gender".into(), recipient.gender.to_string().into());
    match recipient.birth {
        Birth::Date(dob) => subject.insert("dob".into(), dob.to_string().into()),
        Birth::Age(age) => subject.insert("age".into(), age.to_string().into()),
    };
    subject.insert("nationality".into(), recipient.nationality.as_str().into());
    subject.insert("address".into(), address(&recipient.address));

    let mut evidence = json!({
        "id": profile.evidence_id(certificate_id),
        "type": ["Vaccination"],
        "certificateId": certificate_id.as_str(),
        "batch": vaccination.batch.as_str(),
        "vaccine": vaccination.vaccine.name,
        "icd11Code": vaccination.vaccine.icd11_code,
        "prophylaxis": vaccination.vaccine.icd11_term,
        "manufacturer": vaccination.manufacturer.as_str(),
        "date": vaccination.date.to_string(),
        "effectiveStart": vaccination.effective_start.to_string(),
        "effectiveUntil": vaccination.effective_until.to_string(),
        "dose": vaccination.dose.number(),
        "totalDoses": vaccination.dose.of(),
        "verifier": {"name": record.vaccinator.as_str()},
        "facility": {"name": record.facility.name.as_str(), "address": address(&record.facility.address)},
    });
    if !previous.is_empty() {
        evidence["previousDoses"] = previous.iter().map(|dose| dose.to_json(profile)).collect();
    }

    let list_url = profile.status_list_url(status.list);
    let issued = issued_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    if status.is_bitstring() {
        // VC 2.0: the v2 context (which defines DataIntegrityProof), `validFrom`, and a Bitstring
        // Status List entry. No `validUntil`: the record of a vaccination does not expire (how
        // long a dose counts is the verifier's rule, and `effectiveUntil` says what the programme
        // holds).
        return json!({
            "@context": [CREDENTIALS_V2, VACCINATION_V2],
            "type": ["VerifiableCredential", "ProofOfVaccinationCredential"],
            "issuer": profile.issuer,
            "validFrom": issued,
            "credentialSubject": subject,
            "evidence": [evidence],
            "nonTransferable": true,
            "credentialStatus": {
                "id": format!("{list_url}#{}", status.index),
                "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation",
                "statusListIndex": status.index.to_string(),
                "statusListCredential": list_url,
            },
        });
    }
    json!({
        "@context": [CREDENTIALS_V1, VACCINATION_V1, DATA_INTEGRITY_V2],
        "type": ["VerifiableCredential", "ProofOfVaccinationCredential"],
        "issuer": profile.issuer,
        "issuanceDate": issued,
        "credentialSubject": subject,
        "evidence": [evidence],
        "nonTransferable": true,
        "credentialStatus": {
            "id": format!("{list_url}#{}", status.index),
            "type": "StatusList2021Entry",
            "statusPurpose": "revocation",
            "statusListIndex": status.index.to_string(),
            "statusListCredential": list_url,
        },
    })
}

fn address(address: &Address) -> Value {
    let mut out = Map::new();
    out.insert("streetAddress".into(), address.line1.as_str().into());
    if let Some(line2) = &address.line2 {
        out.insert("streetAddress2".into(), line2.as_str().into());
    }
    out.insert("district".into(), address.district.as_str().into());
    out.insert("addressRegion".into(), address.state.as_str().into());
    out.insert("addressCountry".into(), address.country.as_str().into());
    out.insert("postalCode".into(), address.pincode.as_str().into());
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{fixtures::record, ids::EventId};

    fn profile() -> IssuerProfile {
        IssuerProfile {
            issuer: "did:web:certificates.example.gov".into(),
            base_url: "https://certificates.example.gov".into(),
        }
    }

    fn build(previous: &[CertifiedDose]) -> (CertificateId, RecordVaccination, Value) {
        let id = CertificateId::for_event(&crate::ids::IdKey::development(), EventId::derive("test", "e2"));
        let record = record(2, "B2");
        let credential = unsigned_credential(&CredentialInput {
            profile: &profile(),
            certificate_id: &id,
            record: &record,
            previous,
            status: StatusSlot { list: 3, index: 17 },
            issued_at: Utc.with_ymd_and_hms(2021, 6, 1, 10, 0, 0).unwrap(),
        });
        (id, record, credential)
    }

    #[test]
    fn the_credential_has_divocs_shape_with_vaxtrails_context() {
        let (id, _, credential) = build(&[]);
        assert_eq!(credential["@context"][1], VACCINATION_V1);
        assert_eq!(credential["type"][1], "ProofOfVaccinationCredential");
        assert_eq!(
            credential["credentialSubject"]["id"],
            "did:in.gov.uidai.aadhaar:2342343334"
        );
        assert_eq!(credential["credentialSubject"]["dob"], "1994-11-30");
        let evidence = &credential["evidence"][0];
        assert_eq!(evidence["id"], format!("https://certificates.example.gov/vaccine/{id}"));
        // DIVOC's sample gives 2020-12-02T19:21:18.646Z: 3 December in Kolkata.
        assert_eq!(evidence["date"], "2020-12-03");
        assert_eq!(
            (evidence["dose"].as_u64(), evidence["totalDoses"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(evidence["facility"]["address"]["addressCountry"], "IND");
        assert_eq!(evidence["prophylaxis"], "COVID-19 vaccine, inactivated virus");
        assert_eq!(credential["credentialStatus"]["statusListIndex"], "17");
        assert_eq!(
            credential["credentialStatus"]["statusListCredential"],
            "https://certificates.example.gov/v1/status-lists/3"
        );
        assert_eq!(credential["issuanceDate"], "2021-06-01T10:00:00Z");
    }

    #[test]
    fn previous_doses_are_listed_and_a_credential_reads_back_as_its_dose() {
        let first_id = CertificateId::for_event(&crate::ids::IdKey::development(), EventId::derive("test", "e1"));
        let first = CertifiedDose::of(&first_id, &record(1, "B1"));
        let (id, record, credential) = build(std::slice::from_ref(&first));
        assert_eq!(credential["evidence"][0]["previousDoses"][0]["batch"], "B1");
        assert_eq!(
            credential["evidence"][0]["previousDoses"][0]["certificateId"],
            first_id.as_str()
        );

        let read = CertifiedDose::from_credential(&credential.to_string()).unwrap();
        assert_eq!(read, CertifiedDose::of(&id, &record));
        // ssi prints a one-element evidence array as the object itself.
        let mut single = credential.clone();
        single["evidence"] = credential["evidence"][0].clone();
        assert_eq!(CertifiedDose::from_credential(&single.to_string()).unwrap(), read);
    }

    #[test]
    fn fingerprints_tell_records_apart() {
        assert_eq!(Fingerprint::of(&record(1, "B1")), Fingerprint::of(&record(1, "B1")));
        assert_ne!(Fingerprint::of(&record(1, "B1")), Fingerprint::of(&record(1, "B2")));
    }
}
