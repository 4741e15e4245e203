//! Conformance scenarios of the chartable metric history, on SQLite and
//! PostgreSQL: `metric_history_envelope` (short histories whole, long ones
//! reduced in the database to buckets that keep every spike, ranges, the
//! time axis, NaN left out, unknown runs refused) and MLflow 3.17's
//! bulk-interval sample (`metric_history_sampled`).

#[allow(dead_code)]
#[macro_use]
mod support;

use support::{metric, Backend};
use tandem_core::history::HistoryAxis;
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::*;

scenarios!(
    the_bulk_interval_sample_takes_each_buckets_first_row_and_the_last,
    short_histories_come_back_whole,
    long_histories_are_bucketed_keeping_their_extremes,
    unknown_runs_and_keys_are_told_apart,
);

async fn run_in_default(store: &dyn MetadataStore) -> (WorkspaceRef, String) {
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: "0".to_string(),
                ..CreateRun::default()
            },
        )
        .await
        .unwrap();
    (ws, run.info.run_id)
}

async fn short_histories_come_back_whole(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let (ws, run_id) = run_in_default(store).await;
    let points = vec![
        metric("loss", 1.0, 1_000, 0),
        metric("loss", f64::NAN, 1_001, 1),
        metric("loss", 0.5, 1_002, 2),
        metric("loss", 0.25, 900, 3),
    ];
    store
        .log_batch(&ws, &run_id, points, vec![], vec![])
        .await
        .unwrap();
    let whole = store
        .metric_history_envelope(&ws, &run_id, "loss", HistoryAxis::Step, None, 500)
        .await
        .unwrap();
    assert_eq!((whole.total, whole.downsampled), (3, false));
    assert_eq!(whole.points, vec![(0, 1.0), (2, 0.5), (3, 0.25)]);
    let by_time = store
        .metric_history_envelope(&ws, &run_id, "loss", HistoryAxis::Time, None, 500)
        .await
        .unwrap();
    assert_eq!(by_time.points, vec![(900, 0.25), (1_000, 1.0), (1_002, 0.5)]);
    let ranged = store
        .metric_history_envelope(&ws, &run_id, "loss", HistoryAxis::Step, Some((1, 2)), 500)
        .await
        .unwrap();
    assert_eq!(ranged.points, vec![(2, 0.5)]);
    harness.finish().await;
}

async fn long_histories_are_bucketed_keeping_their_extremes(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let (ws, run_id) = run_in_default(store).await;
    // 20,000 points of a saw tooth, with one spike up and one down.
    let mut points: Vec<Metric> = (0..20_000)
        .map(|step| metric("acc", (step % 10) as f64, 5_000 + step, step))
        .collect();
    points[12_345].value = 1e6;
    points[777].value = -1e6;
    for chunk in points.chunks(1_000) {
        store
            .log_batch(&ws, &run_id, chunk.to_vec(), vec![], vec![])
            .await
            .unwrap();
    }
    let envelope = store
        .metric_history_envelope(&ws, &run_id, "acc", HistoryAxis::Step, None, 100)
        .await
        .unwrap();
    assert!(envelope.downsampled);
    assert_eq!(envelope.total, 20_000);
    assert!(envelope.points.len() <= 200, "{}", envelope.points.len());
    assert!(envelope.points.len() >= 150, "{}", envelope.points.len());
    assert!(envelope.points.iter().any(|(_, value)| *value == 1e6));
    assert!(envelope.points.iter().any(|(_, value)| *value == -1e6));
    assert_eq!(envelope.points.first().unwrap().0, 0);
    assert_eq!(envelope.points.last().unwrap().0, 19_999);
    assert!(envelope.points.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    // A range zooms in: only its points, bucketed again.
    let zoomed = store
        .metric_history_envelope(
            &ws,
            &run_id,
            "acc",
            HistoryAxis::Step,
            Some((12_000, 12_999)),
            100,
        )
        .await
        .unwrap();
    assert_eq!(zoomed.total, 1_000);
    assert!(zoomed
        .points
        .iter()
        .all(|(step, _)| (12_000..=12_999).contains(step)));
    assert!(zoomed.points.iter().any(|(_, value)| *value == 1e6));
    assert!(!zoomed.points.iter().any(|(_, value)| *value == -1e6));
    // The time axis buckets timestamps.
    let by_time = store
        .metric_history_envelope(&ws, &run_id, "acc", HistoryAxis::Time, None, 100)
        .await
        .unwrap();
    assert_eq!(
        (
            by_time.points.first().unwrap().0,
            by_time.points.last().unwrap().0
        ),
        (5_000, 24_999)
    );
    harness.finish().await;
}

async fn unknown_runs_and_keys_are_told_apart(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let (ws, run_id) = run_in_default(store).await;
    let none = store
        .metric_history_envelope(&ws, &run_id, "missing", HistoryAxis::Step, None, 100)
        .await
        .unwrap();
    assert_eq!((none.total, none.points.len()), (0, 0));
    let error = store
        .metric_history_envelope(
            &ws,
            "0123456789abcdef0123456789abcdef",
            "acc",
            HistoryAxis::Step,
            None,
            100,
        )
        .await
        .unwrap_err();
    let StoreError::Domain(error) = error else {
        panic!("{error:?}")
    };
    assert_eq!(error.kind, ErrorKind::ResourceDoesNotExist);
    harness.finish().await;
}

async fn the_bulk_interval_sample_takes_each_buckets_first_row_and_the_last(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let (ws, run_id) = run_in_default(store).await;
    // Ten steps at two timestamps each, logged out of order.
    let mut points = Vec::new();
    for step in (0..10).rev() {
        for timestamp in [2, 1] {
            points.push(metric("loss", 10.0, timestamp, step));
        }
    }
    store
        .log_batch(&ws, &run_id, points, vec![], vec![])
        .await
        .unwrap();
    let sample = |max_results, range| {
        let run_id = run_id.clone();
        let ws = ws.clone();
        async move {
            store
                .metric_history_sampled(&ws, &run_id, "loss", max_results, range)
                .await
                .unwrap()
                .iter()
                .map(|metric| (metric.step, metric.timestamp))
                .collect::<Vec<_>>()
        }
    };
    // 20 rows in 5 buckets of 4: each bucket's first row, the last row of
    // all in place of the last sampled one (MLflow 3.17.2's answer).
    assert_eq!(
        sample(5, None).await,
        vec![(0, 1), (2, 1), (4, 1), (6, 1), (9, 2)]
    );
    // Ten rows in 6 buckets (2, 2, 2, 2, 1, 1): the last row is a first one.
    assert_eq!(
        sample(6, Some((0, 4))).await,
        vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (4, 2)]
    );
    // Fewer rows than buckets: every row.
    assert_eq!(
        sample(50, Some((8, 9))).await,
        vec![(8, 1), (8, 2), (9, 1), (9, 2)]
    );
    assert_eq!(sample(1, None).await, vec![(9, 2)]);
    assert!(store
        .metric_history_sampled(&ws, &run_id, "nothing", 5, None)
        .await
        .unwrap()
        .is_empty());
    harness.finish().await;
}
