//! `vaxctl demo`: posts realistic synthetic vaccinations through the command API, as a facility
//! would: first doses of `--count` people (varied vaccines, states, ages), second doses for two in
//! five of those whose schedule has one, a correction for one in forty, and a revocation (as a
//! controller) for one in fifty. Person `i` and their requests are the same in every run (the
//! Idempotency-Key names them), so running it twice adds nothing; `--first` moves to new people.
//! Prints where to look: the dashboard, a certificate, its QR and PDF, the verifier page.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use domain::ids::{CertificateId, EventId};
use futures::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use platform::auth::{AuthArgs, Role};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use vaxctl::synthetic::Person;

/// `vaxctl demo` arguments.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// People to vaccinate.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// The first person's number (another value gives other people).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Requests per second at most.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// The command API.
    #[arg(
        long = "command-url",
        env = "VAXTRAIL_COMMAND_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    command_url: String,
    /// The query API (public base URL).
    #[arg(
        long = "query-url",
        env = "VAXTRAIL_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    query_url: String,
    /// The development signing key (written by `vaxctl dev-auth init`).
    #[arg(
        long = "key",
        env = "VAXTRAIL_DEV_TOKEN_KEY",
        default_value = ".vaxtrail/keys/dev-token-key.json"
    )]
    key: PathBuf,
    /// The deployment's id secret, as the signer has it: the demo derives the certificate ids of
    /// what it posted, to correct and revoke them.
    #[command(flatten)]
    ids: platform::environment::IdSecretArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

struct Demo {
    client: reqwest::Client,
    args: DemoArgs,
    facility: String,
    controller: String,
    ticker: Mutex<tokio::time::Interval>,
    today: chrono::NaiveDate,
    /// Never cancelled: Ctrl-C ends the process, and retries end at their deadline.
    stop: platform::Shutdown,
}

/// How one post went when it did not succeed.
enum Attempt {
    /// Worth another try with the same Idempotency-Key (503, or no connection).
    Retry(String),
    /// Refused for good.
    Refused(anyhow::Error),
}

impl Demo {
    /// Posts a body, rate-limited; the accepted event id. A 503 (the log did not acknowledge) or a
    /// connection error is retried with the same Idempotency-Key, as the API asks, for up to two
    /// minutes; any other refusal is an error.
    async fn post(&self, path: &str, token: &str, key: &str, body: &Value) -> anyhow::Result<EventId> {
        self.ticker.lock().await.tick().await;
        let backoff = platform::Backoff::new(Duration::from_millis(250), Duration::from_secs(5))
            .giving_up_after(Duration::from_secs(120));
        let answer = backoff
            .retry(
                &self.stop,
                || self.post_once(path, token, key, body),
                |attempt| match attempt {
                    Attempt::Retry(why) => {
                        tracing::warn!(retry = %why, "retrying with the same Idempotency-Key");
                        true
                    }
                    Attempt::Refused(_) => false,
                },
            )
            .await?;
        match answer {
            Ok(id) => Ok(id),
            Err(Attempt::Retry(why)) => anyhow::bail!("{why}, still after two minutes of retries"),
            Err(Attempt::Refused(error)) => Err(error),
        }
    }

    async fn post_once(&self, path: &str, token: &str, key: &str, body: &Value) -> Result<EventId, Attempt> {
        let sent = self
            .client
            .post(format!("{}{path}", self.args.command_url))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        let refused = |error: anyhow::Error| Attempt::Refused(error);
        match sent {
            Ok(response) if response.status().as_u16() == 202 => {
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                let id = answer["eventId"]
                    .as_str()
                    .ok_or_else(|| refused(anyhow::anyhow!("{path}: no eventId in {answer}")))?;
                EventId::parse("eventId", id).map_err(|e| refused(anyhow::anyhow!("{e:?}")))
            }
            Ok(response) if response.status().as_u16() == 503 => Err(Attempt::Retry(format!("{path} answered 503"))),
            Ok(response) => {
                let status = response.status();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                Err(refused(anyhow::anyhow!("{path} answered {status}: {answer}")))
            }
            Err(error) => Err(Attempt::Retry(format!("{path}: {error}"))),
        }
    }

