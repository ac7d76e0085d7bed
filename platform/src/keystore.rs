//! The key store: the data keys that seal personal data in the log, wrapped by the deployment's
//! key-encryption key, in PostgreSQL tables of their own (schema `keystore` by default), outside
//! the log. Erasing a person deletes their keys here; the sealed records in the log can then never
//! be opened again.
//!
//! - `data_keys`: one row per key, with the recipient it is **bound** to. Intake seals each record
//!   with a fresh key from a pool this process created ahead, in bulk ([`POOL_BATCH`] keys a
//!   statement, durable before any is used), so a vaccination costs no key-store round trip; the
//!   key is then bound to its recipient in the background ([`BIND_BATCH`] a statement). A record's
//!   AEAD binds its ciphertext to the recipient, so a pooled key opens nothing else.
//! - Binding is completed **in the log's order** by the one consumer that reads every record of a
//!   recipient in order, the signer ([`KeyStore::read_in_log_order`]): it binds the key of each
//!   record it opens that intake had not bound yet (a crash lost the background binding), and at a
//!   recipient's `RecipientErased` deletes every key bound to them ([`KeyStore::erase_bound`]).
//!   Every record before the erasure then has its key gone; records after it (a later
//!   vaccination) have new keys. The erasure request itself ([`KeyStore::erase`]) deletes the keys
//!   already bound at once.
//! - `erasures`: who was erased, when, by whom, and which key ids went. It holds no personal data
//!   (recipient keys are keyed hashes). A key-store backup restored later is made to forget again
//!   by `vaxctl keystore reapply-erasures`, which deletes the keys of every record the log shows
//!   before each erasure ([`KeyStore::reapply_erasures`]).
//!
//! Reads cache unwrapped keys for at most [`READ_CACHE_TTL`], and forget a recipient's keys as soon
//! as their `RecipientErased` event is read (the codecs call [`DataKeys::forget`]). The signer
//! seals what it writes with the key that opened the record it answers.

