use chrono::NaiveDate;
use domain::{
    commands::{ParseContext, RecordVaccination},
    ids::{CertificateId, EventId, IdKey},
    vaccine::VaccineCatalog,
    values::CountryCode,
};
use serde_json::json;

use super::*;

fn record(name: &str, vaccine: &str, dob: Option<&str>) -> RecordVaccination {
    let catalog = VaccineCatalog::divoc_default();
    let address =
        json!({"addressLine1": "1 Main Road", "district": "Pune", "state": "Maharashtra", "pincode": "411001"});
    let mut recipient = json!({
        "name": name, "gender": "Female", "nationality": "Indian",
        "identity": "did:in.gov.uidai.aadhaar:000000000001", "contact": ["tel:9000000001"], "address": address,
    });
    match dob {
        Some(dob) => recipient["dob"] = json!(dob),
        None => recipient["age"] = json!("41"),
    }
    let request = json!({
        "preEnrollmentCode": "1000000001", "programId": "covid-19", "recipient": recipient,
        "vaccination": {"name": vaccine, "batch": "B1", "manufacturer": "Maker", "date": "2021-05-01",
            "dose": 2, "totalDoses": 2, "effectiveStart": "2021-05-01", "effectiveUntil": "2022-05-01"},
        "vaccinator": {"name": "V"}, "facility": {"name": "PHC", "address": address},
    });
    let context = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("country", "IND").expect("a code"),
        today: NaiveDate::from_ymd_opt(2021, 6, 1).expect("a date"),
    };
    RecordVaccination::parse(&request, &context).expect("valid")
}

fn certificate_id() -> CertificateId {
    CertificateId::for_event(&IdKey::development(), EventId::derive("hcert-test", "1"))
}

fn signer() -> DocumentSigner {
    let pem = dsc::generate("IN", "Ministry of Health", "vaxtrail test DSC", 30).expect("generated");
    DocumentSigner::from_pem("dsc-test", &pem).expect("read back")
}

const ISSUER: Issuer<'static> = Issuer {
    name: "Ministry of Health and Family Welfare",
    country: "IN",
};

#[test]
fn an_issued_certificate_verifies_and_carries_the_dose() {
    let signer = signer();
    let id = certificate_id();
    let payload = payload::payload(
        &record("Asha Verma", "Covishield", Some("1980-02-03")),
        &id,
        &ISSUER,
        &VaccineMapping::bundled(),
    )
    .expect("mapped");
    let now = Utc::now();
    let hcert = issue(&payload, "IN", &signer, now, DEFAULT_VALIDITY).expect("issued");
    assert!(hcert.text.starts_with("HC1:"));
    let trusted = DocumentSigners::trusting(vec![signer.clone()]);
    let verified = verify(&hcert.text, &trusted, now).expect("verifies");
    assert_eq!(verified.payload, payload);
    assert_eq!(verified.country, "IN");
    assert_eq!(verified.kid, hcert.kid);
    assert_eq!(verified.payload["v"][0]["mp"], "Covishield");
    assert_eq!(verified.payload["v"][0]["ma"], "ORG-100001981");
    assert_eq!(verified.payload["v"][0]["dn"], 2);
    assert_eq!(verified.payload["v"][0]["co"], "IN");
    assert_eq!(verified.payload["nam"]["fnt"], "ASHA<VERMA");
    assert_eq!(verified.payload["dob"], "1980-02-03");
    assert_eq!(
        certificate_id_of_uvci(verified.certificate_id.as_deref().expect("a ci")),
        Some(id.as_str())
    );
    // The kid is the first 8 bytes of the certificate's SHA-256.
    assert_eq!(signer.kid.as_slice(), &Sha256::digest(&signer.der)[..8]);
    // exp is within the signer's validity.
    assert!(hcert.expires_at <= signer.not_after);
    assert!(hcert.expires_at < now + Duration::days(31));
}

#[test]
fn tampering_another_signer_and_expiry_are_refused() {
    let signer = signer();
    let payload = payload::payload(
        &record("Asha Verma", "Covaxin", Some("1980-02-03")),
        &certificate_id(),
        &ISSUER,
        &VaccineMapping::bundled(),
    )
    .expect("mapped");
    let now = Utc::now();
    let hcert = issue(&payload, "IN", &signer, now, DEFAULT_VALIDITY).expect("issued");
    let trusted = DocumentSigners::trusting(vec![signer.clone()]);

    // Another payload under the same protected header and signature.
    let mut sign1 = open(&hcert.text).expect("opens");
    let mut forged = payload.clone();
    forged["v"][0]["dn"] = json!(3);
    let mut cwt = Vec::new();
    let claims: Cbor = ciborium::from_reader(sign1.payload.as_deref().expect("payload")).expect("cbor");
    let mut claims = claims.into_map().expect("a map");
    for (k, v) in claims.iter_mut() {
        if k.as_integer().is_some_and(|i| i128::from(i) == -260) {
            *v = Cbor::Map(vec![(Cbor::Integer(1.into()), to_cbor(&forged))]);
        }
    }
    ciborium::into_writer(&Cbor::Map(claims), &mut cwt).expect("cbor");
    sign1.payload = Some(cwt);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&sign1.to_tagged_vec().expect("cose")).expect("memory");
    let tampered = format!("HC1:{}", base45::encode(zlib.finish().expect("memory")));
    assert!(matches!(
        verify(&tampered, &trusted, now),
        Err(HcertError::BadSignature(_))
    ));

    let stranger = DocumentSigners::trusting(vec![self::signer()]);
    assert!(matches!(
        verify(&hcert.text, &stranger, now),
        Err(HcertError::UnknownKid(_))
    ));
    assert!(matches!(
        verify(&hcert.text, &trusted, hcert.expires_at),
        Err(HcertError::Expired(_))
    ));
    for junk in ["HC1:", "HC1:%%%%", "shc:/123", "HC1:6BF"] {
        assert!(
            matches!(verify(junk, &trusted, now), Err(HcertError::Malformed(_))),
            "{junk}"
        );
    }
}

