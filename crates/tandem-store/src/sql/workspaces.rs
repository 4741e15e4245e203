//! Workspaces: what `MetadataStore`'s workspace methods do (create, get,
//! list, delete, resolve), kept apart from `ops.rs`'s other operations.

use super::ops::{invalid, not_found};
use super::{load, Backend, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::*;
use tandem_core::journal::Change;
use tandem_core::model::*;
use tandem_core::validation as rules;
use tandem_core::{ids, Error};

impl SqlStore {
    pub(super) async fn create_workspace_impl(
        &self,
        name: &str,
        description: &str,
    ) -> StoreResult<Workspace> {
        rules::validate_workspace_name(name)?;
        if let Some(existing) = self.workspace_row(name, ViewType::All).await? {
            return Err(StoreError::Domain(match existing.lifecycle_stage {
                LifecycleStage::Active => Error::already_exists(format!("Workspace '{name}' already exists")),
                LifecycleStage::Deleted => Error::already_exists(format!(
                    "Workspace name '{name}' is reserved by deleted workspace {} (deleted at {}, kept until {}); {}",
                    existing.workspace_id,
                    format_utc(existing.deletion_time.unwrap_or_default()),
                    format_utc(existing.purge_after.unwrap_or_default()),
                    super::retention::recovery_hint(&existing)
                )),
            }));
        }
        let workspace_id = ids::new_workspace_id();
        let mut write = self.begin_write(&workspace_id).await?;
        let time = write.now;
        self.record(
            &mut write,
            Change::WorkspaceCreated {
                workspace_id: workspace_id.clone(),
                name: name.to_string(),
                description: description.to_string(),
                time,
            },
        )
        .await?;
        let change = Self::experiment_created_change(
            DEFAULT_EXPERIMENT_ID.to_string(),
            DEFAULT_EXPERIMENT_NAME,
            None,
            vec![],
            time,
        );
        self.record(&mut write, change).await?;
        Self::commit(write).await?;
        tracing::info!(workspace = name, workspace_id = %workspace_id, "created workspace");
        self.get_workspace(name).await
    }

    pub(super) async fn get_workspace_impl(&self, name: &str) -> StoreResult<Workspace> {
        self.workspace_row(name, ViewType::ActiveOnly)
            .await?
            .ok_or_else(|| not_found(format!("Workspace '{name}' does not exist")))
    }

    pub(super) async fn list_workspaces_impl(&self, view: ViewType) -> StoreResult<Vec<Workspace>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM workspaces ORDER BY name",
            load::WORKSPACE_COLUMNS
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut workspaces = Vec::new();
        for row in rows {
            let workspace = load::workspace_from_row(&row)?;
            if view.includes(workspace.lifecycle_stage) {
                workspaces.push(workspace);
            }
        }
        Ok(workspaces)
    }

    pub(super) async fn delete_workspace_impl(&self, name: &str) -> StoreResult<Workspace> {
        if name == DEFAULT_WORKSPACE {
            return Err(invalid("The default workspace cannot be deleted".to_string()));
        }
        let workspace = match self.get_workspace(name).await {
            Ok(workspace) => workspace,
            Err(_) => return Err(self.explain_missing_workspace(name).await),
        };
        let ws = WorkspaceRef {
            workspace_id: workspace.workspace_id.clone(),
            name: name.to_string(),
        };
        let time = self.now();
        self.write_one(&ws, Change::WorkspaceDeleted { time }).await?;
        tracing::info!(workspace = name, workspace_id = %workspace.workspace_id, "deleted workspace");
        self.find_workspace_impl(&workspace.workspace_id).await
    }

    pub(super) async fn resolve_workspace_impl(&self, name: &str) -> StoreResult<WorkspaceRef> {
        let cached = self.backend == Backend::Sqlite;
        let (generation, hit) = self.workspace_names.get(name);
        if let (true, Some(workspace_id)) = (cached, hit) {
            return Ok(WorkspaceRef {
                workspace_id,
                name: name.to_string(),
            });
        }
        let workspace_id: Option<String> = sqlx::query_scalar(
            "SELECT workspace_id FROM workspaces WHERE name = $1 AND lifecycle_stage = 'active'",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        if let (true, Some(workspace_id)) = (cached, &workspace_id) {
            self.workspace_names.insert(generation, name, workspace_id);
        }
        match workspace_id {
            Some(workspace_id) => Ok(WorkspaceRef {
                workspace_id,
                name: name.to_string(),
            }),
            None => Err(self.explain_missing_workspace(name).await),
        }
    }
}