use std::{
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

/// Keys one pool statement creates (unbound, durable before any is handed out).
pub const POOL_BATCH: usize = 512;
/// The pool is refilled in the background when it holds fewer keys than this.
const POOL_LOW: usize = 128;
/// Most bindings one background statement writes.
pub const BIND_BATCH: usize = 1024;
/// How long the background binder gathers bindings before a statement.
const BIND_GATHER: Duration = Duration::from_millis(100);
/// Bindings waiting beyond those: intake waits when it is full (the store is down).
const BIND_QUEUE: usize = 65_536;

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
    db: sqlx::PgPool,
    schema: String,
    kek: Arc<dyn Kek>,
    prepared: tokio::sync::OnceCell<()>,
    read_cache: quick_cache::sync::Cache<KeyId, (RecipientKey, DataKey, Instant)>,
    /// Keys created ahead for writing, and what refills them.
    pool: Arc<Pool>,
    /// The background binder's queue, started on first use (it needs a runtime; it stops when
    /// the store is dropped).
    bindings: std::sync::OnceLock<tokio::sync::mpsc::Sender<(KeyId, RecipientKey)>>,
    /// Statements that created pooled keys.
    pool_statements: Arc<std::sync::atomic::AtomicU64>,
    /// Set by [`KeyStore::read_in_log_order`]: each recipient's key that last opened one of
    /// their records, which then seals what is written for them; and every key opened is bound.
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

/// What a pooled key's wrapping is bound to: its id (it is created before its recipient is known;
/// the record's own AEAD binds the ciphertext to the recipient).
fn pooled_binding(id: KeyId) -> Vec<u8> {
    format!("vaxtrail pooled data key|{id}").into_bytes()
}

/// Keys created ahead, handed out one per record.
struct Pool {
    db: sqlx::PgPool,
    kek: Arc<dyn Kek>,
    keys: std::sync::Mutex<std::collections::VecDeque<(KeyId, DataKey)>>,
    /// Held while a statement refills the pool: one refill at a time.
    refilling: Arc<tokio::sync::Mutex<()>>,
    statements: Arc<std::sync::atomic::AtomicU64>,
}

impl Pool {
    fn take(&self) -> Option<(KeyId, DataKey)> {
        self.keys.lock().expect("the pool's lock").pop_front()
    }

    fn len(&self) -> usize {
        self.keys.lock().expect("the pool's lock").len()
    }

    /// Creates [`POOL_BATCH`] keys in one statement and adds them once they are durable.
    async fn refill(&self) -> Result<(), KeysError> {
        let started = Instant::now();
        let fresh: Vec<(KeyId, DataKey)> = (0..POOL_BATCH).map(|_| (KeyId::random(), DataKey::random())).collect();
        let ids: Vec<uuid::Uuid> = fresh.iter().map(|(id, _)| id.0).collect();
        let wrapped: Vec<Vec<u8>> = fresh
            .iter()
            .map(|(id, key)| self.kek.wrap(key, &pooled_binding(*id)))
            .collect();
        self.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = sqlx::query(
            "INSERT INTO data_keys (key_id, kek_id, wrapped, pooled)
             SELECT key_id, $3, wrapped, true FROM unnest($1::uuid[], $2::bytea[]) AS i(key_id, wrapped)",
        )
        .bind(&ids)
        .bind(&wrapped)
        .bind(self.kek.id())
        .execute(&self.db)
        .await
        .map_err(unavailable);
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::histogram!("vaxtrail_keystore_seconds", "op" => "pool", "result" => result)
            .record(started.elapsed().as_secs_f64());
        outcome?;
        metrics::counter!("vaxtrail_keystore_keys_created_total").increment(POOL_BATCH as u64);
        self.keys.lock().expect("the pool's lock").extend(fresh);
        Ok(())
    }
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
        let pool_statements = Arc::<std::sync::atomic::AtomicU64>::default();
        Self {
            pool: Arc::new(Pool {
                db: pool.clone(),
                kek: kek.clone(),
                keys: std::sync::Mutex::default(),
                refilling: Arc::default(),
                statements: pool_statements.clone(),
            }),
            pool_statements,
            db: pool,
            schema: schema.to_owned(),
            kek,
            prepared: tokio::sync::OnceCell::new(),
            read_cache: quick_cache::sync::Cache::new(100_000),
            bindings: std::sync::OnceLock::new(),
            opened: std::sync::OnceLock::new(),
        }
    }

    /// Creates the schema and tables if missing, and brings tables of the earlier layout (one key
    /// per recipient) to this one (under an advisory lock: several services may start at once).
    async fn prepare(&self) -> Result<(), KeysError> {
        self.prepared
            .get_or_try_init(|| async {
                let mut tx = self.db.begin().await.map_err(unavailable)?;
                sqlx::query("SELECT pg_advisory_xact_lock(7307202612)")
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                let schema = &self.schema;
                let statements = [
                    format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {schema}.data_keys (
                            key_id uuid PRIMARY KEY, recipient_key text,
                            kek_id text NOT NULL, wrapped bytea NOT NULL,
                            pooled boolean NOT NULL DEFAULT false,
                            created_at timestamptz NOT NULL DEFAULT now())"
                    ),
                    // The earlier layout: a recipient's one key, bound at creation.
                    format!(
                        "ALTER TABLE {schema}.data_keys ADD COLUMN IF NOT EXISTS pooled boolean NOT NULL DEFAULT false"
                    ),
                    format!("ALTER TABLE {schema}.data_keys ALTER COLUMN recipient_key DROP NOT NULL"),
                    format!("ALTER TABLE {schema}.data_keys DROP CONSTRAINT IF EXISTS data_keys_recipient_key_key"),
                    format!("CREATE INDEX IF NOT EXISTS data_keys_by_recipient ON {schema}.data_keys (recipient_key)"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {schema}.erasures (
                            recipient_key text NOT NULL, key_ids uuid[] NOT NULL,
                            actor text NOT NULL, erased_at timestamptz NOT NULL DEFAULT now())"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS erasures_by_recipient ON {schema}.erasures (recipient_key)"),
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

    /// A key for writing the recipient's record: the one that opened their latest record (the
    /// signer), else a fresh one from the pool, bound to them in the background (intake) or at
    /// once (the signer, which must have every key of a recipient bound before it reads their
    /// erasure).
    async fn write_key(&self, recipient: &RecipientKey) -> Result<(KeyId, DataKey), KeysError> {
        if let Some(found) = self.opened.get().and_then(|opened| opened.get(recipient)) {
            return Ok(found);
        }
        self.prepare().await?;
        let (id, key) = self.pooled().await?;
        if self.opened.get().is_some() {
            self.bind_now(id, recipient).await?;
            self.opened_with(recipient, id, &key);
        } else {
            self.bind_later(id, recipient).await?;
        }
        Ok((id, key))
    }

    /// A key from the pool: refilled in the background when it runs low, and at once (one
    /// statement for everyone waiting) when it is empty.
    async fn pooled(&self) -> Result<(KeyId, DataKey), KeysError> {
        loop {
            if let Some(key) = self.pool.take() {
                if self.pool.len() < POOL_LOW
                    && let Ok(guard) = self.pool.refilling.clone().try_lock_owned()
                {
                    let pool = self.pool.clone();
                    tokio::spawn(async move {
                        if let Err(error) = pool.refill().await {
                            tracing::warn!(%error, "refilling the data-key pool in the background");
                        }
                        drop(guard);
                    });
                }
                return Ok(key);
            }
            let _refilling = self.pool.refilling.lock().await;
            if self.pool.len() == 0 {
                self.pool.refill().await?;
            }
        }
    }

    /// Binds a key to its recipient in the background: a statement per [`BIND_BATCH`] bindings
    /// or [`BIND_GATHER`], retried until the store answers. Waits only when the queue is full.
    async fn bind_later(&self, id: KeyId, recipient: &RecipientKey) -> Result<(), KeysError> {
        let queue = self.bindings.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::channel(BIND_QUEUE);
            tokio::spawn(bind_batches(self.db.clone(), receiver));
            sender
        });
        queue
            .send((id, recipient.clone()))
            .await
            .map_err(|_| KeysError::Unavailable("the key store's binder stopped".into()))
    }

    /// Binds a key to `recipient` now, unless it is bound already. `false`: it is bound to someone
    /// else, or gone.
    async fn bind_now(&self, id: KeyId, recipient: &RecipientKey) -> Result<bool, KeysError> {
        let bound = sqlx::query(
            "UPDATE data_keys SET recipient_key = $2
             WHERE key_id = $1 AND (recipient_key IS NULL OR recipient_key = $2)",
        )
        .bind(id.0)
        .bind(recipient.as_str())
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        metrics::counter!("vaxtrail_keystore_bound_in_log_order_total").increment(1);
        Ok(bound.rows_affected() == 1)
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
        let row = sqlx::query("SELECT wrapped, recipient_key, pooled FROM data_keys WHERE key_id = $1")
            .bind(id.0)
            .fetch_optional(&self.db)
            .await
            .map_err(unavailable)?;
        let owner: Option<Option<String>> = row.as_ref().map(|row| row.get("recipient_key"));
        let readable = match owner.as_ref() {
            None => false,
            Some(Some(owner)) => owner == recipient.as_str(),
            // Not bound yet: the signer binds it before going on (it reads in the log's order);
            // any other reader opens it, the record's own AEAD binding it to the recipient.
            Some(None) => self.opened.get().is_none() || self.bind_now(id, recipient).await?,
        };
        let Some(row) = row.filter(|_| readable) else {
            self.read_cache.remove(&id);
            return Ok(None);
        };
        let wrapped = row.get::<&[u8], _>("wrapped");
        let key = if row.get::<bool, _>("pooled") {
            self.kek.unwrap(wrapped, &pooled_binding(id))?
        } else {
            self.kek.unwrap(wrapped, &binding(recipient, id))?
        };
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

    /// For the one consumer that reads every recipient's records in the log's order and writes
    /// what it derives from them (the signer): every key it opens is bound to its recipient
    /// before it goes on (intake binds in the background, and a crash can lose that), so its
    /// [`KeyStore::erase_bound`] at a recipient's `RecipientErased` deletes the keys of all their
    /// earlier records; and what it writes for a recipient is sealed with the key that opened
    /// their latest record, so it stays readable exactly as long as that record does. A
    /// recipient's `RecipientErased`, read in order, makes the store forget that key
    /// ([`DataKeys::forget`]).
    pub fn read_in_log_order(&self) {
        self.opened.get_or_init(|| quick_cache::sync::Cache::new(100_000));
    }

    /// How many statements have created pooled keys (each creates [`POOL_BATCH`]).
    pub fn pool_statements(&self) -> u64 {
        self.pool_statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Erases a recipient: deletes the data keys bound to them and records the erasure, in one
    /// transaction. Keys of their records not bound yet go when the signer reads the
    /// `RecipientErased` this is followed by ([`KeyStore::erase_bound`]).
    pub async fn erase(&self, recipient: &RecipientKey, actor: &str) -> Result<Erasure, KeysError> {
        let erased = self.timed("erase", self.delete_bound(recipient, actor, true)).await?;
        metrics::counter!("vaxtrail_keystore_erasures_total").increment(1);
        Ok(erased)
    }

    /// At a recipient's `RecipientErased`, read in the log's order (the signer): deletes every key
    /// still bound to them (those of their records intake had not bound when the erasure was
    /// asked), recording them as erased. Idempotent.
    pub async fn erase_bound(&self, recipient: &RecipientKey) -> Result<Erasure, KeysError> {
        self.timed(
            "erase_bound",
            self.delete_bound(recipient, "signer (RecipientErased in the log)", false),
        )
        .await
    }

    /// Deletes the keys bound to `recipient` and records them as erased by `actor`: always for an
    /// erasure asked (`record_none`: the request is on record even when no key was bound), only
    /// when some went for the signer's.
    async fn delete_bound(
        &self,
        recipient: &RecipientKey,
        actor: &str,
        record_none: bool,
    ) -> Result<Erasure, KeysError> {
        self.prepare().await?;
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("DELETE FROM data_keys WHERE recipient_key = $1 RETURNING key_id")
                .bind(recipient.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        if record_none || !ids.is_empty() {
            sqlx::query("INSERT INTO erasures (recipient_key, key_ids, actor) VALUES ($1, $2, $3)")
                .bind(recipient.as_str())
                .bind(&ids)
                .bind(actor)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        self.forget(recipient);
        Ok(Erasure {
            recipient: recipient.clone(),
            key_ids: ids.into_iter().map(KeyId).collect(),
        })
    }

    /// Deletes again every data key an erasure named: those the key store's own `erasures` table
    /// records, and `logged` (the keys of every record the log shows before its recipient's
    /// `RecipientErased`, which a key-store backup taken before the erasure still holds).
    /// Returns how many keys went.
    pub async fn reapply_erasures(&self, logged: &[KeyId]) -> Result<u64, KeysError> {
        self.prepare().await?;
        let logged: Vec<uuid::Uuid> = logged.iter().map(|k| k.0).collect();
        let gone = sqlx::query(
            "DELETE FROM data_keys
             WHERE key_id = ANY($1) OR key_id IN (SELECT unnest(key_ids) FROM erasures)",
        )
        .bind(&logged)
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(gone.rows_affected())
    }
}

/// The background binder: gathers bindings for [`BIND_GATHER`] (or until [`BIND_BATCH`] wait)
/// and writes each batch in one statement, retrying a failed one (intake goes on meanwhile; the
/// signer binds in the log's order whatever is left). Ends when the store is dropped.
async fn bind_batches(db: sqlx::PgPool, mut queue: tokio::sync::mpsc::Receiver<(KeyId, RecipientKey)>) {
    let mut batch = Vec::new();
    loop {
        if queue.recv_many(&mut batch, BIND_BATCH).await == 0 {
            return;
        }
        tokio::time::sleep(BIND_GATHER).await;
        let room = BIND_BATCH.saturating_sub(batch.len());
        if room > 0 {
            let mut more = Vec::new();
            while let Ok(binding) = queue.try_recv() {
                more.push(binding);
                if more.len() == room {
                    break;
                }
            }
            batch.extend(more);
        }
        let ids: Vec<uuid::Uuid> = batch.iter().map(|(id, _)| id.0).collect();
        let recipients: Vec<&str> = batch.iter().map(|(_, r)| r.as_str()).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let outcome = sqlx::query(
                "UPDATE data_keys d SET recipient_key = b.recipient_key
                 FROM unnest($1::uuid[], $2::text[]) AS b(key_id, recipient_key)
                 WHERE d.key_id = b.key_id AND d.recipient_key IS NULL",
            )
            .bind(&ids)
            .bind(&recipients)
            .execute(&db)
            .await;
            let result = if outcome.is_ok() { "ok" } else { "error" };
            metrics::histogram!("vaxtrail_keystore_seconds", "op" => "bind", "result" => result)
                .record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, bindings = ids.len(), "binding data keys to their recipients; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::histogram!("vaxtrail_keystore_bind_batch_size").record(batch.len() as f64);
        batch.clear();
    }
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
