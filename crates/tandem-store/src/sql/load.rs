//! Reading entities back from rows. Every function takes any executor so the
//! same code serves plain reads and reads inside a write's transaction.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};
use tandem_core::model::*;

use super::rows::{Columns, RowSource};
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

pub(crate) async fn experiment<S: RowSource>(
    source: &S,
    workspace_id: &str,
    experiment_id: &str,
) -> StoreResult<Option<Experiment>> {
    let rows = experiments_where(
        source,
        workspace_id,
        "AND experiment_id = $2",
        Some(experiment_id),
    )
    .await?;
    Ok(rows.into_iter().next())
}

pub(crate) async fn experiment_by_name<S: RowSource>(
    source: &S,
    workspace_id: &str,
    name: &str,
) -> StoreResult<Option<Experiment>> {
    let rows = experiments_where(source, workspace_id, "AND name = $2", Some(name)).await?;
    Ok(rows.into_iter().next())
}

/// The experiments matching `condition` (`$2` = `argument` if given), with
/// their tags.
pub(crate) async fn experiments_where<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    argument: Option<&str>,
) -> StoreResult<Vec<Experiment>> {
    experiments_where_tagged(source, workspace_id, condition, argument, true).await
}

/// The items named by `keys`, in the keys' order (those found): `load`
/// reads a chunk of at most 500 keys (bounded lists of bind parameters),
/// given with its placeholders `$2, …` (`$1` being the workspace's id).
pub(crate) async fn by_keys<'a, T, Fut>(
    keys: &'a [String],
    key_of: fn(&T) -> &str,
    load: impl Fn(&'a [String], String) -> Fut,
) -> StoreResult<Vec<T>>
where
    Fut: std::future::Future<Output = StoreResult<Vec<T>>> + 'a,
{
    by_keys_in_chunks(keys, 500, key_of, load).await
}

/// [`by_keys`] reading `chunk` keys a statement.
pub(crate) async fn by_keys_in_chunks<'a, T, Fut>(
    keys: &'a [String],
    chunk: usize,
    key_of: fn(&T) -> &str,
    load: impl Fn(&'a [String], String) -> Fut,
) -> StoreResult<Vec<T>>
where
    Fut: std::future::Future<Output = StoreResult<Vec<T>>> + 'a,
{
    let mut found: HashMap<String, T> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(chunk) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        for item in load(chunk, placeholders.join(", ")).await? {
            found.insert(key_of(&item).to_string(), item);
        }
    }
    Ok(keys.iter().filter_map(|key| found.remove(key)).collect())
}

/// The experiments `ids` of the workspace with their tags, in that order.
pub(crate) async fn experiments_by_ids<S: RowSource>(
    source: &S,
    workspace_id: &str,
    ids: &[String],
) -> StoreResult<Vec<Experiment>> {
    let experiment_id: fn(&Experiment) -> &str = |experiment| &experiment.experiment_id;
    by_keys(ids, experiment_id, |chunk, placeholders| async move {
        let mut bound = vec![workspace_id];
        bound.extend(chunk.iter().map(String::as_str));
        let condition = format!("AND experiment_id IN ({placeholders})");
        // The tags looked up by the listed ids themselves: through the
        // experiments' ids as a subquery, SQLite's plan depended on its
        // statistics and was most of a 1,000-experiment page's time.
        experiments_bound(source, &condition, &bound, Tags::Where(&condition)).await
    })
    .await
}

/// [`experiments_where`], with their tags or (`tags` false) without.
pub(crate) async fn experiments_where_tagged<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    argument: Option<&str>,
    tags: bool,
) -> StoreResult<Vec<Experiment>> {
    let mut bound = vec![workspace_id];
    bound.extend(argument);
    experiments_bound(source, condition, &bound, Tags::of(tags)).await
}

/// The experiments (`e`) matching `condition` with `arguments` bound after
/// the workspace id, with their tags or (`tags` false) without.
pub(crate) async fn experiments_matching<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
    tags: bool,
) -> StoreResult<Vec<Experiment>> {
    let mut bound = vec![workspace_id];
    bound.extend(arguments.iter().map(String::as_str));
    experiments_bound(source, condition, &bound, Tags::of(tags)).await
}

