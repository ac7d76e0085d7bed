//! The key store: every recipient's data key, wrapped by the deployment's key-encryption key, in
//! PostgreSQL tables of their own (schema `keystore` by default), outside the log. Erasing a
//! person deletes their keys here; the sealed records in the log can then never be opened again.
//!
//! - `data_keys`: one current key per recipient (`recipient_key` is unique). A write for a
//!   recipient without one creates it; after an erasure the next vaccination gets a new key.
//! - `erasures`: who was erased, when, by whom, and which key ids went. It holds no personal data
//!   (recipient keys are keyed hashes), so a key-store backup restored later can be made to forget
//!   again (`vaxctl keystore restore` deletes every key named here).
//!
//! Writes ask the store every time (a key created or erased is seen by the next write at once);
//! concurrent writes share one statement (group commit, [`write_batches`]). Reads cache unwrapped
//! keys for at most [`READ_CACHE_TTL`], and forget a recipient's keys as soon as their
//! `RecipientErased` event is read (the codecs call [`DataKeys::forget`]). The signer, which reads
//! each recipient's records in order, seals what it writes with the key that opened the record it
//! answers ([`KeyStore::seal_with_opened_keys`]).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use domain::values::RecipientKey;
use futures::{FutureExt, future::BoxFuture};
use privacy::{DataKey, DataKeys, FileKek, Kek, KeyId, KeysError};
use sqlx::Row;

use crate::{EnvironmentArgs, config::SecretUrl};

/// Longest an unwrapped key is reused without asking the store again.
pub const READ_CACHE_TTL: Duration = Duration::from_secs(60);

/// Most recipients one write statement looks up or creates.
const WRITE_BATCH: usize = 256;
/// Write statements in flight at once. One: while it runs, the next batch gathers (measured with
/// `vaxctl bench ingest`: one in flight made batches of ~4 and cost least; four made batches of ~1).
/// The pool holds more connections for reads and erasures.
const WRITES_IN_FLIGHT: usize = 1;
/// Write requests waiting beyond those: a sender waits when it is full.
const WRITE_QUEUE: usize = 4096;

/// Key store settings.
#[derive(Clone, Debug, Args)]
pub struct KeystoreArgs {
    /// PostgreSQL URL of the key store holding the wrapped data keys (may hold a password; never
    /// logged). Unset: personal data is written to the log in the clear, which only development
    /// allows.
    #[arg(
        id = "keystore_url",
        long = "keystore-url",
        env = "VAXTRAIL_KEYSTORE_URL",
        hide_env_values = true
    )]
    pub url: Option<SecretUrl>,
    /// Schema of the key store's tables.
    #[arg(
        id = "keystore_schema",
        long = "keystore-schema",
        env = "VAXTRAIL_KEYSTORE_SCHEMA",
        default_value = "keystore"
    )]
    pub schema: String,
    /// File holding the key-encryption key (64 hex characters; `vaxctl keystore init` writes one).
    #[arg(id = "kek_file", long = "kek-file", env = "VAXTRAIL_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
}

impl KeystoreArgs {
    /// The key store, or `None` when none is configured (development only).
    pub fn open(&self, environment: &EnvironmentArgs) -> anyhow::Result<Option<Arc<KeyStore>>> {
        let Some(url) = &self.url else {
            if environment.is_development() {
                tracing::warn!("no key store (VAXTRAIL_KEYSTORE_URL): personal data is written in the clear");
                return Ok(None);
            }
            anyhow::bail!(
                "VAXTRAIL_KEYSTORE_URL is unset: outside development personal data is never written in the clear; set it (and VAXTRAIL_KEK_FILE) to the key store"
            );
        };
        let kek_file = self.kek_file.as_ref().ok_or_else(|| {
            anyhow::anyhow!("VAXTRAIL_KEK_FILE must name the key-encryption key beside VAXTRAIL_KEYSTORE_URL")
        })?;
        crate::config::valid_schema(&self.schema)?;
        let kek = FileKek::load(kek_file)?;
        // Notices ("schema already exists, skipping") are not worth a log line per start.
        let settings = [
            ("search_path", self.schema.as_str()),
            ("client_min_messages", "warning"),
        ];
        let pool = crate::config::lazy_pool(url, &settings, 10)?;
        Ok(Some(Arc::new(KeyStore::new(pool, &self.schema, Arc::new(kek)))))
    }
}

