//! Soft delete with retention: workspace settings, the deleted items of a
//! workspace, recover, purge (explicit and automatic) and the region's
//! garbage-collection queue. Every state change is a journaled change
//! applied by `apply` (see `retention_apply`); the queue is region-local.

use sqlx::Row;
use tandem_core::journal::{AssetClass, Change};
use tandem_core::model::*;
use tandem_core::Error;

use super::{load, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::retention::*;
use crate::{MetadataStore, WorkspaceRef, DEFAULT_EXPERIMENT_ID, DEFAULT_WORKSPACE};

fn domain(error: Error) -> StoreError {
    StoreError::Domain(error)
}

pub(crate) fn validate_retention(days: i64) -> StoreResult<()> {
    if !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&days) {
        return Err(domain(Error::invalid(format!(
            "retention_days must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS}, got {days}"
        ))));
    }
    Ok(())
}

/// How to get a deleted workspace back, for error messages.
pub(crate) fn recovery_hint(workspace: &Workspace) -> String {
    format!(
        "recover it with `tandem workspace recover {name}` (POST /api/tandem/v1/workspaces/{name}/recover) or purge it with `tandem workspace purge {name}`",
        name = workspace.name
    )
}

/// The message of every request addressed to a deleted workspace.
pub fn deleted_workspace_message(workspace: &Workspace) -> String {
    format!(
        "Workspace '{}' (id {}) was deleted at {} and is kept until {}; {}",
        workspace.name,
        workspace.workspace_id,
        format_utc(workspace.deletion_time.unwrap_or_default()),
        format_utc(workspace.purge_after.unwrap_or_default()),
        recovery_hint(workspace)
    )
}

