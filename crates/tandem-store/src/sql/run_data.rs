//! A batch of run data (`log-batch`, `log-metric`, `log-parameter`,
//! `set-tag`) checked, journaled and applied in one PostgreSQL statement.
//!
//! Writes are serialized per process to keep the journal in commit order,
//! so what one write spends inside the writer bounds the whole process: on
//! PostgreSQL each statement is a round trip, and the general path takes
//! four (the run's state, the params logged before, the journal record,
//! then each table). Here the checks are conditions of the inserts and the
//! inserts are data-modifying CTEs of one statement, which reports what it
//! found: a run that is missing, of another workspace, deleted, or a param
//! logged before with another value writes nothing and is refused with the
//! general path's message. Only for a class with one writer: records of a
//! multi-writer class carry a causal context and merge (`merge.rs`).

use sqlx::Row;
use tandem_core::journal::Change;
use tandem_core::model::{LifecycleStage, Metric, Param, Tag, RUN_NAME_TAG};

use super::apply::{bind_point, bind_point_where, latest_per_key, values_list, LATEST_UPSERT};
use super::ops::{invalid, not_found};
use super::{bind_journal_record, SqlStore, WriteTx};
use crate::error::StoreResult;

/// Numbered placeholders, handed out in the order their values are bound.
struct Placeholders(usize);

impl Placeholders {
    /// The next `rows × columns` placeholders as a `VALUES` list.
    fn values(&mut self, rows: usize, columns: usize) -> String {
        let list = values_list(rows, columns, self.0 + 1, false);
        self.0 += rows * columns;
        list
    }

    fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}

