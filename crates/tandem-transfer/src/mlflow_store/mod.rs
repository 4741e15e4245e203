//! A copy's source read straight from an `mlflow server`'s own backend
//! store: its database (`sqlite:///…` or `postgresql://…`, the URI given to
//! `mlflow server --backend-store-uri`) and its artifact root (the
//! `--artifacts-destination` behind `mlflow-artifacts:/` URIs, or the
//! locations the runs name themselves).
//!
//! Why: through MLflow's REST API a pass over an unchanged source is the
//! server's searches (each run built from its rows in Python, a few hundred
//! milliseconds per 500 runs) and a directory listing per run with files.
//! Read here, the same pass is a handful of queries per experiment and a
//! file-system walk: what makes `tandem sync` cheap enough to run often.
//!
//! The objects read are those MLflow's REST API would answer, in its
//! shapes ([`Run`], [`LoggedModel`]…), with its rules: a run's name falls back
//! to its `mlflow.runName` tag, NaN metrics are the `is_nan` rows, deleted
//! model versions (stage `Deleted_Internal`) and deleted logged models are
//! not there, a run's inputs are its datasets (as `runs/search` gives them)
//! and its outputs the logged models it wrote. The database is only read:
//! SQLite is opened read-only, and only `SELECT`s are sent.
//!
//! Older MLflow schemas lack tables (aliases, datasets, logged models): what
//! a schema has not is read as empty. MLflow 3's workspaces: only the
//! `default` workspace is read.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tandem_artifacts::{ArtifactKey, ArtifactStore};
use tandem_core::model::{
    Dataset, DatasetInput, Experiment, LifecycleStage, LoggedModel, LoggedModelData, LoggedModelInfo,
    LoggedModelStatus, Metric, ModelOutput, ModelVersion, ModelVersionStatus, Param, RegisteredModel,
    RegisteredModelAlias, Run, RunData, RunInfo, RunInputs, RunOutputs, RunStatus, Tag,
};

use crate::copy::proxied_path;
use crate::source::{ByteStream, Listing, Source};
use crate::TransferError;

mod rows;

use rows::{Dialect, Pool, Query, Row};

/// Keys in one `IN (…)` list.
const KEYS_AT_ONCE: usize = 500;

/// Whether `location` names an MLflow backend store (a database URI as
/// `mlflow server --backend-store-uri` takes it).
pub fn is_store_url(location: &str) -> bool {
    let scheme = location.split_once("://").map(|(scheme, _)| scheme).unwrap_or("");
    let scheme = scheme.split('+').next().unwrap_or(scheme);
    matches!(scheme, "sqlite" | "postgresql" | "postgres" | "mysql" | "mssql")
}

/// An `mlflow server`'s backend store and artifact root, read as a [`Source`].
pub struct MlflowStoreSource {
    key: String,
    pool: Pool,
    dialect: Dialect,
    /// The MLflow tables this schema has (older MLflow versions lack some).
    tables: HashSet<String>,
    /// `workspace = 'default'` where the schema has MLflow 3's workspaces.
    workspaces: bool,
    /// The `step` column of `inputs` (MLflow 3's model outputs).
    input_steps: bool,
    /// Where `mlflow-artifacts:/` URIs point (the server's
    /// `--artifacts-destination`), as given and opened.
    artifacts: Option<(String, ArtifactStore)>,
    /// The local file system, for runs whose artifact URI is a path.
    local: ArtifactStore,
    /// The artifact URI of each run and logged model read so far.
    roots: Mutex<HashMap<String, String>>,
}

