//! `plan_move` / `commit_move`: one transaction, references kept inside
//! one workspace, a write in between noticed, and a journal that still
//! rebuilds the state.

use super::*;
use tandem_core::transfer::MoveRequest;

pub async fn moving_between_workspaces(harness: &support::Harness) {
    let store = harness.store.as_ref();
    store.create_workspace("move-a", "").await.unwrap();
    store.create_workspace("move-b", "").await.unwrap();
    let a = store.resolve_workspace("move-a").await.unwrap();
    let b = store.resolve_workspace("move-b").await.unwrap();
    let id = store
        .create_experiment(&a, "travels", None, vec![Tag::new("team", "x")])
        .await
        .unwrap();
    let run_id = new_run(store, &a, &id).await.info.run_id;
    store
        .log_batch(
            &a,
            &run_id,
            vec![metric("loss", 0.5, 1, 0), metric("loss", f64::NAN, 2, 1)],
            vec![param("lr", "1")],
            vec![],
        )
        .await
        .unwrap();
    let path = format!("{id}/{run_id}/artifacts/f.txt");
    store.record_artifact(&a, &path, 3, "abc").await.unwrap();
    store
        .create_registered_model(&a, "clf", "", vec![], "")
        .await
        .unwrap();
    store
        .create_model_version(
            &a,
            CreateModelVersion {
                name: "clf".into(),
                source: format!("runs:/{run_id}/model"),
                run_id: run_id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // The experiment alone would leave version 1 of clf pointing across.
    let alone = MoveRequest {
        to: "move-b".into(),
        experiments: vec!["travels".into()],
        ..Default::default()
    };
    let error = store.plan_move(&a, &b, &alone).await.unwrap_err();
    assert!(error.to_string().contains("'clf'"), "{error}");
    assert_eq!(kind(error), ErrorKind::InvalidParameterValue);

    let request = MoveRequest {
        to: "move-b".into(),
        experiments: vec![id.clone()],
        registered_models: vec!["clf".into()],
        dry_run: false,
    };
    let plan = store.plan_move(&a, &b, &request).await.unwrap();
    assert_eq!(
        (
            plan.outcome.runs,
            plan.outcome.metric_points,
            plan.outcome.model_versions
        ),
        (1, 2, 1)
    );
    // The target numbers from 1 too and holds no experiment: the id is kept.
    assert_eq!(plan.outcome.experiments[0].to_id, id);
    assert_eq!(plan.artifacts.len(), 1);
    assert_eq!(
        (
            plan.artifacts[0].from_path.as_str(),
            plan.artifacts[0].to_path.as_str()
        ),
        (path.as_str(), path.as_str())
    );

    // A write between planning and committing: nothing is written, and the
    // answer is the plan of the state now.
    store
        .log_batch(&a, &run_id, vec![metric("loss", 0.25, 3, 2)], vec![], vec![])
        .await
        .unwrap();
    let head = store.journal_position().await.unwrap().head;
    let MoveCommit::Changed(replanned) = store.commit_move(&a, &b, &request, &plan).await.unwrap() else {
        panic!("a stale plan was committed");
    };
    assert_eq!(store.journal_position().await.unwrap().head, head);
    assert_eq!(replanned.outcome.metric_points, 3);
    let MoveCommit::Committed(outcome) = store.commit_move(&a, &b, &request, &replanned).await.unwrap()
    else {
        panic!("an unchanged plan was not committed");
    };
    assert_eq!(
        store.journal_position().await.unwrap().head,
        head + outcome.changes as i64
    );

    // Everything arrived under the same ids; nothing stayed.
    let run = store.get_run(&b, &run_id).await.unwrap();
    assert_eq!(run.info.experiment_id, id);
    assert_eq!(run.data.params, vec![param("lr", "1")]);
    let history = store
        .get_metric_history(&b, &run_id, "loss", None, None)
        .await
        .unwrap()
        .points;
    assert_eq!(history.len(), 3);
    assert!(history.iter().any(|point| point.value.is_nan()));
    assert_eq!(
        store.get_model_version(&b, "clf", "1").await.unwrap().run_id,
        run_id
    );
    assert_eq!(
        store
            .list_artifact_entries(&b, &format!("{id}/"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        kind(store.get_run(&a, &run_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert!(store.get_experiment_by_name(&a, "travels").await.is_err());
    assert!(store.get_registered_model(&a, "clf").await.is_err());
    assert!(store
        .list_artifact_entries(&a, &format!("{id}/"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.gc_pending().await.unwrap().len(),
        1,
        "the source's bytes are queued for collection"
    );

    // The names are the destination's now: moving again is refused.
    let error = store.plan_move(&a, &b, &request).await.unwrap_err();
    assert_eq!(kind(error), ErrorKind::ResourceDoesNotExist);

    // The journal alone rebuilds this state.
    let live = store.dump_state().await.unwrap();
    let records = store.journal_after(0, None, i64::MAX / 2).await.unwrap();
    let Some(target) = support::Harness::empty(harness.backend, "move-replica").await else {
        return;
    };
    for record in &records {
        target.store.apply_record(record).await.unwrap();
    }
    let replayed = target.store.dump_state().await.unwrap();
    for ((table, live_rows), (_, replayed_rows)) in live.iter().zip(replayed.iter()) {
        if table == "gc_queue" {
            continue;
        }
        assert_eq!(live_rows, replayed_rows, "table {table} differs after replay");
    }
    target.finish().await;
}

/// The fence between moves (shared) and the garbage collector (alone):
/// moves do not wait for each other, the collector waits for every move,
/// and a move waits for the collector.
pub async fn moves_and_the_collector_are_fenced_apart(harness: &support::Harness) {
    use std::time::Duration;
    let store = harness.store.clone();
    let first_move = store.artifact_fence(false).await.unwrap();
    let second_move = tokio::time::timeout(Duration::from_secs(10), store.artifact_fence(false))
        .await
        .expect("moves share the fence")
        .unwrap();
    let collector = {
        let store = store.clone();
        tokio::spawn(async move { store.artifact_fence(true).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!collector.is_finished(), "the collector went ahead of a move");
    drop(first_move);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !collector.is_finished(),
        "the collector went ahead of the second move"
    );
    drop(second_move);
    let collecting = tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the collector takes the fence once the moves are done")
        .unwrap();
    let waiting_move = {
        let store = store.clone();
        tokio::spawn(async move { store.artifact_fence(false).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting_move.is_finished(), "a move went ahead of the collector");
    drop(collecting);
    tokio::time::timeout(Duration::from_secs(10), waiting_move)
        .await
        .expect("the move goes on once the collector is done")
        .unwrap();
}
