//! Where certificates' status bits live.
//!
//! Credentials of data model 1.1 (issued before VC 2.0) sit in one `StatusList2021` list per
//! partition of `certificate-events` (list number = partition, indexes allocated in order: a list
//! grows with the population, and its order tells when its people were vaccinated). Those lists
//! are kept and served as they are, so those credentials keep verifying and stay revocable.
//!
//! VC 2.0 credentials sit in Bitstring Status Lists of a fixed size, [`LIST_SIZE`] entries: each
//! partition fills its lists one after the other (a new list when one is full) and places its
//! n-th certificate of a list at a position given by a keyed permutation of the list's indexes
//! (NIST FF1 format-preserving encryption, by the `fpe` crate, under a key derived from the
//! deployment's id secret, tweaked by the list): a list's bits do not say who was vaccinated
//! first, and no two certificates share a bit. The permutation is inverted to read a slot back
//! into its place in the partition's sequence, which is how a rebuild from the log knows where
//! the next certificate goes.

use aes::Aes256;
use fpe::ff1::{FF1, FlexibleNumeralString};

use crate::{credential::StatusSlot, ids::IdKey};

/// Entries in one Bitstring Status List: 2^20 (128 KiB of bits; the Recommendation asks for at
/// least 131,072, and FF1 for a domain of at least a million).
pub const LIST_SIZE: u64 = 1 << 20;
/// The first Bitstring Status List number. Below it are the `StatusList2021` lists of data model
/// 1.1 credentials, numbered by partition.
pub const FIRST_BITSTRING_LIST: u32 = 1000;
/// Partitions of `certificate-events` a deployment may have: a list number carries its partition
/// (`1000 × (n + 1) + partition` for the partition's n-th list).
pub const MAX_PARTITIONS: u32 = FIRST_BITSTRING_LIST;
/// The largest list sequence number (list numbers stay within PostgreSQL's `integer`).
const MAX_SEQUENCE: u64 = (i32::MAX as u64) / FIRST_BITSTRING_LIST as u64 - 2;
/// FF1 numerals: two of radix 1024 make the 2^20 indexes.
const RADIX: u32 = 1024;

impl StatusSlot {
    /// Whether the slot is in a Bitstring Status List (a VC 2.0 credential's) rather than in a
    /// partition's `StatusList2021` list (a data model 1.1 credential's).
    pub fn is_bitstring(&self) -> bool {
        is_bitstring_list(self.list)
    }

    /// The `certificate-events` partition whose signer keeps the list.
    pub fn partition(&self) -> u32 {
        list_partition(self.list)
    }
}

/// Whether `list` names a Bitstring Status List.
pub fn is_bitstring_list(list: u32) -> bool {
    list >= FIRST_BITSTRING_LIST
}

/// The `certificate-events` partition whose signer keeps list number `list`.
pub fn list_partition(list: u32) -> u32 {
    list % FIRST_BITSTRING_LIST
}

/// Why a slot cannot be allocated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("partition {0} is beyond the {MAX_PARTITIONS} partitions status lists are numbered for")]
    Partition(u32),
    #[error("partition {0} has used every status list it can number")]
    Exhausted(u32),
}

/// Places certificates in Bitstring Status Lists (see the module's description).
pub struct StatusAllocator {
    ff1: FF1<Aes256>,
}

impl std::fmt::Debug for StatusAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusAllocator([redacted])")
    }
}

impl StatusAllocator {
    /// The allocator of a deployment, keyed by its id secret.
    pub fn new(key: &IdKey) -> Self {
        Self {
            ff1: FF1::new(&key.status_permutation_key(), RADIX).expect("1024 is a valid FF1 radix"),
        }
    }

