//! Applying the changes of soft delete with retention: recoveries, retention
//! settings and purges. Called from [`super::apply::apply`] like every other
//! change, so local writes, replays and replicated records all pass here.
//!
//! A purge with `keep_artifacts` false also queues the storage prefixes of
//! what it removed in `gc_queue`: region-local bookkeeping (not state, not
//! journaled), so every region that applies the purge collects its own
//! storage, and a replay re-queues prefixes that are then found empty.

use sqlx::{AnyConnection, Row};
use tandem_core::journal::Change;

use super::ops::proxied_artifact_path;
use crate::error::StoreResult;

/// Every row of a workspace, child tables first. A table added later that
/// holds workspace rows (the file share's `files`) is one line here.
const WORKSPACE_ROWS: &[&str] = &[
    "DELETE FROM run_params WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM run_tags WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM metrics WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM latest_metrics WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM run_dataset_inputs WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM run_model_inputs WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM run_model_outputs WHERE run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
    "DELETE FROM logged_model_tags WHERE model_id IN (SELECT model_id FROM logged_models WHERE workspace_id = $1)",
    "DELETE FROM logged_model_params WHERE model_id IN (SELECT model_id FROM logged_models WHERE workspace_id = $1)",
    "DELETE FROM runs WHERE workspace_id = $1",
    "DELETE FROM logged_models WHERE workspace_id = $1",
    "DELETE FROM experiment_tags WHERE workspace_id = $1",
    "DELETE FROM experiments WHERE workspace_id = $1",
    "DELETE FROM model_version_tags WHERE workspace_id = $1",
    "DELETE FROM model_versions WHERE workspace_id = $1",
    "DELETE FROM registered_model_aliases WHERE workspace_id = $1",
    "DELETE FROM registered_model_tags WHERE workspace_id = $1",
    "DELETE FROM registered_models WHERE workspace_id = $1",
    "DELETE FROM artifacts WHERE workspace_id = $1",
    // The rows only: the bytes stay in storage to be salvaged.
    "DELETE FROM files WHERE workspace_id = $1",
    "DELETE FROM transfer_origins WHERE workspace_id = $1",
    "DELETE FROM workspaces WHERE workspace_id = $1",
];

const RUN_ROWS: &[&str] = &[
    "run_params",
    "run_tags",
    "metrics",
    "latest_metrics",
    "run_dataset_inputs",
    "run_model_inputs",
    "run_model_outputs",
    "runs",
];

const LOGGED_MODEL_ROWS: &[&str] = &["logged_model_tags", "logged_model_params", "logged_models"];

/// The storage prefix of a workspace's artifacts (never its files).
pub(crate) fn workspace_artifacts_prefix(workspace_id: &str) -> String {
    format!("workspaces/{workspace_id}/artifacts/")
}