    /// One person's doses and, for some, a correction. Their first certificate's id.
    async fn person(&self, i: u64) -> anyhow::Result<(u64, CertificateId)> {
        let person = Person::new(i, self.today, 60);
        let first = self
            .post(
                "/v1/vaccinations",
                &self.facility,
                &format!("demo-{i}-1"),
                &person.certify_request(1, ""),
            )
            .await?;
        let certificate = CertificateId::for_event(&self.args.ids.key_unchecked(), first);
        if person.doses() >= 2 && i % 5 < 2 {
            self.post(
                "/v1/vaccinations",
                &self.facility,
                &format!("demo-{i}-2"),
                &person.certify_request(2, ""),
            )
            .await?;
        }
        if i % 40 == 7 {
            let mut body = person.certify_request(1, "C");
            body["certificateId"] = json!(certificate.as_str());
            self.post("/v1/corrections", &self.facility, &format!("demo-{i}-c"), &body)
                .await?;
        }
        Ok((i, certificate))
    }

    /// Revokes a person's first certificate once the query API knows the recipient.
    async fn revoke(&self, i: u64, certificate: &CertificateId) -> anyhow::Result<()> {
        let code = Person::new(i, self.today, 60).certify_request(1, "")["preEnrollmentCode"].clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let recipient = loop {
            let found: Value = self
                .client
                .get(format!("{}/v1/recipients", self.args.query_url))
                .query(&[("preEnrollmentCode", code.as_str().unwrap_or_default())])
                .bearer_auth(&self.facility)
                .send()
                .await?
                .json()
                .await
                .unwrap_or(Value::Null);
            if let Some(key) = found["recipients"][0]["recipientKey"].as_str() {
                break key.to_owned();
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "person {i} did not reach the query API within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let body = json!({
            "certificateId": certificate.as_str(),
            "reason": "recorded in error (demo)",
            "recipientKey": recipient,
        });
        self.post("/v1/revocations", &self.controller, &format!("demo-{i}-r"), &body)
            .await?;
        Ok(())
    }
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let key = crate::auth::dev_key(&args.key)?;
    let ttl = Duration::from_secs(3600);
    let token = |roles: &[Role]| key.token("vaxctl-demo", roles, &args.auth.issuer, &args.auth.audience, ttl);
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let demo = Arc::new(Demo {
        client: reqwest::Client::new(),
        facility: token(&[Role::Facility]),
        controller: token(&[Role::Controller]),
        ticker: Mutex::new(ticker),
        today: chrono::Utc::now().date_naive(),
        args: args.clone(),
        stop: platform::Shutdown::new(),
    });

    let bar = ProgressBar::new(args.count);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} people {per_sec} eta {eta}")
            .expect("a template"),
    );
    bar.set_message("posting");
    let people: Vec<(u64, CertificateId)> = stream::iter(args.first..args.first + args.count)
        .map(|i| {
            let (demo, bar) = (demo.clone(), bar.clone());
            async move {
                let done = demo.person(i).await?;
                bar.inc(1);
                anyhow::Ok(done)
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    bar.finish_with_message("posted");

    let revoked: Vec<&(u64, CertificateId)> = people.iter().filter(|(i, _)| i % 50 == 13).collect();
    for (i, certificate) in &revoked {
        demo.revoke(*i, certificate).await?;
    }

    let (_, sample) = &people[0];
    let q = args.query_url.trim_end_matches('/');
    println!(
        "posted {} people (second doses, corrections and {} revocations among them). Look at:",
        people.len(),
        revoked.len()
    );
    println!("  dashboard     {q}/dashboard");
    println!(
        "  a certificate {q}/v1/certificates/{sample}/status   (its credential, PDF and QR need the holder's code or a token)"
    );
    println!("  verifier      {q}/verify");
    Ok(())
}
