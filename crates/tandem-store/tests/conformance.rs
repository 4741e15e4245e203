//! The conformance suite of [`MetadataStore`]: every test runs against every
//! backend (SQLite in a temporary directory, and PostgreSQL in a database the
//! test creates and drops). PostgreSQL comes from `TANDEM_TEST_POSTGRES_URL`
//! (an admin connection, default `postgres://postgres@127.0.0.1:5432/postgres`);
//! if it cannot be reached the PostgreSQL tests fail, unless
//! `TANDEM_SKIP_POSTGRES=1` says to skip them.

mod support;

use std::sync::Arc;
use tandem_core::access::Role;

use support::{metric, Backend};
use tandem_core::journal::{AssetClass, JournalRecord};
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::*;

fn kind(error: StoreError) -> ErrorKind {
    error.kind()
}

fn param(key: &str, value: &str) -> Param {
    Param {
        key: key.to_string(),
        value: value.to_string(),
    }
}

async fn default_ws(store: &dyn MetadataStore) -> WorkspaceRef {
    store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap()
}

async fn new_run(store: &dyn MetadataStore, ws: &WorkspaceRef, experiment_id: &str) -> Run {
    store
        .create_run(
            ws,
            CreateRun {
                experiment_id: experiment_id.to_string(),
                ..CreateRun::default()
            },
        )
        .await
        .unwrap()
}

/// Declares one test per backend for each suite function.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = super::support::Harness::new(super::Backend::Sqlite).await else { return };
                    super::$name(&harness).await;
                    harness.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = super::support::Harness::new(super::Backend::Postgres).await else { return };
                    super::$name(&harness).await;
                    harness.finish().await;
                }
            )*
        }
    };
}

conformance!(
    workspaces_lifecycle,
    experiments_lifecycle,
    runs_and_run_data,
    params_cannot_change_and_nothing_is_half_written,
    metric_history_and_non_finite_values,
    search_runs_filters_orders_and_pages,
    logged_models,
    registry,
    artifacts_index_and_owners,
    every_write_is_journaled_in_order,
    replaying_the_journal_rebuilds_the_live_state,
    concurrent_writers_keep_the_journal_gap_free,
    hot_hot_regions_converge_and_record_conflicts,
    epochs_fence_and_quarantine_divergent_changes,
    the_write_probe_commits_without_journaling_or_changing_state,
    principals_tokens_and_roles,
);

