//! What the signer knows about one partition, all of it read back from its own output: every
//! recipient's lineage, where the input resumes, the chain head, the next status-list index and
//! the checkpoint cadence. `fold` applies one `certificate-events` record; the signer folds what it
//! writes as it writes it, and folds the whole partition when it takes the partition over.

use std::collections::HashMap;

use avro::certificate::{CertificateBody, CertificateEnvelope, Sha256};
use chrono::{DateTime, Utc};
use credentials::status_list as credential;
use domain::{
    events::{CertificateEvent, CertificateOutcome},
    lineage::{Lineage, evolve},
    values::RecipientKey,
};

/// One partition's state.
#[derive(Debug)]
pub struct PartitionState {
    pub partition: i32,
    lineages: HashMap<RecipientKey, Lineage>,
    /// The next `vaccination-events` offset to answer.
    pub next_source: i64,
    /// SHA-256 of the last record of the output partition (`None` while it is empty).
    pub chain_head: Option<Sha256>,
    /// The status-list index the next certificate takes.
    pub next_status_index: u64,
    /// Outcomes written since the last checkpoint.
    pub since_checkpoint: u64,
    /// When the last checkpoint was written (or the state built).
    pub last_checkpoint_at: DateTime<Utc>,
    /// Offset and hash of the last output record known to be on the broker.
    pub last_delivered: Option<(i64, Sha256)>,
    /// The output partition's end (high watermark) as this state knows it.
    pub output_end: i64,
    /// Whether the input position was confirmed to be `next_source` since the state was built.
    pub position_confirmed: bool,
    /// Records folded whose `previousSha256` did not match the chain (a second writer, or tampering).
    pub chain_breaks: u64,
    /// The partition's revocation bits, from every `CertificateRevoked` of its log: bits are only
    /// ever set, so a list built from them never forgets a revocation.
    pub revoked_bits: Vec<u8>,
    /// SHA-256 of `revoked_bits`, kept until a bit is set (the list is compared every tick).
    bits_digest: Option<Sha256>,
    /// SHA-256 of the bits of the last status list published in the log (`None`: never).
    pub published_bits: Option<Sha256>,
    /// When this signer last published the partition's list.
    pub list_published_at: Option<std::time::Instant>,
}

impl PartitionState {
    /// A partition with no output yet; its input starts at `first_source` (the low watermark).
    pub fn new(partition: i32, first_source: i64) -> Self {
        Self {
            partition,
            lineages: HashMap::new(),
            next_source: first_source,
            chain_head: None,
            next_status_index: 0,
            since_checkpoint: 0,
            last_checkpoint_at: Utc::now(),
            last_delivered: None,
            output_end: 0,
            position_confirmed: false,
            chain_breaks: 0,
            revoked_bits: Vec::new(),
            bits_digest: None,
            published_bits: None,
            list_published_at: None,
        }
    }

    /// The lineage of a recipient (empty if nothing was decided for them yet).
    pub fn lineage(&self, recipient: &RecipientKey) -> Lineage {
        self.lineages.get(recipient).cloned().unwrap_or_default()
    }

    /// Applies one output record whose value bytes hash to `hash`.
    pub fn fold(&mut self, envelope: &CertificateEnvelope, hash: Sha256) {
        if envelope.previous_sha256 != self.chain_head {
            self.chain_breaks += 1;
            tracing::error!(
                partition = self.partition,
                source_offset = envelope.source.offset,
                "certificate-events chain break: a record does not link to the one before it"
            );
        }
        self.chain_head = Some(hash);
        match &envelope.body {
            CertificateBody::Checkpoint(_) => {
                self.since_checkpoint = 0;
                self.last_checkpoint_at = envelope.recorded_at;
            }
            CertificateBody::StatusList(list) => {
                self.published_bits = Some(list.bits_sha256);
                self.keep_published(&list.credential);
            }
            CertificateBody::Outcome {
                recipient_key, event, ..
            } => {
                self.apply(recipient_key, event);
                self.next_source = self.next_source.max(envelope.source.offset + 1);
                self.since_checkpoint += 1;
            }
        }
    }

