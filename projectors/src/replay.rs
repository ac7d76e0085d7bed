//! Applying spans of the log to a projection directly, without a consumer group: what
//! `vaxctl replay` does to build a shadow projection, and to bring the live one up to date after a
//! swap. The log is read on a blocking thread while the previous batch is decoded and applied;
//! a store that fails is retried with backoff, then the error is returned (what was applied stays,
//! with its offsets, so running again resumes).

use std::{collections::HashMap, time::Duration};

use platform::log::Span;
use tokio_util::sync::CancellationToken;

use crate::{
    generation::StoreLost,
    runner::{Decoder, Positioned, Projected, Projection, open},
};

/// Where the records come from.
#[derive(Clone, Debug)]
pub struct Source {
    pub brokers: String,
    pub registry_url: String,
    pub vaccination_events: String,
    pub certificate_events: String,
    /// The key store that opens sealed personal data; an erased recipient's records are skipped.
    pub keys: Option<std::sync::Arc<platform::keystore::KeyStore>>,
}

/// What a replay applied.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// Records applied, the undecodable ones included.
    pub records: u64,
    /// Records that did not decode (skipped; the live projection dead-lettered them).
    pub skipped: u64,
    /// `(topic, partition)` → the first offset not applied.
    pub ends: HashMap<(String, i32), i64>,
    /// The store's generation the records were applied to.
    pub generation: String,
}

/// How long a failing store is retried before the replay gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// The spans to apply to reach `highs` from what `projection` stored (or from each partition's
/// low watermark).
pub async fn spans_from_stored<P: Projection>(
    projection: &P,
    marks: &[platform::log::Watermarks],
) -> anyhow::Result<Vec<Span>> {
    let mut spans = Vec::with_capacity(marks.len());
    for mark in marks {
        let stored = projection.next_offset(&mark.topic, mark.partition).await?;
        spans.push(Span {
            topic: mark.topic.clone(),
            partition: mark.partition,
            from: stored.unwrap_or(mark.low).max(mark.low),
            to: mark.high,
        });
    }
    Ok(spans)
}

/// Applies the spans' records (up to the first record stamped after `until`, in milliseconds, if
/// given) to `projection` in batches of `batch`, calling `progress` with each batch's size.
pub async fn apply_spans<P: Projection>(
    source: &Source,
    projection: &P,
    spans: Vec<Span>,
    until: Option<i64>,
    batch: usize,
    progress: impl Fn(u64),
) -> anyhow::Result<Applied> {
    let (mut receiver, reader) = platform::log::stream_spans(&source.brokers, spans, until, batch);
    let decoder = Decoder::new(
        &source.registry_url,
        &source.vaccination_events,
        &source.certificate_events,
        source.keys.clone(),
    );
    let never = CancellationToken::new();
    let generation = with_retries::<P, _, _, _>(|| open(projection)).await?;
    let mut applied = Applied {
        generation: generation.id.clone(),
        ..Applied::default()
    };
    let mut failed = None;
    while let Some(messages) = receiver.recv().await {
        let mut items = Vec::with_capacity(messages.len());
        for message in &messages {
            let record = decoder.decode(&never, message).await?.ok();
            if record.is_none() {
                applied.skipped += 1;
            }
            items.push(Positioned::of(message, record.unwrap_or(Projected::Skipped)));
        }
        if let Err(error) = with_retries::<P, _, _, _>(|| projection.apply(&generation.id, &items)).await {
            failed = Some(error);
            break;
        }
        applied.records += items.len() as u64;
        progress(items.len() as u64);
    }
    drop(receiver);
    let ends = reader.await??;
    if let Some(error) = failed {
        return Err(error);
    }
    applied.ends = ends;
    Ok(applied)
}

async fn with_retries<P: Projection, T, F, Fut>(call: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let never = tokio_util::sync::CancellationToken::new();
    let answer = platform::Backoff::SERVICE
        .giving_up_after(GIVE_UP_AFTER)
        .retry(&never, call, |error| {
            let retriable = !StoreLost::is(error);
            if retriable {
                tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), "store unavailable; retrying");
            }
            retriable
        })
        .await?;
    answer.map_err(|error| {
        if StoreLost::is(&error) {
            error
        } else {
            error.context(format!("{} kept failing for {:?}", P::NAME, GIVE_UP_AFTER))
        }
    })
}
