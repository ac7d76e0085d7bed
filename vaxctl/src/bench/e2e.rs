//! `vaxctl bench e2e`: the whole pipeline as it runs, measured from outside. Against the four
//! services running on the local stack (`deploy/local/run`, or `VAXTRAIL_BUILD=release
//! deploy/local/run`), it posts distinct DIVOC records to `POST /v1/vaccinations` at a fixed
//! offered rate (open loop: a slow answer does not slow the sender), and polls `GET
//! /v1/events/{id}` until each says which certificate was issued. It reports certificates per
//! second that became queryable, POST→queryable p50/p99/max, and what the API refused. Then it
//! steps the rate up for the highest rate the pipeline sustains (everything queryable within
//! the step plus a short drain, p99 under `--sustained-p99-ms`). In the same run it measures the
//! broker's own ceiling: a raw rdkafka producer writing the same encoded records, and a bare
//! consumer reading them back.

use std::{
    collections::BinaryHeap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use platform::{KafkaArgs, auth::Role};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use vaxctl::synthetic::Person;

use crate::bench::{encoded, raw_producer};

/// `vaxctl bench e2e` arguments.
#[derive(Clone, Debug, Args)]
pub struct E2eArgs {
    /// The fixed offered rate, POSTs per second.
    #[arg(long, default_value_t = 700.0)]
    rate: f64,
    /// How long the fixed rate is offered.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The rates tried after it, for the highest sustained one (comma-separated; empty: none).
    #[arg(long, value_delimiter = ',', default_value = "1000,1500,2000,3000")]
    steps: Vec<f64>,
    /// How long each step offers its rate.
    #[arg(long, default_value_t = 20)]
    step_seconds: u64,
    /// A step is sustained when every record is queryable within 10 s of the last POST and the
    /// p99 stays under this.
    #[arg(long, default_value_t = 5_000)]
    sustained_p99_ms: u64,
    /// Records the broker's ceiling is measured with.
    #[arg(long, default_value_t = 20_000)]
    broker_records: usize,
    /// The command API.
    #[arg(long, env = "VAXTRAIL_COMMAND_API_URL", default_value = "http://127.0.0.1:8080")]
    command_url: String,
    /// The query API.
    #[arg(long, env = "VAXTRAIL_QUERY_API_URL", default_value = "http://127.0.0.1:8090")]
    query_url: String,
    /// The development signing key (written by `vaxctl dev-auth init`).
    #[arg(
        long = "key",
        env = "VAXTRAIL_DEV_TOKEN_KEY",
        default_value = ".vaxtrail/keys/dev-token-key.json"
    )]
    key: std::path::PathBuf,
    #[command(flatten)]
    auth: platform::auth::AuthArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What one phase (a rate offered for a while) measured.
