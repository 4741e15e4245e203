//! `tandem import` and `tandem sync`: copy an MLflow tracking server (or
//! another Tandem workspace, or a bundle) into a workspace with
//! `tandem-transfer`; `tandem export`: write a workspace as a bundle;
//! `tandem move`: move objects between two workspaces of one deployment,
//! which the server does in one transaction.

use std::time::Duration;

use clap::Args;
use tandem_core::transfer::{MoveOutcome, MoveRequest, OnConflict};
use tandem_transfer::bundle::{self, BundleSource, ExportReport};
use tandem_transfer::{
    is_store_url, Auth, CopyOptions, Endpoint, MlflowStoreSource, Report, Source, TrackingSource,
    TransferError,
};

use crate::progress::ProgressLine;
use crate::{ClientArgs, Refusal};

#[derive(Args, Clone)]
pub(crate) struct ImportArgs {
    /// The source: an MLflow tracking URI (`http://host:5000`), a Tandem
    /// workspace's (`https://tandem.example/w/team-a`), a bundle written
    /// by `tandem export` (`file:///…`, `s3://…`, `az://…`, `gs://…`), or an
    /// `mlflow server`'s backend store read directly (`sqlite:////srv/mlflow.db`,
    /// `postgresql://…`: its --backend-store-uri; much faster to sync).
    #[arg(long, value_name = "TRACKING_URI|BUNDLE_URL|STORE_URI")]
    from: String,
    /// With a backend store as --from: where the server keeps the files
    /// behind `mlflow-artifacts:/` URIs (its --artifacts-destination: a
    /// directory or an object-store URL).
    #[arg(long, value_name = "DIR|URL")]
    from_artifacts: Option<String>,
    /// The workspace to copy into.
    #[arg(long, value_name = "WORKSPACE", default_value = "default")]
    into: String,
    /// What to do with an experiment or registered model whose name the
    /// workspace holds for something that did not come from this source:
    /// refuse (listed as failed), rename, merge into it, or skip.
    #[arg(long, value_name = "POLICY", default_value = "refuse", value_parser = ["refuse", "rename", "merge", "skip"])]
    on_conflict: String,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Delete (softly) the copies of objects the source no longer holds:
    /// runs, experiments, logged models and registered models copied from
    /// it before. Only for a whole copy from a tracking server; nothing is
    /// deleted after a pass in which an object failed.
    #[arg(long)]
    delete: bool,
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

/// Which objects a copy or an export takes.
#[derive(Args, Clone)]
pub(crate) struct SelectionArgs {
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
    /// Copy deleted experiments and runs too (as deleted).
    #[arg(long)]
    include_deleted: bool,
}

impl SelectionArgs {
    fn options(
        &self,
        source_key: String,
        workspace: String,
        on_conflict: &str,
        dry_run: bool,
    ) -> CopyOptions {
        CopyOptions {
            source_key,
            workspace,
            on_conflict: OnConflict::parse(on_conflict).expect("clap checked the value"),
            include_deleted: self.include_deleted,
            experiments: self.experiments.clone(),
            registered_models: self.registered_models.clone(),
            run_filter: self.run_filter.clone(),
            dry_run,
            delete: false,
        }
    }
}

/// Credentials for the other side of a copy, from `--from-*` or `--to-*`.
fn other_side_auth(
    token: &Option<String>,
    username: &Option<String>,
    password: &Option<String>,
    flag: &str,
) -> Result<Auth, Refusal> {
    match (token, username, password) {
        (Some(token), _, _) => Ok(Auth::Token(token.clone())),
        (None, Some(username), Some(password)) => Ok(Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        }),
        (None, Some(_), None) | (None, None, Some(_)) => Err(Refusal::Usage(format!(
            "--{flag}-username and --{flag}-password go together"
        ))),
        (None, None, None) => Ok(Auth::None),
    }
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
    // One listener for the whole watch: a Ctrl-C during a pass ends it too
    // (each object lands whole or not at all, so the next sync finishes
    // what the pass had begun), and none is missed between two listeners.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            result = run_once(&source, &target, &options, json) => match result {
                Ok(report) => print(&report, json),
                // A pass that cannot reach a side is retried on the next tick.
                Err(error) => eprintln!("sync pass failed: {error:#}"),
            },
            _ = &mut interrupted => return Ok(()),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = &mut interrupted => return Ok(()),
        }
    }
}

/// The source a copy reads.
enum Opened {
    Tracking(TrackingSource),
    Store(Box<MlflowStoreSource>),
    Bundle(Box<BundleSource>),
}

impl Opened {
    fn source(&self) -> &dyn Source {
        match self {
            Opened::Tracking(source) => source,
            Opened::Store(source) => source.as_ref(),
            Opened::Bundle(source) => source.as_ref(),
        }
    }

