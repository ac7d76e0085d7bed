//! The disaster drill, end to end, with the four services as processes and `vaxctl` as the
//! operator runs it: 10,000 vaccinations posted through the command API by `vaxctl demo` (7,300
//! people with their second doses, corrections and revocations; `VAXTRAIL_DRILL_PEOPLE`) and
//! certified; then every read model is lost at once, under the running services: the Postgres
//! schema dropped, Redis flushed, the ClickHouse database dropped. The query API answers 503
//! meanwhile, never a false "not found". `vaxctl replay` rebuilds each beside the live one and
//! swaps it in, and the query API answers exactly as before: a sample of certificates (the
//! credential, its status header, `/status`, its verification) and the analytics totals.

use reqwest::StatusCode;
use vaxtrail_tests::{
    e2e::{assert_same, count_from_env, live_deployment, load, replay, sample, snapshot},
    signer::Issuer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_lost_is_rebuilt_from_the_log_with_the_same_answers() {
    let people = count_from_env("VAXTRAIL_DRILL_PEOPLE", 7_300);
    let issuer = Issuer::new();
    let mut live = live_deployment(&issuer).await;
    let query = live.url("query-api");
    load(&live, people).await;
    let ids = sample(&live.stack).await;
    let before = snapshot(&query, &ids).await;
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
    let lost = reqwest::get(format!("{query}/v1/certificates/{}", ids[0]))
        .await
        .expect("an answer");
    assert_eq!(
        lost.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "with its stores gone the query API says so, never 'not found'"
    );

    for projection in ["postgres", "redis", "clickhouse"] {
        let figures = replay(&live, projection).await;
        assert!(figures["records"].as_u64().unwrap_or(0) >= 2 * people, "{figures}");
    }
    let after = snapshot(&query, &ids).await;
    assert_same(&before, &after, "after the disaster replays");
    live.stop_all().await;
}
