//! Walking a partition of `certificate-events` the way an auditor does: every record must link to
//! the one before it, and every checkpoint must name the record before it and carry a valid
//! signature.

use super::{CertificateBody, CertificateEnvelope, Checkpoint, Sha256};

/// What a walk found on an intact partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainSummary {
    pub records: u64,
    pub outcomes: u64,
    pub checkpoints: u64,
    /// Signed status lists published.
    pub status_lists: u64,
    /// SHA-256 of the last record.
    pub head: Option<Sha256>,
}

/// The first place the chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error(
        "offset {offset}: previousSha256 does not match the record before it{}: that record or this link was altered",
        previous.map(|p| format!(" (offset {p})")).unwrap_or_default()
    )]
    Link { offset: i64, previous: Option<i64> },
    #[error("offset {offset}: the record does not decode: {reason}")]
    Unreadable { offset: i64, reason: String },
    #[error("offset {offset}: the checkpoint names offset {named} and a head other than the record before it")]
    CheckpointHead { offset: i64, named: i64 },
    #[error("offset {offset}: the checkpoint's signature does not verify: {reason}")]
    CheckpointSignature { offset: i64, reason: String },
}

/// Walks records in offset order. `verify` checks a checkpoint's signature.
#[derive(Debug, Default)]
pub struct ChainWalk {
    summary: ChainSummary,
    previous_offset: Option<i64>,
}

impl ChainWalk {
    /// A walk that goes on after the record at `offset`, whose SHA-256 is `head` (auditing a
    /// window of a partition).
    pub fn after(offset: i64, head: Sha256) -> Self {
        Self {
            summary: ChainSummary {
                head: Some(head),
                ..ChainSummary::default()
            },
            previous_offset: Some(offset),
        }
    }

    /// Checks the next record: its offset, its value bytes' hash, and what it decoded to.
    pub fn next(
        &mut self,
        offset: i64,
        hash: Sha256,
        envelope: Result<&CertificateEnvelope, String>,
        verify: impl Fn(&Checkpoint) -> Result<(), String>,
    ) -> Result<(), ChainBreak> {
        let envelope = envelope.map_err(|reason| ChainBreak::Unreadable { offset, reason })?;
        if envelope.previous_sha256 != self.summary.head {
            return Err(ChainBreak::Link {
                offset,
                previous: self.previous_offset,
            });
        }
        match &envelope.body {
            CertificateBody::Checkpoint(checkpoint) => {
                if Some(checkpoint.chain_head) != self.summary.head
                    || Some(checkpoint.last_offset) != self.previous_offset
                {
                    return Err(ChainBreak::CheckpointHead {
                        offset,
                        named: checkpoint.last_offset,
                    });
                }
                verify(checkpoint).map_err(|reason| ChainBreak::CheckpointSignature { offset, reason })?;
                self.summary.checkpoints += 1;
            }
            CertificateBody::Outcome { .. } | CertificateBody::SealedIssue(_) => self.summary.outcomes += 1,
            CertificateBody::StatusList(_) => self.summary.status_lists += 1,
        }
        self.summary.records += 1;
        self.summary.head = Some(hash);
        self.previous_offset = Some(offset);
        Ok(())
    }

    /// The summary so far.
    pub fn summary(&self) -> &ChainSummary {
        &self.summary
    }
}