/// The key store over PostgreSQL.
pub struct KeyStore {
    pool: sqlx::PgPool,
    schema: String,
    kek: Arc<dyn Kek>,
    prepared: tokio::sync::OnceCell<()>,
    read_cache: quick_cache::sync::Cache<KeyId, (RecipientKey, DataKey, Instant)>,
    /// The batch writer's queue, started on first use (it needs a runtime; it stops when the
    /// store is dropped).
    writes: std::sync::OnceLock<tokio::sync::mpsc::Sender<WriteRequest>>,
    /// Write statements run so far (each answers a batch).
    write_statements: Arc<std::sync::atomic::AtomicU64>,
    /// Set by [`KeyStore::seal_with_opened_keys`]: each recipient's key that last opened one of
    /// their records, which then seals what is written for them.
    opened: std::sync::OnceLock<quick_cache::sync::Cache<RecipientKey, (KeyId, DataKey)>>,
}

/// One erasure, as the key store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub recipient: RecipientKey,
    /// The keys deleted (none when the recipient had none: already erased, or never seen).
    pub key_ids: Vec<KeyId>,
}

fn unavailable(error: impl std::fmt::Display) -> KeysError {
    KeysError::Unavailable(error.to_string())
}

/// What a wrapped key is bound to: its recipient and id, so a row moved to another recipient
/// does not unwrap.
fn binding(recipient: &RecipientKey, id: KeyId) -> Vec<u8> {
    format!("vaxtrail data key|{}|{id}", recipient.as_str()).into_bytes()
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("schema", &self.schema)
            .field("kek", &self.kek.id())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    pub fn new(pool: sqlx::PgPool, schema: &str, kek: Arc<dyn Kek>) -> Self {
        Self {
            pool,
            schema: schema.to_owned(),
            kek,
            prepared: tokio::sync::OnceCell::new(),
            read_cache: quick_cache::sync::Cache::new(100_000),
            writes: std::sync::OnceLock::new(),
            write_statements: Arc::default(),
            opened: std::sync::OnceLock::new(),
        }
    }

    /// Creates the schema and tables if missing (under an advisory lock: several services may
    /// start at once).
    async fn prepare(&self) -> Result<(), KeysError> {
        self.prepared
            .get_or_try_init(|| async {
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                sqlx::query("SELECT pg_advisory_xact_lock(7307202612)")
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let statements = [
                    format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {}.data_keys (
                            key_id uuid PRIMARY KEY, recipient_key text NOT NULL UNIQUE,
                            kek_id text NOT NULL, wrapped bytea NOT NULL,
                            created_at timestamptz NOT NULL DEFAULT now())",
                        self.schema
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {}.erasures (
                            recipient_key text NOT NULL, key_ids uuid[] NOT NULL,
                            actor text NOT NULL, erased_at timestamptz NOT NULL DEFAULT now())",
                        self.schema
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS erasures_by_recipient ON {}.erasures (recipient_key)",
                        self.schema
                    ),
                ];
                for statement in statements {
                    sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                tx.commit().await.map_err(unavailable)
            })
            .await
            .map(|_| ())
    }

    fn unwrap(&self, recipient: &RecipientKey, id: KeyId, wrapped: &[u8]) -> Result<DataKey, KeysError> {
        Ok(self.kek.unwrap(wrapped, &binding(recipient, id))?)
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, KeysError>>,
    ) -> Result<T, KeysError> {
        let started = Instant::now();
        let outcome = work.await;
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::histogram!("vaxtrail_keystore_seconds", "op" => op, "result" => result)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// The recipient's data key for writing: looked up or created by the batch writer, which
    /// answers every request waiting at the time in one statement.
    async fn write_key(&self, recipient: &RecipientKey) -> Result<(KeyId, DataKey), KeysError> {
        if let Some(found) = self.opened.get().and_then(|opened| opened.get(recipient)) {
            return Ok(found);
        }
        self.prepare().await?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let writes = self.writes.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::channel(WRITE_QUEUE);
            tokio::spawn(write_batches(
                BatchWriter {
                    pool: self.pool.clone(),
                    kek: self.kek.clone(),
                    statements: self.write_statements.clone(),
                },
                receiver,
            ));
            sender
        });
        writes
            .send(WriteRequest {
                recipient: recipient.clone(),
                reply,
            })
            .await
            .map_err(|_| KeysError::Unavailable("the key store's batch writer stopped".into()))?;
        answer
            .await
            .map_err(|_| KeysError::Unavailable("the key store's batch writer dropped a request".into()))?
    }

    async fn read_key(&self, recipient: &RecipientKey, id: KeyId) -> Result<Option<DataKey>, KeysError> {
        if let Some((owner, key, at)) = self.read_cache.get(&id)
            && owner == *recipient
            && at.elapsed() < READ_CACHE_TTL
        {
            self.opened_with(recipient, id, &key);
            return Ok(Some(key));
        }
        self.prepare().await?;
        let row = sqlx::query("SELECT wrapped FROM data_keys WHERE key_id = $1 AND recipient_key = $2")
            .bind(id.0)
            .bind(recipient.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            self.read_cache.remove(&id);
            return Ok(None);
        };
        let key = self.unwrap(recipient, id, row.get::<&[u8], _>("wrapped"))?;
        self.read_cache
            .insert(id, (recipient.clone(), key.clone(), Instant::now()));
        self.opened_with(recipient, id, &key);
        Ok(Some(key))
    }

    fn opened_with(&self, recipient: &RecipientKey, id: KeyId, key: &DataKey) {
        if let Some(opened) = self.opened.get() {
            opened.insert(recipient.clone(), (id, key.clone()));
        }
    }

    /// For a consumer that reads a recipient's records in the log's order and writes what it
    /// derives from them (the signer): what is written for a recipient is sealed with the key that
    /// opened their latest record, so writing costs no round trip, and what is derived from a
    /// record stays readable exactly as long as the record does. A recipient's `RecipientErased`,
    /// read in order, makes the store forget that key ([`DataKeys::forget`]); a recipient without
    /// an opened key (records written in the clear) gets their key from the store as usual.
    pub fn seal_with_opened_keys(&self) {
        self.opened.get_or_init(|| quick_cache::sync::Cache::new(100_000));
    }

    /// How many write statements have answered this store's requests for writing keys (each
    /// answers every request waiting at the time).
    pub fn write_statements(&self) -> u64 {
        self.write_statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Erases a recipient: deletes their data keys and records the erasure, in one transaction.
    pub async fn erase(&self, recipient: &RecipientKey, actor: &str) -> Result<Erasure, KeysError> {
        self.timed("erase", async {
            self.prepare().await?;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let ids: Vec<uuid::Uuid> =
                sqlx::query_scalar("DELETE FROM data_keys WHERE recipient_key = $1 RETURNING key_id")
                    .bind(recipient.as_str())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            sqlx::query("INSERT INTO erasures (recipient_key, key_ids, actor) VALUES ($1, $2, $3)")
                .bind(recipient.as_str())
                .bind(&ids)
                .bind(actor)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            self.forget(recipient);
            metrics::counter!("vaxtrail_keystore_erasures_total").increment(1);
            Ok(Erasure {
                recipient: recipient.clone(),
                key_ids: ids.into_iter().map(KeyId).collect(),
            })
        })
        .await
    }

    /// Deletes again every data key an erasure named: those the key store's own `erasures` table
    /// records, and `logged` (the key ids of the log's `RecipientErased` events, which a key-store
    /// backup taken before the erasure does not know of). Returns how many keys went.
    pub async fn reapply_erasures(&self, logged: &[KeyId]) -> Result<u64, KeysError> {
        self.prepare().await?;
        let logged: Vec<uuid::Uuid> = logged.iter().map(|k| k.0).collect();
        let gone = sqlx::query(
            "DELETE FROM data_keys
             WHERE key_id = ANY($1) OR key_id IN (SELECT unnest(key_ids) FROM erasures)",
        )
        .bind(&logged)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(gone.rows_affected())
    }
}

