//! `tandem failover --to REGION [--force]`: makes REGION the primary.
//!
//! Planned, the request goes to the configured URL (normally the gateway,
//! which routes it to the primary): the primary stops writing, waits until
//! the target holds its whole journal, and hands leadership over, so no
//! acknowledged write is lost. Forced, the primary is gone: the CLI reads the
//! deployment's regions through the configured URL and sends the request to
//! the target region itself, which takes leadership from the witness; records
//! the lost primary had and the target lacked go to quarantine if it returns
//! (`tandem divergence`).

use anyhow::Context;
use tandem_client::{FailoverReport, RegionEntry};

use crate::{ClientArgs, Refusal};

#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// The region to make the primary.
    #[arg(long, value_name = "REGION")]
    pub to: String,
    /// The primary is gone: have REGION take leadership by itself, accepting
    /// the loss of the records it had not received (they are quarantined if
    /// the old primary returns).
    #[arg(long)]
    pub force: bool,
    /// With --force: go ahead even though the primary still answers and
    /// serves, losing the writes it acknowledged that REGION lacks (the
    /// report counts them). Without it a forced failover over a healthy
    /// primary is refused: use a planned failover, which loses nothing.
    #[arg(long, requires = "force")]
    pub accept_data_loss: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    let target = args.client.resolve()?;
    let report = if args.force {
        let regions = target.client.region_list().await.with_context(|| {
            format!(
                "a forced failover is sent to region '{}' itself, and its address could not be read \
                 from the deployment's regions through {} (from {}); pass --url of any region that \
                 still answers",
                args.to, target.url, target.url_source
            )
        })?;
        let url = region_url(&regions, &args.to)?;
        let region = target.client.at(&url)?;
        region
            .failover(&args.to, true, args.accept_data_loss)
            .await
            .with_context(|| format!("forced failover to '{}' at {url} failed", args.to))?
    } else {
        target
            .client
            .failover(&args.to, false, false)
            .await
            .with_context(|| format!("planned failover to '{}' through {} failed", args.to, target.url))?
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", describe(&report));
    }
    Ok(())
}

/// The URL of region `name` in the deployment's region list.
pub fn region_url(regions: &[RegionEntry], name: &str) -> anyhow::Result<String> {
    match regions.iter().find(|region| region.name == name) {
        Some(region) => Ok(region.url.clone()),
        None => {
            let known: Vec<&str> = regions.iter().map(|region| region.name.as_str()).collect();
            Err(Refusal::NotFound(format!(
                "region '{name}' is not in the deployment (its regions: {})",
                known.join(", ")
            ))
            .into())
        }
    }
}

/// One line (two when something may be lost) saying what the failover did.
pub fn describe(report: &FailoverReport) -> String {
    let from = report.from.as_deref().unwrap_or("(unknown)");
    let duration = if report.duration_ms < 1000 {
        format!("{} ms", report.duration_ms)
    } else {
        format!("{:.1} s", report.duration_ms as f64 / 1000.0)
    };
    let kind = if report.planned {
        "failover"
    } else {
        "forced failover"
    };
    let head = format!(
        "{kind} {from} → {} done in {duration}, epoch {}",
        report.to, report.epoch
    );
    if report.planned {
        let confirmed = report
            .records_confirmed
            .map(|records| format!(" ({records} records confirmed)"))
            .unwrap_or_default();
        if report.zero_loss {
            format!("{head}; zero loss verified{confirmed}")
        } else {
            format!("{head}; zero loss NOT verified{confirmed}")
        }
    } else {
        let accepted = if report.accepted_data_loss {
            format!(" (forced over {from} while it still served, as --accept-data-loss allowed)")
        } else {
            String::new()
        };
        match (report.loss_known, report.records_possibly_lost) {
            (true, Some(0)) => format!(
                "{head}{accepted}; no records lost: {to} held everything {from} had",
                to = report.to
            ),
            (true, Some(lost)) => format!(
                "{head}{accepted}; {lost} records lost: {from} holds them past the new epoch's fork (counted in its journal).\n\
                 They are in {from}'s quarantine: see `tandem divergence list`, `tandem divergence apply ID`"
            ),
            _ => {
                let bound = report
                    .loss_lower_bound
                    .map(|bound| format!("at least {bound}"))
                    .unwrap_or_else(|| "unknown".to_string());
                let reason = report.loss_reason.as_deref().unwrap_or("no answer from the old primary");
                format!(
                    "{head}{accepted}; records lost: {bound}, exact count unknown: {reason}.\n\
                     If {from} returns, what it alone had goes to its quarantine: see `tandem divergence list`"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(planned: bool) -> FailoverReport {
        FailoverReport {
            from: Some("eastus".to_string()),
            to: "westus".to_string(),
            epoch: 7,
            planned,
            records_confirmed: planned.then_some(1234),
            zero_loss: planned,
            records_possibly_lost: (!planned).then_some(12),
            loss_known: true,
            loss_lower_bound: None,
            loss_reason: None,
            accepted_data_loss: false,
            duration_ms: 1234,
            fork: Default::default(),
        }
    }

    #[test]
    fn a_planned_failover_says_zero_loss_was_verified() {
        assert_eq!(
            describe(&report(true)),
            "failover eastus → westus done in 1.2 s, epoch 7; zero loss verified (1234 records confirmed)"
        );
    }

    #[test]
    fn short_failovers_are_counted_in_milliseconds() {
        let mut quick = report(true);
        quick.duration_ms = 7;
        assert!(describe(&quick).contains("done in 7 ms, epoch 7"));
    }

    #[test]
    fn a_forced_failover_says_how_many_records_may_be_lost() {
        let text = describe(&report(false));
        assert!(
            text.starts_with(
                "forced failover eastus → westus done in 1.2 s, epoch 7; 12 records lost: eastus holds them"
            ),
            "{text}"
        );
        let mut nothing_lost = report(false);
        nothing_lost.records_possibly_lost = Some(0);
        nothing_lost.zero_loss = true;
        assert!(describe(&nothing_lost).contains("no records lost"));
        let mut unknown = report(false);
        unknown.loss_known = false;
        unknown.records_possibly_lost = None;
        unknown.loss_lower_bound = Some(3);
        unknown.loss_reason = Some("the old primary 'eastus' is unreachable (refused)".to_string());
        let text = describe(&unknown);
        assert!(
            text.contains(
                "records lost: at least 3, exact count unknown: the old primary 'eastus' is unreachable"
            ),
            "{text}"
        );
        assert!(!text.contains(" 0 records"), "{text}");
    }

    #[test]
    fn the_target_region_is_found_by_name() {
        let regions = vec![
            RegionEntry {
                name: "eastus".to_string(),
                url: "http://127.0.0.1:6001".to_string(),
                role: "primary".to_string(),
            },
            RegionEntry {
                name: "westus".to_string(),
                url: "http://127.0.0.1:6002".to_string(),
                role: "secondary".to_string(),
            },
        ];
        assert_eq!(region_url(&regions, "westus").unwrap(), "http://127.0.0.1:6002");
        let error = region_url(&regions, "mars").unwrap_err();
        assert!(matches!(
            error.downcast_ref::<Refusal>(),
            Some(Refusal::NotFound(_))
        ));
        assert!(error.to_string().contains("eastus, westus"));
    }
}
