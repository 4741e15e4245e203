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

pub mod checks;
pub mod inputs;

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use tandem_client::TandemClient;

use crate::{ClientArgs, Refusal};
use checks::{Check, Status};
use inputs::{ClockSample, Inputs, RegionInputs, RegionStatus};

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

/// Asks every region, all at once, for its status and its diagnostics.
async fn collect(client: &TandemClient, regions: Vec<(String, String)>) -> Inputs {
    let asked = regions.into_iter().map(|(name, url)| async move {
        let region = match client.at(&url) {
            Ok(region) => region,
            Err(error) => {
                return RegionInputs {
                    name,
                    url,
                    status: Err(error.to_string()),
                    diagnostics: Err(error.to_string()),
                    clock: None,
                }
            }
        };
        let status = async {
            let document = region.regions().await.map_err(describe)?;
            serde_json::from_value::<RegionStatus>(document)
                .map_err(|error| format!("unexpected status document: {error}"))
        };
        let diagnostics = async {
            let sent = now_ms();
            let answer = region.diagnostics().await.map_err(describe);
            let arrived = now_ms();
            answer.map(|diagnostics| {
                let clock = ClockSample::from_exchange(
                    sent,
                    diagnostics.received_at_ms,
                    diagnostics.answered_at_ms,
                    arrived,
                );
                (diagnostics, clock)
            })
        };
        let (status, diagnostics) = tokio::join!(status, diagnostics);
        let (diagnostics, clock) = match diagnostics {
            Ok((diagnostics, clock)) => (Ok(diagnostics), Some(clock)),
            Err(error) => (Err(error), None),
        };
        RegionInputs {
            name,
            url,
            status,
            diagnostics,
            clock,
        }
    });
    let regions = futures::future::join_all(asked).await;
    Inputs {
        now_ms: now_ms(),
        regions,
    }
}

/// What went wrong, shortly: for a transport error its innermost cause
/// (`Connection refused (os error 111)`), the part the operator acts on.
fn describe(error: tandem_client::ClientError) -> String {
    match error {
        tandem_client::ClientError::Transport { message, .. } => {
            message.rsplit(": ").next().unwrap_or(&message).to_string()
        }
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub deployment: Option<String>,
    /// Whether a failover would succeed now: no check fails.
    pub failover_ready: bool,
    /// The names of the checks that fail.
    pub failed: Vec<&'static str>,
    pub regions: Vec<RegionSummary>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
pub struct RegionSummary {
    pub name: String,
    pub url: String,
    pub reachable: bool,
    pub role: Option<String>,
    pub ready: Option<bool>,
    /// The region's clock minus the doctor's, and the exchange's delay.
    pub clock_offset_ms: Option<f64>,
    pub clock_delay_ms: Option<f64>,
}

impl Report {
    pub fn new(inputs: &Inputs, checks: Vec<Check>) -> Report {
        let failed = checks
            .iter()
            .filter(|check| check.status == Status::Fail)
            .map(|check| check.name)
            .collect::<Vec<_>>();
        Report {
            deployment: inputs.any_status().map(|status| status.deployment.clone()),
            failover_ready: failed.is_empty(),
            failed,
            regions: inputs
                .regions
                .iter()
                .map(|region| RegionSummary {
                    name: region.name.clone(),
                    url: region.url.clone(),
                    reachable: region.status.is_ok() || region.diagnostics.is_ok(),
                    role: region.status.as_ref().ok().map(|status| status.role.clone()),
                    ready: region.status.as_ref().ok().map(|status| status.ready),
                    clock_offset_ms: region.clock.map(|clock| clock.offset_ms),
                    clock_delay_ms: region.clock.map(|clock| clock.delay_ms),
                })
                .collect(),
            checks,
        }
    }

    /// The report as text: one line per check, its fix below it.
    pub fn table(&self) -> String {
        let mut text = String::new();
        let regions: Vec<String> = self
            .regions
            .iter()
            .map(|region| match (&region.role, region.reachable) {
                (Some(role), _) => format!("{} ({role})", region.name),
                (None, _) => format!("{} (no answer)", region.name),
            })
            .collect();
        text.push_str(&format!(
            "deployment {}: {}\n\n",
            self.deployment.as_deref().unwrap_or("-"),
            regions.join(", ")
        ));
        let width = self
            .checks
            .iter()
            .map(|check| check.name.len())
            .max()
            .unwrap_or(0);
        for check in &self.checks {
            text.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                check.status.as_str().to_uppercase(),
                check.name,
                check.reason
            ));
            if let Some(fix) = &check.fix {
                text.push_str(&format!("      {:<width$}  fix: {fix}\n", ""));
            }
        }
        let warnings = self
            .checks
            .iter()
            .filter(|check| check.status == Status::Warn)
            .count();
        text.push('\n');
        if self.failover_ready {
            text.push_str(&format!(
                "A failover would succeed now ({warnings} warning{}).\n",
                if warnings == 1 { "" } else { "s" }
            ));
        } else {
            text.push_str(&format!(
                "A failover would NOT succeed now: {} failed.\n",
                self.failed.join(", ")
            ));
        }
        text
    }
}
