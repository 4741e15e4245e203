//! What a copy reads: a [`Source`] holds experiments, runs with their
//! complete metric histories and artifacts, logged models and registered
//! models, in MLflow's shapes. Three kinds: a tracking server read through
//! MLflow's REST API ([`TrackingSource`], an `mlflow server` or a Tandem
//! workspace), an `mlflow server`'s own database and artifact root
//! ([`crate::MlflowStoreSource`]), and a bundle
//! ([`crate::bundle::BundleSource`]). The copy and the bundle writer walk
//! each the same way.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tandem_core::model::{Experiment, LoggedModel, Metric, ModelVersion, RegisteredModel, Run};

use crate::copy::{proxied_path, proxy_url};
use crate::endpoint::Endpoint;
use crate::TransferError;

/// Runs whose files `run_artifacts_each` lists at once by default.
const LISTINGS_AT_ONCE: usize = 8;

/// An artifact's bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, TransferError>>;

/// A file of a run's or logged model's artifacts: path and size.
pub type Listing = Vec<(String, i64)>;

#[async_trait]
pub trait Source: Send + Sync {
    /// How a target names this source in the origins it keeps (a tracking
    /// URI without credentials), so a later copy recognises what it holds.
    fn key(&self) -> String;

    /// Every experiment, deleted ones too when asked.
    async fn experiments(&self, include_deleted: bool) -> Result<Vec<Experiment>, TransferError>;

    /// The runs of an experiment, deleted ones included; only those
    /// matching `filter` (MLflow's search syntax) when one is given.
    async fn runs(&self, experiment_id: &str, filter: Option<&str>) -> Result<Vec<Run>, TransferError>;

    /// A metric's complete history.
    async fn history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, TransferError>;

