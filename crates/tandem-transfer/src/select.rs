//! Which objects a copy or an export takes from a source: the same choice
//! whether they go into a workspace or into a bundle.

use std::collections::{HashMap, HashSet};

use tandem_core::model::{Experiment, LifecycleStage, ModelVersion, RegisteredModel, Run};

use crate::copy::CopyOptions;
use crate::source::Source;
use crate::TransferError;

/// The registered models selected, with all their versions: the named
/// ones, none when only experiments are named, else every one.
pub(crate) async fn select_registered_models(
    source: &dyn Source,
    options: &CopyOptions,
) -> Result<Vec<(RegisteredModel, Vec<ModelVersion>)>, TransferError> {
    if !options.experiments.is_empty() && options.registered_models.is_empty() {
        return Ok(Vec::new());
    }
    source.registered_models(&options.registered_models).await
}

/// The runs the versions of `registered` were made from: they come along
/// whatever the run selection says.
pub(crate) fn needed_runs(registered: &[(RegisteredModel, Vec<ModelVersion>)]) -> HashSet<String> {
    registered
        .iter()
        .flat_map(|(_, versions)| versions)
        .filter(|version| !version.run_id.is_empty())
        .map(|version| version.run_id.clone())
        .collect()
}

/// The experiments selected, each with whether it is taken whole (`false`:
/// only for the runs a copied model version needs).
pub(crate) async fn select_experiments(
    source: &dyn Source,
    options: &CopyOptions,
) -> Result<Vec<(Experiment, bool)>, TransferError> {
    let mut experiments = Vec::new();
    for experiment in source.experiments(options.include_deleted).await? {
        let selected = options.experiments.is_empty()
            || options
                .experiments
                .iter()
                .any(|wanted| *wanted == experiment.name || *wanted == experiment.experiment_id);
        // With only registered models named, the experiments copied are
        // those holding the runs their versions need.
        let by_model = !options.registered_models.is_empty() && options.experiments.is_empty();
        if selected || by_model {
            experiments.push((experiment, selected && !by_model));
        }
    }
    Ok(experiments)
}

/// The runs of one experiment to copy, parents before their children.
pub(crate) async fn select_runs(
    source: &dyn Source,
    options: &CopyOptions,
    experiment_id: &str,
    whole: bool,
    needed_runs: &HashSet<String>,
) -> Result<Vec<Run>, TransferError> {
    let filter = options.run_filter.as_deref().filter(|_| whole);
    let mut listed = source.runs(experiment_id, filter).await?;
    if filter.is_some() && !needed_runs.is_empty() {
        // The filter does not drop a run a copied version was made from.
        let have: HashSet<String> = listed.iter().map(|run| run.info.run_id.clone()).collect();
        listed.extend(
            source
                .runs(experiment_id, None)
                .await?
                .into_iter()
                .filter(|run| needed_runs.contains(&run.info.run_id) && !have.contains(&run.info.run_id)),
        );
    }
    let runs = listed
        .into_iter()
        .filter(|run| {
            let deleted = run.info.lifecycle_stage == LifecycleStage::Deleted;
            if whole {
                !deleted || options.include_deleted || needed_runs.contains(&run.info.run_id)
            } else {
                needed_runs.contains(&run.info.run_id)
            }
        })
        .collect();
    Ok(parents_first(runs))
}

/// Runs ordered so that a parent comes before its children (by
/// `mlflow.parentRunId`), which lets a child's link be rewritten when its
/// parent had to take a new id.
pub(crate) fn parents_first(runs: Vec<Run>) -> Vec<Run> {
    let ids: HashSet<String> = runs.iter().map(|run| run.info.run_id.clone()).collect();
    let mut depth_of: HashMap<String, usize> = HashMap::new();
    let parent_of: HashMap<String, String> = runs
        .iter()
        .filter_map(|run| {
            run.tag("mlflow.parentRunId")
                .filter(|parent| ids.contains(*parent))
                .map(|parent| (run.info.run_id.clone(), parent.to_string()))
        })
        .collect();
    for id in &ids {
        let mut depth = 0;
        let mut at = id.clone();
        while let Some(parent) = parent_of.get(&at) {
            depth += 1;
            at = parent.clone();
            if depth > ids.len() {
                break;
            }
        }
        depth_of.insert(id.clone(), depth);
    }
    let mut runs = runs;
    runs.sort_by_key(|run| {
        (
            depth_of.get(&run.info.run_id).copied().unwrap_or(0),
            run.info.start_time,
        )
    });
    runs
}
