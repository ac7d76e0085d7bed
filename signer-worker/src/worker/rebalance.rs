//! Ownership of partitions: the rebalance callbacks flush what is in flight before partitions
//! move and tell the loop what changed; the loop takes over what it was given.

use super::*;

/// A change of ownership, in the order the rebalances happened.
#[derive(Debug)]
pub(super) enum Ownership {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// Flushes what is in flight before partitions move, and tells the loop what changed.
pub(super) struct Context {
    pub(super) producer: Arc<Mutex<FutureProducer>>,
    pub(super) changes: Arc<Mutex<Vec<Ownership>>>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Nothing else produces while this runs (the loop is inside `recv`): what was sent
            // reaches the broker before the partitions move, so the next owner reads it.
            let producer = self.producer.lock().expect("not poisoned").clone();
            if let Err(error) = producer.flush(Duration::from_secs(30)) {
                tracing::error!(%error, "could not flush before giving up partitions");
            }
            let revoked: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?revoked, "partitions revoked");
            self.changes
                .lock()
                .expect("not poisoned")
                .push(Ownership::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?assigned, "partitions assigned");
            self.changes
                .lock()
                .expect("not poisoned")
                .push(Ownership::Assigned(assigned));
        }
    }
}

impl Worker {
    /// Applies the rebalances since the last call, in order: a revoked partition's state is
    /// dropped; an assigned one is rebuilt from the output log at once and its input position
    /// moved to the first unanswered record (the committed offset is only a guess, and a
    /// partition with nothing new would otherwise never be looked at).
    pub(super) async fn follow_ownership(&mut self) {
        let changes: Vec<Ownership> = std::mem::take(&mut *self.changes.lock().expect("not poisoned"));
        for change in changes {
            match change {
                Ownership::Revoked(partitions) => {
                    for partition in &partitions {
                        self.owned.remove(partition);
                        *self.epochs.entry(*partition).or_default() += 1;
                    }
                    // Flushed in the callback: every acknowledgement is in.
                    if let Err(error) = self.drain().await {
                        tracing::warn!(%error, "a write before the rebalance failed");
                        self.parked.clear();
                        self.states.clear();
                    }
                    // What the next owner (or this one, after a restart) restores from.
                    for partition in &partitions {
                        if let Some(state) = self.states.get_mut(partition)
                            && let Err(error) = state.persist(|| ())
                        {
                            tracing::warn!(partition, error = %format!("{error:#}"), "writing the state store before giving a partition up");
                        }
                    }
                    for partition in partitions {
                        if let Some(state) = self.states.remove(&partition) {
                            self.parked.insert(partition, state);
                        }
                        self.pending_seeks.remove(&partition);
                        self.committed.remove(&partition);
                    }
                }
                Ownership::Assigned(partitions) => {
                    for partition in partitions {
                        self.owned.insert(partition);
                        *self.epochs.entry(partition).or_default() += 1;
                        self.take_over(partition);
                    }
                }
            }
        }
    }

    /// Rebuilds a partition's state (or takes back the parked one if nobody wrote to the
    /// partition since) and seeks its input to the first unanswered record.
    pub(super) fn take_over(&mut self, partition: i32) {
        if let Some(mut state) = self.parked.remove(&partition) {
            let end = self
                .consumer
                .fetch_watermarks(&self.settings.certificate_events, partition, Duration::from_secs(10))
                .map(|(_, high)| high);
            if end.as_ref().is_ok_and(|high| *high == state.output_end) {
                state.position_confirmed = false;
                let next = state.next_source;
                self.states.insert(partition, state);
                self.seek(partition, next);
                metrics::counter!("vaxtrail_signer_takeovers_total", "from" => "parked").increment(1);
                return;
            }
        }
        metrics::counter!("vaxtrail_signer_takeovers_total", "from" => "log").increment(1);
        self.rebuild_in_background(partition, Duration::ZERO);
    }
}
