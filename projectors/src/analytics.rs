//! The ClickHouse analytics: one row per vaccination event and one per certificate outcome, in
//! ReplacingMergeTree tables keyed by ids from the log, so a redelivered row is merged away
//! (queries that must be exact read `FINAL`). A batch is inserted first and its next offsets only
//! after the insert succeeded. The SQL runs on Debian's ClickHouse 18.16 and on a current server.

use avro::{
    certificate::{CertificateBody, CertificateEnvelope},
    vaccination::VaccinationEnvelope,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use domain::{
    commands::{Birth, RecordVaccination},
    events::CertificateOutcome,
};
use serde::Serialize;

use crate::{
    generation::{Generation, StoreLost},
    runner::{Positioned, Projected, Projection},
};

/// The tables, the dashboard's daily aggregates, then the materialized views that fill them. The
/// aggregates keep each group's distinct event ids (`uniqExactState`), so a redelivered batch,
/// which the base tables merge away only eventually, never counts twice: read them with
/// `uniqExactMerge`. A view sees only rows inserted after it exists; the projection creates it
/// before its first insert. The views write into tables of their own (`TO`), because a view
/// cannot be renamed on ClickHouse 18.16 while tables can: `vaxctl replay` swaps the tables and
/// creates the views again.
pub const TABLES: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS vaccinations (
        event_id String, event_type String, vaccination_date Date, programme String, vaccine String,
        manufacturer String, dose UInt8, total_doses UInt8, gender String, age_band String,
        facility String, district String, state String, country String, occurred_at DateTime,
        vaccinator String
     ) ENGINE = ReplacingMergeTree ORDER BY (vaccination_date, event_id)",
    "CREATE TABLE IF NOT EXISTS certificate_outcomes (
        record_id String, source_event_id String, outcome String, certificate_id String, rule String,
        decided_at DateTime, occurred_at DateTime, signing_latency_ms UInt64
     ) ENGINE = ReplacingMergeTree ORDER BY record_id",
    "CREATE TABLE IF NOT EXISTS projection_positions (
        generation String, topic String, partition Int32, next_offset Int64
     ) ENGINE = ReplacingMergeTree(next_offset) ORDER BY (generation, topic, partition)",
    "CREATE TABLE IF NOT EXISTS projection_generation (
        slot UInt8, generation String, complete UInt8, at UInt64
     ) ENGINE = ReplacingMergeTree(at) ORDER BY slot",
    "CREATE TABLE IF NOT EXISTS daily_vaccinations (
        vaccination_date Date, programme String, event_type String, vaccine String, dose UInt8,
        state String, district String, gender String, age_band String,
        events AggregateFunction(uniqExact, String)
     ) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(vaccination_date)
     ORDER BY (vaccination_date, programme, event_type, vaccine, dose, state, district, gender, age_band)",
    "CREATE TABLE IF NOT EXISTS daily_outcomes (
        day Date, outcome String, rule String, outcomes AggregateFunction(uniqExact, String)
     ) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (day, outcome, rule)",
];

/// The views feeding the daily aggregates, by name.
pub const VIEWS: [(&str, &str); 2] = [
    (
        "daily_vaccinations_view",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS daily_vaccinations_view TO daily_vaccinations
         AS SELECT vaccination_date, programme, event_type, vaccine, dose, state, district, gender, age_band,
                   uniqExactState(event_id) AS events
         FROM vaccinations
         GROUP BY vaccination_date, programme, event_type, vaccine, dose, state, district, gender, age_band",
    ),
    (
        "daily_outcomes_view",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS daily_outcomes_view TO daily_outcomes
         AS SELECT toDate(decided_at) AS day, outcome, rule, uniqExactState(record_id) AS outcomes
         FROM certificate_outcomes
         GROUP BY day, outcome, rule",
    ),
];

