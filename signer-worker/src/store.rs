//! The signer's local state store: each partition's lineages and bookkeeping on disk (redb), so a
//! restart folds only the output records written after the store's offset instead of the whole
//! partition, and memory holds a bounded cache instead of every recipient.
//!
//! One database file per signer instance (`signer-state.redb` in `VAXTRAIL_SIGNER_STATE_DIR`;
//! redb locks it, so two instances never share one). Per partition: a table `lineages-{p}`
//! (recipient key → lineage in CBOR, which keeps the lineage's tuple-keyed maps), and rows in `meta` (the bookkeeping, with the output offset
//! the contents reflect and the chain head there) and `list-bits` (each status list's revocation
//! bits, by partition and list; only a list whose bits changed is written again). A partition's
//! rows are written in one transaction, only when every record folded into them is acknowledged
//! by the broker: the store is never ahead of the log it was written from. Whether it belongs to
//! this log is checked when it is opened (the topic's name, and the SHA-256 of the log's record
//! just before the stored offset against the stored chain head).

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use avro::certificate::Sha256;
use chrono::{DateTime, Utc};
use domain::{lineage::Lineage, values::RecipientKey};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

const META: TableDefinition<i32, &[u8]> = TableDefinition::new("meta");
/// The revocation bits of the single list of earlier stores (format 1): dropped when seen.
const BITS: TableDefinition<i32, &[u8]> = TableDefinition::new("bits");
const LIST_BITS: TableDefinition<(i32, u32), &[u8]> = TableDefinition::new("list-bits");

/// The store's format. A partition stored in another (format 1: one status list per partition,
/// before Bitstring Status Lists) is not read: it is rebuilt from the log.
pub const FORMAT: u32 = 2;

fn lineages_table(partition: i32) -> String {
    format!("lineages-{partition}")
}

/// A partition's bookkeeping as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The store's format ([`FORMAT`]; absent, 1, in earlier stores).
    #[serde(default)]
    pub format: u32,
    /// Which log this was folded from (the prefixed `certificate-events` topic).
    pub deployment: String,
    /// The output offset the contents reflect: every record before it is folded in.
    pub output_offset: i64,
    /// SHA-256 of the record at `output_offset - 1` (hex; `None` while the partition was empty).
    pub chain_head: Option<String>,
    pub next_source: i64,
    /// Where the next certificate goes in the partition's Bitstring Status Lists.
    pub next_status_position: u64,
    pub since_checkpoint: u64,
    pub last_checkpoint_at: DateTime<Utc>,
    pub chain_breaks: u64,
    /// Recipients with a lineage.
    pub recipients: u64,
    /// Each status list's digests (its bits, what was last published): a list's bits are
    /// written again only when their digest changes.
    pub lists: std::collections::BTreeMap<u32, crate::lists::ListMeta>,
}

/// One partition's part of a store write.
pub struct PartitionWrite<'a> {
    pub partition: i32,
    /// Changed lineages, encoded.
    pub lineages: &'a [(RecipientKey, Vec<u8>)],
    pub meta: &'a Meta,
    /// The status lists whose bits changed since the last write.
    pub lists: &'a [(u32, Vec<u8>)],
}

/// Status lists' bits, by list number.
pub type ListBits = std::collections::BTreeMap<u32, Vec<u8>>;

/// A lineage as stored.
pub fn encode(lineage: &Lineage) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    ciborium::into_writer(lineage, &mut out)?;
    Ok(out)
}

/// A stored lineage.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Lineage> {
    Ok(ciborium::from_reader(bytes)?)
}

