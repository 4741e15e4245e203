//! `tandem import` and `tandem sync`: copy an MLflow tracking server (or
//! another Tandem workspace, or a bundle) into a workspace with
//! `tandem-transfer`; `tandem export`: write a workspace as a bundle;
//! `tandem move`: move objects between two workspaces of one deployment,
//! which the server does in one transaction.

use std::time::Duration;

use clap::Args;
use tandem_core::transfer::{MoveOutcome, MoveRequest, OnConflict};
use tandem_transfer::bundle::{self, BundleSource, ExportReport};
use tandem_transfer::{Auth, CopyOptions, Endpoint, Report, Source, TrackingSource, TransferError};

use crate::progress::ProgressLine;
use crate::{ClientArgs, Refusal};

#[derive(Args, Clone)]
pub(crate) struct ImportArgs {
    /// The source: an MLflow tracking URI (`http://host:5000`), a Tandem
    /// workspace's (`https://tandem.example/w/team-a`), or a bundle written
    /// by `tandem export` (`file:///…`, `s3://…`, `az://…`, `gs://…`).
    #[arg(long, value_name = "TRACKING_URI|BUNDLE_URL")]
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
    /// Only the runs this MLflow search filter selects (e.g.
    /// "metrics.acc > 0.9"); runs a copied model version was made from come
    /// along regardless.
    #[arg(long, value_name = "FILTER")]
    run_filter: Option<String>,
    /// Read the source (every record and blob of a bundle, checked) and
    /// count what would be created, updated or left unchanged; write nothing.
    #[arg(long)]
    dry_run: bool,
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
    let (source, target, options, json) = prepare(&args).await?;
    if let Opened::Bundle(bundle) = &source {
        // A dry run reads every blob too; an import checks the records
        // before it writes anything (each blob is checked as it streams).
        let checked = match options.dry_run {
            true => verify_bundle(bundle, json).await,
            false => bundle.check_records().await.map(|_| ()),
        };
        checked.map_err(|error| refusal(error, None, &target))?;
    }
    let report = run_once(&source, &target, &options, json).await?;
    finish(&report, json)
}

pub(crate) async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let (source, target, options, json) = prepare(&args.import).await?;
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

/// The source a copy reads.
enum Opened {
    Tracking(TrackingSource),
    Bundle(Box<BundleSource>),
}

impl Opened {
    fn source(&self) -> &dyn Source {
        match self {
            Opened::Tracking(source) => source,
            Opened::Bundle(source) => source.as_ref(),
        }
    }

    /// The URL prefix of the source's requests (a bundle makes none).
    fn base(&self) -> Option<&str> {
        match self {
            Opened::Tracking(source) => Some(source.endpoint().base()),
            Opened::Bundle(_) => None,
        }
    }
}

type Prepared = (Opened, Endpoint, CopyOptions, bool);

fn endpoint_auth(target: &crate::Target) -> Auth {
    match &target.credentials {
        Some(tandem_client::Credentials::Token(token)) => Auth::Token(token.clone()),
        Some(tandem_client::Credentials::Password { username, password }) => Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        None => Auth::None,
    }
}

async fn prepare(args: &ImportArgs) -> anyhow::Result<Prepared> {
    let target = args.client.resolve()?;
    let target_endpoint = Endpoint::new(&target.url, &endpoint_auth(&target))
        .map_err(|error| Refusal::Usage(error.to_string()))?;
    let source = if bundle::is_bundle_url(&args.from) {
        if args.run_filter.is_some() {
            return Err(Refusal::Usage(
                "a bundle is imported as it was exported: --run-filter chooses runs when exporting"
                    .to_string(),
            )
            .into());
        }
        let opened = BundleSource::open(&args.from)
            .await
            .map_err(|error| refusal(error, None, &target_endpoint))?;
        Opened::Bundle(Box::new(opened))
    } else {
        let source_auth = match (&args.from_token, &args.from_username, &args.from_password) {
            (Some(token), _, _) => Auth::Token(token.clone()),
            (None, Some(username), Some(password)) => Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(
                    Refusal::Usage("--from-username and --from-password go together".to_string()).into(),
                )
            }
            (None, None, None) => Auth::None,
        };
        let endpoint =
            Endpoint::new(&args.from, &source_auth).map_err(|error| Refusal::Usage(error.to_string()))?;
        Opened::Tracking(TrackingSource::new(endpoint))
    };
    let options = CopyOptions {
        source_key: source.source().key(),
        workspace: args.into.clone(),
        on_conflict: OnConflict::parse(&args.on_conflict).expect("clap checked the value"),
        include_deleted: args.include_deleted,
        experiments: args.experiments.clone(),
        registered_models: args.registered_models.clone(),
        run_filter: args.run_filter.clone(),
        dry_run: args.dry_run,
    };
    Ok((source, target_endpoint, options, target.json))
}

