//! The runs of one experiment: each read (file listing, then histories when
//! it must be written) and written whole by its own task, several at once.
//! Parents are written before their children: the runs go in waves by
//! depth, so a child's `mlflow.parentRunId` can name its parent's copy.

use std::collections::HashMap;

use futures::StreamExt;
use tandem_core::model::{Metric, Run};
use tandem_core::transfer::{ImportAction, ImportOutcome, ObjectKind, Origin, TransferObject, HISTORY_CHUNK};

use super::files::verify;
use super::{normalize_run, object_digest, proxied_path, Copied, Copier, Owner};
use crate::source::Listing;
use crate::TransferError;

/// Runs read and written at once. The source's reads (a listing per run,
/// a history per metric) and the target's journaled writes overlap.
const RUNS_AT_ONCE: usize = 8;
/// Runs whose histories are read together (a source may read them in one
/// request per metric), and metrics read at once.
const HISTORY_BATCH: usize = 64;
const HISTORIES_AT_ONCE: usize = 4;

/// What one run's task found or did; applied to the copier afterwards.
enum Step {
    /// The target holds it with this digest (its id there).
    Unchanged(String),
    /// A dry run: it would be written.
    WouldCopy,
    Written(Written),
}

struct Written {
    action: ImportAction,
    target_id: String,
    target_uri: String,
    digest: String,
    points: u64,
    files: u64,
    bytes: u64,
}

/// A run to write: its copy at the target is missing or out of date.
struct Planned {
    run: Run,
    listing: Listing,
    digest: String,
}

/// A run's task and its result.
struct Done {
    source_id: String,
    source_uri: String,
    result: Result<Step, TransferError>,
}

