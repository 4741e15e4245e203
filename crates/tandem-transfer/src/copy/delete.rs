//! `--delete`: the target's copies of objects the source no longer lists
//! are deleted (softly, as a user's delete would: recoverable for the
//! workspace's retention).
//!
//! Runs and experiments are deleted through the import endpoint itself,
//! with the digest [`DELETED`]: the deletion is journaled like any import,
//! and when the source holds the object again (restored there) its digest
//! differs, so the next copy brings the copy back. Logged models and
//! registered models are deleted through MLflow's API; the target reports
//! the origin of a model whose copy is not live with that same digest.

use reqwest::Method;
use serde_json::{json, Value};
use tandem_core::model::{Experiment, LifecycleStage, Run};
use tandem_core::transfer::{ObjectKind, Origin, TransferObject};

use super::Copier;
use crate::source::encode_segment;
use crate::TransferError;

/// The digest recorded for a copy deleted because its original vanished.
pub(crate) use tandem_core::transfer::DELETED_DIGEST as DELETED;

impl Copier<'_> {
    /// Deletes the copies of what this pass did not see at the source.
    /// Nothing is deleted after a pass with failures: an object that could
    /// not be read is not an object that is gone.
    pub(super) async fn delete_vanished(&mut self) -> Result<(), TransferError> {
        if !self.report.failures.is_empty() {
            self.report.deletions_withheld = true;
            return Ok(());
        }
        let mut vanished: Vec<Origin> = self
            .origins
            .values()
            .filter(|origin| origin.digest != DELETED)
            .filter(|origin| !self.seen.contains(&(origin.kind, origin.source_id.clone())))
            .cloned()
            .collect();
        // Versions name runs and logged models; runs live in experiments.
        let rank = |kind: ObjectKind| match kind {
            ObjectKind::RegisteredModel => 0,
            ObjectKind::LoggedModel => 1,
            ObjectKind::Run => 2,
            ObjectKind::Experiment => 3,
        };
        vanished.sort_by(|a, b| (rank(a.kind), &a.source_id).cmp(&(rank(b.kind), &b.source_id)));
        for origin in vanished {
            let deleted = match self.options.dry_run {
                true => Ok(true),
                false => self.delete_copy(&origin).await,
            };
            match deleted {
                Ok(true) => self.counts(origin.kind).deleted += 1,
                Ok(false) => {}
                Err(error) => self.report.fail(origin.kind, &origin.source_id, &error)?,
            }
        }
        Ok(())
    }

    fn counts(&mut self, kind: ObjectKind) -> &mut super::KindCounts {
        match kind {
            ObjectKind::Experiment => &mut self.report.experiments,
            ObjectKind::Run => &mut self.report.runs,
            ObjectKind::LoggedModel => &mut self.report.logged_models,
            ObjectKind::RegisteredModel => &mut self.report.registered_models,
        }
    }

    fn mlflow_path(&self, route: &str) -> String {
        format!(
            "w/{}/api/2.0/mlflow/{route}",
            encode_segment(&self.options.workspace)
        )
    }

    /// Deletes one copy; false when the target holds it no more (or holds
    /// it deleted already).
    async fn delete_copy(&mut self, origin: &Origin) -> Result<bool, TransferError> {
        let target_id = origin.target_id.clone();
        let gone = |result: Result<Value, TransferError>| match result {
            Ok(answer) => Ok(Some(answer)),
            Err(TransferError::Api { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        };
        match origin.kind {
            ObjectKind::Run => {
                let path = self.mlflow_path("runs/get");
                let Some(answer) = gone(self.target.get_json(&path, &[("run_id", target_id)]).await)? else {
                    return Ok(false);
                };
                let mut run: Run = serde_json::from_value(answer["run"].clone())
                    .map_err(|error| TransferError::Decode(format!("run: {error}")))?;
                if run.info.lifecycle_stage == LifecycleStage::Deleted {
                    return Ok(false);
                }
                run.info.lifecycle_stage = LifecycleStage::Deleted;
                run.data.metrics.clear();
                let object = TransferObject::Run {
                    run,
                    metrics: Vec::new(),
                };
                self.import(&origin.source_id, Some(DELETED.to_string()), object)
                    .await?;
            }
            ObjectKind::Experiment => {
                let path = self.mlflow_path("experiments/get");
                let Some(answer) = gone(self.target.get_json(&path, &[("experiment_id", target_id)]).await)?
                else {
                    return Ok(false);
                };
                let mut experiment: Experiment = serde_json::from_value(answer["experiment"].clone())
                    .map_err(|error| TransferError::Decode(format!("experiment: {error}")))?;
                if experiment.lifecycle_stage == LifecycleStage::Deleted {
                    return Ok(false);
                }
                // The import endpoint finds the copy by the source's id.
                experiment.experiment_id = origin.source_id.clone();
                experiment.artifact_location = String::new();
                experiment.lifecycle_stage = LifecycleStage::Deleted;
                let object = TransferObject::Experiment { experiment };
                self.import(&origin.source_id, Some(DELETED.to_string()), object)
                    .await?;
            }
            ObjectKind::LoggedModel => {
                let path = self.mlflow_path(&format!("logged-models/{}", encode_segment(&target_id)));
                if gone(self.target.call_json(Method::DELETE, &path, &json!({})).await)?.is_none() {
                    return Ok(false);
                }
            }
            ObjectKind::RegisteredModel => {
                let path = self.mlflow_path("registered-models/delete");
                let body = json!({"name": target_id});
                if gone(self.target.call_json(Method::DELETE, &path, &body).await)?.is_none() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}
