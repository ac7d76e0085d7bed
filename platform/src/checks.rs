//! Readiness checks against the real dependencies: each returns a closure for [`crate::Readiness`].

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use rdkafka::consumer::{BaseConsumer, Consumer};

type Check = Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The broker answers a metadata request and every named topic exists.
pub fn kafka(brokers: &str, topics: Vec<String>) -> anyhow::Result<Check> {
    let client: BaseConsumer = crate::Kafka::new(brokers).client()?;
    let client = Arc::new(client);
    let topics = Arc::new(topics);
    Ok(Box::new(move || {
        let client = client.clone();
        let topics = topics.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let metadata = client
                    .fetch_metadata(None, Duration::from_secs(2))
                    .map_err(|e| format!("metadata request failed: {e}"))?;
                let missing: Vec<&str> = topics
                    .iter()
                    .filter(|t| !metadata.topics().iter().any(|m| m.name() == t.as_str()))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("missing topics: {}", missing.join(", ")))
                }
            })
            .await
            .map_err(|e| format!("check task failed: {e}"))?
        }
        .boxed()
    }))
}

/// An HTTP endpoint answers with a success status (the schema registry's `/subjects`, say).
pub fn http(url: String) -> Check {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a reqwest client with a timeout always builds");
    Box::new(move || {
        let request = client.get(&url);
        async move {
            let response = request.send().await.map_err(|e| format!("no answer: {e}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", response.status()))
            }
        }
        .boxed()
    })
}

/// PostgreSQL answers a query on the pool.
pub fn postgres(pool: sqlx::PgPool) -> Check {
    Box::new(move || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| format!("query failed: {e}"))
        }
        .boxed()
    })
}

/// Redis answers PING.
pub fn redis(client: redis::Client) -> Check {
    Box::new(move || {
        let client = client.clone();
        async move {
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("no connection: {e}"))?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(|_| ())
                .map_err(|e| format!("PING failed: {e}"))
        }
        .boxed()
    })
}

/// ClickHouse answers a query.
pub fn clickhouse(client: clickhouse::Client) -> Check {
    Box::new(move || {
        let client = client.clone();
        async move {
            client
                .query("SELECT 1")
                .execute()
                .await
                .map_err(|e| format!("query failed: {e}"))
        }
        .boxed()
    })
}
