//! What the signer knows about one partition, all of it read back from its own output: every
//! recipient's lineage, where the input resumes, the chain head, the status lists (their bits and
//! where the next certificate goes) and the checkpoint cadence. `fold` applies one `certificate-events` record; the signer folds what it
//! writes as it writes it, and folds the partition (from its local store's offset, or from the
//! start) when it takes the partition over.
//!
//! With a local store (`crate::store`) the lineages live on disk: memory holds those changed since
//! the last write and a cache bounded in bytes. Without one, every lineage stays in memory.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use avro::certificate::{CertificateBody, CertificateEnvelope, Sha256};
use chrono::{DateTime, Utc};
use domain::{
    credential::StatusSlot,
    events::{CertificateEvent, CertificateOutcome},
    lineage::{Lineage, evolve},
    status::{SlotError, StatusAllocator},
    values::RecipientKey,
};

use crate::{
    lists::StatusLists,
    store::{FORMAT, Meta, Store, digest_of, hex_of},
};

/// A fresh number for each state built, so the shared cache never serves one state's entries to
/// another (a partition cleared and rebuilt, say).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A partition's write to the store, prepared (`PartitionState::pending`).
pub struct Pending {
    pub partition: i32,
    pub lineages: Vec<(RecipientKey, Vec<u8>)>,
    pub meta: Meta,
    /// The status lists whose bits changed since the last write.
    pub lists: Vec<(u32, Vec<u8>)>,
}

impl Pending {
    /// As the store writes it.
    pub fn as_write(&self) -> crate::store::PartitionWrite<'_> {
        crate::store::PartitionWrite {
            partition: self.partition,
            lineages: &self.lineages,
            meta: &self.meta,
            lists: &self.lists,
        }
    }
}

/// The lineages of one partition: in memory, or in the store with a cache.
#[derive(Debug)]
struct Lineages {
    partition: i32,
    generation: u64,
    /// Changed since the last write to the store (every lineage when there is none).
    dirty: HashMap<RecipientKey, Lineage>,
    store: Option<Store>,
}

impl Lineages {
    fn new(partition: i32, store: Option<Store>) -> Self {
        Self {
            partition,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            dirty: HashMap::new(),
            store,
        }
    }

    fn get(&self, recipient: &RecipientKey) -> anyhow::Result<Option<Lineage>> {
        if let Some(lineage) = self.dirty.get(recipient) {
            return Ok(Some(lineage.clone()));
        }
        let Some(store) = &self.store else { return Ok(None) };
        let key = (self.partition, self.generation, recipient.clone());
        if let Some((lineage, _)) = store.cache.get(&key) {
            metrics::counter!("vaxtrail_signer_state_reads_total", "from" => "cache").increment(1);
            return Ok(Some((*lineage).clone()));
        }
        metrics::counter!("vaxtrail_signer_state_reads_total", "from" => "disk").increment(1);
        Ok(match store.lineage(self.partition, recipient)? {
            Some((lineage, size)) => {
                store.cache.insert(key, (Arc::new(lineage.clone()), size));
                Some(lineage)
            }
            None => None,
        })
    }

    fn put(&mut self, recipient: &RecipientKey, lineage: Lineage) {
        if let Some(store) = &self.store {
            store
                .cache
                .remove(&(self.partition, self.generation, recipient.clone()));
        }
        self.dirty.insert(recipient.clone(), lineage);
    }
}

/// One partition's state.
#[derive(Debug)]
pub struct PartitionState {
    pub partition: i32,
    lineages: Lineages,
    /// Recipients with a lineage.
    recipients: u64,
    /// The bookkeeping last written to the store (nothing to write while it is unchanged).
    stored: Option<Meta>,
    /// The next `vaccination-events` offset to answer.
    pub next_source: i64,
    /// SHA-256 of the last record of the output partition (`None` while it is empty).
    pub chain_head: Option<Sha256>,
    /// Where the next certificate goes: its place in the partition's sequence of Bitstring
    /// Status List slots.
    pub next_status_position: u64,
    /// Places certificates in lists.
    allocator: Arc<StatusAllocator>,
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
    /// The partition's status lists, from every `CertificateIssued`, `CertificateRevoked` and
    /// `StatusListPublished` of its log: bits are only ever set, so a list built from them never
    /// forgets a revocation.
    pub lists: StatusLists,
}