impl Copier<'_> {
    /// Copies the runs of an experiment, as `select_runs` listed them.
    pub(super) async fn copy_runs(
        &mut self,
        runs: Vec<Run>,
        target_experiment: &str,
    ) -> Result<(), TransferError> {
        let total = runs.len() as u64;
        for run in &runs {
            self.seen.insert((ObjectKind::Run, run.info.run_id.clone()));
        }
        let mut done = 0;
        for wave in waves(runs) {
            let (wave_size, phase) = (wave.len(), std::time::Instant::now());
            let plan_ms;
            let writes;
            let mut finished = Vec::with_capacity(wave.len());
            let mut fatal = None;
            {
                let this = &*self;
                let mut stop = |task: Done, finished: &mut Vec<Done>| {
                    done += 1;
                    this.tick("runs", done, total);
                    // The whole side is gone: stop taking new runs (those
                    // in flight are dropped; each import is whole or not
                    // at all, and the next pass finishes them).
                    if matches!(&task.result, Err(error) if error.is_fatal()) {
                        fatal = Some(task);
                        return true;
                    }
                    finished.push(task);
                    false
                };
                // Listings and digests: a pass over an unchanged source is
                // nothing but these.
                let mut planned = Vec::new();
                let mut listed = futures::stream::iter(wave.into_iter().map(|run| this.plan_run(run)))
                    .buffer_unordered(RUNS_AT_ONCE);
                let mut stopped = false;
                while let Some(planning) = listed.next().await {
                    match planning {
                        Ok(plan) => planned.push(plan),
                        Err(task) => {
                            if stop(task, &mut finished) {
                                stopped = true;
                                break;
                            }
                        }
                    }
                }
                drop(listed);
                plan_ms = super::ms(phase);
                writes = planned.len();
                // Histories a batch of runs at a time (the next batch read
                // while this one is written), then the writes.
                let batches: Vec<Vec<Planned>> = if stopped {
                    Vec::new()
                } else {
                    chunked(planned, HISTORY_BATCH)
                };
                let mut read =
                    futures::stream::iter(batches.into_iter().map(|batch| this.read_histories(batch)))
                        .buffered(2);
                'batches: while let Some(batch) = read.next().await {
                    let mut writes = futures::stream::iter(
                        batch
                            .into_iter()
                            .map(|(plan, points)| this.write_planned(plan, points, target_experiment)),
                    )
                    .buffer_unordered(RUNS_AT_ONCE);
                    while let Some(task) = writes.next().await {
                        if stop(task, &mut finished) {
                            break 'batches;
                        }
                    }
                }
            }
            tracing::debug!(
                runs = wave_size,
                to_write = writes,
                plan_ms,
                write_ms = super::ms(phase) - plan_ms,
                "copied a wave of runs"
            );
            for task in finished.into_iter().chain(fatal) {
                self.apply(task)?;
            }
        }
        self.tick("runs", total, total);
        Ok(())
    }

    /// Counts and remembers what a run's task did; a failure is listed (or
    /// returned, when it is the whole side's).
    fn apply(&mut self, done: Done) -> Result<(), TransferError> {
        let Done {
            source_id,
            source_uri,
            result,
        } = done;
        let copied = |target_id: String, target_uri: Option<String>| Copied {
            target_id,
            source_uri: source_uri.clone(),
            target_uri,
        };
        match result {
            Err(error) => return self.fail(ObjectKind::Run, &source_id, &error),
            Ok(Step::Unchanged(target_id)) => {
                self.report.runs.unchanged += 1;
                self.runs.insert(source_id, copied(target_id, None));
            }
            Ok(Step::WouldCopy) => {
                self.would_copy(ObjectKind::Run, &source_id);
                self.runs.insert(source_id.clone(), copied(source_id, None));
            }
            Ok(Step::Written(written)) => {
                self.report.runs.count(written.action);
                self.report.metric_points += written.points;
                self.report.artifacts_copied += written.files;
                self.report.artifact_bytes += written.bytes;
                self.origins.insert(
                    (ObjectKind::Run, source_id.clone()),
                    Origin {
                        source: self.options.source_key.clone(),
                        kind: ObjectKind::Run,
                        source_id: source_id.clone(),
                        target_id: written.target_id.clone(),
                        digest: written.digest,
                        time: 0,
                    },
                );
                self.runs
                    .insert(source_id, copied(written.target_id, Some(written.target_uri)));
            }
        }
        Ok(())
    }

    /// A run's listing and digest: the run to write, or its task done
    /// (unchanged, counted by a dry run, or failed).
    async fn plan_run(&self, mut run: Run) -> Result<Planned, Done> {
        normalize_run(&mut run);
        let done = |run: &Run, result| Done {
            source_id: run.info.run_id.clone(),
            source_uri: run.info.artifact_uri.clone(),
            result,
        };
        let listing = match self.source.run_artifacts(&run.info.run_id).await {
            Ok(listing) => listing,
            Err(error) => return Err(done(&run, Err(error))),
        };
        let digest = object_digest("run", &run, &listing);
        if let Some(target_id) = self.unchanged(ObjectKind::Run, &run.info.run_id, &digest) {
            return Err(done(&run, Ok(Step::Unchanged(target_id))));
        }
        if self.options.dry_run {
            return Err(done(&run, Ok(Step::WouldCopy)));
        }
        Ok(Planned { run, listing, digest })
    }

    /// The complete histories of a batch of runs, read a metric at a time
    /// for all the runs that have it.
    async fn read_histories(
        &self,
        batch: Vec<Planned>,
    ) -> Vec<(Planned, Result<Vec<Metric>, TransferError>)> {
        let mut keys: Vec<&str> = batch
            .iter()
            .flat_map(|plan| plan.run.data.metrics.iter().map(|metric| metric.key.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut points: HashMap<String, Result<Vec<Metric>, TransferError>> = batch
            .iter()
            .map(|plan| (plan.run.info.run_id.clone(), Ok(Vec::new())))
            .collect();
        let read = futures::stream::iter(keys.into_iter().map(|key| {
            let run_ids: Vec<String> = batch
                .iter()
                .filter(|plan| plan.run.data.metrics.iter().any(|metric| metric.key == key))
                .map(|plan| plan.run.info.run_id.clone())
                .collect();
            async move { (run_ids.clone(), self.source.histories(key, &run_ids).await) }
        }))
        .buffered(HISTORIES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
        for (run_ids, histories) in read {
            match histories {
                Ok(mut histories) => {
                    for run_id in run_ids {
                        if let Some(Ok(held)) = points.get_mut(&run_id) {
                            held.extend(histories.remove(&run_id).unwrap_or_default());
                        }
                    }
                }
                Err(error) => {
                    for run_id in run_ids {
                        points.insert(run_id, Err(error.clone()));
                    }
                }
            }
        }
        batch
            .into_iter()
            .map(|plan| {
                let read = points
                    .remove(&plan.run.info.run_id)
                    .unwrap_or_else(|| Ok(Vec::new()));
                (plan, read)
            })
            .collect()
    }

    /// Writes a planned run whose histories were read.
    async fn write_planned(
        &self,
        plan: Planned,
        points: Result<Vec<Metric>, TransferError>,
        target_experiment: &str,
    ) -> Done {
        let source_id = plan.run.info.run_id.clone();
        let source_uri = plan.run.info.artifact_uri.clone();
        let result = match points {
            Ok(points) => self
                .write_run(plan.run, plan.listing, plan.digest, points, target_experiment)
                .await
                .map(Step::Written),
            Err(error) => Err(error),
        };
        Done {
            source_id,
            source_uri,
            result,
        }
    }

    /// Writes a run whole. A run without files whose history fits one
    /// chunk is one import, digest included; otherwise the run with the
    /// first chunk, the other chunks, its files (checked against what the
    /// target then holds), and last its digest, so an interrupted copy is
    /// finished by the next pass.
    async fn write_run(
        &self,
        run: Run,
        listing: Listing,
        digest: String,
        points: Vec<Metric>,
        target_experiment: &str,
    ) -> Result<Written, TransferError> {
        let source_id = run.info.run_id.clone();
        // The run as the target takes it: its experiment and parent here.
        let mut target_run = run;
        target_run.info.experiment_id = target_experiment.to_string();
        if let Some(origin) = self.origins.get(&(ObjectKind::Run, source_id.clone())) {
            target_run.info.run_id = origin.target_id.clone();
        }
        for tag in &mut target_run.data.tags {
            if tag.key == "mlflow.parentRunId" {
                if let Some(parent) = self.runs.get(&tag.value) {
                    tag.value = parent.target_id.clone();
                }
            }
        }
        target_run.data.metrics.clear();
        let one_import = listing.is_empty() && points.len() <= HISTORY_CHUNK;
        let mut chunks = points.chunks(HISTORY_CHUNK);
        let run_with = |metrics: &[Metric], run: &Run| TransferObject::Run {
            run: run.clone(),
            metrics: metrics.to_vec(),
        };
        let (first, held) = self
            .import(
                &source_id,
                one_import.then(|| digest.clone()),
                run_with(chunks.next().unwrap_or(&[]), &target_run),
            )
            .await?;
        target_run.info.run_id = first.target_id.clone();
        let mut written = Written {
            action: first.action,
            target_id: first.target_id.clone(),
            target_uri: first.artifact_uri.clone(),
            digest: digest.clone(),
            points: points.len() as u64,
            files: 0,
            bytes: 0,
        };
        touched(&mut written.action, &first);
        if one_import {
            return Ok(written);
        }
        for chunk in chunks {
            let (outcome, _) = self
                .import(&source_id, None, run_with(chunk, &target_run))
                .await?;
            touched(&mut written.action, &outcome);
        }
        if !listing.is_empty() {
            let Some(root) = proxied_path(&first.artifact_uri) else {
                return Err(TransferError::Integrity(format!(
                    "run {}'s artifacts live at {}, outside the target's artifact proxy",
                    written.target_id, first.artifact_uri
                )));
            };
            let uploaded = self
                .copy_artifacts(&listing, &held, &root, Owner::Run(&source_id))
                .await?;
            if !uploaded.is_empty() {
                let (_, now_held) = self.import(&source_id, None, run_with(&[], &target_run)).await?;
                verify(&uploaded, &now_held)?;
                written.files = uploaded.len() as u64;
                written.bytes = uploaded.iter().map(|(_, size, _)| *size as u64).sum();
                if written.action == ImportAction::Unchanged {
                    written.action = ImportAction::Updated;
                }
            }
        }
        let (last, _) = self
            .import(&source_id, Some(digest), run_with(&[], &target_run))
            .await?;
        touched(&mut written.action, &last);
        Ok(written)
    }
}

/// An import that changed something makes an unchanged copy an updated one.
fn touched(action: &mut ImportAction, outcome: &ImportOutcome) {
    if outcome.changes > 0 && *action == ImportAction::Unchanged {
        *action = ImportAction::Updated;
    }
}

/// `items` in batches of at most `size`, in order.
fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        batches.push(items.by_ref().take(size).collect());
    }
    batches
}