/// Which experiments' tags [`experiments_bound`] reads.
enum Tags<'a> {
    None,
    /// Of the experiments it reads.
    OfThese,
    /// Those of `experiment_tags` matching this condition (`AND …`).
    Where(&'a str),
}

impl Tags<'_> {
    fn of(tags: bool) -> Self {
        if tags {
            Tags::OfThese
        } else {
            Tags::None
        }
    }
}

/// The experiments (`e`) matching `condition` with `bound` as `$1` (the
/// workspace id), `$2`, ….
async fn experiments_bound<S: RowSource>(
    source: &S,
    condition: &str,
    bound: &[&str],
    tags: Tags<'_>,
) -> StoreResult<Vec<Experiment>> {
    let mut by_id: HashMap<String, Vec<Tag>> = HashMap::new();
    let tag_sql = match tags {
        Tags::None => None,
        Tags::OfThese => Some(format!(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE workspace_id = $1 AND experiment_id IN (SELECT e.experiment_id FROM experiments e WHERE e.workspace_id = $1 {condition}) ORDER BY key"
        )),
        Tags::Where(tag_condition) => Some(format!(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE workspace_id = $1 {tag_condition} ORDER BY key"
        )),
    };
    if let Some(tag_sql) = tag_sql {
        for mut row in source.rows(&tag_sql, bound).await? {
            by_id
                .entry(row.text(0)?)
                .or_default()
                .push(Tag::new(row.text(1)?, row.text(2)?));
        }
    }
    let sql = format!(
        "SELECT e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time, e.last_update_time FROM experiments e WHERE e.workspace_id = $1 {condition}"
    );
    source
        .rows(&sql, bound)
        .await?
        .into_iter()
        .map(|mut row| {
            let experiment_id = row.text(0)?;
            Ok(Experiment {
                tags: by_id.remove(&experiment_id).unwrap_or_default(),
                experiment_id,
                name: row.text(1)?,
                artifact_location: row.text(2)?,
                lifecycle_stage: stage(&row.text(3)?)?,
                creation_time: row.int(4)?,
                last_update_time: row.int(5)?,
            })
        })
        .collect()
}

/// The columns of a run's row that [`run_info_from_row`] reads, in order.
pub(super) const RUN_COLUMNS: &str = "r.run_id, r.workspace_id, r.experiment_id, r.run_name, r.user_id, r.status, r.start_time, r.end_time, r.artifact_uri, r.lifecycle_stage";

/// The run row alone, with the workspace it belongs to.
pub(crate) async fn run_info<'e, E>(executor: E, run_id: &str) -> StoreResult<Option<(String, RunInfo)>>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = $1"))
        .bind(run_id)
        .fetch_optional(executor)
        .await?;
    row.map(|mut row| Ok((row.text(1)?, run_info_from_row(&mut row)?)))
        .transpose()
}

/// The runs' infos from rows of [`RUN_COLUMNS`], in order.
fn run_infos<R: Columns>(rows: Vec<R>) -> StoreResult<Vec<RunInfo>> {
    rows.into_iter()
        .map(|mut row| run_info_from_row(&mut row))
        .collect()
}

/// A run's info from a row of [`RUN_COLUMNS`].
fn run_info_from_row(row: &mut impl Columns) -> StoreResult<RunInfo> {
    let run_id = row.text(0)?;
    let status = row.text(5)?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        experiment_id: row.text(2)?,
        run_name: row.text(3)?,
        user_id: row.text(4)?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown run status '{status}'")))?,
        start_time: row.optional_int(6)?,
        end_time: row.optional_int(7)?,
        artifact_uri: row.text(8)?,
        lifecycle_stage: stage(&row.text(9)?)?,
    })
}

/// Loads complete runs selected by `condition` on the `runs` table (aliased
/// `r`), binding `arguments` after `$1` = workspace id.
pub(crate) async fn runs_where<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<Run>> {
    runs_where_needing(source, workspace_id, condition, arguments, None).await
}

/// The runs matching `condition`, whole (`needs` None), or with only what a
/// search needs to filter and order them: their info and the metric, param
/// and tag keys it names (and datasets if it compares them).
pub(crate) async fn runs_where_needing<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
    needs: Option<&tandem_core::search::RunSearchNeeds>,
) -> StoreResult<Vec<Run>> {
    let mut bound = vec![workspace_id];
    bound.extend(arguments.iter().map(String::as_str));
    let selection = Selection {
        runs: format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.workspace_id = $1 {condition}"),
        children: format!("run_id IN (SELECT r.run_id FROM runs r WHERE r.workspace_id = $1 {condition})"),
        arguments: bound,
    };
    load_runs(source, &selection, needs).await
}

