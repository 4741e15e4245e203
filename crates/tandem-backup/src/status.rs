//! The backup repository as one region sees it, for the region's
//! diagnostics (`tandem doctor`): the newest backup, each active
//! workspace's newest backup, and how far this region's journal archive
//! reaches.

use std::sync::Arc;

use async_trait::async_trait;
use tandem_core::diagnostics::{BackupReport, BackupSummary, WorkspaceBackup};
use tandem_core::model::ViewType;
use tandem_replication::diagnostics::BackupReporter;
use tandem_store::MetadataStore;

use crate::error::BackupError;
use crate::format::BackupManifest;
use crate::repo::Repository;

/// Reads the repository a region archives to.
pub struct RepositoryStatus {
    pub store: Arc<dyn MetadataStore>,
    pub region: String,
    pub url: String,
    /// Time between scheduled backups, when they are scheduled.
    pub schedule: Option<std::time::Duration>,
    pub archive_interval: std::time::Duration,
}

#[async_trait]
impl BackupReporter for RepositoryStatus {
    async fn report(&self) -> BackupReport {
        let mut report = BackupReport {
            repository: self.url.clone(),
            error: None,
            schedule_seconds: self.schedule.map(|every| every.as_secs_f64()),
            archive_interval_seconds: self.archive_interval.as_secs_f64(),
            latest: None,
            workspaces: Vec::new(),
            journal_head: 0,
            archived_to: None,
        };
        if let Err(error) = self.fill(&mut report).await {
            report.error = Some(error.to_string());
        }
        report
    }
}

impl RepositoryStatus {
    async fn fill(&self, report: &mut BackupReport) -> Result<(), BackupError> {
        report.journal_head = self.store.journal_position().await?.head;
        let workspaces = self.store.list_workspaces(ViewType::ActiveOnly).await?;
        let repo = Repository::open(&self.url)?;
        // Oldest first: the last match is the newest.
        let manifests = repo.manifests().await?;
        report.latest = manifests.last().map(summary);
        report.workspaces = workspaces
            .into_iter()
            .map(|workspace| {
                let newest = manifests.iter().rev().find(|manifest| {
                    manifest
                        .workspaces
                        .iter()
                        .any(|entry| entry.workspace_id == workspace.workspace_id)
                });
                WorkspaceBackup {
                    name: workspace.name,
                    workspace_id: workspace.workspace_id,
                    last_backup_id: newest.map(|manifest| manifest.id.clone()),
                    last_backup_at: newest.map(|manifest| manifest.created_at),
                }
            })
            .collect();
        report.archived_to = repo
            .segments(&self.region)
            .await?
            .last()
            .map(|segment| segment.last_seq);
        Ok(())
    }
}

fn summary(manifest: &BackupManifest) -> BackupSummary {
    BackupSummary {
        id: manifest.id.clone(),
        kind: manifest.kind.label().to_string(),
        region: manifest.region.clone(),
        created_at: manifest.created_at,
        workspace: manifest.workspace.clone(),
    }
}
