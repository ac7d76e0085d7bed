//! What every fault drill (`tests/tests/faults*.rs`) does around its fault: a steady load posted
//! through the command API while the fault happens, and the checks it ends with:
//! 1. every accepted vaccination answered exactly once in the log (`vaxctl audit verify`: the
//!    chain intact, no event answered twice, none pending);
//! 2. every read model equal to a fold of the log (each certificate's standing in Postgres and
//!    Redis, each outcome kind's count in ClickHouse, every store's marker complete);
//! 3. no revoked certificate verifying offline: Digital Bazaar's vc.js with vc-status-list checks
//!    every revoked certificate (and a few active ones, which must pass) against the status lists
//!    the query API publishes, with nothing fetched.

use std::{
    collections::{BTreeMap, HashMap},
    process::Stdio,
    time::{Duration, Instant},
};

use avro::certificate::CertificateBody;
use domain::events::CertificateOutcome;
use serde_json::{Value, json};

use crate::{
    bin_dir,
    e2e::{Deployment, settled},
    eventually,
    signer::read_certificates,
};

/// `vaxctl demo` posting in the background: first doses, second doses, corrections and
/// revocations, retrying a 503 with the same Idempotency-Key as a facility's system would.
pub struct Load {
    child: tokio::process::Child,
    started: Instant,
    people: u64,
}

