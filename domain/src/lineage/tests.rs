//! Given the outcomes so far, when an event arrives, then these outcomes (or this refusal).

use super::*;
use crate::{
    fixtures::record,
    ids::EventId,
    values::{RecipientKey, RecipientKeySecret},
};

fn key() -> RecipientKey {
    let identity = crate::values::Identity::parse("i", "did:in.gov.uidai.aadhaar:2342343334").unwrap();
    RecipientKey::derive(&RecipientKeySecret::new("test"), &identity)
}

fn event(id: &str, payload: VaccinationPayload) -> VaccinationEvent {
    VaccinationEvent {
        event_id: EventId::derive("test", id),
        recipient_key: key(),
        payload,
    }
}

fn recorded(id: &str, dose: u8, batch: &str) -> VaccinationEvent {
    event(id, VaccinationPayload::VaccinationRecorded(record(dose, batch)))
}

fn corrected(id: &str, target: CorrectionTarget, dose: u8, batch: &str) -> VaccinationEvent {
    event(
        id,
        VaccinationPayload::VaccinationCorrected {
            target,
            corrected: record(dose, batch),
        },
    )
}

fn revoked(id: &str, certificate_id: &CertificateId) -> VaccinationEvent {
    let reason = Text::parse("reason", "issued in error").unwrap();
    event(
        id,
        VaccinationPayload::RevocationRequested {
            certificate_id: certificate_id.clone(),
            reason,
        },
    )
}

/// The lineage after deciding and applying each event in turn, as the signer does.
fn given(events: &[VaccinationEvent]) -> Lineage {
    events.iter().fold(Lineage::default(), |state, e| {
        outcomes(&state, e, &Policy::default(), slot())
            .iter()
            .fold(state, evolve)
    })
}

fn slot() -> StatusSlot {
    StatusSlot { list: 0, index: 7 }
}

fn certificate_of(id: &str) -> CertificateId {
    CertificateId::for_event(&crate::ids::IdKey::development(), EventId::derive("test", id))
}

fn programme() -> Text {
    Text::parse("p", "1234").unwrap()
}

#[test]
fn a_first_dose_is_issued_a_certificate_derived_from_its_event() {
    let state = given(&[]);
    let then = decide(&state, &recorded("e1", 1, "B1"), &Policy::default(), slot()).unwrap();
    assert_eq!(then.len(), 1);
    let CertificateOutcome::CertificateIssued {
        certificate_id,
        certified,
        supersedes,
        status,
        ..
    } = &then[0].outcome
    else {
        panic!("expected an issue, got {then:?}")
    };
    assert_eq!(certificate_id, &certificate_of("e1"));
    assert_eq!(
        (certified.dose.number(), &certified.certificate_id),
        (1, certificate_id)
    );
    assert_eq!(supersedes, &None);
    assert_eq!(status, &slot(), "the certificate takes the status bit it was given");
    assert_eq!(then[0].answers, EventId::derive("test", "e1"));
}

#[test]
fn a_redelivered_event_decides_nothing() {
    let first = recorded("e1", 1, "B1");
    let state = given(std::slice::from_ref(&first));
    assert_eq!(decide(&state, &first, &Policy::default(), slot()), Ok(vec![]));
}

#[test]
fn an_exact_duplicate_from_another_event_is_refused_naming_the_existing_certificate() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let then = decide(&state, &recorded("e2", 1, "B1"), &Policy::default(), slot());
    assert_eq!(
        then,
        Err(Rejection::DuplicateVaccination {
            certificate_id: certificate_of("e1")
        })
    );
}

#[test]
fn a_second_record_of_a_certified_dose_with_other_data_must_be_a_correction() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let then = decide(&state, &recorded("e2", 1, "B2"), &Policy::default(), slot()).unwrap_err();
    assert_eq!(then.rule(), "DoseAlreadyCertified");
}

#[test]
fn the_second_dose_gets_its_own_certificate() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let then = decide(&state, &recorded("e2", 2, "B1"), &Policy::default(), slot()).unwrap();
    assert!(
        matches!(&then[0].outcome, CertificateOutcome::CertificateIssued { certified, .. } if certified.dose.number() == 2)
    );
}