impl PartitionState {
    /// A partition with no output yet; its input starts at `first_source` (the low watermark).
    pub fn new(partition: i32, first_source: i64, store: Option<Store>, allocator: Arc<StatusAllocator>) -> Self {
        Self {
            partition,
            lineages: Lineages::new(partition, store),
            recipients: 0,
            stored: None,
            next_source: first_source,
            chain_head: None,
            next_status_position: 0,
            allocator,
            since_checkpoint: 0,
            last_checkpoint_at: Utc::now(),
            last_delivered: None,
            output_end: 0,
            position_confirmed: false,
            chain_breaks: 0,
            lists: StatusLists::default(),
        }
    }

    /// The state a store holds for the partition: its lineages stay on disk until read.
    pub fn restored(
        partition: i32,
        store: Store,
        meta: Meta,
        bits: std::collections::BTreeMap<u32, Vec<u8>>,
        allocator: Arc<StatusAllocator>,
    ) -> Self {
        let head = meta.chain_head.as_deref().and_then(digest_of);
        let mut state = Self::new(partition, meta.next_source, Some(store), allocator);
        state.recipients = meta.recipients;
        state.chain_head = head;
        state.next_status_position = meta.next_status_position;
        state.since_checkpoint = meta.since_checkpoint;
        state.last_checkpoint_at = meta.last_checkpoint_at;
        state.last_delivered = head.map(|h| (meta.output_offset - 1, h));
        state.output_end = meta.output_offset;
        state.chain_breaks = meta.chain_breaks;
        state.lists = StatusLists::restored(bits, &meta.lists);
        state.stored = Some(meta);
        state
    }

    /// The lineage of a recipient (empty if nothing was decided for them yet).
    pub fn lineage(&self, recipient: &RecipientKey) -> anyhow::Result<Lineage> {
        Ok(self.lineages.get(recipient)?.unwrap_or_default())
    }

    /// The bookkeeping as the store keeps it, reflecting every record up to the last delivered.
    fn meta(&mut self, deployment: &str) -> Meta {
        Meta {
            format: FORMAT,
            deployment: deployment.to_owned(),
            output_offset: self.last_delivered.map_or(0, |(offset, _)| offset + 1),
            chain_head: self.chain_head.as_ref().map(hex_of),
            next_source: self.next_source,
            next_status_position: self.next_status_position,
            since_checkpoint: self.since_checkpoint,
            last_checkpoint_at: self.last_checkpoint_at,
            chain_breaks: self.chain_breaks,
            recipients: self.recipients,
            lists: self.lists.meta(),
        }
    }

    /// What a store write of this partition holds, or `None` when the store has it all (or
    /// there is no store). The caller guarantees that every record folded in is on the broker
    /// (nothing in flight): the store then never says more than the log.
    pub fn pending(&mut self) -> anyhow::Result<Option<Pending>> {
        let Some(store) = self.lineages.store.clone() else {
            return Ok(None);
        };
        if self.chain_head != self.last_delivered.map(|(_, hash)| hash) {
            // A record folded but not acknowledged: the caller did not drain. Nothing is written.
            anyhow::bail!("partition {}: the state is ahead of the delivered log", self.partition);
        }
        let meta = self.meta(store.deployment());
        if self.lineages.dirty.is_empty() && self.stored.as_ref() == Some(&meta) {
            return Ok(None);
        }
        let lineages = self
            .lineages
            .dirty
            .iter()
            .map(|(recipient, lineage)| Ok((recipient.clone(), crate::store::encode(lineage)?)))
            .collect::<anyhow::Result<_>>()?;
        let lists = self.lists.changed(&meta.lists, self.stored.as_ref().map(|s| &s.lists));
        Ok(Some(Pending {
            partition: self.partition,
            lineages,
            lists,
            meta,
        }))
    }

