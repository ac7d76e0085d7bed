//! A recipient's lineage and the decider that keeps it: per programme and dose, the current
//! certificate, whether it is revoked and how often it was corrected. `decide` says what a
//! vaccination event becomes; `evolve` folds the outcome back in. The signer holds one lineage per
//! recipient key, rebuilt on start from its own output log.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    commands::{CorrectionTarget, RecordVaccination},
    credential::{CertifiedDose, Fingerprint, StatusSlot},
    events::{CertificateEvent, CertificateOutcome, Rejection, VaccinationEvent, VaccinationPayload},
    ids::{CertificateId, EventId, IdKey},
    values::Text,
};

/// The programme's rules, and the key certificate ids are derived under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Corrections allowed per dose (CoWIN allows one).
    pub update_limit: u32,
    /// Keys certificate ids, so nobody outside can compute them.
    pub ids: IdKey,
}

impl Default for Policy {
    /// One correction per dose, under the development id key.
    fn default() -> Self {
        Self {
            update_limit: 1,
            ids: IdKey::development(),
        }
    }
}

/// One dose of one programme.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoseLineage {
    /// The certificate that stands for the dose now.
    pub current: CertificateId,
    /// Why it was revoked, if it was.
    pub revoked: Option<Text>,
    /// Corrections so far.
    pub update_count: u32,
    /// The record the current certificate was issued for, by fingerprint.
    pub fingerprint: Fingerprint,
    /// The dose as the current certificate states it.
    pub certified: CertifiedDose,
    /// The current certificate's revocation bit.
    pub status: StatusSlot,
}

type Slot = (Text, u8);

/// Everything decided so far for one recipient.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    doses: BTreeMap<Slot, DoseLineage>,
    certificates: BTreeMap<CertificateId, Slot>,
    answered: BTreeSet<EventId>,
}

impl Lineage {
    /// The dose's lineage, if it was ever certified.
    pub fn dose(&self, programme: &Text, dose: u8) -> Option<&DoseLineage> {
        self.doses.get(&(programme.clone(), dose))
    }

    /// Whether the event was already answered (a redelivery).
    pub fn has_answered(&self, event: EventId) -> bool {
        self.answered.contains(&event)
    }

    /// Every dose, by programme and dose number.
    pub fn doses(&self) -> impl Iterator<Item = (&Slot, &DoseLineage)> {
        self.doses.iter()
    }

    /// The doses of `programme` before `dose` that stand now (certified and not revoked), in
    /// order: what a new certificate of `dose` lists as previous doses.
    pub fn previous_doses(&self, programme: &Text, dose: u8) -> Vec<CertifiedDose> {
        self.doses
            .range((programme.clone(), 0)..(programme.clone(), dose))
            .filter(|(_, d)| d.revoked.is_none())
            .map(|(_, d)| d.certified.clone())
            .collect()
    }

    /// The slot of a certificate issued to this recipient, and its dose lineage.
    fn certificate(&self, id: &CertificateId) -> Result<(&Slot, &DoseLineage), Rejection> {
        let slot = self.certificates.get(id).ok_or_else(|| Rejection::UnknownCertificate {
            certificate_id: id.clone(),
        })?;
        let dose = &self.doses[slot];
        if &dose.current != id {
            return Err(Rejection::NotCurrentCertificate {
                certificate_id: id.clone(),
                current: dose.current.clone(),
            });
        }
        Ok((slot, dose))
    }
}

/// What `event` becomes, given the recipient's lineage. A redelivered event gives nothing.
/// `status` is the revocation bit a certificate issued now takes (the signer allocates them in
/// order per partition).
pub fn decide(
    state: &Lineage,
    event: &VaccinationEvent,
    policy: &Policy,
    status: StatusSlot,
) -> Result<Vec<CertificateEvent>, Rejection> {
    if state.has_answered(event.event_id) {
        return Ok(Vec::new());
    }
    let outcomes = match &event.payload {
        VaccinationPayload::VaccinationRecorded(record) => record_dose(state, event.event_id, record, policy, status)?,
        VaccinationPayload::VaccinationCorrected { target, corrected } => {
            correct(state, event.event_id, target, corrected, policy, status)?
        }
        VaccinationPayload::RevocationRequested { certificate_id, reason } => {
            let (_, dose) = state.certificate(certificate_id)?;
            if dose.revoked.is_some() {
                return Err(Rejection::AlreadyRevoked {
                    certificate_id: certificate_id.clone(),
                });
            }
            vec![CertificateOutcome::CertificateRevoked {
                certificate_id: certificate_id.clone(),
                reason: reason.clone(),
                status: dose.status,
            }]
        }
        VaccinationPayload::RecipientErased { .. } => vec![CertificateOutcome::RecipientErased {
            certificates: state.certificates.keys().cloned().collect(),
        }],
    };
    Ok(outcomes
        .into_iter()
        .map(|outcome| CertificateEvent {
            answers: event.event_id,
            outcome,
        })
        .collect())
}

/// `decide`, with a refusal turned into the `CertificateRejected` event the caller can look up.
pub fn outcomes(
    state: &Lineage,
    event: &VaccinationEvent,
    policy: &Policy,
    status: StatusSlot,
) -> Vec<CertificateEvent> {
    decide(state, event, policy, status).unwrap_or_else(|rejection| {
        vec![CertificateEvent {
            answers: event.event_id,
            outcome: rejection.into(),
        }]
    })
}

