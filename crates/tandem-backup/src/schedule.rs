//! The background work of a region with a backup repository: archive the
//! journal continuously (every region, its own journal) and, where local
//! writes are accepted (the primary), create the scheduled backups.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::archive::archive_until;
use crate::create::{create_backup, CreateOptions};
use crate::http::BackupService;
use crate::no_progress;
use crate::repo::Repository;

pub struct Schedule {
    pub url: String,
    pub archive_interval: Duration,
    /// Time between scheduled full-or-incremental backups of every workspace.
    pub backups_every: Option<Duration>,
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
    let work = async {
        let mut archived = -1;
        loop {
            tokio::time::sleep(schedule.archive_interval).await;
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
                    let options = CreateOptions::default();
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