/// Every table and view, on a client bound to the projection's database.
pub async fn create_schema(client: &clickhouse::Client) -> anyhow::Result<()> {
    for table in TABLES {
        client.query(table).execute().await?;
    }
    // A table made before the vaccinator was kept gets the column (rows before stay ''; a replay
    // fills them).
    let has_vaccinator: u64 = client
        .query(
            "SELECT count() FROM system.columns
             WHERE database = currentDatabase() AND table = 'vaccinations' AND name = 'vaccinator'",
        )
        .fetch_one()
        .await?;
    if has_vaccinator == 0 {
        client
            .query("ALTER TABLE vaccinations ADD COLUMN vaccinator String DEFAULT ''")
            .execute()
            .await?;
    }
    for (_, view) in VIEWS {
        client.query(view).execute().await?;
    }
    Ok(())
}

#[derive(clickhouse::Row, Serialize)]
struct VaccinationRow {
    event_id: String,
    event_type: String,
    vaccination_date: u16,
    programme: String,
    vaccine: String,
    manufacturer: String,
    dose: u8,
    total_doses: u8,
    gender: String,
    age_band: String,
    facility: String,
    district: String,
    state: String,
    country: String,
    occurred_at: u32,
    vaccinator: String,
}

#[derive(clickhouse::Row, Serialize)]
struct OutcomeRow {
    record_id: String,
    source_event_id: String,
    outcome: String,
    certificate_id: String,
    rule: String,
    decided_at: u32,
    occurred_at: u32,
    signing_latency_ms: u64,
}

#[derive(clickhouse::Row, Serialize)]
struct PositionRow {
    generation: String,
    topic: String,
    partition: i32,
    next_offset: i64,
}

#[derive(clickhouse::Row, Serialize)]
struct MarkerRow {
    slot: u8,
    generation: String,
    complete: u8,
    at: u64,
}

/// The generation marker and whether the store has one: the newest row of
/// `projection_generation` (positions are stored per generation, so a new one starts empty).
const MARKER_SQL: &str = platform::read_models::CLICKHOUSE_MARKER;

/// The ClickHouse projection.
pub struct AnalyticsProjection {
    client: clickhouse::Client,
    database: String,
}

impl AnalyticsProjection {
    /// The projection into `database`, through `client` (bound to that database).
    pub fn new(client: clickhouse::Client, database: &str) -> Self {
        Self {
            client,
            database: database.to_owned(),
        }
    }

    async fn mark(&self, generation: &Generation) -> anyhow::Result<()> {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut insert = self.client.insert::<MarkerRow>("projection_generation").await?;
        insert
            .write(&MarkerRow {
                slot: 0,
                generation: generation.id.clone(),
                complete: u8::from(generation.complete),
                at,
            })
            .await?;
        insert.end().await?;
        Ok(())
    }
}

/// Whether ClickHouse refused a query because the database or table is gone (codes 60 and 81).
pub fn gone(error: &clickhouse::error::Error) -> bool {
    let text = error.to_string();
    ["Code: 60.", "Code: 81.", "Code: 60,", "Code: 81,"]
        .iter()
        .any(|code| text.contains(code))
}

fn days(date: NaiveDate) -> u16 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"))
        .num_days()
        .clamp(0, i64::from(u16::MAX)) as u16
}

fn seconds(at: DateTime<Utc>) -> u32 {
    at.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

/// The recipient's age band on the day of the vaccination.
pub fn age_band(record: &RecordVaccination) -> &'static str {
    let age = match record.recipient.birth {
        Birth::Age(age) => i32::from(age),
        Birth::Date(dob) => {
            let (born, on) = (dob.date(), record.vaccination.date.date());
            on.year() - born.year() - i32::from((on.month(), on.day()) < (born.month(), born.day()))
        }
    };
    match age {
        ..18 => "0-17",
        18..45 => "18-44",
        45..60 => "45-59",
        _ => "60+",
    }
}

impl Projection for AnalyticsProjection {
    const NAME: &'static str = "clickhouse";

    /// Creates the database if it is missing (a dropped one comes back empty), then the schema.
    async fn prepare(&self) -> anyhow::Result<()> {
        let database = valid_database(&self.database)?;
        self.client
            .clone()
            .with_database("default")
            .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
            .execute()
            .await?;
        create_schema(&self.client).await
    }

