//! The planner's statistics, kept by the store on both backends
//! (`MetadataStore::refresh_planner_statistics`, run on a tick by the
//! process holding the region's duties).

use super::{Backend, SqlStore};
use crate::error::StoreResult;

impl SqlStore {
    pub(crate) async fn refresh_planner_statistics_impl(&self) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            // On the writer: ANALYZE writes its results. Every table is
            // checked (0x10000), not only those this connection used lately;
            // bounded work per table, none for tables that have not grown
            // much since their last statistics.
            let _idle = self.writes.idle().await;
            let mut connection = self.writer.acquire().await?;
            sqlx::query("PRAGMA analysis_limit = 1000")
                .execute(&mut *connection)
                .await?;
            sqlx::query("PRAGMA optimize = 0x10002")
                .execute(&mut *connection)
                .await?;
        } else {
            // Autovacuum analyzes a table once its changed rows pass 50 +
            // 10% of it; where autovacuum is off (some installations turn it
            // off) nothing would, and a prepared statement keeps the generic
            // plan it got when its tables were empty: a run's children were
            // read by scanning every run of the workspace, 5–9 ms each at
            // 50,000 runs. The same threshold here; ANALYZE also makes
            // cached plans be planned again.
            let stale: Vec<String> = sqlx::query_scalar(
                "SELECT relname::text FROM pg_stat_user_tables WHERE schemaname = current_schema() \
                 AND n_mod_since_analyze > 50 + 0.1 * GREATEST(n_live_tup, 0)",
            )
            .fetch_all(&self.pool)
            .await?;
            for table in stale {
                let quoted = format!("\"{}\"", table.replace('"', "\"\""));
                sqlx::query(&format!("ANALYZE {quoted}"))
                    .execute(&self.pool)
                    .await?;
            }
            // Autovacuum also vacuums a table once its inserts since pass
            // a threshold plus a share of it (1,000 + 20% unless set, per
            // table or for the server; migration 19 sets 10,000 + 0 for the
            // tables read by index-only scans), or 50 + 20% of it was
            // updated or deleted; the same settings here. Besides
            // reclaiming space that marks its pages all-visible, which lets
            // a read that finds every column it needs in an index skip the
            // table: a metric's history page is a range of `metrics`' key,
            // and without the visibility map each point is also fetched
            // from the table (about half the database's work per point).
            // Done here only where autovacuum is off, globally or for the
            // table; VACUUM cannot run in a transaction, hence a simple
            // query.
            let unvacuumed: Vec<String> = sqlx::query_scalar(
                "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
                 WHERE s.schemaname = current_schema() \
                 AND (current_setting('autovacuum') = 'off' \
                      OR COALESCE(c.reloptions, '{}') @> ARRAY['autovacuum_enabled=false']) \
                 AND (s.n_ins_since_vacuum > \
                        COALESCE((SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o \
                                  WHERE o.option_name = 'autovacuum_vacuum_insert_threshold'), \
                                 current_setting('autovacuum_vacuum_insert_threshold')::float8) \
                        + COALESCE((SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o \
                                    WHERE o.option_name = 'autovacuum_vacuum_insert_scale_factor'), \
                                   current_setting('autovacuum_vacuum_insert_scale_factor')::float8) \
                          * GREATEST(s.n_live_tup, 0) \
                      OR s.n_dead_tup > 50 + 0.2 * GREATEST(s.n_live_tup, 0))",
            )
            .fetch_all(&self.pool)
            .await?;
            for table in unvacuumed {
                let quoted = format!("\"{}\"", table.replace('"', "\"\""));
                sqlx::raw_sql(&format!("VACUUM {quoted}"))
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }
}
