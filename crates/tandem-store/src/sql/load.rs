//! Reading entities back from rows. Every function takes any executor so the
//! same code serves plain reads and reads inside a write's transaction.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};
use tandem_core::model::*;

use crate::error::{StoreError, StoreResult};

fn stage(value: &str) -> StoreResult<LifecycleStage> {
    LifecycleStage::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown lifecycle stage '{value}'")))
}

pub(crate) fn metric_value(value: f64, is_nan: i64) -> f64 {
    if is_nan != 0 {
        f64::NAN
    } else {
        value
    }
}

/// One metric point of `run_id` from a row of the `metrics` table.
pub(crate) fn metric_row(row: &sqlx::any::AnyRow, run_id: &str) -> StoreResult<Metric> {
    let model_id: String = row.try_get("model_id")?;
    let dataset_name: String = row.try_get("dataset_name")?;
    let dataset_digest: String = row.try_get("dataset_digest")?;
    Ok(Metric {
        key: row.try_get("key")?,
        value: metric_value(row.try_get("value")?, row.try_get("is_nan")?),
        timestamp: row.try_get("timestamp")?,
        step: row.try_get("step")?,
        dataset_name: (!dataset_name.is_empty()).then_some(dataset_name),
        dataset_digest: (!dataset_digest.is_empty()).then_some(dataset_digest),
        model_id: (!model_id.is_empty()).then_some(model_id),
        run_id: Some(run_id.to_string()),
    })
}

/// Runs `sql` with `$1` = the workspace id and `arguments` as `$2`, `$3`, ...
pub(crate) async fn fetch<'e, E>(
    executor: E,
    sql: &str,
    workspace_id: &str,
    arguments: &[String],
) -> StoreResult<Vec<AnyRow>>
where
    E: Executor<'e, Database = Any>,
{
    let mut query = sqlx::query(sql).bind(workspace_id.to_string());
    for argument in arguments {
        query = query.bind(argument.clone());
    }
    Ok(query.fetch_all(executor).await?)
}

pub(crate) fn workspace_from_row(row: &AnyRow) -> StoreResult<Workspace> {
    Ok(Workspace {
        workspace_id: row.try_get("workspace_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        creation_time: row.try_get("creation_time")?,
        last_update_time: row.try_get("last_update_time")?,
        lifecycle_stage: stage(&row.try_get::<String, _>("lifecycle_stage")?)?,
        deletion_time: row.try_get("deletion_time")?,
        retention_days: row.try_get("retention_days")?,
        purge_protection: row.try_get::<i64, _>("purge_protection")? != 0,
        storage_quota: row.try_get("storage_quota")?,
        purge_after: row.try_get::<Option<i64>, _>("deletion_time")?.map(|time| {
            purge_after(
                time,
                row.try_get("retention_days").unwrap_or(DEFAULT_RETENTION_DAYS),
            )
        }),
    })
}

pub(crate) const WORKSPACE_COLUMNS: &str =
    "workspace_id, name, description, creation_time, last_update_time, lifecycle_stage, deletion_time, retention_days, purge_protection, storage_quota";

pub(crate) async fn experiment<'e, E>(
    executor: E,
    workspace_id: &str,
    experiment_id: &str,
) -> StoreResult<Option<Experiment>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let rows = experiments_where(
        executor,
        workspace_id,
        "AND experiment_id = $2",
        Some(experiment_id),
    )
    .await?;
    Ok(rows.into_iter().next())
}

pub(crate) async fn experiment_by_name<'e, E>(
    executor: E,
    workspace_id: &str,
    name: &str,
) -> StoreResult<Option<Experiment>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let rows = experiments_where(executor, workspace_id, "AND name = $2", Some(name)).await?;
    Ok(rows.into_iter().next())
}

