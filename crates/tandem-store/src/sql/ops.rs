//! The [`MetadataStore`] operations: validate against current state, build
//! the change, journal and apply it (see `mod.rs`), or read.

use async_trait::async_trait;
use sqlx::Row;
use tandem_core::journal::{Change, JournalRecord};
use tandem_core::model::*;
use tandem_core::search::{self, Page};
use tandem_core::Error;

use super::{load, Backend, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::*;

pub(super) fn not_found(message: String) -> StoreError {
    StoreError::Domain(Error::not_found(message))
}

pub(super) fn invalid(message: String) -> StoreError {
    StoreError::Domain(Error::invalid(message))
}

/// Joins a path to a URI the way MLflow's `append_to_uri_path` does.
pub(super) fn append_to_uri(base: &str, parts: &[&str]) -> String {
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
pub(super) async fn artifact_owner_check(
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
pub(super) fn ensure_active(info: &RunInfo) -> StoreResult<()> {
    if info.lifecycle_stage != LifecycleStage::Active {
        return Err(invalid(format!(
            "The run {} must be in the 'active' state. Current state is {}.",
            info.run_id,
            info.lifecycle_stage.as_str()
        )));
    }
    Ok(())
}

#[async_trait]
impl MetadataStore for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn duties(&self) -> crate::Duties {
        SqlStore::duties(self)
    }

    async fn set_write_fence(&self, until: Option<i64>, closed: Option<&str>) -> StoreResult<()> {
        self.set_write_fence_impl(until, closed).await
    }

    async fn publish_runtime(&self, holder: &str, document: &str) -> StoreResult<()> {
        self.publish_runtime_impl(holder, document).await
    }

    async fn heartbeat_replica(
        &self,
        replica: &str,
        url: Option<&str>,
        holds_duties: bool,
    ) -> StoreResult<Vec<crate::ReplicaSeen>> {
        self.heartbeat_replica_impl(replica, url, holds_duties).await
    }

    async fn open_direct_upload(&self, key: &str, upload_id: &str, num_parts: u32) -> StoreResult<()> {
        self.open_direct_upload_impl(key, upload_id, num_parts).await
    }

    async fn take_direct_upload(&self, key: &str, upload_id: &str) -> StoreResult<Option<u32>> {
        self.take_direct_upload_impl(key, upload_id).await
    }

    async fn direct_uploads_opened_before(&self, max_age_ms: i64) -> StoreResult<Vec<(String, String)>> {
        self.direct_uploads_opened_before_impl(max_age_ms).await
    }

    async fn direct_uploads_open(&self) -> StoreResult<usize> {
        self.direct_uploads_open_impl().await
    }

    async fn runtime(&self) -> StoreResult<Option<crate::RuntimeRecord>> {
        self.runtime_impl().await
    }

    async fn share_acknowledgements(
        &self,
        ours: &[crate::Acknowledgement<'_>],
    ) -> StoreResult<Vec<crate::SharedAcknowledgement>> {
        self.share_acknowledgements_impl(ours).await
    }

    async fn artifact_fence(&self, exclusive: bool) -> StoreResult<crate::ArtifactFence> {
        SqlStore::artifact_fence(self, exclusive).await
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
        let mut write = self.begin_write(&record.workspace_id).await?;
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
        let mut write = self.begin_write(&record.workspace_id).await?;
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
        self.create_workspace_impl(name, description).await
    }

    async fn get_workspace(&self, name: &str) -> StoreResult<Workspace> {
        self.get_workspace_impl(name).await
    }

    async fn list_workspaces(&self, view: ViewType) -> StoreResult<Vec<Workspace>> {
        self.list_workspaces_impl(view).await
    }

    async fn delete_workspace(&self, name: &str) -> StoreResult<Workspace> {
        self.delete_workspace_impl(name).await
    }

    async fn resolve_workspace(&self, name: &str) -> StoreResult<WorkspaceRef> {
        self.resolve_workspace_impl(name).await
    }

    async fn create_experiment(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
    ) -> StoreResult<String> {
        self.create_experiment_impl(ws, name, artifact_location, tags)
            .await
    }

    async fn get_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<Experiment> {
        self.get_experiment_impl(ws, experiment_id).await
    }

    async fn get_experiment_by_name(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<Experiment> {
        self.get_experiment_by_name_impl(ws, name).await
    }

    async fn search_experiments(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<Experiment>> {
        self.search_experiments_impl(ws, query).await
    }

    async fn rename_experiment(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        new_name: &str,
    ) -> StoreResult<()> {
        self.rename_experiment_impl(ws, experiment_id, new_name).await
    }

    async fn delete_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<()> {
        self.delete_experiment_impl(ws, experiment_id).await
    }

    async fn restore_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<()> {
        self.restore_experiment_impl(ws, experiment_id).await
    }

    async fn set_experiment_tag(&self, ws: &WorkspaceRef, experiment_id: &str, tag: Tag) -> StoreResult<()> {
        self.set_experiment_tag_impl(ws, experiment_id, tag).await
    }

    async fn delete_experiment_tag(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        key: &str,
    ) -> StoreResult<()> {
        self.delete_experiment_tag_impl(ws, experiment_id, key).await
    }

    async fn create_run(&self, ws: &WorkspaceRef, request: CreateRun) -> StoreResult<Run> {
        self.create_run_impl(ws, request).await
    }

    async fn get_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<Run> {
        self.get_run_impl(ws, run_id).await
    }

    async fn update_run(&self, ws: &WorkspaceRef, run_id: &str, update: UpdateRun) -> StoreResult<RunInfo> {
        self.update_run_impl(ws, run_id, update).await
    }

    async fn delete_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()> {
        self.delete_run_impl(ws, run_id).await
    }

    async fn restore_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()> {
        self.restore_run_impl(ws, run_id).await
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
        self.log_batch_impl(ws, run_id, metrics, params, tags).await
    }

    async fn delete_run_tag(&self, ws: &WorkspaceRef, run_id: &str, key: &str) -> StoreResult<()> {
        self.delete_run_tag_impl(ws, run_id, key).await
    }

    async fn log_inputs(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> StoreResult<()> {
        self.log_inputs_impl(ws, run_id, datasets, models).await
    }

    async fn log_outputs(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        models: Vec<ModelOutput>,
    ) -> StoreResult<()> {
        self.log_outputs_impl(ws, run_id, models).await
    }

    async fn get_metric_history(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        max_results: Option<usize>,
        page_token: Option<&str>,
    ) -> StoreResult<tandem_core::history::HistoryPage> {
        self.run_info_in(ws, run_id).await?;
        let position = match page_token {
            Some(token) if !token.is_empty() => search::decode_history_token(token)?,
            _ => search::HistoryPosition::Offset(0),
        };
        let limit = max_results.map(|max| max as i64).unwrap_or(i64::MAX / 2);
        let start = match &position {
            search::HistoryPosition::Offset(0) => super::history::Start::First,
            search::HistoryPosition::Offset(offset) => super::history::Start::Offset(*offset as i64),
            search::HistoryPosition::After(after) => super::history::Start::After(after),
        };
        let mut points = self
            .read_pool
            .page(run_id, key, start, limit.saturating_add(1))
            .await?;
        let next_page_token = if points.len() as i64 > limit {
            points.truncate(limit as usize);
            points.last().map(|last| {
                let (value, is_nan) = super::apply::stored_value(last.value);
                let texts = last.texts.as_deref().cloned().unwrap_or_default();
                search::encode_history_token(&search::HistoryCursor {
                    step: last.step,
                    timestamp: last.timestamp,
                    value_bits: value.to_bits(),
                    is_nan,
                    model_id: texts.model_id.unwrap_or_default(),
                    dataset_name: texts.dataset_name.unwrap_or_default(),
                    dataset_digest: texts.dataset_digest.unwrap_or_default(),
                })
            })
        } else {
            None
        };
        Ok(tandem_core::history::HistoryPage {
            run_id: run_id.to_string(),
            key: key.to_string(),
            points,
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
        self.refresh_planner_statistics_impl().await
    }

    async fn search_datasets(
        &self,
        ws: &WorkspaceRef,
        experiment_ids: &[String],
        limit: usize,
    ) -> StoreResult<Vec<tandem_core::model::DatasetSummary>> {
        self.search_datasets_impl(ws, experiment_ids, limit).await
    }

    async fn import_object(
        &self,
        ws: &WorkspaceRef,
        request: tandem_core::transfer::ImportRequest,
    ) -> StoreResult<tandem_core::transfer::ImportOutcome> {
        self.import_object_impl(ws, request).await
    }

    async fn plan_move(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &tandem_core::transfer::MoveRequest,
    ) -> StoreResult<crate::MovePlan> {
        self.plan_move_impl(from, to, request, &Default::default()).await
    }

    async fn commit_move(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &tandem_core::transfer::MoveRequest,
        planned: &crate::MovePlan,
    ) -> StoreResult<crate::MoveCommit> {
        self.commit_move_impl(from, to, request, planned).await
    }

    async fn transfer_origins(
        &self,
        ws: &WorkspaceRef,
        source: &str,
    ) -> StoreResult<Vec<tandem_core::transfer::Origin>> {
        self.transfer_origins_impl(ws, source).await
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
        self.create_logged_model_impl(ws, request).await
    }

    async fn get_logged_model(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<LoggedModel> {
        self.get_logged_model_impl(ws, model_id).await
    }

    async fn finalize_logged_model(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel> {
        self.finalize_logged_model_impl(ws, model_id, status).await
    }

    async fn delete_logged_model(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<()> {
        self.delete_logged_model_impl(ws, model_id).await
    }

    async fn set_logged_model_tags(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        tags: Vec<Tag>,
    ) -> StoreResult<()> {
        self.set_logged_model_tags_impl(ws, model_id, tags).await
    }

    async fn delete_logged_model_tag(&self, ws: &WorkspaceRef, model_id: &str, key: &str) -> StoreResult<()> {
        self.delete_logged_model_tag_impl(ws, model_id, key).await
    }

    async fn log_logged_model_params(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        params: Vec<Param>,
    ) -> StoreResult<()> {
        self.log_logged_model_params_impl(ws, model_id, params).await
    }

    async fn search_logged_models(
        &self,
        ws: &WorkspaceRef,
        query: SearchLoggedModels,
    ) -> StoreResult<Page<LoggedModel>> {
        self.search_logged_models_impl(ws, query).await
    }

    async fn create_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
        tags: Vec<Tag>,
        user_id: &str,
    ) -> StoreResult<RegisteredModel> {
        self.create_registered_model_impl(ws, name, description, tags, user_id)
            .await
    }

    async fn get_registered_model(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<RegisteredModel> {
        self.get_registered_model_impl(ws, name).await
    }

    async fn rename_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        new_name: &str,
    ) -> StoreResult<RegisteredModel> {
        self.rename_registered_model_impl(ws, name, new_name).await
    }

    async fn update_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel> {
        self.update_registered_model_impl(ws, name, description).await
    }

    async fn delete_registered_model(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<()> {
        self.delete_registered_model_impl(ws, name).await
    }

    async fn search_registered_models(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<RegisteredModel>> {
        self.search_registered_models_impl(ws, query).await
    }

    async fn get_latest_versions(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        stages: &[String],
    ) -> StoreResult<Vec<ModelVersion>> {
        self.get_latest_versions_impl(ws, name, stages).await
    }

    async fn set_registered_model_tag(&self, ws: &WorkspaceRef, name: &str, tag: Tag) -> StoreResult<()> {
        self.set_registered_model_tag_impl(ws, name, tag).await
    }

    async fn delete_registered_model_tag(&self, ws: &WorkspaceRef, name: &str, key: &str) -> StoreResult<()> {
        self.delete_registered_model_tag_impl(ws, name, key).await
    }

    async fn set_registered_model_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
        version: &str,
    ) -> StoreResult<()> {
        self.set_registered_model_alias_impl(ws, name, alias, version)
            .await
    }

    async fn delete_registered_model_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<()> {
        self.delete_registered_model_alias_impl(ws, name, alias).await
    }

    async fn get_model_version_by_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<ModelVersion> {
        self.get_model_version_by_alias_impl(ws, name, alias).await
    }

    async fn create_model_version(
        &self,
        ws: &WorkspaceRef,
        request: CreateModelVersion,
    ) -> StoreResult<ModelVersion> {
        self.create_model_version_impl(ws, request).await
    }

    async fn get_model_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<ModelVersion> {
        self.get_model_version_impl(ws, name, version).await
    }

    async fn get_model_version_download_uri(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<String> {
        self.get_model_version_download_uri_impl(ws, name, version).await
    }

    async fn update_model_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion> {
        self.update_model_version_impl(ws, name, version, description)
            .await
    }

    async fn transition_model_version_stage(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> StoreResult<ModelVersion> {
        self.transition_model_version_stage_impl(ws, name, version, stage, archive_existing_versions)
            .await
    }

    async fn delete_model_version(&self, ws: &WorkspaceRef, name: &str, version: &str) -> StoreResult<()> {
        self.delete_model_version_impl(ws, name, version).await
    }

    async fn search_model_versions(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<ModelVersion>> {
        self.search_model_versions_impl(ws, query).await
    }

    async fn set_model_version_tag(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        tag: Tag,
    ) -> StoreResult<()> {
        self.set_model_version_tag_impl(ws, name, version, tag).await
    }

    async fn delete_model_version_tag(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<()> {
        self.delete_model_version_tag_impl(ws, name, version, key).await
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
        let mut write = self.begin_write(&ws.workspace_id).await?;
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