/// The runs `ids` of the workspace, whole, in no particular order.
pub(crate) async fn runs_by_ids<S: RowSource>(
    source: &S,
    workspace_id: &str,
    ids: &[String],
) -> StoreResult<Vec<Run>> {
    let array;
    let mut bound = vec![workspace_id];
    let list = if source.binds_arrays() {
        array = super::rows::pg_text_array(ids);
        bound.push(&array);
        "= ANY(CAST($2 AS TEXT[]))".to_string()
    } else {
        bound.extend(ids.iter().map(String::as_str));
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        format!("IN ({})", placeholders.join(", "))
    };
    let selection = Selection {
        // Found by their ids, then checked for the workspace: `|| ''` keeps
        // a planner without statistics from scanning the workspace's runs
        // by its index instead of looking the ids up.
        runs: format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id {list} AND (r.workspace_id || '') = $1"
        ),
        // Rows of runs of another workspace find no run to join.
        children: format!("run_id {list} AND $1 = $1"),
        arguments: bound,
    };
    load_runs(source, &selection, None).await
}

/// Which runs a load reads: the statement of their rows, the condition on
/// `run_id` that selects the rows of the other tables, and the arguments
/// both bind (`$1` the workspace id).
struct Selection<'a> {
    runs: String,
    children: String,
    arguments: Vec<&'a str>,
}

/// `AND key IN ($n, …)` after the `arguments` already bound, and the
/// arguments with `keys` appended; None when no key is wanted.
fn keys_in<'a>(
    arguments: &[&'a str],
    keys: &'a std::collections::BTreeSet<String>,
) -> Option<(String, Vec<&'a str>)> {
    if keys.is_empty() {
        return None;
    }
    let placeholders: Vec<String> = (0..keys.len())
        .map(|i| format!("${}", arguments.len() + 1 + i))
        .collect();
    let mut bound = arguments.to_vec();
    bound.extend(keys.iter().map(String::as_str));
    Some((format!(" AND key IN ({})", placeholders.join(", ")), bound))
}

async fn load_runs<S: RowSource>(
    source: &S,
    selection: &Selection<'_>,
    needs: Option<&tandem_core::search::RunSearchNeeds>,
) -> StoreResult<Vec<Run>> {
    let Selection {
        runs: run_sql,
        children: selection,
        arguments,
    } = selection;
    let run_rows = source.rows(run_sql, arguments).await?;
    let infos = run_infos(run_rows)?;
    with_children(source, infos, selection, arguments, needs).await
}

/// The runs of a page read by the page's own statement (rows of
/// [`RUN_COLUMNS`], in the page's order), whole: their other tables read by
/// one array of their ids, so the runs table is not looked up a second
/// time. For a source that binds arrays ([`RowSource::binds_arrays`]).
pub(crate) async fn runs_from_rows<S: RowSource>(
    source: &S,
    workspace_id: &str,
    run_rows: Vec<S::Row>,
) -> StoreResult<Vec<Run>> {
    let infos = run_infos(run_rows)?;
    let ids: Vec<String> = infos.iter().map(|info| info.run_id.clone()).collect();
    let array = super::rows::pg_text_array(&ids);
    let arguments = vec![workspace_id, array.as_str()];
    with_children(
        source,
        infos,
        "run_id = ANY(CAST($2 AS TEXT[])) AND $1 = $1",
        &arguments,
        None,
    )
    .await
}