#[derive(Debug)]
struct Phase {
    offered: f64,
    posted: u64,
    refused: u64,
    queryable: u64,
    /// From the first POST to the last record becoming queryable.
    seconds: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Every accepted record became queryable in time.
    drained: bool,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.queryable as f64 / self.seconds.max(1e-9)
    }

    fn to_json(&self) -> Value {
        json!({
            "offered_per_second": self.offered, "posted": self.posted, "refused": self.refused,
            "queryable": self.queryable, "certificates_per_second": self.per_second(),
            "p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max), "drained": self.drained,
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A posted record waiting to be seen, ordered by when to look next (soonest first).
struct Waiting {
    next: Instant,
    sent: Instant,
    event: String,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.next == other.next
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.next.cmp(&self.next)
    }
}

/// The shared state of one run.
struct Run {
    client: reqwest::Client,
    args: E2eArgs,
    token: String,
    today: chrono::NaiveDate,
    /// The next person's number (distinct across runs: it starts at a random base).
    next_person: AtomicU64,
}

impl Run {
    /// Offers `rate` POSTs per second for `seconds`, then waits (up to `drain`) for every accepted
    /// record to become queryable.
    async fn phase(self: &Arc<Self>, rate: f64, seconds: u64, drain: Duration) -> anyhow::Result<Phase> {
        let waiting = Arc::new(Mutex::new(BinaryHeap::<Waiting>::new()));
        let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let posted = Arc::new(AtomicU64::new(0));
        let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pollers: Vec<_> = (0..32)
            .map(|_| tokio::spawn(self.clone().poll(waiting.clone(), latencies.clone(), sending.clone())))
            .collect();

        let started = Instant::now();
        let total = (rate * seconds as f64) as u64;
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let bar = crate::bench::progress(total as usize, &format!("{rate:.0}/s"), self.args.json);
        let mut posts = tokio::task::JoinSet::new();
        for _ in 0..total {
            ticker.tick().await;
            let (run, waiting, refused, posted) = (self.clone(), waiting.clone(), refused.clone(), posted.clone());
            posts.spawn(async move {
                let sent = Instant::now();
                match run.post().await {
                    Some(event) => {
                        posted.fetch_add(1, Ordering::Relaxed);
                        waiting.lock().await.push(Waiting {
                            next: sent + Duration::from_millis(150),
                            sent,
                            event,
                        });
                    }
                    None => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            bar.inc(1);
        }
        while posts.join_next().await.is_some() {}
        bar.finish_and_clear();
        let last_post = Instant::now();
        let accepted = posted.load(Ordering::Relaxed);
        while (latencies.lock().await.len() as u64) < accepted && last_post.elapsed() < drain {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        sending.store(false, Ordering::Relaxed);
        for poller in pollers {
            poller.abort();
        }
        let mut seen = latencies.lock().await.clone();
        seen.sort();
        let at = |q: f64| {
            seen.get(((seen.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Ok(Phase {
            offered: rate,
            posted: accepted,
            refused: refused.load(Ordering::Relaxed),
            queryable: seen.len() as u64,
            seconds,
            p50: at(0.50),
            p99: at(0.99),
            max: seen.last().copied().unwrap_or_default(),
            drained: seen.len() as u64 == accepted,
        })
    }

    /// Posts the next person's first dose; its event id, or `None` when the API refused it.
    async fn post(&self) -> Option<String> {
        let i = self.next_person.fetch_add(1, Ordering::Relaxed);
        let body = Person::new(i, self.today, 60).certify_request(1, "");
        let response = self
            .client
            .post(format!("{}/v1/vaccinations", self.args.command_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .ok()?;
        if response.status().as_u16() != 202 {
            return None;
        }
        let answer: Value = response.json().await.ok()?;
        answer["eventId"].as_str().map(str::to_owned)
    }

    /// Looks up waiting records as they come due: a record seen issued gives its latency; one not
    /// yet is looked at again 100 ms later.
    async fn poll(
        self: Arc<Self>,
        waiting: Arc<Mutex<BinaryHeap<Waiting>>>,
        latencies: Arc<Mutex<Vec<Duration>>>,
        sending: Arc<std::sync::atomic::AtomicBool>,
    ) {
        while sending.load(Ordering::Relaxed) {
            let due = {
                let mut queue = waiting.lock().await;
                match queue.peek() {
                    Some(first) if first.next <= Instant::now() => queue.pop(),
                    _ => None,
                }
            };
            let Some(mut record) = due else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if self.issued(&record.event).await {
                latencies.lock().await.push(record.sent.elapsed());
            } else {
                record.next = Instant::now() + Duration::from_millis(100);
                waiting.lock().await.push(record);
            }
        }
    }

    async fn issued(&self, event: &str) -> bool {
        let Ok(response) = self
            .client
            .get(format!("{}/v1/events/{event}", self.args.query_url))
            .bearer_auth(&self.token)
            .send()
            .await
        else {
            return false;
        };
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        answer["certificateId"].is_string()
    }
}

/// The broker's ceiling: the same records written by a raw producer, then read by a bare consumer.
async fn broker_ceiling(kafka: &KafkaArgs, records: usize, quiet: bool) -> anyhow::Result<(f64, f64)> {
    let run = format!("bench-e2e-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topic = format!("{run}raw");
    platform::topics::ensure_topics(
        &kafka.brokers,
        &[platform::topics::TopicSpec {
            name: topic.clone(),
            partitions: kafka.partitions,
            config: vec![],
        }],
    )
    .await?;
    let today = chrono::Utc::now().date_naive();
    let bodies: Vec<Value> = (0..records)
        .map(|i| Person::new(i as u64, today, 60).certify_request(1, ""))
        .collect();
    let encoded = Arc::new(encoded(&bodies, &kafka.schema_registry_url, &kafka.topics().vaccination_events).await?);
    let written = raw_producer(&kafka.brokers, &topic, &encoded, 256, quiet).await?;
    let (brokers, partitions) = (kafka.brokers.clone(), kafka.partitions);
    let read =
        tokio::task::spawn_blocking(move || crate::bench::replay::read_rate(&brokers, &[topic], partitions, records))
            .await??;
    eprintln!("topics of this run: vaxctl topics delete --prefix {run}");
    Ok((written.events_per_second, read))
}

/// Runs the benchmark.
pub async fn run(kafka: &KafkaArgs, args: &E2eArgs) -> anyhow::Result<()> {
    let key = crate::auth::dev_key(&args.key)?;
    let token = key.token(
        "bench-e2e",
        &[Role::Facility],
        &args.auth.issuer,
        &args.auth.audience,
        Duration::from_secs(3600),
    );
    let base = u64::from(rand::random::<u32>()) * 1_000_000;
    let run = Arc::new(Run {
        client: reqwest::Client::builder().pool_max_idle_per_host(256).build()?,
        args: args.clone(),
        token,
        today: chrono::Utc::now().date_naive(),
        next_person: AtomicU64::new(base),
    });
    let drain = Duration::from_secs(60);
    let fixed = run.phase(args.rate, args.seconds, drain).await?;
    let mut steps = Vec::new();
    for rate in &args.steps {
        let phase = run.phase(*rate, args.step_seconds, Duration::from_secs(10)).await?;
        let sustained =
            phase.drained && phase.refused == 0 && phase.p99 <= Duration::from_millis(args.sustained_p99_ms);
        steps.push((phase, sustained));
        if !sustained {
            break;
        }
    }
    let (produced, consumed) = broker_ceiling(kafka, args.broker_records, args.json).await?;
    let best = steps
        .iter()
        .filter(|(_, sustained)| *sustained)
        .map(|(p, _)| p.per_second())
        .fold(if fixed.drained { fixed.per_second() } else { 0.0 }, f64::max);
    report(args, &fixed, &steps, best, produced, consumed);
    Ok(())
}

fn report(args: &E2eArgs, fixed: &Phase, steps: &[(Phase, bool)], best: f64, produced: f64, consumed: f64) {
    if args.json {
        println!(
            "{}",
            json!({
                "fixed": fixed.to_json(),
                "steps": steps.iter().map(|(p, s)| json!({"phase": p.to_json(), "sustained": s})).collect::<Vec<_>>(),
                "highest_sustained_certificates_per_second": best,
                "broker": {"raw_producer_per_second": produced, "bare_consumer_per_second": consumed},
            })
        );
        return;
    }
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "offered/s", "posted", "refused", "seen", "certs/s", "p50 ms", "p99 ms", "max ms"
    );
    for (phase, note) in std::iter::once((fixed, "fixed")).chain(
        steps
            .iter()
            .map(|(p, s)| (p, if *s { "sustained" } else { "not sustained" })),
    ) {
        println!(
            "{:<16} {:>8} {:>8} {:>8} {:>10.1} {:>9.0} {:>9.0} {:>9.0}  {note}",
            format!("{:.0}", phase.offered),
            phase.posted,
            phase.refused,
            phase.queryable,
            phase.per_second(),
            ms(phase.p50),
            ms(phase.p99),
            ms(phase.max)
        );
    }
    println!("highest sustained: {best:.0} certificates/s queryable");
    println!(
        "broker ceiling in the same run: raw producer {produced:.0} records/s, bare consumer {consumed:.0} records/s"
    );
}
