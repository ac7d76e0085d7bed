//! The OpenAPI documents describe the APIs: schemathesis (PyPI, pinned in deploy/local/install)
//! runs every check it has (`--checks all`: no server error, every status and content type
//! documented, responses as documented, requests valid by the schema accepted and invalid ones
//! refused) against both live APIs, with a bounded number of examples per operation. The rules a
//! schema cannot state (a certificate id's check character, a signature, dose ≤ totalDoses, dates
//! not after today) are applied to its valid requests by `tests/schemathesis/hooks.py`, which
//! also points them at a vaccination this test posted, so reads find something.

use std::{path::PathBuf, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;
use vaxtrail_tests::{
    TestStack,
    e2e::{Deployment, certified, recipient_of},
    fixtures, repo_root,
    signer::Issuer,
};

/// Examples per operation and phase: enough to cover every parameter, small enough for CI.
const EXAMPLES: &str = "25";

fn schemathesis() -> PathBuf {
    let tools = std::env::var("VAXTRAIL_TOOLS").expect("VAXTRAIL_TOOLS (deploy/local/lib.sh sets it)");
    PathBuf::from(tools).join("schemathesis-venv/bin/schemathesis")
}

/// Runs schemathesis against a live API; its report when it finds anything.
async fn conforms(base: &str, token: &str, known: &[(&str, String)]) {
    let output = tokio::process::Command::new(schemathesis())
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--phases",
            "examples,coverage,fuzzing",
        ])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--seed", "1", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", repo_root().join("tests/schemathesis/hooks.py"))
        // Its example database and caches stay out of the repository.
        .current_dir(std::env::temp_dir())
        .envs(known.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .output()
        .await
        .expect("schemathesis runs (deploy/local/install installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{base}: schemathesis found the API and its document disagree:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_do_what_their_openapi_documents_say() {
    let issuer = Issuer::new();
    let mut deployment = Deployment::new(TestStack::new().await, &issuer).await;
    // The sample names "CoVax": the programme's master list has it.
    let list = vaxtrail_tests::TempFile::with(&fixtures::master_list_with_covax());
    let list_path = list.path();
    deployment
        .start("command-api", &[("VAXTRAIL_VACCINE_MASTER_LIST", list_path.as_str())])
        .await;
    for name in ["signer-worker", "projectors", "query-api"] {
        deployment.start(name, &[]).await;
    }
    let (command, query) = (deployment.url("command-api"), deployment.url("query-api"));
    let token = deployment
        .vaxctl_ok(&[
            "token",
            "--role",
            "facility",
            "--role",
            "controller",
            "--role",
            "auditor",
            "--subject",
            "drill",
        ])
        .await
        .trim()
        .to_owned();
    let client = reqwest::Client::new();

    // One vaccination the reads can find.
    let sample = fixtures::divoc_certify_request();
    let posted = client
        .post(format!("{command}/v1/certify"))
        .bearer_auth(&token)
        .json(&sample)
        .send()
        .await
        .expect("the command API answers");
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    let posted: Value = posted.json().await.expect("JSON");
    let event = posted[0]["eventId"].as_str().expect("an event id").to_owned();
    let certificate = certified(&query, &token, &event, Duration::from_secs(120)).await["certificateId"]
        .as_str()
        .expect("a certificate id")
        .to_owned();
    let code = sample[0]["preEnrollmentCode"].as_str().expect("a code");
    let recipient = recipient_of(&query, &token, code, Duration::from_secs(60)).await;
    let credential = client
        .get(format!("{query}/v1/certificates/{certificate}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the credential")
        .text()
        .await
        .expect("text");
    let credential_file = vaxtrail_tests::TempFile::with(&credential);

    let known = [
        ("VAXTRAIL_ST_CERTIFICATE", certificate),
        ("VAXTRAIL_ST_EVENT", event),
        ("VAXTRAIL_ST_RECIPIENT", recipient),
        ("VAXTRAIL_ST_CREDENTIAL", credential_file.path()),
    ];
    conforms(&query, &token, &known).await;
    conforms(&command, &token, &known).await;
    deployment.stop_all().await;
}
