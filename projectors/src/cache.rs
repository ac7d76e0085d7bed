//! The Redis cache: what verifiers and citizens hit hardest. A batch's writes and its partitions'
//! next offsets go in one MULTI/EXEC, so the cache resumes exactly after what it applied; every
//! write is idempotent and commutes with the writes after it (a re-issued certificate that was
//! since superseded or revoked is not brought back, a revoked one is not superseded: both are
//! guarded scripts), so a replay's catch-up may apply records again in any order. The cache can be flushed and rebuilt from the log.

//!
//! Its keys are [`platform::read_models::CacheKeys`], the scheme the query API reads.

use avro::certificate::CertificateBody;
use domain::events::CertificateOutcome;
use platform::read_models::CacheKeys;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::{
    generation::{Generation, StoreLost},
    runner::{Positioned, Projected, Projection},
};

const ISSUE: &str = r"
if redis.call('HSETNX', KEYS[1], 'status', 'active') == 1 then
  redis.call('HSET', KEYS[1], 'recipient', ARGV[2], 'statusList', ARGV[3], 'statusIndex', ARGV[4])
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[5])
end
return 0
";

/// Supersedes unless revoked already: a replay's catch-up may apply a correction after the
/// revocation that followed it, and revoked is where a certificate ends.
const SUPERSEDE: &str = r"
if redis.call('HGET', KEYS[1], 'status') ~= 'revoked' then
  redis.call('HSET', KEYS[1], 'status', 'superseded', 'supersededBy', ARGV[1], 'supersededAt', ARGV[2])
end
return 0
";

/// Marks the generation complete if it is still the marker's.
const COMPLETE: &str = r"
if redis.call('HGET', KEYS[1], 'generation') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'complete', '1')
end
return 0
";

/// The Redis projection.
pub struct RedisProjection {
    client: redis::Client,
    keys: CacheKeys,
    connection: OnceCell<ConnectionManager>,
}

impl RedisProjection {
    pub fn new(client: redis::Client, prefix: &str) -> Self {
        Self {
            client,
            keys: CacheKeys::new(prefix),
            connection: OnceCell::new(),
        }
    }

    async fn connection(&self) -> anyhow::Result<ConnectionManager> {
        Ok(self
            .connection
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await?
            .clone())
    }
}

impl Projection for RedisProjection {
    const NAME: &'static str = "redis";

    async fn prepare(&self) -> anyhow::Result<()> {
        let mut connection = self.connection().await?;
        redis::cmd("PING").query_async::<()>(&mut connection).await?;
        Ok(())
    }

    async fn next_offset(&self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        let mut connection = self.connection().await?;
        Ok(redis::cmd("HGET")
            .arg(self.keys.offsets())
            .arg(CacheKeys::offset_field(topic, partition))
            .query_async(&mut connection)
            .await?)
    }

    async fn generation(&self) -> anyhow::Result<Option<Generation>> {
        let mut connection = self.connection().await?;
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.marker())
            .query_async(&mut connection)
            .await?;
        Ok(fields.get("generation").map(|id| Generation {
            id: id.clone(),
            complete: fields.get("complete").is_some_and(|c| c == "1"),
        }))
    }

    async fn begin(&self, generation: &Generation) -> anyhow::Result<()> {
        let mut connection = self.connection().await?;
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(self.keys.offsets())
            .arg(self.keys.marker())
            .ignore()
            .cmd("HSET")
            .arg(self.keys.marker())
            .arg("generation")
            .arg(&generation.id)
            .arg("complete")
            .arg(if generation.complete { "1" } else { "0" })
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn complete(&self, id: &str) -> anyhow::Result<()> {
        let mut connection = self.connection().await?;
        redis::cmd("EVAL")
            .arg(COMPLETE)
            .arg(1)
            .arg(self.keys.marker())
            .arg(id)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// Writes the batch in one MULTI/EXEC that also reads the marker. Redis cannot make the
    /// writes conditional on it, so a batch that finds the marker gone (the cache was flushed
    /// since the last one) has written into the emptied cache: [`StoreLost`] then begins a new
    /// generation, which forgets those offsets and rebuilds from the first record.
    async fn apply(&self, id: &str, batch: &[Positioned]) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HGET").arg(self.keys.marker()).arg("generation");
        for item in batch {
            match &item.record {
                Projected::Vaccination(envelope) => {
                    pipe.cmd("HSETNX")
                        .arg(self.keys.event(&envelope.event.event_id.to_string()))
                        .arg("accepted")
                        .arg(envelope.provenance.recorded_at.to_rfc3339())
                        .ignore();
                }
                Projected::Certificate(envelope) => self.certificate(&mut pipe, envelope),
                Projected::Skipped => {}
            }
            pipe.cmd("HSET")
                .arg(self.keys.offsets())
                .arg(CacheKeys::offset_field(&item.topic, item.partition))
                .arg(item.offset + 1)
                .ignore();
        }
        let mut connection = self.connection().await?;
        let (found,): (Option<String>,) = pipe.query_async(&mut connection).await?;
        Ok(StoreLost::check(id, found)?)
    }
}

