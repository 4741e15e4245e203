//! Applying a [`Change`] to the tables. This is the only code that mutates
//! workspace state, and it runs for local writes, replays and replicated
//! records alike, so it must be deterministic: everything it writes comes from
//! the change or from state the change's predecessors wrote.

use sqlx::AnyConnection;
use tandem_core::journal::{Change, ContentArea};
use tandem_core::model::{Metric, Tag};

use crate::error::StoreResult;

/// The stored form of a metric value: SQLite cannot hold NaN (it reads back
/// as NULL), so NaN is stored as 0 with a flag, as MLflow's SQL store does.
pub(crate) fn stored_value(value: f64) -> (f64, i64) {
    if value.is_nan() {
        (0.0, 1)
    } else {
        (value, 0)
    }
}

use tandem_core::model::RUN_NAME_TAG;

use super::AnyQuery;

pub(crate) async fn apply(tx: &mut AnyConnection, workspace_id: &str, change: &Change) -> StoreResult<()> {
    if super::access::apply_access(tx, change).await? {
        return Ok(());
    }
    if let Change::WorkspacePurged { .. } = change {
        super::access::forget_workspace(tx, workspace_id).await?;
    }
    if super::retention_apply::apply(tx, workspace_id, change).await? {
        return Ok(());
    }
    let conn = &mut *tx;
    match change {
        Change::WorkspaceCreated {
            workspace_id: id,
            name,
            description,
            time,
        } => {
            sqlx::query(
                "INSERT INTO workspaces (workspace_id, name, description, creation_time, last_update_time, lifecycle_stage, deletion_time, next_experiment_id) \
                 VALUES ($1, $2, $3, $4, $4, 'active', NULL, 0)",
            )
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(time)
            .execute(conn)
            .await?;
        }
        Change::WorkspaceUpdated { description, time } => {
            sqlx::query(
                "UPDATE workspaces SET description = $1, last_update_time = CASE WHEN last_update_time > $2 THEN last_update_time ELSE $2 END WHERE workspace_id = $3",
            )
            .bind(description)
            .bind(time)
            .bind(workspace_id)
            .execute(conn)
            .await?;
        }
        Change::WorkspaceDeleted { time } => {
            sqlx::query(
                "UPDATE workspaces SET lifecycle_stage = 'deleted', deletion_time = $1, last_update_time = CASE WHEN last_update_time > $1 THEN last_update_time ELSE $1 END WHERE workspace_id = $2",
            )
            .bind(time)
            .bind(workspace_id)
            .execute(conn)
            .await?;
        }
        Change::WorkspaceRestored { time } => {
            sqlx::query(
                "UPDATE workspaces SET lifecycle_stage = 'active', deletion_time = NULL, last_update_time = CASE WHEN last_update_time > $1 THEN last_update_time ELSE $1 END WHERE workspace_id = $2",
            )
            .bind(time)
            .bind(workspace_id)
            .execute(conn)
            .await?;
        }

        Change::ExperimentCreated {
            experiment_id,
            name,
            artifact_location,
            tags,
            time,
        } => {
            sqlx::query(
                "INSERT INTO experiments (workspace_id, experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
                 VALUES ($1, $2, $3, $4, 'active', $5, $5)",
            )
            .bind(workspace_id)
            .bind(experiment_id)
            .bind(name)
            .bind(artifact_location)
            .bind(time)
            .execute(&mut *conn)
            .await?;
            if let Ok(numeric) = experiment_id.parse::<i64>() {
                sqlx::query(
                    "UPDATE workspaces SET next_experiment_id = CASE WHEN next_experiment_id > $1 THEN next_experiment_id ELSE $1 END WHERE workspace_id = $2",
                )
                .bind(numeric + 1)
                .bind(workspace_id)
                .execute(&mut *conn)
                .await?;
            }
            for tag in tags {
                upsert_experiment_tag(tx, workspace_id, experiment_id, tag).await?;
            }
        }
        Change::ExperimentRenamed {
            experiment_id,
            name,
            time,
        } => {
            sqlx::query("UPDATE experiments SET name = $1, last_update_time = CASE WHEN last_update_time > $2 THEN last_update_time ELSE $2 END WHERE workspace_id = $3 AND experiment_id = $4")
                .bind(name)
                .bind(time)
                .bind(workspace_id)
                .bind(experiment_id)
                .execute(conn)
                .await?;
        }
        Change::ExperimentDeleted { experiment_id, time } => {
            sqlx::query(
                "UPDATE experiments SET lifecycle_stage = 'deleted', deletion_time = $1, last_update_time = CASE WHEN last_update_time > $1 THEN last_update_time ELSE $1 END WHERE workspace_id = $2 AND experiment_id = $3",
            )
            .bind(time)
            .bind(workspace_id)
            .bind(experiment_id)
            .execute(&mut *conn)
            .await?;
            // MLflow deletes an experiment's runs with it, and restores them with it.
            sqlx::query(
                "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = $1 WHERE workspace_id = $2 AND experiment_id = $3 AND lifecycle_stage = 'active'",
            )
            .bind(time)
            .bind(workspace_id)
            .bind(experiment_id)
            .execute(conn)
            .await?;
        }
        Change::ExperimentRestored { experiment_id, time } => {
            sqlx::query(
                "UPDATE experiments SET lifecycle_stage = 'active', deletion_time = NULL, last_update_time = CASE WHEN last_update_time > $1 THEN last_update_time ELSE $1 END WHERE workspace_id = $2 AND experiment_id = $3",
            )
            .bind(time)
            .bind(workspace_id)
            .bind(experiment_id)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL WHERE workspace_id = $1 AND experiment_id = $2 AND lifecycle_stage = 'deleted'",
            )
            .bind(workspace_id)
            .bind(experiment_id)
            .execute(conn)
            .await?;
        }
        Change::ExperimentTagSet { experiment_id, tag } => {
            upsert_experiment_tag(tx, workspace_id, experiment_id, tag).await?;
        }
        Change::ExperimentTagDeleted { experiment_id, key } => {
            sqlx::query(
                "DELETE FROM experiment_tags WHERE workspace_id = $1 AND experiment_id = $2 AND key = $3",
            )
            .bind(workspace_id)
            .bind(experiment_id)
            .bind(key)
            .execute(conn)
            .await?;
        }

        Change::RunCreated {
            run_id,
            experiment_id,
            run_name,
            user_id,
            start_time,
            artifact_uri,
            tags,
        } => {
            sqlx::query(
                "INSERT INTO runs (run_id, workspace_id, experiment_id, run_name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage, deleted_time) \
                 VALUES ($1, $2, $3, $4, $5, 'RUNNING', $6, NULL, $7, 'active', NULL)",
            )
            .bind(run_id)
            .bind(workspace_id)
            .bind(experiment_id)
            .bind(run_name)
            .bind(user_id)
            .bind(*start_time)
            .bind(artifact_uri)
            .execute(conn)
            .await?;
            for tag in tags {
                upsert_run_tag(tx, run_id, tag).await?;
            }
        }
        Change::RunUpdated {
            run_id,
            status,
            end_time,
            run_name,
        } => {
            if let Some(status) = status {
                sqlx::query("UPDATE runs SET status = $1 WHERE run_id = $2")
                    .bind(status.as_str())
                    .bind(run_id)
                    .execute(&mut *conn)
                    .await?;
            }
            if let Some(end_time) = end_time {
                sqlx::query("UPDATE runs SET end_time = $1 WHERE run_id = $2")
                    .bind(*end_time)
                    .bind(run_id)
                    .execute(&mut *conn)
                    .await?;
            }
            if let Some(run_name) = run_name {
                upsert_run_tag(tx, run_id, &Tag::new(RUN_NAME_TAG, run_name.clone())).await?;
            }
        }
        Change::RunDeleted { run_id, time } => {
            sqlx::query("UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = $1 WHERE run_id = $2")
                .bind(time)
                .bind(run_id)
                .execute(conn)
                .await?;
        }
        Change::RunRestored { run_id } => {
            sqlx::query("UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL WHERE run_id = $1")
                .bind(run_id)
                .execute(conn)
                .await?;
        }
        Change::RunDataLogged {
            run_id,
            metrics,
            params,
            tags,
        } => {
            insert_metrics(tx, run_id, metrics).await?;
            for param in params {
                sqlx::query(
                    // Validation refuses a changed value from a client; a value can
                    // only change here when merging a concurrent write from
                    // another region that won.
                    "INSERT INTO run_params (run_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(run_id)
                .bind(&param.key)
                .bind(&param.value)
                .execute(&mut *tx)
                .await?;
            }
            for tag in tags {
                upsert_run_tag(tx, run_id, tag).await?;
            }
        }
        Change::RunTagDeleted { run_id, key } => {
            sqlx::query("DELETE FROM run_tags WHERE run_id = $1 AND key = $2")
                .bind(run_id)
                .bind(key)
                .execute(conn)
                .await?;
        }
        Change::RunInputsLogged {
            run_id,
            datasets,
            models,
        } => {
            for input in datasets {
                let position: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM run_dataset_inputs WHERE run_id = $1")
                        .bind(run_id)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query(
                    "INSERT INTO run_dataset_inputs (run_id, name, digest, position, input) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (run_id, name, digest) DO UPDATE SET input = excluded.input",
                )
                .bind(run_id)
                .bind(&input.dataset.name)
                .bind(&input.dataset.digest)
                .bind(position)
                .bind(serde_json::to_string(input).expect("dataset inputs encode"))
                .execute(&mut *tx)
                .await?;
            }
            for model in models {
                sqlx::query(
                    "INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(run_id)
                .bind(&model.model_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        Change::RunOutputsLogged { run_id, models } => {
            for model in models {
                sqlx::query(
                    "INSERT INTO run_model_outputs (run_id, model_id, step) VALUES ($1, $2, $3) \
                     ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
                )
                .bind(run_id)
                .bind(&model.model_id)
                .bind(model.step)
                .execute(&mut *tx)
                .await?;
            }
        }

        Change::LoggedModelCreated {
            model_id,
            experiment_id,
            name,
            artifact_uri,
            status,
            creator_id,
            model_type,
            source_run_id,
            tags,
            params,
            time,
        } => {
            sqlx::query(
                "INSERT INTO logged_models (model_id, workspace_id, experiment_id, name, artifact_uri, status, status_message, creator_id, model_type, source_run_id, creation_time, last_updated_time, lifecycle_stage) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $10, $10, 'active')",
            )
            .bind(model_id)
            .bind(workspace_id)
            .bind(experiment_id)
            .bind(name)
            .bind(artifact_uri)
            .bind(status.as_str())
            .bind(creator_id)
            .bind(model_type.clone())
            .bind(source_run_id.clone())
            .bind(time)
            .execute(conn)
            .await?;
            for tag in tags {
                upsert_logged_model_tag(tx, model_id, tag).await?;
            }
            for param in params {
                upsert_logged_model_param(tx, model_id, &param.key, &param.value).await?;
            }
        }
        Change::LoggedModelUpdated {
            model_id,
            status,
            status_message,
            time,
        } => {
            sqlx::query("UPDATE logged_models SET status = $1, status_message = $2, last_updated_time = CASE WHEN last_updated_time > $3 THEN last_updated_time ELSE $3 END WHERE model_id = $4")
                .bind(status.as_str())
                .bind(status_message.clone())
                .bind(time)
                .bind(model_id)
                .execute(conn)
                .await?;
        }
        Change::LoggedModelTagsSet { model_id, tags, time } => {
            for tag in tags {
                upsert_logged_model_tag(tx, model_id, tag).await?;
            }
            touch_logged_model(tx, model_id, *time).await?;
        }
        Change::LoggedModelTagDeleted { model_id, key, time } => {
            sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
                .bind(model_id)
                .bind(key)
                .execute(conn)
                .await?;
            touch_logged_model(tx, model_id, *time).await?;
        }
        Change::LoggedModelParamsLogged {
            model_id,
            params,
            time,
        } => {
            for param in params {
                upsert_logged_model_param(tx, model_id, &param.key, &param.value).await?;
            }
            touch_logged_model(tx, model_id, *time).await?;
        }
        Change::LoggedModelDeleted { model_id, time } => {
            sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted', deletion_time = $1, last_updated_time = CASE WHEN last_updated_time > $1 THEN last_updated_time ELSE $1 END WHERE model_id = $2")
                .bind(time)
                .bind(model_id)
                .execute(conn)
                .await?;
        }

        Change::RegisteredModelCreated {
            name,
            description,
            user_id,
            tags,
            time,
        } => {
            sqlx::query(
                "INSERT INTO registered_models (workspace_id, name, description, user_id, creation_time, last_updated_time, next_version) \
                 VALUES ($1, $2, $3, $4, $5, $5, 1)",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(description)
            .bind(user_id)
            .bind(time)
            .execute(conn)
            .await?;
            for tag in tags {
                upsert_registered_model_tag(tx, workspace_id, name, tag).await?;
            }
        }
        Change::RegisteredModelRenamed { name, new_name, time } => {
            move_registered_model(tx, workspace_id, name, new_name).await?;
            touch_registered_model(tx, workspace_id, new_name, *time).await?;
        }
        Change::RegisteredModelUpdated {
            name,
            description,
            time,
        } => {
            sqlx::query("UPDATE registered_models SET description = $1, last_updated_time = CASE WHEN last_updated_time > $2 THEN last_updated_time ELSE $2 END WHERE workspace_id = $3 AND name = $4")
                .bind(description)
                .bind(time)
                .bind(workspace_id)
                .bind(name)
                .execute(conn)
                .await?;
        }
        // Soft since journal format 3 (older records read as purges): the
        // model and its versions are hidden until recovered or purged.
        // Since format 7 the deleted model moves to `kept_as` with its
        // versions, tags and aliases, and its name is free at once.
        Change::RegisteredModelDeleted { name, time, kept_as } => {
            sqlx::query(
                "UPDATE registered_models SET deletion_time = $1 WHERE workspace_id = $2 AND name = $3",
            )
            .bind(time)
            .bind(workspace_id)
            .bind(name)
            .execute(conn)
            .await?;
            if let Some(kept_as) = kept_as {
                move_registered_model(tx, workspace_id, name, kept_as).await?;
            }
        }
        Change::RegisteredModelTagSet { name, tag } => {
            upsert_registered_model_tag(tx, workspace_id, name, tag).await?;
        }
        Change::RegisteredModelTagDeleted { name, key } => {
            sqlx::query(
                "DELETE FROM registered_model_tags WHERE workspace_id = $1 AND name = $2 AND key = $3",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(key)
            .execute(conn)
            .await?;
        }
        Change::RegisteredModelAliasSet { name, alias, version } => {
            sqlx::query(
                "INSERT INTO registered_model_aliases (workspace_id, name, alias, version) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (workspace_id, name, alias) DO UPDATE SET version = excluded.version",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(alias)
            .bind(version.parse::<i64>().unwrap_or_default())
            .execute(conn)
            .await?;
        }
        Change::RegisteredModelAliasDeleted { name, alias } => {
            sqlx::query(
                "DELETE FROM registered_model_aliases WHERE workspace_id = $1 AND name = $2 AND alias = $3",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(alias)
            .execute(conn)
            .await?;
        }

        Change::ModelVersionCreated {
            name,
            version,
            source,
            storage_location,
            run_id,
            run_link,
            description,
            user_id,
            model_id,
            status,
            tags,
            time,
        } => {
            let number = version.parse::<i64>().unwrap_or_default();
            sqlx::query(
                "INSERT INTO model_versions (workspace_id, name, version, creation_time, last_updated_time, user_id, current_stage, description, source, storage_location, run_id, run_link, status, status_message, model_id) \
                 VALUES ($1, $2, $3, $4, $4, $5, 'None', $6, $7, $8, $9, $10, $11, '', $12)",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(number)
            .bind(time)
            .bind(user_id)
            .bind(description)
            .bind(source)
            .bind(storage_location)
            .bind(run_id)
            .bind(run_link)
            .bind(status.as_str())
            .bind(model_id)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE registered_models SET next_version = CASE WHEN next_version > $1 THEN next_version ELSE $1 END, last_updated_time = CASE WHEN last_updated_time > $2 THEN last_updated_time ELSE $2 END \
                 WHERE workspace_id = $3 AND name = $4",
            )
            .bind(number + 1)
            .bind(time)
            .bind(workspace_id)
            .bind(name)
            .execute(conn)
            .await?;
            for tag in tags {
                upsert_model_version_tag(tx, workspace_id, name, number, tag).await?;
            }
        }
        Change::ModelVersionUpdated {
            name,
            version,
            description,
            time,
        } => {
            sqlx::query(
                "UPDATE model_versions SET description = $1, last_updated_time = CASE WHEN last_updated_time > $2 THEN last_updated_time ELSE $2 END WHERE workspace_id = $3 AND name = $4 AND version = $5",
            )
            .bind(description)
            .bind(time)
            .bind(workspace_id)
            .bind(name)
            .bind(version.parse::<i64>().unwrap_or_default())
            .execute(conn)
            .await?;
        }
        Change::ModelVersionStageSet {
            name,
            version,
            stage,
            archived_versions,
            time,
        } => {
            let targets = std::iter::once((version, stage.as_str()))
                .chain(archived_versions.iter().map(|archived| (archived, "Archived")));
            for (target, target_stage) in targets {
                sqlx::query(
                    "UPDATE model_versions SET current_stage = $1, last_updated_time = CASE WHEN last_updated_time > $2 THEN last_updated_time ELSE $2 END WHERE workspace_id = $3 AND name = $4 AND version = $5",
                )
                .bind(target_stage)
                .bind(time)
                .bind(workspace_id)
                .bind(name)
                .bind(target.parse::<i64>().unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            }
            touch_registered_model(tx, workspace_id, name, *time).await?;
        }
        // Soft since journal format 3: aliases pointing to the version stay,
        // hidden, and come back with it unless reassigned meanwhile.
        Change::ModelVersionDeleted { name, version, time } => {
            sqlx::query(
                "UPDATE model_versions SET deletion_time = $1 WHERE workspace_id = $2 AND name = $3 AND version = $4",
            )
            .bind(time)
            .bind(workspace_id)
            .bind(name)
            .bind(version.parse::<i64>().unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            touch_registered_model(tx, workspace_id, name, *time).await?;
        }
        Change::ModelVersionTagSet { name, version, tag } => {
            upsert_model_version_tag(
                tx,
                workspace_id,
                name,
                version.parse::<i64>().unwrap_or_default(),
                tag,
            )
            .await?;
        }
        Change::ModelVersionTagDeleted { name, version, key } => {
            sqlx::query(
                "DELETE FROM model_version_tags WHERE workspace_id = $1 AND name = $2 AND version = $3 AND key = $4",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(version.parse::<i64>().unwrap_or_default())
            .bind(key)
            .execute(conn)
            .await?;
        }

        // The artifact index and the file share's index: one shape.
        Change::ArtifactWritten { time, .. } | Change::FileWritten { time, .. } => {
            let content = change.written_content().expect("both write content");
            let (table, stamp) = content_table(content.area);
            sqlx::query(&format!(
                "INSERT INTO {table} (workspace_id, path, size, sha256, {stamp}) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (workspace_id, path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, {stamp} = excluded.{stamp}"
            ))
            .bind(workspace_id)
            .bind(content.path)
            .bind(content.size)
            .bind(content.sha256)
            .bind(time)
            .execute(conn)
            .await?;
        }
        // Applied by `retention_apply` above.
        Change::WorkspaceRetentionSet { .. }
        | Change::WorkspaceQuotaSet { .. }
        | Change::WorkspacePurged { .. }
        | Change::ExperimentPurged { .. }
        | Change::ExperimentMovedOut { .. }
        | Change::RegisteredModelMovedOut { .. }
        | Change::RunPurged { .. }
        | Change::LoggedModelRestored { .. }
        | Change::LoggedModelPurged { .. }
        | Change::RegisteredModelRestored { .. }
        | Change::RegisteredModelPurged { .. }
        | Change::ModelVersionRestored { .. }
        | Change::ModelVersionPurged { .. } => {}
        // Applied by `access` above.
        Change::PrincipalCreated { .. }
        | Change::PrincipalPasswordSet { .. }
        | Change::PrincipalDisabled { .. }
        | Change::PrincipalDeleted { .. }
        | Change::TokenCreated { .. }
        | Change::TokenRevoked { .. }
        | Change::RoleAssigned { .. }
        | Change::RoleRemoved { .. } => {}
        Change::EpochBegan {
            epoch,
            primary,
            fork,
            time,
        } => {
            sqlx::query(
                "INSERT INTO epochs (epoch, primary_region, fork, began_at) VALUES ($1, $2, $3, $4) ON CONFLICT (epoch) DO NOTHING",
            )
            .bind(epoch)
            .bind(primary)
            .bind(serde_json::to_string(fork).expect("maps encode"))
            .bind(time)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE region_state SET epoch = CASE WHEN epoch > $1 THEN epoch ELSE $1 END WHERE id = 1",
            )
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
        }
        Change::OriginRecorded { origin } => {
            sqlx::query(
                "INSERT INTO transfer_origins (workspace_id, source, kind, source_id, target_id, digest, time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (workspace_id, source, kind, source_id) \
                 DO UPDATE SET target_id = excluded.target_id, digest = excluded.digest, time = excluded.time",
            )
            .bind(workspace_id)
            .bind(&origin.source)
            .bind(origin.kind.as_str())
            .bind(&origin.source_id)
            .bind(&origin.target_id)
            .bind(&origin.digest)
            .bind(origin.time)
            .execute(conn)
            .await?;
        }
        Change::ArtifactDeleted { .. } | Change::FileDeleted { .. } => {
            // A path names a file or a whole directory.
            let (area, path) = change.deleted_content().expect("both delete content");
            let (table, _) = content_table(area);
            let prefix = format!("{}/", path.trim_end_matches('/'));
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE workspace_id = $1 AND (path = $2 OR substr(path, 1, CAST($3 AS INTEGER)) = $4)"
            ))
            .bind(workspace_id)
            .bind(path)
            .bind(prefix.len() as i64)
            .bind(&prefix)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// The index table of a content area and its time column.
fn content_table(area: ContentArea) -> (&'static str, &'static str) {
    match area {
        ContentArea::Artifacts => ("artifacts", "created_at"),
        ContentArea::Files => ("files", "modified_at"),
    }
}

async fn upsert_experiment_tag(
    tx: &mut AnyConnection,
    workspace_id: &str,
    experiment_id: &str,
    tag: &Tag,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO experiment_tags (workspace_id, experiment_id, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(workspace_id)
    .bind(experiment_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn upsert_run_tag(tx: &mut AnyConnection, run_id: &str, tag: &Tag) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO run_tags (run_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(run_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut *tx)
    .await?;
    // The run name and its tag are one fact in MLflow; keep them equal.
    if tag.key == RUN_NAME_TAG {
        sqlx::query("UPDATE runs SET run_name = $1 WHERE run_id = $2")
            .bind(&tag.value)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT: a whole 1000-metric batch in one statement
/// (every statement is a round trip to the database's connection thread),
/// well under both engines' bind-parameter limits (at most 8 binds a row and
/// one for the run; SQLite allows 32766, PostgreSQL 65535).
const METRIC_ROWS_PER_STATEMENT: usize = 1000;

/// A `VALUES` list of `rows` tuples of `columns` placeholders: anonymous `?`
/// on SQLite (see `insert_metrics`), numbered `$n` from `$first` elsewhere.
pub(crate) fn values_list(rows: usize, columns: usize, first: usize, anonymous: bool) -> String {
    let mut sql = String::with_capacity(rows * columns * 4);
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                sql.push_str(&format!("${}", first + row * columns + column));
            }
        }
        sql.push(')');
    }
    sql
}

async fn insert_metrics(tx: &mut AnyConnection, run_id: &str, metrics: &[Metric]) -> StoreResult<()> {
    // SQLite gets anonymous `?` placeholders: sqlx resolves a numbered
    // placeholder by its name, and SQLite's name lookup is linear in the
    // statement's parameter count, which made binding a 900-parameter
    // statement quadratic (half the server's CPU in a 500-metric batch).
    let anonymous = tx.backend_name() == "SQLite";
    // Binding is most of the cost of a large insert (each text value is
    // copied, and freed again), so the run id is bound once per statement,
    // and metrics without a model or dataset, nearly all of them, bind no
    // empty strings for those: they are rows of five values.
    let (plain, extended): (Vec<&Metric>, Vec<&Metric>) = metrics.iter().partition(|metric| {
        metric.model_id.is_none() && metric.dataset_name.is_none() && metric.dataset_digest.is_none()
    });
    for chunk in plain.chunks(METRIC_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO metrics (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest) \
             SELECT {}, column1, column2, column3, column4, column5, '', '', '' FROM (VALUES {}) AS batch WHERE true \
             ON CONFLICT DO NOTHING",
            if anonymous { "?" } else { "$1" },
            values_list(chunk.len(), 5, 2, anonymous)
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for metric in chunk {
            query = bind_point(query, metric);
        }
        query.execute(&mut *tx).await?;
    }
    for chunk in extended.chunks(METRIC_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO metrics (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest) \
             SELECT {}, column1, column2, column3, column4, column5, column6, column7, column8 FROM (VALUES {}) AS batch WHERE true \
             ON CONFLICT DO NOTHING",
            if anonymous { "?" } else { "$1" },
            values_list(chunk.len(), 8, 2, anonymous)
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for metric in chunk {
            query = bind_point_where(query, metric);
        }
        query.execute(&mut *tx).await?;
    }

    // One statement for every key (each key appears once, as PostgreSQL's
    // multi-row upsert requires).
    let latest = latest_per_key(metrics);
    for chunk in latest.chunks(METRIC_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO latest_metrics (run_id, key, timestamp, step, value, is_nan) VALUES {} {LATEST_UPSERT}",
            values_list(chunk.len(), 6, 1, anonymous)
        );
        let mut query = sqlx::query(&sql);
        for metric in chunk {
            query = bind_point(query.bind(run_id), metric);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Binds a metric's point: its key, timestamp, step, value and NaN flag
/// (NaN stored as 0 and flagged).
pub(crate) fn bind_point<'q>(query: AnyQuery<'q>, metric: &'q Metric) -> AnyQuery<'q> {
    let (value, is_nan) = stored_value(metric.value);
    query
        .bind(&metric.key)
        .bind(metric.timestamp)
        .bind(metric.step)
        .bind(value)
        .bind(is_nan)
}

/// [`bind_point`], then where it was measured: its model and dataset
/// (empty when none).
pub(crate) fn bind_point_where<'q>(query: AnyQuery<'q>, metric: &'q Metric) -> AnyQuery<'q> {
    bind_point(query, metric)
        .bind(metric.model_id.as_deref().unwrap_or_default())
        .bind(metric.dataset_name.as_deref().unwrap_or_default())
        .bind(metric.dataset_digest.as_deref().unwrap_or_default())
}

/// How a metric upserted into `latest_metrics` replaces the value there:
/// the highest (step, timestamp, value), compared as MLflow does, with NaN
/// counted as 0.
pub(crate) const LATEST_UPSERT: &str = "ON CONFLICT (run_id, key) DO UPDATE SET timestamp = excluded.timestamp, step = excluded.step, value = excluded.value, is_nan = excluded.is_nan \
     WHERE excluded.step > latest_metrics.step \
        OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
        OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp AND excluded.value > latest_metrics.value)";

/// A batch's latest metric per key, each key once, in first-seen order:
/// folded in memory so that each key is written once.
pub(crate) fn latest_per_key(metrics: &[Metric]) -> Vec<&Metric> {
    let mut latest: Vec<&Metric> = Vec::new();
    for metric in metrics {
        match latest.iter_mut().find(|existing| existing.key == metric.key) {
            Some(existing) => {
                if sort_key(metric) > sort_key(existing) {
                    *existing = metric;
                }
            }
            None => latest.push(metric),
        }
    }
    latest
}

fn sort_key(metric: &Metric) -> (i64, i64, OrderedValue) {
    (
        metric.step,
        metric.timestamp,
        OrderedValue(stored_value(metric.value).0),
    )
}

#[derive(PartialEq, PartialOrd)]
struct OrderedValue(f64);

async fn upsert_logged_model_tag(tx: &mut AnyConnection, model_id: &str, tag: &Tag) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(model_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn upsert_logged_model_param(
    tx: &mut AnyConnection,
    model_id: &str,
    key: &str,
    value: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO logged_model_params (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(model_id)
    .bind(key)
    .bind(value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn touch_logged_model(tx: &mut AnyConnection, model_id: &str, time: i64) -> StoreResult<()> {
    sqlx::query("UPDATE logged_models SET last_updated_time = CASE WHEN last_updated_time > $1 THEN last_updated_time ELSE $1 END WHERE model_id = $2")
        .bind(time)
        .bind(model_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn upsert_registered_model_tag(
    tx: &mut AnyConnection,
    workspace_id: &str,
    name: &str,
    tag: &Tag,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO registered_model_tags (workspace_id, name, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, name, key) DO UPDATE SET value = excluded.value",
    )
    .bind(workspace_id)
    .bind(name)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn upsert_model_version_tag(
    tx: &mut AnyConnection,
    workspace_id: &str,
    name: &str,
    version: i64,
    tag: &Tag,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO model_version_tags (workspace_id, name, version, key, value) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (workspace_id, name, version, key) DO UPDATE SET value = excluded.value",
    )
    .bind(workspace_id)
    .bind(name)
    .bind(version)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves a registered model's rows, and its versions', tags' and aliases',
/// from key `from` to key `to` (a rename, a deletion set aside, a recovery).
pub(crate) async fn move_registered_model(
    tx: &mut AnyConnection,
    workspace_id: &str,
    from: &str,
    to: &str,
) -> StoreResult<()> {
    for table in [
        "registered_models",
        "registered_model_tags",
        "registered_model_aliases",
        "model_versions",
        "model_version_tags",
    ] {
        sqlx::query(&format!(
            "UPDATE {table} SET name = $1 WHERE workspace_id = $2 AND name = $3"
        ))
        .bind(to)
        .bind(workspace_id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn touch_registered_model(
    tx: &mut AnyConnection,
    workspace_id: &str,
    name: &str,
    time: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE registered_models SET last_updated_time = CASE WHEN last_updated_time > $1 THEN last_updated_time ELSE $1 END WHERE workspace_id = $2 AND name = $3")
        .bind(time)
        .bind(workspace_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