    /// The slot of the partition's certificate number `position` (0, 1, 2, … in the order the
    /// partition's signer issues them).
    pub fn slot(&self, partition: u32, position: u64) -> Result<StatusSlot, SlotError> {
        if partition >= MAX_PARTITIONS {
            return Err(SlotError::Partition(partition));
        }
        let sequence = position / LIST_SIZE;
        if sequence > MAX_SEQUENCE {
            return Err(SlotError::Exhausted(partition));
        }
        let list = FIRST_BITSTRING_LIST * (sequence as u32 + 1) + partition;
        let offset = position % LIST_SIZE;
        let numerals = FlexibleNumeralString::from(vec![(offset / 1024) as u16, (offset % 1024) as u16]);
        let permuted: Vec<u16> = self
            .ff1
            .encrypt(&list.to_be_bytes(), &numerals)
            .expect("two radix-1024 numerals are a valid FF1 input")
            .into();
        Ok(StatusSlot {
            list,
            index: u64::from(permuted[0]) * 1024 + u64::from(permuted[1]),
        })
    }

    /// The position a Bitstring Status List slot was allocated at (the inverse of [`slot`]);
    /// `None` for a `StatusList2021` slot or an index outside the list.
    ///
    /// [`slot`]: StatusAllocator::slot
    pub fn position(&self, slot: &StatusSlot) -> Option<u64> {
        if !slot.is_bitstring() || slot.index >= LIST_SIZE {
            return None;
        }
        let sequence = u64::from(slot.list / FIRST_BITSTRING_LIST - 1);
        let numerals = FlexibleNumeralString::from(vec![(slot.index / 1024) as u16, (slot.index % 1024) as u16]);
        let plain: Vec<u16> = self.ff1.decrypt(&slot.list.to_be_bytes(), &numerals).ok()?.into();
        Some(sequence * LIST_SIZE + u64::from(plain[0]) * 1024 + u64::from(plain[1]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn slots_fill_one_list_then_the_next_and_read_back_to_their_position() {
        let allocator = StatusAllocator::new(&IdKey::development());
        let first = allocator.slot(7, 0).unwrap();
        assert_eq!(first.list, 1007);
        assert!(first.is_bitstring() && first.partition() == 7);
        let last = allocator.slot(7, LIST_SIZE - 1).unwrap();
        assert_eq!(last.list, 1007);
        let next = allocator.slot(7, LIST_SIZE).unwrap();
        assert_eq!((next.list, next.partition()), (2007, 7));
        for position in [0, 1, 2, 999, LIST_SIZE - 1, LIST_SIZE, 5 * LIST_SIZE + 12_345] {
            let slot = allocator.slot(7, position).unwrap();
            assert!(slot.index < LIST_SIZE);
            assert_eq!(allocator.position(&slot), Some(position), "{slot:?}");
        }
        assert_eq!(allocator.position(&StatusSlot { list: 7, index: 3 }), None);
        assert_eq!(allocator.slot(1000, 0), Err(SlotError::Partition(1000)));
    }

    #[test]
    fn a_list_is_a_permutation_whose_order_does_not_follow_issue_order() {
        let allocator = StatusAllocator::new(&IdKey::development());
        let indexes: Vec<u64> = (0..20_000).map(|p| allocator.slot(3, p).unwrap().index).collect();
        // No two certificates share a bit (FF1 is a permutation; checked on a sample here, and
        // every position reads back to itself above).
        assert_eq!(indexes.iter().copied().collect::<HashSet<_>>().len(), indexes.len());
        // The first thousand certificates are spread over the whole list, not at its start.
        let early = &indexes[..1000];
        assert!(early.iter().filter(|&&i| i < LIST_SIZE / 2).count().abs_diff(500) < 80);
        assert!(early.windows(2).filter(|w| w[1] > w[0]).count().abs_diff(500) < 80);
        // Another list, and another deployment's key, place them elsewhere.
        let other_list = allocator.slot(3, LIST_SIZE).unwrap().index;
        let other_key = StatusAllocator::new(&IdKey::new(b"another deployment"))
            .slot(3, 0)
            .unwrap()
            .index;
        assert!(indexes[0] != other_list || indexes[0] != other_key);
    }
}
