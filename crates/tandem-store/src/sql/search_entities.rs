//! `experiments/search` and `registered-models/search` in the database.
//!
//! A search whose filter the database decides exactly
//! (`EntitySql::complete`, and no ILIKE where the database has no MLflow
//! ILIKE) is filtered, ordered and paged by the database: one query for the
//! page's keys (the order is the grammar's, cut after the unique name; text
//! compared as bytes; experiment ids as numbers, which the database does
//! only while every id of the workspace is a canonical number), then the
//! page's entities read whole. Any other search reads the entities the
//! database's clauses let through, without what the grammar does not need,
//! and leaves filter, order and page to `tandem_core::search`; then reads
//! the page's whole. Both give the page `search_experiments` /
//! `search_registered_models` give over every entity (same order, same
//! offset page tokens): the conformance suite holds both backends to it.

use tandem_core::model::{Experiment, RegisteredModel, ViewType};
use tandem_core::search::{self, EntitySql, Page};

use super::rows::{Columns, ReadRow, RowSource};
use super::search_sql::{add_clauses, decides, Subject};
use super::{load, Backend, SqlStore};
use crate::error::StoreResult;
use crate::{SearchQuery, WorkspaceRef};

/// The longest canonical id ordered as a number in SQL: 18 digits is below
/// `i64::MAX`, so the grammar too reads it as a number.
const CANONICAL_ID: &str = "(e.experiment_id = '0' OR (e.experiment_id GLOB '[1-9]*' AND e.experiment_id NOT GLOB '*[^0-9]*' AND LENGTH(e.experiment_id) <= 18))";
const CANONICAL_ID_POSTGRES: &str = "e.experiment_id ~ '^(0|[1-9][0-9]{0,17})$'";

