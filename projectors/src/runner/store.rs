//! The store a projection writes, as the loop sees it: the generation it writes for, the
//! targets it must reach while it rebuilds, and the periodic check that its marker is still there.

use super::*;

/// The generation the loop writes, and what it must reach while it rebuilds.
pub(super) struct Store<'a, P> {
    projection: &'a P,
    settings: &'a Settings,
    pub(super) generation: Generation,
    /// Set while the generation is not complete.
    targets: Option<Targets>,
    /// Each partition's low watermark when the rebuild began.
    lows: HashMap<(String, i32), i64>,
    settled: Instant,
    checked: Instant,
}

impl<'a, P: Projection> Store<'a, P> {
    /// Opens the store's generation (beginning one if it has none); a generation that is not
    /// complete is rebuilding towards the log's high watermarks as they are now.
    pub(super) async fn open(
        projection: &'a P,
        settings: &'a Settings,
        stop: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let health = &settings.health;
        retry::<P, _, _, _>(stop, health, "preparing the store", || projection.prepare()).await?;
        let generation =
            retry::<P, _, _, _>(stop, health, "reading the generation marker", || open(projection)).await?;
        let mut store = Self {
            projection,
            settings,
            targets: None,
            lows: HashMap::new(),
            generation,
            settled: Instant::now(),
            checked: Instant::now(),
        };
        if !store.generation.complete {
            let topics = [settings.vaccination_events.clone(), settings.certificate_events.clone()];
            let marks = retry::<P, _, _, _>(stop, health, "reading the log's watermarks", || {
                platform::log::watermarks_async(&settings.brokers, &topics)
            })
            .await?;
            store.targets = Some(Targets(
                marks.iter().map(|m| ((m.topic.clone(), m.partition), m.high)).collect(),
            ));
            store.lows = marks.iter().map(|m| ((m.topic.clone(), m.partition), m.low)).collect();
        }
        store.report();
        Ok(store)
    }

    fn report(&self) {
        let rebuilding = self.targets.as_ref().map(|t| {
            let records: i64 = t.0.values().sum();
            format!("generation {}, towards {records} records", self.generation.id)
        });
        metrics::gauge!("vaxtrail_projection_rebuilding", "projection" => P::NAME).set(if rebuilding.is_some() {
            1.0
        } else {
            0.0
        });
        self.settings.health.rebuilding(rebuilding);
    }

    /// While rebuilding, at most every second: marks the generation complete once every
    /// partition's stored position reached its target (whichever instance applied it). A store
    /// that cannot answer is asked again next time (the batches wait for it meanwhile).
    pub(super) async fn settle(&mut self) {
        if let Err(error) = self.try_settle().await {
            tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), "checking the rebuild's progress");
        }
    }

    async fn try_settle(&mut self) -> anyhow::Result<()> {
        let Some(targets) = &self.targets else {
            return Ok(());
        };
        if self.settled.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.settled = Instant::now();
        let mut stored = HashMap::new();
        for (topic, partition) in targets.0.keys() {
            let next = self.projection.next_offset(topic, *partition).await?;
            stored.insert((topic.clone(), *partition), next);
        }
        if targets.short(&stored, &self.lows) == 0 {
            self.projection.complete(&self.generation.id).await?;
            tracing::info!(projection = P::NAME, generation = %self.generation.id, "rebuilt: the store caught up with the log");
            self.generation.complete = true;
            self.targets = None;
            self.report();
        }
        Ok(())
    }

    /// [`StoreLost`] when the store no longer holds this generation's marker (asked at most every
    /// [`CHECK_EVERY`]; a store that cannot answer is asked again next time).
    pub(super) async fn still_there(&mut self) -> anyhow::Result<()> {
        if self.checked.elapsed() < CHECK_EVERY {
            return Ok(());
        }
        self.checked = Instant::now();
        match self.projection.generation().await {
            Ok(found) => Ok(StoreLost::check(&self.generation.id, found.map(|g| g.id))?),
            Err(error) => {
                tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), "checking the generation marker");
                Ok(())
            }
        }
    }
}
