//! The runs of a copy: planned an experiment at a time (files listed a
//! chunk of runs at a time, then each run's digest), and those the target
//! lacks or holds out of date written later with those of the other
//! experiments planned meanwhile, each whole by its own task, several at
//! once (histories read in batches while earlier runs are written).
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

/// Runs written at once (and a source's default listings in flight). The
/// source's history reads and the target's journaled writes overlap.
const RUNS_AT_ONCE: usize = 8;
/// Runs whose files are listed together when their experiment is planned.
const LISTED_TOGETHER: usize = 256;
/// Runs whose histories are read together at most (a source may read them
/// in one request per metric), and metrics read at once.
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
pub(super) struct Planned {
    run: Run,
    listing: Listing,
    digest: String,
    /// Its experiment's id at the target.
    experiment: String,
}

/// What planning a run found: it is to be written, or its task is done
/// (unchanged, counted by a dry run, or failed).
enum Plan {
    Write(Box<Planned>),
    Settled(Done),
}

/// A run's task and its result.
struct Done {
    source_id: String,
    source_uri: String,
    result: Result<Step, TransferError>,
}

impl Copier<'_> {
    /// Plans the runs of an experiment, as `select_runs` listed them: each
    /// one's listing (a chunk of runs listed together) and digest. Those
    /// the target holds as they are settle here; the others wait in
    /// `pending_runs` for `write_pending`, with those of other experiments.
    pub(super) async fn plan_runs(
        &mut self,
        runs: Vec<Run>,
        target_experiment: &str,
    ) -> Result<(), TransferError> {
        self.runs_listed += runs.len() as u64;
        for run in &runs {
            self.seen.insert((ObjectKind::Run, run.info.run_id.clone()));
        }
        let phase = std::time::Instant::now();
        let (mut settled, mut planned) = (Vec::new(), Vec::new());
        let mut fatal = None;
        // The files of a chunk of runs listed together (a source may list
        // them in one go), then each run's digest.
        let mut runs = runs.into_iter().peekable();
        'chunks: while runs.peek().is_some() {
            let mut chunk: Vec<Run> = runs.by_ref().take(LISTED_TOGETHER).collect();
            let ids: Vec<String> = chunk.iter().map(|run| run.info.run_id.clone()).collect();
            let listings = self.source.run_artifacts_each(&ids).await;
            for (run, listing) in chunk.drain(..).zip(listings) {
                match self.plan_run(run, listing, target_experiment) {
                    Plan::Write(plan) => planned.push(*plan),
                    Plan::Settled(task) if matches!(&task.result, Err(error) if error.is_fatal()) => {
                        fatal = Some(task);
                        break 'chunks;
                    }
                    Plan::Settled(task) => settled.push(task),
                }
            }
        }
        tracing::debug!(
            settled = settled.len(),
            to_write = planned.len(),
            ms = super::ms(phase),
            "planned the runs of an experiment"
        );
        self.pending_runs.extend(planned);
        for task in settled.into_iter().chain(fatal) {
            self.runs_done += 1;
            self.apply(task)?;
        }
        self.tick("runs", self.runs_done, self.runs_listed);
        Ok(())
    }

    /// Writes the runs planned so far, of every experiment at once: parents
    /// before their children (in waves by depth, so a child's
    /// `mlflow.parentRunId` can name its parent's copy), histories read a
    /// batch of runs at a time while the previous batch is written.
    pub(super) async fn write_pending(&mut self) -> Result<(), TransferError> {
        let pending = std::mem::take(&mut self.pending_runs);
        for wave in waves(pending) {
            let (wave_size, phase) = (wave.len(), std::time::Instant::now());
            let mut finished = Vec::with_capacity(wave.len());
            let mut fatal = None;
            {
                let this = &*self;
                // Batches small enough that a few changed runs still
                // make several: the first runs are written while the
                // next ones' histories are read.
                let batch = wave.len().div_ceil(RUNS_AT_ONCE).clamp(1, HISTORY_BATCH);
                let mut writes = futures::stream::iter(
                    chunked(wave, batch)
                        .into_iter()
                        .map(|batch| this.read_histories(batch)),
                )
                .buffered(2)
                .flat_map(futures::stream::iter)
                .map(|(plan, points)| this.write_planned(plan, points))
                .buffer_unordered(RUNS_AT_ONCE);
                while let Some(task) = writes.next().await {
                    // The whole side is gone: stop taking new runs (those
                    // in flight are dropped; each import is whole or not
                    // at all, and the next pass finishes them).
                    if matches!(&task.result, Err(error) if error.is_fatal()) {
                        fatal = Some(task);
                        break;
                    }
                    finished.push(task);
                    this.tick("runs", this.runs_done + finished.len() as u64, this.runs_listed);
                }
            }
            tracing::debug!(runs = wave_size, ms = super::ms(phase), "wrote a wave of runs");
            for task in finished.into_iter().chain(fatal) {
                self.runs_done += 1;
                self.apply(task)?;
            }
        }
        self.tick("runs", self.runs_done, self.runs_listed);
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

    /// A run's digest, from its listing: the run to write, or its task
    /// done (unchanged, counted by a dry run, or failed).
    fn plan_run(
        &self,
        mut run: Run,
        listing: Result<Listing, TransferError>,
        target_experiment: &str,
    ) -> Plan {
        normalize_run(&mut run);
        let done = |run: &Run, result| Done {
            source_id: run.info.run_id.clone(),
            source_uri: run.info.artifact_uri.clone(),
            result,
        };
        let listing = match listing {
            Ok(listing) => listing,
            Err(error) => return Plan::Settled(done(&run, Err(error))),
        };
        let digest = object_digest("run", &run, &listing);
        if let Some(target_id) = self.unchanged(ObjectKind::Run, &run.info.run_id, &digest) {
            return Plan::Settled(done(&run, Ok(Step::Unchanged(target_id))));
        }
        if self.options.dry_run {
            return Plan::Settled(done(&run, Ok(Step::WouldCopy)));
        }
        Plan::Write(Box::new(Planned {
            run,
            listing,
            digest,
            experiment: target_experiment.to_string(),
        }))
    }

    /// The complete histories of a batch of runs, read a metric at a time
    /// for all the runs that have it.
    async fn read_histories(
        &self,
        batch: Vec<Planned>,
    ) -> Vec<(Planned, Result<Vec<Metric>, TransferError>)> {
        let phase = std::time::Instant::now();
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
        tracing::debug!(runs = batch.len(), ms = super::ms(phase), "read histories");
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
    async fn write_planned(&self, plan: Planned, points: Result<Vec<Metric>, TransferError>) -> Done {
        let source_id = plan.run.info.run_id.clone();
        let source_uri = plan.run.info.artifact_uri.clone();
        let result = match points {
            Ok(points) => self
                .write_run(plan.run, plan.listing, plan.digest, points, &plan.experiment)
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

/// `planned` in waves: each run in the wave after its parent's, when its
/// parent is among them (in any order).
fn waves(planned: Vec<Planned>) -> Vec<Vec<Planned>> {
    let ids: std::collections::HashSet<&str> =
        planned.iter().map(|plan| plan.run.info.run_id.as_str()).collect();
    let parents: HashMap<String, String> = planned
        .iter()
        .filter_map(|plan| {
            let parent = plan
                .run
                .tag("mlflow.parentRunId")
                .filter(|parent| ids.contains(parent))?;
            Some((plan.run.info.run_id.clone(), parent.to_string()))
        })
        .collect();
    let depth = |id: &str| {
        let (mut depth, mut at) = (0, id);
        // Bounded: a cycle of parent links (which MLflow does not stop)
        // ends when it has gone round every run.
        while let Some(parent) = parents.get(at) {
            if depth >= parents.len() {
                break;
            }
            depth += 1;
            at = parent;
        }
        depth
    };
    let mut waves: Vec<Vec<Planned>> = Vec::new();
    for plan in planned {
        let level = depth(&plan.run.info.run_id);
        if waves.len() <= level {
            waves.resize_with(level + 1, Vec::new);
        }
        waves[level].push(plan);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn planned(id: &str, parent: Option<&str>) -> Planned {
        let mut tags = Vec::new();
        if let Some(parent) = parent {
            tags.push(tandem_core::model::Tag::new("mlflow.parentRunId", parent));
        }
        let run = serde_json::from_value(json!({
            "info": {"run_id": id, "run_uuid": id, "run_name": id, "experiment_id": "1", "status": "FINISHED",
                     "start_time": 0, "artifact_uri": "", "lifecycle_stage": "active"},
            "data": {"tags": tags},
        }))
        .unwrap();
        Planned {
            run,
            listing: Listing::new(),
            digest: String::new(),
            experiment: "1".to_string(),
        }
    }

    fn wave_ids(planned: Vec<Planned>) -> Vec<Vec<String>> {
        waves(planned)
            .into_iter()
            .map(|wave| wave.into_iter().map(|plan| plan.run.info.run_id).collect())
            .collect()
    }

    #[test]
    fn children_come_in_the_wave_after_their_parents_in_any_order() {
        // Planning finishes in any order, and a parent may be in another
        // experiment listed later.
        let runs = vec![
            planned("c", Some("b")),
            planned("x", Some("elsewhere")),
            planned("b", Some("a")),
            planned("d", Some("a")),
            planned("a", None),
        ];
        assert_eq!(wave_ids(runs), [vec!["x", "a"], vec!["b", "d"], vec!["c"]]);
    }

    #[test]
    fn a_cycle_of_parents_still_ends() {
        let runs = vec![planned("a", Some("b")), planned("b", Some("a"))];
        let waves = wave_ids(runs);
        assert_eq!(waves.iter().map(Vec::len).sum::<usize>(), 2);
    }
}