impl Load {
    /// Starts posting `people` people (from person `first`) at `rate` requests per second.
    pub fn start(deployment: &Deployment, people: u64, first: u64, rate: u32) -> Self {
        let child = tokio::process::Command::new(bin_dir().join("vaxctl"))
            .envs(deployment.env())
            .args(["demo", "--count", &people.to_string(), "--first", &first.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--command-url", &deployment.url("command-api")])
            .args(["--query-url", &deployment.url("query-api")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("vaxctl was built");
        Self {
            child,
            started: Instant::now(),
            people,
        }
    }

    /// Waits until every request was accepted (202), asserting the demo succeeded.
    pub async fn finish(self) {
        let output = tokio::time::timeout(Duration::from_secs(900), self.child.wait_with_output())
            .await
            .expect("the load finishes within 15 minutes")
            .expect("vaxctl demo runs");
        assert!(
            output.status.success(),
            "the load failed (an accepted request lost, or a refusal): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("drill: {} people posted in {:?}", self.people, self.started.elapsed());
    }
}

/// What the drill found at the end.
#[derive(Debug)]
pub struct Findings {
    pub vaccinations: i64,
    pub outcomes: i64,
    pub certificates: usize,
    pub revoked: usize,
}

/// The log folded: each certificate's standing, each outcome kind's count.
#[derive(Debug, Default)]
struct Fold {
    standing: BTreeMap<String, &'static str>,
    kinds: BTreeMap<&'static str, u64>,
    /// The revoked certificates' ids (those whose status lists the drill checks offline).
    revoked: Vec<String>,
}

async fn fold(deployment: &Deployment, outcomes: i64) -> Fold {
    let records = read_certificates(&deployment.stack, Duration::from_secs(300), |records| {
        records
            .iter()
            .filter(|r| matches!(r.envelope.body, CertificateBody::Outcome { .. }))
            .count() as i64
            >= outcomes
    })
    .await;
    let mut fold = Fold::default();
    for record in &records {
        let CertificateBody::Outcome { event, .. } = &record.envelope.body else {
            continue;
        };
        let (kind, id, standing) = match &event.outcome {
            CertificateOutcome::CertificateIssued { certificate_id, .. } => ("issued", Some(certificate_id), "active"),
            CertificateOutcome::CertificateSuperseded { certificate_id, .. } => {
                ("superseded", Some(certificate_id), "superseded")
            }
            CertificateOutcome::CertificateRevoked { certificate_id, .. } => {
                ("revoked", Some(certificate_id), "revoked")
            }
            CertificateOutcome::CertificateRejected { .. } => ("rejected", None, ""),
            CertificateOutcome::RecipientErased { .. } => ("erased", None, ""),
        };
        *fold.kinds.entry(kind).or_default() += 1;
        if let Some(id) = id {
            let slot = fold.standing.entry(id.as_str().to_owned()).or_insert(standing);
            // Revoked is where a certificate ends; superseded only replaces active.
            if standing == "revoked" || *slot == "active" {
                *slot = standing;
            }
        }
    }
    fold.revoked = fold
        .standing
        .iter()
        .filter(|(_, s)| **s == "revoked")
        .map(|(id, _)| id.clone())
        .collect();
    fold
}

/// Every accepted vaccination answered exactly once, the read models equal to the log's fold,
/// and every revoked certificate refused offline. Prints and returns what it found.
pub async fn assert_nothing_lost(deployment: &Deployment, drill: &str) -> Findings {
    let query = deployment.url("query-api");
    let audit = deployment.audited(Duration::from_secs(600)).await;
    // A record the log holds twice (a retry after a 503 whose first attempt reached the broker
    // after all) is fine as long as its event is answered once: the audit fails on a double.
    let repeats = audit["repeats"].as_i64().unwrap_or(0);
    let outcomes = audit["outcomes"].as_i64().expect("a count of outcomes");
    eventually(
        Duration::from_secs(600),
        "every projection at the log's end, complete",
        || async {
            settled(&deployment.stack).await?;
            let lag: Value = reqwest::get(format!("{query}/v1/pipeline/lag"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (lag["complete"] == json!({"postgres": true, "redis": true, "clickhouse": true})).then_some(())
        },
    )
    .await;

    let fold = fold(deployment, outcomes).await;
    let pool = deployment.stack.postgres.pool().expect("a pool");
    let vaccinations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vaccinations WHERE event_type <> 'RevocationRequested'")
            .fetch_one(&pool)
            .await
            .expect("a count");

    // Postgres: every certificate, standing for standing.
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT certificate_id, status FROM certificates")
        .fetch_all(&pool)
        .await
        .expect("the certificates");
    let postgres: BTreeMap<String, String> = rows.into_iter().collect();
    let expected: BTreeMap<String, String> = fold
        .standing
        .iter()
        .map(|(id, s)| (id.clone(), (*s).to_owned()))
        .collect();
    assert_eq!(postgres, expected, "{drill}: Postgres differs from the log");

    // Redis: every certificate's standing, and no certificate the log does not have.
    let mut redis = deployment
        .stack
        .redis
        .client()
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let prefix = &deployment.stack.redis.key_prefix;
    let mut pipe = redis::pipe();
    for id in fold.standing.keys() {
        pipe.cmd("HGET").arg(format!("{prefix}cert:{id}:state")).arg("status");
    }
    let cached: Vec<Option<String>> = pipe.query_async(&mut redis).await.expect("the cached states");
    for ((id, standing), cached) in fold.standing.iter().zip(&cached) {
        assert_eq!(
            cached.as_deref(),
            Some(*standing),
            "{drill}: Redis has certificate {id} wrong"
        );
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}cert:*:state"))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    assert_eq!(
        keys.len(),
        fold.standing.len(),
        "{drill}: Redis holds certificates the log does not"
    );

    // ClickHouse: each outcome kind counted once.
    let counted: Vec<(String, u64)> = deployment
        .stack
        .clickhouse
        .client()
        .query("SELECT outcome, uniqExact(record_id) FROM certificate_outcomes GROUP BY outcome")
        .fetch_all()
        .await
        .expect("the analytics");
    let counted: BTreeMap<String, u64> = counted.into_iter().collect();
    let kinds: BTreeMap<String, u64> = fold.kinds.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
    assert_eq!(counted, kinds, "{drill}: ClickHouse differs from the log");

    revoked_refused_offline(deployment, &fold, drill).await;
    let findings = Findings {
        vaccinations,
        outcomes,
        certificates: fold.standing.len(),
        revoked: fold.revoked.len(),
    };
    eprintln!(
        "drill {drill}: found {} vaccinations answered once ({} outcomes; {repeats} records repeating an answered event, not answered again), {} certificates in Postgres, Redis and ClickHouse as in the log, {} revoked ones refused offline by vc.js",
        findings.vaccinations, findings.outcomes, findings.certificates, findings.revoked
    );
    findings
}

/// vc.js with vc-status-list, offline, against the lists the query API serves: every revoked
/// certificate refused for its status, a few active ones accepted.
async fn revoked_refused_offline(deployment: &Deployment, fold: &Fold, drill: &str) {
    assert!(!fold.revoked.is_empty(), "{drill}: the load revoked nothing to check");
    let query = deployment.url("query-api");
    let admin = deployment.token("admin").await;
    let client = reqwest::Client::new();
    let active: Vec<&String> = fold
        .standing
        .iter()
        .filter(|(_, s)| **s == "active")
        .map(|(id, _)| id)
        .take(3)
        .collect();
    let mut credentials = Vec::new();
    for id in fold.revoked.iter().chain(active.iter().copied()) {
        let credential: Value = client
            .get(format!("{query}/v1/certificates/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("the certificate")
            .json()
            .await
            .expect("JSON");
        credentials.push(credential);
    }
    // The signer publishes a list within its interval of a revocation: wait until the served
    // lists hold every revoked bit (read here), then let vc.js judge on its own.
    let lists: HashMap<String, Value> = eventually(
        Duration::from_secs(120),
        "the published lists to hold every revocation",
        || {
            let (client, credentials, query) = (&client, &credentials, &query);
            async move {
                let mut lists: HashMap<String, Value> = HashMap::new();
                for credential in credentials {
                    let url = credential["credentialStatus"]["statusListCredential"]
                        .as_str()?
                        .to_owned();
                    if lists.contains_key(&url) {
                        continue;
                    }
                    let (_, list) = url.split_once("/v1/status-lists/")?;
                    let served: Value = client
                        .get(format!("{query}/v1/status-lists/{list}"))
                        .send()
                        .await
                        .ok()?
                        .error_for_status()
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    lists.insert(url, served);
                }
                let all_set = credentials[..fold.revoked.len()].iter().all(|credential| {
                    let Some((url, index)) = credentials::status_list::entry(credential) else {
                        return false;
                    };
                    lists
                        .get(&url)
                        .and_then(|list| list["credentialSubject"]["encodedList"].as_str())
                        .is_some_and(|encoded| credentials::status_list::is_set(encoded, index).unwrap_or(false))
                });
                all_set.then_some(lists)
            }
        },
    )
    .await;
    let did: Value = client
        .get(format!("{query}/.well-known/did.json"))
        .send()
        .await
        .expect("the DID document")
        .json()
        .await
        .expect("JSON");
    let input = json!({
        "credentials": credentials,
        "didDocument": did,
        "contexts": credentials::contexts::VACCINATION
            .iter()
            .map(|(url, document)| ((*url).to_owned(), serde_json::from_str::<Value>(document).expect("JSON")))
            .collect::<serde_json::Map<_, _>>(),
        "statusLists": lists,
    });
    let verdicts = crate::js_verify(&input);
    assert_eq!(verdicts.len(), credentials.len());
    for (i, verdict) in verdicts.iter().enumerate() {
        if i < fold.revoked.len() {
            assert_eq!(
                verdict["verified"], false,
                "{drill}: revoked {} verifies offline: {verdict}",
                fold.revoked[i]
            );
        } else {
            assert_eq!(
                verdict["verified"], true,
                "{drill}: an active certificate is refused offline: {verdict}"
            );
        }
    }
}
