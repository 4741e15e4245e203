//! The planner's statistics: on SQLite a store whose tables grew after it
//! opened gets statistics for them from `refresh_planner_statistics`, so a
//! page of runs is read by their keys rather than by scanning the
//! workspace's index (the plan is checked, not a timing); on PostgreSQL the
//! tables that grew are analyzed, and where autovacuum is off vacuumed, as
//! autovacuum would; a history page is read in the metrics key's order
//! even on statistics taken before the history was written.

#[allow(dead_code)]
mod support;

use sqlx::any::AnyPoolOptions;
use sqlx::Row;
use support::Backend;
use tandem_store::*;

async fn query(url: &str, sql: &str) -> Vec<String> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<String, _>(i).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A new run in the default experiment: its id.
async fn new_run(store: &dyn MetadataStore, ws: &WorkspaceRef) -> String {
    let run = store
        .create_run(
            ws,
            CreateRun {
                experiment_id: "0".to_string(),
                ..CreateRun::default()
            },
        )
        .await
        .unwrap();
    run.info.run_id
}

/// What `check` answers once it says "yes" (or after 20 s): a backend
/// reports its changes to the statistics a moment after it commits them
/// (at most a few seconds), so the store refreshes as it does, on a tick.
async fn refresh_until_yes(store: &dyn MetadataStore, url: &str, check: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..80 {
        store.refresh_planner_statistics().await.unwrap();
        seen = query(url, check).await;
        if seen == ["yes"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_grew_get_statistics_and_pages_are_read_by_key() {
    let Some(harness) = support::Harness::new(Backend::Sqlite).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2_000 {
        ids.push(new_run(store, &ws).await);
    }
    let runs_stats = "SELECT idx FROM sqlite_stat1 WHERE tbl = 'runs'";
    assert!(
        query(&harness.url, runs_stats).await.is_empty(),
        "no statistics before"
    );
    store.refresh_planner_statistics().await.unwrap();
    assert!(
        !query(&harness.url, runs_stats).await.is_empty(),
        "statistics of runs after"
    );
    let listed: Vec<String> = ids[..50].iter().map(|id| format!("'{id}'")).collect();
    let plan = query(
        &harness.url,
        &format!(
            "EXPLAIN QUERY PLAN SELECT r.run_id FROM runs r WHERE r.workspace_id = '{}' AND r.run_id IN ({})",
            ws.workspace_id,
            listed.join(", ")
        ),
    )
    .await
    .join("\n");
    assert!(plan.contains("sqlite_autoindex_runs_1"), "{plan}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_that_grew_are_analyzed() {
    let Some(harness) = support::Harness::new(Backend::Postgres).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    // Only the store analyzes runs here, autovacuum or not.
    query(&harness.url, "ALTER TABLE runs SET (autovacuum_enabled = false)").await;
    for _ in 0..120 {
        new_run(store, &ws).await;
    }
    let analyzed =
        "SELECT CASE WHEN GREATEST(last_analyze, last_autoanalyze) IS NULL THEN 'no' ELSE 'yes' END \
                    FROM pg_stat_user_tables WHERE relname = 'runs'";
    assert_eq!(
        refresh_until_yes(store, &harness.url, analyzed).await,
        ["yes"],
        "runs analyzed"
    );
    let statistics = query(
        &harness.url,
        "SELECT reltuples::bigint::text FROM pg_class WHERE relname = 'runs'",
    )
    .await;
    assert_eq!(statistics, ["120"]);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_autovacuum_would_vacuum_are_vacuumed() {
    let Some(harness) = support::Harness::new(Backend::Postgres).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    // The migration keeps the tables read by index-only scans visible
    // sooner than autovacuum's default (1,000 + 20% of the table).
    let options = query(
        &harness.url,
        "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'metrics'",
    )
    .await;
    assert_eq!(
        options,
        ["autovacuum_vacuum_insert_threshold=10000,autovacuum_vacuum_insert_scale_factor=0"]
    );
    // Autovacuum off for `metrics`: only the store may vacuum it, at the
    // table's own threshold (here below the default, so a vacuum shows it
    // was read).
    query(
        &harness.url,
        "ALTER TABLE metrics SET (autovacuum_enabled = false, autovacuum_vacuum_insert_threshold = 100)",
    )
    .await;
    let run_id = new_run(store, &ws).await;
    // Past the table's insert threshold (100), below the default's (1,000).
    for batch in 0..3 {
        let points = (0..200)
            .map(|i| tandem_core::model::Metric {
                key: "loss".to_string(),
                value: f64::from(i) / 7.0,
                timestamp: 1_700_000_000_000,
                step: batch * 200 + i64::from(i),
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            })
            .collect();
        store
            .log_batch(&ws, &run_id, points, Vec::new(), Vec::new())
            .await
            .unwrap();
    }
    // The table's pages are all-visible once vacuumed: a history page then
    // reads `metrics`' key alone.
    let vacuumed = "SELECT CASE WHEN s.last_vacuum IS NOT NULL AND c.relallvisible > 0 THEN 'yes' ELSE 'no' END \
                    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'metrics'";
    assert_eq!(
        refresh_until_yes(store, &harness.url, vacuumed).await,
        ["yes"],
        "metrics vacuumed"
    );
    // Tables that did not grow that much are left alone.
    let experiments = query(
        &harness.url,
        "SELECT CASE WHEN last_vacuum IS NULL THEN 'no' ELSE 'yes' END FROM pg_stat_user_tables \
         WHERE relname = 'experiments'",
    )
    .await;
    assert_eq!(experiments, ["no"]);
    harness.finish().await;
}

/// Reopens the harness's store and answers the temporary files
/// PostgreSQL wrote for its database once every connection opened before
/// (the old store's, the test's own) has gone: a backend reports its
/// counts when it exits.
async fn reopen_counting_temp_files(harness: &mut support::Harness) -> i64 {
    let since = query(&harness.url, "SELECT now()::text").await.remove(0);
    harness.reopen().await;
    let gone = format!(
        "SELECT CASE WHEN count(*) = 0 THEN 'yes' ELSE 'no' END FROM pg_stat_activity \
         WHERE datname = current_database() AND backend_type = 'client backend' \
         AND backend_start < '{since}'::timestamptz"
    );
    for _ in 0..80 {
        if query(&harness.url, &gone).await == ["yes"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        query(&harness.url, &gone).await,
        ["yes"],
        "the old connections closed"
    );
    let files = query(
        &harness.url,
        "SELECT temp_files::text FROM pg_stat_database WHERE datname = current_database()",
    )
    .await;
    files[0].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_history_pages_follow_the_key_on_stale_statistics() {
    let Some(mut harness) = support::Harness::new(Backend::Postgres).await else {
        return;
    };
    // Statistics stay as they are unless the test changes them: autovacuum
    // (on where the test runs elsewhere) would analyze `metrics` after the
    // rows below.
    query(
        &harness.url,
        "ALTER TABLE metrics SET (autovacuum_enabled = false)",
    )
    .await;
    let ws = harness.store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let run_id = new_run(harness.store.as_ref(), &ws).await;
    // 3,000 points written since `metrics` was last analyzed (never): the
    // planner expects a handful for the run's key.
    for batch in 0..3 {
        let points = (0..1000)
            .map(|i| {
                support::metric(
                    "loss",
                    f64::from(i) / 7.0,
                    1_700_000_000_000 + i64::from(i),
                    batch * 1000 + i64::from(i),
                )
            })
            .collect();
        harness
            .store
            .log_batch(&ws, &run_id, points, Vec::new(), Vec::new())
            .await
            .unwrap();
    }
    // Another run's 200,000 points, written straight into the table: the
    // table's size is what the planner scales its guesses by.
    query(
        &harness.url,
        "INSERT INTO metrics (run_id, key, timestamp, step, value, is_nan) \
         SELECT 'filler', 'loss', 1700000000000 + i, i, 0.5, 0 FROM generate_series(1, 200000) AS i",
    )
    .await;
    // A sort of more than 64 kB goes to a temporary file, which the
    // database counts: the count tells a page that was sorted from one
    // read in the key's order.
    let database = harness.url.rsplit('/').next().unwrap().to_string();
    query(
        &harness.url,
        &format!("ALTER DATABASE {database} SET work_mem = '64kB'"),
    )
    .await;
    let before = reopen_counting_temp_files(&mut harness).await;
    // The hazard is real here: planned on these statistics, the first page
    // as a plain query is read whole and sorted, to a temporary file.
    let plain = format!(
        "SELECT count(*)::text FROM (SELECT timestamp, step, value FROM metrics \
         WHERE run_id = '{run_id}' AND key = 'loss' \
         ORDER BY step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest LIMIT 1001) page"
    );
    assert_eq!(query(&harness.url, &plain).await, ["1001"]);
    let sorted = reopen_counting_temp_files(&mut harness).await;
    assert!(
        sorted > before,
        "the plain query sorted to a temporary file ({before} -> {sorted})"
    );
    // The store's pages: every point, in order, and nothing sorted.
    let mut points = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let page = harness
            .store
            .get_metric_history(&ws, &run_id, "loss", Some(1000), token.as_deref())
            .await
            .unwrap();
        points.extend(page.points.iter().map(|point| point.step));
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(points, (0..3000).collect::<Vec<i64>>());
    assert_eq!(
        reopen_counting_temp_files(&mut harness).await,
        sorted,
        "a history page was sorted instead of read in the key's order"
    );
    harness.finish().await;
}
