//! The projections on the real stack: after vaccinations, corrections and revocations are signed,
//! Postgres, Redis and ClickHouse hold exactly what the log says (compared with a fold of the
//! log), Postgres's stored offsets are the topics' ends, and a restart changes nothing.

use std::{collections::BTreeMap, time::Duration};

use avro::certificate::CertificateBody;
use domain::{
    commands::CorrectionTarget,
    events::{CertificateOutcome, VaccinationPayload},
    ids::{CertificateId, EventId},
    values::{Dose, Identity, Text},
};
use sqlx::Row;
use vaxtrail_tests::{
    TestStack, eventually, fixtures, inprocess, kafka,
    signer::{self, EventWriter, Issuer, envelope, outcomes_per_event, read_certificates, recipient},
};

const PEOPLE: usize = 60;

/// (certificate id → status, recipient, dose, status index) as the log says.
fn fold(records: &[vaxtrail_tests::signer::CertificateRecord]) -> BTreeMap<String, (String, String, i32, i64)> {
    let mut certificates = BTreeMap::new();
    for r in records {
        let CertificateBody::Outcome {
            recipient_key, event, ..
        } = &r.envelope.body
        else {
            continue;
        };
        match &event.outcome {
            CertificateOutcome::CertificateIssued {
                certificate_id,
                certified,
                status,
                ..
            } => {
                certificates.insert(
                    certificate_id.as_str().to_owned(),
                    (
                        "active".to_owned(),
                        recipient_key.as_str().to_owned(),
                        i32::from(certified.dose.number()),
                        status.index as i64,
                    ),
                );
            }
            CertificateOutcome::CertificateSuperseded { certificate_id, .. } => {
                certificates.get_mut(certificate_id.as_str()).unwrap().0 = "superseded".into();
            }
            CertificateOutcome::CertificateRevoked { certificate_id, .. } => {
                certificates.get_mut(certificate_id.as_str()).unwrap().0 = "revoked".into();
            }
            CertificateOutcome::CertificateRejected { .. } => {}
            CertificateOutcome::RecipientErased { certificates: erased } => {
                for id in erased {
                    certificates.remove(id.as_str());
                }
            }
        }
    }
    certificates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_holds_exactly_what_the_log_says_and_a_restart_changes_nothing() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let projectors = inprocess::projectors(&stack, |_| {}).await;

    // Two doses each; person 0's first dose is corrected, person 1's second dose revoked, and
    // person 2's first dose posted again (a duplicate, rejected).
    let template = fixtures::divoc_record();
    let mut inputs = 0;
    for i in 0..PEOPLE {
        let identity = format!("did:in.gov.uidai.aadhaar:{i:012}");
        for dose in 1..=2 {
            let mut record = template.clone();
            record.recipient.identity = Identity::parse("identity", &identity).unwrap();
            record.vaccination.dose = Dose::new(dose, 2).unwrap();
            let payload = VaccinationPayload::VaccinationRecorded(record);
            writer
                .append(&envelope(&format!("p{i}d{dose}"), recipient(&identity), payload))
                .await;
            inputs += 1;
        }
    }
    let person = |i: usize| format!("did:in.gov.uidai.aadhaar:{i:012}");
    let mut corrected = template.clone();
    corrected.recipient.identity = Identity::parse("identity", &person(0)).unwrap();
    corrected.vaccination.batch = Text::parse("batch", "CORRECTED").unwrap();
    let first_of_0 = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "p0d1"));
    writer
        .append(&envelope(
            "fix",
            recipient(&person(0)),
            VaccinationPayload::VaccinationCorrected {
                target: CorrectionTarget::Certificate(first_of_0.clone()),
                corrected,
            },
        ))
        .await;
    writer
        .append(&envelope(
            "revoke",
            recipient(&person(1)),
            VaccinationPayload::RevocationRequested {
                certificate_id: CertificateId::for_event(
                    &domain::ids::IdKey::development(),
                    EventId::derive("tests", "p1d2"),
                ),
                reason: Text::parse("reason", "issued in error").unwrap(),
            },
        ))
        .await;
    let mut again = template.clone();
    again.recipient.identity = Identity::parse("identity", &person(2)).unwrap();
    again.vaccination.dose = Dose::new(1, 2).unwrap();
    writer
        .append(&envelope(
            "again",
            recipient(&person(2)),
            VaccinationPayload::VaccinationRecorded(again),
        ))
        .await;
    inputs += 3;

    let records = read_certificates(&stack, Duration::from_secs(120), |r| {
        outcomes_per_event(r).len() == inputs
    })
    .await;
    signer.stop_cleanly().await;
    let expected = fold(&records);
    let outcomes = records
        .iter()
        .filter(|r| matches!(r.envelope.body, CertificateBody::Outcome { .. }))
        .count() as i64;

    let pool = stack.postgres.pool().unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&pool)
                .await
                .unwrap_or(-1)
        }
    };
    eventually(Duration::from_secs(60), "Postgres to catch up with the log", || async {
        (count("event_outcomes").await == outcomes && count("vaccinations").await == inputs as i64).then_some(())
    })
    .await;

    let actual: BTreeMap<String, (String, String, i32, i64)> =
        sqlx::query("SELECT certificate_id, status, recipient_key, dose, status_index FROM certificates")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3), row.get(4))))
            .collect();
    assert_eq!(actual, expected, "the certificates table is the fold of the log");
    assert_eq!(actual[first_of_0.as_str()].0, "superseded");
    assert_eq!(count("recipients").await, PEOPLE as i64);
    let rejected: String =
        sqlx::query_scalar("SELECT rule FROM event_outcomes WHERE source_event_id = $1 AND outcome = 'rejected'")
            .bind(EventId::derive("tests", "again").uuid())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rejected, "DuplicateVaccination");
    // The signed credential is kept as jsonb (ssi writes a one-element evidence as the object).
    let credential_dose: i64 = sqlx::query_scalar(
        "SELECT COALESCE(credential #>> '{evidence,dose}', credential #>> '{evidence,0,dose}')::bigint
         FROM certificates WHERE certificate_id = $1",
    )
    .bind(CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "p5d2")).as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(credential_dose, 2);

    // Redis: every certificate's status as the log says, the revocation bit, event outcomes and
    // each recipient's current certificates.
    let mut redis = stack
        .redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = &stack.redis.key_prefix;
    eventually(Duration::from_secs(60), "Redis to catch up with the log", || {
        let mut redis = redis.clone();
        let key = format!("{prefix}event:{}", EventId::derive("tests", "again"));
        async move {
            let rule: Option<String> = redis::cmd("HGET")
                .arg(key)
                .arg("rejected")
                .query_async(&mut redis)
                .await
                .unwrap();
            (rule.as_deref() == Some("DuplicateVaccination")).then_some(())
        }
    })
    .await;
    for (id, (status, ..)) in &expected {
        let cached: Option<String> = redis::cmd("HGET")
            .arg(format!("{prefix}cert:{id}:state"))
            .arg("status")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(cached.as_deref(), Some(status.as_str()), "certificate {id} in Redis");
        let credential: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}cert:{id}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            credential.is_some_and(|c| c.contains(id.as_str())),
            "credential {id} in Redis"
        );
    }
    let revoked = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "p1d2"));
    let (_, _, _, index) = &expected[revoked.as_str()];
    let list = records
        .iter()
        .find_map(|r| match &r.envelope.body {
            CertificateBody::Outcome { event, .. } => match &event.outcome {
                CertificateOutcome::CertificateRevoked { status, .. } => Some(status.list),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    let bit: i64 = redis::cmd("GETBIT")
        .arg(format!("{prefix}status:{list}"))
        .arg(*index)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(bit, 1, "the revoked certificate's status bit is set");
    let mut current: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}recipient:{}:current", recipient(&person(0)).as_str()))
        .query_async(&mut redis)
        .await
        .unwrap();
    current.sort();
    let mut want = vec![
        CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "fix"))
            .as_str()
            .to_owned(),
        CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "p0d2"))
            .as_str()
            .to_owned(),
    ];
    want.sort();
    assert_eq!(
        current, want,
        "person 0's current certificates: the correction and dose 2"
    );

    // ClickHouse: deduplicated counts equal the log's.
    let clickhouse = stack.clickhouse.client();
    let outcome_counts = |kind: &'static str| {
        records
            .iter()
            .filter(|r| match &r.envelope.body {
                CertificateBody::Outcome { event, .. } => matches!(
                    (&event.outcome, kind),
                    (CertificateOutcome::CertificateIssued { .. }, "issued")
                        | (CertificateOutcome::CertificateSuperseded { .. }, "superseded")
                        | (CertificateOutcome::CertificateRevoked { .. }, "revoked")
                        | (CertificateOutcome::CertificateRejected { .. }, "rejected")
                ),
                _ => false,
            })
            .count() as u64
    };
    eventually(Duration::from_secs(60), "ClickHouse to catch up with the log", || {
        let clickhouse = clickhouse.clone();
        async move {
            let n: u64 = clickhouse
                .query("SELECT count() FROM certificate_outcomes FINAL")
                .fetch_one()
                .await
                .ok()?;
            (n == outcomes as u64).then_some(())
        }
    })
    .await;
    for kind in ["issued", "superseded", "revoked", "rejected"] {
        let n: u64 = clickhouse
            .query("SELECT count() FROM certificate_outcomes FINAL WHERE outcome = ?")
            .bind(kind)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(n, outcome_counts(kind), "{kind} in ClickHouse");
        let daily: u64 = clickhouse
            .query("SELECT toUInt64(sum(n)) FROM (SELECT uniqExactMerge(outcomes) AS n FROM daily_outcomes WHERE outcome = ? GROUP BY day, outcome, rule)")
            .bind(kind)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(daily, outcome_counts(kind), "{kind} in the daily aggregates");
    }
    let doses: u64 = clickhouse
        .query("SELECT count() FROM vaccinations FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        doses,
        inputs as u64 - 1,
        "every event with a record (the revocation has none)"
    );
    // The daily aggregates agree with the deduplicated rows, per day and vaccine.
    let by_day = |sql: &'static str| {
        let clickhouse = clickhouse.clone();
        async move { clickhouse.query(sql).fetch_all::<(u16, String, u64)>().await.unwrap() }
    };
    let from_rows = by_day(
        "SELECT vaccination_date, vaccine, count() FROM vaccinations FINAL
         GROUP BY vaccination_date, vaccine ORDER BY vaccination_date, vaccine",
    )
    .await;
    let from_aggregates = by_day(
        "SELECT vaccination_date, vaccine, toUInt64(uniqExactMerge(events)) FROM daily_vaccinations
         GROUP BY vaccination_date, vaccine ORDER BY vaccination_date, vaccine",
    )
    .await;
    assert!(!from_rows.is_empty());
    assert_eq!(from_aggregates, from_rows, "daily aggregates against the rows");

    // The stored offsets reach the topics' ends (the signer's last checkpoint or status list may
    // land after the last outcome the wait above counted).
    for topic in ["vaccination-events", "certificate-events"] {
        let name = stack.topic(topic);
        let end = kafka::count(&stack.kafka.brokers, &name, stack.kafka.partitions);
        eventually(
            Duration::from_secs(30),
            &format!("{topic}: stored offsets at the end ({end})"),
            || async {
                let stored: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(sum(next_offset), 0)::bigint FROM projection_offsets WHERE topic = $1",
                )
                .bind(&name)
                .fetch_one(&pool)
                .await
                .ok()?;
                (stored == end).then_some(())
            },
        )
        .await;
    }

    // A restart reads from the stored offsets: nothing changes.
    projectors.stop().await;
    let before: Vec<(String, String)> = sqlx::query_as("SELECT certificate_id, status FROM certificates ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    let _again = inprocess::projectors(&stack, |_| {}).await;
    let mut late = template.clone();
    late.recipient.identity = Identity::parse("identity", &person(PEOPLE)).unwrap();
    writer
        .append(&envelope(
            "late",
            recipient(&person(PEOPLE)),
            VaccinationPayload::VaccinationRecorded(late),
        ))
        .await;
    eventually(
        Duration::from_secs(60),
        "the restarted projection to apply a new event",
        || async { (count("vaccinations").await == inputs as i64 + 1).then_some(()) },
    )
    .await;
    let after: Vec<(String, String)> = sqlx::query_as("SELECT certificate_id, status FROM certificates ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(count("event_outcomes").await, outcomes);
}
