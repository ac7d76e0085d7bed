//! Every server of the local stack stores a value and gives it back, through the same code paths
//! vaxtrail uses, each test in its own isolated slice.

use vaxctl::smoke;
use vaxtrail_tests::TestStack;

#[tokio::test]
async fn the_broker_produces_and_consumes_with_rdkafka() {
    let stack = TestStack::new().await;
    smoke::kafka(&stack.kafka.brokers, &stack.topic("roundtrip"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_registry_registers_and_fetches_a_schema() {
    let stack = TestStack::new().await;
    let subject = format!("{}-value", stack.topic("roundtrip"));
    smoke::registry(&stack.kafka.schema_registry_url, &subject)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_round_trips_a_row() {
    let stack = TestStack::new().await;
    smoke::postgres(&stack.postgres, &stack.postgres.schema).await.unwrap();
}

#[tokio::test]
async fn redis_round_trips_a_key() {
    let stack = TestStack::new().await;
    smoke::redis(&stack.redis, "roundtrip").await.unwrap();
}

#[tokio::test]
async fn clickhouse_round_trips_a_row() {
    let stack = TestStack::new().await;
    smoke::clickhouse(&stack.clickhouse).await.unwrap();
}

#[tokio::test]
async fn a_test_slice_removes_its_schema_keys_and_database() {
    let stack = TestStack::new().await;
    smoke::postgres(&stack.postgres, &stack.postgres.schema).await.unwrap();
    smoke::redis(&stack.redis, "left-behind").await.unwrap();
    smoke::clickhouse(&stack.clickhouse).await.unwrap();
    let (postgres, redis, clickhouse) = (stack.postgres.clone(), stack.redis.clone(), stack.clickhouse.clone());
    drop(stack);

    let pool = sqlx::PgPool::connect(postgres.url.expose()).await.unwrap();
    let schemas: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1")
        .bind(&postgres.schema)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(schemas, 0, "the Postgres schema was dropped");
    let mut connection = redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", redis.key_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys.is_empty(), "the Redis keys were deleted: {keys:?}");
    let databases: u64 = clickhouse
        .client()
        .with_database("default")
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(&clickhouse.database)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(databases, 0, "the ClickHouse database was dropped");
}