#[test]
fn a_correction_within_the_limit_supersedes_the_current_certificate() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let target = CorrectionTarget::Certificate(certificate_of("e1"));
    let then = decide(&state, &corrected("e2", target, 1, "B2"), &Policy::default(), slot()).unwrap();
    let outcomes: Vec<_> = then.iter().map(|e| e.outcome.clone()).collect();
    assert!(
        matches!(&outcomes[0], CertificateOutcome::CertificateIssued { certificate_id, supersedes: Some(old), .. }
        if certificate_id == &certificate_of("e2") && old == &certificate_of("e1"))
    );
    assert_eq!(
        outcomes[1],
        CertificateOutcome::CertificateSuperseded {
            certificate_id: certificate_of("e1"),
            superseded_by: certificate_of("e2"),
            update_count: 1
        }
    );
    let after = then.iter().fold(state, evolve);
    let dose = after.dose(&programme(), 1).unwrap();
    assert_eq!((&dose.current, dose.update_count), (&certificate_of("e2"), 1));
    assert_eq!(dose.certified.batch.as_str(), "B2");
}

#[test]
fn a_correction_may_name_the_dose_instead_of_the_certificate() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let target = CorrectionTarget::Dose {
        programme: programme(),
        dose: 1,
    };
    assert!(decide(&state, &corrected("e2", target, 1, "B2"), &Policy::default(), slot()).is_ok());
    let missing = CorrectionTarget::Dose {
        programme: programme(),
        dose: 2,
    };
    let then = decide(&state, &corrected("e3", missing, 2, "B2"), &Policy::default(), slot()).unwrap_err();
    assert_eq!(then.rule(), "NothingToCorrect");
}

#[test]
fn a_correction_beyond_the_update_limit_is_rejected_naming_the_limit() {
    let target = || CorrectionTarget::Dose {
        programme: programme(),
        dose: 1,
    };
    let state = given(&[recorded("e1", 1, "B1"), corrected("e2", target(), 1, "B2")]);
    let then = decide(&state, &corrected("e3", target(), 1, "B3"), &Policy::default(), slot());
    assert_eq!(then, Err(Rejection::UpdateLimitReached { limit: 1 }));
    assert!(then.unwrap_err().to_string().contains("1 time(s)"));
    // A programme allowing two corrections accepts it.
    assert!(
        decide(
            &state,
            &corrected("e3", target(), 1, "B3"),
            &Policy {
                update_limit: 2,
                ..Policy::default()
            },
            slot()
        )
        .is_ok()
    );
}

#[test]
fn the_update_limit_the_correction_carries_from_its_programme_wins_over_the_deployments() {
    let target = || CorrectionTarget::Dose {
        programme: programme(),
        dose: 1,
    };
    let state = given(&[recorded("e1", 1, "B1"), corrected("e2", target(), 1, "B2")]);
    let with_limit = |limit| {
        let mut event = corrected("e3", target(), 1, "B3");
        if let VaccinationPayload::VaccinationCorrected { corrected, .. } = &mut event.payload {
            corrected.rules = Some(crate::master::ProgrammeRules {
                total_doses: 2,
                update_limit: limit,
                time_zone: chrono_tz::UTC,
            });
        }
        event
    };
    let generous = Policy {
        update_limit: 5,
        ..Policy::default()
    };
    // The deployment allows five; the programme, when the correction was accepted, allowed one.
    assert_eq!(
        decide(&state, &with_limit(1), &generous, slot()),
        Err(Rejection::UpdateLimitReached { limit: 1 })
    );
    // The deployment allows one; the programme allowed three.
    assert!(decide(&state, &with_limit(3), &Policy::default(), slot()).is_ok());
}

#[test]
fn a_superseded_certificate_cannot_be_corrected_or_revoked() {
    let state = given(&[
        recorded("e1", 1, "B1"),
        corrected("e2", CorrectionTarget::Certificate(certificate_of("e1")), 1, "B2"),
    ]);
    let stale = CorrectionTarget::Certificate(certificate_of("e1"));
    let expected = Rejection::NotCurrentCertificate {
        certificate_id: certificate_of("e1"),
        current: certificate_of("e2"),
    };
    assert_eq!(
        decide(
            &state,
            &corrected("e3", stale, 1, "B3"),
            &Policy {
                update_limit: 5,
                ..Policy::default()
            },
            slot()
        ),
        Err(expected.clone())
    );
    assert_eq!(
        decide(
            &state,
            &revoked("e4", &certificate_of("e1")),
            &Policy::default(),
            slot()
        ),
        Err(expected)
    );
}

#[test]
fn a_correction_must_keep_the_programme_and_dose() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let target = CorrectionTarget::Certificate(certificate_of("e1"));
    let then = decide(&state, &corrected("e2", target, 2, "B1"), &Policy::default(), slot()).unwrap_err();
    assert_eq!(then.rule(), "CorrectionChangesDose");
}

