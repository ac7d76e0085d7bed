//! `vaxctl master-data`: loads DIVOC's master lists into master data through the command API
//! (`POST /v1/master-data/vaccines`, and `PUT /v1/master-data/programmes/{id}` for a programme),
//! with an administrator's token: the same path and checks an administrator's own tools take. A
//! country moving from DIVOC runs it once; running it again writes the same records again
//! (the topic is compacted: the latest of each key is kept).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use domain::vaccine::VaccineCatalog;
use serde_json::{Value, json};

/// `vaxctl master-data` actions.
#[derive(Clone, Debug, Subcommand)]
pub enum Action {
    /// Load DIVOC's vaccine master list (the bundled one, or the files given), and optionally
    /// define a programme with today's deployment-wide rules.
    Import(ImportArgs),
}

/// `vaxctl master-data import` arguments.
#[derive(Clone, Debug, Args)]
pub struct ImportArgs {
    /// DIVOC's `VACCINE_ICD.json` (default: the list bundled with vaxtrail).
    #[arg(long, requires = "icd_list")]
    vaccine_list: Option<PathBuf>,
    /// DIVOC's `ICD.json`.
    #[arg(long, requires = "vaccine_list")]
    icd_list: Option<PathBuf>,
    /// Also define this programme (its `programId`).
    #[arg(long)]
    programme: Option<String>,
    /// The programme's name.
    #[arg(long, default_value = "COVID-19 vaccination", requires = "programme")]
    programme_name: String,
    /// The programme's time zone (IANA), as `VAXTRAIL_PROGRAMME_TIMEZONE` was.
    #[arg(long, default_value = "UTC", requires = "programme")]
    time_zone: String,
    /// Doses in the programme's full course.
    #[arg(long, default_value_t = 2, requires = "programme")]
    total_doses: u8,
    /// Corrections allowed per dose, as `VAXTRAIL_UPDATE_LIMIT` was.
    #[arg(long, default_value_t = 1, requires = "programme")]
    update_limit: u32,
    /// The programme's country (ISO 3166-1 alpha-3).
    #[arg(long, default_value = "IND", requires = "programme")]
    country: String,
    /// The command API.
    #[arg(
        long = "command-url",
        env = "VAXTRAIL_COMMAND_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    command_url: String,
    /// A bearer token with the admin role.
    #[arg(long, env = "VAXTRAIL_TOKEN", hide_env_values = true)]
    token: String,
}

async fn send(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<()> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::bail!("{what}: the command API answered {status}: {body}");
    }
    Ok(())
}

pub async fn run(action: Action) -> anyhow::Result<()> {
    let Action::Import(args) = action;
    let catalog = match (&args.vaccine_list, &args.icd_list) {
        (Some(vaccines), Some(icd)) => VaccineCatalog::from_divoc(
            &std::fs::read_to_string(vaccines).map_err(|e| anyhow::anyhow!("reading {}: {e}", vaccines.display()))?,
            &std::fs::read_to_string(icd).map_err(|e| anyhow::anyhow!("reading {}: {e}", icd.display()))?,
        )?,
        _ => VaccineCatalog::divoc_default(),
    };
    let base = args.command_url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let vaccines: Vec<_> = catalog.vaccines().collect();
    let progress = vaxctl::progress(vaccines.len(), "vaccines", false);
    for vaccine in &vaccines {
        let body = json!({
            "name": vaccine.name, "icd11Code": vaccine.icd11_code, "icd11Term": vaccine.icd11_term,
            "vaccineType": vaccine.vaccine_type, "disease": vaccine.disease,
        });
        let request = client
            .post(format!("{base}/v1/master-data/vaccines"))
            .bearer_auth(&args.token)
            .json(&body);
        send(request, &format!("vaccine {:?}", vaccine.name)).await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!("{} vaccines loaded", vaccines.len());
    if let Some(id) = &args.programme {
        let body = json!({
            "name": args.programme_name, "totalDoses": args.total_doses, "updateLimit": args.update_limit,
            "timeZone": args.time_zone, "country": args.country,
        });
        let request = client
            .put(format!("{base}/v1/master-data/programmes/{id}"))
            .bearer_auth(&args.token)
            .json(&body);
        send(request, &format!("programme {id:?}")).await?;
        println!("programme {id} defined");
    }
    Ok(())
}