fn issue(
    certificate_id: CertificateId,
    record: &RecordVaccination,
    supersedes: Option<CertificateId>,
    status: StatusSlot,
) -> CertificateOutcome {
    CertificateOutcome::CertificateIssued {
        certified: CertifiedDose::of(&certificate_id, record),
        certificate_id,
        programme: record.programme.clone(),
        supersedes,
        fingerprint: Fingerprint::of(record),
        status,
    }
}

fn record_dose(
    state: &Lineage,
    event: EventId,
    record: &RecordVaccination,
    policy: &Policy,
    status: StatusSlot,
) -> Result<Vec<CertificateOutcome>, Rejection> {
    match state.dose(&record.programme, record.vaccination.dose.number()) {
        // A revoked dose can be certified again.
        Some(dose) if dose.revoked.is_none() => Err(if dose.fingerprint == Fingerprint::of(record) {
            Rejection::DuplicateVaccination {
                certificate_id: dose.current.clone(),
            }
        } else {
            Rejection::DoseAlreadyCertified {
                programme: record.programme.clone(),
                dose: record.vaccination.dose.number(),
                certificate_id: dose.current.clone(),
            }
        }),
        _ => Ok(vec![issue(
            CertificateId::for_event(&policy.ids, event),
            record,
            None,
            status,
        )]),
    }
}

fn correct(
    state: &Lineage,
    event: EventId,
    target: &CorrectionTarget,
    corrected: &RecordVaccination,
    policy: &Policy,
    status: StatusSlot,
) -> Result<Vec<CertificateOutcome>, Rejection> {
    let (slot, dose) = match target {
        CorrectionTarget::Certificate(id) => state.certificate(id)?,
        CorrectionTarget::Dose { programme, dose } => {
            let slot = (programme.clone(), *dose);
            state
                .doses
                .get_key_value(&slot)
                .ok_or_else(|| Rejection::NothingToCorrect {
                    programme: programme.clone(),
                    dose: *dose,
                })?
        }
    };
    if dose.revoked.is_some() {
        return Err(Rejection::CertificateRevoked {
            certificate_id: dose.current.clone(),
        });
    }
    if (&corrected.programme, corrected.vaccination.dose.number()) != (&slot.0, slot.1) {
        return Err(Rejection::CorrectionChangesDose {
            programme: slot.0.clone(),
            dose: slot.1,
        });
    }
    // The programme's limit as the correction was accepted (master data), else the deployment's.
    let limit = corrected.rules.map_or(policy.update_limit, |rules| rules.update_limit);
    if dose.update_count >= limit {
        return Err(Rejection::UpdateLimitReached { limit });
    }
    if dose.fingerprint == Fingerprint::of(corrected) {
        return Err(Rejection::DuplicateVaccination {
            certificate_id: dose.current.clone(),
        });
    }
    let replacement = CertificateId::for_event(&policy.ids, event);
    Ok(vec![
        issue(replacement.clone(), corrected, Some(dose.current.clone()), status),
        CertificateOutcome::CertificateSuperseded {
            certificate_id: dose.current.clone(),
            superseded_by: replacement,
            update_count: dose.update_count + 1,
        },
    ])
}

/// Folds an outcome into the lineage.
pub fn evolve(mut state: Lineage, event: &CertificateEvent) -> Lineage {
    state.answered.insert(event.answers);
    match &event.outcome {
        CertificateOutcome::CertificateIssued {
            certificate_id,
            programme,
            supersedes,
            fingerprint,
            certified,
            status,
        } => {
            let slot = (programme.clone(), certified.dose.number());
            // A correction keeps the count (its Superseded event raises it); a fresh issue starts at 0.
            let update_count = supersedes
                .as_ref()
                .and(state.doses.get(&slot))
                .map_or(0, |d| d.update_count);
            let lineage = DoseLineage {
                current: certificate_id.clone(),
                revoked: None,
                update_count,
                fingerprint: *fingerprint,
                certified: certified.clone(),
                status: *status,
            };
            state.doses.insert(slot.clone(), lineage);
            state.certificates.insert(certificate_id.clone(), slot);
        }
        CertificateOutcome::CertificateSuperseded {
            superseded_by,
            update_count,
            ..
        } => {
            if let Some(slot) = state.certificates.get(superseded_by).cloned() {
                state.doses.entry(slot).and_modify(|d| d.update_count = *update_count);
            }
        }
        CertificateOutcome::CertificateRevoked {
            certificate_id, reason, ..
        } => {
            if let Some(slot) = state.certificates.get(certificate_id).cloned() {
                state.doses.entry(slot).and_modify(|d| d.revoked = Some(reason.clone()));
            }
        }
        CertificateOutcome::CertificateRejected { .. } => {}
        // Forget every dose and certificate; keep only which events were answered (event ids hold
        // no personal data), so a redelivered event is still not answered twice.
        CertificateOutcome::RecipientErased { .. } => {
            state.doses.clear();
            state.certificates.clear();
        }
    }
    state
}

#[cfg(test)]
mod tests;
