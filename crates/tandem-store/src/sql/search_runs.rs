//! `search_runs` without loading whole experiments: a search whose filter
//! is only equalities of params and tags (or none) ordered by start or end
//! time or by metrics is filtered, ordered and paged by the database (each
//! equality an `EXISTS` on its key, a metric a join on its latest value),
//! and only the page's runs are loaded; any other search filters and orders
//! runs loaded with only the keys it names (`RunSearchNeeds`) — narrowed
//! first by what the database can test of its clauses (`RunPrefilter`) —
//! then loads the page's runs whole. Both give exactly the page
//! `search::search_runs` gives over whole runs (same order, same offset
//! page tokens).

use std::collections::HashMap;

use sqlx::Row;
use tandem_core::model::{Run, ViewType};
use tandem_core::search::{self, RunPrefilter, SqlOrderKey};

use super::{load, SqlStore};
use crate::error::StoreResult;
use crate::{Page, SearchRuns, WorkspaceRef};

impl SqlStore {
    pub(crate) async fn search_runs_impl(
        &self,
        ws: &WorkspaceRef,
        query: SearchRuns,
    ) -> StoreResult<Page<Run>> {
        tandem_core::validation::validate_search_experiment_ids(&query.experiment_ids)?;
        search::validate_run_filter(&query.filter)?;
        if query.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let placeholders: Vec<String> = (0..query.experiment_ids.len())
            .map(|i| format!("${}", i + 2))
            .collect();
        let mut condition = format!("AND r.experiment_id IN ({})", placeholders.join(", "));
        match query.view_type {
            ViewType::ActiveOnly => condition.push_str(" AND r.lifecycle_stage = 'active'"),
            ViewType::DeletedOnly => condition.push_str(" AND r.lifecycle_stage = 'deleted'"),
            ViewType::All => {}
        }
        let arguments = &query.experiment_ids;
        if query.max_results == 0 {
            // The in-memory search says what is wrong with it.
            let runs = load::runs_where(&self.pool, &ws.workspace_id, &condition, arguments).await?;
            return Ok(search::search_runs(
                runs,
                &query.filter,
                &query.order_by,
                0,
                query.page_token.as_deref(),
            )?);
        }
        if let (Some(order), Some(exact)) = (
            search::run_search_sql_order(&query.filter, &query.order_by),
            search::run_search_exact_prefilters(&query.filter),
        ) {
            let offset = match query.page_token.as_deref() {
                Some(token) if !token.is_empty() => search::decode_page_token(token)?,
                _ => 0,
            };
            // The filter's equalities decide it alone here.
            let mut arguments = arguments.clone();
            add_prefilters(&mut condition, &mut arguments, exact);
            // Metric keys are bound after the experiment ids and the
            // filter's values; each metric of the order is a join on its
            // latest value.
            let mut bound = arguments.clone();
            let mut joins = String::new();
            let order: Vec<String> = order
                .iter()
                .map(|(key, ascending)| {
                    let direction = if *ascending { "ASC" } else { "DESC" };
                    match key {
                        SqlOrderKey::Column("run_id") => format!("r.run_id {direction}"),
                        // A missing time sorts last in either direction
                        // (and newest-first reads `runs_by_start_time`).
                        SqlOrderKey::Column(column) => format!("r.{column} {direction} NULLS LAST"),
                        SqlOrderKey::Metric(metric) => {
                            bound.push(metric.clone());
                            let alias = format!("m{}", bound.len());
                            joins.push_str(&format!(
                                " LEFT JOIN latest_metrics {alias} ON {alias}.run_id = r.run_id AND {alias}.key = ${}",
                                bound.len() + 1
                            ));
                            // Numbers, then NaN, then no value.
                            format!(
                                "(CASE WHEN {alias}.run_id IS NULL THEN 2 WHEN {alias}.is_nan <> 0 THEN 1 ELSE 0 END), {alias}.value {direction}"
                            )
                        }
                    }
                })
                .collect();
            let sql = format!(
                "SELECT r.run_id FROM runs r{joins} WHERE r.workspace_id = $1 {condition} ORDER BY {} LIMIT {} OFFSET {}",
                order.join(", "),
                query.max_results + 1,
                offset
            );
            let mut ids = load::fetch(&self.pool, &sql, &ws.workspace_id, &bound)
                .await?
                .iter()
                .map(|row| Ok(row.try_get::<String, _>("run_id")?))
                .collect::<StoreResult<Vec<String>>>()?;
            let next_page_token = (ids.len() > query.max_results).then(|| {
                ids.truncate(query.max_results);
                search::encode_page_token(offset + query.max_results)
            });
            return Ok(Page {
                items: self.whole_runs(ws, &ids).await?,
                next_page_token,
            });
        }
        let needs = search::run_search_needs(&query.filter, &query.order_by)?;
        // The clauses the database can test narrow the runs loaded; the
        // grammar still decides every match.
        let mut arguments = arguments.clone();
        add_prefilters(
            &mut condition,
            &mut arguments,
            search::run_search_prefilters(&query.filter),
        );
        let light =
            load::runs_where_needing(&self.pool, &ws.workspace_id, &condition, &arguments, Some(&needs))
                .await?;
        let page = search::search_runs(
            light,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?;
        let ids: Vec<String> = page.items.into_iter().map(|run| run.info.run_id).collect();
        Ok(Page {
            items: self.whole_runs(ws, &ids).await?,
            next_page_token: page.next_page_token,
        })
    }

    /// The runs `ids` of the workspace, whole, in that order.
    async fn whole_runs(&self, ws: &WorkspaceRef, ids: &[String]) -> StoreResult<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut runs: HashMap<String, Run> = HashMap::with_capacity(ids.len());
        // Bounded lists of bind parameters (a page may hold 50,000 runs).
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let condition = format!("AND r.run_id IN ({})", placeholders.join(", "));
            for run in load::runs_where(&self.pool, &ws.workspace_id, &condition, chunk).await? {
                runs.insert(run.info.run_id.clone(), run);
            }
        }
        Ok(ids.iter().filter_map(|id| runs.remove(id)).collect())
    }
}

