//! The Postgres projection: recipients, vaccinations, certificates and event outcomes. A batch's
//! rows and the next offsets of its partitions are committed in one transaction, so after a crash
//! the projection resumes exactly after what it applied; every write is an idempotent upsert keyed
//! by an id from the log, so a redelivery or a replay changes nothing.

use std::collections::BTreeMap;

use avro::{
    certificate::{CertificateBody, CertificateEnvelope},
    vaccination::VaccinationEnvelope,
};
use domain::events::{CertificateOutcome, VaccinationPayload};
use sqlx::{PgPool, Postgres, Transaction};

use crate::runner::{Positioned, Projected, Projection};

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

    /// Applies the migrations (idempotent).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
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

    /// Applies a batch and stores its partitions' next offsets, in one transaction.
    async fn apply(&self, batch: &[Positioned]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for item in batch {
            match &item.record {
                Projected::Vaccination(envelope) => vaccination(&mut tx, item, envelope).await?,
                Projected::Certificate(envelope) => certificate(&mut tx, item, envelope).await?,
                Projected::Skipped => {}
            }
            let slot = next.entry((item.topic.as_str(), item.partition)).or_default();
            *slot = (*slot).max(item.offset + 1);
        }
        for ((topic, partition), offset) in next {
            sqlx::query(
                "INSERT INTO projection_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = GREATEST(projection_offsets.next_offset, EXCLUDED.next_offset)",
            )
            .bind(topic)
            .bind(partition)
            .bind(offset)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }
}