pub(crate) async fn experiments_where<'e, E>(
    executor: E,
    workspace_id: &str,
    condition: &str,
    argument: Option<&str>,
) -> StoreResult<Vec<Experiment>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let sql = experiments_sql(condition);
    let mut query = sqlx::query(&sql).bind(workspace_id);
    if let Some(argument) = argument {
        query = query.bind(argument);
    }
    let rows = query.fetch_all(executor).await?;
    let tag_sql = experiment_tags_sql(condition);
    let mut tag_query = sqlx::query(&tag_sql).bind(workspace_id);
    if let Some(argument) = argument {
        tag_query = tag_query.bind(argument);
    }
    let mut tags = Vec::new();
    for row in tag_query.fetch_all(executor).await? {
        tags.push((
            row.try_get("experiment_id")?,
            Tag::new(
                row.try_get::<String, _>("key")?,
                row.try_get::<String, _>("value")?,
            ),
        ));
    }
    let experiments = rows
        .iter()
        .map(|row| {
            Ok(Experiment {
                tags: Vec::new(),
                experiment_id: row.try_get("experiment_id")?,
                name: row.try_get("name")?,
                artifact_location: row.try_get("artifact_location")?,
                lifecycle_stage: stage(&row.try_get::<String, _>("lifecycle_stage")?)?,
                creation_time: row.try_get("creation_time")?,
                last_update_time: row.try_get("last_update_time")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(with_tags(experiments, tags))
}

fn experiments_sql(condition: &str) -> String {
    format!(
        "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments WHERE workspace_id = $1 {condition}"
    )
}

fn experiment_tags_sql(condition: &str) -> String {
    format!(
        "SELECT experiment_id, key, value FROM experiment_tags WHERE workspace_id = $1 AND experiment_id IN (SELECT experiment_id FROM experiments WHERE workspace_id = $1 {condition}) ORDER BY key"
    )
}

/// Each experiment with its tags (in the order given).
fn with_tags(mut experiments: Vec<Experiment>, tags: Vec<(String, Tag)>) -> Vec<Experiment> {
    let mut by_id: HashMap<String, Vec<Tag>> = HashMap::new();
    for (experiment_id, tag) in tags {
        by_id.entry(experiment_id).or_default().push(tag);
    }
    for experiment in &mut experiments {
        experiment.tags = by_id.remove(&experiment.experiment_id).unwrap_or_default();
    }
    experiments
}

/// [`experiments_where`] read through SQLite's C API (a search reads the
/// whole workspace: sqlx's per-row hand-off would cost several times the
/// read). `condition` takes no arguments.
pub(crate) async fn experiments_where_sqlite(
    pool: &sqlx::SqlitePool,
    workspace_id: &str,
    condition: &str,
) -> StoreResult<Vec<Experiment>> {
    use super::sqlite_reader::rows;
    let mut tags = Vec::new();
    for row in rows(pool, &experiment_tags_sql(condition), &[workspace_id]).await? {
        let [experiment_id, key, value]: [_; 3] = row
            .try_into()
            .map_err(|_| StoreError::Corrupt("an experiment tag row of the wrong width".to_string()))?;
        tags.push((experiment_id.text()?, Tag::new(key.text()?, value.text()?)));
    }
    let experiments = rows(pool, &experiments_sql(condition), &[workspace_id])
        .await?
        .into_iter()
        .map(|row| {
            let [id, name, location, lifecycle, created, updated]: [_; 6] = row
                .try_into()
                .map_err(|_| StoreError::Corrupt("an experiment row of the wrong width".to_string()))?;
            Ok(Experiment {
                tags: Vec::new(),
                experiment_id: id.text()?,
                name: name.text()?,
                artifact_location: location.text()?,
                lifecycle_stage: stage(&lifecycle.text()?)?,
                creation_time: created.int()?,
                last_update_time: updated.int()?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(with_tags(experiments, tags))
}

/// The run row alone, with the workspace it belongs to.
pub(crate) async fn run_info<'e, E>(executor: E, run_id: &str) -> StoreResult<Option<(String, RunInfo)>>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT run_id, workspace_id, experiment_id, run_name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage FROM runs WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_optional(executor)
    .await?;
    row.map(|row| Ok((row.try_get("workspace_id")?, run_info_from_row(&row)?)))
        .transpose()
}

fn run_info_from_row(row: &AnyRow) -> StoreResult<RunInfo> {
    let run_id: String = row.try_get("run_id")?;
    let status: String = row.try_get("status")?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        run_name: row.try_get("run_name")?,
        experiment_id: row.try_get("experiment_id")?,
        user_id: row.try_get("user_id")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown run status '{status}'")))?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        artifact_uri: row.try_get("artifact_uri")?,
        lifecycle_stage: stage(&row.try_get::<String, _>("lifecycle_stage")?)?,
    })
}

/// Loads complete runs selected by `condition` on the `runs` table (aliased
/// `r`), binding `arguments` after `$1` = workspace id.
pub(crate) async fn runs_where<'e, E>(
    executor: E,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<Run>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    runs_where_needing(executor, workspace_id, condition, arguments, None).await
}

/// `AND key IN ($n, …)` after the `arguments` already bound, and the
/// arguments with `keys` appended; None when no key is wanted.
fn keys_in(arguments: &[String], keys: &std::collections::BTreeSet<String>) -> Option<(String, Vec<String>)> {
    if keys.is_empty() {
        return None;
    }
    let placeholders: Vec<String> = (0..keys.len())
        .map(|i| format!("${}", arguments.len() + 2 + i))
        .collect();
    let mut bound = arguments.to_vec();
    bound.extend(keys.iter().cloned());
    Some((format!(" AND key IN ({})", placeholders.join(", ")), bound))
}

/// The runs matching `condition`, whole (`needs` None), or with only what a
/// search needs to filter and order them: their info and the metric, param
/// and tag keys it names (and datasets if it compares them).
pub(crate) async fn runs_where_needing<'e, E>(
    executor: E,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
    needs: Option<&tandem_core::search::RunSearchNeeds>,
) -> StoreResult<Vec<Run>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let selection = format!("SELECT r.run_id FROM runs r WHERE r.workspace_id = $1 {condition}");
    let run_sql = format!(
        "SELECT run_id, workspace_id, experiment_id, run_name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage FROM runs r WHERE r.workspace_id = $1 {condition}"
    );
    // Per table: the keys to read (all: "", none: None).
    let restrict =
        |keys: fn(&tandem_core::search::RunSearchNeeds) -> &std::collections::BTreeSet<String>| match needs {
            None => Some((String::new(), arguments.to_vec())),
            Some(needs) => keys_in(arguments, keys(needs)),
        };
    let whole = needs.is_none();
    let want_datasets = needs.is_none_or(|needs| needs.datasets);

    let run_rows = fetch(executor, &run_sql, workspace_id, arguments).await?;
    if run_rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut data: HashMap<String, (RunData, RunInputs, RunOutputs)> = HashMap::new();
    if let Some((keys, bound)) = restrict(|needs| &needs.metrics) {
        let sql = format!(
            "SELECT run_id, key, timestamp, step, value, is_nan FROM latest_metrics WHERE run_id IN ({selection}){keys} ORDER BY key"
        );
        for row in fetch(executor, &sql, workspace_id, &bound).await? {
            let entry = data.entry(row.try_get("run_id")?).or_default();
            entry.0.metrics.push(Metric {
                key: row.try_get("key")?,
                value: metric_value(row.try_get("value")?, row.try_get("is_nan")?),
                timestamp: row.try_get("timestamp")?,
                step: row.try_get("step")?,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            });
        }
    }
    if let Some((keys, bound)) = restrict(|needs| &needs.params) {
        let sql = format!(
            "SELECT run_id, key, value FROM run_params WHERE run_id IN ({selection}){keys} ORDER BY key"
        );
        for row in fetch(executor, &sql, workspace_id, &bound).await? {
            let entry = data.entry(row.try_get("run_id")?).or_default();
            entry.0.params.push(Param {
                key: row.try_get("key")?,
                value: row.try_get("value")?,
            });
        }
    }
    if let Some((keys, bound)) = restrict(|needs| &needs.tags) {
        let sql = format!(
            "SELECT run_id, key, value FROM run_tags WHERE run_id IN ({selection}){keys} ORDER BY key"
        );
        for row in fetch(executor, &sql, workspace_id, &bound).await? {
            let entry = data.entry(row.try_get("run_id")?).or_default();
            entry.0.tags.push(Tag {
                key: row.try_get("key")?,
                value: row.try_get("value")?,
            });
        }
    }
    if want_datasets {
        let sql = format!(
            "SELECT run_id, input FROM run_dataset_inputs WHERE run_id IN ({selection}) ORDER BY position"
        );
        for row in fetch(executor, &sql, workspace_id, arguments).await? {
            let entry = data.entry(row.try_get("run_id")?).or_default();
            let input: String = row.try_get("input")?;
            entry.1.dataset_inputs.push(
                serde_json::from_str(&input)
                    .map_err(|err| StoreError::Corrupt(format!("dataset input: {err}")))?,
            );
        }
    }
    if whole {
        let sql = format!(
            "SELECT run_id, model_id FROM run_model_inputs WHERE run_id IN ({selection}) ORDER BY model_id"
        );
        for row in fetch(executor, &sql, workspace_id, arguments).await? {
            let entry = data.entry(row.try_get("run_id")?).or_default();
            entry.1.model_inputs.push(ModelInput {
                model_id: row.try_get("model_id")?,
            });
        }
        let sql = format!(
            "SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id IN ({selection}) ORDER BY model_id"
        );
        for row in fetch(executor, &sql, workspace_id, arguments).await? {
            let entry = data.entry(row.try_get("run_id")?).or_default();
            entry.2.model_outputs.push(ModelOutput {
                model_id: row.try_get("model_id")?,
                step: row.try_get("step")?,
            });
        }
    }
    run_rows
        .iter()
        .map(|row| {
            let info = run_info_from_row(row)?;
            let (data, inputs, outputs) = data.remove(&info.run_id).unwrap_or_default();
            Ok(Run {
                info,
                data,
                inputs,
                outputs,
            })
        })
        .collect()
}

pub(crate) async fn run<'e, E>(executor: E, workspace_id: &str, run_id: &str) -> StoreResult<Option<Run>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let runs = runs_where(executor, workspace_id, "AND r.run_id = $2", &[run_id.to_string()]).await?;
    Ok(runs.into_iter().next())
}