#[test]
fn a_revocation_revokes_only_that_doses_current_certificate() {
    let state = given(&[recorded("e1", 1, "B1"), recorded("e2", 2, "B1")]);
    let then = decide(
        &state,
        &revoked("e3", &certificate_of("e1")),
        &Policy::default(),
        slot(),
    )
    .unwrap();
    assert!(
        matches!(&then[0].outcome, CertificateOutcome::CertificateRevoked { certificate_id, .. } if certificate_id == &certificate_of("e1"))
    );
    let after = then.iter().fold(state, evolve);
    assert!(after.dose(&programme(), 1).unwrap().revoked.is_some());
    assert!(
        after.dose(&programme(), 2).unwrap().revoked.is_none(),
        "the other dose is untouched"
    );
}

#[test]
fn a_revocation_names_the_status_bit_of_the_certificate_it_revokes() {
    let first = recorded("e1", 1, "B1");
    let issued = outcomes(
        &Lineage::default(),
        &first,
        &Policy::default(),
        StatusSlot { list: 2, index: 41 },
    );
    let state = issued.iter().fold(Lineage::default(), evolve);
    let then = decide(
        &state,
        &revoked("e2", &certificate_of("e1")),
        &Policy::default(),
        slot(),
    )
    .unwrap();
    assert!(
        matches!(&then[0].outcome, CertificateOutcome::CertificateRevoked { status, .. } if *status == StatusSlot { list: 2, index: 41 })
    );
}

#[test]
fn previous_doses_are_the_standing_earlier_doses_of_the_programme() {
    let state = given(&[recorded("e1", 1, "B1"), recorded("e2", 2, "B2")]);
    let listed: Vec<_> = state
        .previous_doses(&programme(), 3)
        .into_iter()
        .map(|d| d.batch)
        .collect();
    assert_eq!(listed, ["B1", "B2"]);
    assert!(state.previous_doses(&programme(), 1).is_empty());
    let revoked_first = given(&[
        recorded("e1", 1, "B1"),
        recorded("e2", 2, "B2"),
        revoked("e3", &certificate_of("e1")),
    ]);
    let listed: Vec<_> = revoked_first
        .previous_doses(&programme(), 3)
        .into_iter()
        .map(|d| d.batch)
        .collect();
    assert_eq!(listed, ["B2"], "a revoked dose is not listed");
}

#[test]
fn revoking_twice_or_an_unknown_certificate_is_refused() {
    let state = given(&[recorded("e1", 1, "B1"), revoked("e2", &certificate_of("e1"))]);
    let twice = decide(
        &state,
        &revoked("e3", &certificate_of("e1")),
        &Policy::default(),
        slot(),
    )
    .unwrap_err();
    assert_eq!(twice.rule(), "AlreadyRevoked");
    let unknown = decide(
        &state,
        &revoked("e4", &certificate_of("nope")),
        &Policy::default(),
        slot(),
    )
    .unwrap_err();
    assert_eq!(unknown.rule(), "UnknownCertificate");
}

#[test]
fn a_revoked_dose_can_be_certified_again() {
    let state = given(&[recorded("e1", 1, "B1"), revoked("e2", &certificate_of("e1"))]);
    let then = decide(&state, &recorded("e3", 1, "B1"), &Policy::default(), slot()).unwrap();
    assert!(
        matches!(&then[0].outcome, CertificateOutcome::CertificateIssued { certificate_id, supersedes: None, .. }
        if certificate_id == &certificate_of("e3"))
    );
    let after = then.iter().fold(state, evolve);
    let dose = after.dose(&programme(), 1).unwrap();
    assert_eq!((dose.revoked.as_ref(), dose.update_count), (None, 0));
}

#[test]
fn a_correction_of_a_revoked_certificate_is_rejected() {
    let state = given(&[recorded("e1", 1, "B1"), revoked("e2", &certificate_of("e1"))]);
    let target = CorrectionTarget::Certificate(certificate_of("e1"));
    let then = decide(&state, &corrected("e3", target, 1, "B2"), &Policy::default(), slot());
    assert_eq!(
        then,
        Err(Rejection::CertificateRevoked {
            certificate_id: certificate_of("e1")
        })
    );
}

#[test]
fn a_rejection_becomes_an_event_the_caller_can_look_up() {
    let state = given(&[recorded("e1", 1, "B1")]);
    let duplicate = recorded("e2", 1, "B1");
    let then = outcomes(&state, &duplicate, &Policy::default(), slot());
    assert_eq!(then.len(), 1);
    assert_eq!(then[0].answers, duplicate.event_id);
    assert!(
        matches!(&then[0].outcome, CertificateOutcome::CertificateRejected { rule, .. } if rule == "DuplicateVaccination")
    );
    // and the rejected event counts as answered: a redelivery decides nothing more.
    let after = then.iter().fold(state, evolve);
    assert_eq!(decide(&after, &duplicate, &Policy::default(), slot()), Ok(vec![]));
}
