//! `tandem divergence list|show|apply`: the records a failover voided.
//!
//! A deposed primary's writes that no other region received are set aside,
//! in the region that holds them, when it rejoins under a newer epoch. Each
//! region serves only its own quarantine, so these commands read the
//! deployment's regions (and their URLs) through the configured URL, ask
//! every region, and merge the answers by record id (the same id in every
//! region holding it). A region that does not answer is reported, not an
//! error, unless none answers.

use std::collections::BTreeMap;
use std::future::Future;

use anyhow::Context;
use serde::Serialize;
use tandem_client::{
    ClientError, ClientResult, DivergentRecord, HeldDivergentRecord, RegionEntry, TandemClient,
};

use crate::{ClientArgs, Refusal, Target};

#[derive(clap::Args, Debug)]
pub struct DivergenceArgs {
    #[command(subcommand)]
    pub command: DivergenceCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Subcommand, Debug, PartialEq, Eq)]
pub enum DivergenceCommand {
    /// List every region's quarantine, merged by record id.
    List,
    /// Show one record in full, with the change it carries.
    Show {
        /// The record's id (`<origin region>-<origin seq>`, as listed).
        id: String,
    },
    /// Re-apply a quarantined record as a new change at the current primary.
    Apply {
        /// The record's id (`<origin region>-<origin seq>`, as listed).
        id: String,
    },
}

pub async fn run(args: DivergenceArgs) -> anyhow::Result<()> {
    let target = args.client.resolve()?;
    match args.command {
        DivergenceCommand::List => list(&target).await,
        DivergenceCommand::Show { id } => show(&target, &id).await,
        DivergenceCommand::Apply { id } => apply(&target, &id).await,
    }
}

/// One region's answer to a question asked of every region.
struct Answer<T> {
    region: RegionEntry,
    outcome: ClientResult<T>,
}

/// Reads the regions through the configured URL, then asks each of them
/// (concurrently) with `ask`.
async fn ask_every_region<T, F, Fut>(target: &Target, ask: F) -> anyhow::Result<Vec<Answer<T>>>
where
    F: Fn(TandemClient) -> Fut,
    Fut: Future<Output = ClientResult<T>>,
{
    let regions = target.client.region_list().await.with_context(|| {
        format!(
            "cannot read the deployment's regions through {} (from {}); pass --url of any region that answers",
            target.url, target.url_source
        )
    })?;
    let questions = regions.into_iter().map(|region| {
        let client = target.client.at(&region.url);
        let ask = &ask;
        async move {
            let outcome = match client {
                Ok(client) => ask(client).await,
                Err(error) => Err(error),
            };
            Answer { region, outcome }
        }
    });
    Ok(futures::future::join_all(questions).await)
}

/// A region that could not say what it holds, as reported to the user.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Silent {
    pub region: String,
    pub url: String,
    pub error: String,
}

fn silent(region: &RegionEntry, error: &ClientError) -> Silent {
    let error = match error {
        ClientError::Transport { message, .. } => format!("no answer: {message}"),
        other => other.to_string(),
    };
    Silent {
        region: region.name.clone(),
        url: region.url.clone(),
        error,
    }
}

/// The error when no region answered at all: unreachable (exit 5) when
/// every one of them could not be reached.
fn none_answered(silent: &[Silent], all_unreachable: bool) -> anyhow::Error {
    let details: Vec<String> = silent
        .iter()
        .map(|region| format!("{} ({}): {}", region.region, region.url, region.error))
        .collect();
    let message = format!("no region answered: {}", details.join("; "));
    if all_unreachable {
        Refusal::Unreachable(message).into()
    } else {
        anyhow::anyhow!(message)
    }
}

/// One record of the merged list: the regions holding it, and its contents
/// as the first of them (in deployment order) reported it.
#[derive(Debug, Serialize, PartialEq)]
pub struct MergedRecord {
    pub id: String,
    pub holders: Vec<String>,
    /// Each holder's status, when they differ (`quarantined` in one region,
    /// `applied` in another).
    pub statuses: BTreeMap<String, String>,
    pub record: DivergentRecord,
}

/// Merges per-region quarantines by record id, ordered by id.
pub fn merge(quarantines: Vec<(String, Vec<DivergentRecord>)>) -> Vec<MergedRecord> {
    let mut merged: BTreeMap<String, MergedRecord> = BTreeMap::new();
    for (region, records) in quarantines {
        for record in records {
            let entry = merged.entry(record.id.clone()).or_insert_with(|| MergedRecord {
                id: record.id.clone(),
                holders: Vec::new(),
                statuses: BTreeMap::new(),
                record: record.clone(),
            });
            entry.holders.push(region.clone());
            entry.statuses.insert(region.clone(), record.status.clone());
        }
    }
    merged.into_values().collect()
}

