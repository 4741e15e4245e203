//! Workspaces, experiments, runs and their data, metric histories, run
//! search, logged models, and the artifact index with its owners.

use super::*;

pub async fn workspaces_lifecycle(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let defaults = store.list_workspaces(ViewType::ActiveOnly).await.unwrap();
    assert_eq!(
        defaults.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        vec!["default"]
    );

    let created = store.create_workspace("team-a", "first team").await.unwrap();
    assert_eq!(created.name, "team-a");
    assert_eq!(created.description, "first team");
    assert_eq!(store.get_workspace("team-a").await.unwrap(), created);
    let ws = store.resolve_workspace("team-a").await.unwrap();
    assert_eq!(ws.workspace_id, created.workspace_id);
    // Every workspace starts with MLflow's Default experiment.
    assert_eq!(store.get_experiment(&ws, "0").await.unwrap().name, "Default");

    assert_eq!(
        kind(store.create_workspace("team-a", "").await.unwrap_err()),
        ErrorKind::ResourceAlreadyExists
    );
    assert_eq!(
        kind(store.create_workspace("Bad Name", "").await.unwrap_err()),
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(
        kind(store.create_workspace("", "").await.unwrap_err()),
        ErrorKind::InvalidParameterValue
    );

    let deleted = store.delete_workspace("team-a").await.unwrap();
    assert_eq!(deleted.lifecycle_stage, LifecycleStage::Deleted);
    assert!(deleted.deletion_time.is_some());
    assert_eq!(
        kind(store.get_workspace("team-a").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(store.resolve_workspace("team-a").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    let listed_deleted = store.list_workspaces(ViewType::DeletedOnly).await.unwrap();
    assert_eq!(listed_deleted.len(), 1);
    // The name stays reserved by the deleted workspace, and the error says so.
    let error = store.create_workspace("team-a", "").await.unwrap_err();
    assert!(error.to_string().contains(&created.workspace_id), "{error}");
    assert_eq!(
        kind(store.delete_workspace("default").await.unwrap_err()),
        ErrorKind::InvalidParameterValue
    );
}

pub async fn experiments_lifecycle(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let tags = vec![Tag::new("team", "vision")];
    let id = store
        .create_experiment(&ws, "exp-one", None, tags.clone())
        .await
        .unwrap();
    assert_eq!(id, "1");
    let experiment = store.get_experiment(&ws, &id).await.unwrap();
    assert_eq!(experiment.name, "exp-one");
    assert_eq!(experiment.artifact_location, "mlflow-artifacts:/1");
    assert_eq!(experiment.tags, tags);
    assert_eq!(
        store.get_experiment_by_name(&ws, "exp-one").await.unwrap(),
        experiment
    );
    let second = store
        .create_experiment(&ws, "exp-two", Some("s3://bucket/x"), vec![])
        .await
        .unwrap();
    assert_eq!(second, "2");
    assert_eq!(
        store
            .get_experiment(&ws, &second)
            .await
            .unwrap()
            .artifact_location,
        "s3://bucket/x"
    );

    assert_eq!(
        kind(
            store
                .create_experiment(&ws, "exp-one", None, vec![])
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceAlreadyExists
    );
    assert_eq!(
        kind(store.create_experiment(&ws, "", None, vec![]).await.unwrap_err()),
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(
        kind(
            store
                .create_experiment(&ws, "x", Some("runs:/abc"), vec![])
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(
        kind(store.get_experiment(&ws, "999").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(store.get_experiment_by_name(&ws, "nope").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );

    store.rename_experiment(&ws, &id, "exp-renamed").await.unwrap();
    assert_eq!(store.get_experiment(&ws, &id).await.unwrap().name, "exp-renamed");
    assert_eq!(
        kind(store.rename_experiment(&ws, &id, "exp-two").await.unwrap_err()),
        ErrorKind::ResourceAlreadyExists
    );
    store
        .set_experiment_tag(&ws, &id, Tag::new("team", "nlp"))
        .await
        .unwrap();
    store
        .set_experiment_tag(&ws, &id, Tag::new("owner", "ana"))
        .await
        .unwrap();
    let experiment = store.get_experiment(&ws, &id).await.unwrap();
    assert_eq!(
        experiment.tags,
        vec![Tag::new("owner", "ana"), Tag::new("team", "nlp")]
    );
    store.delete_experiment_tag(&ws, &id, "owner").await.unwrap();
    assert_eq!(
        kind(store.delete_experiment_tag(&ws, &id, "owner").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );

    let run = new_run(store, &ws, &id).await;
    store.delete_experiment(&ws, &id).await.unwrap();
    assert_eq!(
        store.get_experiment(&ws, &id).await.unwrap().lifecycle_stage,
        LifecycleStage::Deleted
    );
    // Deleting an experiment deletes its runs; restoring restores them.
    assert_eq!(
        store
            .get_run(&ws, &run.info.run_id)
            .await
            .unwrap()
            .info
            .lifecycle_stage,
        LifecycleStage::Deleted
    );
    assert_eq!(
        kind(
            store
                .create_run(
                    &ws,
                    CreateRun {
                        experiment_id: id.clone(),
                        ..Default::default()
                    }
                )
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    let active = store
        .search_experiments(
            &ws,
            SearchQuery {
                max_results: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(active.items.iter().all(|e| e.experiment_id != id));
    let deleted = store
        .search_experiments(
            &ws,
            SearchQuery {
                max_results: 100,
                view_type: ViewType::DeletedOnly,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        deleted
            .items
            .iter()
            .map(|e| e.experiment_id.clone())
            .collect::<Vec<_>>(),
        vec![id.clone()]
    );
    store.restore_experiment(&ws, &id).await.unwrap();
    assert_eq!(
        store
            .get_run(&ws, &run.info.run_id)
            .await
            .unwrap()
            .info
            .lifecycle_stage,
        LifecycleStage::Active
    );
    assert_eq!(
        kind(store.restore_experiment(&ws, &id).await.unwrap_err()),
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(
        kind(store.delete_experiment(&ws, "0").await.unwrap_err()),
        ErrorKind::InvalidParameterValue
    );

    let filtered = store
        .search_experiments(
            &ws,
            SearchQuery {
                filter: "name LIKE 'exp-%'".into(),
                max_results: 100,
                order_by: vec!["name ASC".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        filtered.items.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        vec!["exp-renamed", "exp-two"]
    );

    // Experiments are per workspace: the same name and id live in another.
    let other = store.create_workspace("other", "").await.unwrap();
    let other_ws = store.resolve_workspace(&other.name).await.unwrap();
    assert_eq!(
        store
            .create_experiment(&other_ws, "exp-two", None, vec![])
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        kind(store.get_experiment(&other_ws, "2").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(store.get_run(&other_ws, &run.info.run_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
}

pub async fn runs_and_run_data(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: "0".into(),
                user_id: "ana".into(),
                start_time: Some(1000),
                run_name: Some("first".into()),
                tags: vec![Tag::new("k", "v")],
            },
        )
        .await
        .unwrap();
    assert_eq!(run.info.run_name, "first");
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.start_time, Some(1000));
    assert_eq!(
        run.info.artifact_uri,
        format!("mlflow-artifacts:/0/{}/artifacts", run.info.run_id)
    );
    assert_eq!(run.tag("mlflow.runName"), Some("first"));
    assert_eq!(run.tag("k"), Some("v"));
    // A generated name when none is given, mirrored in the tag.
    let unnamed = new_run(store, &ws, "0").await;
    assert_eq!(unnamed.info.run_name.split('-').count(), 3);
    assert_eq!(
        unnamed.tag("mlflow.runName"),
        Some(unnamed.info.run_name.as_str())
    );
    let conflicting = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: "0".into(),
                run_name: Some("a".into()),
                tags: vec![Tag::new("mlflow.runName", "b")],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(kind(conflicting), ErrorKind::InvalidParameterValue);
    assert_eq!(
        kind(
            store
                .create_run(
                    &ws,
                    CreateRun {
                        experiment_id: "42".into(),
                        ..Default::default()
                    }
                )
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );

    let run_id = run.info.run_id.clone();
    store
        .log_batch(
            &ws,
            &run_id,
            vec![
                metric("loss", 0.5, 10, 1),
                metric("loss", 0.3, 11, 2),
                metric("acc", 0.9, 10, 1),
            ],
            vec![param("lr", "0.1")],
            vec![Tag::new("phase", "train")],
        )
        .await
        .unwrap();
    store
        .log_batch(&ws, &run_id, vec![metric("loss", 0.9, 5, 0)], vec![], vec![])
        .await
        .unwrap();
    let fetched = store.get_run(&ws, &run_id).await.unwrap();
    // The latest value is the highest step, not the last logged.
    assert_eq!(fetched.latest_metric("loss").unwrap().value, 0.3);
    assert_eq!(fetched.latest_metric("acc").unwrap().value, 0.9);
    assert_eq!(fetched.param("lr"), Some("0.1"));
    assert_eq!(fetched.tag("phase"), Some("train"));

    let updated = store
        .update_run(
            &ws,
            &run_id,
            UpdateRun {
                status: Some(RunStatus::Finished),
                end_time: Some(2000),
                run_name: Some("renamed".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.status, RunStatus::Finished);
    assert_eq!(updated.end_time, Some(2000));
    assert_eq!(updated.run_name, "renamed");
    assert_eq!(
        store.get_run(&ws, &run_id).await.unwrap().tag("mlflow.runName"),
        Some("renamed")
    );
    // Setting the name tag renames the run too.
    store
        .log_batch(
            &ws,
            &run_id,
            vec![],
            vec![],
            vec![Tag::new("mlflow.runName", "by-tag")],
        )
        .await
        .unwrap();
    assert_eq!(store.get_run(&ws, &run_id).await.unwrap().info.run_name, "by-tag");

    store.delete_run_tag(&ws, &run_id, "phase").await.unwrap();
    assert_eq!(store.get_run(&ws, &run_id).await.unwrap().tag("phase"), None);
    assert_eq!(
        kind(store.delete_run_tag(&ws, &run_id, "phase").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );

    let dataset = DatasetInput {
        tags: vec![Tag::new("mlflow.data.context", "training")],
        dataset: Dataset {
            name: "iris".into(),
            digest: "abc123".into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: None,
            profile: None,
        },
    };
    store
        .log_inputs(
            &ws,
            &run_id,
            vec![dataset.clone()],
            vec![ModelInput {
                model_id: "m-1".into(),
            }],
        )
        .await
        .unwrap();
    store
        .log_outputs(
            &ws,
            &run_id,
            vec![ModelOutput {
                model_id: "m-2".into(),
                step: 3,
            }],
        )
        .await
        .unwrap();
    let fetched = store.get_run(&ws, &run_id).await.unwrap();
    assert_eq!(fetched.inputs.dataset_inputs, vec![dataset]);
    assert_eq!(
        fetched.inputs.model_inputs,
        vec![ModelInput {
            model_id: "m-1".into()
        }]
    );
    assert_eq!(
        fetched.outputs.model_outputs,
        vec![ModelOutput {
            model_id: "m-2".into(),
            step: 3
        }]
    );

    store.delete_run(&ws, &run_id).await.unwrap();
    assert_eq!(
        store.get_run(&ws, &run_id).await.unwrap().info.lifecycle_stage,
        LifecycleStage::Deleted
    );
    assert_eq!(
        kind(
            store
                .log_batch(&ws, &run_id, vec![metric("x", 1.0, 1, 0)], vec![], vec![])
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    store.restore_run(&ws, &run_id).await.unwrap();
    store
        .log_batch(&ws, &run_id, vec![metric("x", 1.0, 1, 0)], vec![], vec![])
        .await
        .unwrap();
    assert_eq!(
        kind(
            store
                .get_run(&ws, "0123456789abcdef0123456789abcdef")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );
}

pub async fn params_cannot_change_and_nothing_is_half_written(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run_id = new_run(store, &ws, "0").await.info.run_id;
    store
        .log_batch(&ws, &run_id, vec![], vec![param("p", "1")], vec![])
        .await
        .unwrap();
    // The same value again is fine.
    store
        .log_batch(&ws, &run_id, vec![], vec![param("p", "1")], vec![])
        .await
        .unwrap();
    let head_before = store.journal_position().await.unwrap().head;
    let error = store
        .log_batch(
            &ws,
            &run_id,
            vec![metric("m", 1.0, 1, 0)],
            vec![param("q", "new"), param("p", "2")],
            vec![Tag::new("t", "v")],
        )
        .await
        .unwrap_err();
    assert_eq!(kind(error), ErrorKind::InvalidParameterValue);
    // The whole batch was refused: no metric, no new param, no tag, no record.
    let run = store.get_run(&ws, &run_id).await.unwrap();
    assert_eq!(run.param("p"), Some("1"));
    assert_eq!(run.param("q"), None);
    assert_eq!(run.tag("t"), None);
    assert!(run.data.metrics.is_empty());
    assert_eq!(store.journal_position().await.unwrap().head, head_before);

    for (metrics, params, tags) in [
        (
            (0..1001).map(|i| metric("m", i as f64, 1, i)).collect::<Vec<_>>(),
            vec![],
            vec![],
        ),
        (
            vec![],
            (0..101).map(|i| param(&format!("p{i}"), "v")).collect(),
            vec![],
        ),
        (vec![metric("a//b", 1.0, 1, 0)], vec![], vec![]),
        (vec![], vec![param(&"k".repeat(251), "v")], vec![]),
        (vec![], vec![param("long", &"v".repeat(6001))], vec![]),
        (vec![], vec![], vec![Tag::new("t", "v".repeat(8001))]),
        (vec![], vec![param("dup", "1"), param("dup", "1")], vec![]),
        (vec![metric("neg", 1.0, -1, 0)], vec![], vec![]),
    ] {
        let error = store
            .log_batch(&ws, &run_id, metrics, params, tags)
            .await
            .unwrap_err();
        assert_eq!(kind(error), ErrorKind::InvalidParameterValue);
    }
    assert_eq!(store.journal_position().await.unwrap().head, head_before);
}

/// What a batch of run data does in each backend's write path (PostgreSQL
/// checks and writes a batch in one statement): a batch's later tag of a key
/// wins, the run-name tag renames the run, latest metrics fold per key, and
/// each refusal (an unknown run, another workspace's run, a deleted run, a
/// changed param) names its cause and writes nothing.
pub async fn run_data_batches_check_and_apply_as_one(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run_id = new_run(store, &ws, "0").await.info.run_id;
    store
        .log_batch(
            &ws,
            &run_id,
            vec![
                metric("loss", 0.5, 10, 2),
                metric("loss", 0.9, 5, 1),
                metric("loss", 0.7, 20, 2),
                metric("acc", f64::NAN, 1, 0),
            ],
            vec![param("lr", "0.01"), param("depth", "3")],
            vec![
                Tag::new("team", "a"),
                Tag::new("team", "b"),
                Tag::new("mlflow.runName", "renamed"),
            ],
        )
        .await
        .unwrap();
    let run = store.get_run(&ws, &run_id).await.unwrap();
    assert_eq!(run.tag("team"), Some("b"));
    assert_eq!(run.info.run_name, "renamed");
    assert_eq!(run.param("lr"), Some("0.01"));
    assert_eq!(run.param("depth"), Some("3"));
    let loss = run.data.metrics.iter().find(|m| m.key == "loss").unwrap();
    assert_eq!((loss.value, loss.timestamp, loss.step), (0.7, 20, 2));
    assert!(run
        .data
        .metrics
        .iter()
        .any(|m| m.key == "acc" && m.value.is_nan()));
    let history = store
        .get_metric_history(&ws, &run_id, "loss", None, None)
        .await
        .unwrap();
    assert_eq!(history.points.len(), 3);

    let other = store.create_workspace("batch-other", "").await.unwrap();
    let other_ws = store.resolve_workspace(&other.name).await.unwrap();
    let head_before = store.journal_position().await.unwrap().head;
    let missing = store
        .log_batch(
            &ws,
            "0123456789abcdef0123456789abcdef",
            vec![metric("x", 1.0, 1, 0)],
            vec![],
            vec![],
        )
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::ResourceDoesNotExist);
    assert!(
        missing
            .to_string()
            .contains("Run with id=0123456789abcdef0123456789abcdef not found"),
        "{missing}"
    );

    let elsewhere = store
        .log_batch(&other_ws, &run_id, vec![metric("x", 1.0, 1, 0)], vec![], vec![])
        .await
        .unwrap_err();
    assert_eq!(elsewhere.kind(), ErrorKind::ResourceDoesNotExist);

    let clash = store
        .log_batch(
            &ws,
            &run_id,
            vec![],
            vec![param("depth", "3"), param("lr", "0.1")],
            vec![],
        )
        .await
        .unwrap_err();
    assert_eq!(clash.kind(), ErrorKind::InvalidParameterValue);
    assert!(
        clash.to_string().contains(&format!(
            "Param with key='lr' was already logged with value='0.01' for run ID='{run_id}'. Attempted logging new value '0.1'."
        )),
        "{clash}"
    );

    assert_eq!(store.journal_position().await.unwrap().head, head_before);
    store.delete_run(&ws, &run_id).await.unwrap();
    let head_deleted = store.journal_position().await.unwrap().head;
    let deleted = store
        .log_batch(&ws, &run_id, vec![], vec![], vec![Tag::new("t", "v")])
        .await
        .unwrap_err();
    assert_eq!(deleted.kind(), ErrorKind::InvalidParameterValue);
    assert!(
        deleted.to_string().contains(&format!(
            "The run {run_id} must be in the 'active' state. Current state is deleted."
        )),
        "{deleted}"
    );
    assert_eq!(store.journal_position().await.unwrap().head, head_deleted);
    store.restore_run(&ws, &run_id).await.unwrap();
    let run = store.get_run(&ws, &run_id).await.unwrap();
    assert_eq!(run.tag("t"), None);
    assert_eq!(run.param("lr"), Some("0.01"));
}

pub async fn metric_history_and_non_finite_values(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run_id = new_run(store, &ws, "0").await.info.run_id;
    let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, 1e300];
    let metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, v)| metric("odd", *v, 100 + i as i64, i as i64))
        .collect();
    store
        .log_batch(&ws, &run_id, metrics, vec![], vec![])
        .await
        .unwrap();
    let history = store
        .get_metric_history(&ws, &run_id, "odd", None, None)
        .await
        .unwrap();
    assert_eq!(history.points.len(), 5);
    assert!(history.points[0].value.is_nan());
    assert_eq!(history.points[1].value, f64::INFINITY);
    assert_eq!(history.points[2].value, f64::NEG_INFINITY);
    assert_eq!(history.points[3].value, -0.5);
    assert_eq!(history.points[4].value, 1e300);
    assert!(history.next_page_token.is_none());

    let many: Vec<Metric> = (0..250)
        .map(|step| metric("curve", step as f64 / 2.0, 1000 + step, step))
        .collect();
    store.log_batch(&ws, &run_id, many, vec![], vec![]).await.unwrap();
    // The same (key, timestamp, step, value) logged again is not a new point.
    store
        .log_batch(&ws, &run_id, vec![metric("curve", 0.0, 1000, 0)], vec![], vec![])
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .get_metric_history(&ws, &run_id, "curve", Some(100), token.as_deref())
            .await
            .unwrap();
        seen.extend(page.points.iter().map(|point| point.step));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..250).collect::<Vec<i64>>());

    // Pages start after the last point of the one before, in the table's
    // order: points that tie on step and timestamp (NaN, infinities, equal
    // values with another model) are neither skipped nor repeated where a
    // page ends among them.
    let mut ties = Vec::new();
    for step in 0..4 {
        for value in [f64::NAN, f64::NEG_INFINITY, 1.0, f64::INFINITY] {
            ties.push(metric("ties", value, 50, step));
        }
        let mut with_model = metric("ties", 1.0, 50, step);
        with_model.model_id = Some(format!("m-{step}"));
        ties.push(with_model);
        // A point's texts stay its own among points without any.
        let mut with_dataset = metric("ties", 1.0, 50, step);
        with_dataset.dataset_name = Some(format!("train-{step}"));
        with_dataset.dataset_digest = Some(format!("d{step}"));
        if step % 2 == 0 {
            with_dataset.model_id = Some(format!("m-{step}"));
        }
        ties.push(with_dataset);
    }
    store.log_batch(&ws, &run_id, ties, vec![], vec![]).await.unwrap();
    let whole = store
        .get_metric_history(&ws, &run_id, "ties", None, None)
        .await
        .unwrap()
        .metrics();
    assert_eq!(whole.len(), 24);
    assert_eq!(
        whole
            .iter()
            .filter(
                |m| m.dataset_name.is_some() && m.dataset_digest.as_deref() == Some(&format!("d{}", m.step))
            )
            .count(),
        4
    );
    assert_eq!(whole.iter().filter(|m| m.model_id.is_some()).count(), 6);
    type Shown = (i64, u64, Option<String>, Option<String>, Option<String>);
    let shown = |points: &[Metric]| -> Vec<Shown> {
        points
            .iter()
            .map(|m| {
                (
                    m.step,
                    m.value.to_bits(),
                    m.model_id.clone(),
                    m.dataset_name.clone(),
                    m.dataset_digest.clone(),
                )
            })
            .collect()
    };
    for size in [1, 3, 5, 7] {
        let mut paged = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..=24 {
            let page = store
                .get_metric_history(&ws, &run_id, "ties", Some(size), token.as_deref())
                .await
                .unwrap();
            assert!(page.points.len() <= size);
            paged.extend(page.metrics());
            token = page.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert!(token.is_none(), "pages of {size} did not end");
        assert_eq!(shown(&paged), shown(&whole), "pages of {size}");
    }
    // An offset token (MLflow's, or an older Tandem's) still reads.
    let from_offset = store
        .get_metric_history(
            &ws,
            &run_id,
            "ties",
            Some(100),
            Some(&tandem_core::search::encode_page_token(15)),
        )
        .await
        .unwrap();
    assert_eq!(shown(&from_offset.metrics()), shown(&whole[15..]));
    assert!(store
        .get_metric_history(&ws, &run_id, "missing", None, None)
        .await
        .unwrap()
        .points
        .is_empty());
}

pub async fn search_runs_filters_orders_and_pages(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let experiment = store
        .create_experiment(&ws, "search", None, vec![])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for index in 0..12 {
        let run = store
            .create_run(
                &ws,
                CreateRun {
                    experiment_id: experiment.clone(),
                    start_time: Some(1000 + index),
                    run_name: Some(format!("run-{index:02}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        store
            .log_batch(
                &ws,
                &run.info.run_id,
                vec![metric("acc", index as f64 / 10.0, 1, 0)],
                vec![param("model", if index % 2 == 0 { "cnn" } else { "rnn" })],
                vec![Tag::new("my tag", format!("value-{index}"))],
            )
            .await
            .unwrap();
        ids.push(run.info.run_id);
    }
    let search = |filter: &str, order: &[&str], max: usize, token: Option<String>| SearchRuns {
        experiment_ids: vec![experiment.clone()],
        filter: filter.to_string(),
        view_type: ViewType::ActiveOnly,
        max_results: max,
        order_by: order.iter().map(|o| o.to_string()).collect(),
        page_token: token,
    };
    let page = store
        .search_runs(
            &ws,
            search(
                "metrics.acc > 0.45 AND params.model = 'cnn'",
                &["metrics.acc DESC"],
                100,
                None,
            ),
        )
        .await
        .unwrap();
    let names: Vec<_> = page.items.iter().map(|r| r.info.run_name.clone()).collect();
    assert_eq!(names, vec!["run-10", "run-08", "run-06"]);
    let page = store
        .search_runs(&ws, search("tags.`my tag` LIKE 'value-1%'", &[], 100, None))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3); // value-1, value-10, value-11
    let page = store.search_runs(&ws, search("", &[], 5, None)).await.unwrap();
    // Default order: newest start time first.
    assert_eq!(page.items[0].info.run_name, "run-11");
    let mut collected: Vec<String> = page.items.iter().map(|r| r.info.run_id.clone()).collect();
    let mut token = page.next_page_token;
    while let Some(next) = token {
        let page = store
            .search_runs(&ws, search("", &[], 5, Some(next)))
            .await
            .unwrap();
        collected.extend(page.items.iter().map(|r| r.info.run_id.clone()));
        token = page.next_page_token;
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(collected, expected);
    let error = store
        .search_runs(&ws, search("metrics.acc >", &[], 10, None))
        .await
        .unwrap_err();
    assert_eq!(kind(error), ErrorKind::InvalidParameterValue);
    store.delete_run(&ws, &ids[0]).await.unwrap();
    let deleted = store
        .search_runs(
            &ws,
            SearchRuns {
                view_type: ViewType::DeletedOnly,
                ..search("", &[], 100, None)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        deleted
            .items
            .iter()
            .map(|r| r.info.run_id.clone())
            .collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
}

pub async fn logged_models(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run_id = new_run(store, &ws, "0").await.info.run_id;
    let model = store
        .create_logged_model(
            &ws,
            CreateLoggedModel {
                experiment_id: "0".into(),
                name: Some("clf".into()),
                model_type: Some("sklearn".into()),
                source_run_id: Some(run_id.clone()),
                params: vec![param("C", "1.0")],
                tags: vec![Tag::new("k", "v")],
                creator_id: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(model.info.model_id.starts_with("m-"));
    assert_eq!(model.info.status, LoggedModelStatus::LoggedModelPending);
    assert_eq!(
        model.info.artifact_uri,
        format!("mlflow-artifacts:/0/models/{}/artifacts", model.info.model_id)
    );
    let model_id = model.info.model_id.clone();
    let ready = store
        .finalize_logged_model(&ws, &model_id, LoggedModelStatus::LoggedModelReady)
        .await
        .unwrap();
    assert_eq!(ready.info.status, LoggedModelStatus::LoggedModelReady);
    store
        .set_logged_model_tags(&ws, &model_id, vec![Tag::new("k2", "v2")])
        .await
        .unwrap();
    store.delete_logged_model_tag(&ws, &model_id, "k").await.unwrap();
    store
        .log_logged_model_params(&ws, &model_id, vec![param("gamma", "0.1")])
        .await
        .unwrap();
    let mut with_metric = metric("f1", 0.7, 5, 0);
    with_metric.model_id = Some(model_id.clone());
    store
        .log_batch(&ws, &run_id, vec![with_metric], vec![], vec![])
        .await
        .unwrap();
    let fetched = store.get_logged_model(&ws, &model_id).await.unwrap();
    assert_eq!(fetched.info.tags, vec![Tag::new("k2", "v2")]);
    assert_eq!(
        fetched.data.params,
        vec![param("C", "1.0"), param("gamma", "0.1")]
    );
    assert_eq!(fetched.data.metrics.len(), 1);
    assert_eq!(fetched.data.metrics[0].value, 0.7);
    let found = store
        .search_logged_models(
            &ws,
            SearchLoggedModels {
                experiment_ids: vec!["0".into()],
                filter: "metrics.f1 > 0.5 AND name = 'clf'".into(),
                max_results: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        kind(
            store
                .create_logged_model(
                    &ws,
                    CreateLoggedModel {
                        experiment_id: "0".into(),
                        name: Some("a/b".into()),
                        ..Default::default()
                    }
                )
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    store.delete_logged_model(&ws, &model_id).await.unwrap();
    assert_eq!(
        kind(store.get_logged_model(&ws, &model_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
}

pub async fn artifacts_index_and_owners(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run = new_run(store, &ws, "0").await;
    let root = format!("0/{}/artifacts", run.info.run_id);
    store
        .check_artifact_owner(&ws, &format!("{root}/model/file.pkl"), true)
        .await
        .unwrap();
    for outside in [
        "0/other/artifacts/x",
        "0",
        "elsewhere/file",
        &format!("0/{}/notartifacts/x", run.info.run_id),
    ] {
        assert_eq!(
            kind(store.check_artifact_owner(&ws, outside, true).await.unwrap_err()),
            ErrorKind::PermissionDenied,
            "{outside}"
        );
    }
    let other = store.create_workspace("elsewhere", "").await.unwrap();
    let other_ws = store.resolve_workspace(&other.name).await.unwrap();
    assert_eq!(
        kind(
            store
                .check_artifact_owner(&other_ws, &format!("{root}/x"), true)
                .await
                .unwrap_err()
        ),
        ErrorKind::PermissionDenied
    );

    store
        .record_artifact(&ws, &format!("{root}/a.txt"), 5, "aa")
        .await
        .unwrap();
    store
        .record_artifact(&ws, &format!("{root}/dir/b.txt"), 7, "bb")
        .await
        .unwrap();
    store
        .record_artifact(&ws, &format!("{root}/dir/c.txt"), 9, "cc")
        .await
        .unwrap();
    store
        .record_artifact(&ws, &format!("{root}/dirx.txt"), 1, "dd")
        .await
        .unwrap();
    let entries = store.list_artifact_entries(&ws, &root).await.unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].sha256, "aa");
    store.delete_artifact(&ws, &format!("{root}/dir")).await.unwrap();
    let remaining: Vec<_> = store
        .list_artifact_entries(&ws, &root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        remaining,
        vec![format!("{root}/a.txt"), format!("{root}/dirx.txt")]
    );

    store.delete_run(&ws, &run.info.run_id).await.unwrap();
    assert_eq!(
        kind(
            store
                .check_artifact_owner(&ws, &format!("{root}/late.txt"), true)
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    store
        .check_artifact_owner(&ws, &format!("{root}/a.txt"), false)
        .await
        .unwrap();
}
