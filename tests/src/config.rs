//! What the deployment descriptions (docker-compose.yml, deploy/k8s) are checked against: the
//! typed config each binary parses. A variable a description sets must be one that binary reads,
//! and its value one that binary's parser accepts.

use clap::{Args, Command, CommandFactory};

/// The config a binary of the workspace parses.
pub fn config_of(binary: &str) -> Command {
    match binary {
        "command-api" => command_api::Config::command(),
        "signer-worker" => signer_worker::Config::command(),
        "projectors" => projectors::Config::command(),
        "query-api" => query_api::Config::command(),
        // vaxctl reads these for `topics ensure` and `schemas register`.
        "vaxctl" => platform::KafkaArgs::augment_args(platform::LogArgs::augment_args(Command::new("vaxctl"))),
        other => panic!("{other:?} is not a binary the workspace builds"),
    }
}

/// `Ok` when `binary` reads every variable of `env`, and accepts each value that is known (a
/// value from a Secret or ConfigMap reference is `None`: only its name is checked). Each
/// variable becomes the flag of the argument that reads it, so clap's own value parsers judge the
/// value exactly as they would judge the environment's.
pub fn check_environment(binary: &str, env: &[(String, Option<String>)]) -> Result<(), String> {
    let command = config_of(binary);
    let mut argv = vec![binary.to_owned()];
    for (key, value) in env {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(key.as_str()))
            .ok_or_else(|| format!("{binary} reads no {key}"))?;
        if let Some(value) = value {
            argv.push(format!(
                "--{}={value}",
                arg.get_long().expect("every config argument has a flag")
            ));
        }
    }
    command
        .clone()
        .try_get_matches_from(&argv)
        .map(|_| ())
        .map_err(|error| format!("{argv:?} does not parse: {error}"))
}