/// Principals, tokens and role assignments: validated, journaled as
/// deployment-wide records of the `access` class carrying who wrote them,
/// and every change advances the generation credential caches watch.
async fn principals_tokens_and_roles(harness: &support::Harness) {
    use tandem_core::access::Role;
    let store = harness.store.as_ref();
    let start = store.journal_position().await.unwrap();
    let generation = store.access_generation();
    let alice = tandem_store::actor::scope(
        Some("root".into()),
        store.create_principal("alice", "user", Some("$argon2id$h".into())),
    )
    .await
    .unwrap();
    assert!(alice.has_password && !alice.disabled && alice.roles.is_empty());
    assert!(store.access_generation() > generation);
    assert_eq!(
        store.password_hash("alice").await.unwrap().as_deref(),
        Some("$argon2id$h")
    );
    // Precise refusals, nothing written.
    let head = store.journal_position().await.unwrap().head;
    for error in [
        store.create_principal("alice", "user", None).await.unwrap_err(),
        store
            .create_principal("bad name", "user", None)
            .await
            .unwrap_err(),
        store.create_principal("svc", "robot", None).await.unwrap_err(),
        store.assign_role("nobody", Role::Reader, None).await.unwrap_err(),
        store
            .assign_role("alice", Role::Operator, Some("default"))
            .await
            .unwrap_err(),
        store
            .assign_role("alice", Role::Reader, Some("no-such-workspace"))
            .await
            .unwrap_err(),
        store.remove_role("alice", Role::Reader, None).await.unwrap_err(),
        store.revoke_token("no-such-token").await.unwrap_err(),
        store
            .create_token("tx", "alice", "h", "", Some(1))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, tandem_store::StoreError::Domain(_)), "{error:?}");
    }
    assert_eq!(store.journal_position().await.unwrap().head, head);

    // Roles at both scopes; assigning twice is a no-op.
    store.create_workspace("team", "").await.unwrap();
    store
        .assign_role("alice", Role::Owner, Some("team"))
        .await
        .unwrap();
    store
        .assign_role("alice", Role::Owner, Some("team"))
        .await
        .unwrap();
    store.assign_role("alice", Role::Reader, None).await.unwrap();
    let held = store.principal("alice").await.unwrap().unwrap().roles;
    assert_eq!(held.len(), 2, "{held:?}");
    let grants = tandem_core::access::Grants(held);
    assert!(grants.allows(tandem_core::access::Permission::Manage, Some("team")));
    assert!(!grants.allows(tandem_core::access::Permission::Write, Some("default")));
    assert_eq!(store.role_assignments(None, Some("team")).await.unwrap().len(), 1);
    // A deleted workspace takes no new assignment.
    store.delete_workspace("team").await.unwrap();
    let error = store
        .assign_role("alice", Role::Reader, Some("team"))
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("deleted"), "{error:?}");

    // Tokens: found by hash, revoked, listed without secrets.
    let token = store
        .create_token("tok1", "alice", "hash-of-secret", "laptop", None)
        .await
        .unwrap();
    assert_eq!(token.principal, "alice");
    let found = store.token_by_hash("hash-of-secret").await.unwrap().unwrap();
    assert_eq!(found.token_id, "tok1");
    assert!(found.unusable(0).is_none());
    let before = store.access_generation();
    let revoked = store.revoke_token("tok1").await.unwrap();
    assert!(revoked.revoked_at.is_some() && revoked.unusable(0) == Some("revoked"));
    assert!(
        store.access_generation() > before,
        "revocation empties credential caches"
    );
    store.touch_token("tok1", 42).await.unwrap();
    assert_eq!(store.token("tok1").await.unwrap().unwrap().last_used_at, Some(42));

    // Disabling, then deleting takes tokens and assignments along.
    store.set_principal_disabled("alice", true).await.unwrap();
    assert!(store.principal("alice").await.unwrap().unwrap().disabled);
    store.delete_principal("alice").await.unwrap();
    assert!(store.principal("alice").await.unwrap().is_none());
    assert!(store.token_by_hash("hash-of-secret").await.unwrap().is_none());
    assert!(store
        .role_assignments(Some("alice"), None)
        .await
        .unwrap()
        .is_empty());

    // Journaled, deployment-wide, in the access class, with their author.
    let records = store.journal_after(start.head, None, 1000).await.unwrap();
    let first = records
        .iter()
        .find(|r| r.change.kind() == "principal_created")
        .unwrap();
    assert_eq!(first.workspace_id, tandem_core::journal::DEPLOYMENT_RECORD);
    assert_eq!(first.principal.as_deref(), Some("root"));
    assert_eq!(
        first.change.asset_class(),
        Some(tandem_core::journal::AssetClass::Access)
    );
    for kind in [
        "role_assigned",
        "token_created",
        "token_revoked",
        "principal_disabled",
        "principal_deleted",
    ] {
        assert!(
            records.iter().any(|r| r.change.kind() == kind),
            "{kind} journaled"
        );
    }
}

/// `tandem doctor`'s proof that the database takes writes: a committed
/// write each time, yet nothing a replica or a backup would see.
async fn the_write_probe_commits_without_journaling_or_changing_state(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let before = store.journal_position().await.unwrap();
    let dump = store.dump_state().await.unwrap();
    store.probe_write().await.unwrap();
    store.probe_write().await.unwrap();
    assert_eq!(store.journal_position().await.unwrap().head, before.head);
    assert_eq!(store.dump_state().await.unwrap(), dump);
    // Writes go on as before around it.
    store.create_workspace("after-probe", "").await.unwrap();
    assert!(store.journal_position().await.unwrap().head > before.head);
}