impl MlflowStoreSource {
    /// Opens the store at `url` (read-only); `artifacts` is the location
    /// `mlflow-artifacts:/` URIs resolve to (a directory or an object-store
    /// URL), needed when the server proxies artifacts.
    pub async fn open(url: &str, artifacts: Option<&str>) -> Result<MlflowStoreSource, TransferError> {
        let (connect, dialect, key) = connect_url(url)?;
        let cannot_open = |error: sqlx::Error| TransferError::Transport {
            url: key.clone(),
            message: format!("cannot open the MLflow database: {error}"),
        };
        let pool = match dialect {
            Dialect::Sqlite => {
                let options = SqliteConnectOptions::from_str(&connect)
                    .map_err(cannot_open)?
                    .read_only(true)
                    .create_if_missing(false);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(options)
                        .await
                        .map_err(cannot_open)?,
                )
            }
            Dialect::Postgres => {
                sqlx::any::install_default_drivers();
                Pool::Postgres(
                    AnyPoolOptions::new()
                        .max_connections(4)
                        .connect(&connect)
                        .await
                        .map_err(cannot_open)?,
                )
            }
        };
        let tables: HashSet<String> = Query::new(dialect, dialect.tables_sql())
            .fetch(&pool, &key)
            .await?
            .iter()
            .map(|row| rows::text(row, 0))
            .collect::<Result<_, _>>()?;
        for needed in [
            "experiments",
            "runs",
            "metrics",
            "params",
            "tags",
            "alembic_version",
        ] {
            if !tables.contains(needed) {
                return Err(TransferError::Usage(format!(
                    "{key} is not an MLflow tracking database: it has no '{needed}' table"
                )));
            }
        }
        let has_column = |table: &str, column: &str| {
            let query = Query::new(dialect, format!("SELECT {column} FROM {table} WHERE 1 = 0"));
            let (pool, key) = (pool.clone(), key.clone());
            async move { query.fetch(&pool, &key).await.is_ok() }
        };
        let workspaces = has_column("experiments", "workspace").await;
        let input_steps = tables.contains("inputs") && has_column("inputs", "step").await;
        let artifacts = match artifacts {
            Some(location) => {
                let location = location.trim_end_matches('/').to_string();
                let opened = open_artifacts(&location)?;
                Some((location, opened))
            }
            None => None,
        };
        let local = ArtifactStore::open("file:///", &Default::default())
            .map_err(|error| TransferError::Usage(format!("the local file system: {error}")))?;
        Ok(MlflowStoreSource {
            key,
            pool,
            dialect,
            tables,
            workspaces,
            input_steps,
            artifacts,
            local,
            roots: Mutex::default(),
        })
    }

    fn query(&self, sql: impl Into<String>) -> Query {
        Query::new(self.dialect, sql)
    }

    fn has(&self, table: &str) -> bool {
        self.tables.contains(table)
    }

    /// `AND <alias>.workspace = 'default'` where the schema has workspaces.
    fn in_workspace(&self, alias: &str) -> String {
        if self.workspaces {
            format!(" AND {alias}.workspace = 'default'")
        } else {
            String::new()
        }
    }

    fn remember_root(&self, id: &str, uri: &str) {
        self.roots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.to_string(), uri.to_string());
    }

    /// The store and key prefix holding the files of run or logged model `id`.
    fn root_of(&self, id: &str, what: &str) -> Result<(&ArtifactStore, ArtifactKey), TransferError> {
        let uri = self
            .roots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| TransferError::Usage(format!("{what} {id} was not listed before its files")))?;
        self.resolve(&uri)
    }

    /// Where an artifact URI's files are: `mlflow-artifacts:/<path>` under
    /// the artifact root given, a URI under that root, or a local path.
    fn resolve(&self, uri: &str) -> Result<(&ArtifactStore, ArtifactKey), TransferError> {
        let key = |path: &str| {
            ArtifactKey::parse(path.trim_matches('/'))
                .map_err(|error| TransferError::Usage(format!("artifact URI {uri}: {error}")))
        };
        if uri.starts_with("mlflow-artifacts:") {
            let Some((_, store)) = &self.artifacts else {
                return Err(TransferError::Usage(format!(
                    "{uri} is behind the server's artifact proxy: say where its files are with --from-artifacts (the server's --artifacts-destination)"
                )));
            };
            let path = proxied_path(uri)
                .ok_or_else(|| TransferError::Usage(format!("artifact URI {uri} names no path")))?;
            return Ok((store, key(&path)?));
        }
        if let Some((location, store)) = &self.artifacts {
            if let Some(rest) = uri.strip_prefix(location.as_str()) {
                if rest.starts_with('/') {
                    return Ok((store, key(rest)?));
                }
            }
        }
        let local = match uri.strip_prefix("file://") {
            Some(rest) => Some(rest),
            None if uri.starts_with('/') => Some(uri),
            None => None,
        };
        match local {
            Some(path) if path.starts_with('/') => Ok((&self.local, key(path)?)),
            _ => Err(TransferError::Usage(format!(
                "cannot read the files at {uri}: give their root with --from-artifacts"
            ))),
        }
    }

    /// Every file under a run's or logged model's root, paths relative to it.
    async fn listing(&self, id: &str, what: &str) -> Result<Listing, TransferError> {
        let (store, prefix) = self.root_of(id, what)?;
        let entries = store
            .list_recursive(Some(&prefix))
            .await
            .map_err(|error| artifacts_error(store, &error))?;
        Ok(files_under(entries, &prefix))
    }

    /// `listing` of each of `ids`: the roots in one store listed together
    /// (a local directory in one blocking task, not two per run).
    async fn listings(&self, ids: &[String], what: &str) -> Vec<Result<Listing, TransferError>> {
        let mut out: Vec<Option<Result<Listing, TransferError>>> = ids.iter().map(|_| None).collect();
        // By store (the artifact root given, or a local root of its own):
        // the positions of the ids and their roots there.
        let mut by_store: Vec<(&ArtifactStore, Vec<(usize, ArtifactKey)>)> = Vec::new();
        for (at, id) in ids.iter().enumerate() {
            match self.root_of(id, what) {
                Ok((store, prefix)) => match by_store.iter_mut().find(|(held, _)| std::ptr::eq(*held, store))
                {
                    Some((_, roots)) => roots.push((at, prefix)),
                    None => by_store.push((store, vec![(at, prefix)])),
                },
                Err(error) => out[at] = Some(Err(error)),
            }
        }
        for (store, roots) in by_store {
            let prefixes: Vec<ArtifactKey> = roots.iter().map(|(_, prefix)| prefix.clone()).collect();
            let listed = store.list_recursive_each(&prefixes).await;
            for ((at, prefix), entries) in roots.into_iter().zip(listed) {
                out[at] = Some(
                    entries
                        .map(|entries| files_under(entries, &prefix))
                        .map_err(|error| artifacts_error(store, &error)),
                );
            }
        }
        out.into_iter()
            .map(|listing| listing.expect("every id listed or failed"))
            .collect()
    }

    async fn open_file(&self, id: &str, what: &str, path: &str) -> Result<ByteStream, TransferError> {
        let (store, prefix) = self.root_of(id, what)?;
        let key = prefix
            .join(path)
            .map_err(|error| TransferError::Usage(format!("{what} {id}: {error}")))?;
        let (_, stream) = store
            .get_stream(&key)
            .await
            .map_err(|error| artifacts_error(store, &error))?;
        let location = store.url().to_string();
        Ok(stream
            .map_err(move |error| TransferError::Transport {
                url: location.clone(),
                message: format!("reading an artifact broke: {error}"),
            })
            .boxed())
    }

    /// Runs of one experiment with their params, tags, latest metrics,
    /// dataset inputs and model outputs, each a few queries for them all.
    async fn experiment_runs(&self, experiment_id: i64) -> Result<Vec<Run>, TransferError> {
        let key = &self.key;
        let mut runs: Vec<Run> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let rows = self
            .query(
                "SELECT run_uuid, name, user_id, status, CAST(start_time AS BIGINT), CAST(end_time AS BIGINT), \
                 artifact_uri, lifecycle_stage FROM runs WHERE experiment_id = ? ORDER BY run_uuid",
            )
            .bind_i64(experiment_id)
            .fetch(&self.pool, key)
            .await?;
        for row in &rows {
            let run_id = rows::text(row, 0)?;
            let status = rows::text(row, 3)?;
            let info = RunInfo {
                run_id: run_id.clone(),
                run_uuid: run_id.clone(),
                run_name: rows::opt_text(row, 1)?.unwrap_or_default(),
                experiment_id: experiment_id.to_string(),
                user_id: rows::opt_text(row, 2)?.unwrap_or_default(),
                status: RunStatus::parse(&status).ok_or_else(|| {
                    TransferError::Decode(format!("run {run_id}: unknown status '{status}'"))
                })?,
                start_time: rows::opt_i64(row, 4)?,
                end_time: rows::opt_i64(row, 5)?,
                artifact_uri: rows::opt_text(row, 6)?.unwrap_or_default(),
                lifecycle_stage: lifecycle(row, 7, &run_id)?,
            };
            self.remember_root(&run_id, &info.artifact_uri);
            index.insert(run_id, runs.len());
            runs.push(Run {
                info,
                data: RunData::default(),
                inputs: RunInputs::default(),
                outputs: RunOutputs::default(),
            });
        }
        let of_experiment = |table: &str, columns: &str| {
            format!(
                "SELECT x.run_uuid, {columns} FROM {table} x JOIN runs r ON r.run_uuid = x.run_uuid \
                 WHERE r.experiment_id = ?"
            )
        };
        for row in &self
            .query(of_experiment("params", "x.key, x.value"))
            .bind_i64(experiment_id)
            .fetch(&self.pool, key)
            .await?
        {
            if let Some(&at) = index.get(&rows::text(row, 0)?) {
                runs[at].data.params.push(Param {
                    key: rows::text(row, 1)?,
                    value: rows::opt_text(row, 2)?.unwrap_or_default(),
                });
            }
        }
        for row in &self
            .query(of_experiment("tags", "x.key, x.value"))
            .bind_i64(experiment_id)
            .fetch(&self.pool, key)
            .await?
        {
            if let Some(&at) = index.get(&rows::text(row, 0)?) {
                runs[at].data.tags.push(rows::tag(row, 1)?);
            }
        }
        for row in &self
            .query(of_experiment("latest_metrics", &rows::metric_columns("x")))
            .bind_i64(experiment_id)
            .fetch(&self.pool, key)
            .await?
        {
            if let Some(&at) = index.get(&rows::text(row, 0)?) {
                runs[at].data.metrics.push(rows::metric(row, 1)?);
            }
        }
        if self.has("inputs") && self.has("datasets") {
            self.read_dataset_inputs(experiment_id, &mut runs, &index).await?;
        }
        if self.input_steps {
            for row in &self
                .query(
                    "SELECT i.source_id, i.destination_id, CAST(i.step AS BIGINT) FROM inputs i \
                     JOIN runs r ON r.run_uuid = i.source_id WHERE r.experiment_id = ? \
                     AND i.source_type = 'RUN_OUTPUT' AND i.destination_type = 'MODEL_OUTPUT' \
                     ORDER BY i.input_uuid",
                )
                .bind_i64(experiment_id)
                .fetch(&self.pool, key)
                .await?
            {
                if let Some(&at) = index.get(&rows::text(row, 0)?) {
                    runs[at].outputs.model_outputs.push(ModelOutput {
                        model_id: rows::text(row, 1)?,
                        step: rows::opt_i64(row, 2)?.unwrap_or(0),
                    });
                }
            }
        }
        for run in &mut runs {
            // MLflow's `to_mlflow_entity`: a run without a name takes its tag's.
            if run.info.run_name.is_empty() {
                if let Some(name) = run.tag("mlflow.runName") {
                    run.info.run_name = name.to_string();
                }
            }
            run.data.params.sort_by(|a, b| a.key.cmp(&b.key));
            run.data.tags.sort_by(|a, b| a.key.cmp(&b.key));
            run.data.metrics.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(runs)
    }

    /// Each run's datasets, once per dataset with the tags of every input
    /// naming it (MLflow's `_get_run_inputs`), in name and digest order.
    async fn read_dataset_inputs(
        &self,
        experiment_id: i64,
        runs: &mut [Run],
        index: &HashMap<String, usize>,
    ) -> Result<(), TransferError> {
        let rows = self
            .query(
                "SELECT i.destination_id, i.input_uuid, d.dataset_uuid, d.name, d.digest, d.dataset_source_type, \
                 d.dataset_source, d.dataset_schema, d.dataset_profile FROM inputs i \
                 JOIN datasets d ON d.dataset_uuid = i.source_id JOIN runs r ON r.run_uuid = i.destination_id \
                 WHERE i.destination_type = 'RUN' AND r.experiment_id = ?",
            )
            .bind_i64(experiment_id)
            .fetch(&self.pool, &self.key)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let tags = if self.has("input_tags") {
            self.query(
                "SELECT t.input_uuid, t.name, t.value FROM input_tags t JOIN inputs i ON i.input_uuid = t.input_uuid \
                 JOIN runs r ON r.run_uuid = i.destination_id WHERE i.destination_type = 'RUN' AND r.experiment_id = ? \
                 ORDER BY t.name",
            )
            .bind_i64(experiment_id)
            .fetch(&self.pool, &self.key)
            .await?
        } else {
            Vec::new()
        };
        let mut tags_of: HashMap<String, Vec<Tag>> = HashMap::new();
        for row in &tags {
            tags_of
                .entry(rows::text(row, 0)?)
                .or_default()
                .push(rows::tag(row, 1)?);
        }
        // (run, dataset) → position in the run's inputs.
        let mut seen: HashMap<(usize, String), usize> = HashMap::new();
        for row in &rows {
            let Some(&at) = index.get(&rows::text(row, 0)?) else {
                continue;
            };
            let input_tags = tags_of.remove(&rows::text(row, 1)?).unwrap_or_default();
            let dataset_uuid = rows::text(row, 2)?;
            let inputs = &mut runs[at].inputs.dataset_inputs;
            match seen.get(&(at, dataset_uuid.clone())) {
                Some(&position) => inputs[position].tags.extend(input_tags),
                None => {
                    seen.insert((at, dataset_uuid), inputs.len());
                    inputs.push(DatasetInput {
                        tags: input_tags,
                        dataset: Dataset {
                            name: rows::text(row, 3)?,
                            digest: rows::text(row, 4)?,
                            source_type: rows::text(row, 5)?,
                            source: rows::text(row, 6)?,
                            schema: rows::opt_text(row, 7)?,
                            profile: rows::opt_text(row, 8)?,
                        },
                    });
                }
            }
        }
        for run in runs.iter_mut() {
            run.inputs.dataset_inputs.sort_by(|a, b| {
                (&a.dataset.name, &a.dataset.digest).cmp(&(&b.dataset.name, &b.dataset.digest))
            });
        }
        Ok(())
    }

    /// The points of metric `key` in `run_ids`, by run.
    async fn points(
        &self,
        key: &str,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<Metric>>, TransferError> {
        let mut out: HashMap<String, Vec<Metric>> = HashMap::new();
        for chunk in run_ids.chunks(KEYS_AT_ONCE) {
            let sql = format!(
                "SELECT run_uuid, {} FROM metrics x WHERE {} = ? AND x.run_uuid IN ({}) \
                 ORDER BY x.run_uuid, x.step, x.timestamp",
                rows::metric_columns("x"),
                self.dialect.not_by_index("x.key"),
                rows::marks(chunk.len())
            );
            let mut query = self.query(sql).bind_text(key);
            for run_id in chunk {
                query = query.bind_text(run_id);
            }
            for row in &query.fetch(&self.pool, &self.key).await? {
                out.entry(rows::text(row, 0)?)
                    .or_default()
                    .push(rows::metric(row, 1)?);
            }
        }
        Ok(out)
    }
}

/// A listing of `prefix`'s files, relative to it, sorted.
fn files_under(entries: Vec<tandem_artifacts::Listing>, prefix: &ArtifactKey) -> Listing {
    let mut files: Listing = entries
        .into_iter()
        .filter_map(|entry| {
            let relative = entry.path.strip_prefix(prefix.as_str())?.strip_prefix('/')?;
            Some((relative.to_string(), entry.size.unwrap_or(0) as i64))
        })
        .collect();
    files.sort();
    files
}

/// The sqlx URL, dialect and credential-free name of an MLflow store URI
/// (SQLAlchemy's spelling: `sqlite:////abs/path.db`, `postgresql+psycopg2://…`).
fn connect_url(url: &str) -> Result<(String, Dialect, String), TransferError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| TransferError::Usage(format!("'{url}' is not a database URI")))?;
    let base = scheme.split('+').next().unwrap_or(scheme);
    match base {
        "sqlite" => {
            // sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy reads them.
            let path = rest.strip_prefix('/').unwrap_or(rest);
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                return Err(TransferError::Usage(format!("'{url}' names no database file")));
            }
            if !std::path::Path::new(path).is_file() {
                return Err(TransferError::Usage(format!(
                    "{url}: there is no database file at {path}"
                )));
            }
            Ok((
                format!("sqlite://{path}?mode=ro"),
                Dialect::Sqlite,
                format!("sqlite:///{path}"),
            ))
        }
        "postgresql" | "postgres" => {
            let mut parsed = url::Url::parse(&format!("postgres://{rest}"))
                .map_err(|error| TransferError::Usage(format!("'{url}' is not a database URI: {error}")))?;
            let connect = parsed.to_string();
            let _ = parsed.set_password(None);
            let key = parsed.to_string().replacen("postgres://", "postgresql://", 1);
            Ok((connect, Dialect::Postgres, key))
        }
        other => Err(TransferError::Usage(format!(
            "MLflow stores on {other} are not read directly: import from the server's tracking URI instead"
        ))),
    }
}

