//! A store's generation marker: which incarnation of a read model the stored rows and positions
//! belong to, and whether it has caught up with the log once (complete) or is being rebuilt.
//!
//! The marker lives in the store beside the positions, so it goes wherever they go: a Redis
//! `FLUSHALL`, a dropped schema or database takes it with the data. Every batch is written only
//! if the marker is still the one the projection started from; a marker that is gone (or that
//! another writer replaced) stops the batch with [`StoreLost`], and the runner reads the store
//! again: a missing marker begins a new generation from the log's first record, a present one is
//! adopted with the positions stored beside it. Readers (the query API) trust a store only while
//! its marker says complete.

use std::collections::HashMap;

/// The marker of a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Random, chosen when the generation began.
    pub id: String,
    /// The store caught up with the log once since the generation began: every record up to its
    /// stored positions is in it.
    pub complete: bool,
}

impl Generation {
    /// A new generation, not complete.
    pub fn begin() -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            complete: false,
        }
    }
}

/// The store's marker is not the one the batch was written for: the store lost its data (or was
/// swapped for a rebuilt one) and its stored positions no longer describe what the runner holds.
#[derive(Debug, thiserror::Error)]
#[error("the store's generation marker is {found:?}, not {expected:?}: the store lost its data or was replaced")]
pub struct StoreLost {
    pub expected: String,
    pub found: Option<String>,
}

impl StoreLost {
    /// `Ok` when `found` is the generation `expected`, else the error.
    pub fn check(expected: &str, found: Option<String>) -> Result<(), Self> {
        match found {
            Some(found) if found == expected => Ok(()),
            found => Err(Self {
                expected: expected.to_owned(),
                found,
            }),
        }
    }

    /// Whether `error` (or a cause of it) is a lost store.
    pub fn is(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<Self>())
    }
}

/// What a rebuilding store must reach to be complete: each partition's high watermark when the
/// rebuild began.
#[derive(Clone, Debug, Default)]
pub struct Targets(pub HashMap<(String, i32), i64>);

impl Targets {
    /// The partitions still short of their target, given a partition's stored next offset (or
    /// `None`); a partition whose target is its low watermark (nothing to apply) is never short.
    pub fn short(&self, stored: &HashMap<(String, i32), Option<i64>>, lows: &HashMap<(String, i32), i64>) -> usize {
        self.0
            .iter()
            .filter(|(key, target)| {
                let low = lows.get(*key).copied().unwrap_or(0);
                let reached = stored.get(*key).copied().flatten().unwrap_or(low);
                reached < **target
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_refused_when_the_marker_is_gone_or_replaced() {
        assert!(StoreLost::check("a", Some("a".into())).is_ok());
        assert!(StoreLost::check("a", None).is_err());
        assert!(StoreLost::check("a", Some("b".into())).is_err());
        let error = anyhow::Error::from(StoreLost::check("a", None).unwrap_err()).context("applying a batch");
        assert!(StoreLost::is(&error));
        assert!(!StoreLost::is(&anyhow::anyhow!("connection refused")));
    }

    #[test]
    fn a_rebuild_is_complete_once_every_partition_reached_its_target() {
        let key = |t: &str, p| (t.to_owned(), p);
        let targets = Targets(HashMap::from([(key("v", 0), 10), (key("v", 1), 5), (key("c", 0), 3)]));
        let lows = HashMap::from([(key("c", 0), 3)]);
        let mut stored = HashMap::from([(key("v", 0), Some(10)), (key("v", 1), Some(4))]);
        // v/1 is one short; c/0 has nothing to apply (its low is its target).
        assert_eq!(targets.short(&stored, &lows), 1);
        stored.insert(key("v", 1), Some(5));
        assert_eq!(targets.short(&stored, &lows), 0);
        assert_eq!(targets.short(&HashMap::new(), &HashMap::new()), 3);
    }
}
