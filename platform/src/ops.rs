//! The ops endpoints every service serves: `/healthz` (the process is alive), `/readyz` (its real
//! dependencies answer) and `/metrics` (Prometheus text format).

use std::{sync::Arc, sync::OnceLock, time::Duration};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use futures::future::{BoxFuture, join_all};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value, json};

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// The named checks `/readyz` runs, all of which must pass.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Arc<CheckFn>)>,
}

impl Readiness {
    /// Adds a named check.
    pub fn with<F>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        self.checks.push((name, Arc::new(check)));
        self
    }

    /// Runs every check concurrently; the map names each check with `ok` or its failure.
    pub async fn run(&self) -> (bool, Map<String, Value>) {
        let outcomes = join_all(self.checks.iter().map(|(name, check)| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            (*name, outcome)
        }))
        .await;
        let mut ready = true;
        let mut report = Map::new();
        for (name, outcome) in outcomes {
            let result = if outcome.is_ok() { "ok" } else { "failed" };
            metrics::counter!("vaxtrail_readiness_checks_total", "check" => name, "outcome" => result).increment(1);
            match outcome {
                Ok(()) => report.insert(name.to_owned(), json!("ok")),
                Err(reason) => {
                    ready = false;
                    report.insert(name.to_owned(), json!(reason))
                }
            };
        }
        (ready, report)
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("the Prometheus recorder is installed once per process");
            let upkeep = handle.clone();
            // The exporter's histograms need periodic upkeep when not using its own HTTP listener.
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// `/healthz`, `/readyz` and `/metrics` for one service.
pub fn ops_router(service: &'static str, readiness: Readiness) -> Router {
    let state = Arc::new((service, readiness, prometheus()));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

type OpsState = Arc<(&'static str, Readiness, PrometheusHandle)>;

async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    Json(json!({ "service": state.0, "status": "alive" }))
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let (ready, checks) = state.1.run().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "service": state.0,
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks,
    });
    (status, Json(body))
}

async fn metrics_text(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.2.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn readiness_fails_when_any_check_fails_and_names_it() {
        let readiness = Readiness::default()
            .with("good", || async { Ok(()) }.boxed())
            .with("bad", || async { Err("refused".to_owned()) }.boxed());
        let (ready, report) = readiness.run().await;
        assert!(!ready);
        assert_eq!(report["good"], "ok");
        assert_eq!(report["bad"], "refused");
    }

    #[tokio::test]
    async fn readiness_passes_when_every_check_passes() {
        let readiness = Readiness::default().with("good", || async { Ok(()) }.boxed());
        assert!(readiness.run().await.0);
    }
}
