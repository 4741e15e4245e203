//! `tandem import` and `tandem sync`: copy an MLflow tracking server (or
//! another Tandem workspace) into a workspace with `tandem-transfer`;
//! `tandem move`: move objects between two workspaces of one deployment,
//! which the server does in one transaction.

use std::time::Duration;

use clap::Args;
use tandem_core::transfer::{MoveOutcome, MoveRequest, OnConflict};
use tandem_transfer::{Auth, CopyOptions, Endpoint, Report, TransferError};

use crate::progress::ProgressLine;
use crate::{ClientArgs, Refusal};

#[derive(Args, Clone)]
pub(crate) struct ImportArgs {
    /// The source: an MLflow tracking URI (`http://host:5000`), or a Tandem
    /// workspace's (`https://tandem.example/w/team-a`).
    #[arg(long, value_name = "TRACKING_URI")]
    from: String,
    /// The workspace to copy into.
    #[arg(long, value_name = "WORKSPACE", default_value = "default")]
    into: String,
    /// What to do with an experiment or registered model whose name the
    /// workspace holds for something that did not come from this source:
    /// refuse (listed as failed), rename, merge into it, or skip.
    #[arg(long, value_name = "POLICY", default_value = "refuse", value_parser = ["refuse", "rename", "merge", "skip"])]
    on_conflict: String,
    /// Copy deleted experiments and runs too (as deleted).
    #[arg(long)]
    include_deleted: bool,
    /// Only this experiment (name or id); repeat for more.
    #[arg(long = "experiment", value_name = "NAME|ID")]
    experiments: Vec<String>,
    /// Only this registered model, with the runs and logged models its
    /// versions were made from; repeat for more.
    #[arg(long = "registered-model", value_name = "NAME")]
    registered_models: Vec<String>,
    /// Token for the source [env: FROM_MLFLOW_TRACKING_TOKEN].
    #[arg(long, env = "FROM_MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    from_token: Option<String>,
    /// Username for the source (HTTP Basic) [env: FROM_MLFLOW_TRACKING_USERNAME].
    #[arg(long, env = "FROM_MLFLOW_TRACKING_USERNAME")]
    from_username: Option<String>,
    /// Password for the source [env: FROM_MLFLOW_TRACKING_PASSWORD].
    #[arg(long, env = "FROM_MLFLOW_TRACKING_PASSWORD", hide_env_values = true)]
    from_password: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    import: ImportArgs,
    /// Sync again every SECONDS until interrupted (each pass copies only
    /// what changed); once without it.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<u64>,
}

pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (source, target, options, json) = prepare(&args)?;
    let report = run_once(&source, &target, &options, json).await?;
    finish(&report, json)
}

pub(crate) async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let (source, target, options, json) = prepare(&args.import)?;
    let Some(seconds) = args.watch else {
        let report = run_once(&source, &target, &options, json).await?;
        return finish(&report, json);
    };
    let period = Duration::from_secs(seconds.max(1));
    loop {
        match run_once(&source, &target, &options, json).await {
            Ok(report) => print(&report, json),
            // A pass that cannot reach a side is retried on the next tick.
            Err(error) => eprintln!("sync pass failed: {error:#}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

type Prepared = (Endpoint, Endpoint, CopyOptions, bool);

fn prepare(args: &ImportArgs) -> anyhow::Result<Prepared> {
    let target = args.client.resolve()?;
    let source_auth = match (&args.from_token, &args.from_username, &args.from_password) {
        (Some(token), _, _) => Auth::Token(token.clone()),
        (None, Some(username), Some(password)) => Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(Refusal::Usage("--from-username and --from-password go together".to_string()).into())
        }
        (None, None, None) => Auth::None,
    };
    let source =
        Endpoint::new(&args.from, &source_auth).map_err(|error| Refusal::Usage(error.to_string()))?;
    let target_auth = match &target.credentials {
        Some(tandem_client::Credentials::Token(token)) => Auth::Token(token.clone()),
        Some(tandem_client::Credentials::Password { username, password }) => Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        None => Auth::None,
    };
    let target_endpoint =
        Endpoint::new(&target.url, &target_auth).map_err(|error| Refusal::Usage(error.to_string()))?;
    let options = CopyOptions {
        source_key: source.base().to_string(),
        workspace: args.into.clone(),
        on_conflict: OnConflict::parse(&args.on_conflict).expect("clap checked the value"),
        include_deleted: args.include_deleted,
        experiments: args.experiments.clone(),
        registered_models: args.registered_models.clone(),
    };
    Ok((source, target_endpoint, options, target.json))
}

async fn run_once(
    source: &Endpoint,
    target: &Endpoint,
    options: &CopyOptions,
    json: bool,
) -> anyhow::Result<Report> {
    let bar = std::sync::Mutex::new(ProgressLine::new());
    let show = |progress: &tandem_transfer::Progress| {
        if !json {
            let value = serde_json::json!({
                "phase": progress.phase, "done": progress.done, "total": progress.total, "unit": "",
            });
            bar.lock().expect("progress lock").update(&value);
        }
    };
    let result = tandem_transfer::copy(source, target, options, &show).await;
    bar.lock().expect("progress lock").finish();
    result.map_err(|error| refusal(error, source, target))
}

/// The CLI's error for a copy that could not go on, naming the side that
/// refused (the source's credentials, a target that is a secondary, …).
fn refusal(error: TransferError, source: &Endpoint, target: &Endpoint) -> anyhow::Error {
    match error {
        TransferError::Usage(message) => Refusal::Usage(message).into(),
        TransferError::Transport { .. } => Refusal::Unreachable(error.to_string()).into(),
        TransferError::Api {
            status,
            code,
            message,
            url,
        } => {
            // The longer base that prefixes the URL: both sides may be
            // workspaces of one server.
            let side = match (url.starts_with(source.base()), url.starts_with(target.base())) {
                (true, true) if source.base().len() >= target.base().len() => "the source",
                (true, true) => "the target",
                (true, false) => "the source",
                (false, true) => "the target",
                (false, false) => "a server",
            };
            let hint = match status {
                401 => " (check the credentials given for it)",
                _ => "",
            };
            tandem_client::ClientError::Api {
                status,
                code,
                message: format!("{side} refused {url}: {message}{hint}"),
            }
            .into()
        }
        other => anyhow::anyhow!(other),
    }
}

fn finish(report: &Report, json: bool) -> anyhow::Result<()> {
    print(report, json);
    if report.failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} object(s) were not copied (listed above); run the command again to retry them",
            report.failures.len()
        )
    }
}