/// A request for a recipient's key for writing, answered by [`write_batches`].
struct WriteRequest {
    recipient: RecipientKey,
    reply: tokio::sync::oneshot::Sender<Result<(KeyId, DataKey), KeysError>>,
}

/// What the batch writer needs of the store.
#[derive(Clone)]
struct BatchWriter {
    pool: sqlx::PgPool,
    kek: Arc<dyn Kek>,
    statements: Arc<std::sync::atomic::AtomicU64>,
}

/// Group commit for key writes: takes every request waiting (up to [`WRITE_BATCH`]) and answers
/// them with one statement, with up to [`WRITES_IN_FLIGHT`] statements at once. Concurrent intake
/// thus costs one round trip and one commit per batch rather than per vaccination; a lone request
/// goes at once, so an idle store adds no delay. Ends when the store (every sender) is dropped.
async fn write_batches(writer: BatchWriter, mut requests: tokio::sync::mpsc::Receiver<WriteRequest>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT));
    loop {
        // A slot first: while every statement is in flight, requests gather into the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if requests.recv_many(&mut batch, WRITE_BATCH).await == 0 {
            return;
        }
        let writer = writer.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            metrics::histogram!("vaxtrail_keystore_write_batch_size").record(batch.len() as f64);
            let outcome = writer.answer(batch).await;
            let result = if outcome { "ok" } else { "error" };
            metrics::histogram!("vaxtrail_keystore_seconds", "op" => "write_batch", "result" => result)
                .record(started.elapsed().as_secs_f64());
            drop(slot);
        });
    }
}