/// Applies `change` if it is one of retention's; returns whether it was.
pub(crate) async fn apply(tx: &mut AnyConnection, workspace_id: &str, change: &Change) -> StoreResult<bool> {
    match change {
        Change::WorkspaceRetentionSet {
            retention_days,
            purge_protection,
            time,
        } => {
            // Purge protection only ever turns on.
            sqlx::query(
                "UPDATE workspaces SET retention_days = $1, purge_protection = CASE WHEN purge_protection <> 0 THEN 1 ELSE $2 END, \
                 last_update_time = CASE WHEN last_update_time > $3 THEN last_update_time ELSE $3 END WHERE workspace_id = $4",
            )
            .bind(retention_days)
            .bind(i64::from(*purge_protection))
            .bind(time)
            .bind(workspace_id)
            .execute(&mut *tx)
            .await?;
        }
        Change::WorkspaceQuotaSet { storage_quota, time } => {
            sqlx::query(
                "UPDATE workspaces SET storage_quota = $1, \
                 last_update_time = CASE WHEN last_update_time > $2 THEN last_update_time ELSE $2 END WHERE workspace_id = $3",
            )
            .bind(storage_quota)
            .bind(time)
            .bind(workspace_id)
            .execute(&mut *tx)
            .await?;
        }
        Change::WorkspacePurged { keep_artifacts, time } => {
            for statement in WORKSPACE_ROWS {
                sqlx::query(statement)
                    .bind(workspace_id)
                    .execute(&mut *tx)
                    .await?;
            }
            if !keep_artifacts {
                enqueue(tx, workspace_id, &workspace_artifacts_prefix(workspace_id), *time).await?;
            }
        }
        Change::ExperimentPurged {
            experiment_id,
            keep_artifacts,
            time,
        } => purge_experiment(tx, workspace_id, experiment_id, *keep_artifacts, *time).await?,
        // What moved is gone from here as a purge is; its bytes, copied to
        // the destination first, are collected here.
        Change::ExperimentMovedOut {
            experiment_id, time, ..
        } => purge_experiment(tx, workspace_id, experiment_id, false, *time).await?,
        Change::RegisteredModelMovedOut { name, .. } => {
            purge_registered_model(tx, workspace_id, name).await?
        }
        Change::RunPurged {
            run_id,
            keep_artifacts,
            time,
        } => purge_run(tx, workspace_id, run_id, *keep_artifacts, *time).await?,
        Change::LoggedModelRestored { model_id, time } => {
            sqlx::query(
                "UPDATE logged_models SET lifecycle_stage = 'active', deletion_time = NULL, \
                 last_updated_time = CASE WHEN last_updated_time > $1 THEN last_updated_time ELSE $1 END WHERE model_id = $2",
            )
            .bind(time)
            .bind(model_id)
            .execute(&mut *tx)
            .await?;
        }
        Change::LoggedModelPurged {
            model_id,
            keep_artifacts,
            time,
        } => purge_logged_model(tx, workspace_id, model_id, *keep_artifacts, *time).await?,
        Change::RegisteredModelRestored { name, kept_as, .. } => {
            if let Some(kept_as) = kept_as {
                super::apply::move_registered_model(tx, workspace_id, kept_as, name).await?;
            }
            sqlx::query(
                "UPDATE registered_models SET deletion_time = NULL WHERE workspace_id = $1 AND name = $2",
            )
            .bind(workspace_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        Change::RegisteredModelPurged { name, .. } => purge_registered_model(tx, workspace_id, name).await?,
        Change::ModelVersionRestored { name, version, .. } => {
            sqlx::query(
                "UPDATE model_versions SET deletion_time = NULL WHERE workspace_id = $1 AND name = $2 AND version = $3",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(version.parse::<i64>().unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        Change::ModelVersionPurged { name, version, .. } => {
            let number = version.parse::<i64>().unwrap_or_default();
            for table in ["model_versions", "model_version_tags", "registered_model_aliases"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE workspace_id = $1 AND name = $2 AND version = $3"
                ))
                .bind(workspace_id)
                .bind(name)
                .bind(number)
                .execute(&mut *tx)
                .await?;
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Removes an experiment with its runs and logged models.
async fn purge_experiment(
    tx: &mut AnyConnection,
    workspace_id: &str,
    experiment_id: &str,
    keep_artifacts: bool,
    time: i64,
) -> StoreResult<()> {
    let runs: Vec<String> =
        sqlx::query_scalar("SELECT run_id FROM runs WHERE workspace_id = $1 AND experiment_id = $2")
            .bind(workspace_id)
            .bind(experiment_id)
            .fetch_all(&mut *tx)
            .await?;
    for run_id in runs {
        purge_run(tx, workspace_id, &run_id, keep_artifacts, time).await?;
    }
    let models: Vec<String> = sqlx::query_scalar(
        "SELECT model_id FROM logged_models WHERE workspace_id = $1 AND experiment_id = $2",
    )
    .bind(workspace_id)
    .bind(experiment_id)
    .fetch_all(&mut *tx)
    .await?;
    for model_id in models {
        purge_logged_model(tx, workspace_id, &model_id, keep_artifacts, time).await?;
    }
    for table in ["experiment_tags", "experiments"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE workspace_id = $1 AND experiment_id = $2"
        ))
        .bind(workspace_id)
        .bind(experiment_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Removes a registered model with its versions, tags and aliases.
async fn purge_registered_model(tx: &mut AnyConnection, workspace_id: &str, name: &str) -> StoreResult<()> {
    for table in [
        "registered_models",
        "registered_model_tags",
        "registered_model_aliases",
        "model_versions",
        "model_version_tags",
    ] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE workspace_id = $1 AND name = $2"
        ))
        .bind(workspace_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn purge_run(
    tx: &mut AnyConnection,
    workspace_id: &str,
    run_id: &str,
    keep_artifacts: bool,
    time: i64,
) -> StoreResult<()> {
    let uri: Option<String> =
        sqlx::query_scalar("SELECT artifact_uri FROM runs WHERE run_id = $1 AND workspace_id = $2")
            .bind(run_id)
            .bind(workspace_id)
            .fetch_optional(&mut *tx)
            .await?;
    for table in RUN_ROWS {
        sqlx::query(&format!("DELETE FROM {table} WHERE run_id = $1"))
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
    }
    forget_artifacts(tx, workspace_id, uri.as_deref(), keep_artifacts, time).await
}

async fn purge_logged_model(
    tx: &mut AnyConnection,
    workspace_id: &str,
    model_id: &str,
    keep_artifacts: bool,
    time: i64,
) -> StoreResult<()> {
    let uri: Option<String> = sqlx::query_scalar(
        "SELECT artifact_uri FROM logged_models WHERE model_id = $1 AND workspace_id = $2",
    )
    .bind(model_id)
    .bind(workspace_id)
    .fetch_optional(&mut *tx)
    .await?;
    for table in LOGGED_MODEL_ROWS {
        sqlx::query(&format!("DELETE FROM {table} WHERE model_id = $1"))
            .bind(model_id)
            .execute(&mut *tx)
            .await?;
    }
    forget_artifacts(tx, workspace_id, uri.as_deref(), keep_artifacts, time).await
}

/// Removes the artifact index rows under a purged owner's root and, unless
/// they are kept, queues the root for collection. Roots outside the proxy's
/// storage (an experiment's custom location) are not this region's to remove.
async fn forget_artifacts(
    tx: &mut AnyConnection,
    workspace_id: &str,
    artifact_uri: Option<&str>,
    keep_artifacts: bool,
    time: i64,
) -> StoreResult<()> {
    let Some(root) = artifact_uri.and_then(proxied_artifact_path) else {
        return Ok(());
    };
    if root.is_empty() {
        return Ok(());
    }
    let under = format!("{root}/");
    // Another owner's artifacts may live under this root (an experiment's
    // location inside a run's root, from before such locations were
    // refused): their index rows stay, and the collector spares them.
    let protected = protected_roots(tx, workspace_id, &under).await?;
    if !protected.is_empty() {
        let paths: Vec<String> = sqlx::query_scalar(
            "SELECT path FROM artifacts WHERE workspace_id = $1 AND (path = $2 OR substr(path, 1, CAST($3 AS INTEGER)) = $4)",
        )
        .bind(workspace_id)
        .bind(&root)
        .bind(under.len() as i64)
        .bind(&under)
        .fetch_all(&mut *tx)
        .await?;
        for path in paths.iter().filter(|path| !is_protected(&protected, path)) {
            sqlx::query("DELETE FROM artifacts WHERE workspace_id = $1 AND path = $2")
                .bind(workspace_id)
                .bind(path)
                .execute(&mut *tx)
                .await?;
        }
        if !keep_artifacts {
            let prefix = format!("{}{under}", workspace_artifacts_prefix(workspace_id));
            enqueue(tx, workspace_id, &prefix, time).await?;
        }
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM artifacts WHERE workspace_id = $1 AND (path = $2 OR substr(path, 1, CAST($3 AS INTEGER)) = $4)",
    )
    .bind(workspace_id)
    .bind(&root)
    .bind(under.len() as i64)
    .bind(&under)
    .execute(&mut *tx)
    .await?;
    if !keep_artifacts {
        let prefix = format!("{}{under}", workspace_artifacts_prefix(workspace_id));
        enqueue(tx, workspace_id, &prefix, time).await?;
    }
    Ok(())
}

async fn enqueue(tx: &mut AnyConnection, workspace_id: &str, prefix: &str, time: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO gc_queue (prefix, workspace_id, enqueued_at, attempts, next_attempt_at) VALUES ($1, $2, $3, 0, 0) \
         ON CONFLICT (prefix) DO NOTHING",
    )
    .bind(prefix)
    .bind(workspace_id)
    .bind(time)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Whether `path` lies in (or is) one of `roots`.
pub(crate) fn is_protected(roots: &[String], path: &str) -> bool {
    roots
        .iter()
        .any(|root| path == root || path.starts_with(&format!("{root}/")))
}

/// `%` and `_` are LIKE's wildcards; `\\` escapes them.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The artifact roots (paths in the workspace's proxied storage) of every
/// run, logged model and model version still known to the workspace that
/// lie under `under` (a path ending in `/`) or are it: what collecting
/// `under` must never remove. Deleted but unpurged owners count: they can
/// still be recovered.
pub(crate) async fn protected_roots(
    conn: &mut AnyConnection,
    workspace_id: &str,
    under: &str,
) -> StoreResult<Vec<String>> {
    // LIKE narrows the rows (the URI holds the path after its scheme); the
    // exact test is on the parsed path.
    let pattern = format!("%{}%", like_escape(under.trim_end_matches('/')));
    let queries = [
        "SELECT artifact_uri AS uri FROM runs WHERE workspace_id = $1 AND artifact_uri LIKE $2 ESCAPE '\\'",
        "SELECT artifact_uri AS uri FROM logged_models WHERE workspace_id = $1 AND artifact_uri LIKE $2 ESCAPE '\\'",
        "SELECT storage_location AS uri FROM model_versions WHERE workspace_id = $1 AND storage_location LIKE $2 ESCAPE '\\'",
        "SELECT source AS uri FROM model_versions WHERE workspace_id = $1 AND source LIKE $2 ESCAPE '\\'",
    ];
    let mut roots = Vec::new();
    for query in queries {
        let rows = sqlx::query(query)
            .bind(workspace_id)
            .bind(&pattern)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            let uri: Option<String> = row.try_get("uri")?;
            if let Some(root) = uri.as_deref().and_then(proxied_artifact_path) {
                // Under it, or it exactly: an owner whose root is the queued
                // prefix itself (a run moved out and back, whose old root
                // was queued when it left) holds all of it.
                let inside = root.starts_with(under) || root == under.trim_end_matches('/');
                if inside && !roots.contains(&root) {
                    roots.push(root);
                }
            }
        }
    }
    Ok(roots)
}

/// Bytes of artifacts and files workspace `workspace_id` holds.
pub(crate) async fn storage_used(conn: &mut AnyConnection, workspace_id: &str) -> StoreResult<i64> {
    let artifacts: Option<i64> =
        sqlx::query_scalar("SELECT CAST(SUM(size) AS BIGINT) FROM artifacts WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(&mut *conn)
            .await?;
    let files: Option<i64> =
        sqlx::query_scalar("SELECT CAST(SUM(size) AS BIGINT) FROM files WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(artifacts.unwrap_or(0) + files.unwrap_or(0))
}

/// Refuses a write of `size` bytes at `path` of `table` (`artifacts` or
/// `files`) that would take the workspace past its storage quota (what is
/// at `path` now is replaced, so it does not count). Run under the writer
/// lock, so concurrent uploads cannot pass it together.
pub(crate) async fn check_quota(
    conn: &mut AnyConnection,
    workspace_id: &str,
    table: &str,
    path: &str,
    size: i64,
) -> StoreResult<()> {
    let row = sqlx::query("SELECT name, storage_quota FROM workspaces WHERE workspace_id = $1")
        .bind(workspace_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let Some(quota) = row.try_get::<Option<i64>, _>("storage_quota")? else {
        return Ok(());
    };
    let name: String = row.try_get("name")?;
    let replaced: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT size FROM {table} WHERE workspace_id = $1 AND path = $2"
    ))
    .bind(workspace_id)
    .bind(path)
    .fetch_optional(&mut *conn)
    .await?;
    let used = storage_used(conn, workspace_id).await?;
    let after = used - replaced.unwrap_or(0) + size;
    if after > quota {
        return Err(crate::StoreError::Domain(tandem_core::Error::new(
            tandem_core::ErrorKind::StorageFull,
            quota_message(&name, quota, used, size),
        )));
    }
    Ok(())
}

/// What a refusal for the quota says: the quota, the usage, the request,
/// and how to get room.
pub(crate) fn quota_message(name: &str, quota: i64, used: i64, size: i64) -> String {
    format!(
        "Workspace '{name}' is over its storage quota: {quota} bytes allowed, {used} in use, this upload needs {size}; \
         nothing was written. Delete (and purge) artifacts or files, or raise the quota: \
         tandem workspace update {name} --storage-quota <bytes>"
    )
}