fn print(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("reports encode")
        );
        return;
    }
    println!(
        "{} → workspace {} in {:.1} s",
        report.source, report.workspace, report.seconds
    );
    for (name, counts) in [
        ("experiments", &report.experiments),
        ("runs", &report.runs),
        ("logged models", &report.logged_models),
        ("registered models", &report.registered_models),
    ] {
        println!(
            "  {name:<18} {} created, {} updated, {} unchanged, {} skipped, {} failed",
            counts.created, counts.updated, counts.unchanged, counts.skipped, counts.failed
        );
    }
    println!(
        "  {} model versions, {} metric points, {} artifacts ({} bytes) copied",
        report.model_versions, report.metric_points, report.artifacts_copied, report.artifact_bytes
    );
    for failure in &report.failures {
        println!(
            "  FAILED {} {}: {}",
            failure.kind, failure.source_id, failure.message
        );
    }
}

#[derive(Args)]
pub(crate) struct MoveArgs {
    /// An experiment to move (name or id); repeat for more.
    #[arg(long = "experiment", value_name = "NAME|ID")]
    experiments: Vec<String>,
    /// A registered model to move; repeat for more. The runs and logged
    /// models its versions were made from must move too (the server says
    /// which, if they do not).
    #[arg(long = "registered-model", value_name = "NAME")]
    registered_models: Vec<String>,
    /// The workspace they leave.
    #[arg(long, value_name = "WORKSPACE")]
    from: String,
    /// The workspace they go to.
    #[arg(long, value_name = "WORKSPACE")]
    to: String,
    /// Check and count only; nothing moves.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn move_objects(args: MoveArgs) -> anyhow::Result<()> {
    if args.experiments.is_empty() && args.registered_models.is_empty() {
        return Err(Refusal::Usage(
            "name what to move: --experiment NAME|ID and/or --registered-model NAME".into(),
        )
        .into());
    }
    let target = args.client.resolve()?;
    let request = MoveRequest {
        to: args.to.clone(),
        experiments: args.experiments.clone(),
        registered_models: args.registered_models.clone(),
        dry_run: args.dry_run,
    };
    let outcome = target.client.move_objects(&args.from, &request).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!("{}", describe_move(&outcome));
    }
    Ok(())
}

/// One paragraph: what moved (or would), and how much came with it.
fn describe_move(outcome: &MoveOutcome) -> String {
    let mut objects: Vec<String> = outcome
        .experiments
        .iter()
        .map(|experiment| {
            if experiment.from_id == experiment.to_id {
                format!("experiment '{}' (id {})", experiment.name, experiment.to_id)
            } else {
                format!(
                    "experiment '{}' (id {} there, was {})",
                    experiment.name, experiment.to_id, experiment.from_id
                )
            }
        })
        .collect();
    objects.extend(
        outcome
            .registered_models
            .iter()
            .map(|name| format!("registered model '{name}'")),
    );
    let verb = if outcome.dry_run { "would move" } else { "moved" };
    format!(
        "{verb} {} from '{}' to '{}': {} run(s), {} logged model(s), {} model version(s), {} metric point(s), {} artifact(s) ({}); {} change(s) in one transaction",
        objects.join(", "),
        outcome.from,
        outcome.to,
        outcome.runs,
        outcome.logged_models,
        outcome.model_versions,
        outcome.metric_points,
        outcome.artifacts,
        indicatif::HumanBytes(outcome.artifact_bytes),
        outcome.changes,
    )
}
