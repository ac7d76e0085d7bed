//! Master data as events (issue 20): programmes, vaccines and facilities are records on the
//! compacted `master-data` topic, changed over the command API by the roles that own them, and
//! applied by every command-API instance without a restart. A programme's time zone decides the
//! date of a dose given near midnight; a facility token posts only for a registered, active
//! facility it is bound to.

use std::time::Duration;

use avro::codec::VaccinationCodec;
use domain::events::VaccinationPayload;
use platform::auth::Role;
use rdkafka::Message;
use reqwest::Method;
use serde_json::{Value, json};
use vaxtrail_tests::{CommandApi, TestStack, eventually, fixtures::divoc_certify_request, inprocess, kafka};

async fn call(api: &CommandApi, method: Method, path: &str, bearer: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", api.url))
        .header("Authorization", bearer);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the command API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// DIVOC's sample for `programme` at `facility`, given at 19:21 UTC (00:51 the next day in
/// Kolkata), with its own pre-enrollment code.
fn record(programme: &str, facility: &str, code: &str) -> Value {
    let mut body = divoc_certify_request()[0].clone();
    body["programId"] = json!(programme);
    body["facility"]["name"] = json!(facility);
    body["preEnrollmentCode"] = json!(code);
    body
}

fn rules(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or("").to_owned(),
                        e["rule"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every vaccination on the topic: (pre-enrollment code, the dose's date, the update limit its
/// programme's rules carried).
async fn dates(stack: &TestStack, expected: usize) -> Vec<(String, String, Option<u32>)> {
    let topic = stack.topic("vaccination-events");
    let records =
        tokio::task::block_in_place(|| kafka::read(&stack.kafka.brokers, &topic, 3, expected, Duration::from_secs(20)));
    let codec = VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic).with_keys(stack.keys());
    let mut out = Vec::new();
    for message in records {
        let envelope = codec
            .decode(message.payload().expect("a value"))
            .await
            .expect("decodes");
        if let VaccinationPayload::VaccinationRecorded(record) = envelope.event.payload {
            out.push((
                record.pre_enrollment_code.as_str().to_owned(),
                record.vaccination.date.date().to_string(),
                record.rules.map(|r| r.update_limit),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_data_is_managed_over_the_api_and_applies_without_a_restart() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
    let admin = api.auth.bearer("ministry", &[Role::Admin]);
    let controller = api.auth.bearer("state-controller", &[Role::Controller]);
    let phc1 = api.auth.bearer_for("phc-1-system", &[Role::Facility], &["phc-1"]);
    let phc2 = api.auth.bearer_for("phc-2-system", &[Role::Facility], &["phc-2"]);

    // Two programmes in different zones. Bad bodies and the wrong role change nothing.
    let utc = json!({"name": "Routine", "diseases": ["COVID-19"], "totalDoses": 2, "updateLimit": 1,
                     "timeZone": "UTC", "country": "IND"});
    let (status, body) = call(&api, Method::PUT, "/v1/master-data/programmes/1234", &phc1, Some(&utc)).await;
    assert_eq!(status, 403, "{body}");
    let bad =
        json!({"name": "Routine", "totalDoses": "two", "updateLimit": 1, "timeZone": "Mars/Olympus", "country": "ind"});
    let (status, body) = call(&api, Method::PUT, "/v1/master-data/programmes/1234", &admin, Some(&bad)).await;
    assert_eq!(status, 422, "{body}");
    let named: Vec<String> = rules(&body).into_iter().map(|(field, _)| field).collect();
    assert_eq!(named, ["totalDoses", "timeZone", "country"], "{body}");
    let (status, body) = call(&api, Method::PUT, "/v1/master-data/programmes/1234", &admin, Some(&utc)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timeZone"], "UTC");
    let mut kolkata = utc.clone();
    kolkata["timeZone"] = json!("Asia/Kolkata");
    kolkata["updateLimit"] = json!(3);
    let (status, body) = call(
        &api,
        Method::PUT,
        "/v1/master-data/programmes/9999",
        &admin,
        Some(&kolkata),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A facility token bound to phc-1: unknown facility, then registered (suspended), then
    // activated by a controller.
    let at_phc1 = record("1234", "PHC Whitefield", "M-1");
    let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &phc1, Some(&at_phc1)).await;
    assert_eq!(status, 422, "{body}");
    assert!(rules(&body)[0].1.starts_with("facility-unknown"), "{body}");
    let facility = json!({"name": "PHC Whitefield", "district": "Bengaluru", "state": "Karnataka"});
    let (status, body) = call(
        &api,
        Method::PUT,
        "/v1/master-data/facilities/phc-1",
        &admin,
        Some(&facility),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("suspended")), "{body}");
    let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &phc1, Some(&at_phc1)).await;
    assert_eq!(status, 422, "{body}");
    assert!(rules(&body)[0].1.starts_with("facility-suspended"), "{body}");
    let active = json!({"status": "active"});
    let (status, _) = call(
        &api,
        Method::POST,
        "/v1/master-data/facilities/phc-1/status",
        &phc1,
        Some(&active),
    )
    .await;
    assert_eq!(status, 403, "a facility activated itself");
    let (status, _) = call(
        &api,
        Method::POST,
        "/v1/master-data/facilities/nowhere/status",
        &controller,
        Some(&active),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/master-data/facilities/phc-1/status",
        &controller,
        Some(&active),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")), "{body}");
    let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &phc1, Some(&at_phc1)).await;
    assert_eq!(status, 202, "{body}");

    // Another facility's token may not post as phc-1, in a single record or in an array.
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/vaccinations",
        &phc2,
        Some(&record("1234", "PHC Whitefield", "M-X")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["type"].as_str().map(|t| t.ends_with("facility-not-bound")),
        Some(true),
        "{body}"
    );
    let (status, _) = call(
        &api,
        Method::POST,
        "/v1/certify",
        &phc2,
        Some(&json!([record("1234", "PHC Whitefield", "M-Y")])),
    )
    .await;
    assert_eq!(status, 403);

    // A record whose course is not its programme's is refused.
    let mut three = record("1234", "PHC Whitefield", "M-T");
    three["vaccination"]["totalDoses"] = json!(3);
    let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &phc1, Some(&three)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(rules(&body)[0].0, "vaccination.totalDoses", "{body}");

    // The same moment, 19:21 UTC, is 2 December in a UTC programme and 3 December in Kolkata.
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/vaccinations",
        &phc1,
        Some(&record("9999", "PHC Whitefield", "M-2")),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    // A change applies at once, without a restart: programme 1234 moves to Kolkata.
    let (status, _) = call(
        &api,
        Method::PUT,
        "/v1/master-data/programmes/1234",
        &admin,
        Some(&kolkata),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/vaccinations",
        &phc1,
        Some(&record("1234", "PHC Whitefield", "M-3")),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        dates(&stack, 3).await,
        [
            ("M-1".to_owned(), "2020-12-02".to_owned(), Some(1)),
            ("M-2".to_owned(), "2020-12-03".to_owned(), Some(3)),
            ("M-3".to_owned(), "2020-12-03".to_owned(), Some(3)),
        ],
        "only the records accepted, each dated in its programme's zone at the time and carrying \
         the rules that held (the signer decides corrections with them, a replay too)"
    );

    // A vaccine the file's master list lacks is refused, then accepted once an administrator
    // adds it: no redeploy.
    let mut newvax = record("1234", "PHC Whitefield", "M-4");
    newvax["vaccination"]["name"] = json!("NovaVax-26");
    let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &phc1, Some(&newvax)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(rules(&body)[0].0, "vaccination.name", "{body}");
    let vaccine = json!({"name": "NovaVax-26", "manufacturer": "Novavax", "icd11Code": "XM5JC5",
                         "icd11Term": "COVID-19 vaccine, virus protein subunit", "vaccineType": "Protein Subunit",
                         "disease": "COVID-19"});
    let (status, body) = call(&api, Method::POST, "/v1/master-data/vaccines", &admin, Some(&vaccine)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &phc1, Some(&newvax)).await;
    assert_eq!(status, 202, "{body}");

    // Once a facility registers its vaccinators, a record names one of them (DIVOC's sample's
    // vaccinator is Sooraj Singh).
    let asha = json!({"name": "Asha Devi", "facilities": ["phc-1"]});
    let (status, body) = call(
        &api,
        Method::PUT,
        "/v1/master-data/vaccinators/v-1",
        &admin,
        Some(&asha),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/vaccinations",
        &phc1,
        Some(&record("1234", "PHC Whitefield", "M-V")),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(rules(&body)[0].0, "vaccinator.name", "{body}");
    assert!(rules(&body)[0].1.starts_with("vaccinator-unknown"), "{body}");
    let sooraj = json!({"name": "Sooraj Singh", "facilities": ["phc-1"]});
    let (status, _) = call(
        &api,
        Method::PUT,
        "/v1/master-data/vaccinators/v-2",
        &admin,
        Some(&sooraj),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/vaccinations",
        &phc1,
        Some(&record("1234", "PHC Whitefield", "M-V")),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    // DIVOC's master list loads through `vaxctl master-data import`, as an administrator's tool.
    let token = admin.trim_start_matches("Bearer ").to_owned();
    let import = tokio::process::Command::new(vaxtrail_tests::bin_dir().join("vaxctl"))
        .args(["master-data", "import", "--command-url", &api.url, "--token", &token])
        .output()
        .await
        .expect("vaxctl was built");
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let divoc = domain::vaccine::VaccineCatalog::divoc_default().vaccines().count();
    let (_, listing) = call(&api, Method::GET, "/v1/master-data", &admin, None).await;
    assert_eq!(
        listing["vaccines"].as_array().map(Vec::len),
        Some(divoc + 1),
        "{listing}"
    );

    // A new instance reads the same master data from the topic, and holds facilities to it.
    let second = inprocess::command_api(&stack, |_| {}).await;
    let reader = second.auth.bearer("ministry", &[Role::Admin]);
    let listing = eventually(
        Duration::from_secs(20),
        "the new instance to read the master data",
        || async {
            let (status, body) = call(&second, Method::GET, "/v1/master-data", &reader, None).await;
            (status == 200 && body["facilities"].as_array().is_some_and(|f| !f.is_empty())).then_some(body)
        },
    )
    .await;
    assert_eq!(listing["programmes"].as_array().map(Vec::len), Some(2), "{listing}");
    assert_eq!(listing["programmes"][0]["timeZone"], "Asia/Kolkata", "{listing}");
    assert_eq!(listing["facilities"][0]["status"], "active", "{listing}");
    assert_eq!(listing["vaccinators"].as_array().map(Vec::len), Some(2), "{listing}");
    let stranger = second.auth.bearer_for("phc-2-system", &[Role::Facility], &["phc-2"]);
    let (status, _) = call(
        &second,
        Method::POST,
        "/v1/vaccinations",
        &stranger,
        Some(&record("1234", "PHC Whitefield", "M-Z")),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_defines_a_programme_and_activates_a_facility_in_a_real_browser() {
    let stack = TestStack::new().await;
    // The query API's port first: the command API lets that origin call it (CORS), and the page
    // calls the command API's URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    let api = inprocess::command_api(&stack, |config| config.admin_origins = vec![origin.clone()]).await;
    let issuer = vaxtrail_tests::signer::Issuer::new();
    let command_url = api.url.clone();
    let query = inprocess::query_api(&stack, &issuer.dir, &api.auth, |config| {
        config.listen = format!("127.0.0.1:{port}").parse().expect("an address");
        config.command_api_url = command_url;
    })
    .await;
    let admin = api.auth.bearer("ministry", &[Role::Admin]);

    let dir = vaxtrail_tests::artifacts();
    let screenshot = dir.join("admin.png");
    let _ = std::fs::remove_file(&screenshot);
    let page = format!("{}/admin", query.url);
    let seen = vaxtrail_tests::browser_script(
        "admin.mjs",
        &[
            ("ADMIN_URL", page.as_ref()),
            ("TOKEN", admin.trim_start_matches("Bearer ").as_ref()),
            ("SCREENSHOT", screenshot.as_os_str()),
            ("PROGRAMME", "adm-1".as_ref()),
            ("FACILITY", "phc-admin".as_ref()),
        ],
    )
    .await;
    assert_eq!(seen["registered"], "suspended", "{seen}");
    assert_eq!(seen["activated"], "active", "{seen}");
    assert!(
        seen["refused"].as_str().is_some_and(|m| m.contains("timeZone")),
        "{seen}"
    );
    assert_eq!(seen["pageErrors"], json!([]), "{seen}");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot"
    );
    println!("admin page screenshot (CI artefact): {}", screenshot.display());

    // What the page did is what the command API holds: a facility token bound to the facility the
    // page activated now records for the programme the page defined.
    let bound = api
        .auth
        .bearer_for("phc-admin-system", &[Role::Facility], &["phc-admin"]);
    let (status, body) = call(
        &api,
        Method::POST,
        "/v1/vaccinations",
        &bound,
        Some(&record("adm-1", "PHC Admin Page", "ADM-1")),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let recorded = dates(&stack, 1).await;
    assert_eq!(
        recorded,
        [("ADM-1".to_owned(), "2020-12-03".to_owned(), Some(2))],
        "Kolkata's date, the page's limit"
    );

    // The page's origin may call the command API; another origin gets no CORS grant.
    let preflight = |from: &str| {
        reqwest::Client::new()
            .request(Method::OPTIONS, format!("{}/v1/master-data", api.url))
            .header("Origin", from)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let granted = preflight(&origin).await.expect("an answer");
    assert_eq!(
        granted
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(origin.as_str())
    );
    let stranger = preflight("http://evil.example").await.expect("an answer");
    assert!(stranger.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_programmes_update_limit_decides_its_corrections_in_the_signer() {
    use domain::events::CertificateOutcome;
    use vaxtrail_tests::signer::{CertificateRecord, Issuer, outcomes_per_event, read_certificates};

    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
    let issuer = Issuer::new();
    // The deployment's own limit is 2: neither programme's.
    let _signer = inprocess::signer(&stack, &issuer.dir, |config| config.update_limit = 2).await;
    let admin = api.auth.bearer("ministry", &[Role::Admin]);
    let facility = api.auth.bearer("cowin", &[Role::Facility]);
    for (id, limit) in [("strict", 1), ("lenient", 3)] {
        let body = json!({"name": id, "totalDoses": 2, "updateLimit": limit, "timeZone": "UTC", "country": "IND"});
        let (status, body) = call(
            &api,
            Method::PUT,
            &format!("/v1/master-data/programmes/{id}"),
            &admin,
            Some(&body),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    // Each programme: a dose, then three corrections of it (each a different batch).
    let mut posted: Vec<(String, Vec<String>)> = Vec::new();
    for programme in ["strict", "lenient"] {
        let dose = record(programme, "ABC Medical Center", &format!("{programme}-1"));
        let (status, body) = call(&api, Method::POST, "/v1/vaccinations", &facility, Some(&dose)).await;
        assert_eq!(status, 202, "{body}");
        let mut corrections = Vec::new();
        for n in 1..=3 {
            let mut corrected = dose.clone();
            corrected["vaccination"]["batch"] = json!(format!("FIX{n}"));
            // As an administrator: a facility's correction asks the Postgres read model who
            // recorded the dose, and this test runs no projector.
            let (status, body) = call(&api, Method::POST, "/v1/corrections", &admin, Some(&corrected)).await;
            assert_eq!(status, 202, "{body}");
            corrections.push(body["eventId"].as_str().expect("an event id").to_owned());
        }
        posted.push((programme.to_owned(), corrections));
    }

    let records = read_certificates(&stack, Duration::from_secs(120), |records| {
        outcomes_per_event(records).len() == 8
    })
    .await;
    let rejected = |event: &str| -> Option<String> {
        records.iter().find_map(|r: &CertificateRecord| match &r.envelope.body {
            avro::certificate::CertificateBody::Outcome { event: outcome, .. }
                if outcome.answers.to_string() == event =>
            {
                match &outcome.outcome {
                    CertificateOutcome::CertificateRejected { rule, .. } => Some(rule.clone()),
                    _ => None,
                }
            }
            _ => None,
        })
    };
    let decided: Vec<(String, Vec<Option<String>>)> = posted
        .iter()
        .map(|(programme, events)| (programme.clone(), events.iter().map(|e| rejected(e)).collect()))
        .collect();
    let limit = Some("UpdateLimitReached".to_owned());
    assert_eq!(
        decided,
        [
            ("strict".to_owned(), vec![None, limit.clone(), limit]),
            ("lenient".to_owned(), vec![None, None, None]),
        ],
        "each programme's corrections decided by its own update limit, not the deployment's 2"
    );
}