async fn workspaces_lifecycle(harness: &support::Harness) {
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

async fn experiments_lifecycle(harness: &support::Harness) {
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

async fn runs_and_run_data(harness: &support::Harness) {
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

async fn params_cannot_change_and_nothing_is_half_written(harness: &support::Harness) {
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

async fn metric_history_and_non_finite_values(harness: &support::Harness) {
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
    assert_eq!(history.items.len(), 5);
    assert!(history.items[0].value.is_nan());
    assert_eq!(history.items[1].value, f64::INFINITY);
    assert_eq!(history.items[2].value, f64::NEG_INFINITY);
    assert_eq!(history.items[3].value, -0.5);
    assert_eq!(history.items[4].value, 1e300);
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
        seen.extend(page.items.iter().map(|m| m.step));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..250).collect::<Vec<i64>>());
    assert!(store
        .get_metric_history(&ws, &run_id, "missing", None, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn search_runs_filters_orders_and_pages(harness: &support::Harness) {
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

async fn logged_models(harness: &support::Harness) {
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

async fn registry(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let run_id = new_run(store, &ws, "0").await.info.run_id;
    let logged = store
        .create_logged_model(
            &ws,
            CreateLoggedModel {
                experiment_id: "0".into(),
                source_run_id: Some(run_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let created = store
        .create_registered_model(&ws, "clf", "a classifier", vec![Tag::new("team", "a")], "ana")
        .await
        .unwrap();
    assert_eq!(created.description, "a classifier");
    assert_eq!(
        kind(
            store
                .create_registered_model(&ws, "clf", "", vec![], "")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceAlreadyExists
    );
    assert_eq!(
        kind(
            store
                .create_registered_model(&ws, "a/b", "", vec![], "")
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    let source = format!("models:/{}", logged.info.model_id);
    let version_one = store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "clf".into(),
                source: source.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(version_one.version, "1");
    // A `models:/m-…` source resolves to the logged model, its run and its files.
    assert_eq!(version_one.model_id, logged.info.model_id);
    assert_eq!(version_one.run_id, run_id);
    assert_eq!(
        store
            .get_model_version_download_uri(&ws, "clf", "1")
            .await
            .unwrap(),
        logged.info.artifact_uri
    );
    let tagged = store.get_logged_model(&ws, &logged.info.model_id).await.unwrap();
    assert!(tagged
        .info
        .tags
        .iter()
        .any(|t| t.key == "mlflow.modelVersions" && t.value.contains("\"clf\"")));
    let version_two = store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "clf".into(),
                source: "s3://b/m".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(version_two.version, "2");
    assert_eq!(
        store
            .get_model_version_download_uri(&ws, "clf", "2")
            .await
            .unwrap(),
        "s3://b/m"
    );
    assert_eq!(
        kind(
            store
                .create_model_version(
                    &ws,
                    CreateModelVersion {
                        name: "nope".into(),
                        source: "x".into(),
                        ..Default::default()
                    }
                )
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );

    store
        .transition_model_version_stage(&ws, "clf", "1", "production", false)
        .await
        .unwrap();
    let promoted = store
        .transition_model_version_stage(&ws, "clf", "2", "Production", true)
        .await
        .unwrap();
    assert_eq!(promoted.current_stage, "Production");
    assert_eq!(
        store
            .get_model_version(&ws, "clf", "1")
            .await
            .unwrap()
            .current_stage,
        "Archived"
    );
    let latest = store.get_latest_versions(&ws, "clf", &[]).await.unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|v| (v.version.as_str(), v.current_stage.as_str()))
            .collect::<Vec<_>>(),
        vec![("1", "Archived"), ("2", "Production")]
    );
    assert_eq!(
        kind(
            store
                .transition_model_version_stage(&ws, "clf", "1", "Bogus", false)
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );

    store
        .set_registered_model_alias(&ws, "clf", "champion", "2")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_model_version_by_alias(&ws, "clf", "champion")
            .await
            .unwrap()
            .version,
        "2"
    );
    assert_eq!(
        kind(
            store
                .set_registered_model_alias(&ws, "clf", "latest", "2")
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(
        kind(
            store
                .set_registered_model_alias(&ws, "clf", "x", "9")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );
    store
        .set_model_version_tag(&ws, "clf", "2", Tag::new("validated", "yes"))
        .await
        .unwrap();
    store
        .update_model_version(&ws, "clf", "2", "the good one")
        .await
        .unwrap();

    let renamed = store
        .rename_registered_model(&ws, "clf", "classifier")
        .await
        .unwrap();
    assert_eq!(
        renamed.aliases,
        vec![RegisteredModelAlias {
            alias: "champion".into(),
            version: "2".into()
        }]
    );
    let version = store.get_model_version(&ws, "classifier", "2").await.unwrap();
    assert_eq!(version.description, "the good one");
    assert_eq!(version.tags, vec![Tag::new("validated", "yes")]);
    assert_eq!(version.aliases, vec!["champion".to_string()]);
    assert_eq!(
        kind(store.get_registered_model(&ws, "clf").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );

    store.delete_model_version(&ws, "classifier", "2").await.unwrap();
    assert_eq!(
        kind(
            store
                .get_model_version_by_alias(&ws, "classifier", "champion")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );
    // Version numbers are never reused.
    let version_three = store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "classifier".into(),
                source: "s3://b/3".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(version_three.version, "3");
    let page = store
        .search_model_versions(
            &ws,
            SearchQuery {
                filter: "name = 'classifier'".into(),
                max_results: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let models = store
        .search_registered_models(
            &ws,
            SearchQuery {
                filter: "name LIKE 'class%'".into(),
                max_results: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(models.items.len(), 1);
    store.delete_registered_model(&ws, "classifier").await.unwrap();
    assert_eq!(
        kind(store.get_model_version(&ws, "classifier", "3").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
}

async fn artifacts_index_and_owners(harness: &support::Harness) {
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

async fn every_write_is_journaled_in_order(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let start = store.journal_position().await.unwrap();
    assert_eq!(start.epoch, 1);
    let id = store
        .create_experiment(&ws, "journaled", None, vec![])
        .await
        .unwrap();
    let run_id = new_run(store, &ws, &id).await.info.run_id;
    store
        .log_batch(
            &ws,
            &run_id,
            vec![metric("m", 1.0, 1, 0)],
            vec![param("p", "v")],
            vec![],
        )
        .await
        .unwrap();
    store.create_workspace("side", "").await.unwrap();
    let records = store.journal_after(start.head, None, 100).await.unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.change.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "experiment_created",
            "run_created",
            "run_data_logged",
            "workspace_created",
            "experiment_created"
        ]
    );
    for (offset, record) in records.iter().enumerate() {
        assert_eq!(record.seq, start.head + 1 + offset as i64, "gap-free");
        assert_eq!(record.origin_seq, record.seq);
        assert_eq!(record.origin_region, "test-region");
        assert_eq!(record.epoch, 1);
        assert_eq!(record.format, tandem_core::journal::FORMAT_VERSION);
    }
    assert!(
        records.windows(2).all(|pair| pair[0].hlc < pair[1].hlc),
        "hlc increases"
    );
    assert_eq!(records[0].workspace_id, ws.workspace_id);
    assert_ne!(records[3].workspace_id, ws.workspace_id);
    let only_default = store
        .journal_after(start.head, Some(&ws.workspace_id), 100)
        .await
        .unwrap();
    assert_eq!(only_default.len(), 3);
    let limited = store.journal_after(start.head, None, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(store.journal_position().await.unwrap().head, start.head + 5);
    // Reads write nothing.
    store.get_run(&ws, &run_id).await.unwrap();
    store
        .search_runs(
            &ws,
            SearchRuns {
                experiment_ids: vec![id],
                max_results: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(store.journal_position().await.unwrap().head, start.head + 5);
}

/// Builds a workspace with a bit of everything through the public API.
async fn rich_workload(store: &dyn MetadataStore) {
    let ws = default_ws(store).await;
    // Access changes replay like every other (deployment-wide records).
    store
        .create_principal("replayed-user", "user", Some("$argon2id$fake".into()))
        .await
        .unwrap();
    store
        .assign_role("replayed-user", Role::Contributor, Some("default"))
        .await
        .unwrap();
    store
        .create_token("t1", "replayed-user", "hash-1", "replayed", None)
        .await
        .unwrap();
    store
        .create_token("t2", "replayed-user", "hash-2", "revoked", None)
        .await
        .unwrap();
    store.revoke_token("t2").await.unwrap();
    let id = store
        .create_experiment(&ws, "replayed", None, vec![Tag::new("a", "b")])
        .await
        .unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: id.clone(),
                run_name: Some("r1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let run_id = run.info.run_id;
    let metrics = (0..50)
        .map(|step| metric("loss", 1.0 / (step + 1) as f64, 10 + step, step))
        .collect();
    store
        .log_batch(
            &ws,
            &run_id,
            metrics,
            vec![param("lr", "0.01")],
            vec![Tag::new("t", "v")],
        )
        .await
        .unwrap();
    store
        .log_batch(
            &ws,
            &run_id,
            vec![metric("nan", f64::NAN, 1, 0), metric("inf", f64::INFINITY, 1, 0)],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    store
        .update_run(
            &ws,
            &run_id,
            UpdateRun {
                status: Some(RunStatus::Finished),
                end_time: Some(99),
                run_name: None,
            },
        )
        .await
        .unwrap();
    let doomed = new_run(store, &ws, &id).await.info.run_id;
    store.delete_run(&ws, &doomed).await.unwrap();
    store
        .rename_experiment(&ws, &id, "replayed-renamed")
        .await
        .unwrap();
    let logged = store
        .create_logged_model(
            &ws,
            CreateLoggedModel {
                experiment_id: id.clone(),
                source_run_id: Some(run_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .finalize_logged_model(&ws, &logged.info.model_id, LoggedModelStatus::LoggedModelReady)
        .await
        .unwrap();
    store
        .create_registered_model(&ws, "m", "", vec![], "")
        .await
        .unwrap();
    store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "m".into(),
                source: format!("models:/{}", logged.info.model_id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .set_registered_model_alias(&ws, "m", "prod", "1")
        .await
        .unwrap();
    store
        .transition_model_version_stage(&ws, "m", "1", "Staging", false)
        .await
        .unwrap();
    store
        .record_artifact(&ws, &format!("{id}/{run_id}/artifacts/f.txt"), 3, "abc")
        .await
        .unwrap();
    let other = store.create_workspace("replay-other", "second").await.unwrap();
    let other_ws = store.resolve_workspace(&other.name).await.unwrap();
    store
        .create_experiment(&other_ws, "there", None, vec![])
        .await
        .unwrap();
    store.delete_workspace("replay-other").await.unwrap();
}

async fn replaying_the_journal_rebuilds_the_live_state(harness: &support::Harness) {
    let store = harness.store.as_ref();
    rich_workload(store).await;
    let live = store.dump_state().await.unwrap();
    let records = store.journal_after(0, None, i64::MAX / 2).await.unwrap();
    assert!(records.len() > 15);

    // Replay into an empty store of the same backend and into SQLite: both
    // must hold exactly the live state.
    for target_backend in [harness.backend, Backend::Sqlite] {
        let Some(target) = support::Harness::empty(target_backend, "test-replica").await else {
            continue;
        };
        // A fresh store creates its own default workspace; replay the live
        // store's records into one that has nothing yet.
        for record in &records {
            target.store.apply_record(record).await.unwrap();
        }
        let replayed = target.store.dump_state().await.unwrap();
        assert_eq!(replayed.len(), live.len());
        for ((table, live_rows), (_, replayed_rows)) in live.iter().zip(replayed.iter()) {
            assert_eq!(
                live_rows, replayed_rows,
                "table {table} differs after replay into {target_backend:?}"
            );
        }
        // Re-delivery is harmless: nothing applies twice.
        for record in records.iter().take(5) {
            assert!(!target.store.apply_record(record).await.unwrap());
        }
        assert_eq!(target.store.dump_state().await.unwrap(), live);
        // The replica's journal holds the records with their origin kept.
        let copied = target.store.journal_after(0, None, i64::MAX / 2).await.unwrap();
        assert_eq!(copied.len(), records.len());
        // Compared encoded: a NaN metric is equal to itself only as text.
        assert!(copied.iter().zip(records.iter()).all(|(c, r)| {
            c.origin_seq == r.seq
                && c.origin_region == r.origin_region
                && JournalRecord::encode_change(&c.change) == JournalRecord::encode_change(&r.change)
        }));
        target.finish().await;
    }
}

async fn concurrent_writers_keep_the_journal_gap_free(harness: &support::Harness) {
    let store = harness.store.clone();
    let ws = default_ws(store.as_ref()).await;
    let start = store.journal_position().await.unwrap().head;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store: Arc<dyn MetadataStore> = store.clone();
        let ws = ws.clone();
        tasks.push(tokio::spawn(async move {
            let run_id = new_run(store.as_ref(), &ws, "0").await.info.run_id;
            for step in 0..20 {
                store
                    .log_batch(
                        &ws,
                        &run_id,
                        vec![metric("m", writer as f64, step, step)],
                        vec![],
                        vec![],
                    )
                    .await
                    .unwrap();
            }
            run_id
        }));
    }
    let mut run_ids = Vec::new();
    for task in tasks {
        run_ids.push(task.await.unwrap());
    }
    let records = store.journal_after(start, None, 10_000).await.unwrap();
    assert_eq!(records.len(), 8 * 21);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq == start + 1 + i as i64));
    for run_id in run_ids {
        let history = store
            .get_metric_history(&ws, &run_id, "m", None, None)
            .await
            .unwrap();
        assert_eq!(history.items.len(), 20);
    }
}

/// The policy of a region in a deployment where every class is hot-hot.
struct HotHot {
    slot: u64,
    stride: u64,
}

impl tandem_store::RegionPolicy for HotHot {
    fn check_write(&self, _class: Option<AssetClass>) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    fn multi_writer(&self, _class: AssetClass) -> bool {
        true
    }
    fn id_stripe(&self) -> Option<tandem_core::merge::IdStripe> {
        Some(tandem_core::merge::IdStripe {
            slot: self.slot,
            stride: self.stride,
        })
    }
}

/// Delivers every record of `from` that `to` has not seen, as a follower
/// would. Returns how many records were read.
async fn deliver(from: &dyn MetadataStore, to: &dyn MetadataStore) -> usize {
    let source = from.journal_position().await.unwrap().region;
    let position = to.replication_position(&source).await.unwrap();
    let records = from.journal_after(position, None, i64::MAX / 2).await.unwrap();
    for record in &records {
        to.apply_replicated(&source, record, true).await.unwrap();
    }
    records.len()
}

fn conflict_keys(
    conflicts: &[tandem_core::merge::Conflict],
) -> Vec<(String, String, String, i64, String, i64)> {
    let mut keys: Vec<_> = conflicts
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.register.clone(),
                c.winner.origin_region.clone(),
                c.winner.origin_seq,
                c.loser.origin_region.clone(),
                c.loser.origin_seq,
            )
        })
        .collect();
    keys.sort();
    keys
}

async fn hot_hot_regions_converge_and_record_conflicts(harness: &support::Harness) {
    let a = harness.store.clone();
    let Some(b_harness) = support::Harness::empty(harness.backend, "region-b").await else {
        return;
    };
    let b = b_harness.store.clone();
    a.set_policy(std::sync::Arc::new(HotHot { slot: 0, stride: 2 }));
    b.set_policy(std::sync::Arc::new(HotHot { slot: 1, stride: 2 }));
    let ws = default_ws(a.as_ref()).await;

    // Shared starting point, replicated both ways.
    let run = new_run(a.as_ref(), &ws, "0").await.info.run_id;
    a.log_batch(&ws, &run, vec![], vec![], vec![Tag::new("doomed", "x")])
        .await
        .unwrap();
    a.create_registered_model(&ws, "m", "", vec![], "").await.unwrap();
    a.create_registered_model(&ws, "gone", "", vec![], "")
        .await
        .unwrap();
    let model_version = |name: &str| CreateModelVersion {
        name: name.to_string(),
        source: "s3://bucket/model".into(),
        ..Default::default()
    };
    assert_eq!(
        a.create_model_version(&ws, model_version("m"))
            .await
            .unwrap()
            .version,
        "1",
        "the first region of two numbers versions 1, 3, …"
    );
    deliver(a.as_ref(), b.as_ref()).await;
    assert_eq!(b.dump_state().await.unwrap(), a.dump_state().await.unwrap());

    // Partitioned: both regions write the same things.
    a.log_batch(
        &ws,
        &run,
        vec![metric("loss", 1.0, 10, 1)],
        vec![param("p", "from-a")],
        vec![Tag::new("k", "a")],
    )
    .await
    .unwrap();
    b.log_batch(
        &ws,
        &run,
        vec![metric("loss", 2.0, 11, 2)],
        vec![param("p", "from-b")],
        vec![Tag::new("k", "b")],
    )
    .await
    .unwrap();
    a.delete_run_tag(&ws, &run, "doomed").await.unwrap();
    b.log_batch(&ws, &run, vec![], vec![], vec![Tag::new("doomed", "revived")])
        .await
        .unwrap();
    let exp_a = a.create_experiment(&ws, "dup", None, vec![]).await.unwrap();
    let exp_b = b.create_experiment(&ws, "dup", None, vec![]).await.unwrap();
    assert_ne!(exp_a, exp_b, "experiment ids come from disjoint stripes");
    let v_a = a
        .create_model_version(&ws, model_version("m"))
        .await
        .unwrap()
        .version;
    let v_b = b
        .create_model_version(&ws, model_version("m"))
        .await
        .unwrap()
        .version;
    assert_ne!(v_a, v_b, "model version numbers come from disjoint stripes");
    a.update_registered_model(&ws, "m", "described in a")
        .await
        .unwrap();
    b.update_registered_model(&ws, "m", "described in b")
        .await
        .unwrap();
    // Deletion is soft since journal format 3; the purge is what removes
    // the model for good, and what a concurrent write conflicts with.
    a.delete_registered_model(&ws, "gone").await.unwrap();
    a.purge_deleted(
        &ws,
        tandem_store::retention::DeletedKind::RegisteredModel,
        "gone",
        false,
    )
    .await
    .unwrap();
    b.set_registered_model_tag(&ws, "gone", Tag::new("t", "late"))
        .await
        .unwrap();
    a.create_registered_model(&ws, "twin", "from a", vec![Tag::new("ta", "1")], "ana")
        .await
        .unwrap();
    b.create_registered_model(&ws, "twin", "from b", vec![Tag::new("tb", "1")], "bo")
        .await
        .unwrap();
    assert_eq!(
        kind(b.rename_registered_model(&ws, "m", "m2").await.unwrap_err()),
        ErrorKind::InvalidParameterValue,
        "renames cannot be merged and are refused while the registry is hot-hot"
    );

    // Healed: exchange until quiet, in both orders.
    deliver(a.as_ref(), b.as_ref()).await;
    deliver(b.as_ref(), a.as_ref()).await;
    deliver(a.as_ref(), b.as_ref()).await;
    let state_a = a.dump_state().await.unwrap();
    let state_b = b.dump_state().await.unwrap();
    for ((table, rows_a), (_, rows_b)) in state_a.iter().zip(state_b.iter()) {
        assert_eq!(rows_a, rows_b, "table {table} differs between the regions");
    }

    // What the merge decided.
    let run_now = a.get_run(&ws, &run).await.unwrap();
    let tag = |key: &str| {
        run_now
            .data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
    };
    assert_eq!(tag("doomed"), None, "a delete wins over a concurrent write");
    let k = tag("k").unwrap();
    assert!(k == "a" || k == "b");
    let loss: Vec<f64> = a
        .get_metric_history(&ws, &run, "loss", None, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|m| m.value)
        .collect();
    assert_eq!(
        loss.len(),
        2,
        "metrics are append-only and never conflict: {loss:?}"
    );
    let dup_a = a.get_experiment(&ws, &exp_a).await.unwrap().name;
    let dup_b = a.get_experiment(&ws, &exp_b).await.unwrap().name;
    let mut names = vec![dup_a, dup_b];
    names.sort();
    let loser = if names[0] == "dup" { &names[1] } else { &names[0] };
    assert_eq!(names.iter().filter(|n| *n == "dup").count(), 1, "{names:?}");
    assert!(loser.starts_with("dup (conflict "), "{names:?}");
    assert!(
        a.get_registered_model(&ws, "gone").await.is_err(),
        "the deleted model stays deleted"
    );
    let twin = a.get_registered_model(&ws, "twin").await.unwrap();
    assert!(
        twin.tags.iter().any(|t| t.key == "ta") && twin.tags.iter().any(|t| t.key == "tb"),
        "concurrent creations merge into one model: {twin:?}"
    );
    let m = a.get_registered_model(&ws, "m").await.unwrap();
    assert!(m.description == "described in a" || m.description == "described in b");

    // Both regions list the same conflicts, with both versions.
    let conflicts_a = a.list_conflicts(None, 1000).await.unwrap();
    let conflicts_b = b.list_conflicts(None, 1000).await.unwrap();
    assert_eq!(conflict_keys(&conflicts_a), conflict_keys(&conflicts_b));
    let registers: Vec<&str> = conflicts_a.iter().map(|c| c.register.as_str()).collect();
    for expected in [
        format!("run/{run}/tag/k"),
        format!("run/{run}/param/p"),
        format!("run/{run}/tag/doomed"),
        "expname/dup".to_string(),
        "rm/m/description".to_string(),
        "rm/gone/tag/t".to_string(),
        "rm/twin".to_string(),
    ] {
        assert!(
            registers.contains(&expected.as_str()),
            "no conflict on {expected}: {registers:?}"
        );
    }
    let doomed = conflicts_a
        .iter()
        .find(|c| c.register == format!("run/{run}/tag/doomed"))
        .unwrap();
    assert_eq!(doomed.resolution, "delete wins");
    assert!(doomed.winner.change.is_some() && doomed.loser.change.is_some());
    assert!(conflicts_a
        .iter()
        .all(|c| c.winner.origin_region != c.loser.origin_region));

    // The merged journal replays into the same state and the same conflicts.
    let Some(replica) = support::Harness::empty(Backend::Sqlite, "replica").await else {
        return;
    };
    for record in a.journal_after(0, None, i64::MAX / 2).await.unwrap() {
        replica.store.apply_record(&record).await.unwrap();
    }
    assert_eq!(replica.store.dump_state().await.unwrap(), state_a);
    assert_eq!(
        conflict_keys(&replica.store.list_conflicts(None, 1000).await.unwrap()),
        conflict_keys(&conflicts_a)
    );
    replica.finish().await;
    b_harness.finish().await;
}

fn divergence_ids(records: &[tandem_store::DivergentRecord]) -> Vec<(String, String, i64)> {
    let mut ids: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                r.record.change.kind().to_string(),
                r.voided_by_epoch,
            )
        })
        .collect();
    ids.sort();
    ids
}

/// A primary (A) goes on writing after its last records reached B; B takes
/// over in a new epoch. A's later changes are fenced wherever they arrive,
/// voided where they were applied, kept in quarantine with their content,
/// and only re-applied on purpose.
async fn epochs_fence_and_quarantine_divergent_changes(harness: &support::Harness) {
    let a = harness.store.clone();
    let a_name = a.journal_position().await.unwrap().region;
    let (Some(b_harness), Some(c_harness), Some(d_harness)) = (
        support::Harness::empty(harness.backend, "region-b").await,
        support::Harness::empty(harness.backend, "region-c").await,
        support::Harness::empty(harness.backend, "region-d").await,
    ) else {
        return;
    };
    let (b, c, d) = (
        b_harness.store.clone(),
        c_harness.store.clone(),
        d_harness.store.clone(),
    );
    // A fresh store may begin the epoch it stands at (a witness's first
    // grant), once.
    a.begin_epoch(1).await.unwrap();
    assert!(a.begin_epoch(1).await.is_err(), "an epoch begins once");
    a.begin_epoch(2).await.unwrap();
    assert_eq!(a.journal_position().await.unwrap().epoch, 2);
    let ws = default_ws(a.as_ref()).await;
    let run = new_run(a.as_ref(), &ws, "0").await.info.run_id;
    a.log_batch(&ws, &run, vec![metric("loss", 1.0, 1, 0)], vec![], vec![])
        .await
        .unwrap();
    let delivered_head = a.journal_position().await.unwrap().head;
    deliver(a.as_ref(), b.as_ref()).await;

    // A goes on writing; none of it reaches B.
    a.log_batch(
        &ws,
        &run,
        vec![],
        vec![param("lost", "1")],
        vec![Tag::new("t", "from-a")],
    )
    .await
    .unwrap();
    let lost_experiment = a.create_experiment(&ws, "only-in-a", None, vec![]).await.unwrap();

    // B takes over in epoch 5: its fork is what it held of A.
    let fork = b.begin_epoch(5).await.unwrap();
    assert_eq!(fork.get(&a_name), Some(&delivered_head));
    let error = b.begin_epoch(5).await.unwrap_err();
    assert!(error.to_string().contains("already knows epoch 5"), "{error}");
    b.log_batch(&ws, &run, vec![], vec![], vec![Tag::new("t", "from-b")])
        .await
        .unwrap();
    let b_state = b.dump_state().await.unwrap();

    // C follows B, then A's late changes reach it too: fenced on arrival.
    deliver(b.as_ref(), c.as_ref()).await;
    deliver(a.as_ref(), c.as_ref()).await;
    assert_eq!(
        c.dump_state().await.unwrap(),
        b_state,
        "fenced changes are not applied"
    );

    // A rejoins as B's follower: its own divergent changes are voided and
    // the state rebuilt without them.
    deliver(b.as_ref(), a.as_ref()).await;
    assert_eq!(
        a.dump_state().await.unwrap(),
        b_state,
        "the old primary converges on the new epoch"
    );
    let quarantined = a.list_divergence().await.unwrap();
    let expected = vec![
        (
            format!("{a_name}-{}", delivered_head + 1),
            "run_data_logged".to_string(),
            5,
        ),
        (
            format!("{a_name}-{}", delivered_head + 2),
            "experiment_created".to_string(),
            5,
        ),
    ];
    assert_eq!(divergence_ids(&quarantined), expected);
    assert_eq!(divergence_ids(&c.list_divergence().await.unwrap()), expected);
    assert!(quarantined
        .iter()
        .all(|r| r.status == "quarantined" && r.reason.contains("epoch 5")));
    assert_eq!(
        kind(a.get_experiment(&ws, &lost_experiment).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert!(b.list_divergence().await.unwrap().is_empty());
    let epochs: Vec<i64> = a.epochs().await.unwrap().iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, vec![1, 2, 5]);
    assert_eq!(b.epochs().await.unwrap(), a.epochs().await.unwrap());

    // Replaying A's journal rebuilds the same state and the same quarantine.
    for record in a.journal_after(0, None, i64::MAX / 2).await.unwrap() {
        d.apply_record(&record).await.unwrap();
    }
    assert_eq!(d.dump_state().await.unwrap(), b_state);
    assert_eq!(divergence_ids(&d.list_divergence().await.unwrap()), expected);

    // Re-applied on purpose at the primary, once; it then replicates.
    let created = quarantined
        .iter()
        .find(|r| r.record.change.kind() == "experiment_created")
        .unwrap();
    let seq = b.reapply_divergent(&created.record).await.unwrap();
    assert_eq!(
        b.reapply_divergent(&created.record).await.unwrap(),
        seq,
        "idempotent"
    );
    assert_eq!(
        b.get_experiment(&ws, &lost_experiment).await.unwrap().name,
        "only-in-a"
    );
    deliver(b.as_ref(), a.as_ref()).await;
    a.mark_divergence_applied(&created.id, seq).await.unwrap();
    assert_eq!(
        a.get_experiment(&ws, &lost_experiment).await.unwrap().name,
        "only-in-a"
    );
    let entry = a.get_divergence(&created.id).await.unwrap();
    assert_eq!((entry.status.as_str(), entry.applied_seq), ("applied", Some(seq)));
    assert_eq!(a.dump_state().await.unwrap(), b.dump_state().await.unwrap());
    assert_eq!(
        kind(a.get_divergence("nope-1").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    for extra in [b_harness, c_harness, d_harness] {
        extra.finish().await;
    }
}
