//! Fault drill: PostgreSQL runs out of disk under a steady load (its cluster on a small tmpfs,
//! filled with a file it cannot remove), then gets the space back. The Postgres projection waits,
//! retrying, and `/readyz` names why; nothing is skipped. If PostgreSQL stopped itself because it
//! could not write its WAL, it is started again once there is room, as an operator would. Needs
//! root (a tmpfs mount); CI runs as root.

use std::time::Duration;

use vaxtrail_tests::{
    e2e::Deployment,
    eventually,
    faults::{Load, assert_nothing_lost},
    signer::Issuer,
    stores::OwnPostgres,
};

/// Fills the file system under `dir` with a ballast file until a write fails for want of space.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let ballast = dir.join("ballast");
    let mut file = std::fs::File::create(&ballast).expect("writable");
    // Written, not sparse: a tmpfs charges only pages that hold data.
    for size in [1 << 20, 4096] {
        let chunk = vec![0x5a_u8; size];
        while file.write_all(&chunk).is_ok() {}
    }
    let _ = file.flush();
    ballast
}

/// Free bytes of the file system holding `dir` (from `df`).
fn nix_free(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_disk_under_load_then_given_space_loses_nothing() {
    let issuer = Issuer::new();
    let postgres = OwnPostgres::start_on_tmpfs(160).await;
    let mut deployment = Deployment::on_own_cluster(&issuer).await;
    deployment.stack.postgres.url = postgres.url().parse().expect("a URL");
    deployment.start_all().await;
    Load::start(&deployment, 40, 0, 100).finish().await;

    let load = Load::start(&deployment, 150, 40, 60);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ballast = fill(postgres.dir());
    eprintln!(
        "drill disk: PostgreSQL's disk filled ({} bytes left)",
        nix_free(postgres.dir())
    );
    let projectors = deployment.url("projectors");
    let why = eventually(
        Duration::from_secs(120),
        "the projection to wait for its store",
        || async {
            let response = reqwest::get(format!("{projectors}/readyz")).await.ok()?;
            let body = response.text().await.ok()?;
            body.contains("waiting for its store").then_some(body)
        },
    )
    .await;
    eprintln!("drill disk: the projectors say {why}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&ballast).expect("the ballast is ours");
    if !postgres.running() {
        eprintln!("drill disk: PostgreSQL had stopped itself (its WAL could not be written); starting it again");
        postgres.resume().await;
    }
    eprintln!("drill disk: space given back");
    load.finish().await;

    let found = assert_nothing_lost(&deployment, "postgres out of disk").await;
    assert!(found.certificates > 150, "{found:?}");
    deployment.stop_all().await;
}
