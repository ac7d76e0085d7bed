//! The compiled path can never drift from the standard: on generated credentials (every optional
//! field present or absent, Devanagari, combining marks and other scripts, quotes and
//! backslashes, equal values in different fields, 0..4 previous doses, long strings), its
//! canonical N-Quads equal those of ssi's full JSON-LD path, its signed text and proof value equal
//! ssi's byte for byte, and its verdicts on signed and tampered credentials equal ssi's.
//! `VAXTRAIL_COMPILED_CASES` sets the number of cases (default 1,500 canonical comparisons, a
//! third of them also signed and verified both ways).

use std::sync::{Arc, LazyLock};

use chrono::{TimeZone, Utc};
use credentials::{
    CredentialSigner, CredentialVerifier, IssuerKey, Keyring, Verdict,
    compiled::{Compiled, canonical, full_quads},
    contexts, keys,
};
use domain::{
    commands::{ParseContext, RecordVaccination},
    credential::{CertifiedDose, CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId, IdKey},
    vaccine::VaccineCatalog,
    values::CountryCode,
};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::{Value, json};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});
static COMPILED: LazyLock<Arc<Compiled>> =
    LazyLock::new(|| Arc::new(RUNTIME.block_on(Compiled::learn()).expect("the shape is learned")));
static CATALOG: LazyLock<VaccineCatalog> = LazyLock::new(VaccineCatalog::divoc_default);
static SIGNER: LazyLock<CredentialSigner> = LazyLock::new(|| {
    let keyring = Keyring::new(
        "did:web:certificates.test",
        vec![IssuerKey::from_pem("key-1", &keys::generate_pem()).unwrap()],
        None,
    )
    .unwrap();
    CredentialSigner::new(keyring).with_compiled(COMPILED.clone())
});

