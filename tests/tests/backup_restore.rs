//! The backup, restore and tamper drills, end to end, with the services as processes and `vaxctl`
//! as the operator runs it, on 1,000 demo people (`VAXTRAIL_DRILL_BACKUP_PEOPLE`):
//! - `vaxctl backup` while the services run, and `backup verify`;
//! - a restore into a new, empty cluster (its own Tansu broker and registry), every projection
//!   replayed into new stores there: a query API on them answers exactly as the original did (a
//!   sample of certificates, their status and verification, the analytics totals), and
//!   `vaxctl audit verify` passes;
//! - one record of `certificate-events` altered in a copy of the backup and its manifest sealed
//!   again (so `backup verify` cannot tell); restored, `vaxctl audit verify` fails naming the
//!   altered record's position, also when auditing a window that holds it.

use vaxtrail_tests::{
    e2e::{Scratch, assert_same, count_from_env, last_json, live_deployment, load, restore, sample, snapshot},
    signer::Issuer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_an_empty_cluster_and_a_forged_one_is_caught() {
    let people = count_from_env("VAXTRAIL_DRILL_BACKUP_PEOPLE", 1_000);
    let issuer = Issuer::new();
    let mut live = live_deployment(&issuer).await;
    let query = live.url("query-api");
    load(&live, people).await;
    let ids = sample(&live.stack).await;
    let admin = live.token("admin").await;
    let before = snapshot(&query, &admin, &ids).await;

    // Backup while the services run.
    let backup = Scratch::new("backup");
    let dir = backup.0.join("b").display().to_string();
    let figures = last_json(&live.vaxctl_ok(&["backup", "--out", &dir, "--json"]).await);
    eprintln!("drill figure: backup: {figures}");
    live.vaxctl_ok(&["backup", "verify", &dir]).await;
    // Everyone's data is in it: readable by the operator's account alone, whatever the umask.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut seen = 0;
        let mut stack = vec![std::path::PathBuf::from(&dir)];
        while let Some(path) = stack.pop() {
            let meta = std::fs::metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}", path.display());
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                assert_eq!(mode, 0o600, "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen > 2, "the manifest and the partitions' files");
    }

    // Restored into a new, empty cluster: the same answers, and the log audits.
    let mut restored = restore(&live, &dir, &issuer).await;
    restored.serve().await;
    let restored_query = restored.url("query-api");
    assert_same(
        &before,
        &snapshot(&restored_query, &admin, &ids).await,
        "restored into a new cluster",
    );
    // The issuer's published keys, as an auditor keeps them.
    let did = backup.0.join("did.json").display().to_string();
    let document = reqwest::get(format!("{restored_query}/.well-known/did.json"))
        .await
        .expect("the DID document")
        .text()
        .await
        .expect("a body");
    std::fs::write(&did, document).expect("writable");
    let audit = last_json(
        &restored
            .vaxctl_ok(&["audit", "verify", "--did-document", &did, "--json"])
            .await,
    );
    assert_eq!(audit["ok"], true, "{audit}");
    assert!(audit["outcomes"].as_u64().unwrap_or(0) >= people, "{audit}");
    drop(restored);
    live.stop_all().await;

    // Tamper: one record of certificate-events altered in a copy of the backup, sealed again.
    let forged = backup.0.join("forged").display().to_string();
    let copied = std::process::Command::new("cp")
        .args(["-r", &dir, &forged])
        .status()
        .expect("cp runs");
    assert!(copied.success());
    let mut altered = None;
    vaxctl::backup::rewrite_partition(std::path::Path::new(&forged), "certificate-events", 0, |records| {
        // The second outcome: it has a successor whose link must then break.
        let (offset, value) = &mut records[1];
        let bytes = value.as_mut().expect("a value");
        // Its next-to-last byte: the end of the last sealed text's authentication tag (the
        // credential's, or its last rendering's; the last byte closes the renderings array).
        // The audit, keyless, reads the record as before; only the chain can tell.
        let at = bytes.len() - 2;
        bytes[at] ^= 1;
        altered = Some(*offset);
    })
    .expect("rewriting the copy");
    let altered = altered.expect("a record was altered");
    live.vaxctl_ok(&["backup", "verify", &forged]).await;
    let tampered = restore(&live, &forged, &issuer).await;
    let out = tampered
        .vaxctl(&["audit", "verify", "--did-document", &did, "--partition", "0"])
        .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the audit fails on a tampered log: {said}");
    assert!(
        said.contains(&format!("partition 0 offset {}", altered + 1)) && said.contains(&format!("(offset {altered})")),
        "the audit names the altered record (offset {altered}): {said}"
    );
    // A window holding the altered record fails the same way; one after it does not see it.
    let window = |from: i64| {
        let from = from.to_string();
        let did = did.clone();
        let tampered = &tampered;
        async move {
            let args = [
                "audit",
                "verify",
                "--did-document",
                &did,
                "--partition",
                "0",
                "--from",
                &from,
                "--json",
            ];
            last_json(&String::from_utf8_lossy(&tampered.vaxctl(&args).await.stdout))
        }
    };
    let holding = window(altered).await;
    assert_eq!(
        (holding["ok"].as_bool(), holding["offset"].as_i64()),
        (Some(false), Some(altered + 1)),
        "{holding}"
    );
    let after = window(altered + 2).await;
    assert_eq!(after["ok"], true, "{after}");

    // A naive change, without resealing, is caught by `backup verify` and refused by restore.
    let naive = backup.0.join("naive").display().to_string();
    assert!(
        std::process::Command::new("cp")
            .args(["-r", &dir, &naive])
            .status()
            .expect("cp runs")
            .success()
    );
    let file = std::path::Path::new(&naive).join("certificate-events/0.avro");
    let mut bytes = std::fs::read(&file).expect("the file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).expect("writable");
    let checked = live.vaxctl(&["backup", "verify", &naive]).await;
    assert!(!checked.status.success());
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("certificate-events partition 0"),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}
