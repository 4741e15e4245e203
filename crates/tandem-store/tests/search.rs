//! `search_runs` of the store against the reference, on SQLite and
//! PostgreSQL: whatever path the store takes (ordered and paged by the
//! database, or filtered over runs loaded with only the keys a search
//! names), every page equals `tandem_core::search::search_runs` over whole
//! runs — ties in start time, missing end times and metrics, NaN and
//! infinities, missing tags, LIKE patterns with what SQL treats specially,
//! deleted runs, paging.

#[allow(dead_code)]
#[macro_use]
mod support;

use support::{metric, Backend};
use tandem_core::model::*;
use tandem_store::*;

scenarios!(every_search_path_gives_the_reference_pages);

/// The `note` tag of run i is NOTES[i % 9] (runs with i % 9 = 8 have none).
const NOTES: [&str; 8] = [
    "A*b",
    "a?c",
    "[x]",
    "100%",
    "a_b",
    "back\\slash",
    "Ünï\u{212A}",
    "abc",
];

/// Values that share their first 100 characters, or are that long: 99,
/// 100 and 101 characters (two of them), and one of 120 (never logged).
fn long_value(which: i64) -> String {
    let stem = "\u{212A}".repeat(50) + &"x".repeat(49);
    match which {
        0 => stem,
        1 => stem + "x",
        2 => stem + "xa",
        3 => stem + "xb",
        _ => stem + &"y".repeat(21),
    }
}

fn page_ids(page: &tandem_core::search::Page<Run>) -> Vec<String> {
    page.items.iter().map(|run| run.info.run_id.clone()).collect()
}