impl BatchWriter {
    /// Looks up or creates the key of every recipient in the batch in one statement, and answers
    /// each request. Returns whether the statement succeeded.
    async fn answer(&self, batch: Vec<WriteRequest>) -> bool {
        // One fresh key per distinct recipient (a recipient may be asked for twice in a batch).
        let mut fresh: HashMap<RecipientKey, (KeyId, DataKey)> = HashMap::new();
        for request in &batch {
            fresh
                .entry(request.recipient.clone())
                .or_insert_with(|| (KeyId::random(), DataKey::random()));
        }
        let mut ids = Vec::with_capacity(fresh.len());
        let mut recipients = Vec::with_capacity(fresh.len());
        let mut wrapped = Vec::with_capacity(fresh.len());
        for (recipient, (id, key)) in &fresh {
            ids.push(id.0);
            recipients.push(recipient.as_str().to_owned());
            wrapped.push(self.kek.wrap(key, &binding(recipient, *id)));
        }
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut found = self.write(&ids, &recipients, &wrapped).await;
        if let Ok(rows) = &mut found
            && rows.len() < fresh.len()
        {
            // A recipient without a row: another statement (a batch in flight beside this one, or
            // another service) inserted their key after this one's snapshot. Read it.
            let missing: Vec<String> = {
                let seen: std::collections::HashSet<&RecipientKey> = rows.iter().map(|(r, _, _)| r).collect();
                fresh
                    .keys()
                    .filter(|r| !seen.contains(r))
                    .map(|r| r.as_str().to_owned())
                    .collect()
            };
            match self.current(&missing).await {
                Ok(more) => rows.extend(more),
                Err(error) => found = Err(error),
            }
        }
        let ok = found.is_ok();
        let mut answers: HashMap<RecipientKey, Result<(KeyId, DataKey), KeysError>> = HashMap::new();
        let mut created = 0_u64;
        match found {
            Ok(rows) => {
                for (recipient, id, wrapped) in rows {
                    let answer = match fresh.get(&recipient) {
                        Some((fresh_id, key)) if *fresh_id == id => {
                            created += 1;
                            Ok((id, key.clone()))
                        }
                        _ => self
                            .kek
                            .unwrap(&wrapped, &binding(&recipient, id))
                            .map(|key| (id, key))
                            .map_err(KeysError::from),
                    };
                    answers.insert(recipient, answer);
                }
            }
            Err(error) => {
                for request in &batch {
                    answers.insert(request.recipient.clone(), Err(error.clone()));
                }
            }
        }
        metrics::counter!("vaxtrail_keystore_keys_created_total").increment(created);
        for request in batch {
            // Still no row: another writer's key was erased between the two statements.
            let answer = answers
                .get(&request.recipient)
                .cloned()
                .unwrap_or(Err(KeysError::Erasing));
            // The requester may have gone (a cancelled HTTP request): nothing to answer.
            let _ = request.reply.send(answer);
        }
        ok
    }