#[test]
fn a_zlib_bomb_is_refused_before_it_inflates() {
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&vec![0u8; 1 << 20]).expect("memory");
    let bomb = format!("HC1:{}", base45::encode(zlib.finish().expect("memory")));
    assert!(bomb.len() < MAX_TEXT);
    let trusted = DocumentSigners::trusting(vec![]);
    let error = verify(&bomb, &trusted, Utc::now()).expect_err("refused");
    assert!(error.to_string().contains("inflates past"), "{error}");
}

#[test]
fn unmapped_vaccines_are_refused_by_name() {
    let error = payload::payload(
        &record("Asha Verma", "ZyCoV-D", Some("1980-02-03")),
        &certificate_id(),
        &ISSUER,
        &VaccineMapping::bundled(),
    )
    .expect_err("ZyCoV-D is in no EU value set");
    assert!(error.to_string().to_lowercase().contains("\"zycov-d\""), "{error}");
    // Every mapped name is a vaccine of the bundled master list.
    let catalog = VaccineCatalog::divoc_default();
    let names: Vec<String> = catalog.vaccines().map(|v| v.name.to_lowercase()).collect();
    let mapping: serde_json::Value = serde_json::from_str(payload::BUNDLED_MAPPING).expect("json");
    for name in mapping["vaccines"].as_object().expect("an object").keys() {
        assert!(names.contains(name), "{name} is not in the master list");
    }
    assert!(VaccineMapping::parse(r#"{"vaccines": {"a": {"vp": "", "mp": "x", "ma": "y"}}}"#).is_err());
}

#[test]
fn names_are_standardised_as_icao_writes_them() {
    assert_eq!(payload::icao_name("Jean-Luc  d'Arcy"), "JEAN<LUC<D<ARCY");
    assert_eq!(payload::icao_name("Müller Ñandú"), "MULLER<NANDU");
    let devanagari = payload::icao_name("आशा वर्मा");
    assert!(!devanagari.is_empty() && devanagari.chars().all(|c| c.is_ascii_uppercase() || c == '<'));
    assert!(payload::icao_name(&"a ".repeat(200)).len() <= 80);
    // An age, not a date: the date of birth is left empty as the schema allows.
    let p = payload::payload(
        &record("Asha Verma", "Covishield", None),
        &certificate_id(),
        &ISSUER,
        &VaccineMapping::bundled(),
    )
    .expect("mapped");
    assert_eq!(p["dob"], "");
}

#[test]
fn signers_load_from_a_directory_and_publish_certificates_only() {
    let dir = std::env::temp_dir().join(format!("vaxtrail-dsc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let first = dsc::generate("IN", "MoH", "DSC 1", 30).expect("generated");
    std::fs::write(dir.join("dsc-1.pem"), &first).expect("write");
    let loaded = DocumentSigners::load(&dir, None, true).expect("one signer");
    assert_eq!(loaded.active().expect("active").id, "dsc-1");
    // A second private key: the active one must be named.
    std::fs::write(
        dir.join("dsc-2.pem"),
        dsc::generate("IN", "MoH", "DSC 2", 30).expect("generated"),
    )
    .expect("write");
    assert!(matches!(
        DocumentSigners::load(&dir, None, true),
        Err(DscError::AmbiguousActive { .. })
    ));
    // Retire the first: its certificate alone stays, still trusted.
    let retired = DocumentSigner::from_pem("dsc-1", &first)
        .expect("read")
        .certificate_pem();
    std::fs::write(dir.join("dsc-1.pem"), &retired).expect("write");
    let loaded = DocumentSigners::load(&dir, None, true).expect("dsc-2 signs");
    assert_eq!(loaded.active().expect("active").id, "dsc-2");
    assert!(matches!(
        DocumentSigners::load(&dir, Some("dsc-1"), true),
        Err(DscError::ActiveWithoutKey { .. })
    ));
    let list = loaded.trust_list().to_string();
    assert_eq!(loaded.all().len(), 2);
    assert!(
        !list.contains("PRIVATE") && list.contains("\"country\":\"IN\""),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
