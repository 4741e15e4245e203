//! Conformance scenario of `search_datasets` (MLflow's `SearchDatasets`),
//! on SQLite and PostgreSQL: distinct datasets of the named experiments'
//! runs with their context, other experiments and workspaces left out, the
//! limit honoured.

#[allow(dead_code)]
#[macro_use]
mod support;

use support::Backend;
use tandem_core::model::*;
use tandem_store::*;

scenarios!(datasets_of_an_experiments_runs_are_summarized_once_each);

fn input(name: &str, digest: &str, context: Option<&str>) -> DatasetInput {
    DatasetInput {
        tags: context
            .map(|value| vec![Tag::new("mlflow.data.context", value)])
            .unwrap_or_default(),
        dataset: Dataset {
            name: name.to_string(),
            digest: digest.to_string(),
            source_type: "local".to_string(),
            source: "{}".to_string(),
            schema: None,
            profile: None,
        },
    }
}

async fn run_with(
    store: &dyn MetadataStore,
    ws: &WorkspaceRef,
    experiment_id: &str,
    inputs: Vec<DatasetInput>,
) {
    let run = store
        .create_run(
            ws,
            CreateRun {
                experiment_id: experiment_id.to_string(),
                ..CreateRun::default()
            },
        )
        .await
        .unwrap();
    store
        .log_inputs(ws, &run.info.run_id, inputs, vec![])
        .await
        .unwrap();
}

async fn datasets_of_an_experiments_runs_are_summarized_once_each(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let first = store.create_experiment(&ws, "first", None, vec![]).await.unwrap();
    let second = store
        .create_experiment(&ws, "second", None, vec![])
        .await
        .unwrap();
    let other = store.create_experiment(&ws, "other", None, vec![]).await.unwrap();
    // The same dataset in two runs of one experiment counts once; in
    // another context it is another summary.
    run_with(
        store,
        &ws,
        &first,
        vec![input("iris", "d1", Some("training")), input("iris", "d2", None)],
    )
    .await;
    run_with(store, &ws, &first, vec![input("iris", "d1", Some("training"))]).await;
    run_with(store, &ws, &second, vec![input("iris", "d1", Some("eval"))]).await;
    run_with(store, &ws, &other, vec![input("wine", "w1", Some("training"))]).await;

    let found = store
        .search_datasets(&ws, &[first.clone(), second.clone()], 1000)
        .await
        .unwrap();
    let summary = |experiment: &str, digest: &str, context: Option<&str>| DatasetSummary {
        experiment_id: experiment.to_string(),
        name: "iris".to_string(),
        digest: digest.to_string(),
        context: context.map(str::to_string),
    };
    let mut expected = vec![
        summary(&first, "d1", Some("training")),
        summary(&first, "d2", None),
        summary(&second, "d1", Some("eval")),
    ];
    expected.sort();
    assert_eq!(found, expected);

    let limited = store
        .search_datasets(&ws, std::slice::from_ref(&first), 1)
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert!(store.search_datasets(&ws, &[], 10).await.unwrap().is_empty());

    // Another workspace sees none of them, even by the same ids.
    store.create_workspace("elsewhere", "").await.unwrap();
    let elsewhere = store.resolve_workspace("elsewhere").await.unwrap();
    assert!(store
        .search_datasets(&elsewhere, &[first, second], 10)
        .await
        .unwrap()
        .is_empty());
    harness.finish().await;
}