/// `runs` (parents first) in waves: each run in the wave after its
/// parent's, when its parent is among them.
fn waves(runs: Vec<Run>) -> Vec<Vec<Run>> {
    let mut depth: HashMap<String, usize> = HashMap::new();
    let mut waves: Vec<Vec<Run>> = Vec::new();
    for run in runs {
        let level = run
            .tag("mlflow.parentRunId")
            .and_then(|parent| depth.get(parent))
            .map_or(0, |parent| parent + 1);
        depth.insert(run.info.run_id.clone(), level);
        if waves.len() <= level {
            waves.resize_with(level + 1, Vec::new);
        }
        waves[level].push(run);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(id: &str, parent: Option<&str>) -> Run {
        let mut tags = Vec::new();
        if let Some(parent) = parent {
            tags.push(tandem_core::model::Tag::new("mlflow.parentRunId", parent));
        }
        serde_json::from_value(json!({
            "info": {"run_id": id, "run_uuid": id, "run_name": id, "experiment_id": "1", "status": "FINISHED",
                     "start_time": 0, "artifact_uri": "", "lifecycle_stage": "active"},
            "data": {"tags": tags},
        }))
        .unwrap()
    }

    #[test]
    fn children_come_in_the_wave_after_their_parents() {
        let runs = vec![
            run("a", None),
            run("x", Some("elsewhere")),
            run("b", Some("a")),
            run("c", Some("b")),
            run("d", Some("a")),
        ];
        let ids: Vec<Vec<String>> = waves(runs)
            .into_iter()
            .map(|wave| wave.into_iter().map(|run| run.info.run_id).collect())
            .collect();
        assert_eq!(ids, [vec!["a", "x"], vec!["b", "d"], vec!["c"]]);
    }
}