/// Adds `prefilters` to a search's `condition` (`AND EXISTS …` each), their
/// keys and values bound after `arguments`.
fn add_prefilters(condition: &mut String, arguments: &mut Vec<String>, prefilters: Vec<RunPrefilter>) {
    for prefilter in prefilters {
        let (sql, key, value) = match prefilter {
            RunPrefilter::ParamEquals { key, value } => (
                "EXISTS (SELECT 1 FROM run_params pf WHERE pf.run_id = r.run_id AND pf.key = $K AND pf.value = $V)",
                key,
                value,
            ),
            RunPrefilter::TagEquals { key, value } => (
                "EXISTS (SELECT 1 FROM run_tags tf WHERE tf.run_id = r.run_id AND tf.key = $K AND tf.value = $V)",
                key,
                value,
            ),
            RunPrefilter::MetricAtLeast { key, value } => (
                "EXISTS (SELECT 1 FROM latest_metrics mf WHERE mf.run_id = r.run_id AND mf.key = $K \
                 AND mf.is_nan = 0 AND mf.value >= CAST($V AS DOUBLE PRECISION))",
                key,
                value.to_string(),
            ),
            RunPrefilter::MetricAtMost { key, value } => (
                "EXISTS (SELECT 1 FROM latest_metrics mf WHERE mf.run_id = r.run_id AND mf.key = $K \
                 AND mf.is_nan = 0 AND mf.value <= CAST($V AS DOUBLE PRECISION))",
                key,
                value.to_string(),
            ),
        };
        let (k, v) = (arguments.len() + 2, arguments.len() + 3);
        condition.push_str(" AND ");
        condition.push_str(
            &sql.replace("$K", &format!("${k}"))
                .replace("$V", &format!("${v}")),
        );
        arguments.push(key);
        arguments.push(value);
    }
}