    /// The complete histories of metric `key` in each of `run_ids`, by run
    /// id (a run without points is left out). One `history` per run
    /// unless the source reads several runs at once.
    async fn histories(
        &self,
        key: &str,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<Metric>>, TransferError> {
        let mut out = HashMap::new();
        for run_id in run_ids {
            let history = self.history(run_id, key).await?;
            if !history.is_empty() {
                out.insert(run_id.clone(), history);
            }
        }
        Ok(out)
    }

    /// Every file of a run's artifacts, sorted by path.
    async fn run_artifacts(&self, run_id: &str) -> Result<Listing, TransferError>;

    /// The files of each of `run_ids` (as `run_artifacts`, each its own
    /// result): several at once unless the source lists them together.
    async fn run_artifacts_each(&self, run_ids: &[String]) -> Vec<Result<Listing, TransferError>> {
        // Collected first: a stream over a borrowing closure is not `Send`
        // enough for `async_trait`.
        let listings: Vec<_> = run_ids.iter().map(|run_id| self.run_artifacts(run_id)).collect();
        futures::stream::iter(listings)
            .buffered(LISTINGS_AT_ONCE)
            .collect()
            .await
    }

    /// A run's artifact.
    async fn open_run_artifact(&self, run_id: &str, path: &str) -> Result<ByteStream, TransferError>;

    /// The logged models of an experiment (one that cannot be read is an
    /// error of its own, so the others still come across).
    async fn logged_models(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<Result<LoggedModel, TransferError>>, TransferError>;

    /// Every file of a logged model's artifacts, sorted by path.
    async fn model_artifacts(&self, model_id: &str) -> Result<Listing, TransferError>;

    /// A logged model's artifact.
    async fn open_model_artifact(&self, model_id: &str, path: &str) -> Result<ByteStream, TransferError>;

    /// Registered models with all their versions in number order; only the
    /// `named` ones unless that is empty.
    async fn registered_models(
        &self,
        named: &[String],
    ) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>, TransferError>;
}

/// A tracking server read through MLflow's REST API.
pub struct TrackingSource {
    endpoint: Endpoint,
    /// The source has no `get-history-bulk` (it answered 404 once).
    no_bulk_history: AtomicBool,
    /// The artifact roots of the runs listed whose files are behind the
    /// source's own artifact proxy (`mlflow-artifacts:/…`), by run id. Those
    /// files are listed and read at the proxy directly: `artifacts/list` and
    /// `get-artifact` look the run up first on every request, which makes
    /// an `mlflow server` several times slower to answer, and a pass over
    /// an unchanged source is mostly these listings.
    proxied_roots: Mutex<HashMap<String, String>>,
    /// Runs known to have no files at the moment their experiment was
    /// listed (each answers the run's next listing only): MLflow keeps a run's files under `<experiment root>/<run
    /// id>/artifacts`, and the directory of a run that never logged a file
    /// does not exist. One listing of the experiment's root answers for all
    /// its runs, where listing each run costs the source a request (most of
    /// a pass over an unchanged source, since most runs have no files).
    without_files: Mutex<HashSet<String>>,
}

/// MLflow's limits on one `get-history-bulk` request.
const BULK_HISTORY_POINTS: usize = 25_000;
const BULK_HISTORY_RUNS: usize = 100;

/// MLflow's artifact proxy, relative to a tracking URI.
const PROXY_ROUTE: &str = "api/2.0/mlflow-artifacts/artifacts";

impl TrackingSource {
    pub fn new(endpoint: Endpoint) -> TrackingSource {
        TrackingSource {
            endpoint,
            no_bulk_history: AtomicBool::new(false),
            proxied_roots: Mutex::default(),
            without_files: Mutex::default(),
        }
    }

    /// Lists once the directory holding the run directories of `runs`
    /// (those whose root is `<parent>/<run id>/artifacts` at the proxy) and
    /// remembers which runs have no directory there. A parent that cannot
    /// be listed leaves its runs to be listed one by one.
    async fn note_runs_without_files(&self, runs: &[(String, String)]) {
        let mut families: HashMap<&str, Vec<&str>> = HashMap::new();
        for (run_id, root) in runs {
            if let Some(parent) = run_parent(root, run_id) {
                families.entry(parent).or_default().push(run_id);
            }
        }
        for (parent, run_ids) in families {
            // One run's own listing costs as much as its parent's.
            if run_ids.len() < 2 {
                continue;
            }
            let listed: Result<Value, _> = self
                .endpoint
                .get_json(PROXY_ROUTE, &[("path", parent.to_string())])
                .await;
            let Ok(listed) = listed else { continue };
            let present: HashSet<&str> = listed["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|file| file["path"].as_str())
                .map(|path| path.rsplit('/').next().unwrap_or(path))
                .collect();
            let mut without = self
                .without_files
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for run_id in run_ids {
                if present.contains(run_id) {
                    without.remove(run_id);
                } else {
                    without.insert(run_id.to_string());
                }
            }
        }
    }

    /// Where run `run_id`'s files are in the source's proxy, if they are.
    fn proxied_root(&self, run_id: &str) -> Option<String> {
        self.proxied_roots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(run_id)
            .cloned()
    }

    /// Every file under `root` in the source's artifact proxy, with paths
    /// relative to it (the proxy names each entry by its base name).
    async fn proxied_listing(&self, root: &str) -> Result<Listing, TransferError> {
        let mut files = Vec::new();
        let mut directories = vec![String::new()];
        while let Some(directory) = directories.pop() {
            let path = if directory.is_empty() {
                root.to_string()
            } else {
                format!("{root}/{directory}")
            };
            let answer: Value = self.endpoint.get_json(PROXY_ROUTE, &[("path", path)]).await?;
            for file in answer["files"].as_array().into_iter().flatten() {
                let name = file["path"].as_str().unwrap_or_default();
                let name = name.rsplit('/').next().unwrap_or(name);
                if name.is_empty() {
                    continue;
                }
                let relative = if directory.is_empty() {
                    name.to_string()
                } else {
                    format!("{directory}/{name}")
                };
                if file["is_dir"].as_bool().unwrap_or(false) {
                    directories.push(relative);
                } else {
                    files.push((relative, file["file_size"].as_i64().unwrap_or(0)));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn open(
        &self,
        route: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<ByteStream, TransferError> {
        self.open_url(self.endpoint.url(route), query).await
    }

    async fn open_url(
        &self,
        url: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<ByteStream, TransferError> {
        let response = self.endpoint.send(|http| http.get(&url).query(&query)).await?;
        let base = self.endpoint.base().to_string();
        Ok(response
            .bytes_stream()
            .map_err(move |error| TransferError::Transport {
                url: base.clone(),
                message: format!("the download broke: {error}"),
            })
            .boxed())
    }

    async fn listing(
        &self,
        route: &str,
        directory_param: &'static str,
        fixed: Vec<(&'static str, String)>,
    ) -> Result<Option<Listing>, TransferError> {
        let mut files = Vec::new();
        let mut directories = vec![String::new()];
        while let Some(directory) = directories.pop() {
            let mut query = fixed.clone();
            if !directory.is_empty() || directory_param == "artifact_directory_path" {
                query.push((directory_param, directory.clone()));
            }
            let answer: Value = match self.endpoint.get_json(route, &query).await {
                Ok(answer) => answer,
                // A logged model with no artifacts yet has no directory.
                Err(TransferError::Api { status: 404, .. })
                    if directory.is_empty() && directory_param == "artifact_directory_path" =>
                {
                    return Ok(None)
                }
                Err(error) => return Err(error),
            };
            for file in answer["files"].as_array().into_iter().flatten() {
                let path = file["path"].as_str().unwrap_or_default().to_string();
                if file["is_dir"].as_bool().unwrap_or(false) {
                    directories.push(path);
                } else {
                    files.push((path, file["file_size"].as_i64().unwrap_or(0)));
                }
            }
        }
        files.sort();
        Ok(Some(files))
    }
}

/// `<parent>` of a run root `<parent>/<run id>/artifacts` at the proxy, the
/// layout MLflow gives a run under its experiment's root; None for any
/// other root (or one at the proxy's top, whose listing is everything).
fn run_parent<'a>(root: &'a str, run_id: &str) -> Option<&'a str> {
    let parent = root
        .strip_suffix("/artifacts")?
        .strip_suffix(run_id)?
        .strip_suffix('/')?;
    (!parent.is_empty() && !run_id.is_empty()).then_some(parent)
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, TransferError> {
    serde_json::from_value(value).map_err(|error| TransferError::Decode(format!("{what}: {error}")))
}

#[async_trait]
impl Source for TrackingSource {
    fn key(&self) -> String {
        self.endpoint.base().to_string()
    }

    async fn experiments(&self, include_deleted: bool) -> Result<Vec<Experiment>, TransferError> {
        let view = if include_deleted { "ALL" } else { "ACTIVE_ONLY" };
        self.endpoint
            .pages(
                "api/2.0/mlflow/experiments/search",
                true,
                json!({"max_results": 1000, "view_type": view}),
                "experiments",
            )
            .await?
            .into_iter()
            .map(|value| decode("experiment", value))
            .collect()
    }

    async fn runs(&self, experiment_id: &str, filter: Option<&str>) -> Result<Vec<Run>, TransferError> {
        let mut body =
            json!({"experiment_ids": [experiment_id], "run_view_type": "ALL", "max_results": 1000});
        if let Some(filter) = filter {
            body["filter"] = json!(filter);
        }
        let runs = self
            .endpoint
            .pages("api/2.0/mlflow/runs/search", true, body, "runs")
            .await?
            .into_iter()
            .map(|value| decode("run", value))
            .collect::<Result<Vec<Run>, _>>()?;
        // Only a proxy URI without a host: one with a host may name another
        // server's proxy.
        let proxied: Vec<(String, String)> = runs
            .iter()
            .filter(|run| !run.info.artifact_uri.starts_with("mlflow-artifacts://"))
            .filter_map(|run| {
                proxied_path(&run.info.artifact_uri).map(|root| (run.info.run_id.clone(), root))
            })
            .collect();
        self.note_runs_without_files(&proxied).await;
        self.proxied_roots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(proxied);
        Ok(runs)
    }

    async fn history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, TransferError> {
        self.endpoint
            .pages(
                "api/2.0/mlflow/metrics/get-history",
                false,
                json!({"run_id": run_id, "metric_key": key, "max_results": 25000}),
                "metrics",
            )
            .await?
            .into_iter()
            .map(|value| decode("metric", value))
            .collect()
    }

    /// Through MLflow's `get-history-bulk` (the UI's route): up to 100 runs
    /// and 25,000 points a request, sorted by run id, cut after the first
    /// 25,000. A request that comes back full is complete for the runs
    /// before the last one in it; the rest go again, and a run that fills
    /// a request alone is read page by page. Reading a source's histories
    /// is most of what a full copy asks of an `mlflow server`, and it
    /// spends about half as much per point this way.
    async fn histories(
        &self,
        key: &str,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<Metric>>, TransferError> {
        let mut out: HashMap<String, Vec<Metric>> = HashMap::new();
        let mut pending: Vec<String> = run_ids.to_vec();
        pending.sort();
        pending.dedup();
        pending.reverse(); // popped from the end: ascending
                           // Points per run in the last answer, to size the next request.
        let mut per_run = 1usize;
        while !pending.is_empty() {
            if self.no_bulk_history.load(Ordering::Relaxed) {
                for run_id in pending.drain(..) {
                    let history = self.history(&run_id, key).await?;
                    if !history.is_empty() {
                        out.insert(run_id, history);
                    }
                }
                break;
            }
            let size = (BULK_HISTORY_POINTS / 2 / per_run).clamp(1, BULK_HISTORY_RUNS);
            let group: Vec<String> = (0..size.min(pending.len()))
                .filter_map(|_| pending.pop())
                .collect();
            let mut query: Vec<(&str, String)> = group.iter().map(|id| ("run_id", id.clone())).collect();
            query.push(("metric_key", key.to_string()));
            query.push(("max_results", BULK_HISTORY_POINTS.to_string()));
            let answer: Value = match self
                .endpoint
                .get_json("ajax-api/2.0/mlflow/metrics/get-history-bulk", &query)
                .await
            {
                Ok(answer) => answer,
                // A server without the route: one run at a time.
                Err(TransferError::Api { status: 404, .. }) => {
                    self.no_bulk_history.store(true, Ordering::Relaxed);
                    pending.extend(group.into_iter().rev());
                    continue;
                }
                Err(error) => return Err(error),
            };
            let points: Vec<Metric> = decode(
                "metric history",
                answer.get("metrics").cloned().unwrap_or_else(|| json!([])),
            )?;
            let full = points.len() >= BULK_HISTORY_POINTS;
            let answered = points.len();
            // Complete: every run of the group when the answer was not cut,
            // else those before the run it was cut in (sorted by run id).
            let cut_in = if full {
                points.last().and_then(|point| point.run_id.clone())
            } else {
                None
            };
            let mut runs_answered = HashSet::new();
            for mut point in points {
                let Some(run_id) = point.run_id.take() else {
                    return Err(TransferError::Decode(
                        "metric history: a bulk point without its run_id".to_string(),
                    ));
                };
                if !group.contains(&run_id) {
                    return Err(TransferError::Decode(format!(
                        "metric history: a point of run {run_id}, which was not asked for"
                    )));
                }
                runs_answered.insert(run_id.clone());
                if cut_in.as_ref() != Some(&run_id) {
                    out.entry(run_id).or_default().push(point);
                }
            }
            // The last answer's size decides the next request's: one large
            // run must not leave every later request asking for one run.
            per_run = (answered / runs_answered.len().max(1)).max(1);
            if let Some(cut_in) = cut_in {
                let again = group.into_iter().filter(|id| *id >= cut_in).rev();
                if runs_answered.len() == 1 {
                    // One run fills a request alone: read it page by page.
                    let history = self.history(&cut_in, key).await?;
                    out.insert(cut_in.clone(), history);
                    pending.extend(again.filter(|id| *id != cut_in));
                } else {
                    pending.extend(again);
                }
            }
        }
        Ok(out)
    }

    async fn run_artifacts(&self, run_id: &str) -> Result<Listing, TransferError> {
        // The experiment's listing answers once: a later question (after
        // an upload to this run, say) goes to the source.
        let without_files = self
            .without_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(run_id);
        if without_files {
            return Ok(Listing::new());
        }
        if let Some(root) = self.proxied_root(run_id) {
            return self.proxied_listing(&root).await;
        }
        let listed = self
            .listing(
                "api/2.0/mlflow/artifacts/list",
                "path",
                vec![("run_id", run_id.to_string())],
            )
            .await?;
        Ok(listed.unwrap_or_default())
    }

    async fn open_run_artifact(&self, run_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        if let Some(root) = self.proxied_root(run_id) {
            let url = proxy_url(&self.endpoint.url(PROXY_ROUTE), &format!("{root}/{path}"))?;
            return self.open_url(url, Vec::new()).await;
        }
        self.open(
            "get-artifact",
            vec![("path", path.to_string()), ("run_uuid", run_id.to_string())],
        )
        .await
    }

    async fn logged_models(
        &self,
        experiment_id: &str,
    ) -> Result<Vec<Result<LoggedModel, TransferError>>, TransferError> {
        let listed = match self
            .endpoint
            .pages(
                "api/2.0/mlflow/logged-models/search",
                true,
                json!({"experiment_ids": [experiment_id], "max_results": 100}),
                "models",
            )
            .await
        {
            Ok(listed) => listed,
            // An MLflow server older than 3 has no logged models.
            Err(TransferError::Api { status: 404, .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        Ok(listed
            .into_iter()
            .map(|value| decode("logged model", value))
            .collect())
    }

    async fn model_artifacts(&self, model_id: &str) -> Result<Listing, TransferError> {
        let route = format!(
            "ajax-api/2.0/mlflow/logged-models/{}/artifacts/directories",
            encode_segment(model_id)
        );
        let listed = self
            .listing(&route, "artifact_directory_path", Vec::new())
            .await?;
        Ok(listed.unwrap_or_default())
    }

    async fn open_model_artifact(&self, model_id: &str, path: &str) -> Result<ByteStream, TransferError> {
        let route = format!(
            "ajax-api/2.0/mlflow/logged-models/{}/artifacts/files",
            encode_segment(model_id)
        );
        self.open(&route, vec![("artifact_file_path", path.to_string())])
            .await
    }

    async fn registered_models(
        &self,
        named: &[String],
    ) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>, TransferError> {
        let listed = self
            .endpoint
            .pages(
                "api/2.0/mlflow/registered-models/search",
                false,
                json!({"max_results": 1000}),
                "registered_models",
            )
            .await?;
        let mut out = Vec::new();
        for value in listed {
            let mut model: RegisteredModel = decode("registered model", value)?;
            if !named.is_empty() && !named.contains(&model.name) {
                continue;
            }
            let filter = if model.name.contains('\'') {
                format!("name=\"{}\"", model.name)
            } else {
                format!("name='{}'", model.name)
            };
            let versions = self
                .endpoint
                .pages(
                    "api/2.0/mlflow/model-versions/search",
                    false,
                    json!({"filter": filter, "max_results": 10000}),
                    "model_versions",
                )
                .await?;
            let mut versions: Vec<ModelVersion> = versions
                .into_iter()
                .map(|value| decode("model version", value))
                .collect::<Result<_, _>>()?;
            versions.sort_by_key(|version| version.version.parse::<i64>().unwrap_or(i64::MAX));
            model.latest_versions.clear();
            model.tags.sort_by(|a, b| a.key.cmp(&b.key));
            model.aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
            out.push((model, versions));
        }
        Ok(out)
    }
}

/// A Tandem workspace's tracking URI on `server`.
pub fn workspace_url(server: &str, workspace: &str) -> String {
    format!("{}/w/{}", server.trim_end_matches('/'), encode_segment(workspace))
}

/// One URL path segment, percent-encoded.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut url = url::Url::parse("http://x/").expect("a base URL");
    url.path_segments_mut().expect("a base").push(segment);
    url.path().trim_start_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::run_parent;

    #[test]
    fn a_run_root_names_its_experiments_directory() {
        assert_eq!(run_parent("1/abc/artifacts", "abc"), Some("1"));
        assert_eq!(run_parent("team/1/abc/artifacts", "abc"), Some("team/1"));
        // Not MLflow's layout: listed run by run.
        assert_eq!(run_parent("1/xabc/artifacts", "abc"), None);
        assert_eq!(run_parent("1/abc/files", "abc"), None);
        assert_eq!(run_parent("abc/artifacts", "abc"), None);
        assert_eq!(run_parent("/abc/artifacts", "abc"), None);
    }
}
