-- An experiment's runs in the order of the runs table's first page (newest
-- first, missing times last, then run id): `search_runs` with no filter
-- reads its page off this index instead of sorting every run of the
-- experiment.
CREATE INDEX runs_by_start_time ON runs (workspace_id, experiment_id, start_time DESC NULLS LAST, run_id);
