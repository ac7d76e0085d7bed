//! Reading the projections: Redis first, Postgres behind it. A Redis miss or error falls back to
//! Postgres, and so does a cache whose generation marker does not say complete (flushed, or
//! rebuilding from the log: see `projectors::generation`). Postgres answers only while its own
//! marker says complete, checked after each read; when it cannot answer, or is being rebuilt, the
//! answer is "unavailable" (503), never "not found" or a stale status.
//!
//! Over 400 lines: every read has its cache path and its Postgres fallback side by side, so the
//! marker check that makes a fallback trustworthy is visible next to each.

use chrono::{DateTime, Utc};
use platform::read_models::CacheKeys;
use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;

/// A dependency could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

impl From<sqlx::Error> for Unavailable {
    fn from(error: sqlx::Error) -> Self {
        Self(format!("postgres: {error}"))
    }
}

/// A certificate's EU Digital COVID Certificate.
#[derive(Clone, Debug)]
pub struct EuDcc {
    /// `HC1:…`.
    pub text: String,
    /// The document signer's kid, base64.
    pub kid: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a certificate stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Standing {
    Active,
    #[serde(rename_all = "camelCase")]
    Superseded {
        superseded_by: String,
        superseded_at: Option<DateTime<Utc>>,
    },
    #[serde(rename_all = "camelCase")]
    Revoked {
        reason: String,
        revoked_at: Option<DateTime<Utc>>,
    },
}

impl Standing {
    /// `active`, `superseded` or `revoked`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded { .. } => "superseded",
            Self::Revoked { .. } => "revoked",
        }
    }
}

/// A certificate as the read models hold it.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub id: String,
    /// The signed credential's JSON text (as signed when it comes from Redis; Postgres keeps it as
    /// `jsonb`, the same document with its keys reordered, which verifies the same).
    pub credential: String,
    pub standing: Standing,
    pub recipient_key: String,
    pub status_list: u32,
    pub status_index: u64,
}

/// One row of a recipient's certificates.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSummary {
    pub certificate_id: String,
    pub programme: String,
    pub dose: i32,
    pub total_doses: i32,
    #[serde(flatten)]
    pub standing: Standing,
    pub issued_at: DateTime<Utc>,
}

/// What happened to a vaccination event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventOutcome {
    /// `accepted` (in the log, not answered yet), `issued`, `rejected`, or `revoked` (a revocation
    /// request that revoked a certificate).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// The read side's stores.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    redis: ConnectionManager,
    keys: CacheKeys,
}