pub(crate) async fn logged_models_where<'e, E>(
    executor: E,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<LoggedModel>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let selection = format!("SELECT m.model_id FROM logged_models m WHERE m.workspace_id = $1 {condition}");
    let model_rows = fetch(
        executor,
        &format!(
            "SELECT model_id, experiment_id, name, artifact_uri, status, status_message, creator_id, model_type, source_run_id, creation_time, last_updated_time, lifecycle_stage \
             FROM logged_models m WHERE m.workspace_id = $1 {condition}"
        ),
        workspace_id,
        arguments,
    )
    .await?;
    if model_rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut tags: HashMap<String, Vec<Tag>> = HashMap::new();
    for row in fetch(
        executor,
        &format!(
            "SELECT model_id, key, value FROM logged_model_tags WHERE model_id IN ({selection}) ORDER BY key"
        ),
        workspace_id,
        arguments,
    )
    .await?
    {
        tags.entry(row.try_get("model_id")?).or_default().push(Tag {
            key: row.try_get("key")?,
            value: row.try_get("value")?,
        });
    }
    let mut params: HashMap<String, Vec<Param>> = HashMap::new();
    for row in fetch(
        executor,
        &format!("SELECT model_id, key, value FROM logged_model_params WHERE model_id IN ({selection}) ORDER BY key"),
        workspace_id,
        arguments,
    )
    .await?
    {
        params
            .entry(row.try_get("model_id")?)
            .or_default()
            .push(Param { key: row.try_get("key")?, value: row.try_get("value")? });
    }
    // A logged model's metrics are the metrics logged with its id: the latest
    // per (key, dataset) as MLflow reports them.
    let mut metrics: HashMap<String, Vec<Metric>> = HashMap::new();
    for row in fetch(
        executor,
        &format!(
            "SELECT run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics \
             WHERE model_id <> '' AND model_id IN ({selection}) ORDER BY key, step, timestamp"
        ),
        workspace_id,
        arguments,
    )
    .await?
    {
        let dataset_name: String = row.try_get("dataset_name")?;
        let dataset_digest: String = row.try_get("dataset_digest")?;
        let metric = Metric {
            key: row.try_get("key")?,
            value: metric_value(row.try_get("value")?, row.try_get("is_nan")?),
            timestamp: row.try_get("timestamp")?,
            step: row.try_get("step")?,
            dataset_name: (!dataset_name.is_empty()).then_some(dataset_name),
            dataset_digest: (!dataset_digest.is_empty()).then_some(dataset_digest),
            model_id: Some(row.try_get("model_id")?),
            run_id: Some(row.try_get("run_id")?),
        };
        let list = metrics.entry(metric.model_id.clone().unwrap_or_default()).or_default();
        match list.iter_mut().find(|existing| {
            existing.key == metric.key
                && existing.dataset_name == metric.dataset_name
                && existing.dataset_digest == metric.dataset_digest
        }) {
            // Rows arrive ordered by step then timestamp, so the last one wins.
            Some(existing) => *existing = metric,
            None => list.push(metric),
        }
    }
    let mut registrations: HashMap<String, Vec<LoggedModelRegistration>> = HashMap::new();
    for row in fetch(
        executor,
        &format!(
            "SELECT model_id, name, version FROM model_versions WHERE workspace_id = $1 AND model_id IN ({selection}) ORDER BY name, version"
        ),
        workspace_id,
        arguments,
    )
    .await?
    {
        registrations.entry(row.try_get("model_id")?).or_default().push(LoggedModelRegistration {
            name: row.try_get("name")?,
            version: row.try_get::<i64, _>("version")?.to_string(),
        });
    }
    model_rows
        .iter()
        .map(|row| {
            let model_id: String = row.try_get("model_id")?;
            let status: String = row.try_get("status")?;
            Ok(LoggedModel {
                info: LoggedModelInfo {
                    experiment_id: row.try_get("experiment_id")?,
                    name: row.try_get("name")?,
                    creation_timestamp_ms: row.try_get("creation_time")?,
                    last_updated_timestamp_ms: row.try_get("last_updated_time")?,
                    artifact_uri: row.try_get("artifact_uri")?,
                    status: LoggedModelStatus::parse(&status).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown logged model status '{status}'"))
                    })?,
                    creator_id: row.try_get("creator_id")?,
                    model_type: row.try_get("model_type")?,
                    source_run_id: row.try_get("source_run_id")?,
                    status_message: row.try_get("status_message")?,
                    tags: tags.remove(&model_id).unwrap_or_default(),
                    registrations: registrations.remove(&model_id).unwrap_or_default(),
                    lifecycle_stage: stage(&row.try_get::<String, _>("lifecycle_stage")?)?,
                    model_id: model_id.clone(),
                },
                data: LoggedModelData {
                    params: params.remove(&model_id).unwrap_or_default(),
                    metrics: metrics.remove(&model_id).unwrap_or_default(),
                },
            })
        })
        .collect()
}

