//! The [`MetadataStore`] operations: validate against current state, build
//! the change, journal and apply it (see `mod.rs`), or read.

use async_trait::async_trait;
use sqlx::Row;
use tandem_core::journal::{AssetClass, Change, JournalRecord};
use tandem_core::model::*;
use tandem_core::search::{self, Page};
use tandem_core::validation as rules;
use tandem_core::{ids, names, Error};

use super::{load, Backend, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::*;

const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";
use tandem_core::model::RUN_NAME_TAG;
use tandem_core::python_json::{self, Separators};

fn not_found(message: String) -> StoreError {
    StoreError::Domain(Error::not_found(message))
}

fn invalid(message: String) -> StoreError {
    StoreError::Domain(Error::invalid(message))
}

/// Joins a path to a URI the way MLflow's `append_to_uri_path` does.
fn append_to_uri(base: &str, parts: &[&str]) -> String {
    let mut uri = base.trim_end_matches('/').to_string();
    for part in parts {
        uri.push('/');
        uri.push_str(part.trim_matches('/'));
    }
    uri
}

/// The storage path (relative to the workspace's artifact root) behind an
/// `mlflow-artifacts:` URI, or None for URIs the proxy does not serve.
pub fn proxied_artifact_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    // `mlflow-artifacts://host:port/path` carries an authority; drop it.
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map(|(_, path)| path).unwrap_or(""),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

/// Refuses `path` unless it lies inside the artifact root of a run or an
/// active logged model of `ws` (an active run if `for_write`), read on `conn`.
async fn artifact_owner_check(
    conn: &mut sqlx::AnyConnection,
    ws: &WorkspaceRef,
    path: &str,
    for_write: bool,
) -> StoreResult<()> {
    let path = path.trim_matches('/');
    for segment in path.split('/') {
        let owner_root = if segment.len() == 32 && segment.chars().all(|c| c.is_ascii_hexdigit()) {
            match load::run_info(&mut *conn, segment).await? {
                Some((workspace_id, info)) if workspace_id == ws.workspace_id => {
                    if for_write && info.lifecycle_stage != LifecycleStage::Active {
                        return Err(invalid(format!(
                            "The run {segment} must be in the 'active' state. Current state is deleted."
                        )));
                    }
                    proxied_artifact_path(&info.artifact_uri)
                }
                _ => None,
            }
        } else if segment.starts_with("m-") {
            let uri: Option<String> = sqlx::query_scalar(
                "SELECT artifact_uri FROM logged_models WHERE model_id = $1 AND workspace_id = $2 AND lifecycle_stage = 'active'",
            )
            .bind(segment)
            .bind(&ws.workspace_id)
            .fetch_optional(&mut *conn)
            .await?;
            uri.as_deref().and_then(proxied_artifact_path)
        } else {
            None
        };
        if let Some(root) = owner_root {
            if path == root || path.starts_with(&format!("{root}/")) {
                return Ok(());
            }
        }
    }
    Err(StoreError::Domain(Error::new(
        tandem_core::ErrorKind::PermissionDenied,
        format!(
            "artifact path '{path}' is not inside the artifact root of a run or logged model of workspace '{}'",
            ws.name
        ),
    )))
}

/// Refuses changes to a run that is not active, in MLflow's words.
fn ensure_active(info: &RunInfo) -> StoreResult<()> {
    if info.lifecycle_stage != LifecycleStage::Active {
        return Err(invalid(format!(
            "The run {} must be in the 'active' state. Current state is {}.",
            info.run_id,
            info.lifecycle_stage.as_str()
        )));
    }
    Ok(())
}

impl SqlStore {
    async fn ensure_experiment_active(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
    ) -> StoreResult<Experiment> {
        let experiment = self.get_experiment(ws, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(invalid(format!(
                "The experiment {experiment_id} must be in the 'active' state. Current state is {}.",
                experiment.lifecycle_stage.as_str()
            )));
        }
        Ok(experiment)
    }

    pub(crate) async fn run_info_in(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<RunInfo> {
        match load::run_info(&self.pool, run_id).await? {
            Some((workspace_id, info)) if workspace_id == ws.workspace_id => Ok(info),
            _ => Err(not_found(format!("Run with id={run_id} not found"))),
        }
    }

    async fn active_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<RunInfo> {
        let info = self.run_info_in(ws, run_id).await?;
        ensure_active(&info)?;
        Ok(info)
    }

    async fn logged_model_in(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<LoggedModel> {
        let models = load::logged_models_where(
            &self.pool,
            &ws.workspace_id,
            "AND m.model_id = $2",
            &[model_id.to_string()],
        )
        .await?;
        match models.into_iter().next() {
            Some(model) if model.info.lifecycle_stage == LifecycleStage::Active => Ok(model),
            _ => Err(not_found(format!("Logged model with ID '{model_id}' not found."))),
        }
    }

    async fn registered_model_exists(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<()> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM registered_models WHERE workspace_id = $1 AND name = $2 AND deletion_time IS NULL",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(not_found(format!("Registered Model with name={name} not found"))),
        }
    }

    async fn model_version_in(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<ModelVersion> {
        let number = rules::parse_model_version(version)?;
        let versions = load::model_versions_where(
            &self.pool,
            &ws.workspace_id,
            "AND v.name = $2 AND v.version = CAST($3 AS BIGINT)",
            &[name.to_string(), number.to_string()],
        )
        .await?;
        versions
            .into_iter()
            .next()
            .ok_or_else(|| not_found(format!("Model Version (name={name}, version={number}) not found")))
    }

    async fn workspace_row(&self, name: &str, view: ViewType) -> StoreResult<Option<Workspace>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM workspaces WHERE name = $1",
            load::WORKSPACE_COLUMNS
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let workspace = load::workspace_from_row(&row)?;
            if view.includes(workspace.lifecycle_stage) {
                return Ok(Some(workspace));
            }
        }
        Ok(None)
    }

    /// Creates the `default` workspace on first start, through the journal
    /// like any other.
    pub(super) async fn ensure_default_workspace(&self) -> StoreResult<()> {
        if self
            .workspace_row(DEFAULT_WORKSPACE, ViewType::All)
            .await?
            .is_none()
        {
            self.create_workspace(
                DEFAULT_WORKSPACE,
                "The default workspace, also served at the API root",
            )
            .await?;
        }
        Ok(())
    }

    fn default_artifact_location(experiment_id: &str) -> String {
        format!("mlflow-artifacts:/{experiment_id}")
    }

    /// The change that creates an experiment, its artifact location defaulted
    /// to the artifact proxy's `mlflow-artifacts:/<id>`.
    fn experiment_created_change(
        experiment_id: String,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
        time: Millis,
    ) -> Change {
        let artifact_location = match artifact_location {
            Some(location) if !location.is_empty() => location.to_string(),
            _ => Self::default_artifact_location(&experiment_id),
        };
        Change::ExperimentCreated {
            experiment_id,
            name: name.to_string(),
            artifact_location,
            tags,
            time,
        }
    }
}

#[async_trait]
impl MetadataStore for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn journal_position(&self) -> StoreResult<JournalPosition> {
        let row = sqlx::query("SELECT region, epoch, journal_head FROM region_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(JournalPosition {
            region: row.try_get("region")?,
            epoch: row.try_get("epoch")?,
            head: row.try_get("journal_head")?,
        })
    }

    async fn journal_after(
        &self,
        after: i64,
        workspace_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<JournalRecord>> {
        let rows = match workspace_id {
            Some(workspace_id) => {
                sqlx::query(
                    "SELECT seq, workspace_id, hlc, origin_region, origin_seq, epoch, format, recorded_at, payload, seen, voided, principal FROM journal \
                     WHERE seq > $1 AND workspace_id = $2 ORDER BY seq LIMIT $3",
                )
                .bind(after)
                .bind(workspace_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT seq, workspace_id, hlc, origin_region, origin_seq, epoch, format, recorded_at, payload, seen, voided, principal FROM journal \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(super::decode_journal_row).collect()
    }

    async fn journal_entries_after(&self, after: i64, limit: i64) -> StoreResult<Vec<(JournalRecord, bool)>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2",
            super::JOURNAL_COLUMNS
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let voided: Option<i64> = row.try_get("voided")?;
                Ok((super::decode_journal_row(row)?, voided.is_some()))
            })
            .collect()
    }

    async fn apply_archived(&self, record: &JournalRecord) -> StoreResult<bool> {
        let (_guard, mut write) = self.begin_write(&record.workspace_id).await?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM journal WHERE origin_region = $1 AND origin_seq = $2")
                .bind(&record.origin_region)
                .bind(record.origin_seq)
                .fetch_optional(&mut *write.tx)
                .await?;
        if known.is_some() {
            return Ok(false);
        }
        self.append_foreign(&mut write, record).await?;
        Self::commit(write).await?;
        Ok(true)
    }

    async fn apply_record(&self, record: &JournalRecord) -> StoreResult<bool> {
        let (_guard, mut write) = self.begin_write(&record.workspace_id).await?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(origin_seq) FROM journal WHERE origin_region = $1")
                .bind(&record.origin_region)
                .fetch_one(&mut *write.tx)
                .await?;
        if applied.is_some_and(|applied| applied >= record.origin_seq) {
            return Ok(false);
        }
        self.append_foreign(&mut write, record).await?;
        Self::commit(write).await?;
        Ok(true)
    }

    async fn apply_replicated(
        &self,
        source_region: &str,
        record: &JournalRecord,
        apply: bool,
    ) -> StoreResult<bool> {
        self.apply_replicated_record(source_region, record, apply).await
    }

    async fn replication_position(&self, source_region: &str) -> StoreResult<i64> {
        self.source_position(source_region).await
    }

    fn subscribe_head(&self) -> tokio::sync::watch::Receiver<i64> {
        self.head_receiver()
    }

    async fn unreplicated_since(&self, after: i64) -> StoreResult<Vec<UnreplicatedClass>> {
        self.unreplicated_after(after).await
    }

    async fn knows_change(&self, origin_region: &str, origin_seq: i64) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM journal WHERE origin_region = $1 AND origin_seq = $2")
                .bind(origin_region)
                .bind(origin_seq)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn list_conflicts(
        &self,
        workspace_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<tandem_core::merge::Conflict>> {
        super::merge::list_conflicts(&self.pool, workspace_id, limit).await
    }

    fn set_policy(&self, policy: std::sync::Arc<dyn RegionPolicy>) {
        self.install_policy(policy)
    }

    async fn begin_epoch(&self, epoch: i64) -> StoreResult<std::collections::BTreeMap<String, i64>> {
        self.start_epoch(epoch).await
    }

    async fn history(&self) -> StoreResult<std::collections::BTreeMap<String, i64>> {
        let mut tx = self.pool.begin().await?;
        let history = super::epochs::fork_point(&mut tx).await?;
        tx.rollback().await?;
        Ok(history)
    }

    async fn epochs(&self) -> StoreResult<Vec<EpochInfo>> {
        super::epochs::list_epochs(&self.pool).await
    }

    async fn records_beyond_fork(
        &self,
        epoch: i64,
        fork: &std::collections::BTreeMap<String, i64>,
    ) -> StoreResult<i64> {
        super::epochs::records_beyond_fork(&self.pool, epoch, fork).await
    }

    async fn drain_writes(&self) {
        SqlStore::drain_writes(self).await
    }

    async fn list_divergence(&self) -> StoreResult<Vec<DivergentRecord>> {
        super::epochs::list_divergence(&self.pool).await
    }

    async fn get_divergence(&self, id: &str) -> StoreResult<DivergentRecord> {
        super::epochs::get_divergence(&self.pool, id)
            .await?
            .ok_or_else(|| {
                StoreError::Domain(Error::not_found(format!(
                    "no quarantined change '{id}' in region '{}'",
                    self.region
                )))
            })
    }

    async fn reapply_divergent(&self, record: &JournalRecord) -> StoreResult<i64> {
        self.reapply(record).await
    }

    async fn mark_divergence_applied(&self, id: &str, applied_seq: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE divergence SET status = 'applied', applied_seq = $1, applied_at = $2 WHERE divergence_id = $3",
        )
        .bind(applied_seq)
        .bind(self.now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_divergence_artifact_state(&self, id: &str, state: &str) -> StoreResult<()> {
        sqlx::query("UPDATE divergence SET artifact_state = $1 WHERE divergence_id = $2")
            .bind(state)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn dump_state(&self) -> StoreResult<StateDump> {
        super::dump::dump(&self.pool).await
    }

    async fn fingerprints(
        &self,
        workspace_id: Option<&str>,
    ) -> StoreResult<Vec<crate::fingerprint::WorkspaceFingerprint>> {
        super::fingerprint::fingerprints(&self.pool, self.backend, workspace_id).await
    }

    async fn fingerprint_rows(
        &self,
        workspace_id: &str,
        table: &str,
    ) -> StoreResult<crate::fingerprint::TableRows> {
        super::fingerprint::table_rows(&self.pool, self.backend, workspace_id, table).await
    }

    async fn create_workspace(&self, name: &str, description: &str) -> StoreResult<Workspace> {
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
        let (_guard, mut write) = self.begin_write(&workspace_id).await?;
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

    async fn get_workspace(&self, name: &str) -> StoreResult<Workspace> {
        self.workspace_row(name, ViewType::ActiveOnly)
            .await?
            .ok_or_else(|| not_found(format!("Workspace '{name}' does not exist")))
    }

    async fn list_workspaces(&self, view: ViewType) -> StoreResult<Vec<Workspace>> {
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

    async fn delete_workspace(&self, name: &str) -> StoreResult<Workspace> {
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

    async fn resolve_workspace(&self, name: &str) -> StoreResult<WorkspaceRef> {
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

    async fn create_experiment(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
    ) -> StoreResult<String> {
        rules::validate_experiment_name(name)?;
        if let Some(location) = artifact_location {
            rules::validate_artifact_location(location)?;
        }
        for tag in &tags {
            rules::validate_experiment_tag(tag)?;
        }
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        // An experiment whose runs would store their artifacts inside
        // another run's (or logged model's) artifacts would lose them when
        // that owner is purged and its root collected.
        if let Some(path) = artifact_location.and_then(proxied_artifact_path) {
            if !path.is_empty() {
                let mut conn = self.pool.acquire().await?;
                if artifact_owner_check(&mut conn, ws, &path, false).await.is_ok() {
                    return Err(invalid(format!(
                        "Artifact location '{}' lies inside the artifacts of an existing run or logged model; \
                         an experiment's artifacts must not live inside another owner's, whose purge would remove them. \
                         Choose a location outside every run's and logged model's artifacts (or leave it empty)",
                        artifact_location.unwrap_or_default()
                    )));
                }
            }
        }
        if let Some(existing) = load::experiment_by_name(&self.pool, &ws.workspace_id, name).await? {
            let state = if existing.lifecycle_stage == LifecycleStage::Deleted {
                " (deleted)"
            } else {
                ""
            };
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Experiment(name={name}) already exists{state}. Error: experiment {} holds this name",
                existing.experiment_id
            ))));
        }
        let next: i64 =
            sqlx::query_scalar("SELECT next_experiment_id FROM workspaces WHERE workspace_id = $1")
                .bind(&ws.workspace_id)
                .fetch_one(&self.pool)
                .await?;
        let experiment_id = self.allocate_id(AssetClass::Tracking, next.max(1)).to_string();
        let change =
            Self::experiment_created_change(experiment_id.clone(), name, artifact_location, tags, write.now);
        self.record(&mut write, change).await?;
        Self::commit(write).await?;
        Ok(experiment_id)
    }

    async fn get_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<Experiment> {
        load::experiment(&self.pool, &ws.workspace_id, experiment_id)
            .await?
            .ok_or_else(|| not_found(format!("No Experiment with id={experiment_id} exists")))
    }

    async fn get_experiment_by_name(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<Experiment> {
        load::experiment_by_name(&self.pool, &ws.workspace_id, name)
            .await?
            .ok_or_else(|| not_found(format!("Could not find experiment with name '{name}'")))
    }

    async fn search_experiments(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<Experiment>> {
        let condition = match query.view_type {
            ViewType::ActiveOnly => "AND lifecycle_stage = 'active'",
            ViewType::DeletedOnly => "AND lifecycle_stage = 'deleted'",
            ViewType::All => "",
        };
        let experiments = load::experiments_where(&self.pool, &ws.workspace_id, condition, None).await?;
        Ok(search::search_experiments(
            experiments,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?)
    }

    async fn rename_experiment(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        new_name: &str,
    ) -> StoreResult<()> {
        rules::validate_experiment_name(new_name)?;
        let experiment = self.get_experiment(ws, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(StoreError::Domain(Error::invalid(format!(
                "Cannot rename a non-active experiment {experiment_id}."
            ))));
        }
        if experiment.name == new_name {
            return Ok(());
        }
        if load::experiment_by_name(&self.pool, &ws.workspace_id, new_name)
            .await?
            .is_some()
        {
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Experiment(name={new_name}) already exists."
            ))));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::ExperimentRenamed {
                experiment_id: experiment_id.to_string(),
                name: new_name.to_string(),
                time,
            },
        )
        .await
    }

    async fn delete_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<()> {
        if experiment_id == DEFAULT_EXPERIMENT_ID {
            return Err(invalid(format!(
                "Cannot delete the default experiment '{DEFAULT_EXPERIMENT_ID}'. This is an internally reserved experiment."
            )));
        }
        self.get_experiment(ws, experiment_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::ExperimentDeleted {
                experiment_id: experiment_id.to_string(),
                time,
            },
        )
        .await
    }

    async fn restore_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<()> {
        let experiment = self.get_experiment(ws, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Deleted {
            return Err(invalid(format!(
                "Cannot restore an active experiment {experiment_id}. Current state is active."
            )));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::ExperimentRestored {
                experiment_id: experiment_id.to_string(),
                time,
            },
        )
        .await
    }

    async fn set_experiment_tag(&self, ws: &WorkspaceRef, experiment_id: &str, tag: Tag) -> StoreResult<()> {
        rules::validate_experiment_tag(&tag)?;
        self.ensure_experiment_active(ws, experiment_id).await?;
        self.write_one(
            ws,
            Change::ExperimentTagSet {
                experiment_id: experiment_id.to_string(),
                tag,
            },
        )
        .await
    }

    async fn delete_experiment_tag(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        key: &str,
    ) -> StoreResult<()> {
        let experiment = self.ensure_experiment_active(ws, experiment_id).await?;
        if !experiment.tags.iter().any(|tag| tag.key == key) {
            return Err(not_found(format!(
                "No tag with name: {key} in experiment with id {experiment_id}"
            )));
        }
        self.write_one(
            ws,
            Change::ExperimentTagDeleted {
                experiment_id: experiment_id.to_string(),
                key: key.to_string(),
            },
        )
        .await
    }

    async fn create_run(&self, ws: &WorkspaceRef, request: CreateRun) -> StoreResult<Run> {
        for (index, tag) in request.tags.iter().enumerate() {
            rules::validate_run_tag(tag, &format!("tags[{index}]"))?;
        }
        let experiment = self.ensure_experiment_active(ws, &request.experiment_id).await?;
        let tag_name = request
            .tags
            .iter()
            .find(|tag| tag.key == RUN_NAME_TAG)
            .map(|tag| tag.value.clone());
        let requested_name = request.run_name.filter(|name| !name.is_empty());
        if let (Some(name), Some(tag_name)) = (&requested_name, &tag_name) {
            if name != tag_name {
                return Err(invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{name}', mlflow.runName='{tag_name}')."
                )));
            }
        }
        let run_name = requested_name
            .or(tag_name.clone())
            .unwrap_or_else(names::random_run_name);
        let mut tags = request.tags;
        if tag_name.is_none() {
            tags.push(Tag::new(RUN_NAME_TAG, run_name.clone()));
        }
        let run_id = ids::new_run_id();
        let artifact_uri = append_to_uri(&experiment.artifact_location, &[&run_id, "artifacts"]);
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        let start_time = Some(request.start_time.unwrap_or(write.now));
        self.record(
            &mut write,
            Change::RunCreated {
                run_id: run_id.clone(),
                experiment_id: request.experiment_id.clone(),
                run_name,
                user_id: request.user_id,
                start_time,
                artifact_uri,
                tags,
            },
        )
        .await?;
        Self::commit(write).await?;
        self.get_run(ws, &run_id).await
    }

    async fn get_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<Run> {
        load::run(&self.pool, &ws.workspace_id, run_id)
            .await?
            .ok_or_else(|| not_found(format!("Run with id={run_id} not found")))
    }

    async fn update_run(&self, ws: &WorkspaceRef, run_id: &str, update: UpdateRun) -> StoreResult<RunInfo> {
        self.active_run(ws, run_id).await?;
        let run_name = update.run_name.filter(|name| !name.is_empty());
        if let Some(name) = &run_name {
            rules::validate_run_tag(&Tag::new(RUN_NAME_TAG, name.clone()), "run_name")?;
        }
        self.write_one(
            ws,
            Change::RunUpdated {
                run_id: run_id.to_string(),
                status: update.status,
                end_time: update.end_time,
                run_name,
            },
        )
        .await?;
        Ok(self.run_info_in(ws, run_id).await?)
    }

    async fn delete_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()> {
        self.run_info_in(ws, run_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::RunDeleted {
                run_id: run_id.to_string(),
                time,
            },
        )
        .await
    }

    async fn restore_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()> {
        self.run_info_in(ws, run_id).await?;
        self.write_one(
            ws,
            Change::RunRestored {
                run_id: run_id.to_string(),
            },
        )
        .await
    }

    async fn search_runs(&self, ws: &WorkspaceRef, query: SearchRuns) -> StoreResult<Page<Run>> {
        self.search_runs_impl(ws, query).await
    }

    async fn log_batch(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> StoreResult<()> {
        rules::validate_batch_limits(metrics.len(), params.len(), tags.len())?;
        rules::validate_param_keys_unique(&params)?;
        // A batch repeats a few keys many times (a key per series, a metric per
        // step): a key found valid once is valid again, so only its first
        // occurrence pays for the checks of its name.
        let mut valid_keys: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (index, metric) in metrics.iter().enumerate() {
            if metric.timestamp >= 0 && valid_keys.contains(metric.key.as_str()) {
                continue;
            }
            rules::validate_metric(metric, &format!("metrics[{index}]"))?;
            valid_keys.insert(&metric.key);
        }
        for (index, param) in params.iter().enumerate() {
            rules::validate_param(param, &format!("params[{index}]"))?;
        }
        for (index, tag) in tags.iter().enumerate() {
            rules::validate_run_tag(tag, &format!("tags[{index}]"))?;
        }
        if metrics.is_empty() && params.is_empty() && tags.is_empty() {
            self.active_run(ws, run_id).await?;
            return Ok(());
        }
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        // Validated inside the write, on its connection: the state checked is
        // the state written to, and on SQLite the writer's page cache holds
        // these pages already.
        let info = match load::run_info(&mut *write.tx, run_id).await? {
            Some((workspace_id, info)) if workspace_id == ws.workspace_id => info,
            _ => return Err(not_found(format!("Run with id={run_id} not found"))),
        };
        ensure_active(&info)?;
        if !params.is_empty() {
            let rows = sqlx::query("SELECT key, value FROM run_params WHERE run_id = $1")
                .bind(run_id)
                .fetch_all(&mut *write.tx)
                .await?;
            for row in rows {
                let key: String = row.try_get("key")?;
                let value: String = row.try_get("value")?;
                if let Some(new) = params
                    .iter()
                    .find(|param| param.key == key && param.value != value)
                {
                    return Err(invalid(format!(
                        "Changing param values is not allowed. Param with key='{key}' was already logged with value='{value}' for run ID='{run_id}'. Attempted logging new value '{}'.",
                        new.value
                    )));
                }
            }
        }
        self.record(
            &mut write,
            Change::RunDataLogged {
                run_id: run_id.to_string(),
                metrics,
                params,
                tags,
            },
        )
        .await?;
        Self::commit(write).await
    }

    async fn delete_run_tag(&self, ws: &WorkspaceRef, run_id: &str, key: &str) -> StoreResult<()> {
        self.active_run(ws, run_id).await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM run_tags WHERE run_id = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        if found.is_none() {
            return Err(not_found(format!(
                "No tag with name: {key} in run with id {run_id}"
            )));
        }
        self.write_one(
            ws,
            Change::RunTagDeleted {
                run_id: run_id.to_string(),
                key: key.to_string(),
            },
        )
        .await
    }

    async fn log_inputs(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> StoreResult<()> {
        for input in &datasets {
            let dataset = &input.dataset;
            rules::validate_length("Dataset name", rules::MAX_DATASET_NAME_SIZE, &dataset.name)?;
            rules::validate_length("Dataset digest", rules::MAX_DATASET_DIGEST_SIZE, &dataset.digest)?;
            rules::validate_length("Dataset source", rules::MAX_DATASET_SOURCE_SIZE, &dataset.source)?;
            if let Some(schema) = &dataset.schema {
                rules::validate_length("Dataset schema", rules::MAX_DATASET_SCHEMA_SIZE, schema)?;
            }
            if let Some(profile) = &dataset.profile {
                rules::validate_length("Dataset profile", rules::MAX_DATASET_PROFILE_SIZE, profile)?;
            }
            for tag in &input.tags {
                rules::validate_length("InputTag key", rules::MAX_INPUT_TAG_KEY_SIZE, &tag.key)?;
                rules::validate_length("InputTag value", rules::MAX_INPUT_TAG_VALUE_SIZE, &tag.value)?;
            }
        }
        self.active_run(ws, run_id).await?;
        if datasets.is_empty() && models.is_empty() {
            return Ok(());
        }
        self.write_one(
            ws,
            Change::RunInputsLogged {
                run_id: run_id.to_string(),
                datasets,
                models,
            },
        )
        .await
    }

    async fn log_outputs(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        models: Vec<ModelOutput>,
    ) -> StoreResult<()> {
        self.active_run(ws, run_id).await?;
        if models.is_empty() {
            return Ok(());
        }
        self.write_one(
            ws,
            Change::RunOutputsLogged {
                run_id: run_id.to_string(),
                models,
            },
        )
        .await
    }

    async fn get_metric_history(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        max_results: Option<usize>,
        page_token: Option<&str>,
    ) -> StoreResult<Page<Metric>> {
        self.run_info_in(ws, run_id).await?;
        let offset = match page_token {
            Some(token) if !token.is_empty() => search::decode_page_token(token)?,
            _ => 0,
        };
        let limit = max_results.map(|max| max as i64).unwrap_or(i64::MAX / 2);
        let rows = sqlx::query(
            "SELECT key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics \
             WHERE run_id = $1 AND key = $2 ORDER BY step, timestamp, value LIMIT $3 OFFSET $4",
        )
        .bind(run_id)
        .bind(key)
        .bind(limit.saturating_add(1))
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|row| load::metric_row(row, run_id))
            .collect::<StoreResult<Vec<_>>>()?;
        let next_page_token = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            Some(search::encode_page_token(offset + items.len()))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn metric_history_envelope(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        axis: tandem_core::history::HistoryAxis,
        range: Option<(i64, i64)>,
        buckets: usize,
    ) -> StoreResult<tandem_core::history::HistoryEnvelope> {
        self.metric_history_envelope_impl(ws, run_id, key, axis, range, buckets)
            .await
    }

    async fn refresh_planner_statistics(&self) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            // On the writer: ANALYZE writes its results. Bounded work per
            // table, and none for tables that have not grown much.
            let _writing = self.write_lock.lock().await;
            let mut connection = self.writer.acquire().await?;
            sqlx::query("PRAGMA analysis_limit = 1000")
                .execute(&mut *connection)
                .await?;
            sqlx::query("PRAGMA optimize").execute(&mut *connection).await?;
        }
        Ok(())
    }

    async fn search_datasets(
        &self,
        ws: &WorkspaceRef,
        experiment_ids: &[String],
        limit: usize,
    ) -> StoreResult<Vec<tandem_core::model::DatasetSummary>> {
        self.search_datasets_impl(ws, experiment_ids, limit).await
    }

    async fn metric_history_sampled(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        max_results: usize,
        range: Option<(i64, i64)>,
    ) -> StoreResult<Vec<Metric>> {
        self.metric_history_sampled_impl(ws, run_id, key, max_results, range)
            .await
    }

    async fn create_logged_model(
        &self,
        ws: &WorkspaceRef,
        request: CreateLoggedModel,
    ) -> StoreResult<LoggedModel> {
        if let Some(name) = &request.name {
            rules::validate_logged_model_name(name)?;
        }
        for param in &request.params {
            rules::validate_param(param, "params")?;
        }
        for tag in &request.tags {
            rules::validate_run_tag(tag, "tags")?;
        }
        // The source run is recorded as given, not looked up: MLflow accepts
        // a run it does not know (the model may come from another server).
        let experiment = self.ensure_experiment_active(ws, &request.experiment_id).await?;
        let model_id = ids::new_logged_model_id();
        let name = request.name.unwrap_or_else(names::random_run_name);
        let artifact_uri = append_to_uri(&experiment.artifact_location, &["models", &model_id, "artifacts"]);
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelCreated {
                model_id: model_id.clone(),
                experiment_id: request.experiment_id,
                name,
                artifact_uri,
                status: LoggedModelStatus::LoggedModelPending,
                creator_id: request.creator_id,
                model_type: request.model_type.filter(|t| !t.is_empty()),
                source_run_id: request.source_run_id.filter(|r| !r.is_empty()),
                tags: request.tags,
                params: request.params,
                time,
            },
        )
        .await?;
        self.get_logged_model(ws, &model_id).await
    }

    async fn get_logged_model(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<LoggedModel> {
        self.logged_model_in(ws, model_id).await
    }

    async fn finalize_logged_model(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel> {
        self.logged_model_in(ws, model_id).await?;
        if status == LoggedModelStatus::LoggedModelStatusUnspecified {
            return Err(invalid(
                "Invalid logged model status: LOGGED_MODEL_STATUS_UNSPECIFIED".to_string(),
            ));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelUpdated {
                model_id: model_id.to_string(),
                status,
                status_message: None,
                time,
            },
        )
        .await?;
        self.get_logged_model(ws, model_id).await
    }

    async fn delete_logged_model(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<()> {
        self.logged_model_in(ws, model_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelDeleted {
                model_id: model_id.to_string(),
                time,
            },
        )
        .await
    }

    async fn set_logged_model_tags(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        tags: Vec<Tag>,
    ) -> StoreResult<()> {
        for tag in &tags {
            rules::validate_run_tag(tag, "tags")?;
        }
        self.logged_model_in(ws, model_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelTagsSet {
                model_id: model_id.to_string(),
                tags,
                time,
            },
        )
        .await
    }

    async fn delete_logged_model_tag(&self, ws: &WorkspaceRef, model_id: &str, key: &str) -> StoreResult<()> {
        let model = self.logged_model_in(ws, model_id).await?;
        if !model.info.tags.iter().any(|tag| tag.key == key) {
            return Err(not_found(format!(
                "No tag with key {key:?} found for model with ID {model_id:?}."
            )));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelTagDeleted {
                model_id: model_id.to_string(),
                key: key.to_string(),
                time,
            },
        )
        .await
    }

    async fn log_logged_model_params(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        params: Vec<Param>,
    ) -> StoreResult<()> {
        for param in &params {
            rules::validate_param(param, "params")?;
        }
        self.logged_model_in(ws, model_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelParamsLogged {
                model_id: model_id.to_string(),
                params,
                time,
            },
        )
        .await
    }

    async fn search_logged_models(
        &self,
        ws: &WorkspaceRef,
        query: SearchLoggedModels,
    ) -> StoreResult<Page<LoggedModel>> {
        if query.experiment_ids.is_empty() {
            return Err(invalid("Please specify at least one experiment ID.".to_string()));
        }
        tandem_core::validation::validate_search_experiment_ids(&query.experiment_ids)?;
        let placeholders: Vec<String> = (0..query.experiment_ids.len())
            .map(|i| format!("${}", i + 2))
            .collect();
        let condition = format!(
            "AND m.lifecycle_stage = 'active' AND m.experiment_id IN ({})",
            placeholders.join(", ")
        );
        let models =
            load::logged_models_where(&self.pool, &ws.workspace_id, &condition, &query.experiment_ids)
                .await?;
        Ok(search::search_logged_models(
            models,
            &query.filter,
            &query.datasets,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?)
    }

    async fn create_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
        tags: Vec<Tag>,
        user_id: &str,
    ) -> StoreResult<RegisteredModel> {
        rules::validate_model_name(name)?;
        for tag in &tags {
            rules::validate_registry_tag(tag)?;
        }
        if self.registered_model_exists(ws, name).await.is_ok() {
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Registered Model (name={name}) already exists."
            ))));
        }
        // As in MLflow, a deleted model's name is free at once: one deleted
        // in place before journal format 7 is set aside first.
        let set_aside = self.set_aside_deleted_model(ws, name).await?;
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        let time = write.now;
        if let Some(change) = set_aside {
            self.record(&mut write, change).await?;
        }
        self.record(
            &mut write,
            Change::RegisteredModelCreated {
                name: name.to_string(),
                description: description.to_string(),
                user_id: user_id.to_string(),
                tags,
                time,
            },
        )
        .await?;
        Self::commit(write).await?;
        drop(_guard);
        self.get_registered_model(ws, name).await
    }

    async fn get_registered_model(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<RegisteredModel> {
        rules::validate_model_name(name)?;
        load::registered_models_where(
            &self.pool,
            &ws.workspace_id,
            "AND m.name = $2",
            &[name.to_string()],
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(format!("Registered Model with name={name} not found")))
    }

    async fn rename_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        new_name: &str,
    ) -> StoreResult<RegisteredModel> {
        if new_name.trim().is_empty() {
            return Err(StoreError::Domain(rules::missing_value("new_name")));
        }
        rules::validate_model_name(new_name)?;
        if self.multi_writer(AssetClass::Registry) {
            // Everything else in the registry hangs on the model's name; a
            // rename racing a write in another region could not be merged
            // without losing one of them.
            return Err(StoreError::Domain(Error::invalid(format!(
                "cannot rename registered model '{name}': the registry is hot-hot in this deployment, and renames cannot be merged with concurrent writes in other regions; create '{new_name}' and register its versions there instead"
            ))));
        }
        self.registered_model_exists(ws, name).await?;
        if name != new_name && self.registered_model_exists(ws, new_name).await.is_ok() {
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Registered Model (name={new_name}) already exists."
            ))));
        }
        let set_aside = if name != new_name {
            self.set_aside_deleted_model(ws, new_name).await?
        } else {
            None
        };
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        let time = write.now;
        if let Some(change) = set_aside {
            self.record(&mut write, change).await?;
        }
        self.record(
            &mut write,
            Change::RegisteredModelRenamed {
                name: name.to_string(),
                new_name: new_name.to_string(),
                time,
            },
        )
        .await?;
        Self::commit(write).await?;
        drop(_guard);
        self.get_registered_model(ws, new_name).await
    }

    async fn update_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel> {
        self.registered_model_exists(ws, name).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::RegisteredModelUpdated {
                name: name.to_string(),
                description: description.to_string(),
                time,
            },
        )
        .await?;
        self.get_registered_model(ws, name).await
    }

    async fn delete_registered_model(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<()> {
        self.registered_model_exists(ws, name).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::RegisteredModelDeleted {
                name: name.to_string(),
                time,
                kept_as: self.kept_as_for_delete(name),
            },
        )
        .await
    }

    async fn search_registered_models(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<RegisteredModel>> {
        let models = load::registered_models_where(&self.pool, &ws.workspace_id, "", &[]).await?;
        Ok(search::search_registered_models(
            models,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?)
    }

    async fn get_latest_versions(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        stages: &[String],
    ) -> StoreResult<Vec<ModelVersion>> {
        self.registered_model_exists(ws, name).await?;
        let wanted: Vec<&'static str> = if stages.is_empty() {
            STAGES.to_vec()
        } else {
            stages
                .iter()
                .map(|stage| {
                    canonical_stage(stage).ok_or_else(|| {
                        invalid(format!(
                            "Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."
                        ))
                    })
                })
                .collect::<StoreResult<_>>()?
        };
        let versions = load::model_versions_where(
            &self.pool,
            &ws.workspace_id,
            "AND v.name = $2",
            &[name.to_string()],
        )
        .await?;
        let mut latest: Vec<ModelVersion> = Vec::new();
        for version in versions
            .into_iter()
            .filter(|v| wanted.contains(&v.current_stage.as_str()))
        {
            match latest
                .iter_mut()
                .find(|existing| existing.current_stage == version.current_stage)
            {
                Some(existing) => {
                    if version.version.parse::<i64>().unwrap_or(0)
                        > existing.version.parse::<i64>().unwrap_or(0)
                    {
                        *existing = version;
                    }
                }
                None => latest.push(version),
            }
        }
        latest.sort_by_key(|version| version.version.parse::<i64>().unwrap_or(0));
        Ok(latest)
    }

    async fn set_registered_model_tag(&self, ws: &WorkspaceRef, name: &str, tag: Tag) -> StoreResult<()> {
        rules::validate_registry_tag(&tag)?;
        self.registered_model_exists(ws, name).await?;
        self.write_one(
            ws,
            Change::RegisteredModelTagSet {
                name: name.to_string(),
                tag,
            },
        )
        .await
    }

    async fn delete_registered_model_tag(&self, ws: &WorkspaceRef, name: &str, key: &str) -> StoreResult<()> {
        self.registered_model_exists(ws, name).await?;
        self.write_one(
            ws,
            Change::RegisteredModelTagDeleted {
                name: name.to_string(),
                key: key.to_string(),
            },
        )
        .await
    }

    async fn set_registered_model_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
        version: &str,
    ) -> StoreResult<()> {
        rules::validate_alias_name(alias)?;
        let version = self.model_version_in(ws, name, version).await?;
        self.write_one(
            ws,
            Change::RegisteredModelAliasSet {
                name: name.to_string(),
                alias: alias.to_string(),
                version: version.version,
            },
        )
        .await
    }

    async fn delete_registered_model_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<()> {
        rules::validate_alias_name(alias)?;
        self.registered_model_exists(ws, name).await?;
        self.write_one(
            ws,
            Change::RegisteredModelAliasDeleted {
                name: name.to_string(),
                alias: alias.to_string(),
            },
        )
        .await
    }

    async fn get_model_version_by_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<ModelVersion> {
        self.registered_model_exists(ws, name).await?;
        // MLflow reserves `latest` (any case) for the newest version, whatever
        // its stage; `models:/name@latest` depends on it.
        if alias.eq_ignore_ascii_case("latest") {
            let versions = self.get_latest_versions(ws, name, &[]).await?;
            return versions
                .into_iter()
                .max_by_key(|version| version.version.parse::<i64>().unwrap_or(0))
                .ok_or_else(|| not_found(format!("Latest version not found for model {name}.")));
        }
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM registered_model_aliases WHERE workspace_id = $1 AND name = $2 AND alias = $3",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        match version {
            Some(version) => self.model_version_in(ws, name, &version.to_string()).await,
            None => Err(not_found(format!("Registered model alias {alias} not found."))),
        }
    }

    async fn create_model_version(
        &self,
        ws: &WorkspaceRef,
        request: CreateModelVersion,
    ) -> StoreResult<ModelVersion> {
        rules::validate_model_name(&request.name)?;
        if request.source.is_empty() {
            return Err(StoreError::Domain(rules::missing_value("source")));
        }
        for tag in &request.tags {
            rules::validate_registry_tag(tag)?;
        }
        self.registered_model_exists(ws, &request.name).await?;
        let mut run_id = request.run_id;
        let mut model_id = request.model_id;
        let mut storage_location = request.source.clone();
        // A `models:/` source names a logged model or another version; the
        // files are where that one's are.
        if let Some(reference) = request.source.strip_prefix("models:/") {
            if let Some(logged_id) = reference
                .strip_prefix("m-")
                .map(|_| reference.trim_end_matches('/'))
            {
                let logged = self.logged_model_in(ws, logged_id).await.map_err(|_| {
                    invalid(format!(
                        "Unable to fetch model from model URI source artifact location '{}'.",
                        request.source
                    ))
                })?;
                storage_location = logged.info.artifact_uri.clone();
                if run_id.is_empty() {
                    run_id = logged.info.source_run_id.clone().unwrap_or_default();
                }
                if model_id.is_empty() {
                    model_id = logged_id.to_string();
                }
            } else if let Some((source_name, source_version)) =
                reference.trim_end_matches('/').rsplit_once('/')
            {
                let source = self.model_version_in(ws, source_name, source_version).await?;
                storage_location = self
                    .get_model_version_download_uri(ws, &source.name, &source.version)
                    .await?;
            }
        }
        if run_id.is_empty() && !model_id.is_empty() {
            if let Ok(logged) = self.logged_model_in(ws, &model_id).await {
                run_id = logged.info.source_run_id.clone().unwrap_or_default();
            }
        }
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        let next: i64 = sqlx::query_scalar(
            "SELECT next_version FROM registered_models WHERE workspace_id = $1 AND name = $2",
        )
        .bind(&ws.workspace_id)
        .bind(&request.name)
        .fetch_one(&self.pool)
        .await?;
        let version_number = self.allocate_id(AssetClass::Registry, next.max(1));
        let version = version_number.to_string();
        let time = write.now;
        let logged_model_tag = if model_id.is_empty() {
            None
        } else {
            self.logged_model_in(ws, &model_id).await.ok().map(|logged| {
                let mut registered: Vec<serde_json::Value> = logged
                    .info
                    .tags
                    .iter()
                    .find(|tag| tag.key == MODEL_VERSIONS_TAG)
                    .and_then(|tag| serde_json::from_str(&tag.value).ok())
                    .unwrap_or_default();
                // As MLflow's server writes it: the version a JSON number
                // (its store's integer), the text `json.dumps`'s.
                let entry = serde_json::json!({"name": request.name, "version": version_number});
                if !registered.contains(&entry) {
                    registered.push(entry);
                }
                Tag::new(
                    MODEL_VERSIONS_TAG,
                    python_json::dumps(&serde_json::Value::Array(registered), Separators::Default, false),
                )
            })
        };
        self.record(
            &mut write,
            Change::ModelVersionCreated {
                name: request.name.clone(),
                version: version.clone(),
                source: request.source,
                storage_location,
                run_id,
                run_link: request.run_link,
                description: request.description,
                user_id: request.user_id,
                model_id: model_id.clone(),
                status: ModelVersionStatus::Ready,
                tags: request.tags,
                time,
            },
        )
        .await?;
        if let Some(tag) = logged_model_tag {
            self.record(
                &mut write,
                Change::LoggedModelTagsSet {
                    model_id,
                    tags: vec![tag],
                    time,
                },
            )
            .await?;
        }
        Self::commit(write).await?;
        self.model_version_in(ws, &request.name, &version).await
    }

    async fn get_model_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<ModelVersion> {
        self.model_version_in(ws, name, version).await
    }

    async fn get_model_version_download_uri(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<String> {
        let existing = self.model_version_in(ws, name, version).await?;
        let location: String = sqlx::query_scalar(
            "SELECT storage_location FROM model_versions v WHERE v.workspace_id = $1 AND v.name = $2 AND v.version = CAST($3 AS BIGINT) AND v.deletion_time IS NULL",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .bind(&existing.version)
        .fetch_one(&self.pool)
        .await?;
        Ok(if location.is_empty() {
            existing.source
        } else {
            location
        })
    }

    async fn update_model_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion> {
        let existing = self.model_version_in(ws, name, version).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::ModelVersionUpdated {
                name: name.to_string(),
                version: existing.version.clone(),
                description: description.to_string(),
                time,
            },
        )
        .await?;
        self.model_version_in(ws, name, &existing.version).await
    }

    async fn transition_model_version_stage(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> StoreResult<ModelVersion> {
        let stage = canonical_stage(stage).ok_or_else(|| {
            invalid(format!(
                "Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."
            ))
        })?;
        if archive_existing_versions && !matches!(stage, "Staging" | "Production") {
            return Err(invalid(format!(
                "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. Valid stages are Staging, Production"
            )));
        }
        let existing = self.model_version_in(ws, name, version).await?;
        let archived_versions = if archive_existing_versions {
            load::model_versions_where(
                &self.pool,
                &ws.workspace_id,
                "AND v.name = $2",
                &[name.to_string()],
            )
            .await?
            .into_iter()
            .filter(|other| other.version != existing.version && other.current_stage == stage)
            .map(|other| other.version)
            .collect()
        } else {
            Vec::new()
        };
        let time = self.now();
        self.write_one(
            ws,
            Change::ModelVersionStageSet {
                name: name.to_string(),
                version: existing.version.clone(),
                stage: stage.to_string(),
                archived_versions,
                time,
            },
        )
        .await?;
        self.model_version_in(ws, name, &existing.version).await
    }

    async fn delete_model_version(&self, ws: &WorkspaceRef, name: &str, version: &str) -> StoreResult<()> {
        let existing = self.model_version_in(ws, name, version).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::ModelVersionDeleted {
                name: name.to_string(),
                version: existing.version,
                time,
            },
        )
        .await
    }

    async fn search_model_versions(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<ModelVersion>> {
        let versions = load::model_versions_where(&self.pool, &ws.workspace_id, "", &[]).await?;
        Ok(search::search_model_versions(
            versions,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?)
    }

    async fn set_model_version_tag(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        tag: Tag,
    ) -> StoreResult<()> {
        rules::validate_registry_tag(&tag)?;
        let existing = self.model_version_in(ws, name, version).await?;
        self.write_one(
            ws,
            Change::ModelVersionTagSet {
                name: name.to_string(),
                version: existing.version,
                tag,
            },
        )
        .await
    }

    async fn delete_model_version_tag(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<()> {
        let existing = self.model_version_in(ws, name, version).await?;
        self.write_one(
            ws,
            Change::ModelVersionTagDeleted {
                name: name.to_string(),
                version: existing.version,
                key: key.to_string(),
            },
        )
        .await
    }

    async fn check_artifact_owner(&self, ws: &WorkspaceRef, path: &str, for_write: bool) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        artifact_owner_check(&mut conn, ws, path, for_write).await
    }

    async fn record_artifact(
        &self,
        ws: &WorkspaceRef,
        path: &str,
        size: i64,
        sha256: &str,
    ) -> StoreResult<()> {
        // Checked again under the writer lock: an upload that passed the
        // owner check before its run or logged model was purged must not be
        // journaled (the API then removes the bytes it wrote).
        // On the write's own connection, so the check costs no second one.
        let (_guard, mut write) = self.begin_write(&ws.workspace_id).await?;
        artifact_owner_check(&mut write.tx, ws, path, false).await?;
        super::retention_apply::check_quota(&mut write.tx, &ws.workspace_id, "artifacts", path, size).await?;
        let time = write.now;
        self.record(
            &mut write,
            Change::ArtifactWritten {
                path: path.to_string(),
                size,
                sha256: sha256.to_string(),
                time,
            },
        )
        .await?;
        Self::commit(write).await
    }

    async fn delete_artifact(&self, ws: &WorkspaceRef, path: &str) -> StoreResult<()> {
        self.write_one(
            ws,
            Change::ArtifactDeleted {
                path: path.to_string(),
            },
        )
        .await
    }

    async fn create_workspace_with(
        &self,
        name: &str,
        description: &str,
        settings: crate::retention::WorkspaceSettings,
    ) -> StoreResult<Workspace> {
        self.create_workspace_with_impl(name, description, settings).await
    }

    async fn find_workspace(&self, name_or_id: &str) -> StoreResult<Workspace> {
        self.find_workspace_impl(name_or_id).await
    }

    async fn update_workspace(
        &self,
        name: &str,
        update: crate::retention::WorkspaceUpdate,
    ) -> StoreResult<Workspace> {
        self.update_workspace_impl(name, update).await
    }

    async fn recover_workspace(&self, name_or_id: &str) -> StoreResult<Workspace> {
        self.recover_workspace_impl(name_or_id).await
    }

    async fn purge_workspace(&self, name_or_id: &str, keep_artifacts: bool) -> StoreResult<Workspace> {
        self.purge_workspace_impl(name_or_id, keep_artifacts).await
    }

    async fn list_deleted(&self, ws: &WorkspaceRef) -> StoreResult<Vec<crate::retention::DeletedItem>> {
        self.list_deleted_impl(ws).await
    }

    async fn recover_deleted_as(
        &self,
        ws: &WorkspaceRef,
        kind: crate::retention::DeletedKind,
        id: &str,
        new_name: Option<&str>,
    ) -> StoreResult<()> {
        self.recover_deleted_impl(ws, kind, id, new_name).await
    }

    async fn purge_deleted(
        &self,
        ws: &WorkspaceRef,
        kind: crate::retention::DeletedKind,
        id: &str,
        keep_artifacts: bool,
    ) -> StoreResult<()> {
        self.purge_deleted_impl(ws, kind, id, keep_artifacts).await
    }

    async fn purge_expired(&self) -> StoreResult<crate::retention::PurgeReport> {
        self.purge_expired_impl().await
    }

    async fn gc_due(&self, limit: i64) -> StoreResult<Vec<crate::retention::GcEntry>> {
        self.gc_entries(true, limit).await
    }

    async fn gc_pending(&self) -> StoreResult<Vec<crate::retention::GcEntry>> {
        self.gc_entries(false, i64::MAX).await
    }

    async fn check_storage_quota(
        &self,
        ws: &WorkspaceRef,
        area: &str,
        path: &str,
        size: i64,
    ) -> StoreResult<()> {
        let table = if area == "files" { "files" } else { "artifacts" };
        let mut conn = self.pool.acquire().await?;
        super::retention_apply::check_quota(&mut conn, &ws.workspace_id, table, path, size).await
    }

    async fn protected_artifact_roots(&self, workspace_id: &str, under: &str) -> StoreResult<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        super::retention_apply::protected_roots(&mut conn, workspace_id, under).await
    }

    async fn probe_write(&self) -> StoreResult<()> {
        self.probe_write_impl().await
    }

    async fn gc_done(&self, prefix: &str) -> StoreResult<()> {
        self.gc_done_impl(prefix).await
    }

    async fn gc_failed(&self, prefix: &str, error: &str, retry_after_ms: i64) -> StoreResult<()> {
        self.gc_failed_impl(prefix, error, retry_after_ms).await
    }

    async fn begin_restore<'a>(
        &'a self,
        workspace_id: &str,
        name: &str,
    ) -> StoreResult<Box<dyn RestoreSession + 'a>> {
        self.start_restore(workspace_id, name).await
    }

    async fn create_principal(
        &self,
        name: &str,
        kind: &str,
        password_hash: Option<String>,
    ) -> StoreResult<tandem_core::access::Principal> {
        self.create_principal_impl(name, kind, password_hash).await
    }

    async fn principal(&self, name: &str) -> StoreResult<Option<tandem_core::access::Principal>> {
        self.principal_impl(name).await
    }

    async fn list_principals(&self) -> StoreResult<Vec<tandem_core::access::Principal>> {
        self.list_principals_impl().await
    }

    async fn password_hash(&self, name: &str) -> StoreResult<Option<String>> {
        self.password_hash_impl(name).await
    }

    async fn set_password(&self, name: &str, password_hash: Option<String>) -> StoreResult<()> {
        self.set_password_impl(name, password_hash).await
    }

    async fn set_principal_disabled(&self, name: &str, disabled: bool) -> StoreResult<()> {
        self.set_disabled_impl(name, disabled).await
    }

    async fn delete_principal(&self, name: &str) -> StoreResult<()> {
        self.delete_principal_impl(name).await
    }

    async fn create_token(
        &self,
        token_id: &str,
        principal: &str,
        token_hash: &str,
        description: &str,
        expires_at: Option<Millis>,
    ) -> StoreResult<tandem_core::access::TokenInfo> {
        self.create_token_impl(token_id, principal, token_hash, description, expires_at)
            .await
    }

    async fn token(&self, token_id: &str) -> StoreResult<Option<tandem_core::access::TokenInfo>> {
        self.token_impl(token_id).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> StoreResult<Option<tandem_core::access::TokenInfo>> {
        self.token_by_hash_impl(token_hash).await
    }

    async fn list_tokens(&self, principal: Option<&str>) -> StoreResult<Vec<tandem_core::access::TokenInfo>> {
        self.list_tokens_impl(principal).await
    }

    async fn revoke_token(&self, token_id: &str) -> StoreResult<tandem_core::access::TokenInfo> {
        self.revoke_token_impl(token_id).await
    }

    async fn touch_token(&self, token_id: &str, at: Millis) -> StoreResult<()> {
        self.touch_token_impl(token_id, at).await
    }

    async fn assign_role(
        &self,
        principal: &str,
        role: tandem_core::access::Role,
        workspace: Option<&str>,
    ) -> StoreResult<tandem_core::access::RoleAssignment> {
        self.assign_role_impl(principal, role, workspace).await
    }

    async fn remove_role(
        &self,
        principal: &str,
        role: tandem_core::access::Role,
        workspace: Option<&str>,
    ) -> StoreResult<()> {
        self.remove_role_impl(principal, role, workspace).await
    }

    async fn role_assignments(
        &self,
        principal: Option<&str>,
        workspace: Option<&str>,
    ) -> StoreResult<Vec<tandem_core::access::RoleAssignment>> {
        self.assignments(principal, workspace).await
    }

    fn access_generation(&self) -> u64 {
        SqlStore::access_generation(self)
    }

    async fn access_snapshot(&self) -> StoreResult<tandem_core::access::AccessSnapshot> {
        self.access_snapshot_impl().await
    }

    async fn check_file_write(&self, ws: &WorkspaceRef, path: &str) -> StoreResult<()> {
        self.check_file_conflicts(ws, path, None).await
    }

    async fn record_file(
        &self,
        ws: &WorkspaceRef,
        path: &str,
        size: i64,
        sha256: &str,
    ) -> StoreResult<FileEntry> {
        self.record_file_impl(ws, path, size, sha256).await
    }

    async fn delete_file(&self, ws: &WorkspaceRef, path: &str) -> StoreResult<Vec<FileEntry>> {
        self.delete_file_impl(ws, path).await
    }

    async fn list_files(&self, ws: &WorkspaceRef, prefix: &str) -> StoreResult<Vec<FileEntry>> {
        self.files_under(ws, prefix, None).await
    }

    async fn list_artifact_entries(
        &self,
        ws: &WorkspaceRef,
        prefix: &str,
    ) -> StoreResult<Vec<ArtifactEntry>> {
        let prefix = prefix.trim_matches('/');
        let like = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let rows = sqlx::query(
            "SELECT path, size, sha256, created_at FROM artifacts WHERE workspace_id = $1 AND (path = $2 OR substr(path, 1, CAST($3 AS INTEGER)) = $4) ORDER BY path",
        )
        .bind(&ws.workspace_id)
        .bind(prefix)
        .bind(like.len() as i64)
        .bind(&like)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ArtifactEntry {
                    path: row.try_get("path")?,
                    size: row.try_get("size")?,
                    sha256: row.try_get("sha256")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
