//! A partition's revocation status lists as its signer keeps them: each list's bits (set by
//! every `CertificateRevoked` of the partition's log, never cleared), the digest of what was last
//! published for it in the log, and when. A list is published once when a certificate is first
//! placed in it (so a verifier always finds the list a credential names), then whenever its bits
//! change. See [`domain::status`] for the lists themselves.

use std::{collections::BTreeMap, time::Instant};

use avro::certificate::Sha256;
use credentials::status_list;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::store::{digest_of, hex_of};

/// One list as the store keeps its bookkeeping (its bits are stored beside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    /// SHA-256 of the bits (hex).
    pub bits_sha256: String,
    /// SHA-256 of the bits of the list last published in the log (hex; `None`: never).
    pub published: Option<String>,
}

#[derive(Debug, Default)]
struct List {
    bits: Vec<u8>,
    /// SHA-256 of `bits`, kept until a bit is set.
    digest: Option<Sha256>,
    published: Option<Sha256>,
    published_at: Option<Instant>,
}

impl List {
    fn digest(&mut self) -> Sha256 {
        *self
            .digest
            .get_or_insert_with(|| sha2::Sha256::digest(&self.bits).into())
    }
}

/// The partition's lists, by number.
#[derive(Debug, Default)]
pub struct StatusLists {
    lists: BTreeMap<u32, List>,
}

impl StatusLists {
    /// The lists a store holds: their bits and bookkeeping.
    pub fn restored(mut bits: BTreeMap<u32, Vec<u8>>, meta: &BTreeMap<u32, ListMeta>) -> Self {
        let lists = meta
            .iter()
            .map(|(&number, meta)| {
                let list = List {
                    bits: bits.remove(&number).unwrap_or_default(),
                    digest: None,
                    published: meta.published.as_deref().and_then(digest_of),
                    published_at: None,
                };
                (number, list)
            })
            .collect();
        Self { lists }
    }

    /// A list a certificate was placed in: published (once, even while no bit is set) if it
    /// never was.
    pub fn open(&mut self, list: u32) {
        self.lists.entry(list).or_default();
    }

    /// Sets a revoked certificate's bit.
    pub fn set(&mut self, list: u32, index: u64) {
        let entry = self.lists.entry(list).or_default();
        status_list::set(&mut entry.bits, index);
        entry.digest = None;
    }

    /// Folds a list published in the log: its digest, and every bit it had stays set (a status
    /// list never goes backwards). Answers the bits it had that the folded revocations lack (a
    /// fault: a record lost, or a bug), which are set again so the next list carries them.
    pub fn published(&mut self, list: u32, bits_sha256: Sha256, credential: &str) -> Result<Vec<u64>, String> {
        let entry = self.lists.entry(list).or_default();
        entry.published = Some(bits_sha256);
        let published = status_list::bits_of(credential)?;
        let missing = status_list::keep_published(&mut entry.bits, &published);
        if !missing.is_empty() {
            entry.digest = None;
        }
        Ok(missing)
    }

    /// A list's bits now.
    pub fn bits(&self, list: u32) -> Vec<u8> {
        self.lists.get(&list).map(|l| l.bits.clone()).unwrap_or_default()
    }

    /// SHA-256 of a list's bits now.
    pub fn digest(&mut self, list: u32) -> Sha256 {
        self.lists.entry(list).or_default().digest()
    }

    /// Records that this signer just published `list`.
    pub fn published_now(&mut self, list: u32) {
        self.lists.entry(list).or_default().published_at = Some(Instant::now());
    }

    /// Lists whose bits differ from those last published (or never published), leaving out those
    /// this signer published less than `interval` ago.
    pub fn due(&mut self, interval: std::time::Duration) -> Vec<u32> {
        self.lists
            .iter_mut()
            .filter(|(_, l)| l.published_at.is_none_or(|at| at.elapsed() >= interval))
            .filter_map(|(&number, l)| {
                let now = l.digest();
                (l.published != Some(now)).then_some(number)
            })
            .collect()
    }

    /// The bookkeeping the store keeps.
    pub fn meta(&mut self) -> BTreeMap<u32, ListMeta> {
        self.lists
            .iter_mut()
            .map(|(&number, l)| {
                let meta = ListMeta {
                    bits_sha256: hex_of(&l.digest()),
                    published: l.published.as_ref().map(hex_of),
                };
                (number, meta)
            })
            .collect()
    }

    /// Lists in `meta` whose bits differ from `stored`'s (or that `stored` lacks), with their bits.
    pub fn changed(
        &self,
        meta: &BTreeMap<u32, ListMeta>,
        stored: Option<&BTreeMap<u32, ListMeta>>,
    ) -> Vec<(u32, Vec<u8>)> {
        meta.iter()
            .filter(|(number, m)| {
                stored
                    .and_then(|s| s.get(number))
                    .is_none_or(|s| s.bits_sha256 != m.bits_sha256)
            })
            .map(|(&number, _)| (number, self.bits(number)))
            .collect()
    }

    /// Bits set in every list.
    pub fn revoked(&self) -> u64 {
        self.lists.values().map(|l| status_list::count(&l.bits)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_due_once_opened_then_when_a_bit_changes_and_a_published_bit_is_kept() {
        let mut lists = StatusLists::default();
        lists.open(1003);
        let zero = std::time::Duration::ZERO;
        assert_eq!(lists.due(zero), vec![1003], "a new list is published even while empty");
        let digest = lists.digest(1003);
        let empty = credentials::status_list::encode_bitstring(&[]);
        let credential = |encoded: &str| serde_json::json!({"credentialSubject": {"encodedList": encoded}}).to_string();
        assert!(lists.published(1003, digest, &credential(&empty)).unwrap().is_empty());
        assert!(lists.due(zero).is_empty());
        lists.set(1003, 70_000);
        assert_eq!(lists.due(zero), vec![1003]);
        lists.published_now(1003);
        assert!(
            lists.due(std::time::Duration::from_secs(60)).is_empty(),
            "not again within the interval"
        );

        // A published list with a bit the fold lacks: the bit is set again.
        let mut bits = Vec::new();
        credentials::status_list::set(&mut bits, 5);
        let with_five = credentials::status_list::encode_bitstring(&bits);
        let mut fresh = StatusLists::default();
        assert_eq!(
            fresh.published(2003, [0; 32], &credential(&with_five)).unwrap(),
            vec![5]
        );
        assert!(credentials::status_list::bit(&fresh.bits(2003), 5));
        assert_eq!(fresh.revoked(), 1);
    }

    #[test]
    fn only_lists_whose_bits_changed_are_written_again() {
        let mut lists = StatusLists::default();
        lists.set(1000, 1);
        lists.set(2000, 2);
        let stored = lists.meta();
        assert_eq!(lists.changed(&stored, None).len(), 2);
        lists.set(2000, 3);
        let now = lists.meta();
        let changed = lists.changed(&now, Some(&stored));
        assert_eq!(changed.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![2000]);
        let restored = StatusLists::restored(changed.into_iter().collect(), &now);
        assert_eq!(restored.bits(2000), lists.bits(2000));
    }
}
