//! docker-compose.yml cannot run here (no Docker engine), so it is kept correct by construction:
//! every vaxtrail container runs a binary the workspace builds, and every variable in its
//! environment is one that binary's typed config reads, with a value its parser accepts.

use std::collections::BTreeMap;

use vaxtrail_tests::{
    config::{check_environment, config_of},
    repo_root,
};

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    value.apply_merge().unwrap();
    value
}

/// The services built from the workspace's Dockerfile, with the binary each runs.
fn vaxtrail_services(compose: &serde_yaml::Value) -> BTreeMap<String, (String, serde_yaml::Mapping)> {
    let services = compose["services"].as_mapping().unwrap();
    services
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(name, service)| {
            let binary = match (service.get("command"), service.get("entrypoint")) {
                (Some(command), _) => command[0].as_str().unwrap().to_owned(),
                (None, Some(entrypoint)) => {
                    let script = entrypoint[2].as_str().unwrap();
                    script.split_whitespace().next().unwrap().to_owned()
                }
                (None, None) => panic!("{name:?} says nothing to run"),
            };
            let env = service
                .get("environment")
                .and_then(|e| e.as_mapping())
                .cloned()
                .unwrap_or_default();
            (name.as_str().unwrap().to_owned(), (binary, env))
        })
        .collect()
}

#[test]
fn every_vaxtrail_container_runs_a_workspace_binary() {
    let services = vaxtrail_services(&compose());
    let binaries: Vec<&str> = services.values().map(|(b, _)| b.as_str()).collect();
    for expected in ["command-api", "signer-worker", "projectors", "query-api", "vaxctl"] {
        assert!(binaries.contains(&expected), "compose runs no {expected}: {binaries:?}");
    }
}

#[test]
fn every_environment_variable_is_read_by_the_config_and_parses() {
    for (service, (binary, env)) in vaxtrail_services(&compose()) {
        let env = env
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    serde_yaml::Value::String(s) => s,
                    other => serde_yaml::to_string(&other).unwrap().trim().to_owned(),
                };
                (key.as_str().unwrap().to_owned(), Some(value))
            })
            .collect::<Vec<_>>();
        if let Err(error) = check_environment(&binary, &env) {
            panic!("{service}: {error}");
        }
    }
}

#[test]
fn the_check_would_catch_a_misspelt_variable() {
    let command = config_of("query-api");
    assert!(
        command
            .get_arguments()
            .any(|a| a.get_env().and_then(|e| e.to_str()) == Some("VAXTRAIL_REDIS_URL"))
    );
    assert!(
        !command
            .get_arguments()
            .any(|a| a.get_env().and_then(|e| e.to_str()) == Some("VAXTRAIL_REDIS_URI"))
    );
}

#[test]
fn the_query_api_mounts_no_private_key_and_every_secret_is_set() {
    let compose = compose();
    let query = &compose["services"]["query-api"];
    let env = query["environment"].as_mapping().unwrap();
    assert!(
        !env.contains_key("VAXTRAIL_ISSUER_KEYS"),
        "the query API must not be given the signer's keys"
    );
    let volumes: Vec<&str> = query["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        volumes.iter().all(|v| !v.starts_with("issuer-keys:")),
        "the query API mounts the private key volume: {volumes:?}"
    );
    // Outside development every service refuses the development secrets: compose sets its own.
    for (service, variables) in [
        (
            "command-api",
            &["VAXTRAIL_RECIPIENT_KEY_SECRET", "VAXTRAIL_ID_SECRET"][..],
        ),
        ("signer-worker", &["VAXTRAIL_ID_SECRET"][..]),
        ("query-api", &["VAXTRAIL_HOLDER_CODE_SECRET"][..]),
    ] {
        let env = compose["services"][service]["environment"].as_mapping().unwrap();
        for variable in variables {
            assert!(env.contains_key(*variable), "{service} has no {variable}");
        }
    }
    assert_eq!(
        compose["services"]["command-api"]["environment"]["VAXTRAIL_ID_SECRET"],
        compose["services"]["signer-worker"]["environment"]["VAXTRAIL_ID_SECRET"],
        "event and certificate ids are keyed with one secret"
    );
}
