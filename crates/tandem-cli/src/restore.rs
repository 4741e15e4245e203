//! `tandem backup restore --from URL [--at TIME | --seq N | --backup ID]
//! [--into REGION_URL] [--workspace W] [--as NEW] [--overwrite]`: rebuilds a
//! workspace as it was at that moment (none given: the latest state the
//! repository holds), in the region at REGION_URL (default:
//! the configured URL). Progress goes to stderr; the result to stdout.

use tandem_client::{RestoreSpec, TandemClient};

use crate::{ClientArgs, Refusal};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup repository's URL (file://, s3://, az://, gs://).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Restore the state of this backup. With none of --backup, --seq and
    /// --at: the latest state the repository holds.
    #[arg(long, value_name = "ID", conflicts_with_all = ["seq", "at"])]
    pub backup: Option<String>,
    /// Restore the state at this position of the region's journal.
    #[arg(long, value_name = "N", conflicts_with = "at")]
    pub seq: Option<i64>,
    /// Restore the state at this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Whose journal --seq/--at count in (default: the newest backup's region).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// The target region's URL [default: the configured URL].
    #[arg(long, value_name = "REGION_URL")]
    pub into: Option<String>,
    /// The workspace to restore (may be omitted if the backup holds one).
    #[arg(long, value_name = "W")]
    pub workspace: Option<String>,
    /// Restore as a new workspace of this name, beside the original.
    #[arg(long = "as", value_name = "NEW_WORKSPACE")]
    pub as_name: Option<String>,
    /// Replace objects at the target that hold other bytes.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let target = args.client.resolve()?;
    let client: TandemClient = match &args.into {
        Some(url) => target
            .client
            .at(url)
            .map_err(|error| Refusal::Usage(format!("invalid --into URL '{url}': {error}")))?,
        None => target.client.clone(),
    };
    let spec = RestoreSpec {
        from: args.from,
        workspace: args.workspace,
        backup: args.backup,
        seq: args.seq,
        at: args.at,
        region: args.region,
        as_name: args.as_name,
        overwrite: args.overwrite,
    };
    let mut line = crate::progress::ProgressLine::new();
    let result = client
        .restore(&spec, |progress| {
            line.update(&serde_json::json!({
                "phase": progress.phase,
                "done": progress.done,
                "total": progress.total,
                "unit": progress.unit,
            }))
        })
        .await;
    line.finish();
    let result = result?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "restored workspace '{}' ({}) as of {} seq {}: {} records, {} artifacts and {} files ({} bytes)",
            result.workspace,
            result.workspace_id,
            result.source_region,
            result.position,
            result.records,
            result.artifacts,
            result.files,
            result.bytes
        );
    }
    Ok(())
}