fn open_artifacts(location: &str) -> Result<ArtifactStore, TransferError> {
    let url = if location.contains("://") {
        location.to_string()
    } else {
        let path = std::path::Path::new(location);
        if !path.is_dir() {
            return Err(TransferError::Usage(format!(
                "--from-artifacts {location}: no such directory"
            )));
        }
        let absolute = std::fs::canonicalize(path)
            .map_err(|error| TransferError::Usage(format!("--from-artifacts {location}: {error}")))?;
        format!("file://{}", absolute.display())
    };
    ArtifactStore::open(&url, &Default::default())
        .map_err(|error| TransferError::Usage(format!("--from-artifacts {location}: {error}")))
}

fn artifacts_error(store: &ArtifactStore, error: &tandem_artifacts::ArtifactError) -> TransferError {
    TransferError::Transport {
        url: store.url().to_string(),
        message: error.to_string(),
    }
}

fn lifecycle(row: &Row, at: usize, what: &str) -> Result<LifecycleStage, TransferError> {
    let stage = rows::opt_text(row, at)?.unwrap_or_else(|| "active".to_string());
    LifecycleStage::parse(&stage)
        .ok_or_else(|| TransferError::Decode(format!("{what}: unknown lifecycle stage '{stage}'")))
}

fn parse_experiment_id(experiment_id: &str) -> Result<i64, TransferError> {
    experiment_id
        .parse()
        .map_err(|_| TransferError::Usage(format!("'{experiment_id}' is not an MLflow experiment id")))
}