    /// The URL prefix of the source's requests (a bundle makes none).
    fn base(&self) -> Option<&str> {
        match self {
            Opened::Tracking(source) => Some(source.endpoint().base()),
            Opened::Store(_) | Opened::Bundle(_) => None,
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
    // Logs on request only (`TANDEM_LOG=tandem_transfer=debug` times each
    // phase of a pass): the summary is the command's output.
    if std::env::var_os("TANDEM_LOG").is_some() {
        crate::init_logging("text");
    }
    let target = args.client.resolve()?;
    let target_endpoint = Endpoint::new(&target.url, &endpoint_auth(&target))
        .map_err(|error| Refusal::Usage(error.to_string()))?;
    if args.from_artifacts.is_some() && !is_store_url(&args.from) {
        return Err(Refusal::Usage(
            "--from-artifacts goes with a backend store as --from (sqlite:///… or postgresql://…)"
                .to_string(),
        )
        .into());
    }
    let source = if is_store_url(&args.from) {
        let opened = MlflowStoreSource::open(&args.from, args.from_artifacts.as_deref())
            .await
            .map_err(|error| refusal(error, None, &target_endpoint))?;
        Opened::Store(Box::new(opened))
    } else if bundle::is_bundle_url(&args.from) {
        if args.selection.run_filter.is_some() {
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
        let source_auth =
            other_side_auth(&args.from_token, &args.from_username, &args.from_password, "from")?;
        let endpoint =
            Endpoint::new(&args.from, &source_auth).map_err(|error| Refusal::Usage(error.to_string()))?;
        Opened::Tracking(TrackingSource::new(endpoint))
    };
    if args.delete {
        let selection = &args.selection;
        if !selection.experiments.is_empty()
            || !selection.registered_models.is_empty()
            || selection.run_filter.is_some()
        {
            return Err(Refusal::Usage(
                "--delete deletes what the source no longer holds: it takes a whole copy, without --experiment, --registered-model or --run-filter".to_string(),
            )
            .into());
        }
        if matches!(source, Opened::Bundle(_)) {
            return Err(Refusal::Usage(
                "--delete needs the source itself: a bundle holds only what its export chose (sync from the workspace or server instead)".to_string(),
            )
            .into());
        }
    }
    let mut options = args.selection.options(
        source.source().key(),
        args.into.clone(),
        &args.on_conflict,
        args.dry_run,
    );
    options.delete = args.delete;
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
    // An import names the workspace it wrote; an export, the server.
    let target = match report.workspace.contains("://") {
        true => report.workspace.clone(),
        false => format!("workspace {}", report.workspace),
    };
    println!("{} → {target} in {:.1} s", report.source, report.seconds);
    for (name, counts) in [
        ("experiments", &report.experiments),
        ("runs", &report.runs),
        ("logged models", &report.logged_models),
        ("registered models", &report.registered_models),
    ] {
        let deleted = match counts.deleted {
            0 => String::new(),
            n => format!(", {n} deleted"),
        };
        println!(
            "  {name:<18} {} created, {} updated, {} unchanged, {} skipped, {} failed{deleted}",
            counts.created, counts.updated, counts.unchanged, counts.skipped, counts.failed
        );
    }
    println!(
        "  {} model versions, {} metric points, {} artifacts ({} bytes) copied",
        report.model_versions, report.metric_points, report.artifacts_copied, report.artifact_bytes
    );
    if report.deletions_withheld {
        println!("  nothing deleted: --delete waits for a pass in which every object was copied");
    }
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
    /// Where to write: an MLflow tracking server (`http://host:5000`,
    /// written through its REST API and artifact proxy; a later export
    /// writes only what changed), or a bundle at `file:///dir`,
    /// `s3://bucket/prefix`, `az://container/prefix` or `gs://bucket/prefix`
    /// (credentials and endpoints from the usual AWS_*, AZURE_STORAGE_*,
    /// GOOGLE_* variables), which must not hold a bundle already.
    #[arg(long, value_name = "TRACKING_URI|BUNDLE_URL")]
    to: String,
    /// What to do with an experiment or registered model whose name a
    /// tracking server holds for something that did not come from this
    /// workspace: refuse (listed as failed), rename, merge into it, or skip.
    #[arg(long, value_name = "POLICY", default_value = "refuse", value_parser = ["refuse", "rename", "merge", "skip"])]
    on_conflict: String,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Token for a tracking server target [env: TO_MLFLOW_TRACKING_TOKEN].
    #[arg(long, env = "TO_MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    to_token: Option<String>,
    /// Username for a tracking server target (HTTP Basic) [env: TO_MLFLOW_TRACKING_USERNAME].
    #[arg(long, env = "TO_MLFLOW_TRACKING_USERNAME")]
    to_username: Option<String>,
    /// Password for a tracking server target [env: TO_MLFLOW_TRACKING_PASSWORD].
    #[arg(long, env = "TO_MLFLOW_TRACKING_PASSWORD", hide_env_values = true)]
    to_password: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let into_tracking = args.to.starts_with("http://") || args.to.starts_with("https://");
    if !bundle::is_bundle_url(&args.to) && !into_tracking {
        return Err(Refusal::Usage(format!(
            "--to {}: give a tracking server (http://…, https://…) or a bundle location (file:///…, s3://…, az://…, gs://…)",
            args.to
        ))
        .into());
    }
    let target = args.client.resolve()?;
    let base = tandem_transfer::workspace_url(&target.url, &args.workspace);
    let endpoint =
        Endpoint::new(&base, &endpoint_auth(&target)).map_err(|error| Refusal::Usage(error.to_string()))?;
    let source = TrackingSource::new(endpoint);
    let options = args
        .selection
        .options(source.key(), args.workspace.clone(), &args.on_conflict, false);
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
    if into_tracking {
        let auth = other_side_auth(&args.to_token, &args.to_username, &args.to_password, "to")?;
        let tracking = Endpoint::new(&args.to, &auth).map_err(|error| Refusal::Usage(error.to_string()))?;
        let result = tandem_transfer::copy_to_tracking(&source, &tracking, &options, &show).await;
        bar.lock().expect("progress lock").finish();
        let report = result.map_err(|error| refusal(error, Some(source.endpoint().base()), &tracking))?;
        return finish(&report, target.json);
    }
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
