//! Upgrades of a store written by an older build, on SQLite and PostgreSQL:
//! the older schema is set up directly in the database (as that build left
//! it), the store is opened again, and what it held must read back the same.

#[allow(dead_code)]
#[macro_use]
mod support;

use support::{metric, Backend};
use tandem_store::*;

scenarios!(metrics_keyed_by_timestamp_are_rekeyed_by_step);

/// The `metrics` table as versions 5 to 7 keyed it: timestamp before step.
fn version_7_metrics(backend: Backend) -> Vec<&'static str> {
    match backend {
        Backend::Sqlite => vec![
            "CREATE TABLE metrics_v7 (run_id TEXT NOT NULL, key TEXT NOT NULL, timestamp INTEGER NOT NULL, step INTEGER NOT NULL, \
             value REAL NOT NULL, is_nan INTEGER NOT NULL, model_id TEXT NOT NULL DEFAULT '', dataset_name TEXT NOT NULL DEFAULT '', \
             dataset_digest TEXT NOT NULL DEFAULT '', \
             PRIMARY KEY (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest)) WITHOUT ROWID",
            "INSERT INTO metrics_v7 SELECT run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest FROM metrics",
            "DROP TABLE metrics",
            "ALTER TABLE metrics_v7 RENAME TO metrics",
            "CREATE INDEX metrics_by_model ON metrics (model_id) WHERE model_id <> ''",
            "DELETE FROM schema_migrations WHERE version = 8",
        ],
        Backend::Postgres => vec![
            "ALTER TABLE metrics DROP CONSTRAINT metrics_pkey",
            "ALTER TABLE metrics ADD CONSTRAINT metrics_pkey \
             PRIMARY KEY (run_id, key, timestamp, step, value, is_nan, model_id, dataset_name, dataset_digest)",
            "DELETE FROM schema_migrations WHERE version = 8",
        ],
    }
}

/// The key columns of `metrics`' primary key, in order.
async fn metrics_key(harness: &support::Harness) -> Vec<String> {
    use sqlx::Row;
    let sql = match harness.backend {
        Backend::Sqlite => {
            "SELECT x.name AS name FROM pragma_index_list('metrics') l, pragma_index_xinfo(l.name) x \
             WHERE l.origin = 'pk' AND x.key = 1 ORDER BY x.seqno"
        }
        Backend::Postgres => {
            "SELECT a.attname::TEXT AS name FROM pg_index i \
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = 'metrics'::regclass AND i.indisprimary ORDER BY k.position"
        }
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&harness.url)
        .await
        .unwrap();
    let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.iter().map(|row| row.try_get("name").unwrap()).collect()
}

async fn metrics_keyed_by_timestamp_are_rekeyed_by_step(backend: Backend) {
    let Some(mut harness) = support::Harness::new(backend).await else {
        return;
    };
    let ws = harness.store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let experiment = harness
        .store
        .create_experiment(&ws, "upgrade", None, vec![])
        .await
        .unwrap();
    let run = harness
        .store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: experiment,
                ..CreateRun::default()
            },
        )
        .await
        .unwrap();
    let run_id = run.info.run_id.clone();
    // Timestamps that repeat and go back, one NaN, two points at one step.
    let logged = vec![
        metric("loss", 0.5, 3_000, 2),
        metric("loss", 0.9, 9_000, 0),
        metric("loss", f64::NAN, 1_000, 3),
        metric("loss", 0.7, 3_000, 1),
        metric("loss", 0.6, 2_000, 2),
        metric("acc", 0.1, 5_000, 0),
    ];
    harness
        .store
        .log_batch(&ws, &run_id, logged, vec![], vec![])
        .await
        .unwrap();

    harness.execute(&version_7_metrics(backend)).await;
    assert_eq!(
        metrics_key(&harness).await[..4],
        ["run_id", "key", "timestamp", "step"],
        "the older key was set up"
    );

    harness.reopen().await;
    assert_eq!(
        metrics_key(&harness).await,
        [
            "run_id",
            "key",
            "step",
            "timestamp",
            "value",
            "is_nan",
            "model_id",
            "dataset_name",
            "dataset_digest"
        ]
    );
    if backend == Backend::Sqlite {
        // A history page is a range of the key, not a sort of all its points.
        use sqlx::Row;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&harness.url)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT key, timestamp, step, value FROM metrics \
             WHERE run_id = 'r' AND key = 'k' ORDER BY step, timestamp, value LIMIT 10 OFFSET 10",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("detail").unwrap())
        .collect();
        pool.close().await;
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:?}");
    }
    let store = harness.store.as_ref();
    let points = |page: &tandem_core::history::HistoryPage| {
        page.points
            .iter()
            .map(|m| (m.step, m.timestamp, if m.value.is_nan() { -1.0 } else { m.value }))
            .collect::<Vec<_>>()
    };
    let all = store
        .get_metric_history(&ws, &run_id, "loss", None, None)
        .await
        .unwrap();
    assert_eq!(
        points(&all),
        vec![
            (0, 9_000, 0.9),
            (1, 3_000, 0.7),
            (2, 2_000, 0.6),
            (2, 3_000, 0.5),
            (3, 1_000, -1.0)
        ]
    );
    // Paged, in the same order.
    let first = store
        .get_metric_history(&ws, &run_id, "loss", Some(3), None)
        .await
        .unwrap();
    let token = first.next_page_token.clone().expect("a second page");
    let second = store
        .get_metric_history(&ws, &run_id, "loss", Some(3), Some(&token))
        .await
        .unwrap();
    assert_eq!([points(&first), points(&second)].concat(), points(&all));
    assert!(second.next_page_token.is_none());
    // The latest value and the other key came through too; the key still
    // refuses nothing new and duplicates nothing.
    let run = store.get_run(&ws, &run_id).await.unwrap();
    let mut latest: Vec<(String, i64)> = run.data.metrics.iter().map(|m| (m.key.clone(), m.step)).collect();
    latest.sort();
    assert_eq!(latest, vec![("acc".to_string(), 0), ("loss".to_string(), 3)]);
    store
        .log_batch(
            &ws,
            &run_id,
            vec![metric("loss", 0.7, 3_000, 1), metric("loss", 0.4, 10_000, 4)],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    let after = store
        .get_metric_history(&ws, &run_id, "loss", None, None)
        .await
        .unwrap();
    assert_eq!(after.points.len(), 6, "a repeated point is stored once");
    harness.finish().await;
}