#[async_trait]
impl Source for MlflowStoreSource {
    fn key(&self) -> String {
        self.key.clone()
    }

    async fn experiments(&self, include_deleted: bool) -> Result<Vec<Experiment>, TransferError> {
        let mut sql = format!(
            "SELECT CAST(e.experiment_id AS BIGINT), e.name, e.artifact_location, e.lifecycle_stage, \
             CAST(e.creation_time AS BIGINT), CAST(e.last_update_time AS BIGINT) FROM experiments e WHERE 1 = 1{}",
            self.in_workspace("e")
        );
        if !include_deleted {
            sql.push_str(" AND e.lifecycle_stage = 'active'");
        }
        sql.push_str(" ORDER BY e.experiment_id");
        let mut experiments = Vec::new();
        let mut index = HashMap::new();
        for row in &self.query(sql).fetch(&self.pool, &self.key).await? {
            let id = rows::i64(row, 0)?.to_string();
            index.insert(id.clone(), experiments.len());
            experiments.push(Experiment {
                name: rows::text(row, 1)?,
                artifact_location: rows::opt_text(row, 2)?.unwrap_or_default(),
                lifecycle_stage: lifecycle(row, 3, &format!("experiment {id}"))?,
                creation_time: rows::opt_i64(row, 4)?.unwrap_or(0),
                last_update_time: rows::opt_i64(row, 5)?.unwrap_or(0),
                tags: Vec::new(),
                experiment_id: id,
            });
        }
        let tags = self
            .query("SELECT CAST(experiment_id AS BIGINT), key, value FROM experiment_tags ORDER BY key")
            .fetch(&self.pool, &self.key)
            .await?;
        for row in &tags {
            if let Some(&at) = index.get(&rows::i64(row, 0)?.to_string()) {
                experiments[at].tags.push(rows::tag(row, 1)?);
            }
        }
        Ok(experiments)
    }

