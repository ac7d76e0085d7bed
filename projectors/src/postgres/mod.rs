//! The Postgres projection: recipients, vaccinations, certificates and event outcomes. A batch's
//! rows and the next offsets of its partitions are committed in one transaction, so after a crash
//! the projection resumes exactly after what it applied; every write is an idempotent upsert keyed
//! by an id from the log, so a redelivery or a replay changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use avro::{
    certificate::{CertificateBody, CertificateEnvelope},
    vaccination::VaccinationEnvelope,
};
use chrono::{DateTime, NaiveDate, Utc};
use domain::events::{CertificateOutcome, VaccinationPayload};
use sqlx::types::Uuid;
use sqlx::{PgPool, Postgres, Transaction};

use crate::{
    generation::{Generation, StoreLost},
    runner::{Positioned, Projected, Projection},
};

mod rows;

use rows::Rows;

/// The projection's migrations, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The Postgres projection.
#[derive(Clone)]
pub struct PostgresProjection {
    pool: PgPool,
}

impl PostgresProjection {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool it writes through (its `search_path` is the projection's schema).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the schema the pool's `search_path` names if it is missing (a dropped schema comes
    /// back empty), then applies the migrations (idempotent).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let schema: String = sqlx::query_scalar("SELECT current_setting('search_path')")
            .fetch_one(&self.pool)
            .await?;
        if let Ok(schema) = valid_schema(schema.trim()) {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
                .execute(&self.pool)
                .await?;
        }
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

/// Whether a statement failed because the store's tables or schema are gone (undefined table,
/// undefined schema): the store lost its data, no retry brings it back.
fn gone(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P01" || code == "3F000")
}

/// The generation marker, read inside `tx` and held (`FOR SHARE`) until it ends.
async fn marker(tx: &mut Transaction<'_, Postgres>) -> sqlx::Result<Option<Generation>> {
    let row: Option<(String, bool)> =
        sqlx::query_as("SELECT generation, complete FROM projection_generation FOR SHARE")
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|(id, complete)| Generation { id, complete }))
}

impl Projection for PostgresProjection {
    const NAME: &'static str = "postgres";

    async fn prepare(&self) -> anyhow::Result<()> {
        self.migrate().await
    }

    async fn next_offset(&self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT next_offset FROM projection_offsets WHERE topic = $1 AND partition = $2")
                .bind(topic)
                .bind(partition)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Read without a lock: a transaction left open here would hold the row against
    /// [`Projection::complete`] until its pooled connection happened to be used again.
    async fn generation(&self) -> anyhow::Result<Option<Generation>> {
        let row: Result<Option<(String, bool)>, _> =
            sqlx::query_as("SELECT generation, complete FROM projection_generation")
                .fetch_optional(&self.pool)
                .await;
        match row {
            Ok(found) => Ok(found.map(|(id, complete)| Generation { id, complete })),
            Err(error) if gone(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn begin(&self, generation: &Generation) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM projection_offsets").execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO projection_generation (generation, complete) VALUES ($1, $2)
             ON CONFLICT (only_row) DO UPDATE SET generation = EXCLUDED.generation,
               complete = EXCLUDED.complete, begun_at = now()",
        )
        .bind(&generation.id)
        .bind(generation.complete)
        .execute(&mut *tx)
        .await?;
        Ok(tx.commit().await?)
    }

    async fn complete(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE projection_generation SET complete = true WHERE generation = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies a batch and stores its partitions' next offsets, in one transaction that holds the
    /// generation marker: a handful of multi-row statements (arrays bound once and `UNNEST`ed),
    /// whatever the batch's size.
    async fn apply(&self, id: &str, batch: &[Positioned]) -> anyhow::Result<()> {
        let mut rows = Rows::default();
        for item in batch {
            match &item.record {
                Projected::Vaccination(envelope) => rows.vaccination(item, envelope),
                Projected::Certificate(envelope) => rows.certificate(item, envelope),
                Projected::Skipped => {}
            }
            let slot = rows.next.entry((item.topic.clone(), item.partition)).or_default();
            *slot = (*slot).max(item.offset + 1);
        }
        let mut tx = self.pool.begin().await?;
        let written = async {
            let found = match marker(&mut tx).await {
                Ok(found) => found.map(|g| g.id),
                Err(error) if gone(&error) => None,
                Err(error) => return Err(error.into()),
            };
            StoreLost::check(id, found)?;
            rows.write(&mut tx).await?;
            anyhow::Ok(())
        }
        .await;
        match written {
            Ok(()) => Ok(tx.commit().await?),
            Err(error) => {
                // At once, not when the pooled connection is next used: the transaction holds
                // the marker row, which `begin` and `complete` wait for.
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }
}

pub use platform::config::valid_schema;

/// Makes `shadow` the `live` schema in one transaction: the live one (if any) is renamed away and
/// dropped, the shadow renamed to its name. Statements that were using the old tables wait for the
/// transaction, then find the new ones by name (the services' `search_path` names the schema).
pub async fn swap_schemas(admin: &PgPool, live: &str, shadow: &str) -> anyhow::Result<()> {
    let (live, shadow) = (valid_schema(live)?, valid_schema(shadow)?);
    let replaced = format!("{live}_replaced");
    let sql = |text: String| sqlx::query(sqlx::AssertSqlSafe(text));
    let mut tx = admin.begin().await?;
    sql("SET LOCAL lock_timeout = '60s'".into()).execute(&mut *tx).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(live)
        .fetch_one(&mut *tx)
        .await?;
    sql(format!("DROP SCHEMA IF EXISTS {replaced} CASCADE"))
        .execute(&mut *tx)
        .await?;
    if exists {
        sql(format!("ALTER SCHEMA {live} RENAME TO {replaced}"))
            .execute(&mut *tx)
            .await?;
    }
    sql(format!("ALTER SCHEMA {shadow} RENAME TO {live}"))
        .execute(&mut *tx)
        .await?;
    if exists {
        sql(format!("DROP SCHEMA {replaced} CASCADE")).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_schema_names_are_spliced_into_sql() {
        assert!(super::valid_schema("public_replay").is_ok());
        for bad in ["", "Public", "1s", "s; DROP SCHEMA public", "s-x", &"s".repeat(64)] {
            assert!(super::valid_schema(bad).is_err(), "{bad:?}");
        }
    }
}
