//! What every vaxtrail process shares: typed configuration pieces read from the environment,
//! telemetry (tracing and Prometheus metrics), the ops endpoints (`/healthz`, `/readyz`,
//! `/metrics`) with readiness checks against real dependencies, shutdown on SIGTERM, and the
//! catalog of Kafka topics.

pub mod auth;
pub mod checks;
pub mod config;
pub mod environment;
pub mod kafka;
pub mod keystore;
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

/// Release builds of every vaxtrail process (services, vaxctl) allocate through mimalloc instead
/// of glibc's malloc: the credential paths make many small strings, and glibc's allocator took
/// about a fifth of a compiled signature's time; with mimalloc `vaxctl bench sign` went from
/// 0.40–0.46× to 0.51–0.53× raw Ed25519 and ssi's full path ran 2.4× faster (README,
/// Performance). Debug builds (the tests, the local stack by default) keep the system allocator,
/// as in every CI run before it: with mimalloc in the debug services too, this session saw the
/// local Tansu 0.6 broker stall under the drills' unthrottled load three times (not shown to be
/// the cause; README, Tansu's known limits).
#[cfg(not(debug_assertions))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use config::{ClickHouseArgs, KafkaArgs, LogArgs, PostgresArgs, RedisArgs};
pub use environment::EnvironmentArgs;
pub use kafka::{Kafka, Tuning};
pub use ops::{Readiness, ops_router};
pub use retry::{Backoff, Stopped};
pub use server::{HttpLimitArgs, HttpLimits, HttpService};
pub use shutdown::Shutdown;
pub use topics::TopicCatalog;
pub use trace::TraceContext;