async fn vaccination(
    tx: &mut Transaction<'_, Postgres>,
    at: &Positioned,
    envelope: &VaccinationEnvelope,
) -> sqlx::Result<()> {
    let event = &envelope.event;
    let p = &envelope.provenance;
    let record = event.payload.record();
    let target = match &event.payload {
        VaccinationPayload::RevocationRequested { certificate_id, .. } => Some(certificate_id.as_str().to_owned()),
        VaccinationPayload::VaccinationCorrected {
            target: domain::commands::CorrectionTarget::Certificate(id),
            ..
        } => Some(id.as_str().to_owned()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO vaccinations (event_id, event_type, recipient_key, programme, dose, total_doses, vaccine,
             manufacturer, batch, vaccination_date, facility, district, state, target_certificate,
             occurred_at, recorded_at, log_partition, log_offset)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.event_id.uuid())
    .bind(event.payload.event_type())
    .bind(event.recipient_key.as_str())
    .bind(record.map(|r| r.programme.as_str().to_owned()))
    .bind(record.map(|r| i32::from(r.vaccination.dose.number())))
    .bind(record.map(|r| i32::from(r.vaccination.dose.of())))
    .bind(record.map(|r| r.vaccination.vaccine.name.clone()))
    .bind(record.map(|r| r.vaccination.manufacturer.as_str().to_owned()))
    .bind(record.map(|r| r.vaccination.batch.as_str().to_owned()))
    .bind(record.map(|r| r.vaccination.date.date()))
    .bind(record.map(|r| r.facility.name.as_str().to_owned()))
    .bind(record.map(|r| r.facility.address.district.as_str().to_owned()))
    .bind(record.map(|r| r.facility.address.state.as_str().to_owned()))
    .bind(target)
    .bind(p.occurred_at)
    .bind(p.recorded_at)
    .bind(at.partition)
    .bind(at.offset)
    .execute(&mut **tx)
    .await?;
    if let Some(record) = record {
        let contacts: Vec<String> = record.recipient.contact.iter().map(|c| c.as_str().to_owned()).collect();
        sqlx::query(
            "INSERT INTO recipients (recipient_key, pre_enrollment_codes, contacts, first_seen_at, last_seen_at)
             VALUES ($1, ARRAY[$2], $3, $4, $4)
             ON CONFLICT (recipient_key) DO UPDATE SET
               pre_enrollment_codes = ARRAY(SELECT DISTINCT unnest(recipients.pre_enrollment_codes || EXCLUDED.pre_enrollment_codes) ORDER BY 1),
               contacts = ARRAY(SELECT DISTINCT unnest(recipients.contacts || EXCLUDED.contacts) ORDER BY 1),
               first_seen_at = LEAST(recipients.first_seen_at, EXCLUDED.first_seen_at),
               last_seen_at = GREATEST(recipients.last_seen_at, EXCLUDED.last_seen_at)",
        )
        .bind(event.recipient_key.as_str())
        .bind(record.pre_enrollment_code.as_str())
        .bind(contacts)
        .bind(p.occurred_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn certificate(
    tx: &mut Transaction<'_, Postgres>,
    at: &Positioned,
    envelope: &CertificateEnvelope,
) -> sqlx::Result<()> {
    let CertificateBody::Outcome {
        recipient_key,
        event,
        credential,
        ..
    } = &envelope.body
    else {
        return Ok(());
    };
    let decided_at = envelope.recorded_at;
    let (outcome, certificate_id, rule, detail) = match &event.outcome {
        CertificateOutcome::CertificateIssued {
            certificate_id,
            programme,
            supersedes,
            certified,
            status,
            ..
        } => {
            let credential = credential
                .as_ref()
                .expect("an issue carries its credential (checked on decode)");
            let json: serde_json::Value = serde_json::from_str(&credential.text).unwrap_or(serde_json::Value::Null);
            sqlx::query(
                "INSERT INTO certificates (certificate_id, recipient_key, programme, dose, total_doses, status,
                     credential, key_id, status_list, status_index, supersedes, issued_at, source_event_id,
                     log_partition, log_offset)
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (certificate_id) DO NOTHING",
            )
            .bind(certificate_id.as_str())
            .bind(recipient_key.as_str())
            .bind(programme.as_str())
            .bind(i32::from(certified.dose.number()))
            .bind(i32::from(certified.dose.of()))
            .bind(json)
            .bind(&credential.key_id)
            .bind(status.list as i32)
            .bind(status.index as i64)
            .bind(supersedes.as_ref().map(|s| s.as_str().to_owned()))
            .bind(decided_at)
            .bind(event.answers.uuid())
            .bind(at.partition)
            .bind(at.offset)
            .execute(&mut **tx)
            .await?;
            ("issued", Some(certificate_id.as_str().to_owned()), None, None)
        }
        CertificateOutcome::CertificateSuperseded {
            certificate_id,
            superseded_by,
            ..
        } => {
            sqlx::query(
                "UPDATE certificates SET status = 'superseded', superseded_by = $2, superseded_at = $3
                 WHERE certificate_id = $1 AND status = 'active'",
            )
            .bind(certificate_id.as_str())
            .bind(superseded_by.as_str())
            .bind(decided_at)
            .execute(&mut **tx)
            .await?;
            ("superseded", Some(certificate_id.as_str().to_owned()), None, None)
        }
        CertificateOutcome::CertificateRevoked {
            certificate_id, reason, ..
        } => {
            sqlx::query(
                "UPDATE certificates SET status = 'revoked', revocation_reason = $2, revoked_at = $3
                 WHERE certificate_id = $1 AND status <> 'revoked'",
            )
            .bind(certificate_id.as_str())
            .bind(reason.as_str())
            .bind(decided_at)
            .execute(&mut **tx)
            .await?;
            ("revoked", Some(certificate_id.as_str().to_owned()), None, None)
        }
        CertificateOutcome::CertificateRejected { rule, detail } => {
            ("rejected", None, Some(rule.clone()), Some(detail.clone()))
        }
    };
    sqlx::query(
        "INSERT INTO event_outcomes (source_event_id, outcome, certificate_id, rule, detail, decided_at, log_partition, log_offset)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (source_event_id, outcome) DO NOTHING",
    )
    .bind(event.answers.uuid())
    .bind(outcome)
    .bind(certificate_id)
    .bind(rule)
    .bind(detail)
    .bind(decided_at)
    .bind(at.partition)
    .bind(at.offset)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