impl Store {
    /// Connects on first use; Redis answers within a second or is passed over for Postgres.
    pub fn new(pool: PgPool, redis: &redis::Client, prefix: &str) -> anyhow::Result<Self> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_millis(500)))
            .set_response_timeout(Some(std::time::Duration::from_millis(1000)))
            .set_number_of_retries(1);
        Ok(Self {
            pool,
            redis: ConnectionManager::new_lazy_with_config(redis.clone(), config)?,
            keys: CacheKeys::new(prefix),
        })
    }

    /// The Postgres pool (analytics of the pipeline's progress read offsets from it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `Ok` while the Postgres read model is complete (its generation marker says it caught up
    /// with the log). Asked after a read: a store dropped or emptied in between fails here.
    async fn trusted<T>(&self, read: T) -> Result<T, Unavailable> {
        let complete: Option<bool> = sqlx::query_scalar("SELECT complete FROM projection_generation")
            .fetch_optional(&self.pool)
            .await?;
        match complete {
            Some(true) => Ok(read),
            Some(false) => {
                metrics::counter!("vaxtrail_query_untrusted_reads_total", "store" => "postgres").increment(1);
                Err(Unavailable(
                    "postgres: the read model is being rebuilt from the log".into(),
                ))
            }
            None => Err(Unavailable("postgres: the read model has no generation marker".into())),
        }
    }

    /// A pipeline that first asks whether the cache is complete, for [`Self::cache_complete`].
    fn cache_pipe(&self) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(self.keys.marker()).arg("complete");
        pipe
    }

    /// Whether the cache's marker (the first answer of a [`Self::cache_pipe`]) says complete;
    /// counted when it does not (the read goes to Postgres).
    fn cache_complete(flag: &Option<String>) -> bool {
        let complete = flag.as_deref() == Some("1");
        if !complete {
            metrics::counter!("vaxtrail_query_untrusted_reads_total", "store" => "redis").increment(1);
        }
        complete
    }

    /// A certificate by id: Redis, else Postgres.
    pub async fn certificate(&self, id: &str) -> Result<Option<Certificate>, Unavailable> {
        match self.cached_certificate(id).await {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            Err(error) => {
                metrics::counter!("vaxtrail_query_cache_errors_total").increment(1);
                tracing::warn!(%error, "redis unavailable; reading Postgres");
            }
        }
        metrics::counter!("vaxtrail_query_cache_misses_total").increment(1);
        let row: Option<CertificateRow> = sqlx::query_as(
            "SELECT certificate_id, credential::text AS credential, status, superseded_by, superseded_at,
                    revocation_reason, revoked_at, recipient_key, status_list, status_index
             FROM certificates WHERE certificate_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        self.trusted(row.map(CertificateRow::into_certificate)).await
    }

    /// A certificate's EU DCC (Postgres), `None` inside when it has none.
    pub async fn eu_dcc(&self, id: &str) -> Result<Option<Option<EuDcc>>, Unavailable> {
        type Row = (Option<String>, Option<String>, Option<DateTime<Utc>>);
        let row: Option<Row> =
            sqlx::query_as("SELECT eu_dcc, eu_dcc_kid, eu_dcc_expires_at FROM certificates WHERE certificate_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        self.trusted(row.map(|(text, kid, expires_at)| {
            text.map(|text| EuDcc {
                text,
                kid: kid.unwrap_or_default(),
                expires_at,
            })
        }))
        .await
    }

    /// A certificate's SMART Health Card (Postgres): `(jws, kid)`, `None` inside when it has none.
    pub async fn shc(&self, id: &str) -> Result<Option<Option<(String, String)>>, Unavailable> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT shc, shc_kid FROM certificates WHERE certificate_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        self.trusted(row.map(|(jws, kid)| jws.map(|jws| (jws, kid.unwrap_or_default()))))
            .await
    }

    /// The revoked certificates whose SMART Health Card `kid` signed (Postgres).
    pub async fn revoked_shc(&self, kid: &str) -> Result<Vec<String>, Unavailable> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT certificate_id FROM certificates WHERE shc_kid = $1 AND status = 'revoked' ORDER BY certificate_id",
        )
        .bind(kid)
        .fetch_all(&self.pool)
        .await?;
        self.trusted(ids).await
    }

    /// The certificate whose SMART Health Card has this `rid` under key `kid` (Postgres).
    pub async fn shc_by_rid(&self, kid: &str, rid: &str) -> Result<Option<String>, Unavailable> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT certificate_id FROM certificates WHERE shc_rid = $1 AND shc_kid = $2")
                .bind(rid)
                .bind(kid)
                .fetch_optional(&self.pool)
                .await?;
        self.trusted(id).await
    }

    /// Whether the certificate belonged to a recipient who was erased.
    pub async fn erased(&self, id: &str) -> Result<bool, Unavailable> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM erased_certificates WHERE certificate_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Where a certificate stands, without its credential: Redis, else Postgres.
    pub async fn standing(&self, id: &str) -> Result<Option<Standing>, Unavailable> {
        let cached: Result<(Option<String>, std::collections::HashMap<String, String>), redis::RedisError> = async {
            let mut connection = self.redis.clone();
            self.cache_pipe()
                .cmd("HGETALL")
                .arg(self.keys.certificate_state(id))
                .query_async(&mut connection)
                .await
        }
        .await;
        match cached {
            Ok((complete, state)) if !state.is_empty() && Self::cache_complete(&complete) => {
                return Ok(Some(standing_of(&state)));
            }
            Ok(_) => {}
            Err(error) => {
                metrics::counter!("vaxtrail_query_cache_errors_total").increment(1);
                tracing::warn!(%error, "redis unavailable; reading Postgres");
            }
        }
        let row: Option<StandingColumns> = sqlx::query_as(
            "SELECT status, superseded_by, superseded_at, revocation_reason, revoked_at
             FROM certificates WHERE certificate_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        self.trusted(row.map(StandingColumns::into_standing)).await
    }

    async fn cached_certificate(&self, id: &str) -> Result<Option<Certificate>, redis::RedisError> {
        let mut connection = self.redis.clone();
        let (complete, credential, state): (
            Option<String>,
            Option<String>,
            std::collections::HashMap<String, String>,
        ) = self
            .cache_pipe()
            .cmd("GET")
            .arg(self.keys.certificate(id))
            .cmd("HGETALL")
            .arg(self.keys.certificate_state(id))
            .query_async(&mut connection)
            .await?;
        let Some(credential) = credential else {
            return Ok(None);
        };
        if !Self::cache_complete(&complete) {
            return Ok(None);
        }
        let field = |name: &str| state.get(name).cloned().unwrap_or_default();
        Ok(Some(Certificate {
            id: id.to_owned(),
            credential,
            standing: standing_of(&state),
            recipient_key: field("recipient"),
            status_list: field("statusList").parse().unwrap_or_default(),
            status_index: field("statusIndex").parse().unwrap_or_default(),
        }))
    }

    /// A recipient's certificates, every one with where it stands (Postgres): all of them, or
    /// only those whose vaccination `source` recorded.
    pub async fn recipient_certificates(
        &self,
        recipient_key: &str,
        source: Option<&str>,
    ) -> Result<Vec<CertificateSummary>, Unavailable> {
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT c.certificate_id, c.programme, c.dose, c.total_doses, c.status, c.superseded_by, c.superseded_at,
                    c.revocation_reason, c.revoked_at, c.issued_at
             FROM certificates c LEFT JOIN vaccinations v ON v.event_id = c.source_event_id
             WHERE c.recipient_key = $1 AND ($2::text IS NULL OR v.source_system = $2)
             ORDER BY c.programme, c.dose, c.issued_at",
        )
        .bind(recipient_key)
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        self.trusted(rows.into_iter().map(SummaryRow::into_summary).collect())
            .await
    }

    /// The recipient keys that used a DIVOC pre-enrollment code.
    pub async fn recipients_by_pre_enrollment_code(&self, code: &str) -> Result<Vec<String>, Unavailable> {
        let keys = sqlx::query_scalar(
            "SELECT recipient_key FROM recipients WHERE pre_enrollment_codes @> ARRAY[$1] ORDER BY recipient_key",
        )
        .bind(code)
        .fetch_all(&self.pool)
        .await?;
        self.trusted(keys).await
    }

    /// The outcome of a vaccination event: Redis while it is complete, else Postgres. `None` when
    /// the log has no such event (as far as the projections have read). A cache that is not
    /// complete may still hold the command API's `accepted` for an event Postgres has not read
    /// yet: that is the answer when Postgres has none.
    pub async fn event(&self, event_id: uuid::Uuid) -> Result<Option<EventOutcome>, Unavailable> {
        let mut pending = None;
        match self.cached_event(event_id).await {
            Ok((true, Some(found))) => return Ok(Some(found)),
            Ok((_, found)) => pending = found.filter(|f| f.status == "accepted"),
            Err(error) => tracing::warn!(%error, "redis unavailable; reading Postgres"),
        }
        let outcomes: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT outcome, certificate_id, rule FROM event_outcomes WHERE source_event_id = $1")
                .bind(event_id)
                .fetch_all(&self.pool)
                .await?;
        if !outcomes.is_empty() {
            let map = outcomes
                .into_iter()
                .map(|(outcome, certificate, rule)| (outcome, certificate.or(rule).unwrap_or_default()))
                .collect();
            return self.trusted(Some(outcome_of(&map))).await;
        }
        let accepted: Option<i64> = sqlx::query_scalar("SELECT log_offset FROM vaccinations WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        let found = accepted.map(|_| outcome_of(&Default::default())).or(pending);
        self.trusted(found).await
    }

    /// The cached outcome (what the command API or the cache projection wrote), and whether the
    /// cache is complete.
    async fn cached_event(&self, event_id: uuid::Uuid) -> Result<(bool, Option<EventOutcome>), redis::RedisError> {
        let mut connection = self.redis.clone();
        let (complete, fields): (Option<String>, std::collections::HashMap<String, String>) = self
            .cache_pipe()
            .cmd("HGETALL")
            .arg(self.keys.event(&event_id.to_string()))
            .query_async(&mut connection)
            .await?;
        let found = (!fields.is_empty()).then(|| outcome_of(&fields));
        Ok((Self::cache_complete(&complete), found))
    }

    /// The newest signed status list the signer published for `list` (Postgres; `None` before
    /// the projection has read one).
    pub async fn published_status_list(&self, list: u32) -> Result<Option<String>, Unavailable> {
        let found = sqlx::query_scalar("SELECT credential FROM status_lists WHERE list = $1")
            .bind(list as i32)
            .fetch_optional(&self.pool)
            .await?;
        self.trusted(found).await
    }

    /// The status lists published so far, newest numbers last, at most `limit` of them (the
    /// lowest numbers first: StatusList2021 lists, then Bitstring lists in order).
    pub async fn published_status_lists(&self, limit: i64) -> Result<Vec<u32>, Unavailable> {
        let found: Vec<i32> = sqlx::query_scalar("SELECT list FROM status_lists ORDER BY list LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(found.into_iter().map(|l| l as u32).collect())
    }

    /// The highest Bitstring Status List a partition published (`None`: none yet).
    pub async fn last_bitstring_list(&self, partition: u32) -> Result<Option<u32>, Unavailable> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT max(list) FROM status_lists WHERE list >= $1 AND list % $1 = $2")
                .bind(domain::status::FIRST_BITSTRING_LIST as i32)
                .bind(partition as i32)
                .fetch_one(&self.pool)
                .await?;
        Ok(found.map(|l| l as u32))
    }

    /// The programme a certificate belongs to (Postgres; `None` before it has read the
    /// certificate).
    pub async fn certificate_programme(&self, id: &str) -> Result<Option<String>, Unavailable> {
        let found = sqlx::query_scalar("SELECT programme FROM certificates WHERE certificate_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        self.trusted(found).await
    }

    /// The source system that recorded the vaccination a certificate answers: `None` while
    /// Postgres has not read the certificate yet (the cache can be ahead of it), `Some(None)` for
    /// a row projected before source systems were kept.
    pub async fn certificate_source(&self, id: &str) -> Result<Option<Option<String>>, Unavailable> {
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT v.source_system FROM certificates c JOIN vaccinations v ON v.event_id = c.source_event_id
             WHERE c.certificate_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        self.trusted(found).await
    }

    /// The source system that posted a vaccination event.
    pub async fn event_source(&self, event_id: uuid::Uuid) -> Result<Option<String>, Unavailable> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT source_system FROM vaccinations WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await?;
        self.trusted(found.flatten()).await
    }
}

