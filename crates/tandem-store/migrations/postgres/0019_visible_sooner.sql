-- The tables read by index-only scans kept visible sooner, version 19
-- (PostgreSQL only). A read that finds every column it needs in an index
-- (a history page in `metrics`' key; a search's filters and metric orders
-- in `latest_metrics_by_key`, `run_params_by_key`, `run_tags_by_key`)
-- skips the table only for pages the visibility map marks all-visible,
-- which only VACUUM does. Autovacuum vacuums a table for its inserts once
-- they pass 1,000 + 20% of it: at 10 million points, two million points
-- written in between are each also fetched from the table (a history read
-- spends about 70% more of the database's time). A fixed 10,000 here: a
-- vacuum of inserts reads only the pages not yet all-visible, so its cost
-- follows what was written since the last one. The store's own check,
-- where autovacuum is off, reads the same settings (`statistics.rs`).
ALTER TABLE metrics SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0);
ALTER TABLE latest_metrics SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0);
ALTER TABLE run_params SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0);
ALTER TABLE run_tags SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0);
