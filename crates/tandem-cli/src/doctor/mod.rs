//! `tandem doctor`: would a failover succeed now?
//!
//! Finds the deployment's regions (from `--deployment FILE`, else from the
//! region list of the configured URL, as `tandem divergence` does), asks
//! every region at once for its status and its diagnostics (through
//! `tandem-client`, the API users call), then runs the checks of
//! [`checks`] — pure functions over what was collected ([`inputs`]) — and
//! prints each one's verdict, reason and fix, as a table or `--json`.
//!
//! Exit codes: 0 when no check fails (warnings allowed): a failover would
//! succeed; 1 when one fails; 2 usage; 5 when no region list could be had
//! at all.

use std::path::PathBuf;

use anyhow::Context;

use crate::{ClientArgs, Refusal};
use tandem_doctor::{checks, collect, Report};

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Read the regions from this deployment file instead of asking the
    /// configured URL (works when no region answers).
    #[arg(long, value_name = "FILE")]
    pub deployment: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A failover would not succeed: exit 1 with the report printed.
#[derive(Debug)]
pub struct FailoverWouldFail(pub Vec<&'static str>);

impl std::fmt::Display for FailoverWouldFail {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "a failover would not succeed now: {} failed",
            self.0.join(", ")
        )
    }
}

impl std::error::Error for FailoverWouldFail {}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let target = args.client.resolve()?;
    let regions = match &args.deployment {
        Some(path) => {
            let deployment = tandem_deployment::Deployment::from_file(path)
                .map_err(|error| Refusal::Usage(error.to_string()))?;
            deployment
                .regions()
                .iter()
                .map(|region| (region.name.clone(), region.url.clone()))
                .collect::<Vec<_>>()
        }
        None => target
            .client
            .region_list()
            .await
            .with_context(|| {
                format!(
                    "cannot read the deployment's regions through {} (from {}); pass --url of any region that answers, or --deployment FILE",
                    target.url, target.url_source
                )
            })?
            .into_iter()
            .map(|region| (region.name, region.url))
            .collect(),
    };
    let inputs = collect(&target.client, regions).await;
    let report = Report::new(&inputs, checks::run(&inputs));
    if target.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(FailoverWouldFail(report.failed.clone()).into())
    }
}
