//! Would a failover succeed now? The checks of `tandem doctor` — the
//! seeds' "troubleshoot failover" list — as small pure functions
//! ([`checks`]) over what every region answers ([`inputs`]: its status and
//! its diagnostics), gathered by [`collect`] through `tandem-client`, the
//! API users call. The CLI prints the [`Report`]; a region serves it to the
//! console (`GET /api/tandem/v1/doctor`), collected with the caller's own
//! credentials.

pub mod checks;
pub mod inputs;

use serde::Serialize;
use tandem_client::TandemClient;

use checks::{Check, Status};
use inputs::{ClockSample, Inputs, RegionInputs, RegionStatus};

/// Asks every region, all at once, for its status and its diagnostics.
pub async fn collect(client: &TandemClient, regions: Vec<(String, String)>) -> Inputs {
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
