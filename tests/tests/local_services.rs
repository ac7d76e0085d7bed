//! `deploy/local/services` (what `deploy/local/run` starts the services with) on a test's slice of
//! the stack, with the services on free ports and their pid files in a scratch state directory:
//! it starts the four services and waits until each is ready; run again a moment after a service
//! was sent SIGTERM (its pid file still names a process that is stopping), it waits for that
//! process to exit and starts the service again, instead of reporting it not ready.

use std::path::Path;

use vaxtrail_tests::{
    e2e::{Deployment, Scratch, free_port},
    repo_root,
    signer::Issuer,
};

async fn script(deployment: &Deployment, state: &Path, ports: &[(String, String)], name: &str, args: &[&str]) {
    let out = tokio::process::Command::new(repo_root().join("deploy/local").join(name))
        .args(args)
        .envs(deployment.env())
        .envs(ports.iter().cloned())
        .env("VAXTRAIL_STATE_DIR", state)
        .env("VAXTRAIL_SKIP_BUILD", "1")
        .output()
        .await
        .expect("the deploy scripts run");
    assert!(
        out.status.success(),
        "deploy/local/{name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pid(state: &Path, service: &str) -> u32 {
    std::fs::read_to_string(state.join(format!("services/{service}.pid")))
        .expect("a pid file")
        .trim()
        .parse()
        .expect("a pid")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_waits_for_a_stopping_service_and_starts_it_again() {
    let issuer = Issuer::new();
    let deployment = Deployment::on_own_cluster(&issuer).await;
    let state = Scratch::new("local-state");
    let ports: Vec<(String, String)> = [
        "VAXTRAIL_COMMAND_API_ADDRESS",
        "VAXTRAIL_SIGNER_ADDRESS",
        "VAXTRAIL_PROJECTORS_ADDRESS",
        "VAXTRAIL_QUERY_API_ADDRESS",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), format!("127.0.0.1:{}", free_port())))
    .collect();

    script(&deployment, &state.0, &ports, "services", &[]).await;
    let before = pid(&state.0, "signer-worker");
    assert!(alive(before));

    // SIGTERM, and at once the script again: the signer is still stopping when it looks.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &before.to_string()])
        .status();
    script(&deployment, &state.0, &ports, "services", &[]).await;
    let after = pid(&state.0, "signer-worker");
    assert_ne!(before, after, "the signer was started again");
    assert!(!alive(before) && alive(after));
    let signer = &ports[1].1;
    let ready = reqwest::get(format!("http://{signer}/readyz"))
        .await
        .expect("it answers");
    assert!(ready.status().is_success());

    script(
        &deployment,
        &state.0,
        &ports,
        "down",
        &["command-api", "signer-worker", "projectors", "query-api"],
    )
    .await;
    assert!(!alive(after), "down waits for the process to exit");
}