    async fn runs(&self, experiment_id: &str, filter: Option<&str>) -> Result<Vec<Run>, TransferError> {
        let runs = self.experiment_runs(parse_experiment_id(experiment_id)?).await?;
        match filter {
            // MLflow's search syntax, evaluated as Tandem's server does.
            Some(filter) if !filter.trim().is_empty() => {
                tandem_core::search::search_runs(runs, filter, &[], usize::MAX, None)
                    .map(|page| page.items)
                    .map_err(|error| TransferError::Usage(format!("--run-filter: {error}")))
            }
            _ => Ok(runs),
        }
    }

    async fn history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, TransferError> {
        Ok(self
            .points(key, &[run_id.to_string()])
            .await?
            .remove(run_id)
            .unwrap_or_default())
    }

    async fn histories(
        &self,
        key: &str,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<Metric>>, TransferError> {
        self.points(key, run_ids).await
    }

    async fn run_artifacts(&self, run_id: &str) -> Result<Listing, TransferError> {
        self.listing(run_id, "run").await
    }

    async fn run_artifacts_each(&self, run_ids: &[String]) -> Vec<Result<Listing, TransferError>> {
        self.listings(run_ids, "run").await
    }

    async fn open_run_artifact(&self, run_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        self.open_file(run_id, "run", path).await
    }

    async fn logged_models(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<Result<LoggedModel, TransferError>>, TransferError> {
        if !self.has("logged_models") {
            return Ok(Vec::new());
        }
        let experiment_id = parse_experiment_id(experiment_id)?;
        let rows = self
            .query(
                "SELECT model_id, name, artifact_location, CAST(creation_timestamp_ms AS BIGINT), \
                 CAST(last_updated_timestamp_ms AS BIGINT), CAST(status AS BIGINT), model_type, source_run_id, \
                 status_message FROM logged_models WHERE experiment_id = ? AND lifecycle_stage <> 'deleted' \
                 ORDER BY model_id",
            )
            .bind_i64(experiment_id)
            .fetch(&self.pool, &self.key)
            .await?;
        let mut models: Vec<Result<LoggedModel, TransferError>> = Vec::new();
        let mut index = HashMap::new();
        for row in &rows {
            let model_id = rows::text(row, 0)?;
            let status = match rows::opt_i64(row, 5)?.unwrap_or(0) {
                0 => Ok(LoggedModelStatus::LoggedModelStatusUnspecified),
                1 => Ok(LoggedModelStatus::LoggedModelPending),
                2 => Ok(LoggedModelStatus::LoggedModelReady),
                3 => Ok(LoggedModelStatus::LoggedModelUploadFailed),
                other => Err(TransferError::Decode(format!(
                    "logged model {model_id}: unknown status {other}"
                ))),
            };
            let artifact_uri = rows::text(row, 2)?;
            self.remember_root(&model_id, &artifact_uri);
            let model = match status {
                Ok(status) => Ok(LoggedModel {
                    info: LoggedModelInfo {
                        model_id: model_id.clone(),
                        experiment_id: experiment_id.to_string(),
                        name: rows::text(row, 1)?,
                        creation_timestamp_ms: rows::opt_i64(row, 3)?.unwrap_or(0),
                        last_updated_timestamp_ms: rows::opt_i64(row, 4)?.unwrap_or(0),
                        artifact_uri,
                        status,
                        creator_id: String::new(),
                        model_type: rows::opt_text(row, 6)?,
                        source_run_id: rows::opt_text(row, 7)?,
                        status_message: rows::opt_text(row, 8)?,
                        tags: Vec::new(),
                        registrations: Vec::new(),
                        lifecycle_stage: LifecycleStage::Active,
                    },
                    data: LoggedModelData::default(),
                }),
                Err(error) => Err(error),
            };
            index.insert(model_id, models.len());
            models.push(model);
        }
        if models.is_empty() {
            return Ok(models);
        }
        let mut with = |row: &Row, apply: &mut dyn FnMut(&mut LoggedModel) -> Result<(), TransferError>| {
            let id = rows::text(row, 0)?;
            if let Some(Ok(model)) = index.get(&id).map(|&at| &mut models[at]) {
                apply(model)?;
            }
            Ok::<_, TransferError>(())
        };
        if self.has("logged_model_tags") {
            for row in &self
                .query("SELECT model_id, tag_key, tag_value FROM logged_model_tags WHERE experiment_id = ? ORDER BY tag_key")
                .bind_i64(experiment_id)
                .fetch(&self.pool, &self.key)
                .await?
            {
                with(row, &mut |model| {
                    model.info.tags.push(rows::tag(row, 1)?);
                    Ok(())
                })?;
            }
        }
        if self.has("logged_model_params") {
            for row in &self
                .query(
                    "SELECT model_id, param_key, param_value FROM logged_model_params WHERE experiment_id = ? \
                     ORDER BY param_key",
                )
                .bind_i64(experiment_id)
                .fetch(&self.pool, &self.key)
                .await?
            {
                with(row, &mut |model| {
                    model.data.params.push(Param {
                        key: rows::text(row, 1)?,
                        value: rows::text(row, 2)?,
                    });
                    Ok(())
                })?;
            }
        }
        if self.has("logged_model_metrics") {
            for row in &self
                .query(
                    "SELECT model_id, metric_name, CAST(metric_value AS DOUBLE PRECISION), \
                     CAST(metric_timestamp_ms AS BIGINT), CAST(metric_step AS BIGINT), run_id, dataset_name, \
                     dataset_digest FROM logged_model_metrics WHERE experiment_id = ? \
                     ORDER BY metric_name, metric_step, metric_timestamp_ms",
                )
                .bind_i64(experiment_id)
                .fetch(&self.pool, &self.key)
                .await?
            {
                with(row, &mut |model| {
                    let model_id = model.info.model_id.clone();
                    model.data.metrics.push(Metric {
                        key: rows::text(row, 1)?,
                        value: rows::opt_f64(row, 2)?.unwrap_or(f64::NAN),
                        timestamp: rows::opt_i64(row, 3)?.unwrap_or(0),
                        step: rows::opt_i64(row, 4)?.unwrap_or(0),
                        run_id: rows::opt_text(row, 5)?,
                        dataset_name: rows::opt_text(row, 6)?,
                        dataset_digest: rows::opt_text(row, 7)?,
                        model_id: Some(model_id),
                    });
                    Ok(())
                })?;
            }
        }
        Ok(models)
    }

    async fn model_artifacts(&self, model_id: &str) -> Result<Listing, TransferError> {
        self.listing(model_id, "logged model").await
    }

    async fn open_model_artifact(&self, model_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        self.open_file(model_id, "logged model", path).await
    }

    async fn registered_models(
        &self,
        named: &[String],
    ) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>, TransferError> {
        if !self.has("registered_models") {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT m.name, CAST(m.creation_time AS BIGINT), CAST(m.last_updated_time AS BIGINT), m.description \
             FROM registered_models m WHERE 1 = 1{} ORDER BY m.name",
            self.in_workspace("m")
        );
        let mut models: Vec<(RegisteredModel, Vec<ModelVersion>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for row in &self.query(sql).fetch(&self.pool, &self.key).await? {
            let name = rows::text(row, 0)?;
            if !named.is_empty() && !named.contains(&name) {
                continue;
            }
            let created = rows::opt_i64(row, 1)?.unwrap_or(0);
            index.insert(name.clone(), models.len());
            models.push((
                RegisteredModel {
                    name,
                    creation_timestamp: created,
                    last_updated_timestamp: rows::opt_i64(row, 2)?.unwrap_or(created),
                    user_id: String::new(),
                    description: rows::opt_text(row, 3)?.unwrap_or_default(),
                    latest_versions: Vec::new(),
                    tags: Vec::new(),
                    aliases: Vec::new(),
                },
                Vec::new(),
            ));
        }
        if models.is_empty() {
            return Ok(models);
        }
        let scoped = |table: &str, columns: &str, order: &str| {
            format!(
                "SELECT t.name, {columns} FROM {table} t WHERE 1 = 1{} ORDER BY {order}",
                self.in_workspace("t")
            )
        };
        let versions = self
            .query(scoped(
                "model_versions",
                "CAST(t.version AS BIGINT), CAST(t.creation_time AS BIGINT), CAST(t.last_updated_time AS BIGINT), \
                 t.user_id, t.current_stage, t.description, t.source, t.run_id, t.status, t.status_message, t.run_link",
                "t.name, t.version",
            ))
            .fetch(&self.pool, &self.key)
            .await?;
        // (model, version) → position in the model's versions.
        let mut positions: HashMap<(usize, String), usize> = HashMap::new();
        for row in &versions {
            let Some(&at) = index.get(&rows::text(row, 0)?) else {
                continue;
            };
            let stage = rows::opt_text(row, 5)?.unwrap_or_else(|| "None".to_string());
            if stage == "Deleted_Internal" {
                continue;
            }
            let version = rows::i64(row, 1)?.to_string();
            let status = rows::opt_text(row, 9)?.unwrap_or_else(|| "READY".to_string());
            let created = rows::opt_i64(row, 2)?.unwrap_or(0);
            let (model, list) = &mut models[at];
            positions.insert((at, version.clone()), list.len());
            list.push(ModelVersion {
                name: model.name.clone(),
                creation_timestamp: created,
                last_updated_timestamp: rows::opt_i64(row, 3)?.unwrap_or(created),
                user_id: rows::opt_text(row, 4)?.unwrap_or_default(),
                current_stage: stage,
                description: rows::opt_text(row, 6)?.unwrap_or_default(),
                source: rows::opt_text(row, 7)?.unwrap_or_default(),
                run_id: rows::opt_text(row, 8)?.unwrap_or_default(),
                status: ModelVersionStatus::parse(&status).ok_or_else(|| {
                    TransferError::Decode(format!(
                        "model version {}/{version}: unknown status '{status}'",
                        model.name
                    ))
                })?,
                status_message: rows::opt_text(row, 10)?.unwrap_or_default(),
                tags: Vec::new(),
                run_link: rows::opt_text(row, 11)?.unwrap_or_default(),
                aliases: Vec::new(),
                model_id: String::new(),
                version,
            });
        }
        for row in &self
            .query(scoped("registered_model_tags", "t.key, t.value", "t.key"))
            .fetch(&self.pool, &self.key)
            .await?
        {
            if let Some(&at) = index.get(&rows::text(row, 0)?) {
                models[at].0.tags.push(rows::tag(row, 1)?);
            }
        }
        if self.has("model_version_tags") {
            for row in &self
                .query(scoped(
                    "model_version_tags",
                    "CAST(t.version AS BIGINT), t.key, t.value",
                    "t.key",
                ))
                .fetch(&self.pool, &self.key)
                .await?
            {
                let Some(&at) = index.get(&rows::text(row, 0)?) else {
                    continue;
                };
                if let Some(&position) = positions.get(&(at, rows::i64(row, 1)?.to_string())) {
                    models[at].1[position].tags.push(rows::tag(row, 2)?);
                }
            }
        }
        if self.has("registered_model_aliases") {
            for row in &self
                .query(scoped(
                    "registered_model_aliases",
                    "t.alias, CAST(t.version AS BIGINT)",
                    "t.alias",
                ))
                .fetch(&self.pool, &self.key)
                .await?
            {
                let Some(&at) = index.get(&rows::text(row, 0)?) else {
                    continue;
                };
                let alias = rows::text(row, 1)?;
                let version = rows::i64(row, 2)?.to_string();
                if let Some(&position) = positions.get(&(at, version.clone())) {
                    models[at].1[position].aliases.push(alias.clone());
                }
                models[at].0.aliases.push(RegisteredModelAlias { alias, version });
            }
        }
        Ok(models)
    }
}

#[cfg(test)]
mod tests;
