//! Events. `vaccination-events` carries what callers asked for (past tense: it was recorded);
//! `certificate-events` carries what the signer decided about each of those events.

use serde::{Deserialize, Serialize};

use crate::{
    commands::{CorrectionTarget, RecordVaccination},
    credential::{CertifiedDose, Fingerprint, StatusSlot},
    ids::{CertificateId, EventId},
    values::{RecipientKey, Text},
};

/// What happened, as posted by a vaccination system or a controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VaccinationPayload {
    /// A dose was given.
    VaccinationRecorded(RecordVaccination),
    /// A recorded dose was corrected.
    VaccinationCorrected {
        target: CorrectionTarget,
        corrected: RecordVaccination,
    },
    /// A controller asked for a certificate to be revoked.
    RevocationRequested {
        certificate_id: CertificateId,
        reason: Text,
    },
    /// An administrator erased the recipient: their data keys (these ids) were deleted, so their
    /// sealed records can no longer be read.
    RecipientErased { erased_keys: Vec<String> },
}

impl VaccinationPayload {
    /// The vaccination record a certificate would be signed for, if the payload carries one.
    pub fn record(&self) -> Option<&RecordVaccination> {
        match self {
            Self::VaccinationRecorded(record) | Self::VaccinationCorrected { corrected: record, .. } => Some(record),
            Self::RevocationRequested { .. } | Self::RecipientErased { .. } => None,
        }
    }

    /// The payload's record name on the topic.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::VaccinationRecorded(_) => "VaccinationRecorded",
            Self::VaccinationCorrected { .. } => "VaccinationCorrected",
            Self::RevocationRequested { .. } => "RevocationRequested",
            Self::RecipientErased { .. } => "RecipientErased",
        }
    }
}

/// One event of `vaccination-events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaccinationEvent {
    pub event_id: EventId,
    pub recipient_key: RecipientKey,
    pub payload: VaccinationPayload,
}

/// Why the signer refused an event. Each names the rule that said no; `rule()` is its stable name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error(
        "dose {dose} of programme {programme} is already certified by {certificate_id} with other data; post a correction"
    )]
    DoseAlreadyCertified {
        programme: Text,
        dose: u8,
        certificate_id: CertificateId,
    },
    #[error("the same vaccination is already certified by {certificate_id}")]
    DuplicateVaccination { certificate_id: CertificateId },
    #[error("this dose was already corrected {limit} time(s), the most the programme allows")]
    UpdateLimitReached { limit: u32 },
    #[error("certificate {certificate_id} is revoked; it cannot be corrected")]
    CertificateRevoked { certificate_id: CertificateId },
    #[error("certificate {certificate_id} was superseded by {current}; act on the current certificate")]
    NotCurrentCertificate {
        certificate_id: CertificateId,
        current: CertificateId,
    },
    #[error("no certificate {certificate_id} was issued to this recipient")]
    UnknownCertificate { certificate_id: CertificateId },
    #[error("dose {dose} of programme {programme} has no certificate to correct")]
    NothingToCorrect { programme: Text, dose: u8 },
    #[error("a correction must keep the programme and dose of the certificate it corrects ({programme}, dose {dose})")]
    CorrectionChangesDose { programme: Text, dose: u8 },
    #[error("certificate {certificate_id} is already revoked")]
    AlreadyRevoked { certificate_id: CertificateId },
}

impl Rejection {
    /// The stable name of the rule, for APIs, metrics and the topic.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::DoseAlreadyCertified { .. } => "DoseAlreadyCertified",
            Self::DuplicateVaccination { .. } => "DuplicateVaccination",
            Self::UpdateLimitReached { .. } => "UpdateLimitReached",
            Self::CertificateRevoked { .. } => "CertificateRevoked",
            Self::NotCurrentCertificate { .. } => "NotCurrentCertificate",
            Self::UnknownCertificate { .. } => "UnknownCertificate",
            Self::NothingToCorrect { .. } => "NothingToCorrect",
            Self::CorrectionChangesDose { .. } => "CorrectionChangesDose",
            Self::AlreadyRevoked { .. } => "AlreadyRevoked",
        }
    }
}

/// What the signer decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertificateOutcome {
    /// A certificate is signed for the event's record (replacing `supersedes` after a correction).
    CertificateIssued {
        certificate_id: CertificateId,
        programme: Text,
        supersedes: Option<CertificateId>,
        /// The record certified, by fingerprint.
        fingerprint: Fingerprint,
        /// The dose certified, as later certificates list it.
        certified: CertifiedDose,
        /// Its revocation bit.
        status: StatusSlot,
    },
    /// A certificate was replaced by a corrected one; `update_count` corrections of this dose so far.
    CertificateSuperseded {
        certificate_id: CertificateId,
        superseded_by: CertificateId,
        update_count: u32,
    },
    /// A certificate was revoked: the bit `status` is set.
    CertificateRevoked {
        certificate_id: CertificateId,
        reason: Text,
        status: StatusSlot,
    },
    /// The recipient was erased: the signer forgot them. Their certificates (every one issued)
    /// keep their status bits; read models drop them.
    RecipientErased { certificates: Vec<CertificateId> },
    /// The event was refused.
    CertificateRejected {
        /// The rule's stable name ([`Rejection::rule`]).
        rule: String,
        /// The explanation, naming the limit or certificate.
        detail: String,
    },
}

impl CertificateOutcome {
    /// The outcome's record name on the topic.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::CertificateIssued { .. } => "CertificateIssued",
            Self::CertificateSuperseded { .. } => "CertificateSuperseded",
            Self::CertificateRevoked { .. } => "CertificateRevoked",
            Self::CertificateRejected { .. } => "CertificateRejected",
            Self::RecipientErased { .. } => "RecipientErased",
        }
    }
}

impl From<Rejection> for CertificateOutcome {
    fn from(rejection: Rejection) -> Self {
        Self::CertificateRejected {
            rule: rejection.rule().to_owned(),
            detail: rejection.to_string(),
        }
    }
}

/// One outcome, tied to the vaccination event it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateEvent {
    /// The vaccination event answered.
    pub answers: EventId,
    pub outcome: CertificateOutcome,
}
