-- A search's filters and metric orders by key, version 18 (PostgreSQL
-- only): `metrics.k1 > 0.5 AND params.lr = '0.01'` ordered by `metrics.k2`
-- reads the runs with k1 above 0.5, the runs whose lr is 0.01 and every
-- run's k2 off these indexes alone (index-only scans, the store vacuuming
-- where autovacuum does not) and joins them by hashing, instead of probing
-- three primary keys for each of an experiment's runs. Param and tag
-- values are indexed by their first 100 characters: a btree entry has a
-- size limit a whole value (up to 6,000 or 8,000 characters) may exceed;
-- a search tests `LEFT(value, 100)` and, for longer values, the value.
-- The statistics of key and value together let the planner see that one
-- key's value is common (its estimates assume columns independent).
CREATE INDEX latest_metrics_by_key ON latest_metrics (key, value, run_id) INCLUDE (is_nan);
CREATE INDEX run_params_by_key ON run_params (key, LEFT(value, 100), run_id);
CREATE INDEX run_tags_by_key ON run_tags (key, LEFT(value, 100), run_id);
CREATE STATISTICS run_params_key_value (mcv, dependencies) ON key, (LEFT(value, 100)) FROM run_params;
CREATE STATISTICS run_tags_key_value (mcv, dependencies) ON key, (LEFT(value, 100)) FROM run_tags;
-- A tag's value folded as a search folds it for ILIKE (`search_sql.rs`:
-- ASCII capitals and the Kelvin sign to small letters; the expression must
-- be the same to be used): with its statistics the planner sees that
-- `ILIKE 'A%'` holds for many runs and reads an experiment's newest runs
-- in order until a page is full, instead of scanning every tag.
CREATE STATISTICS run_tags_folded ON (TRANSLATE(value, 'ABCDEFGHIJKLMNOPQRSTUVWXYZK', 'abcdefghijklmnopqrstuvwxyzk')) FROM run_tags;
-- Statistics objects are empty until their tables are analyzed.
ANALYZE run_params;
ANALYZE run_tags;
ANALYZE latest_metrics;
