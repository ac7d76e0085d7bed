//! What every vaxtrail process shares: typed configuration pieces read from the environment,
//! telemetry (tracing and Prometheus metrics), the ops endpoints (`/healthz`, `/readyz`,
//! `/metrics`) with readiness checks against real dependencies, shutdown on SIGTERM, and the
//! catalog of Kafka topics.

pub mod auth;
pub mod checks;
pub mod config;
pub mod environment;
pub mod kafka;
pub mod log;
pub mod ops;
pub mod problem;
pub mod read_models;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod topics;
pub mod trace;

pub use config::{ClickHouseArgs, KafkaArgs, LogArgs, PostgresArgs, RedisArgs};
pub use environment::EnvironmentArgs;
pub use kafka::{Kafka, Tuning};
pub use ops::{Readiness, ops_router};
pub use retry::{Backoff, Stopped};
pub use server::{HttpLimitArgs, HttpLimits, HttpService};
pub use shutdown::Shutdown;
pub use topics::TopicCatalog;
pub use trace::TraceContext;
