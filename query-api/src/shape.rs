//! The shape of a credential vaxtrail issues, checked before any canonicalization.
//!
//! Canonicalizing JSON-LD (RDFC-1.0) costs little on the graphs vaxtrail signs, but a caller can
//! post "poison" graphs whose blank nodes all reference each other, and the canonicalizer then
//! tries every permutation (8 such nodes took 6.8 s of CPU; 12 grew the process to 8.9 GB). So a
//! credential posted for verification must first be exactly the shape vaxtrail writes: every
//! object has only the properties vaxtrail's context places there (serde's `deny_unknown_fields`
//! on a typed model of the credential), no node is named by a blank-node identifier (`_:`), no
//! string is longer than [`MAX_STRING`], and the one array that may grow (`previousDoses`) holds
//! at most [`MAX_PREVIOUS_DOSES`]. What passes is a tree of a bounded number of nodes, each with
//! a fixed position, whose canonical form takes microseconds. Whatever fails is answered 422,
//! naming the field, before any JSON-LD processing.

use serde::Deserialize;
use serde_json::Value;

/// The longest string accepted anywhere in a credential.
pub const MAX_STRING: usize = 1024;
/// At most this many earlier doses (a schedule has at most 10).
pub const MAX_PREVIOUS_DOSES: usize = 10;

/// Where the shape is broken.
#[derive(Debug, PartialEq, Eq)]
pub struct ShapeError {
    pub field: String,
    pub rule: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn items(&self) -> Vec<&T> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many.iter().collect(),
        }
    }
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Credential {
    #[serde(rename = "@context")]
    _context: Vec<String>,
    #[serde(rename = "type")]
    _type: OneOrMany<String>,
    issuer: String,
    /// A data model 1.1 credential's; a VC 2.0 one has `validFrom` instead (exactly one).
    issuance_date: Option<String>,
    valid_from: Option<String>,
    credential_subject: Subject,
    evidence: OneOrMany<Evidence>,
    non_transferable: bool,
    credential_status: Status,
    proof: Proof,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Subject {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    ref_id: String,
    name: String,
    gender: String,
    dob: Option<String>,
    age: Option<Scalar>,
    nationality: String,
    address: Address,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Address {
    street_address: String,
    street_address2: Option<String>,
    district: String,
    address_region: String,
    address_country: String,
    postal_code: String,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Evidence {
    id: String,
    #[serde(rename = "type")]
    kind: OneOrMany<String>,
    certificate_id: String,
    batch: String,
    vaccine: String,
    icd11_code: String,
    prophylaxis: String,
    manufacturer: String,
    date: String,
    effective_start: String,
    effective_until: String,
    dose: u8,
    total_doses: u8,
    verifier: Named,
    facility: Facility,
    previous_doses: Option<OneOrMany<PreviousDose>>,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Facility {
    name: String,
    address: Address,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PreviousDose {
    id: String,
    certificate_id: String,
    dose: u8,
    total_doses: u8,
    vaccine: String,
    manufacturer: String,
    batch: String,
    date: String,
    facility: Named,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Status {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    status_purpose: String,
    status_list_index: Scalar,
    status_list_credential: String,
}

// Fields are there to be checked (present, of their type), not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Proof {
    #[serde(rename = "type")]
    kind: String,
    cryptosuite: String,
    created: String,
    verification_method: String,
    proof_purpose: String,
    proof_value: String,
}

/// Checks a credential's shape. The context and type lists are compared by the caller (a
/// mismatch there is an answer, "invalid", not a malformed request).
pub fn check(document: &Value) -> Result<(), ShapeError> {
    strings_bounded(document, "")?;
    let credential = Credential::deserialize(document).map_err(|e| ShapeError {
        field: field_of(&e.to_string()),
        rule: format!("is not the shape of a vaxtrail credential: {e}"),
    })?;
    if credential.issuance_date.is_some() == credential.valid_from.is_some() {
        return Err(ShapeError {
            field: "validFrom".into(),
            rule: "a credential has validFrom (VC 2.0) or issuanceDate (data model 1.1), one of them".into(),
        });
    }
    let subject = &credential.credential_subject;
    let evidence = credential.evidence.items();
    if evidence.len() != 1 {
        return Err(ShapeError {
            field: "evidence".into(),
            rule: "must hold exactly one vaccination".into(),
        });
    }
    let previous = evidence[0]
        .previous_doses
        .as_ref()
        .map(OneOrMany::items)
        .unwrap_or_default();
    if previous.len() > MAX_PREVIOUS_DOSES {
        return Err(ShapeError {
            field: "evidence.previousDoses".into(),
            rule: format!("must list at most {MAX_PREVIOUS_DOSES} doses"),
        });
    }
    let mut ids = vec![
        ("credentialSubject.id", subject.id.as_str()),
        ("evidence.id", evidence[0].id.as_str()),
        ("credentialStatus.id", credential.credential_status.id.as_str()),
        ("issuer", credential.issuer.as_str()),
        (
            "proof.verificationMethod",
            credential.proof.verification_method.as_str(),
        ),
        (
            "credentialStatus.statusListCredential",
            credential.credential_status.status_list_credential.as_str(),
        ),
    ];
    ids.extend(previous.iter().map(|p| ("evidence.previousDoses.id", p.id.as_str())));
    for (field, id) in ids {
        if id.starts_with("_:") || !id.contains(':') {
            return Err(ShapeError {
                field: field.into(),
                rule: "must be an absolute IRI, not a blank-node identifier".into(),
            });
        }
    }
    Ok(())
}

/// The field a serde message names (`unknown field `x``), else the document.
fn field_of(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
        .unwrap_or_default()
        .to_owned()
}

/// Every string (keys too) at most [`MAX_STRING`] characters.
fn strings_bounded(value: &Value, path: &str) -> Result<(), ShapeError> {
    let long = |field: &str| ShapeError {
        field: field.to_owned(),
        rule: format!("must be at most {MAX_STRING} characters"),
    };
    match value {
        Value::String(s) if s.len() > MAX_STRING => Err(long(path)),
        Value::Array(items) => items.iter().try_for_each(|item| strings_bounded(item, path)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.len() > MAX_STRING {
                return Err(long(path));
            }
            strings_bounded(item, &field)
        }),
        _ => Ok(()),
    }
}