async fn every_search_path_gives_the_reference_pages(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let experiment = store
        .create_experiment(&ws, "search-paths", None, vec![])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for index in 0..37i64 {
        let run = store
            .create_run(
                &ws,
                CreateRun {
                    experiment_id: experiment.clone(),
                    // Ties: every three runs share a start time.
                    start_time: Some(1_000 + index / 3),
                    run_name: Some(format!("run-{index:02}")),
                    ..CreateRun::default()
                },
            )
            .await
            .unwrap();
        let id = run.info.run_id;
        store
            .log_batch(
                &ws,
                &id,
                // Some runs have no loss, some a NaN loss; values tie.
                [
                    match index {
                        _ if index % 9 == 4 => vec![metric("acc", index as f64, 0, 0)],
                        _ if index % 8 == 3 => {
                            vec![metric("loss", f64::NAN, 0, 0), metric("acc", index as f64, 0, 0)]
                        }
                        _ => vec![
                            metric("loss", (index % 7) as f64, 0, 0),
                            metric("acc", index as f64, 0, 0),
                        ],
                    },
                    // Infinities both ways, and finite values around them.
                    vec![metric(
                        "gain",
                        match index % 6 {
                            0 => f64::INFINITY,
                            1 => f64::NEG_INFINITY,
                            _ => index as f64 - 10.0,
                        },
                        0,
                        0,
                    )],
                ]
                .concat(),
                vec![
                    Param {
                        key: "lr".into(),
                        value: format!("{}", index % 4),
                    },
                    // Around the 100 characters PostgreSQL indexes of a value.
                    Param {
                        key: "long".into(),
                        value: long_value(index % 4),
                    },
                ],
                // A second tag on most runs, its values full of what LIKE
                // and GLOB treat specially, in both cases.
                [
                    vec![Tag {
                        key: "team".into(),
                        value: format!("t{}", index % 3),
                    }],
                    NOTES
                        .get(index as usize % 9)
                        .map(|note| Tag::new("note", *note))
                        .into_iter()
                        .collect(),
                ]
                .concat(),
            )
            .await
            .unwrap();
        // Some runs end (end times tie too), the others have none.
        if index % 2 == 0 {
            store
                .update_run(
                    &ws,
                    &id,
                    UpdateRun {
                        status: Some(RunStatus::Finished),
                        end_time: Some(5_000 + index / 4),
                        run_name: None,
                    },
                )
                .await
                .unwrap();
        }
        // Inputs and outputs on a few runs (each read in its own way when
        // a page is loaded, and only where such rows exist).
        if index % 5 == 2 {
            let dataset = DatasetInput {
                tags: vec![Tag::new("mlflow.data.context", "training")],
                dataset: Dataset {
                    name: format!("set-{}", index % 3),
                    digest: format!("d{index}"),
                    source_type: "local".into(),
                    source: "{}".into(),
                    schema: None,
                    profile: None,
                },
            };
            let models = (0..index % 3)
                .map(|i| ModelInput {
                    model_id: format!("m-{}", 9 - i),
                })
                .collect();
            store.log_inputs(&ws, &id, vec![dataset], models).await.unwrap();
        }
        if index % 7 == 1 {
            let outputs = vec![
                ModelOutput {
                    model_id: "m-out-b".into(),
                    step: index,
                },
                ModelOutput {
                    model_id: "m-out-a".into(),
                    step: 2,
                },
            ];
            store.log_outputs(&ws, &id, outputs).await.unwrap();
        }
        if index % 11 == 5 {
            store.delete_run(&ws, &id).await.unwrap();
        }
        ids.push(id);
    }
    let mut whole = Vec::new();
    for id in &ids {
        whole.push(store.get_run(&ws, id).await.unwrap());
    }
    let in_list = format!("attributes.run_id IN ('{}', '{}', '{}')", ids[0], ids[5], ids[30]);
    let not_in_list = format!("attributes.run_id NOT IN ('{}', '{}')", ids[1], ids[6]);
    let long_equal: Vec<String> = (0..5)
        .map(|i| format!("params.long = '{}'", long_value(i)))
        .collect();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("", vec![]),
        ("", vec!["attributes.start_time ASC"]),
        ("", vec!["attributes.end_time DESC"]),
        ("", vec!["attributes.end_time ASC", "attributes.start_time ASC"]),
        ("", vec!["metrics.loss DESC"]),
        ("", vec!["metrics.loss ASC", "attributes.end_time DESC"]),
        ("", vec!["metrics.acc DESC", "metrics.loss ASC"]),
        ("", vec!["params.lr ASC", "attributes.run_name DESC"]),
        ("metrics.loss > 2", vec![]),
        (
            "metrics.loss >= 3 and metrics.acc <= 20",
            vec!["metrics.loss ASC"],
        ),
        ("tags.team = 't1' and params.lr = '2'", vec![]),
        // Equalities alone: filtered, ordered and paged by the database.
        ("params.lr = '1'", vec!["metrics.loss DESC"]),
        ("tags.team = 't2'", vec!["attributes.start_time ASC"]),
        (
            "params.lr = '2' and tags.team = 't1'",
            vec!["metrics.acc ASC", "attributes.end_time DESC"],
        ),
        ("params.lr = 'none'", vec![]),
        ("params.missing = '1'", vec!["metrics.loss ASC"]),
        ("metrics.loss < 1e400", vec![]),
        ("params.lr = '1' and tags.team != 't0'", vec!["metrics.acc ASC"]),
        (
            "attributes.run_name LIKE 'run-1%'",
            vec!["attributes.end_time ASC"],
        ),
        // Decided by the database alone: LIKE is case-sensitive, and what
        // GLOB or LIKE would read specially is only itself.
        ("attributes.run_name LIKE 'RUN-1%'", vec![]),
        ("tags.note LIKE 'a%'", vec![]),
        ("tags.note LIKE '%*%'", vec!["metrics.acc DESC"]),
        ("tags.note LIKE '_?_'", vec![]),
        ("tags.note LIKE '[%'", vec![]),
        ("tags.note LIKE '100%'", vec![]),
        ("tags.note LIKE 'a_b'", vec![]),
        ("tags.note LIKE 'a_'", vec![]),
        ("tags.note LIKE '___'", vec![]),
        ("tags.note LIKE 'back%'", vec![]),
        ("tags.note LIKE 'Ü%'", vec![]),
        ("tags.note LIKE '%'", vec![]),
        ("tags.note != 'a_b'", vec!["attributes.start_time ASC"]),
        ("tags.note IS NULL", vec![]),
        (
            "tags.note IS NOT NULL and params.lr = '1'",
            vec!["metrics.acc DESC"],
        ),
        ("params.lr IS NULL", vec![]),
        ("metrics.loss != 2", vec![]),
        ("metrics.loss = 3", vec!["attributes.end_time DESC"]),
        (
            "metrics.acc > -1 and metrics.loss <= 4",
            vec!["metrics.loss DESC"],
        ),
        ("metrics.gain > 0", vec!["metrics.gain DESC"]),
        ("metrics.gain < 1e300", vec![]),
        ("metrics.gain >= -5 and metrics.gain != 3", vec![]),
        (
            "attributes.status = 'FINISHED'",
            vec!["attributes.start_time ASC"],
        ),
        ("attributes.status != 'RUNNING'", vec![]),
        ("attributes.start_time > 1005", vec![]),
        ("attributes.end_time <= 5004", vec!["attributes.end_time DESC"]),
        (
            "attributes.start_time = 1003 and attributes.end_time != 5001",
            vec![],
        ),
        ("attributes.user_id = ''", vec![]),
        (&in_list, vec![]),
        (&not_in_list, vec!["metrics.acc ASC"]),
        (&long_equal[0], vec![]),
        (&long_equal[1], vec!["metrics.acc DESC"]),
        (&long_equal[2], vec![]),
        (&long_equal[3], vec![]),
        (&long_equal[4], vec![]),
        // ILIKE: the database decides an ASCII pattern (PostgreSQL folding
        // ASCII capitals and the Kelvin sign, which folds to 'k'); the
        // grammar decides others, with what the database can test first.
        ("tags.team ILIKE 'T1'", vec![]),
        ("metrics.loss > 2 and tags.note ILIKE 'A%'", vec![]),
        ("tags.note ILIKE '%k'", vec![]),
        ("tags.note ILIKE 'BACK_%'", vec!["metrics.acc DESC"]),
        ("tags.note ILIKE 'ü%'", vec![]),
        ("tags.note ILIKE '%\u{212A}'", vec![]),
        ("attributes.run_name ILIKE 'RUN-1_'", vec!["metrics.acc DESC"]),
        ("attributes.start_time > 1005.5", vec![]),
        ("params.lr = '1'", vec!["attributes.run_name ASC"]),
    ];
    // Fresh planner statistics change plans, never answers.
    store.refresh_planner_statistics().await.unwrap();
    for view in [ViewType::ActiveOnly, ViewType::DeletedOnly, ViewType::All] {
        let visible: Vec<Run> = whole
            .iter()
            .filter(|run| match view {
                ViewType::ActiveOnly => run.info.lifecycle_stage == LifecycleStage::Active,
                ViewType::DeletedOnly => run.info.lifecycle_stage == LifecycleStage::Deleted,
                ViewType::All => true,
            })
            .cloned()
            .collect();
        for (filter, order_by) in &cases {
            let order_by: Vec<String> = order_by.iter().map(|entry| entry.to_string()).collect();
            let mut token: Option<String> = None;
            let mut pages = 0;
            loop {
                let expected =
                    tandem_core::search::search_runs(visible.clone(), filter, &order_by, 5, token.as_deref())
                        .unwrap();
                let got = store
                    .search_runs(
                        &ws,
                        SearchRuns {
                            experiment_ids: vec![experiment.clone()],
                            filter: filter.to_string(),
                            view_type: view,
                            max_results: 5,
                            order_by: order_by.clone(),
                            page_token: token.clone(),
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    page_ids(&got),
                    page_ids(&expected),
                    "{filter:?} {order_by:?} {view:?} page {pages}"
                );
                // Whole runs: every key, not only those the search named
                // (compared as text: NaN is not equal to itself).
                for (run, reference) in got.items.iter().zip(&expected.items) {
                    assert_eq!(
                        format!("{run:?}"),
                        format!("{reference:?}"),
                        "{filter:?} {order_by:?}"
                    );
                }
                assert_eq!(got.next_page_token, expected.next_page_token);
                pages += 1;
                match got.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            assert!(pages >= 1);
        }
    }
    harness.finish().await;
}