/// Soft-deleted versions, and every version of a soft-deleted registered
/// model, are absent to MLflow's API: this condition (on `v`) keeps them out.
pub(crate) const LIVE_VERSION: &str =
    "AND v.deletion_time IS NULL AND EXISTS (SELECT 1 FROM registered_models lm \
     WHERE lm.workspace_id = v.workspace_id AND lm.name = v.name AND lm.deletion_time IS NULL)";

/// Aliases of live versions only: an alias pointing to a deleted version is
/// hidden (its row stays, so it comes back when the version is recovered,
/// unless it was reassigned meanwhile).
const LIVE_ALIASES: &str = "SELECT a.name, a.alias, a.version FROM registered_model_aliases a WHERE a.workspace_id = $1 \
     AND EXISTS (SELECT 1 FROM model_versions v WHERE v.workspace_id = a.workspace_id AND v.name = a.name AND v.version = a.version \
     AND v.deletion_time IS NULL AND EXISTS (SELECT 1 FROM registered_models lm WHERE lm.workspace_id = v.workspace_id \
     AND lm.name = v.name AND lm.deletion_time IS NULL)) ORDER BY a.alias";

pub(crate) async fn model_versions_where<'e, E>(
    executor: E,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<ModelVersion>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let rows = fetch(
        executor,
        &format!(
            "SELECT name, version, creation_time, last_updated_time, user_id, current_stage, description, source, run_id, run_link, status, status_message, model_id \
             FROM model_versions v WHERE v.workspace_id = $1 {LIVE_VERSION} {condition} ORDER BY name, version"
        ),
        workspace_id,
        arguments,
    )
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut tags: HashMap<(String, i64), Vec<Tag>> = HashMap::new();
    let tag_sql = format!(
        "SELECT t.name, t.version, t.key, t.value FROM model_version_tags t WHERE t.workspace_id = $1 AND EXISTS \
         (SELECT 1 FROM model_versions v WHERE v.workspace_id = $1 AND v.name = t.name AND v.version = t.version {LIVE_VERSION} {condition}) ORDER BY t.key"
    );
    for row in fetch(executor, &tag_sql, workspace_id, arguments).await? {
        tags.entry((row.try_get("name")?, row.try_get("version")?))
            .or_default()
            .push(Tag {
                key: row.try_get("key")?,
                value: row.try_get("value")?,
            });
    }
    let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
    for row in sqlx::query(LIVE_ALIASES)
        .bind(workspace_id.to_string())
        .fetch_all(executor)
        .await?
    {
        aliases
            .entry((row.try_get("name")?, row.try_get("version")?))
            .or_default()
            .push(row.try_get("alias")?);
    }
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("name")?;
            let version: i64 = row.try_get("version")?;
            let status: String = row.try_get("status")?;
            let key = (name.clone(), version);
            Ok(ModelVersion {
                name,
                version: version.to_string(),
                creation_timestamp: row.try_get("creation_time")?,
                last_updated_timestamp: row.try_get("last_updated_time")?,
                user_id: row.try_get("user_id")?,
                current_stage: row.try_get("current_stage")?,
                description: row.try_get("description")?,
                source: row.try_get("source")?,
                run_id: row.try_get("run_id")?,
                status: ModelVersionStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown model version status '{status}'")))?,
                status_message: row.try_get("status_message")?,
                tags: tags.remove(&key).unwrap_or_default(),
                run_link: row.try_get("run_link")?,
                aliases: aliases.remove(&key).unwrap_or_default(),
                model_id: row.try_get("model_id")?,
            })
        })
        .collect()
}