/// `infos` with their metrics, params, tags, inputs and outputs, read from
/// the rows of the other tables that `selection` (with `arguments`) picks.
async fn with_children<S: RowSource>(
    source: &S,
    infos: Vec<RunInfo>,
    selection: &str,
    arguments: &[&str],
    needs: Option<&tandem_core::search::RunSearchNeeds>,
) -> StoreResult<Vec<Run>> {
    if infos.is_empty() {
        return Ok(Vec::new());
    }
    // Per table: the keys to read (all: "", none: None).
    let restrict =
        |keys: fn(&tandem_core::search::RunSearchNeeds) -> &std::collections::BTreeSet<String>| match needs {
            None => Some((String::new(), arguments.to_vec())),
            Some(needs) => keys_in(arguments, keys(needs)),
        };
    let whole = needs.is_none();
    let want_datasets = needs.is_none_or(|needs| needs.datasets);
    // Each run's entries by its position in `infos`; rows of runs not
    // there (another workspace's) are skipped. A page's children are
    // ~20,000 rows: their run ids are looked up borrowed, not copied.
    let position: HashMap<&str, usize> = infos
        .iter()
        .enumerate()
        .map(|(at, info)| (info.run_id.as_str(), at))
        .collect();
    let mut data: Vec<(RunData, RunInputs, RunOutputs)> = Vec::new();
    data.resize_with(infos.len(), Default::default);
    let slot = |row: &mut S::Row, index: usize| -> StoreResult<Option<usize>> {
        Ok(position.get(row.text_ref(index)?).copied())
    };
    if let Some((keys, bound)) = restrict(|needs| &needs.metrics) {
        let sql = format!(
            "SELECT run_id, key, timestamp, step, value, is_nan FROM latest_metrics WHERE {selection}{keys}"
        );
        for mut row in source.rows(&sql, &bound).await? {
            let Some(at) = slot(&mut row, 0)? else { continue };
            let entry = &mut data[at];
            let (value, is_nan) = (row.real(4)?, row.int(5)?);
            entry.0.metrics.push(Metric {
                key: row.text(1)?,
                value: metric_value(value, is_nan),
                timestamp: row.int(2)?,
                step: row.int(3)?,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            });
        }
    }
    if let Some((keys, bound)) = restrict(|needs| &needs.params) {
        let sql = format!("SELECT run_id, key, value FROM run_params WHERE {selection}{keys}");
        for mut row in source.rows(&sql, &bound).await? {
            let Some(at) = slot(&mut row, 0)? else { continue };
            let entry = &mut data[at];
            entry.0.params.push(Param {
                key: row.text(1)?,
                value: row.text(2)?,
            });
        }
    }
    if let Some((keys, bound)) = restrict(|needs| &needs.tags) {
        let sql = format!("SELECT run_id, key, value FROM run_tags WHERE {selection}{keys}");
        for mut row in source.rows(&sql, &bound).await? {
            let Some(at) = slot(&mut row, 0)? else { continue };
            let entry = &mut data[at];
            entry.0.tags.push(Tag {
                key: row.text(1)?,
                value: row.text(2)?,
            });
        }
    }
    // Inputs and outputs, from the tables of the three that hold any row
    // at all: most deployments' runs have none, and asking an empty table
    // for a page's ids still costs milliseconds of binding and planning,
    // where this unparameterized probe costs microseconds.
    let tables = [
        (
            want_datasets,
            "run_dataset_inputs",
            "0 AS kind, run_id, input AS text, 0 AS step, position",
        ),
        (
            whole,
            "run_model_inputs",
            "1 AS kind, run_id, model_id AS text, 0 AS step, 0 AS position",
        ),
        (
            whole,
            "run_model_outputs",
            "2 AS kind, run_id, model_id AS text, step, 0 AS position",
        ),
    ];
    let wanted: Vec<_> = tables.iter().filter(|(wanted, ..)| *wanted).collect();
    let mut branches = Vec::new();
    if !wanted.is_empty() {
        let probe: Vec<String> = wanted
            .iter()
            // A number on either backend (PostgreSQL's EXISTS is a boolean).
            .map(|(_, table, _)| format!("CASE WHEN EXISTS (SELECT 1 FROM {table}) THEN 1 ELSE 0 END"))
            .collect();
        let mut held = source.rows(&format!("SELECT {}", probe.join(", ")), &[]).await?;
        let mut held = held
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no row probing inputs".into()))?;
        for (index, (_, table, columns)) in wanted.iter().enumerate() {
            if held.int(index)? != 0 {
                branches.push(format!("SELECT {columns} FROM {table} WHERE {selection}"));
            }
        }
    }
    // In one statement: by table, then a run's dataset inputs by position
    // and its models by id.
    let sql = (!branches.is_empty()).then(|| format!("{} ORDER BY 1, 5, 3", branches.join(" UNION ALL ")));
    if let Some(sql) = sql {
        for mut row in source.rows(&sql, arguments).await? {
            let Some(at) = slot(&mut row, 1)? else { continue };
            let entry = &mut data[at];
            let text = row.text(2)?;
            match row.int(0)? {
                0 => entry.1.dataset_inputs.push(
                    serde_json::from_str(&text)
                        .map_err(|err| StoreError::Corrupt(format!("dataset input: {err}")))?,
                ),
                1 => entry.1.model_inputs.push(ModelInput { model_id: text }),
                _ => entry.2.model_outputs.push(ModelOutput {
                    model_id: text,
                    step: row.int(3)?,
                }),
            }
        }
    }
    infos
        .into_iter()
        .zip(data)
        .map(|(info, (mut data, inputs, outputs))| {
            // Each run's entries by key, in the order of their bytes,
            // whatever the database's collation (sorted here rather than
            // by an `ORDER BY` of all the page's rows: a handful per run).
            data.metrics.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            data.params.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            data.tags.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            Ok(Run {
                info,
                data,
                inputs,
                outputs,
            })
        })
        .collect()
}