    /// The current keys of `recipients` (those that have one).
    async fn current(&self, recipients: &[String]) -> Result<Vec<(RecipientKey, KeyId, Vec<u8>)>, KeysError> {
        let rows = sqlx::query("SELECT key_id, recipient_key, wrapped FROM data_keys WHERE recipient_key = ANY($1)")
            .bind(recipients)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(keyed_row).collect()
    }

    /// One round trip: each recipient's key if they have one, else the fresh one inserted (and
    /// made durable) in the same statement. A fresh key is wasted when one exists: generating and
    /// wrapping it costs about a microsecond, a second round trip far more.
    async fn write(
        &self,
        ids: &[uuid::Uuid],
        recipients: &[String],
        wrapped: &[Vec<u8>],
    ) -> Result<Vec<(RecipientKey, KeyId, Vec<u8>)>, KeysError> {
        let rows = sqlx::query(
            "WITH input AS (
                    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS i(key_id, recipient_key, wrapped)),
                  existing AS (
                    SELECT key_id, recipient_key, wrapped FROM data_keys
                    WHERE recipient_key = ANY($2)),
                  created AS (
                    INSERT INTO data_keys (key_id, recipient_key, kek_id, wrapped)
                    SELECT key_id, recipient_key, $4, wrapped FROM input
                    WHERE recipient_key NOT IN (SELECT recipient_key FROM existing)
                    ON CONFLICT (recipient_key) DO NOTHING
                    RETURNING key_id, recipient_key, wrapped)
             SELECT key_id, recipient_key, wrapped FROM existing
             UNION ALL SELECT key_id, recipient_key, wrapped FROM created",
        )
        .bind(ids)
        .bind(recipients)
        .bind(wrapped)
        .bind(self.kek.id())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter().map(keyed_row).collect()
    }
}

fn keyed_row(row: sqlx::postgres::PgRow) -> Result<(RecipientKey, KeyId, Vec<u8>), KeysError> {
    let recipient = RecipientKey::parse("recipientKey", row.get::<&str, _>("recipient_key"))
        .map_err(|e| KeysError::Unavailable(format!("the key store holds a malformed recipient key: {e:?}")))?;
    Ok((recipient, KeyId(row.get("key_id")), row.get("wrapped")))
}

impl DataKeys for KeyStore {
    fn for_writing<'a>(&'a self, recipient: &'a RecipientKey) -> BoxFuture<'a, Result<(KeyId, DataKey), KeysError>> {
        self.timed("write", self.write_key(recipient)).boxed()
    }

    fn for_reading<'a>(
        &'a self,
        recipient: &'a RecipientKey,
        id: KeyId,
    ) -> BoxFuture<'a, Result<Option<DataKey>, KeysError>> {
        self.timed("read", self.read_key(recipient, id)).boxed()
    }

    fn forget(&self, recipient: &RecipientKey) {
        self.read_cache.retain(|_, (owner, _, _)| owner != recipient);
        if let Some(opened) = self.opened.get() {
            opened.remove(recipient);
        }
    }
}