/// A dry run of a bundle import reads every record and blob first.
async fn verify_bundle(bundle: &BundleSource, json: bool) -> Result<(), TransferError> {
    let bar = std::sync::Mutex::new(ProgressLine::new());
    let tick = |done: u64, total: u64| {
        if !json {
            let value =
                serde_json::json!({"phase": "verifying blobs", "done": done, "total": total, "unit": ""});
            bar.lock().expect("progress lock").update(&value);
        }
    };
    let result = bundle.verify(&tick).await;
    bar.lock().expect("progress lock").finish();
    result.map(|_| ())
}

async fn run_once(
    source: &Opened,
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
    let result = tandem_transfer::copy(source.source(), target, options, &show).await;
    bar.lock().expect("progress lock").finish();
    result.map_err(|error| refusal(error, source.base(), target))
}

/// The CLI's error for a copy that could not go on, naming the side that
/// refused (the source's credentials, a target that is a secondary, …).
fn refusal(error: TransferError, source: Option<&str>, target: &Endpoint) -> anyhow::Error {
    match error {
        TransferError::Usage(message) => Refusal::Usage(message).into(),
        TransferError::Exists(message) => Refusal::Conflict(message).into(),
        TransferError::Transport { .. } => Refusal::Unreachable(error.to_string()).into(),
        TransferError::Api {
            status,
            code,
            message,
            url,
        } => {
            // The longer base that prefixes the URL: both sides may be
            // workspaces of one server.
            let source_base = source.unwrap_or("\u{0}");
            let side = match (url.starts_with(source_base), url.starts_with(target.base())) {
                (true, true) if source_base.len() >= target.base().len() => "the source",
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
pub(crate) struct ExportArgs {
    /// The workspace to export.
    #[arg(long, value_name = "WORKSPACE", default_value = "default")]
    workspace: String,
    /// Where to write the bundle: `file:///dir`, `s3://bucket/prefix`,
    /// `az://container/prefix` or `gs://bucket/prefix` (credentials and
    /// endpoints from the usual AWS_*, AZURE_STORAGE_*, GOOGLE_* variables).
    /// It must not hold a bundle already.
    #[arg(long, value_name = "BUNDLE_URL")]
    to: String,
    /// Only this experiment (name or id); repeat for more.
    #[arg(long = "experiment", value_name = "NAME|ID")]
    experiments: Vec<String>,
    /// Only this registered model, with the runs and logged models its
    /// versions were made from; repeat for more.
    #[arg(long = "registered-model", value_name = "NAME")]
    registered_models: Vec<String>,
    /// Only the runs this MLflow search filter selects; runs an exported
    /// model version was made from come along regardless.
    #[arg(long, value_name = "FILTER")]
    run_filter: Option<String>,
    /// Export deleted experiments and runs too.
    #[arg(long)]
    include_deleted: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    if !bundle::is_bundle_url(&args.to) {
        return Err(Refusal::Usage(format!(
            "--to {}: a bundle goes to file:///…, s3://…, az://… or gs://… (exporting straight into a tracking server is not supported yet: export a bundle, or run `tandem import` on the other side)",
            args.to
        ))
        .into());
    }
    let target = args.client.resolve()?;
    let base = tandem_transfer::workspace_url(&target.url, &args.workspace);
    let endpoint =
        Endpoint::new(&base, &endpoint_auth(&target)).map_err(|error| Refusal::Usage(error.to_string()))?;
    let source = TrackingSource::new(endpoint);
    let options = CopyOptions {
        source_key: source.key(),
        workspace: args.workspace.clone(),
        on_conflict: OnConflict::Refuse,
        include_deleted: args.include_deleted,
        experiments: args.experiments.clone(),
        registered_models: args.registered_models.clone(),
        run_filter: args.run_filter.clone(),
        dry_run: false,
    };
    let bar = std::sync::Mutex::new(ProgressLine::new());
    let show = |progress: &tandem_transfer::Progress| {
        if !target.json {
            let value = serde_json::json!({
                "phase": progress.phase, "done": progress.done, "total": progress.total,
                "bytes": progress.bytes, "unit": "",
            });
            bar.lock().expect("progress lock").update(&value);
        }
    };
    let result = bundle::export(&source, &args.to, &options, &show).await;
    bar.lock().expect("progress lock").finish();
    let report = result.map_err(|error| refusal(error, Some(source.endpoint().base()), source.endpoint()))?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", describe_export(&report));
    }
    Ok(())
}

fn describe_export(report: &ExportReport) -> String {
    let counts = &report.counts;
    format!(
        "exported {} to {} (bundle format {}) in {:.1} s: {} experiment(s), {} run(s), {} metric point(s), {} logged model(s), {} registered model(s) with {} version(s), {} artifact(s) in {} blob(s) ({})",
        report.source,
        report.bundle,
        report.format,
        report.seconds,
        counts.experiments,
        counts.runs,
        counts.metric_points,
        counts.logged_models,
        counts.registered_models,
        counts.model_versions,
        report.artifacts,
        counts.blobs,
        indicatif::HumanBytes(counts.blob_bytes),
    )
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