    /// After `pending` was committed: the written lineages are clean and move to the bounded
    /// cache.
    pub fn written(&mut self, pending: Pending) {
        let Some(store) = &self.lineages.store else { return };
        let sizes: HashMap<RecipientKey, u32> = pending
            .lineages
            .into_iter()
            .map(|(recipient, bytes)| (recipient, bytes.len() as u32))
            .collect();
        for (recipient, lineage) in self.lineages.dirty.drain() {
            let size = sizes.get(&recipient).copied().unwrap_or(512);
            store.cache.insert(
                (self.partition, self.lineages.generation, recipient),
                (Arc::new(lineage), size),
            );
        }
        self.stored = Some(pending.meta);
    }

    /// Writes what changed to the local store on its own (a rebuild's periodic write; the loop
    /// writes every partition in one transaction). `before_commit` runs between writing and
    /// committing (fault drills). Returns the lineages written.
    pub fn persist(&mut self, before_commit: impl FnOnce()) -> anyhow::Result<usize> {
        let Some(pending) = self.pending()? else {
            return Ok(0);
        };
        let store = self.lineages.store.clone().expect("a pending write has a store");
        store.write_partitions(&[pending.as_write()], before_commit)?;
        let written = pending.lineages.len();
        self.written(pending);
        Ok(written)
    }

    /// The local store, if there is one.
    pub fn store(&self) -> Option<&Store> {
        self.lineages.store.as_ref()
    }

    /// Lineages changed since the last write to the store.
    pub fn unwritten(&self) -> usize {
        if self.lineages.store.is_some() {
            self.lineages.dirty.len()
        } else {
            0
        }
    }

    /// Whether the state has changes the store does not have.
    pub fn changed(&mut self) -> bool {
        let Some(store) = self.lineages.store.clone() else {
            return false;
        };
        let meta = self.meta(store.deployment());
        !self.lineages.dirty.is_empty() || self.stored.as_ref() != Some(&meta)
    }

