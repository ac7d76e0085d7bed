//! The disaster drill, end to end, with the four services as processes and `vaxctl` as the
//! operator runs it: 10,000 vaccinations posted through the command API by `vaxctl demo` (7,300
//! people with their second doses, corrections and revocations; `VAXTRAIL_DRILL_PEOPLE`) and
//! certified; then every read model is lost at once, under the running services: the Postgres
//! schema dropped, Redis flushed, the ClickHouse database dropped. The query API answers 503
//! meanwhile, never a false "not found". `vaxctl replay` rebuilds each beside the live one and
//! swaps it in (the Postgres replay is killed midway first, and the next run resumes it), and
//! the query API answers exactly as before: a sample of certificates (the credential, its status
//! header, `/status`, its verification) and the analytics totals.

use std::time::Duration;

use reqwest::StatusCode;
use vaxtrail_tests::{
    e2e::{assert_same, count_from_env, live_deployment, load, replay, sample, snapshot},
    eventually,
    signer::Issuer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_lost_is_rebuilt_from_the_log_with_the_same_answers() {
    let people = count_from_env("VAXTRAIL_DRILL_PEOPLE", 7_300);
    let issuer = Issuer::new();
    let started = chrono::Utc::now();
    let mut live = live_deployment(&issuer).await;
    let query = live.url("query-api");
    load(&live, people).await;
    let ids = sample(&live.stack).await;
    let reader = live.token("admin").await;
    let before = snapshot(&query, &reader, &ids).await;
    // The EU DCCs and SMART Health Cards are in what the replays must give back (the local
    // stack's signers issue both).
    for format in ["eu-dcc", "shc"] {
        assert!(
            before
                .iter()
                .any(|(what, answer)| what.ends_with(&format!(" {format}")) && answer.starts_with("200 ")),
            "no sampled certificate has a {format}"
        );
    }
    let vaccinations: i64 = sqlx::query_scalar("SELECT count(*) FROM vaccinations")
        .fetch_one(&live.stack.postgres.pool().expect("a pool"))
        .await
        .expect("a count");
    assert!(
        vaccinations >= people as i64,
        "{vaccinations} vaccinations for {people} people"
    );

    // Every read model lost at once.
    let admin = sqlx::PgPool::connect(live.stack.postgres.url.expose())
        .await
        .expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {} CASCADE",
        live.stack.postgres.schema
    )))
    .execute(&admin)
    .await
    .expect("dropping the schema");
    live.stack.flush_redis().await;
    live.stack
        .clickhouse
        .client()
        .with_database("default")
        .query(&format!("DROP DATABASE {}", live.stack.clickhouse.database))
        .execute()
        .await
        .expect("dropping the database");
    let lost = reqwest::Client::new()
        .get(format!("{query}/v1/certificates/{}", ids[0]))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        lost.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "with its stores gone the query API says so, never 'not found'"
    );

    // Postgres: interrupted (SIGKILL) once it has applied some records, then run again: it
    // resumes from what its shadow stored.
    let mut interrupted = tokio::process::Command::new(vaxtrail_tests::bin_dir().join("vaxctl"))
        .envs(live.env())
        .args(["replay", "--projection", "postgres", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("vaxctl was built");
    let shadow = format!("{}_replay", live.stack.postgres.schema);
    eventually(Duration::from_secs(300), "the shadow to hold applied records", || {
        let (admin, shadow) = (admin.clone(), shadow.clone());
        async move {
            let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM {shadow}.projection_offsets"
            )))
            .fetch_one(&admin)
            .await
            .ok()?;
            (applied > 0).then_some(())
        }
    })
    .await;
    interrupted.start_kill().expect("the replay runs");
    interrupted.wait().await.expect("it exits");
    let figures = replay(&live, "postgres").await;
    let (resumed, records) = (
        figures["resumedFrom"].as_u64().unwrap_or(0),
        figures["records"].as_u64().unwrap_or(0),
    );
    assert!(resumed > 0, "the second run resumes: {figures}");
    assert!(resumed + records >= 2 * people, "{figures}");
    for projection in ["redis", "clickhouse"] {
        let figures = replay(&live, projection).await;
        assert!(figures["records"].as_u64().unwrap_or(0) >= 2 * people, "{figures}");
    }
    let after = snapshot(&query, &reader, &ids).await;
    assert_same(&before, &after, "after the disaster replays");

    // Point-in-time copies (`--at`) beside the live read model, which they leave as it is: as of
    // before the load, nothing; as of now, every vaccination the live one holds.
    let count = |schema: String| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {schema}.vaccinations"
            )))
            .fetch_one(&admin)
            .await
            .expect("a count")
        }
    };
    for (at, expected) in [(started, 0), (chrono::Utc::now(), vaccinations)] {
        let at = at.to_rfc3339();
        let out = live
            .vaxctl_ok(&["replay", "--projection", "postgres", "--at", &at, "--json"])
            .await;
        let figures = vaxtrail_tests::e2e::last_json(&out);
        assert_eq!(figures["swapped"], false, "{figures}");
        let copy = figures["target"].as_str().expect("the copy's name").to_owned();
        assert_ne!(copy, live.stack.postgres.schema);
        assert_eq!(count(copy.clone()).await, expected, "the copy as of {at}");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {copy} CASCADE")))
            .execute(&admin)
            .await
            .expect("dropping the copy");
    }
    assert_eq!(
        count(live.stack.postgres.schema.clone()).await,
        vaccinations,
        "the live one"
    );
    live.stop_all().await;
}