pub(crate) async fn registered_models_where<'e, E>(
    executor: E,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<RegisteredModel>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let rows = fetch(
        executor,
        &format!(
            "SELECT name, description, user_id, creation_time, last_updated_time FROM registered_models m WHERE m.workspace_id = $1 AND m.deletion_time IS NULL {condition} ORDER BY name"
        ),
        workspace_id,
        arguments,
    )
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut tags: HashMap<String, Vec<Tag>> = HashMap::new();
    for row in
        sqlx::query("SELECT name, key, value FROM registered_model_tags WHERE workspace_id = $1 ORDER BY key")
            .bind(workspace_id.to_string())
            .fetch_all(executor)
            .await?
    {
        tags.entry(row.try_get("name")?).or_default().push(Tag {
            key: row.try_get("key")?,
            value: row.try_get("value")?,
        });
    }
    let mut aliases: HashMap<String, Vec<RegisteredModelAlias>> = HashMap::new();
    for row in sqlx::query(LIVE_ALIASES)
        .bind(workspace_id.to_string())
        .fetch_all(executor)
        .await?
    {
        aliases
            .entry(row.try_get("name")?)
            .or_default()
            .push(RegisteredModelAlias {
                alias: row.try_get("alias")?,
                version: row.try_get::<i64, _>("version")?.to_string(),
            });
    }
    // Latest version per stage, as MLflow's `latest_versions` reports it.
    let versions = model_versions_where(executor, workspace_id, "", &[]).await?;
    let mut latest: HashMap<String, Vec<ModelVersion>> = HashMap::new();
    for version in versions {
        let list = latest.entry(version.name.clone()).or_default();
        match list
            .iter_mut()
            .find(|existing| existing.current_stage == version.current_stage)
        {
            Some(existing) => {
                if version.version.parse::<i64>().unwrap_or(0) > existing.version.parse::<i64>().unwrap_or(0)
                {
                    *existing = version;
                }
            }
            None => list.push(version),
        }
    }
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("name")?;
            let mut latest_versions = latest.remove(&name).unwrap_or_default();
            latest_versions.sort_by_key(|version| version.version.parse::<i64>().unwrap_or(0));
            Ok(RegisteredModel {
                creation_timestamp: row.try_get("creation_time")?,
                last_updated_timestamp: row.try_get("last_updated_time")?,
                user_id: row.try_get("user_id")?,
                description: row.try_get("description")?,
                latest_versions,
                tags: tags.remove(&name).unwrap_or_default(),
                aliases: aliases.remove(&name).unwrap_or_default(),
                name,
            })
        })
        .collect()
}