    /// Applies one output record whose value bytes hash to `hash`.
    pub fn fold(&mut self, envelope: &CertificateEnvelope, hash: Sha256) -> anyhow::Result<()> {
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
            CertificateBody::StatusList(list) => self.keep_published(list),
            CertificateBody::Outcome {
                recipient_key, event, ..
            } => {
                self.apply(recipient_key, event)?;
                self.next_source = self.next_source.max(envelope.source.offset + 1);
                self.since_checkpoint += 1;
            }
            // An erased recipient's issue (the worker refuses to rebuild from sealed issues
            // without a key store): its status bit stays allocated; the lineage it would have
            // joined is forgotten by the RecipientErased answer that follows it in the log.
            CertificateBody::SealedIssue(issue) => {
                self.placed(&issue.status);
                self.next_source = self.next_source.max(envelope.source.offset + 1);
                self.since_checkpoint += 1;
            }
        }
        Ok(())
    }

    fn apply(&mut self, recipient: &RecipientKey, event: &CertificateEvent) -> anyhow::Result<()> {
        match &event.outcome {
            CertificateOutcome::CertificateIssued { status, .. } => self.placed(status),
            CertificateOutcome::CertificateRevoked { status, .. } => self.lists.set(status.list, status.index),
            _ => {}
        }
        let lineage = match self.lineages.get(recipient)? {
            Some(lineage) => lineage,
            None => {
                self.recipients += 1;
                Lineage::default()
            }
        };
        self.lineages.put(recipient, evolve(lineage, event));
        Ok(())
    }

    /// The slot the next certificate takes.
    pub fn next_slot(&self) -> Result<StatusSlot, SlotError> {
        let partition = u32::try_from(self.partition).map_err(|_| SlotError::Partition(0))?;
        self.allocator.slot(partition, self.next_status_position)
    }

    /// A certificate was placed in `status`: its list is published if it never was, and the next
    /// certificate goes after it.
    fn placed(&mut self, status: &StatusSlot) {
        self.lists.open(status.list);
        if let Some(position) = self.allocator.position(status) {
            self.next_status_position = self.next_status_position.max(position + 1);
        }
    }

    /// Every bit a list published in the log had stays set: a status list never goes backwards.
    /// A published bit that the folded revocations lack (a fault: a record lost, or a bug) is
    /// logged, counted and set again, so the next list carries it.
    fn keep_published(&mut self, list: &avro::certificate::StatusListPublished) {
        match self.lists.published(list.list, list.bits_sha256, &list.credential) {
            Ok(missing) if !missing.is_empty() => {
                metrics::counter!("vaxtrail_signer_status_list_bits_restored_total").increment(missing.len() as u64);
                tracing::error!(
                    partition = self.partition,
                    list = list.list,
                    restored = ?missing,
                    "a published status list had revocations the log's fold lacks: kept set"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(partition = self.partition, list = list.list, %error, "a published status list does not decode")
            }
        }
    }

    /// Recipients known.
    pub fn recipients(&self) -> u64 {
        self.recipients
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use avro::certificate::{CertificateBody, CertificateEnvelope, SourcePosition, StatusListPublished};
    use chrono::Utc;
    use credentials::status_list as list;
    use domain::{credential::StatusSlot, ids::IdKey, status::StatusAllocator};

    use super::PartitionState;

    fn published(number: u32, bits: &[u8]) -> CertificateEnvelope {
        CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition {
                partition: 0,
                offset: 0,
            },
            previous_sha256: None,
            body: CertificateBody::StatusList(StatusListPublished {
                list: number,
                credential: serde_json::json!({"credentialSubject": {"encodedList": list::encode_bitstring(bits)}})
                    .to_string(),
                revoked_count: list::count(bits),
                bits_sha256: [0; 32],
            }),
        }
    }

    fn state() -> PartitionState {
        PartitionState::new(0, 0, None, Arc::new(StatusAllocator::new(&IdKey::development())))
    }

    #[test]
    fn a_bit_an_earlier_published_list_had_is_set_again_when_the_fold_lacks_it() {
        // Given a published list with bits 5 and 70 000, and a fold that saw only the revocation
        // of bit 5 (its record lost, say),
        let mut bits = Vec::new();
        list::set(&mut bits, 5);
        list::set(&mut bits, 70_000);
        let mut state = state();
        state.lists.set(1000, 5);
        // when the list's record is folded,
        state.fold(&published(1000, &bits), [1; 32]).unwrap();
        // then the next list carries both bits: it never goes backwards.
        let now = state.lists.bits(1000);
        assert!(list::bit(&now, 5) && list::bit(&now, 70_000));
        assert_eq!(list::count(&now), 2);
        assert_eq!(
            state.lists.due(std::time::Duration::ZERO),
            vec![1000],
            "the mended bits differ from what was published under that digest"
        );
    }

    #[test]
    fn the_next_slot_follows_the_last_placed_even_when_folded_out_of_order() {
        let mut state = state();
        let first = state.next_slot().unwrap();
        assert_eq!(first.list, 1000);
        let allocator = StatusAllocator::new(&IdKey::development());
        let tenth = allocator.slot(0, 9).unwrap();
        state.placed(&tenth);
        state.placed(&first);
        assert_eq!(state.next_slot().unwrap(), allocator.slot(0, 10).unwrap());
        // A data model 1.1 slot opens its list but does not move the sequence.
        state.placed(&StatusSlot { list: 0, index: 123 });
        assert_eq!(state.next_slot().unwrap(), allocator.slot(0, 10).unwrap());
        assert_eq!(state.lists.due(std::time::Duration::ZERO), vec![0, 1000]);
    }
}