    fn apply(&mut self, recipient: &RecipientKey, event: &CertificateEvent) {
        match &event.outcome {
            CertificateOutcome::CertificateIssued { status, .. } => {
                self.next_status_index = self.next_status_index.max(status.index + 1);
            }
            CertificateOutcome::CertificateRevoked { status, .. } => {
                credentials::status_list::set(&mut self.revoked_bits, status.index);
                self.bits_digest = None;
            }
            _ => {}
        }
        let lineage = self.lineages.remove(recipient).unwrap_or_default();
        self.lineages.insert(recipient.clone(), evolve(lineage, event));
    }

    /// Every bit a list published in the log had stays set: a status list never goes backwards.
    /// A published bit that the folded revocations lack (a fault: a record lost, or a bug) is
    /// logged, counted and set again, so the next list carries it.
    fn keep_published(&mut self, credential: &str) {
        match credential::bits_of(credential) {
            Ok(published) => {
                let missing = credential::keep_published(&mut self.revoked_bits, &published);
                if !missing.is_empty() {
                    self.bits_digest = None;
                    metrics::counter!("vaxtrail_signer_status_list_bits_restored_total")
                        .increment(missing.len() as u64);
                    tracing::error!(
                        partition = self.partition,
                        restored = ?missing,
                        "a published status list had revocations the log's fold lacks: kept set"
                    );
                }
            }
            Err(error) => {
                tracing::error!(partition = self.partition, %error, "a published status list does not decode")
            }
        }
    }

    /// SHA-256 of the revocation bits now (hashed again only after a bit was set).
    pub fn bits_sha256(&mut self) -> Sha256 {
        use sha2::Digest;
        *self
            .bits_digest
            .get_or_insert_with(|| sha2::Sha256::digest(&self.revoked_bits).into())
    }

    /// Whether the log's last published list differs from the bits (or none was published).
    pub fn list_outdated(&mut self) -> bool {
        let now = self.bits_sha256();
        self.published_bits != Some(now)
    }

    /// Recipients known.
    pub fn recipients(&self) -> usize {
        self.lineages.len()
    }
}

#[cfg(test)]
mod tests {
    use avro::certificate::{CertificateBody, CertificateEnvelope, SourcePosition, StatusListPublished};
    use chrono::Utc;
    use credentials::status_list as list;

    use super::PartitionState;

    fn published(bits: &[u8]) -> CertificateEnvelope {
        CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition {
                partition: 0,
                offset: 0,
            },
            previous_sha256: None,
            body: CertificateBody::StatusList(StatusListPublished {
                list: 0,
                credential: serde_json::json!({"credentialSubject": {"encodedList": list::encode(bits)}}).to_string(),
                revoked_count: list::count(bits),
                bits_sha256: [0; 32],
            }),
        }
    }

    #[test]
    fn a_bit_an_earlier_published_list_had_is_set_again_when_the_fold_lacks_it() {
        // Given a published list with bits 5 and 70 000, and a fold that saw only the revocation
        // of bit 5 (its record lost, say),
        let mut bits = Vec::new();
        list::set(&mut bits, 5);
        list::set(&mut bits, 70_000);
        let mut state = PartitionState::new(0, 0);
        list::set(&mut state.revoked_bits, 5);
        // when the list's record is folded,
        state.fold(&published(&bits), [1; 32]);
        // then the next list carries both bits: it never goes backwards.
        assert!(list::bit(&state.revoked_bits, 5) && list::bit(&state.revoked_bits, 70_000));
        assert_eq!(list::count(&state.revoked_bits), 2);
        assert!(
            state.list_outdated(),
            "the mended bits differ from what was published under that digest"
        );
    }
}
