//! Analytics and the dashboard on the real stack: synthetic vaccinations are signed and projected;
//! the analytics endpoints' counts equal what was posted, per vaccine and per state; bad filters
//! are refused; the dashboard renders its charts in headless Chromium and a screenshot is saved
//! (its path is printed: a CI artefact).

use std::{collections::BTreeMap, process::Command, time::Duration};

use domain::{
    commands::{ParseContext, RecordVaccination},
    events::VaccinationPayload,
    vaccine::VaccineCatalog,
    values::CountryCode,
};
use reqwest::StatusCode;
use serde_json::Value;
use vaxctl::synthetic::Person;
use vaxtrail_tests::{
    TestAuth, TestStack, eventually, inprocess,
    signer::{self, EventWriter, Issuer, envelope, recipient},
};

const PEOPLE: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_count_what_was_posted_and_the_dashboard_renders() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let projectors = inprocess::projectors(&stack, |_| {}).await;
    let query_api = inprocess::query_api(&stack, &issuer.dir, &auth, |_| {}).await;
    let url = query_api.url.clone();

    let catalog = VaccineCatalog::divoc_default();
    let today = chrono::Utc::now().date_naive();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("c", "IND").unwrap(),
        today,
    };
    let (mut by_vaccine, mut by_state) = (BTreeMap::new(), BTreeMap::new());
    let (mut by_facility, mut by_vaccinator) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..PEOPLE {
        let person = Person::new(i, today, 30);
        let record = RecordVaccination::parse(&person.certify_request(1, ""), &ctx).unwrap();
        *by_vaccine
            .entry(record.vaccination.vaccine.name.clone())
            .or_insert(0_u64) += 1;
        *by_state
            .entry(record.facility.address.state.as_str().to_owned())
            .or_insert(0_u64) += 1;
        *by_facility
            .entry(record.facility.name.as_str().to_owned())
            .or_insert(0_u64) += 1;
        *by_vaccinator
            .entry(record.vaccinator.as_str().to_owned())
            .or_insert(0_u64) += 1;
        let key = recipient(record.recipient.identity.as_str());
        writer
            .append(&envelope(
                &format!("d{i}"),
                key,
                VaccinationPayload::VaccinationRecorded(record),
            ))
            .await;
    }

    let client = reqwest::Client::new();
    let get = |path: &str| {
        let (client, url) = (client.clone(), format!("{url}{path}"));
        async move { client.get(url).send().await.unwrap() }
    };
    eventually(
        Duration::from_secs(90),
        "every dose and certificate counted",
        || async {
            let doses: Value = get("/v1/analytics/doses").await.json().await.ok()?;
            let latency: Value = get("/v1/analytics/signing-latency").await.json().await.ok()?;
            (doses["total"] == PEOPLE && latency["certificates"] == PEOPLE).then_some(())
        },
    )
    .await;

    // The monitoring authority reads every cell; the public only cells of 10 or more.
    let monitoring = auth.bearer("monitoring-1", &[platform::auth::Role::Monitoring]);
    let get_full = |path: &str| {
        let (client, url, token) = (client.clone(), format!("{url}{path}"), monitoring.clone());
        async move {
            let response = client.get(url).header("authorization", token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["cache-control"], "private, no-store");
            response
        }
    };
    let series = |body: Value| -> BTreeMap<String, u64> {
        body["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["key"].as_str().unwrap().to_owned(), s["doses"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(
        series(get_full("/v1/analytics/doses?by=vaccine").await.json().await.unwrap()),
        by_vaccine
    );
    assert_eq!(
        series(get_full("/v1/analytics/doses?by=state").await.json().await.unwrap()),
        by_state
    );
    // DIVOC's portal counts by facility and by vaccinator; a vaccinator is a person, so that
    // breakdown is the monitoring role's only.
    assert_eq!(
        series(get_full("/v1/analytics/doses?by=facility").await.json().await.unwrap()),
        by_facility
    );
    assert_eq!(
        series(
            get_full("/v1/analytics/doses?by=vaccinator")
                .await
                .json()
                .await
                .unwrap()
        ),
        by_vaccinator
    );
    assert_eq!(
        get("/v1/analytics/doses?by=vaccinator").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The public breakdown by state: exactly the states with 10 or more doses, their counts
    // exact; the others withheld and counted; no total or sum that would give a withheld count.
    let public = get("/v1/analytics/doses?by=state").await;
    assert_eq!(public.headers()["cache-control"], "public, max-age=30");
    let public: Value = public.json().await.unwrap();
    let large: BTreeMap<String, u64> = by_state
        .iter()
        .filter(|(_, n)| **n >= 10)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    let small: Vec<u64> = by_state.values().copied().filter(|n| *n < 10).collect();
    assert!(
        !small.is_empty(),
        "40 people over many states leave small cells: {by_state:?}"
    );
    assert_eq!(series(public.clone()), large, "{public}");
    assert_eq!(public["suppressed"]["cells"], small.len(), "{public}");
    assert_eq!(public["suppressed"]["threshold"], 10);
    let hidden: u64 = small.iter().sum();
    if small.len() >= 2 && hidden >= 10 {
        assert_eq!(
            (public["total"].as_u64(), public["suppressed"]["count"].as_u64()),
            (Some(PEOPLE), Some(hidden))
        );
    } else {
        assert!(
            public["total"].is_null() && public["suppressed"]["count"].is_null(),
            "{public}"
        );
    }
    // Any other token is refused, not answered as the public.
    let facility = client
        .get(format!("{url}/v1/analytics/doses?by=state"))
        .header(
            "authorization",
            auth.bearer("facility-1", &[platform::auth::Role::Facility]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(facility.status(), StatusCode::FORBIDDEN);
    let forged = client
        .get(format!("{url}/v1/analytics/doses?by=state"))
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let genders = series(get_full("/v1/analytics/doses?by=gender").await.json().await.unwrap());
    assert_eq!(genders.values().sum::<u64>(), PEOPLE);
    let none = get("/v1/analytics/doses?programme=no-such-programme").await;
    assert_eq!(none.json::<Value>().await.unwrap()["total"], 0);
    let latency: Value = get("/v1/analytics/signing-latency").await.json().await.unwrap();
    let (p50, p99) = (latency["p50Ms"].as_f64().unwrap(), latency["p99Ms"].as_f64().unwrap());
    assert!((1.0..600_000.0).contains(&p50) && p50 <= p99, "{latency}");
    let outcomes: Value = get_full("/v1/analytics/certificates").await.json().await.unwrap();
    assert_eq!(outcomes["series"][0]["key"], "issued");
    assert_eq!(outcomes["series"][0]["certificates"], PEOPLE);
    for bad in [
        "/v1/analytics/doses?by=nope",
        "/v1/analytics/doses?from=2021-13-01",
        "/v1/analytics/doses?colour=red",
    ] {
        let response = get(bad).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{bad}");
    }
    eventually(Duration::from_secs(30), "no projection behind", || async {
        let lag: Value = get("/v1/pipeline/lag").await.json().await.ok()?;
        let behind: u64 = lag["behind"]
            .as_object()?
            .values()
            .flat_map(|topics| topics.as_object().into_iter().flat_map(|t| t.values()))
            .map(|n| n.as_u64().unwrap_or(u64::MAX))
            .sum();
        (behind == 0).then_some(())
    })
    .await;

    // The dashboard in headless Chromium: the charts render (the page marks itself), screenshot.
    let dir = vaxtrail_tests::artifacts();
    let chromium = |args: &[&str]| {
        let (url, args) = (
            format!("{url}/dashboard"),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || {
            Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1400,1500",
                ])
                .args(["--virtual-time-budget=15000", "--run-all-compositor-stages-before-draw"])
                .args(args)
                .arg(url)
                .output()
                .expect("chromium is installed (deploy/local/install)")
        })
    };
    let dom = chromium(&["--dump-dom"]).await.unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-rendered=\"true\""),
        "the charts did not render:\n{dom}"
    );
    assert!(
        dom.contains(&format!("{PEOPLE} doses")),
        "the totals line shows the doses"
    );
    let screenshot = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = chromium(&[&format!("--screenshot={}", screenshot.display())])
        .await
        .unwrap();
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let image = image::open(&screenshot).expect("a PNG screenshot").to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 50,
        "the screenshot is not blank: {} colours",
        colours.len()
    );
    // Straight to the process's stderr: the test harness captures println!/eprintln!.
    let line = format!(
        "dashboard screenshot (CI artefact): {}\n",
        screenshot.canonicalize().unwrap().display()
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();

    signer.stop_cleanly().await;
    projectors.stop().await;
}