impl SqlStore {
    /// Journals and applies a batch of `run_id`'s data in `write` (whose
    /// validation of names and values is done), in one statement.
    pub(super) async fn log_run_data_in_one_statement(
        &self,
        write: &mut WriteTx,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> StoreResult<()> {
        let change = Change::RunDataLogged {
            run_id: run_id.to_string(),
            metrics,
            params,
            tags,
        };
        let class = change.asset_class();
        self.admit(write, class, true)?;
        let record = self.numbered(write, change, None);
        let Change::RunDataLogged {
            metrics,
            params,
            tags,
            ..
        } = &record.change
        else {
            unreachable!("the record holds the change just made")
        };
        // Applied one after another, a batch's later tag of a key wins; a
        // multi-row upsert must see each key once.
        let mut last_tags: Vec<&Tag> = Vec::new();
        for tag in tags {
            match last_tags.iter_mut().find(|kept| kept.key == tag.key) {
                Some(kept) => *kept = tag,
                None => last_tags.push(tag),
            }
        }
        let latest = latest_per_key(metrics);
        let workspace_id = write.workspace_id.clone();

        let mut at = Placeholders(2); // $1 the run, $2 its workspace
        let mut sql =
            String::from("WITH run AS (SELECT workspace_id, lifecycle_stage FROM runs WHERE run_id = $1)");
        let clash = if params.is_empty() {
            "SELECT NULL::text AS key, NULL::text AS value WHERE false".to_string()
        } else {
            format!(
                "SELECT p.key, p.value FROM run_params p JOIN (VALUES {}) AS logged (key, value) \
                 ON p.key = logged.key WHERE p.run_id = $1 AND p.value <> logged.value LIMIT 1",
                at.values(params.len(), 2)
            )
        };
        sql.push_str(&format!(", clash AS ({clash})"));
        sql.push_str(
            ", ok AS (SELECT 1 FROM run WHERE workspace_id = $2 AND lifecycle_stage = 'active' \
             AND NOT EXISTS (SELECT 1 FROM clash))",
        );
        sql.push_str(&format!(
            ", journal_row AS (INSERT INTO journal (seq, workspace_id, hlc, origin_region, origin_seq, epoch, format, kind, recorded_at, payload, asset_class, seen, voided, principal) \
             SELECT {} WHERE EXISTS (SELECT 1 FROM ok))",
            (0..14).map(|_| at.next()).collect::<Vec<_>>().join(", ")
        ));
        if !metrics.is_empty() {
            sql.push_str(&format!(
                ", metric_rows AS (INSERT INTO metrics (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest) \
                 SELECT $1, column1, column2, column3, column4, column5, column6, column7, column8 FROM (VALUES {}) AS batch \
                 WHERE EXISTS (SELECT 1 FROM ok) ON CONFLICT DO NOTHING)",
                at.values(metrics.len(), 8)
            ));
            sql.push_str(&format!(
                ", latest_rows AS (INSERT INTO latest_metrics (run_id, key, timestamp, step, value, is_nan) \
                 SELECT $1, column1, column2, column3, column4, column5 FROM (VALUES {}) AS batch \
                 WHERE EXISTS (SELECT 1 FROM ok) {LATEST_UPSERT})",
                at.values(latest.len(), 5)
            ));
        }
        if !params.is_empty() {
            // Validation refuses a changed value (the clash above); the
            // update is the general path's, for a merge that won.
            sql.push_str(&format!(
                ", param_rows AS (INSERT INTO run_params (run_id, key, value) \
                 SELECT $1, column1, column2 FROM (VALUES {}) AS batch WHERE EXISTS (SELECT 1 FROM ok) \
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value)",
                at.values(params.len(), 2)
            ));
        }
        if !last_tags.is_empty() {
            sql.push_str(&format!(
                ", tag_rows AS (INSERT INTO run_tags (run_id, key, value) \
                 SELECT $1, column1, column2 FROM (VALUES {}) AS batch WHERE EXISTS (SELECT 1 FROM ok) \
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value)",
                at.values(last_tags.len(), 2)
            ));
        }
        // The run name and its tag are one fact in MLflow; keep them equal.
        let renamed = last_tags.iter().find(|tag| tag.key == RUN_NAME_TAG);
        if renamed.is_some() {
            sql.push_str(&format!(
                ", renamed AS (UPDATE runs SET run_name = {} WHERE run_id = $1 AND EXISTS (SELECT 1 FROM ok))",
                at.next()
            ));
        }
        sql.push_str(
            " SELECT run.workspace_id, run.lifecycle_stage, clash.key, clash.value \
             FROM (SELECT 1) AS one LEFT JOIN run ON true LEFT JOIN clash ON true",
        );

        let mut query = sqlx::query(&sql).bind(run_id).bind(&workspace_id);
        for param in params {
            query = query.bind(&param.key).bind(&param.value);
        }
        query = bind_journal_record(query, &record, None);
        for metric in metrics {
            query = bind_point_where(query, metric);
        }
        for metric in &latest {
            query = bind_point(query, metric);
        }
        for param in params {
            query = query.bind(&param.key).bind(&param.value);
        }
        for tag in &last_tags {
            query = query.bind(&tag.key).bind(&tag.value);
        }
        if let Some(tag) = renamed {
            query = query.bind(&tag.value);
        }
        let row = query.fetch_one(&mut *write.tx).await?;

        let found: Option<String> = row.try_get(0)?;
        let stage: Option<String> = row.try_get(1)?;
        let clash_key: Option<String> = row.try_get(2)?;
        let clash_value: Option<String> = row.try_get(3)?;
        if found.as_deref() != Some(workspace_id.as_str()) {
            return Err(not_found(format!("Run with id={run_id} not found")));
        }
        let stage = stage.unwrap_or_default();
        if stage != LifecycleStage::Active.as_str() {
            return Err(invalid(format!(
                "The run {run_id} must be in the 'active' state. Current state is {stage}."
            )));
        }
        if let (Some(key), Some(value)) = (clash_key, clash_value) {
            let new = params
                .iter()
                .find(|param| param.key == key)
                .map(|param| param.value.as_str())
                .unwrap_or_default();
            return Err(invalid(format!(
                "Changing param values is not allowed. Param with key='{key}' was already logged with value='{value}' for run ID='{run_id}'. Attempted logging new value '{new}'."
            )));
        }
        write.appended.push((record.seq, class));
        Ok(())
    }
}