/// Hex of a digest.
pub fn hex_of(hash: &Sha256) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest from hex.
pub fn digest_of(text: &str) -> Option<Sha256> {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// Lineages read from (or written to) the store, by partition, the state's generation (a state
/// built afresh never sees another's entries) and recipient; weighed by their stored size.
pub type Cache = quick_cache::sync::Cache<(i32, u64, RecipientKey), (Arc<Lineage>, u32), ByStoredSize>;

/// Weighs a cached lineage by its stored size plus its key and bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct ByStoredSize;

impl quick_cache::Weighter<(i32, u64, RecipientKey), (Arc<Lineage>, u32)> for ByStoredSize {
    fn weight(&self, key: &(i32, u64, RecipientKey), value: &(Arc<Lineage>, u32)) -> u64 {
        // A decoded lineage takes about ten times its CBOR (its maps' nodes are allocated whole:
        // 384 bytes stored, 1.8-3.9 KB in memory for one dose, `vaxctl bench signer-state`); the
        // key and the entry about 100 bytes.
        10 * u64::from(value.1) + key.2.as_str().len() as u64 + 100
    }
}

/// The store of one signer instance.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    deployment: String,
    /// Clean lineages in memory, bounded in bytes for the whole instance (half the configured
    /// bound; redb's page cache takes the other half).
    pub cache: Arc<Cache>,
    /// The configured memory bound, in bytes.
    bound: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("deployment", &self.deployment).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, deployment: &str, cache_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("signer-state.redb");
        // Half the bound for redb's page cache, half for decoded lineages.
        let db = redb::Builder::new()
            .set_cache_size((cache_bytes / 2) as usize)
            .create(&path)
            .with_context(|| {
                format!(
                    "opening the signer's state store {} (another signer instance may hold it)",
                    path.display()
                )
            })?;
        Ok(Self {
            db: Arc::new(db),
            deployment: deployment.to_owned(),
            cache: Arc::new(Cache::with_weighter(
                (cache_bytes / 1200).max(16) as usize,
                cache_bytes / 2,
                ByStoredSize,
            )),
            bound: cache_bytes,
        })
    }

    /// How many changed lineages a rebuild folds before writing them: a quarter of the memory
    /// bound's worth (about 4 KB each in memory), at least 1,000.
    pub fn write_every(&self) -> usize {
        ((self.bound / 4) / 4096).max(1000) as usize
    }

    /// The deployment this store is written for.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The partition's stored bookkeeping and status lists' bits, if any were stored for this
    /// deployment in this format.
    pub fn load(&self, partition: i32) -> anyhow::Result<Option<(Meta, ListBits)>> {
        let read = self.db.begin_read()?;
        let meta = match read.open_table(META) {
            Ok(table) => table.get(partition)?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let Some(meta) = meta else { return Ok(None) };
        // An earlier format's bookkeeping may not parse as this one's: either way it is not read.
        let Ok(meta) = serde_json::from_slice::<Meta>(&meta) else {
            return Ok(None);
        };
        if meta.deployment != self.deployment || meta.format != FORMAT {
            return Ok(None);
        }
        let mut bits = ListBits::new();
        match read.open_table(LIST_BITS) {
            Ok(table) => {
                for row in table.range((partition, 0)..=(partition, u32::MAX))? {
                    let (key, value) = row?;
                    bits.insert(key.value().1, value.value().to_vec());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(Some((meta, bits)))
    }

    /// A recipient's stored lineage.
    pub fn lineage(&self, partition: i32, recipient: &RecipientKey) -> anyhow::Result<Option<(Lineage, u32)>> {
        let read = self.db.begin_read()?;
        let name = lineages_table(partition);
        let table = match read.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let Some(value) = table.get(recipient.as_str())? else {
            return Ok(None);
        };
        let bytes = value.value();
        Ok(Some((decode(bytes).context("a stored lineage")?, bytes.len() as u32)))
    }

    /// Writes a partition's changed lineages, bookkeeping and bits in one transaction.
    /// `before_commit` runs after the rows are written and before the commit (a fault drill
    /// aborts there).
    pub fn write(
        &self,
        partition: i32,
        lineages: &[(RecipientKey, Vec<u8>)],
        meta: &Meta,
        lists: &[(u32, Vec<u8>)],
        before_commit: impl FnOnce(),
    ) -> anyhow::Result<()> {
        self.write_partitions(
            &[PartitionWrite {
                partition,
                lineages,
                meta,
                lists,
            }],
            before_commit,
        )
    }

    /// Writes several partitions in one transaction (one fsync for all of them).
    pub fn write_partitions(&self, parts: &[PartitionWrite<'_>], before_commit: impl FnOnce()) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let mut write = self.db.begin_write()?;
        // The allocator state is saved with each commit, so reopening after a SIGKILL does not
        // walk the whole file (2.15 s for a 2 GB store without it; `vaxctl bench signer-state`).
        write.set_quick_repair(true);
        for part in parts {
            let name = lineages_table(part.partition);
            let mut table = write.open_table(TableDefinition::<&str, &[u8]>::new(&name))?;
            for (recipient, lineage) in part.lineages {
                table.insert(recipient.as_str(), lineage.as_slice())?;
            }
            drop(table);
            write
                .open_table(META)?
                .insert(part.partition, serde_json::to_vec(part.meta)?.as_slice())?;
            let mut table = write.open_table(LIST_BITS)?;
            for (list, bits) in part.lists {
                table.insert((part.partition, *list), bits.as_slice())?;
            }
        }
        before_commit();
        write.commit()?;
        metrics::counter!("vaxtrail_signer_state_writes_total").increment(1);
        metrics::histogram!("vaxtrail_signer_state_write_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Forgets a partition (its store is from another log, or ahead of this one).
    pub fn clear(&self, partition: i32) -> anyhow::Result<()> {
        let mut write = self.db.begin_write()?;
        write.set_quick_repair(true);
        let name = lineages_table(partition);
        write.delete_table(TableDefinition::<&str, &[u8]>::new(&name))?;
        write.open_table(META)?.remove(partition)?;
        write.open_table(BITS)?.remove(partition)?;
        write
            .open_table(LIST_BITS)?
            .retain_in((partition, 0)..=(partition, u32::MAX), |_, _| false)?;
        write.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(deployment: &str, offset: i64) -> Meta {
        Meta {
            format: FORMAT,
            deployment: deployment.into(),
            output_offset: offset,
            chain_head: Some(hex_of(&[7; 32])),
            next_source: 12,
            next_status_position: 5,
            since_checkpoint: 3,
            last_checkpoint_at: Utc::now(),
            chain_breaks: 0,
            recipients: 2,
            lists: Default::default(),
        }
    }

    #[test]
    fn a_partition_written_is_read_back_for_its_deployment_only_and_cleared_whole() {
        let dir = std::env::temp_dir().join(format!(
            "vaxtrail-store-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let key = |n: u8| RecipientKey::parse("recipient", &format!("{:064x}", n)).unwrap();
        let lineages = [(key(1), encode(&Lineage::default()).unwrap())];
        let written = meta("certificate-events signer", 40);
        {
            let store = Store::open(&dir, "certificate-events signer", 1 << 20).unwrap();
            store
                .write(3, &lineages[..], &written, &[(1003, vec![0b1010])], || ())
                .unwrap();
            // A write that fails before its commit leaves the previous contents.
            let later = meta("certificate-events signer", 41);
            let aborted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.write(3, &[], &later, &[(1003, vec![0xff])], || {
                    panic!("killed before the commit")
                })
            }));
            assert!(aborted.is_err());
        }
        // Reopened (a restart): the committed partition is there, the aborted write is not.
        let store = Store::open(&dir, "certificate-events signer", 1 << 20).unwrap();
        let (meta_read, bits) = store.load(3).unwrap().expect("stored");
        assert_eq!(
            (meta_read, bits),
            (written.clone(), ListBits::from([(1003, vec![0b1010])]))
        );
        // A partition of an earlier format is not read (it is rebuilt from the log).
        store.write(5, &[], &Meta { format: 1, ..written }, &[], || ()).unwrap();
        assert!(store.load(5).unwrap().is_none());
        assert!(store.lineage(3, &key(1)).unwrap().is_some());
        assert!(store.lineage(3, &key(2)).unwrap().is_none());
        assert!(store.load(4).unwrap().is_none(), "another partition");
        drop(store);
        // Another deployment's store is not taken for this one.
        let other = Store::open(&dir, "certificate-events another", 1 << 20).unwrap();
        assert!(other.load(3).unwrap().is_none());
        other.clear(3).unwrap();
        assert!(other.lineage(3, &key(1)).unwrap().is_none(), "cleared whole");
        drop(other);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let hash: Sha256 = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(digest_of(&hex_of(&hash)), Some(hash));
        assert_eq!(digest_of("zz"), None);
    }
}