/// A certificate's standing from its cached state hash.
fn standing_of(state: &std::collections::HashMap<String, String>) -> Standing {
    let field = |name: &str| state.get(name).cloned().unwrap_or_default();
    let time = |name: &str| {
        state
            .get(name)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    match field("status").as_str() {
        "superseded" => Standing::Superseded {
            superseded_by: field("supersededBy"),
            superseded_at: time("supersededAt"),
        },
        "revoked" => Standing::Revoked {
            reason: field("reason"),
            revoked_at: time("revokedAt"),
        },
        _ => Standing::Active,
    }
}

/// The outcome from the event's fields (`accepted`, `issued`, `superseded`, `revoked`,
/// `rejected` → certificate id or rule).
fn outcome_of(fields: &std::collections::HashMap<String, String>) -> EventOutcome {
    let get = |name: &str| fields.get(name).cloned();
    let status = if fields.contains_key("rejected") {
        "rejected"
    } else if fields.contains_key("issued") {
        "issued"
    } else if fields.contains_key("revoked") {
        "revoked"
    } else {
        "accepted"
    };
    EventOutcome {
        status: status.to_owned(),
        certificate_id: get("issued").or_else(|| get("revoked")),
        superseded: get("superseded"),
        rule: get("rejected"),
    }
}

/// The columns that say where a certificate stands.
#[derive(sqlx::FromRow)]
struct StandingColumns {
    status: String,
    superseded_by: Option<String>,
    superseded_at: Option<DateTime<Utc>>,
    revocation_reason: Option<String>,
    revoked_at: Option<DateTime<Utc>>,
}

impl StandingColumns {
    fn into_standing(self) -> Standing {
        match self.status.as_str() {
            "superseded" => Standing::Superseded {
                superseded_by: self.superseded_by.unwrap_or_default(),
                superseded_at: self.superseded_at,
            },
            "revoked" => Standing::Revoked {
                reason: self.revocation_reason.unwrap_or_default(),
                revoked_at: self.revoked_at,
            },
            _ => Standing::Active,
        }
    }
}

#[derive(sqlx::FromRow)]
struct CertificateRow {
    certificate_id: String,
    credential: String,
    #[sqlx(flatten)]
    standing: StandingColumns,
    recipient_key: String,
    status_list: i32,
    status_index: i64,
}

impl CertificateRow {
    fn into_certificate(self) -> Certificate {
        Certificate {
            standing: self.standing.into_standing(),
            id: self.certificate_id,
            credential: self.credential,
            recipient_key: self.recipient_key,
            status_list: self.status_list as u32,
            status_index: self.status_index as u64,
        }
    }
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    certificate_id: String,
    programme: String,
    dose: i32,
    total_doses: i32,
    #[sqlx(flatten)]
    standing: StandingColumns,
    issued_at: DateTime<Utc>,
}

impl SummaryRow {
    fn into_summary(self) -> CertificateSummary {
        CertificateSummary {
            standing: self.standing.into_standing(),
            certificate_id: self.certificate_id,
            programme: self.programme,
            dose: self.dose,
            total_doses: self.total_doses,
            issued_at: self.issued_at,
        }
    }
}

/// Each store's next offsets, summed per topic (for the pipeline's lag).
pub struct StoredOffsets {
    pub postgres: Result<Vec<(String, i64)>, String>,
    pub redis: Result<Vec<(String, i64)>, String>,
    /// Whether each store's generation marker says complete (`None`: no marker).
    pub postgres_complete: Result<Option<bool>, String>,
    pub redis_complete: Result<Option<bool>, String>,
}

impl Store {
    /// What the Postgres and Redis projections have applied, per topic.
    pub async fn stored_offsets(&self) -> StoredOffsets {
        let postgres = sqlx::query_as::<_, (String, i64)>(
            "SELECT topic, sum(next_offset)::bigint FROM projection_offsets GROUP BY topic",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| e.to_string());
        let redis = async {
            let mut connection = self.redis.clone();
            let offsets: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
                .arg(self.keys.offsets())
                .query_async(&mut connection)
                .await?;
            let mut sums: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
            for (field, next) in offsets {
                if let Some((topic, _)) = field.rsplit_once(':') {
                    *sums.entry(topic.to_owned()).or_default() += next;
                }
            }
            Ok::<_, redis::RedisError>(sums.into_iter().collect())
        }
        .await
        .map_err(|e| e.to_string());
        let postgres_complete = sqlx::query_scalar("SELECT complete FROM projection_generation")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| e.to_string());
        let redis_complete = async {
            let mut connection = self.redis.clone();
            let flag: Option<String> = redis::cmd("HGET")
                .arg(self.keys.marker())
                .arg("complete")
                .query_async(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(flag.map(|f| f == "1"))
        }
        .await
        .map_err(|e| e.to_string());
        StoredOffsets {
            postgres,
            redis,
            postgres_complete,
            redis_complete,
        }
    }
}