    async fn next_offset(&self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        let (rows, next): (u64, i64) = self
            .client
            .query(
                "SELECT count(), max(next_offset) FROM projection_positions
                 WHERE generation = (SELECT argMax(generation, at) FROM projection_generation)
                   AND topic = ? AND partition = ?",
            )
            .bind(topic)
            .bind(partition)
            .fetch_one()
            .await?;
        Ok((rows > 0).then_some(next))
    }

    async fn generation(&self) -> anyhow::Result<Option<Generation>> {
        match self.client.query(MARKER_SQL).fetch_one::<(String, u8, u64)>().await {
            Ok((id, complete, rows)) => Ok((rows > 0).then_some(Generation {
                id,
                complete: complete == 1,
            })),
            Err(error) if gone(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn begin(&self, generation: &Generation) -> anyhow::Result<()> {
        self.mark(generation).await
    }

    async fn complete(&self, id: &str) -> anyhow::Result<()> {
        if self.generation().await?.is_some_and(|g| g.id == id && !g.complete) {
            self.mark(&Generation {
                id: id.to_owned(),
                complete: true,
            })
            .await?;
        }
        Ok(())
    }

    /// ClickHouse has no transactions: the marker is checked first, the rows inserted, and the
    /// positions (keyed by generation) only after them.
    async fn apply(&self, id: &str, batch: &[Positioned]) -> anyhow::Result<()> {
        StoreLost::check(id, self.generation().await?.map(|g| g.id))?;
        let mut vaccinations = Vec::new();
        let mut outcomes = Vec::new();
        let mut next = std::collections::BTreeMap::new();
        for item in batch {
            match &item.record {
                Projected::Vaccination(envelope) => vaccinations.extend(VaccinationRow::of(envelope)),
                Projected::Certificate(envelope) => outcomes.extend(OutcomeRow::of(envelope)),
                Projected::Skipped => {}
            }
            let slot = next.entry((item.topic.clone(), item.partition)).or_insert(0);
            *slot = (*slot).max(item.offset + 1);
        }
        self.insert("vaccinations", &vaccinations).await?;
        self.insert("certificate_outcomes", &outcomes).await?;
        // Only after the rows are in: a crash between the two re-inserts rows that merge away.
        let mut insert = self.client.insert::<PositionRow>("projection_positions").await?;
        for ((topic, partition), next_offset) in next {
            insert
                .write(&PositionRow {
                    generation: id.to_owned(),
                    topic,
                    partition,
                    next_offset,
                })
                .await?;
        }
        insert.end().await?;
        Ok(())
    }
}

impl AnalyticsProjection {
    /// Inserts `rows` into `table` in one INSERT (none when there are none).
    async fn insert<R>(&self, table: &str, rows: &[R]) -> anyhow::Result<()>
    where
        R: clickhouse::Row + serde::Serialize,
        for<'a> R: clickhouse::RowWrite<Value<'a> = R>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<R>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        Ok(insert.end().await?)
    }
}

impl VaccinationRow {
    /// The row of a recorded (or corrected) vaccination; none for other events.
    fn of(envelope: &VaccinationEnvelope) -> Option<Self> {
        let record = envelope.event.payload.record()?;
        let v = &record.vaccination;
        Some(Self {
            event_id: envelope.event.event_id.to_string(),
            event_type: envelope.event.payload.event_type().to_owned(),
            vaccination_date: days(v.date.date()),
            programme: record.programme.as_str().to_owned(),
            vaccine: v.vaccine.name.clone(),
            manufacturer: v.manufacturer.as_str().to_owned(),
            dose: v.dose.number(),
            total_doses: v.dose.of(),
            gender: record.recipient.gender.to_string(),
            age_band: age_band(record).to_owned(),
            facility: record.facility.name.as_str().to_owned(),
            district: record.facility.address.district.as_str().to_owned(),
            state: record.facility.address.state.as_str().to_owned(),
            country: record.facility.address.country.as_str().to_owned(),
            occurred_at: seconds(envelope.provenance.occurred_at),
            vaccinator: record.vaccinator.as_str().to_owned(),
        })
    }
}

impl OutcomeRow {
    /// The row of a signer's outcome; none for status lists and checkpoints.
    fn of(envelope: &CertificateEnvelope) -> Option<Self> {
        let CertificateBody::Outcome { event, .. } = &envelope.body else {
            return None;
        };
        let (outcome, certificate_id, rule) = match &event.outcome {
            CertificateOutcome::CertificateIssued { certificate_id, .. } => ("issued", certificate_id.as_str(), ""),
            CertificateOutcome::CertificateSuperseded { certificate_id, .. } => {
                ("superseded", certificate_id.as_str(), "")
            }
            CertificateOutcome::CertificateRevoked { certificate_id, .. } => ("revoked", certificate_id.as_str(), ""),
            CertificateOutcome::CertificateRejected { rule, .. } => ("rejected", "", rule.as_str()),
            CertificateOutcome::RecipientErased { .. } => ("erased", "", ""),
        };
        let latency = (envelope.recorded_at - envelope.occurred_at).num_milliseconds().max(0) as u64;
        Some(Self {
            record_id: envelope.event_id().to_string(),
            source_event_id: event.answers.to_string(),
            outcome: outcome.to_owned(),
            certificate_id: certificate_id.to_owned(),
            rule: rule.to_owned(),
            decided_at: seconds(envelope.recorded_at),
            occurred_at: seconds(envelope.occurred_at),
            signing_latency_ms: latency,
        })
    }
}

/// A database name safe to put in SQL unquoted.
pub fn valid_database(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    anyhow::ensure!(ok, "database name {name:?}: use letters, digits and _");
    Ok(name)
}

/// The tables of a database, and which of them are views.
async fn tables(admin: &clickhouse::Client, database: &str) -> anyhow::Result<Vec<(String, bool)>> {
    Ok(admin
        .query("SELECT name, engine = 'MaterializedView' FROM system.tables WHERE database = ? AND name NOT LIKE '.inner%'")
        .bind(database)
        .fetch_all::<(String, u8)>()
        .await?
        .into_iter()
        .map(|(name, view)| (name, view == 1))
        .collect())
}

/// Makes the `shadow` database's tables the `live` database's: the views of both are dropped,
/// every table is moved in one `RENAME` (live to a database that is then dropped, shadow to live),
/// and the views are created again over the moved tables. Rows inserted into the live tables
/// between the rename and the views' creation are not aggregated: the caller applies the log
/// again from where the shadow ended once this returns (the aggregates count distinct ids).
pub async fn swap_databases(admin: &clickhouse::Client, live: &str, shadow: &str) -> anyhow::Result<()> {
    let (live, shadow) = (valid_database(live)?, valid_database(shadow)?);
    let replaced = format!("{live}_replaced");
    let run = |sql: String| async move { admin.query(&sql).execute().await };
    run(format!("CREATE DATABASE IF NOT EXISTS {live}")).await?;
    run(format!("DROP DATABASE IF EXISTS {replaced}")).await?;
    run(format!("CREATE DATABASE {replaced}")).await?;
    let mut renames = Vec::new();
    for (database, to) in [(live, replaced.as_str()), (shadow, live)] {
        for (table, view) in tables(admin, database).await? {
            if view {
                run(format!("DROP TABLE {database}.{table}")).await?;
            } else {
                renames.push(format!("{database}.{table} TO {to}.{table}"));
            }
        }
    }
    if !renames.is_empty() {
        run(format!("RENAME TABLE {}", renames.join(", "))).await?;
    }
    let client = admin.clone().with_database(live);
    for (_, view) in VIEWS {
        client.query(view).execute().await?;
    }
    run(format!("DROP DATABASE {replaced}")).await?;
    run(format!("DROP DATABASE IF EXISTS {shadow}")).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_since_the_epoch() {
        let date = chrono::NaiveDate::from_ymd_opt(2021, 1, 2).unwrap();
        assert_eq!(super::days(date), 18_629);
    }

    #[test]
    fn only_plain_database_names_are_spliced_into_sql() {
        assert!(super::valid_database("vaxtrail_replay").is_ok());
        for bad in ["", "1db", "db; DROP DATABASE x", "db-name", "db.t"] {
            assert!(super::valid_database(bad).is_err(), "{bad:?}");
        }
    }
}