impl SqlStore {
    async fn workspace_by_name_or_id(&self, name_or_id: &str) -> StoreResult<Option<Workspace>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM workspaces WHERE name = $1 OR workspace_id = $1 ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END",
            load::WORKSPACE_COLUMNS
        ))
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(load::workspace_from_row).transpose()
    }

    pub(crate) async fn find_workspace_impl(&self, name_or_id: &str) -> StoreResult<Workspace> {
        self.workspace_by_name_or_id(name_or_id).await?.ok_or_else(|| {
            domain(Error::not_found(format!(
                "Workspace '{name_or_id}' does not exist"
            )))
        })
    }

    /// Refuses a write to a deleted workspace with the message that says how
    /// to recover it, else a plain not-found.
    pub(crate) async fn explain_missing_workspace(&self, name: &str) -> StoreError {
        match self.workspace_by_name_or_id(name).await {
            Ok(Some(workspace)) if workspace.lifecycle_stage == LifecycleStage::Deleted => {
                domain(Error::not_found(deleted_workspace_message(&workspace)))
            }
            _ => domain(Error::not_found(format!("Workspace '{name}' does not exist"))),
        }
    }

    pub(crate) async fn create_workspace_with_impl(
        &self,
        name: &str,
        description: &str,
        settings: WorkspaceSettings,
    ) -> StoreResult<Workspace> {
        if let Some(days) = settings.retention_days {
            validate_retention(days)?;
        }
        let created = self.create_workspace(name, description).await?;
        let retention_days = settings.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        let purge_protection = settings.purge_protection.unwrap_or(false);
        if retention_days == created.retention_days && purge_protection == created.purge_protection {
            return Ok(created);
        }
        let ws = WorkspaceRef {
            workspace_id: created.workspace_id.clone(),
            name: created.name.clone(),
        };
        let time = self.now();
        self.write_one(
            &ws,
            Change::WorkspaceRetentionSet {
                retention_days,
                purge_protection,
                time,
            },
        )
        .await?;
        self.find_workspace_impl(&created.workspace_id).await
    }

    pub(crate) async fn update_workspace_impl(
        &self,
        name: &str,
        update: WorkspaceUpdate,
    ) -> StoreResult<Workspace> {
        let workspace = self.find_workspace_impl(name).await?;
        if workspace.lifecycle_stage == LifecycleStage::Deleted {
            return Err(domain(Error::invalid_state(format!(
                "{}; only recover or purge are allowed",
                deleted_workspace_message(&workspace)
            ))));
        }
        if let Some(days) = update.retention_days {
            validate_retention(days)?;
        }
        if update.purge_protection == Some(false) && workspace.purge_protection {
            return Err(domain(Error::invalid_state(format!(
                "Purge protection of workspace '{}' is on and cannot be turned off",
                workspace.name
            ))));
        }
        let ws = WorkspaceRef {
            workspace_id: workspace.workspace_id.clone(),
            name: workspace.name.clone(),
        };
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let time = write.now;
        if let Some(description) = update.description.filter(|d| *d != workspace.description) {
            self.record(&mut write, Change::WorkspaceUpdated { description, time })
                .await?;
        }
        let retention_days = update.retention_days.unwrap_or(workspace.retention_days);
        let purge_protection = update.purge_protection.unwrap_or(workspace.purge_protection);
        if retention_days != workspace.retention_days || purge_protection != workspace.purge_protection {
            self.record(
                &mut write,
                Change::WorkspaceRetentionSet {
                    retention_days,
                    purge_protection,
                    time,
                },
            )
            .await?;
        }
        if let Some(storage_quota) = update.storage_quota {
            if storage_quota.is_some_and(|bytes| bytes < 0) {
                return Err(domain(Error::invalid(
                    "storage_quota must be a number of bytes (0 or more), or null for none".to_string(),
                )));
            }
            if storage_quota != workspace.storage_quota {
                self.record(&mut write, Change::WorkspaceQuotaSet { storage_quota, time })
                    .await?;
            }
        }
        Self::commit(write).await?;
        self.find_workspace_impl(&ws.workspace_id).await
    }

    pub(crate) async fn recover_workspace_impl(&self, name_or_id: &str) -> StoreResult<Workspace> {
        let workspace = self.find_workspace_impl(name_or_id).await?;
        if workspace.lifecycle_stage != LifecycleStage::Deleted {
            return Err(domain(Error::invalid_state(format!(
                "Workspace '{}' is not deleted",
                workspace.name
            ))));
        }
        let ws = WorkspaceRef {
            workspace_id: workspace.workspace_id.clone(),
            name: workspace.name.clone(),
        };
        let time = self.now();
        self.write_one(&ws, Change::WorkspaceRestored { time }).await?;
        tracing::info!(workspace = %ws.name, workspace_id = %ws.workspace_id, "recovered workspace");
        self.find_workspace_impl(&ws.workspace_id).await
    }

    /// Refuses a purge before `purge_after` when the workspace is protected.
    fn check_protection(&self, workspace: &Workspace, what: &str, purge_after: Millis) -> StoreResult<()> {
        if workspace.purge_protection && self.now() < purge_after {
            return Err(domain(Error::invalid_state(format!(
                "{what} cannot be purged before {}: workspace '{}' has purge protection and a retention of {} days",
                format_utc(purge_after),
                workspace.name,
                workspace.retention_days
            ))));
        }
        Ok(())
    }

    pub(crate) async fn purge_workspace_impl(
        &self,
        name_or_id: &str,
        keep_artifacts: bool,
    ) -> StoreResult<Workspace> {
        let workspace = self.find_workspace_impl(name_or_id).await?;
        if workspace.lifecycle_stage != LifecycleStage::Deleted {
            return Err(domain(Error::invalid_state(format!(
                "Workspace '{}' is not deleted; delete it before purging it",
                workspace.name
            ))));
        }
        self.check_protection(
            &workspace,
            &format!("Workspace '{}'", workspace.name),
            workspace.purge_after.unwrap_or_default(),
        )?;
        self.purge_workspace_now(&workspace, keep_artifacts).await?;
        Ok(workspace)
    }

    async fn purge_workspace_now(&self, workspace: &Workspace, keep_artifacts: bool) -> StoreResult<()> {
        let ws = WorkspaceRef {
            workspace_id: workspace.workspace_id.clone(),
            name: workspace.name.clone(),
        };
        let time = self.now();
        self.write_one(&ws, Change::WorkspacePurged { keep_artifacts, time })
            .await?;
        tracing::info!(workspace = %ws.name, workspace_id = %ws.workspace_id, keep_artifacts, "purged workspace");
        Ok(())
    }

    async fn workspace_of(&self, ws: &WorkspaceRef) -> StoreResult<Workspace> {
        self.find_workspace_impl(&ws.workspace_id).await
    }

    pub(crate) async fn list_deleted_impl(&self, ws: &WorkspaceRef) -> StoreResult<Vec<DeletedItem>> {
        let workspace = self.workspace_of(ws).await?;
        let days = workspace.retention_days;
        // Runs and logged models of a deleted experiment go and come back with it.
        let queries: [(DeletedKind, &str); 5] = [
            (
                DeletedKind::Experiment,
                "SELECT experiment_id AS id, name, COALESCE(deletion_time, last_update_time) AS deleted FROM experiments \
                 WHERE workspace_id = $1 AND lifecycle_stage = 'deleted'",
            ),
            (
                DeletedKind::Run,
                "SELECT r.run_id AS id, r.run_name AS name, COALESCE(r.deleted_time, 0) AS deleted FROM runs r \
                 WHERE r.workspace_id = $1 AND r.lifecycle_stage = 'deleted' AND EXISTS (SELECT 1 FROM experiments e \
                 WHERE e.workspace_id = r.workspace_id AND e.experiment_id = r.experiment_id AND e.lifecycle_stage = 'active')",
            ),
            (
                DeletedKind::LoggedModel,
                "SELECT m.model_id AS id, m.name, COALESCE(m.deletion_time, m.last_updated_time) AS deleted FROM logged_models m \
                 WHERE m.workspace_id = $1 AND m.lifecycle_stage = 'deleted' AND EXISTS (SELECT 1 FROM experiments e \
                 WHERE e.workspace_id = m.workspace_id AND e.experiment_id = m.experiment_id AND e.lifecycle_stage = 'active')",
            ),
            (
                DeletedKind::RegisteredModel,
                "SELECT name AS id, name, deletion_time AS deleted FROM registered_models \
                 WHERE workspace_id = $1 AND deletion_time IS NOT NULL",
            ),
            (
                DeletedKind::ModelVersion,
                "SELECT v.name, v.version, v.deletion_time AS deleted FROM model_versions v \
                 WHERE v.workspace_id = $1 AND v.deletion_time IS NOT NULL AND EXISTS (SELECT 1 FROM registered_models m \
                 WHERE m.workspace_id = v.workspace_id AND m.name = v.name AND m.deletion_time IS NULL)",
            ),
        ];
        let mut items = Vec::new();
        for (kind, sql) in queries {
            for row in sqlx::query(sql)
                .bind(&ws.workspace_id)
                .fetch_all(&self.pool)
                .await?
            {
                let deleted: i64 = row.try_get("deleted")?;
                let (id, name) = if kind == DeletedKind::ModelVersion {
                    let name: String = row.try_get("name")?;
                    let version: i64 = row.try_get("version")?;
                    (format!("{name}/{version}"), name)
                } else if kind == DeletedKind::RegisteredModel {
                    let key: String = row.try_get("id")?;
                    let name = kept_name(&key).to_string();
                    (key, name)
                } else {
                    (row.try_get("id")?, row.try_get("name")?)
                };
                items.push(DeletedItem {
                    kind,
                    id,
                    name,
                    deletion_time: deleted,
                    purge_after: purge_after(deleted, days),
                });
            }
        }
        items.sort_by(|a, b| {
            (a.deletion_time, a.kind.as_str(), &a.id).cmp(&(b.deletion_time, b.kind.as_str(), &b.id))
        });
        Ok(items)
    }

    async fn deleted_item(&self, ws: &WorkspaceRef, kind: DeletedKind, id: &str) -> StoreResult<DeletedItem> {
        let items = self.list_deleted_impl(ws).await?;
        if let Some(item) = items.iter().find(|item| item.kind == kind && item.id == id) {
            return Ok(item.clone());
        }
        // A deleted registered model is also found by its name, when only
        // one deleted model has it.
        if kind == DeletedKind::RegisteredModel {
            let named: Vec<&DeletedItem> = items
                .iter()
                .filter(|item| item.kind == kind && item.name == id)
                .collect();
            match named.as_slice() {
                [item] => return Ok((*item).clone()),
                [] => {}
                several => {
                    return Err(domain(Error::invalid(format!(
                        "{} deleted registered models are named '{id}' in workspace '{}': give one of their ids ({})",
                        several.len(),
                        ws.name,
                        several.iter().map(|item| item.id.as_str()).collect::<Vec<_>>().join(", ")
                    ))))
                }
            }
        }
        Err(domain(Error::not_found(format!(
            "No deleted {} '{id}' in workspace '{}' (it is active, belongs to a deleted parent, or does not exist)",
            kind.as_str(),
            ws.name
        ))))
    }

    pub(crate) async fn recover_deleted_impl(
        &self,
        ws: &WorkspaceRef,
        kind: DeletedKind,
        id: &str,
        new_name: Option<&str>,
    ) -> StoreResult<()> {
        let item = self.deleted_item(ws, kind, id).await?;
        if new_name.is_some() && kind != DeletedKind::RegisteredModel {
            return Err(domain(Error::invalid(format!(
                "only a registered model can be recovered under a new name, not a {}",
                kind.as_str()
            ))));
        }
        let time = self.now();
        let change = match kind {
            DeletedKind::Experiment => Change::ExperimentRestored {
                experiment_id: item.id,
                time,
            },
            DeletedKind::Run => Change::RunRestored { run_id: item.id },
            DeletedKind::LoggedModel => Change::LoggedModelRestored {
                model_id: item.id,
                time,
            },
            DeletedKind::RegisteredModel => {
                return self.recover_registered_model(ws, &item, new_name).await;
            }
            DeletedKind::ModelVersion => {
                let (name, version) = split_version_id(&item.id)?;
                Change::ModelVersionRestored { name, version, time }
            }
        };
        self.write_one(ws, change).await
    }

    /// Brings a deleted registered model back under its name, or under
    /// `new_name`: refused while an active model holds that name.
    async fn recover_registered_model(
        &self,
        ws: &WorkspaceRef,
        item: &DeletedItem,
        new_name: Option<&str>,
    ) -> StoreResult<()> {
        let target = new_name.unwrap_or(&item.name);
        if let Some(new_name) = new_name {
            if new_name.trim().is_empty() {
                return Err(domain(Error::invalid(
                    "the new name of a recovered registered model cannot be empty".to_string(),
                )));
            }
            tandem_core::validation::validate_model_name(new_name).map_err(domain)?;
            if new_name != item.name && self.multi_writer(AssetClass::Registry) {
                return Err(domain(Error::invalid(format!(
                    "cannot recover registered model '{}' as '{new_name}': the registry is hot-hot in this deployment, and renames cannot be merged with concurrent writes in other regions; recover it under its own name",
                    item.name
                ))));
            }
        }
        if self.get_registered_model(ws, target).await.is_ok() {
            let hint = format!(
                "`tandem deleted recover registered_model {id} --as NEW_NAME --workspace {ws_name}` \
                 (POST /api/tandem/v1/workspaces/{ws_name}/deleted/registered_model/{id}/recover with {{\"name\": \"NEW_NAME\"}})",
                id = item.id,
                ws_name = ws.name
            );
            return Err(domain(Error::already_exists(if new_name.is_some() {
                format!(
                    "Registered Model (name={target}) already exists: give deleted registered model '{}' another new name: {hint}",
                    item.id
                )
            } else {
                format!(
                    "Registered Model (name={target}) already exists: the name was taken again after registered model '{}' was deleted; give it a new name to recover it: {hint}",
                    item.id
                )
            })));
        }
        // Another model deleted in place (format <= 6) holding the name
        // is set aside first.
        let set_aside = if target == item.id {
            None
        } else {
            self.set_aside_deleted_model(ws, target).await?
        };
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let time = write.now;
        if let Some(change) = set_aside {
            self.record(&mut write, change).await?;
        }
        self.record(
            &mut write,
            Change::RegisteredModelRestored {
                name: target.to_string(),
                time,
                kept_as: (item.id != target).then(|| item.id.clone()),
            },
        )
        .await?;
        Self::commit(write).await
    }

    pub(crate) async fn purge_deleted_impl(
        &self,
        ws: &WorkspaceRef,
        kind: DeletedKind,
        id: &str,
        keep_artifacts: bool,
    ) -> StoreResult<()> {
        if kind == DeletedKind::Experiment && id == DEFAULT_EXPERIMENT_ID {
            return Err(domain(Error::invalid(
                "The default experiment cannot be purged; restore it instead".to_string(),
            )));
        }
        let item = self.deleted_item(ws, kind, id).await?;
        let workspace = self.workspace_of(ws).await?;
        self.check_protection(
            &workspace,
            &format!("Deleted {} '{}'", kind.as_str(), item.id),
            item.purge_after,
        )?;
        self.write_one(ws, purge_change(&item, keep_artifacts, self.now())?)
            .await
    }

    pub(crate) async fn purge_expired_impl(&self) -> StoreResult<PurgeReport> {
        let mut report = PurgeReport::default();
        let policy = self.policy.read().expect("policy lock poisoned").clone();
        let now = self.now();
        for workspace in self.list_workspaces(ViewType::All).await? {
            if workspace.lifecycle_stage == LifecycleStage::Deleted {
                if workspace.name == DEFAULT_WORKSPACE
                    || policy.check_write(None).is_err()
                    || workspace.purge_after.is_none_or(|after| now < after)
                {
                    continue;
                }
                self.purge_workspace_now(&workspace, false).await?;
                report.workspaces += 1;
                continue;
            }
            let ws = WorkspaceRef {
                workspace_id: workspace.workspace_id.clone(),
                name: workspace.name.clone(),
            };
            for item in self.list_deleted_impl(&ws).await? {
                let class = match item.kind {
                    DeletedKind::RegisteredModel | DeletedKind::ModelVersion => AssetClass::Registry,
                    _ => AssetClass::Tracking,
                };
                if now < item.purge_after
                    || policy.check_write(Some(class)).is_err()
                    || (item.kind == DeletedKind::Experiment && item.id == DEFAULT_EXPERIMENT_ID)
                {
                    continue;
                }
                // An item purged with its parent earlier in this pass is gone.
                match self.write_one(&ws, purge_change(&item, false, now)?).await {
                    Ok(()) => report.items += 1,
                    Err(error) => {
                        tracing::warn!(kind = item.kind.as_str(), id = %item.id, %error, "automatic purge failed")
                    }
                }
            }
        }
        if report != PurgeReport::default() {
            tracing::info!(
                workspaces = report.workspaces,
                items = report.items,
                "purged items past their retention"
            );
        }
        Ok(report)
    }

    pub(crate) async fn gc_entries(&self, due_only: bool, limit: i64) -> StoreResult<Vec<GcEntry>> {
        let rows = sqlx::query(
            "SELECT prefix, workspace_id, attempts FROM gc_queue WHERE ($1 = 0 OR next_attempt_at <= $2) ORDER BY enqueued_at, prefix LIMIT $3",
        )
        .bind(i64::from(due_only))
        .bind(self.now())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GcEntry {
                    prefix: row.try_get("prefix")?,
                    workspace_id: row.try_get("workspace_id")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    pub(crate) async fn gc_done_impl(&self, prefix: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM gc_queue WHERE prefix = $1")
            .bind(prefix)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn gc_failed_impl(
        &self,
        prefix: &str,
        error: &str,
        retry_after_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE gc_queue SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE prefix = $3",
        )
        .bind(self.now().saturating_add(retry_after_ms))
        .bind(error)
        .bind(prefix)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn split_version_id(id: &str) -> StoreResult<(String, String)> {
    id.rsplit_once('/')
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .ok_or_else(|| {
            domain(Error::invalid(format!(
                "a model version is named 'model name/version', got '{id}'"
            )))
        })
}

fn purge_change(item: &DeletedItem, keep_artifacts: bool, time: Millis) -> StoreResult<Change> {
    Ok(match item.kind {
        DeletedKind::Experiment => Change::ExperimentPurged {
            experiment_id: item.id.clone(),
            keep_artifacts,
            time,
        },
        DeletedKind::Run => Change::RunPurged {
            run_id: item.id.clone(),
            keep_artifacts,
            time,
        },
        DeletedKind::LoggedModel => Change::LoggedModelPurged {
            model_id: item.id.clone(),
            keep_artifacts,
            time,
        },
        // Its id is the key it is kept under.
        DeletedKind::RegisteredModel => Change::RegisteredModelPurged {
            name: item.id.clone(),
            time,
        },
        DeletedKind::ModelVersion => {
            let (name, version) = split_version_id(&item.id)?;
            Change::ModelVersionPurged { name, version, time }
        }
    })
}

/// The key a deleted registered model is kept under: its name, ':' (which
/// no model name holds) and random hex, unique among the deleted models of
/// that name in every region. Its id in the deleted list.
pub(crate) fn kept_key(name: &str) -> String {
    let hex = tandem_core::ids::new_run_id();
    format!("{name}:{}", &hex[..12])
}

/// The name of a deleted registered model kept under `key` (a model
/// deleted in place before journal format 7 is kept under its name).
pub(crate) fn kept_name(key: &str) -> &str {
    key.split_once(':').map_or(key, |(name, _)| name)
}

impl SqlStore {
    /// The key a registered model deleted now is kept under: None (in
    /// place, its name reserved until it is recovered or purged) while the
    /// registry is hot-hot, where moving it could not be merged with
    /// concurrent writes to it in other regions, as a rename could not.
    pub(crate) fn kept_as_for_delete(&self, name: &str) -> Option<String> {
        (!self.multi_writer(AssetClass::Registry)).then(|| kept_key(name))
    }

    /// A registered model deleted in place (journal format <= 6, or while
    /// the registry was hot-hot) holds its name: the change that sets it
    /// aside, keeping its deletion time, so the name can be taken as MLflow
    /// allows. Refused while the registry is hot-hot.
    pub(crate) async fn set_aside_deleted_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> StoreResult<Option<Change>> {
        let deleted: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT deletion_time FROM registered_models WHERE workspace_id = $1 AND name = $2",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(Some(deletion_time)) = deleted else {
            return Ok(None);
        };
        if self.multi_writer(AssetClass::Registry) {
            let workspace = self.workspace_of(ws).await?;
            return Err(domain(Error::already_exists(format!(
                "Registered Model (name={name}) already exists: the name is held by a deleted registered model (deleted at {}, kept until {}) \
                 while the registry is hot-hot in this deployment; recover it with `tandem deleted recover registered_model {name} --workspace {ws_name}` \
                 or purge it with `tandem deleted purge registered_model {name} --workspace {ws_name}`",
                format_utc(deletion_time),
                format_utc(purge_after(deletion_time, workspace.retention_days)),
                ws_name = ws.name
            ))));
        }
        Ok(Some(Change::RegisteredModelDeleted {
            name: name.to_string(),
            time: deletion_time,
            kept_as: Some(kept_key(name)),
        }))
    }
}
