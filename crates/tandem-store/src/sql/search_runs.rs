//! `search_runs` without loading whole experiments: a search whose filter
//! is only equalities of params and tags (or none) ordered by start or end
//! time or by metrics is filtered, ordered and paged by the database (each
//! equality an `EXISTS` on its key, a metric a join on its latest value),
//! and only the page's runs are loaded; any other search filters and orders
//! runs loaded with only the keys it names (`RunSearchNeeds`) — narrowed
//! first by what the database can test of its clauses (`RunPrefilter`) —
//! then loads the page's runs whole. Both read through the read pool
//! (`rows`: sqlx's `Any` rows would cost several times the read) and give
//! exactly the page `search::search_runs` gives over whole runs (same
//! order, same offset page tokens).

use tandem_core::model::{Run, ViewType};
use tandem_core::search::{self, SqlClause, SqlOrderKey, TextTest};

use super::rows::{Columns, ReadRow, RowSource};
use super::search_sql::{add_clauses, decides, Subject};
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
            search::run_search_sql_filter(&query.filter).filter(|clauses| decides(clauses, self.backend)),
        ) {
            let offset = match query.page_token.as_deref() {
                Some(token) if !token.is_empty() => search::decode_page_token(token)?,
                _ => 0,
            };
            // A filter that names its runs' ids selects a few: they are
            // looked up by id and sorted, not found by walking the
            // experiment's start-time index in order (what SQLite picks when
            // its sampled statistics overrate the experiment's selectivity);
            // `|| ''` leaves the experiment's terms no index.
            let by_id = exact.iter().any(|clause| {
                matches!(
                    clause,
                    SqlClause::Attribute {
                        column: "run_id",
                        test: TextTest::Equals(_) | TextTest::In(_)
                    }
                )
            });
            let workspace = if by_id {
                condition = condition.replacen("AND r.experiment_id IN", "AND (r.experiment_id || '') IN", 1);
                "(r.workspace_id || '')"
            } else {
                "r.workspace_id"
            };
            // The database decides the filter alone here.
            let mut arguments = arguments.clone();
            add_clauses(&mut condition, &mut arguments, exact, self.backend, &Subject::RUN);
            // Metric keys are bound after the experiment ids and the
            // filter's values; each metric of the order is a join on its
            // latest value.
            let mut bound = arguments.clone();
            let arrays = self.read_pool.binds_arrays();
            // On PostgreSQL a search ordered first by a metric is read in
            // three parts, one after the other until the page is full: the
            // runs whose value is a number, in the order of the value (so
            // the planner may walk `latest_metrics_by_key` in order and
            // probe each run's filters, stopping at a page, instead of
            // joining and sorting every run of the experiment: 23 ms
            // instead of 122 at 100,000 runs), then those whose value is
            // NaN, then those without it.
            // The first metric's placeholder and direction.
            let metric_first = match order.first() {
                Some((SqlOrderKey::Metric(key), ascending)) if arrays => {
                    bound.push(key.clone());
                    Some((format!("${}", bound.len() + 1), *ascending))
                }
                _ => None,
            };
            let mut joins = String::new();
            let rest: Vec<String> = order
                .iter()
                .skip(usize::from(metric_first.is_some()))
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
            let rest = rest.join(", ");
            // Where a page's ids can be bound as one array, the page's
            // statement reads its runs' rows whole (they are not looked up
            // by id again), and their other tables by that array.
            let columns = if arrays { load::RUN_COLUMNS } else { "r.run_id" };
            let parts = match &metric_first {
                Some((key, ascending)) => {
                    let direction = if *ascending { "ASC" } else { "DESC" };
                    let valued = |test: &str| {
                        format!(
                            "FROM runs r JOIN latest_metrics mo ON mo.run_id = r.run_id AND mo.key = {key} \
                             AND mo.is_nan {test}{joins} WHERE {workspace} = $1 {condition}"
                        )
                    };
                    vec![
                        (valued("= 0"), format!("mo.value {direction}, {rest}")),
                        (valued("<> 0"), rest.clone()),
                        (
                            format!(
                                "FROM runs r{joins} WHERE {workspace} = $1 {condition} AND NOT EXISTS \
                                 (SELECT 1 FROM latest_metrics mo WHERE mo.run_id = r.run_id AND mo.key = {key})"
                            ),
                            rest.clone(),
                        ),
                    ]
                }
                _ => vec![(
                    format!("FROM runs r{joins} WHERE {workspace} = $1 {condition}"),
                    rest,
                )],
            };
            let Page {
                items: rows,
                next_page_token,
            } = self
                .parts_page(&parts, columns, ws, &bound, offset, query.max_results)
                .await?;
            let items = if arrays {
                load::runs_from_rows(&self.read_pool, &ws.workspace_id, rows).await?
            } else {
                let ids = rows
                    .into_iter()
                    .map(|mut row| row.text(0))
                    .collect::<StoreResult<Vec<String>>>()?;
                self.whole_runs(ws, &ids).await?
            };
            return Ok(Page {
                items,
                next_page_token,
            });
        }
        let needs = search::run_search_needs(&query.filter, &query.order_by)?;
        // The clauses the database can test narrow the runs loaded; the
        // grammar still decides every match.
        let mut arguments = arguments.clone();
        add_clauses(
            &mut condition,
            &mut arguments,
            search::run_search_prefilters(&query.filter),
            self.backend,
            &Subject::RUN,
        );
        let light = load::runs_where_needing(
            &self.read_pool,
            &ws.workspace_id,
            &condition,
            &arguments,
            Some(&needs),
        )
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

    /// A page of the rows of `parts` (each a `FROM …` and its `ORDER BY`),
    /// read as one list, the parts one after the other: a part is read only
    /// as far as the page needs it, and counted only where the page starts
    /// past its end.
    async fn parts_page(
        &self,
        parts: &[(String, String)],
        columns: &str,
        ws: &WorkspaceRef,
        arguments: &[String],
        offset: usize,
        max_results: usize,
    ) -> StoreResult<Page<ReadRow>> {
        let mut bound: Vec<&str> = vec![&ws.workspace_id];
        bound.extend(arguments.iter().map(String::as_str));
        let mut rows = Vec::new();
        // Rows of the page still to skip, in the parts not yet read.
        let mut skip = offset;
        for (index, (from, order)) in parts.iter().enumerate() {
            let wanted = max_results + 1 - rows.len();
            if wanted == 0 {
                break;
            }
            let sql = format!("SELECT {columns} {from} ORDER BY {order} LIMIT {wanted} OFFSET {skip}");
            let read = self.read_pool.rows(&sql, &bound).await?;
            if read.is_empty() && skip > 0 && index + 1 < parts.len() {
                // The page starts past this part: the next part starts as
                // many rows fewer in as this one holds.
                let mut counted = self
                    .read_pool
                    .rows(&format!("SELECT COUNT(*) {from}"), &bound)
                    .await?;
                let held = match counted.first_mut() {
                    Some(row) => usize::try_from(row.int(0)?).unwrap_or(0),
                    None => 0,
                };
                skip -= held.min(skip);
            } else {
                skip = 0;
            }
            rows.extend(read);
        }
        Ok(super::search_entities::page_of(rows, offset, max_results))
    }

    /// The runs `ids` of the workspace, whole, in that order.
    async fn whole_runs(&self, ws: &WorkspaceRef, ids: &[String]) -> StoreResult<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A page may hold 50,000 runs: read in chunks, of 500 where each
        // id is a bind parameter, of a whole 1,000-run page where the ids
        // are one array (each chunk is seven statements).
        let chunk = if self.read_pool.binds_arrays() { 1000 } else { 500 };
        let run_id: fn(&Run) -> &str = |run| &run.info.run_id;
        load::by_keys_in_chunks(ids, chunk, run_id, |chunk, _| {
            load::runs_by_ids(&self.read_pool, &ws.workspace_id, chunk)
        })
        .await
    }
}
