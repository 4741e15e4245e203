//! `tandem backup create|list|verify|prune`: backups of a region's workspaces to
//! any object-store URL, and their verification. The region does the work
//! (it holds the store and the storage); the CLI follows its progress.

use serde_json::Value;

use crate::progress::ProgressLine;
use crate::ClientArgs;

#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up the region's workspaces (or one) to a repository: full the
    /// first time, then incremental (only what changed is copied).
    Create {
        /// The backup repository: file:///dir, s3://bucket/prefix, az://container/prefix, gs://…
        #[arg(long, value_name = "URL")]
        to: String,
        /// Only this workspace (name or id).
        #[arg(long)]
        workspace: Option<String>,
        /// A full backup even if an incremental one could build on the last full one.
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a repository's backups and journal archives.
    List {
        #[arg(long, value_name = "URL")]
        from: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check every object of every backup (or one) against its recorded size
    /// and SHA-256; exits 1 when anything is missing or corrupt.
    Verify {
        #[arg(long, value_name = "URL")]
        from: String,
        /// Only this backup (and its base).
        #[arg(long)]
        backup: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete old backups, the archived journal behind them and the blobs
    /// only they needed: keeps the newest --keep backups of each series
    /// (region and workspace) and every backup younger than --ttl; the
    /// newest backup and the bases of kept incrementals always stay.
    Prune {
        #[arg(long, value_name = "URL")]
        from: String,
        /// Keep the newest N backups of each series.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
        /// Keep every backup younger than this (30d, 12h, 90m, …).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rebuild a workspace as it was at a backup, a journal position or a
    /// moment, in place or as a new workspace, in any region.
    Restore(crate::restore::RestoreArgs),
}

pub async fn run(command: BackupCommand) -> anyhow::Result<()> {
    let mut line = ProgressLine::new();
    match command {
        BackupCommand::Restore(args) => return crate::restore::restore(args).await,
        BackupCommand::Create {
            to,
            workspace,
            full,
            client,
        } => {
            let target = client.resolve()?;
            let client = &target.client;
            let manifest = client
                .create_backup(&to, workspace.as_deref(), full, |p| line.update(p))
                .await;
            line.finish();
            let manifest = manifest?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                println!("{}", describe_backup(&manifest));
            }
        }
        BackupCommand::List { from, client } => {
            let target = client.resolve()?;
            let client = &target.client;
            let listing = client.list_backups(&from).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                print_listing(&listing);
            }
        }
        BackupCommand::Verify { from, backup, client } => {
            let target = client.resolve()?;
            let client = &target.client;
            let report = client
                .verify_backups(&from, backup.as_deref(), |p| line.update(p))
                .await;
            line.finish();
            let report = report?;
            let problems = report["problems"].as_array().cloned().unwrap_or_default();
            if target.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "checked {} backup(s): {} objects, {} bytes",
                    report["backups"].as_array().map_or(0, Vec::len),
                    report["objects_checked"],
                    report["bytes_checked"]
                );
                for problem in &problems {
                    println!(
                        "PROBLEM {} {}: {}",
                        problem["backup"].as_str().unwrap_or("-"),
                        problem["object"].as_str().unwrap_or("-"),
                        problem["problem"].as_str().unwrap_or("-")
                    );
                }
            }
            if !problems.is_empty() {
                anyhow::bail!("{} problem(s) found in {from}", problems.len());
            }
        }
        BackupCommand::Prune {
            from,
            keep,
            ttl,
            dry_run,
            client,
        } => {
            if keep.is_none() && ttl.is_none() {
                return Err(crate::Refusal::Usage(
                    "say what to keep: --keep N, --ttl DURATION, or both".to_string(),
                )
                .into());
            }
            let target = client.resolve()?;
            let report = target
                .client
                .prune_backups(&from, keep, ttl.as_deref(), dry_run, |p| line.update(p))
                .await;
            line.finish();
            let report = report?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let ids = |key: &str| -> String {
                    let ids: Vec<&str> = report[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                };
                println!(
                    "{} {} backup(s), {} journal segment(s), {} blob(s): {} bytes",
                    if dry_run { "would delete" } else { "deleted" },
                    report["pruned"].as_array().map_or(0, Vec::len),
                    report["segments_deleted"],
                    report["blobs_deleted"],
                    report["bytes_freed"]
                );
                println!("pruned: {}", ids("pruned"));
                println!("kept:   {}", ids("kept"));
                if let Some(dangling) = report["dangling"].as_array().filter(|d| !d.is_empty()) {
                    println!("WARNING {} blob(s) another region reused while they were pruned; run `tandem backup verify`", dangling.len());
                }
            }
        }
    }
    Ok(())
}

fn describe_backup(manifest: &Value) -> String {
    let workspaces = manifest["workspaces"].as_array().cloned().unwrap_or_default();
    let records: i64 = workspaces
        .iter()
        .map(|w| w["records"].as_i64().unwrap_or(0))
        .sum();
    let count = |key: &str| -> usize {
        workspaces
            .iter()
            .map(|w| w[key].as_array().map_or(0, Vec::len))
            .sum()
    };
    let (artifacts, files) = (count("artifacts"), count("files"));
    format!(
        "backup {} ({}) of region {} at journal position {}: {} workspace(s), {records} records, {artifacts} artifacts, {files} files; copied {} new blob(s), {} bytes",
        manifest["id"].as_str().unwrap_or("?"),
        manifest["kind"].as_str().unwrap_or("?"),
        manifest["region"].as_str().unwrap_or("?"),
        manifest["position"],
        workspaces.len(),
        manifest["copied_blobs"],
        manifest["copied_bytes"],
    )
}

fn print_listing(listing: &Value) {
    println!(
        "repository {} (format {})",
        listing["repository"].as_str().unwrap_or("?"),
        listing["format"]
    );
    for archive in listing["archives"].as_array().into_iter().flatten() {
        println!(
            "journal archive of {}: {} segment(s), records {}..{}",
            archive["region"].as_str().unwrap_or("?"),
            archive["segments"],
            archive["first_seq"],
            archive["last_seq"]
        );
    }
    println!(
        "{:<28} {:<12} {:<10} {:>9}  WORKSPACES",
        "ID", "KIND", "REGION", "POSITION"
    );
    for backup in listing["backups"].as_array().into_iter().flatten() {
        let names: Vec<&str> = backup["workspaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["name"].as_str())
            .collect();
        println!(
            "{:<28} {:<12} {:<10} {:>9}  {}",
            backup["id"].as_str().unwrap_or("?"),
            backup["kind"].as_str().unwrap_or("?"),
            backup["region"].as_str().unwrap_or("?"),
            backup["position"],
            names.join(", ")
        );
    }
}
