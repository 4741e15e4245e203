//! The datasets an experiment's runs used (MLflow's `SearchDatasets`, which
//! its UI's dataset filter reads): distinct (experiment, name, digest,
//! context) over the runs' dataset inputs.

use std::collections::BTreeSet;

use sqlx::Row;
use tandem_core::model::{DatasetInput, DatasetSummary};

use super::load::fetch;
use super::SqlStore;
use crate::error::{StoreError, StoreResult};
use crate::WorkspaceRef;

/// The input tag MLflow records a dataset's role in (`training`, `eval`…).
const CONTEXT_TAG: &str = "mlflow.data.context";

impl SqlStore {
    pub(crate) async fn search_datasets_impl(
        &self,
        ws: &WorkspaceRef,
        experiment_ids: &[String],
        limit: usize,
    ) -> StoreResult<Vec<DatasetSummary>> {
        if experiment_ids.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..experiment_ids.len())
            .map(|index| format!("${}", index + 2))
            .collect();
        // The context lives in the input's JSON, so distinctness is decided
        // here; the database narrows to the experiments' runs first.
        let sql = format!(
            "SELECT r.experiment_id, i.name, i.digest, i.input FROM run_dataset_inputs i \
             JOIN runs r ON r.run_id = i.run_id \
             WHERE r.workspace_id = $1 AND r.experiment_id IN ({})",
            placeholders.join(", ")
        );
        let mut summaries = BTreeSet::new();
        for row in fetch(&self.pool, &sql, &ws.workspace_id, experiment_ids).await? {
            let input: String = row.try_get("input")?;
            let input: DatasetInput = serde_json::from_str(&input)
                .map_err(|err| StoreError::Corrupt(format!("dataset input: {err}")))?;
            let context = input
                .tags
                .iter()
                .find(|tag| tag.key == CONTEXT_TAG)
                .map(|tag| tag.value.clone());
            summaries.insert(DatasetSummary {
                experiment_id: row.try_get("experiment_id")?,
                name: row.try_get("name")?,
                digest: row.try_get("digest")?,
                context,
            });
        }
        Ok(summaries.into_iter().take(limit).collect())
    }
}