pub(crate) async fn run<S: RowSource>(
    source: &S,
    workspace_id: &str,
    run_id: &str,
) -> StoreResult<Option<Run>> {
    let runs = runs_where(source, workspace_id, "AND r.run_id = $2", &[run_id.to_string()]).await?;
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
/// unless it was reassigned meanwhile). Columns: name, alias, version;
/// `{models}` restricts the models (a condition on `a.name`).
fn live_aliases_sql(models: &str) -> String {
    format!(
        "SELECT a.name, a.alias, a.version FROM registered_model_aliases a WHERE a.workspace_id = $1 {models} \
         AND EXISTS (SELECT 1 FROM model_versions v WHERE v.workspace_id = a.workspace_id AND v.name = a.name AND v.version = a.version \
         AND v.deletion_time IS NULL AND EXISTS (SELECT 1 FROM registered_models lm WHERE lm.workspace_id = v.workspace_id \
         AND lm.name = v.name AND lm.deletion_time IS NULL)) ORDER BY a.alias"
    )
}

/// The live versions matching `condition` (on `model_versions v`, its
/// arguments bound after `$1` = the workspace id), with their tags and
/// aliases, by name and version.
pub(crate) async fn model_versions_where<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<ModelVersion>> {
    let mut bound = vec![workspace_id];
    bound.extend(arguments.iter().map(String::as_str));
    let rows = source
        .rows(
            &format!(
                "SELECT name, version, creation_time, last_updated_time, user_id, current_stage, description, source, run_id, run_link, status, status_message, model_id \
                 FROM model_versions v WHERE v.workspace_id = $1 {LIVE_VERSION} {condition} ORDER BY name, version"
            ),
            &bound,
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
    for mut row in source.rows(&tag_sql, &bound).await? {
        tags.entry((row.text(0)?, row.int(1)?)).or_default().push(Tag {
            key: row.text(2)?,
            value: row.text(3)?,
        });
    }
    let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
    let alias_sql = live_aliases_sql(&format!(
        "AND a.name IN (SELECT v.name FROM model_versions v WHERE v.workspace_id = $1 {LIVE_VERSION} {condition})"
    ));
    for mut row in source.rows(&alias_sql, &bound).await? {
        aliases
            .entry((row.text(0)?, row.int(2)?))
            .or_default()
            .push(row.text(1)?);
    }
    rows.into_iter()
        .map(|mut row| {
            let name = row.text(0)?;
            let version = row.int(1)?;
            let status = row.text(10)?;
            let key = (name.clone(), version);
            Ok(ModelVersion {
                name,
                version: version.to_string(),
                creation_timestamp: row.int(2)?,
                last_updated_timestamp: row.int(3)?,
                user_id: row.text(4)?,
                current_stage: row.text(5)?,
                description: row.text(6)?,
                source: row.text(7)?,
                run_id: row.text(8)?,
                status: ModelVersionStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown model version status '{status}'")))?,
                status_message: row.text(11)?,
                tags: tags.remove(&key).unwrap_or_default(),
                run_link: row.text(9)?,
                aliases: aliases.remove(&key).unwrap_or_default(),
                model_id: row.text(12)?,
            })
        })
        .collect()
}

/// The live registered models matching `condition` (on
/// `registered_models m`, its arguments bound after `$1` = the workspace
/// id), with their tags, aliases and latest version per stage, by name.
/// Their tags, aliases and versions are read for these models alone.
pub(crate) async fn registered_models_where<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
) -> StoreResult<Vec<RegisteredModel>> {
    registered_models_read(source, workspace_id, condition, arguments, true, None).await
}

/// The models `names` of the workspace, whole, in that order.
pub(crate) async fn registered_models_by_names<S: RowSource>(
    source: &S,
    workspace_id: &str,
    names: &[String],
) -> StoreResult<Vec<RegisteredModel>> {
    let name: fn(&RegisteredModel) -> &str = |model| &model.name;
    by_keys(names, name, |chunk, placeholders| async move {
        let condition = format!("AND m.name IN ({placeholders})");
        registered_models_read(source, workspace_id, &condition, chunk, true, Some(&placeholders)).await
    })
    .await
}

/// [`registered_models_where`]; without versions and aliases unless
/// `whole` (what a search filters and orders by is the rest).
pub(crate) async fn registered_models_read<S: RowSource>(
    source: &S,
    workspace_id: &str,
    condition: &str,
    arguments: &[String],
    whole: bool,
    listed: Option<&str>,
) -> StoreResult<Vec<RegisteredModel>> {
    let mut bound = vec![workspace_id];
    bound.extend(arguments.iter().map(String::as_str));
    // The models' tags, aliases and versions are looked up by the names
    // themselves when the caller lists them (`listed`: their placeholders);
    // through the models as a subquery, SQLite's plan depended on its
    // statistics and was most of a 1,000-model page's time.
    let models = match listed {
        Some(placeholders) => placeholders.to_string(),
        None => format!(
            "SELECT m.name FROM registered_models m WHERE m.workspace_id = $1 AND m.deletion_time IS NULL {condition}"
        ),
    };
    let rows = source
        .rows(
            &format!(
                "SELECT name, description, user_id, creation_time, last_updated_time FROM registered_models m WHERE m.workspace_id = $1 AND m.deletion_time IS NULL {condition} ORDER BY name"
            ),
            &bound,
        )
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut tags: HashMap<String, Vec<Tag>> = HashMap::new();
    let tag_sql = format!(
        "SELECT t.name, t.key, t.value FROM registered_model_tags t WHERE t.workspace_id = $1 AND t.name IN ({models}) ORDER BY t.key"
    );
    for mut row in source.rows(&tag_sql, &bound).await? {
        tags.entry(row.text(0)?).or_default().push(Tag {
            key: row.text(1)?,
            value: row.text(2)?,
        });
    }
    if !whole {
        return rows
            .into_iter()
            .map(|mut row| {
                let name = row.text(0)?;
                Ok(RegisteredModel {
                    creation_timestamp: row.int(3)?,
                    last_updated_timestamp: row.int(4)?,
                    user_id: row.text(2)?,
                    description: row.text(1)?,
                    latest_versions: Vec::new(),
                    tags: tags.remove(&name).unwrap_or_default(),
                    aliases: Vec::new(),
                    name,
                })
            })
            .collect();
    }
    let mut aliases: HashMap<String, Vec<RegisteredModelAlias>> = HashMap::new();
    for mut row in source
        .rows(&live_aliases_sql(&format!("AND a.name IN ({models})")), &bound)
        .await?
    {
        aliases
            .entry(row.text(0)?)
            .or_default()
            .push(RegisteredModelAlias {
                alias: row.text(1)?,
                version: row.int(2)?.to_string(),
            });
    }
    // Latest version per stage, as MLflow's `latest_versions` reports it.
    let versions = model_versions_where(
        source,
        workspace_id,
        &format!("AND v.name IN ({models})"),
        arguments,
    )
    .await?;
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
    rows.into_iter()
        .map(|mut row| {
            let name = row.text(0)?;
            let mut latest_versions = latest.remove(&name).unwrap_or_default();
            latest_versions.sort_by_key(|version| version.version.parse::<i64>().unwrap_or(0));
            Ok(RegisteredModel {
                creation_timestamp: row.int(3)?,
                last_updated_timestamp: row.int(4)?,
                user_id: row.text(2)?,
                description: row.text(1)?,
                latest_versions,
                tags: tags.remove(&name).unwrap_or_default(),
                aliases: aliases.remove(&name).unwrap_or_default(),
                name,
            })
        })
        .collect()
}