impl RedisProjection {
    fn certificate(&self, pipe: &mut redis::Pipeline, envelope: &avro::certificate::CertificateEnvelope) {
        let CertificateBody::Outcome {
            recipient_key,
            event,
            credential,
            ..
        } = &envelope.body
        else {
            return;
        };
        let event_key = self.keys.event(&event.answers.to_string());
        let current = self.keys.recipient_current(recipient_key.as_str());
        match &event.outcome {
            CertificateOutcome::CertificateIssued {
                certificate_id, status, ..
            } => {
                let id = certificate_id.as_str();
                let text = credential.as_ref().map(|c| c.text.as_str()).unwrap_or_default();
                pipe.cmd("EVAL")
                    .arg(ISSUE)
                    .arg(3)
                    .arg(self.keys.certificate_state(id))
                    .arg(self.keys.certificate(id))
                    .arg(&current)
                    .arg(text)
                    .arg(recipient_key.as_str())
                    .arg(status.list)
                    .arg(status.index)
                    .arg(id)
                    .ignore();
                pipe.cmd("HSET").arg(&event_key).arg("issued").arg(id).ignore();
            }
            CertificateOutcome::CertificateSuperseded {
                certificate_id,
                superseded_by,
                ..
            } => {
                let id = certificate_id.as_str();
                pipe.cmd("EVAL")
                    .arg(SUPERSEDE)
                    .arg(1)
                    .arg(self.keys.certificate_state(id))
                    .arg(superseded_by.as_str())
                    .arg(envelope.recorded_at.to_rfc3339())
                    .ignore();
                pipe.cmd("SREM").arg(&current).arg(id).ignore();
                pipe.cmd("HSET").arg(&event_key).arg("superseded").arg(id).ignore();
            }
            CertificateOutcome::CertificateRevoked {
                certificate_id,
                reason,
                status,
            } => {
                let id = certificate_id.as_str();
                pipe.cmd("HSET")
                    .arg(self.keys.certificate_state(id))
                    .arg("status")
                    .arg("revoked")
                    .arg("reason")
                    .arg(reason.as_str())
                    .arg("revokedAt")
                    .arg(envelope.recorded_at.to_rfc3339())
                    .ignore();
                pipe.cmd("SREM").arg(&current).arg(id).ignore();
                pipe.cmd("SADD").arg(self.keys.revoked()).arg(id).ignore();
                pipe.cmd("SETBIT")
                    .arg(self.keys.status_list(&status.list.to_string()))
                    .arg(status.index)
                    .arg(1)
                    .ignore();
                pipe.cmd("HSET").arg(&event_key).arg("revoked").arg(id).ignore();
            }
            CertificateOutcome::CertificateRejected { rule, .. } => {
                pipe.cmd("HSET").arg(&event_key).arg("rejected").arg(rule).ignore();
            }
            // The erased recipient's certificates leave the cache (a read then goes to
            // PostgreSQL, which answers 410 Gone for them).
            CertificateOutcome::RecipientErased { certificates } => {
                for id in certificates {
                    pipe.cmd("DEL")
                        .arg(self.keys.certificate(id.as_str()))
                        .arg(self.keys.certificate_state(id.as_str()))
                        .ignore();
                }
                pipe.cmd("DEL").arg(&current).ignore();
                pipe.cmd("HSET").arg(&event_key).arg("erased").arg(1).ignore();
            }
        }
    }
}

/// Replaces the projection's keys under `live` by those under `shadow`, in one script: readers
/// see the old cache or the new one, never a mix. It scans the keyspace and renames every key of
/// the shadow, holding Redis meanwhile: 0.4 s for 56,000 keys among 120,000 here (measured by the
/// disaster drill), so seconds per million keys.
const SWAP: &str = r"
local families = cjson.decode(ARGV[3])
local moved = 0
for _, family in ipairs(families) do
  for _, key in ipairs(redis.call('KEYS', ARGV[1] .. family)) do
    redis.call('DEL', key)
  end
end
for _, family in ipairs(families) do
  for _, key in ipairs(redis.call('KEYS', ARGV[2] .. family)) do
    redis.call('RENAME', key, ARGV[4] .. string.sub(key, #ARGV[5] + 1))
    moved = moved + 1
  end
end
return moved
";

/// A prefix with the glob characters of `KEYS` patterns escaped.
fn glob_escaped(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Makes the keys under `shadow` the projection's keys under `live` (see [`SWAP`]); returns how
/// many keys moved.
pub async fn swap_prefixes(client: &redis::Client, live: &str, shadow: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(
        !live.is_empty() && !shadow.is_empty() && !shadow.starts_with(live) && !live.starts_with(shadow),
        "the live and shadow key prefixes must be non-empty and neither a prefix of the other"
    );
    let mut connection = client.get_multiplexed_async_connection().await?;
    // The script runs for as long as the keys take (the default wait is half a second).
    connection.set_response_timeout(std::time::Duration::from_secs(600));
    let moved: u64 = redis::cmd("EVAL")
        .arg(SWAP)
        .arg(0)
        .arg(glob_escaped(live))
        .arg(glob_escaped(shadow))
        .arg(serde_json::to_string(&CacheKeys::FAMILIES)?)
        .arg(live)
        .arg(shadow)
        .query_async(&mut connection)
        .await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_of_a_prefix_are_escaped_for_keys() {
        assert_eq!(super::glob_escaped("vaxtrail:"), "vaxtrail:");
        assert_eq!(super::glob_escaped("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
