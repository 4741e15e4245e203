//! The background work of a region with a backup repository: archive the
//! journal continuously (every region, its own journal) and, where local
//! writes are accepted (the primary), create the scheduled backups.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::archive::archive_until;
use crate::create::{create_backup, CreateOptions};
use crate::error::BackupResult;
use crate::format::BackupKind;
use crate::http::BackupService;
use crate::no_progress;
use crate::prune::{prune, Retention};
use crate::repo::Repository;

pub struct Schedule {
    pub url: String,
    pub archive_interval: Duration,
    /// Time between scheduled full-or-incremental backups of every workspace.
    pub backups_every: Option<Duration>,
    /// Every `full_every`-th scheduled backup is full (at least 1).
    pub full_every: u32,
    /// Applied after every scheduled backup, when it says what to keep.
    pub retention: Option<Retention>,
    /// Whether this region accepts local writes now (the primary does).
    pub accepting_writes: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// Runs until `stop` resolves. Failures are logged and retried at the next
/// interval: archiving catches up from where the repository says it stopped.
pub async fn run(service: BackupService, schedule: Schedule, stop: impl Future<Output = ()>) {
    let repo = match Repository::open(&schedule.url) {
        Ok(repo) => repo,
        Err(error) => {
            tracing::error!(%error, "backups disabled: cannot open the backup repository");
            return;
        }
    };
    tracing::info!(repository = %schedule.url, interval = ?schedule.archive_interval, "archiving the journal");
    let mut last_backup = Instant::now();
    // Of the processes sharing the region's database, one archives.
    let duties = service.store.duties();
    let work = async {
        let mut archived = -1;
        loop {
            tokio::time::sleep(schedule.archive_interval).await;
            if !duties.held() {
                continue;
            }
            metrics::counter!("tandem_region_duty_runs_total", "duty" => "archive").increment(1);
            let head = match service.store.journal_position().await {
                Ok(position) => position.head,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the journal head for archiving");
                    continue;
                }
            };
            if head != archived {
                match archive_until(
                    service.store.as_ref(),
                    &service.storage,
                    &repo,
                    &service.region,
                    head,
                    &no_progress,
                )
                .await
                {
                    Ok(outcome) => archived = outcome.archived_to,
                    Err(error) => tracing::warn!(%error, "archiving the journal failed; retrying"),
                }
            }
            if let Some(every) = schedule.backups_every {
                if last_backup.elapsed() >= every && (schedule.accepting_writes)() {
                    last_backup = Instant::now();
                    let options = CreateOptions {
                        workspace: None,
                        full: match needs_full(&repo, &service.region, schedule.full_every).await {
                            Ok(full) => full,
                            Err(error) => {
                                tracing::warn!(%error, "cannot read the backup repository; scheduled backup skipped");
                                continue;
                            }
                        },
                    };
                    if let Err(error) = create_backup(
                        service.store.as_ref(),
                        &service.storage,
                        &service.region,
                        &repo,
                        &options,
                        &no_progress,
                    )
                    .await
                    {
                        tracing::warn!(%error, "scheduled backup failed");
                    } else if let Some(retention) = schedule.retention {
                        let pruned = prune(
                            &repo,
                            Some(&service.storage),
                            retention,
                            crate::now_millis(),
                            false,
                            &no_progress,
                        )
                        .await;
                        if let Err(error) = pruned {
                            tracing::warn!(%error, "pruning the backup repository failed; retrying after the next backup");
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
}

/// Whether the next scheduled backup of `region` is a full one: when
/// `full_every - 1` backups of the region's series followed its newest
/// full one (or there is none).
async fn needs_full(repo: &Repository, region: &str, full_every: u32) -> BackupResult<bool> {
    let manifests = repo.manifests().await?;
    let series: Vec<_> = manifests
        .iter()
        .filter(|m| m.region == region && m.workspace.is_none())
        .collect();
    let since_full = series
        .iter()
        .rev()
        .take_while(|m| m.kind != BackupKind::Full)
        .count();
    let has_full = series.iter().any(|m| m.kind == BackupKind::Full);
    Ok(!has_full || since_full + 1 >= full_every.max(1) as usize)
}