impl MergedRecord {
    /// `quarantined`, or e.g. `applied (eastus), quarantined (westus)`.
    fn status(&self) -> String {
        let mut distinct: Vec<&String> = self.statuses.values().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() == 1 {
            return distinct[0].clone();
        }
        self.statuses
            .iter()
            .map(|(region, status)| format!("{status} ({region})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn change_kind(record: &DivergentRecord) -> String {
    serde_json::to_value(&record.record.change)
        .ok()
        .and_then(|change| change["type"].as_str().map(str::to_string))
        .unwrap_or_else(|| "-".to_string())
}

/// The list as a table, one line per record.
pub fn table(records: &[MergedRecord]) -> String {
    let header = [
        "ID",
        "HOLDER",
        "STATUS",
        "KIND",
        "WORKSPACE",
        "ORIGIN",
        "EPOCH",
        "REASON",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|merged| {
            let record = &merged.record;
            [
                merged.id.clone(),
                merged.holders.join(","),
                merged.status(),
                change_kind(record),
                record.record.workspace_id.clone(),
                format!("{}#{}", record.record.origin_region, record.record.origin_seq),
                format!("{} → {}", record.record.epoch, record.voided_by_epoch),
                record.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 8]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        text.trim_end().to_string()
    };
    let mut out = line(&header);
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

#[derive(Serialize)]
struct ListOutput<'a> {
    records: &'a [MergedRecord],
    /// Regions whose quarantine is not in `records`: they did not answer.
    silent: &'a [Silent],
}

async fn list(target: &Target) -> anyhow::Result<()> {
    let answers = ask_every_region(target, |client| async move { client.divergence().await }).await?;
    let mut quarantines = Vec::new();
    let mut silent_regions = Vec::new();
    let mut all_unreachable = true;
    for answer in answers {
        match answer.outcome {
            Ok(quarantine) => quarantines.push((answer.region.name, quarantine.records)),
            Err(error) => {
                all_unreachable &= matches!(error, ClientError::Transport { .. });
                silent_regions.push(silent(&answer.region, &error));
            }
        }
    }
    if quarantines.is_empty() {
        return Err(none_answered(&silent_regions, all_unreachable));
    }
    let merged = merge(quarantines);
    if target.json {
        let output = ListOutput {
            records: &merged,
            silent: &silent_regions,
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    if merged.is_empty() {
        println!("no divergent records");
    } else {
        println!("{}", table(&merged));
    }
    report_silent(&silent_regions);
    Ok(())
}

/// Says, after the output, which regions' views are missing from it.
fn report_silent(silent: &[Silent]) {
    if silent.is_empty() {
        return;
    }
    println!();
    for region in silent {
        println!(
            "region {} ({}) did not answer, its quarantine is not included: {}",
            region.region, region.url, region.error
        );
    }
}

/// Every region holding record `id`, in deployment order, and the regions
/// that could not say. Not found (exit 3) when no answering region holds it.
async fn holders(
    target: &Target,
    id: &str,
) -> anyhow::Result<(Vec<(RegionEntry, HeldDivergentRecord)>, Vec<Silent>)> {
    let answers = ask_every_region(target, |client| {
        let id = id.to_string();
        async move { client.divergent_record(&id).await }
    })
    .await?;
    let mut held = Vec::new();
    let mut silent_regions = Vec::new();
    let mut answered = false;
    let mut all_unreachable = true;
    for answer in answers {
        match answer.outcome {
            Ok(record) => {
                answered = true;
                held.push((answer.region, record));
            }
            Err(error) if error.is_not_found() => answered = true,
            Err(error) => {
                all_unreachable &= matches!(error, ClientError::Transport { .. });
                silent_regions.push(silent(&answer.region, &error));
            }
        }
    }
    if !answered {
        return Err(none_answered(&silent_regions, all_unreachable));
    }
    if held.is_empty() {
        let mut message = format!("no region holds divergent record '{id}'");
        if !silent_regions.is_empty() {
            let names: Vec<String> = silent_regions
                .iter()
                .map(|region| format!("{} ({})", region.region, region.error))
                .collect();
            message.push_str(&format!(
                " among those that answered; not answering: {}",
                names.join("; ")
            ));
        }
        return Err(Refusal::NotFound(message).into());
    }
    Ok((held, silent_regions))
}

#[derive(Serialize)]
struct ShowOutput<'a> {
    id: &'a str,
    holders: Vec<&'a str>,
    record: &'a DivergentRecord,
    silent: &'a [Silent],
}

async fn show(target: &Target, id: &str) -> anyhow::Result<()> {
    let (held, silent_regions) = holders(target, id).await?;
    let held: Vec<HeldDivergentRecord> = held.into_iter().map(|(_, held)| held).collect();
    let first = &held[0];
    if target.json {
        let output = ShowOutput {
            id,
            holders: held.iter().map(|held| held.region.as_str()).collect(),
            record: &first.record,
            silent: &silent_regions,
        };
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    println!("{}", describe(&held)?);
    report_silent(&silent_regions);
    Ok(())
}

/// The text form of `tandem divergence show`: what happened to the record,
/// then the whole journal record, change included, as pretty JSON.
pub fn describe(held: &[HeldDivergentRecord]) -> anyhow::Result<String> {
    let record = &held[0].record;
    let holders: Vec<String> = held
        .iter()
        .map(|held| {
            format!(
                "{} ({}, journal position {})",
                held.region, held.record.status, held.record.seq
            )
        })
        .collect();
    let mut lines = vec![
        format!("divergent record {}", record.id),
        format!("  held by       {}", holders.join(", ")),
        format!("  kind          {}", change_kind(record)),
        format!("  workspace     {}", record.record.workspace_id),
        format!(
            "  origin        {}#{}, epoch {}, recorded at {}",
            record.record.origin_region,
            record.record.origin_seq,
            record.record.epoch,
            utc(record.record.recorded_at)
        ),
        format!("  voided by     epoch {}", record.voided_by_epoch),
        format!("  reason        {}", record.reason),
        format!("  found at      {}", utc(record.found_at)),
    ];
    if let Some(state) = &record.artifact_state {
        lines.push(format!("  artifact      {state}"));
    }
    if let Some(seq) = record.applied_seq {
        let when = record.applied_at.map(utc).unwrap_or_else(|| "-".to_string());
        lines.push(format!(
            "  re-applied    as journal record {seq} at the primary, {when}"
        ));
    }
    lines.push("  record:".to_string());
    lines.push(serde_json::to_string_pretty(&record.record)?);
    Ok(lines.join("\n"))
}

async fn apply(target: &Target, id: &str) -> anyhow::Result<()> {
    let (held, _) = holders(target, id).await?;
    // A holder that still has it quarantined; else let the first one say
    // what applying an applied record means.
    let (region, _) = held
        .iter()
        .find(|(_, held)| held.record.status == "quarantined")
        .unwrap_or(&held[0]);
    let applied = target
        .client
        .at(&region.url)?
        .apply_divergent_record(id)
        .await
        .with_context(|| {
            format!(
                "re-applying '{id}' through its holder {} ({}) failed",
                region.name, region.url
            )
        })?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&applied)?);
        return Ok(());
    }
    match applied.record.applied_seq {
        Some(seq) => println!(
            "re-applied {id} from {}'s quarantine: now journal record {seq} at the primary",
            applied.region
        ),
        None => println!(
            "{id} from {}'s quarantine: status {}, no journal position reported",
            applied.region, applied.record.status
        ),
    }
    Ok(())
}

/// `2025-01-02T03:04:05.678Z` for milliseconds since the Unix epoch.
pub fn utc(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let milliseconds = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milliseconds:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::journal::{Change, JournalRecord};

    fn record(id: &str, status: &str) -> DivergentRecord {
        DivergentRecord {
            id: id.to_string(),
            seq: 41,
            voided_by_epoch: 4,
            reason: "written by a deposed primary".to_string(),
            found_at: 1_700_000_000_000,
            status: status.to_string(),
            artifact_state: None,
            applied_seq: None,
            applied_at: None,
            record: JournalRecord {
                seq: 41,
                workspace_id: "w1".to_string(),
                hlc: 1,
                origin_region: "eastus".to_string(),
                origin_seq: 41,
                epoch: 3,
                format: tandem_core::journal::FORMAT_VERSION,
                recorded_at: 1_700_000_000_000,
                change: Change::WorkspaceUpdated {
                    description: "x".to_string(),
                    time: 1_700_000_000_000,
                },
                seen: None,
                principal: None,
            },
        }
    }

    #[test]
    fn quarantines_merge_by_id_and_note_every_holder() {
        let merged = merge(vec![
            (
                "eastus".to_string(),
                vec![
                    record("eastus-41", "quarantined"),
                    record("eastus-42", "quarantined"),
                ],
            ),
            ("westus".to_string(), vec![record("eastus-41", "applied")]),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].id, "eastus-41");
        assert_eq!(merged[0].holders, ["eastus", "westus"]);
        assert_eq!(merged[0].status(), "quarantined (eastus), applied (westus)");
        assert_eq!(merged[1].holders, ["eastus"]);
        assert_eq!(merged[1].status(), "quarantined");
    }

    #[test]
    fn the_table_shows_kind_origin_and_epochs() {
        let merged = merge(vec![(
            "eastus".to_string(),
            vec![record("eastus-41", "quarantined")],
        )]);
        let text = table(&merged);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(lines[1].contains("workspace_updated"), "{text}");
        assert!(lines[1].contains("eastus#41"), "{text}");
        assert!(lines[1].contains("3 → 4"), "{text}");
        assert!(lines[1].ends_with("written by a deposed primary"), "{text}");
        // Columns line up.
        let holder_column = lines[0].find("HOLDER").unwrap();
        assert!(lines[1][holder_column..].starts_with("eastus "), "{text}");
    }

    #[test]
    fn show_prints_the_change() {
        let held = vec![HeldDivergentRecord {
            region: "eastus".to_string(),
            record: record("eastus-41", "quarantined"),
        }];
        let text = describe(&held).unwrap();
        assert!(
            text.contains("held by       eastus (quarantined, journal position 41)"),
            "{text}"
        );
        assert!(text.contains("\"type\": \"workspace_updated\""), "{text}");
        assert!(text.contains("2023-11-14T22:13:20.000Z"), "{text}");
    }

    #[test]
    fn utc_formats_unix_milliseconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }
}