impl SqlStore {
    pub(super) async fn search_experiments_impl(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<Experiment>> {
        let plan = search::experiment_search_sql(&query.filter, &query.order_by)?;
        let mut condition = match query.view_type {
            ViewType::ActiveOnly => "AND e.lifecycle_stage = 'active'",
            ViewType::DeletedOnly => "AND e.lifecycle_stage = 'deleted'",
            ViewType::All => "",
        }
        .to_string();
        if let Some(keys) = self
            .page_keys(ws, &plan, &query, &condition, &Subject::EXPERIMENT)
            .await?
        {
            return Ok(Page {
                items: load::experiments_by_ids(&self.read_pool, &ws.workspace_id, &keys.items).await?,
                next_page_token: keys.next_page_token,
            });
        }
        // The grammar decides; the database's clauses narrow what it reads.
        let mut arguments = Vec::new();
        add_clauses(
            &mut condition,
            &mut arguments,
            plan.clauses,
            self.backend,
            &Subject::EXPERIMENT,
        );
        let tags = search::experiment_search_needs_tags(&query.filter)?;
        let experiments =
            load::experiments_matching(&self.read_pool, &ws.workspace_id, &condition, &arguments, tags)
                .await?;
        let page = search::search_experiments(
            experiments,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?;
        let ids: Vec<String> = page.items.into_iter().map(|e| e.experiment_id).collect();
        Ok(Page {
            items: load::experiments_by_ids(&self.read_pool, &ws.workspace_id, &ids).await?,
            next_page_token: page.next_page_token,
        })
    }

    pub(super) async fn search_registered_models_impl(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<RegisteredModel>> {
        let plan = search::registered_model_search_sql(&query.filter, &query.order_by)?;
        if let Some(keys) = self
            .page_keys(ws, &plan, &query, "", &Subject::REGISTERED_MODEL)
            .await?
        {
            return Ok(Page {
                items: load::registered_models_by_names(&self.read_pool, &ws.workspace_id, &keys.items)
                    .await?,
                next_page_token: keys.next_page_token,
            });
        }
        // Filtered and ordered by name, times and tags; the page's models
        // are then read whole, with their versions and aliases.
        let mut condition = String::new();
        let mut arguments = Vec::new();
        add_clauses(
            &mut condition,
            &mut arguments,
            plan.clauses,
            self.backend,
            &Subject::REGISTERED_MODEL,
        );
        let models = load::registered_models_read(
            &self.read_pool,
            &ws.workspace_id,
            &condition,
            &arguments,
            false,
            None,
        )
        .await?;
        let page = search::search_registered_models(
            models,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?;
        let names: Vec<String> = page.items.into_iter().map(|model| model.name).collect();
        Ok(Page {
            items: load::registered_models_by_names(&self.read_pool, &ws.workspace_id, &names).await?,
            next_page_token: page.next_page_token,
        })
    }

    /// The keys (experiment ids, model names) of the page the database
    /// finds, filters, orders and pages alone, or None if it cannot decide
    /// the search exactly; `condition` (`AND …`) restricts it further.
    async fn page_keys(
        &self,
        ws: &WorkspaceRef,
        plan: &EntitySql,
        query: &SearchQuery,
        condition: &str,
        subject: &Subject,
    ) -> StoreResult<Option<Page<String>>> {
        if !plan.complete || !decides(&plan.clauses, self.backend) || query.max_results == 0 {
            return Ok(None);
        }
        if plan.orders_ids() && !self.ids_are_canonical(ws).await? {
            return Ok(None);
        }
        let offset = match query.page_token.as_deref() {
            Some(token) if !token.is_empty() => search::decode_page_token(token)?,
            _ => 0,
        };
        let (alias, table, key, live) = (subject.alias, subject.table, subject.key, subject.live);
        // Text ordered as bytes, as the grammar orders it.
        let bytes = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " COLLATE \"C\"",
        };
        let order: Vec<String> = plan
            .order
            .iter()
            .map(|(column, ascending)| {
                let direction = if *ascending { "ASC" } else { "DESC" };
                match *column {
                    // Canonical numbers: by length, then digit by digit.
                    "experiment_id" => format!(
                        "LENGTH({alias}.experiment_id) {direction}, {alias}.experiment_id{bytes} {direction}"
                    ),
                    "name" => format!("{alias}.name{bytes} {direction}"),
                    time => format!("{alias}.{time} {direction}"),
                }
            })
            .collect();
        let mut arguments = Vec::new();
        let mut decided = format!("{live} {condition}");
        add_clauses(
            &mut decided,
            &mut arguments,
            plan.clauses.clone(),
            self.backend,
            subject,
        );
        let sql = format!(
            "SELECT {alias}.{key} FROM {table} {alias} WHERE {alias}.workspace_id = $1 {decided} ORDER BY {}",
            order.join(", ")
        );
        self.keys_page(&sql, ws, &arguments, offset, query.max_results)
            .await
            .map(Some)
    }

    /// The page at `offset` of the keys `sql` selects in order (`$1` the
    /// workspace id, `arguments` after it; LIMIT and OFFSET added here),
    /// and the next page's token if more follow.
    pub(super) async fn keys_page(
        &self,
        sql: &str,
        ws: &WorkspaceRef,
        arguments: &[String],
        offset: usize,
        max_results: usize,
    ) -> StoreResult<Page<String>> {
        let Page {
            items: rows,
            next_page_token,
        } = self.rows_page(sql, ws, arguments, offset, max_results).await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(|mut row| row.text(0))
                .collect::<StoreResult<Vec<String>>>()?,
            next_page_token,
        })
    }

    /// The rows of [`SqlStore::keys_page`]'s page, whole (`sql` may select
    /// more than the key).
    async fn rows_page(
        &self,
        sql: &str,
        ws: &WorkspaceRef,
        arguments: &[String],
        offset: usize,
        max_results: usize,
    ) -> StoreResult<Page<ReadRow>> {
        let sql = format!("{sql} LIMIT {} OFFSET {offset}", max_results + 1);
        let mut bound: Vec<&str> = vec![&ws.workspace_id];
        bound.extend(arguments.iter().map(String::as_str));
        let rows = self.read_pool.rows(&sql, &bound).await?;
        Ok(page_of(rows, offset, max_results))
    }

    /// Whether every experiment id of the workspace is a canonical number
    /// (what this server issues), which the database can order as MLflow
    /// does; an imported id of another shape leaves ordering to the grammar.
    async fn ids_are_canonical(&self, ws: &WorkspaceRef) -> StoreResult<bool> {
        let canonical = match self.backend {
            Backend::Sqlite => CANONICAL_ID,
            Backend::Postgres => CANONICAL_ID_POSTGRES,
        };
        let sql =
            format!("SELECT 1 FROM experiments e WHERE e.workspace_id = $1 AND NOT {canonical} LIMIT 1");
        Ok(self.read_pool.rows(&sql, &[&ws.workspace_id]).await?.is_empty())
    }
}

/// A page of `rows`, read from `offset` with one more than `max_results`
/// asked for: the one more says a next page follows.
pub(super) fn page_of<T>(mut rows: Vec<T>, offset: usize, max_results: usize) -> Page<T> {
    let next_page_token = (rows.len() > max_results).then(|| {
        rows.truncate(max_results);
        search::encode_page_token(offset + max_results)
    });
    Page {
        items: rows,
        next_page_token,
    }
}