fn cases() -> u32 {
    std::env::var("VAXTRAIL_COMPILED_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

/// Text the command API accepts, from several scripts and character classes at once.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[A-Za-z0-9 .,'-]{1,12}",
        "[\u{0900}-\u{097F}]{1,8}",                  // Devanagari
        "[a-z][\u{0300}-\u{036F}]{1,3}",             // combining marks
        "[\u{0600}-\u{06FF}\u{0B80}-\u{0BFF}]{1,6}", // Arabic, Tamil
        "[\u{4E00}-\u{4E60}\u{AC00}-\u{AC40}]{1,4}", // CJK, Hangul
        "[\"\\\\<>{}|^`@#%&*+=~]{1,3}",              // quotes, backslashes, IRI-unsafe
        "[\u{1F300}-\u{1F330}\u{FFFD}\u{2028}\u{00A0}]{1,2}",
        "[A-Z]{40,200}", // long
    ];
    proptest::collection::vec(piece, 1..4)
        .prop_map(|parts| parts.concat())
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

/// A pool shared by several fields, so equal values land in different fields.
fn shared_or(own: impl Strategy<Value = String>, pool: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![3 => own, 1 => proptest::sample::select(pool)]
}

fn date() -> impl Strategy<Value = String> {
    (2015i32..2024, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

fn address(pool: Vec<String>) -> impl Strategy<Value = Value> {
    (
        shared_or(text(), pool.clone()),
        proptest::option::of(shared_or(text(), pool.clone())),
        shared_or(text(), pool.clone()),
        shared_or(text(), pool),
        "[1-9][0-9]{5}",
    )
        .prop_map(|(line1, line2, district, state, pincode)| {
            let mut address = json!({
                "addressLine1": line1, "district": district, "state": state, "pincode": pincode,
            });
            if let Some(line2) = line2 {
                address["addressLine2"] = json!(line2);
            }
            address
        })
}

/// A DIVOC certify request and how many earlier doses the certificate lists.
fn request() -> impl Strategy<Value = (Value, usize)> {
    let pool = vec!["Same Value".to_owned(), "समान".to_owned(), "1".to_owned()];
    let vaccines: Vec<String> = CATALOG.vaccines().map(|v| v.name.clone()).collect();
    (
        (
            shared_or(text(), pool.clone()),
            proptest::sample::select(vec!["Male", "Female", "Other"]),
            prop_oneof![
                date().prop_map(|d| json!({"dob": d})),
                (0u32..120).prop_map(|a| json!({"age": a}))
            ],
            shared_or(text(), pool.clone()),
            prop_oneof![
                "did:in\\.gov\\.uidai\\.aadhaar:[0-9]{12}",
                "did:example:[a-z0-9.\\-_]{1,20}",
                "urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}",
                "did:example:[\u{0900}-\u{097F}]{1,6}",
            ],
            address(pool.clone()),
            "[0-9A-Za-z]{1,20}",
        ),
        (
            proptest::sample::select(vaccines),
            shared_or(text(), pool.clone()),
            shared_or(text(), pool.clone()),
            date(),
            (1u8..6, 0u8..4),
            shared_or(text(), pool.clone()),
            shared_or(text(), pool.clone()),
            address(pool),
        ),
    )
        .prop_map(|(person, shot)| {
            let (name, gender, birth, nationality, identity, home, code) = person;
            let (vaccine, batch, manufacturer, date, (total, extra), vaccinator, facility, place) = shot;
            let dose = total.saturating_sub(extra).max(1);
            let mut recipient = json!({
                "name": name, "gender": gender, "nationality": nationality, "identity": identity,
                "contact": ["tel:9000000001"], "address": home,
            });
            recipient
                .as_object_mut()
                .unwrap()
                .extend(birth.as_object().unwrap().clone());
            let request = json!({
                "preEnrollmentCode": code,
                "programId": "covid-19",
                "recipient": recipient,
                "vaccination": {
                    "name": vaccine, "batch": batch, "manufacturer": manufacturer,
                    "date": format!("{date}T10:15:00+05:30"), "dose": dose, "totalDoses": total,
                    "effectiveStart": date, "effectiveUntil": "2030-01-01",
                },
                "vaccinator": {"name": vaccinator},
                "facility": {"name": facility, "address": place},
            });
            (request, usize::from(dose - 1))
        })
}

/// The unsigned credential for a generated request (None when the domain refuses the request).
fn credential(request: &Value, earlier: usize, vc2: bool) -> Option<Value> {
    let context = ParseContext {
        catalog: &CATALOG,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("country", "IND").unwrap(),
        today: chrono::NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
    };
    let record = RecordVaccination::parse(request, &context).ok()?;
    let profile = IssuerProfile {
        issuer: "did:web:certificates.test".into(),
        base_url: "https://certificates.test".into(),
    };
    let id = |n: usize| CertificateId::for_event(&IdKey::development(), EventId::derive("gen", &n.to_string()));
    let previous: Vec<CertifiedDose> = (0..earlier.min(4))
        .map(|n| CertifiedDose::of(&id(n), &record))
        .collect();
    Some(unsigned_credential(&CredentialInput {
        profile: &profile,
        certificate_id: &id(9),
        record: &record,
        previous: &previous,
        // A data model 1.1 credential in a StatusList2021 list, or a VC 2.0 one in a Bitstring
        // Status List.
        status: StatusSlot {
            list: if vc2 { 3001 } else { 1 },
            index: 77,
        },
        issued_at: Utc.with_ymd_and_hms(2024, 5, 1, 5, 0, 0).unwrap(),
    }))
}

fn check(credential: &Value, sign_too: bool) -> Result<bool, TestCaseError> {
    let Some(compiled) = COMPILED.canonical_document_fast(credential.as_object().unwrap()) else {
        return Ok(false);
    };
    let full = RUNTIME
        .block_on(full_quads(credential, &contexts::loader()))
        .map_err(|e| TestCaseError::fail(format!("the full path refuses what the compiled path took: {e}")))?;
    prop_assert_eq!(&compiled, &canonical(&full));
    if sign_too {
        let created = Utc.with_ymd_and_hms(2024, 5, 1, 6, 0, 0).unwrap();
        let key = SIGNER.keyring().active().signing_key().unwrap();
        let method = SIGNER.keyring().active_method();
        let fast = COMPILED.sign(credential, key, &method, created).expect("of the shape");
        let slow = RUNTIME.block_on(SIGNER.sign_full(credential.clone(), created)).unwrap();
        prop_assert_eq!(&fast, &slow.text);
        verdicts_agree(&fast)?;
    }
    Ok(true)
}

/// The compiled and the full verifier agree on a signed credential and on tampered copies.
fn verdicts_agree(signed: &str) -> Result<(), TestCaseError> {
    let verifier = CredentialVerifier::new(SIGNER.keyring()).with_compiled(COMPILED.clone());
    let valid = |text: &str| matches!(RUNTIME.block_on(verifier.verify(text)), Verdict::Valid { .. });
    let full = |text: &str| matches!(RUNTIME.block_on(verifier.verify_full(text)), Verdict::Valid { .. });
    prop_assert!(valid(signed) && full(signed), "a fresh credential verifies both ways");
    let document: Value = serde_json::from_str(signed).unwrap();
    let key = SIGNER.keyring().active().public;
    prop_assert_eq!(
        COMPILED.verify(document.as_object().unwrap(), &key),
        Some(true),
        "the compiled path verifies it"
    );
    let mut document: Value = serde_json::from_str(signed).unwrap();
    let name = document["credentialSubject"]["name"].as_str().unwrap().to_owned();
    document["credentialSubject"]["name"] = json!(format!("{name}x"));
    let tampered = document.to_string();
    prop_assert!(!valid(&tampered) && !full(&tampered), "a changed name fails both ways");
    Ok(())
}

#[test]
fn generated_credentials_canonicalize_sign_and_verify_as_the_full_path_does() {
    let cases = cases();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let taken = std::cell::Cell::new(0u32);
    let tried = std::cell::Cell::new(0u32);
    let versions = std::cell::Cell::new(0u8);
    runner
        .run(
            &(request(), 0u32..3, any::<bool>()),
            |((request, earlier), which, vc2)| {
                let Some(credential) = credential(&request, earlier, vc2) else {
                    return Ok(());
                };
                tried.set(tried.get() + 1);
                if check(&credential, which == 0)? {
                    taken.set(taken.get() + 1);
                    versions.set(versions.get() | if vc2 { 2 } else { 1 });
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "{} of {} generated credentials took the compiled path",
        taken.get(),
        tried.get()
    );
    assert!(
        tried.get() >= cases / 2,
        "most generated requests are valid: {}",
        tried.get()
    );
    assert_eq!(
        taken.get(),
        tried.get(),
        "every credential the domain builds is of the compiled shape"
    );
    assert_eq!(
        versions.get(),
        3,
        "both data model 1.1 and VC 2.0 credentials were generated"
    );
}

#[test]
fn a_vc2_credential_is_signed_with_validfrom_and_a_bitstring_entry_and_checks_its_dates() {
    let credential = credentials::compiled::probe_credential(true);
    assert_eq!(credential["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(credential["credentialStatus"]["type"], "BitstringStatusListEntry");
    assert!(credential.get("issuanceDate").is_none() && credential["validFrom"].is_string());
    let created = Utc.with_ymd_and_hms(2024, 5, 1, 6, 0, 0).unwrap();
    let key = SIGNER.keyring().active().signing_key().unwrap();
    let method = SIGNER.keyring().active_method();
    let fast = COMPILED.sign(&credential, key, &method, created).expect("of the shape");
    let slow = RUNTIME.block_on(SIGNER.sign_full(credential.clone(), created)).unwrap();
    assert_eq!(fast, slow.text);
    let public = SIGNER.keyring().active().public;
    let verifier = CredentialVerifier::new(SIGNER.keyring()).with_compiled(COMPILED.clone());
    // Not valid before `validFrom`, nor after a `validUntil`, on either path.
    for (name, value) in [
        ("validFrom", "2999-01-01T00:00:00Z"),
        ("validUntil", "2020-01-01T00:00:00Z"),
    ] {
        let mut dated = credential.clone();
        dated[name] = json!(value);
        let signed = RUNTIME.block_on(SIGNER.sign_full(dated, created)).unwrap().text;
        let document: Value = serde_json::from_str(&signed).unwrap();
        // (A `validUntil` is outside the learned shape: the full path decides.)
        assert_ne!(
            COMPILED.verify(document.as_object().unwrap(), &public),
            Some(true),
            "{name}"
        );
        assert!(
            matches!(RUNTIME.block_on(verifier.verify(&signed)), Verdict::Invalid { .. }),
            "{name}"
        );
        assert!(
            matches!(RUNTIME.block_on(verifier.verify_full(&signed)), Verdict::Invalid { .. }),
            "{name}"
        );
    }
}

#[test]
fn a_credential_outside_the_shape_is_left_to_the_full_path() {
    let mut credential = credentials::compiled::probe_credential(false);
    credential["credentialSubject"]["nickname"] = json!("not in the shape");
    assert!(COMPILED.canonical_document(credential.as_object().unwrap()).is_none());
    // Two identical blank nodes under one parent share a first-degree hash: RDFC-1.0's N-Degree
    // step decides, through ssi's implementation, and the answer is still the full path's.
    let mut twins = credentials::compiled::probe_credential(false);
    twins["evidence"][0]["verifier"] = json!([{"name": "Twin"}, {"name": "Twin"}]);
    let twins = twins.as_object().unwrap();
    assert!(COMPILED.canonical_document_fast(twins).is_none());
    let expected = canonical(
        &RUNTIME
            .block_on(full_quads(&Value::Object(twins.clone()), &contexts::loader()))
            .unwrap(),
    );
    assert_eq!(COMPILED.canonical_document(twins), Some(expected));

    let mut relative = credentials::compiled::probe_credential(false);
    relative["issuer"] = json!("xsd:string");
    assert!(
        COMPILED.canonical_document(relative.as_object().unwrap()).is_none(),
        "a compact IRI is the full path's to expand"
    );
}
