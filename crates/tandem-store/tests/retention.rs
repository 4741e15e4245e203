//! Conformance scenarios of soft delete with retention, run against SQLite
//! and PostgreSQL like `conformance.rs`: delete, recover and purge of every
//! kind, name reservation, retention limits, purge protection, the
//! automatic purge with a fake clock, the garbage-collection queue, and the
//! journal replay proof with deleted and purged items.

#[allow(dead_code)]
#[macro_use]
mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use support::Backend;
use tandem_core::journal::AssetClass;
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::retention::*;
use tandem_store::*;

const NOW: i64 = 1_795_000_000_000;

/// A clock tests move by hand.
#[derive(Debug)]
struct FakeClock(AtomicI64);

impl FakeClock {
    fn advance_days(&self, days: i64) {
        self.0.fetch_add(days * DAY_MILLIS, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

fn kind(error: StoreError) -> ErrorKind {
    error.kind()
}

scenarios!(
    registry_soft_delete_recover_and_purge,
    tracking_items_delete_recover_and_purge,
    workspace_retention_reservation_and_protection,
    automatic_purge_after_retention,
    gc_queue_retries_and_drains,
    replay_rebuilds_state_with_deleted_and_purged_items,
    hot_hot_purges_converge_with_concurrent_writes,
);

async fn open(backend: Backend) -> Option<(support::Harness, Arc<FakeClock>)> {
    let clock = Arc::new(FakeClock(AtomicI64::new(NOW)));
    let harness = support::Harness::with_clock(backend, clock.clone()).await?;
    Some((harness, clock))
}

async fn model_with_versions(store: &dyn MetadataStore, ws: &WorkspaceRef, name: &str) {
    store
        .create_registered_model(ws, name, "", vec![], "")
        .await
        .unwrap();
    for n in 1..=2 {
        store
            .create_model_version(
                ws,
                CreateModelVersion {
                    name: name.into(),
                    source: format!("s3://bucket/{n}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    store
        .set_registered_model_alias(ws, name, "prod", "1")
        .await
        .unwrap();
    store
        .set_registered_model_alias(ws, name, "champion", "2")
        .await
        .unwrap();
}

fn ids(items: &[DeletedItem]) -> Vec<(DeletedKind, String)> {
    items.iter().map(|item| (item.kind, item.id.clone())).collect()
}

async fn registry_soft_delete_recover_and_purge(backend: Backend) {
    let Some((harness, _clock)) = open(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    model_with_versions(store, &ws, "clf").await;

    // A deleted version is absent, and so is the alias pointing to it.
    store.delete_model_version(&ws, "clf", "2").await.unwrap();
    assert_eq!(
        kind(store.get_model_version(&ws, "clf", "2").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(
            store
                .get_model_version_by_alias(&ws, "clf", "champion")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );
    let model = store.get_registered_model(&ws, "clf").await.unwrap();
    assert_eq!(model.aliases.len(), 1, "{model:?}");
    let deleted = store.list_deleted(&ws).await.unwrap();
    assert_eq!(
        ids(&deleted),
        vec![(DeletedKind::ModelVersion, "clf/2".to_string())]
    );
    assert_eq!(deleted[0].deletion_time, NOW);
    assert_eq!(deleted[0].purge_after, NOW + 14 * DAY_MILLIS);
    store
        .recover_deleted(&ws, DeletedKind::ModelVersion, "clf/2")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_model_version_by_alias(&ws, "clf", "champion")
            .await
            .unwrap()
            .version,
        "2",
        "the alias comes back with the version"
    );

    // An alias reassigned while its version was deleted stays reassigned.
    store.delete_model_version(&ws, "clf", "1").await.unwrap();
    store
        .set_registered_model_alias(&ws, "clf", "prod", "2")
        .await
        .unwrap();
    assert_eq!(
        kind(
            store
                .set_registered_model_alias(&ws, "clf", "x", "1")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist,
        "no alias may point to a deleted version"
    );
    store
        .recover_deleted(&ws, DeletedKind::ModelVersion, "clf/1")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_model_version_by_alias(&ws, "clf", "prod")
            .await
            .unwrap()
            .version,
        "2"
    );
    assert!(store
        .get_model_version(&ws, "clf", "1")
        .await
        .unwrap()
        .aliases
        .is_empty());

    // A deleted model is absent everywhere MLflow looks, its versions too.
    store.delete_registered_model(&ws, "clf").await.unwrap();
    assert_eq!(
        kind(store.get_registered_model(&ws, "clf").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(store.get_latest_versions(&ws, "clf", &[]).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(store.get_model_version(&ws, "clf", "1").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    let search = SearchQuery {
        max_results: 100,
        ..Default::default()
    };
    assert!(store
        .search_registered_models(&ws, search.clone())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .search_model_versions(&ws, search.clone())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        kind(store.delete_registered_model(&ws, "clf").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    // Its name is free at once, as in MLflow (tests/registry_names.rs
    // covers re-creating it).
    // Only the model is listed, by the key it is kept under: its versions
    // come back with it.
    let deleted = store.list_deleted(&ws).await.unwrap();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].kind, DeletedKind::RegisteredModel);
    assert_eq!(deleted[0].name, "clf");
    assert!(deleted[0].id.starts_with("clf:"), "{deleted:?}");
    store
        .recover_deleted(&ws, DeletedKind::RegisteredModel, "clf")
        .await
        .unwrap();
    let model = store.get_registered_model(&ws, "clf").await.unwrap();
    assert_eq!(model.aliases.len(), 2, "{model:?}");
    assert_eq!(
        store
            .search_model_versions(&ws, search.clone())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        kind(
            store
                .recover_deleted(&ws, DeletedKind::RegisteredModel, "clf")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist,
        "an active model is not in the deleted list"
    );

    // Purge: gone for good, versions with it; the name is free again.
    store.delete_registered_model(&ws, "clf").await.unwrap();
    assert_eq!(
        kind(
            store
                .purge_deleted(&ws, DeletedKind::RegisteredModel, "nope", false)
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );
    store
        .purge_deleted(&ws, DeletedKind::RegisteredModel, "clf", false)
        .await
        .unwrap();
    assert!(store.list_deleted(&ws).await.unwrap().is_empty());
    store
        .create_registered_model(&ws, "clf", "", vec![], "")
        .await
        .unwrap();
    assert!(store
        .get_latest_versions(&ws, "clf", &[])
        .await
        .unwrap()
        .is_empty());
    // A version purged alone.
    store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "clf".into(),
                source: "s3://b/1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.delete_model_version(&ws, "clf", "1").await.unwrap();
    store
        .purge_deleted(&ws, DeletedKind::ModelVersion, "clf/1", true)
        .await
        .unwrap();
    assert!(store.list_deleted(&ws).await.unwrap().is_empty());
    assert_eq!(
        kind(
            store
                .recover_deleted(&ws, DeletedKind::ModelVersion, "clf/1")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );
    harness.finish().await;
}

async fn tracking_items_delete_recover_and_purge(backend: Backend) {
    let Some((harness, _clock)) = open(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let experiment = store.create_experiment(&ws, "e", None, vec![]).await.unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: experiment.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .info;
    let kept = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: experiment.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .info;
    let run_root = proxied_artifact_path(&run.artifact_uri).unwrap();
    store
        .record_artifact(&ws, &format!("{run_root}/model.pkl"), 3, "abc")
        .await
        .unwrap();
    let logged = store
        .create_logged_model(
            &ws,
            CreateLoggedModel {
                experiment_id: experiment.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .info;

    // Run: delete, list, recover, delete, purge with its artifacts.
    store.delete_run(&ws, &run.run_id).await.unwrap();
    assert_eq!(
        ids(&store.list_deleted(&ws).await.unwrap()),
        vec![(DeletedKind::Run, run.run_id.clone())]
    );
    store
        .recover_deleted(&ws, DeletedKind::Run, &run.run_id)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_run(&ws, &run.run_id)
            .await
            .unwrap()
            .info
            .lifecycle_stage,
        LifecycleStage::Active
    );
    assert_eq!(
        kind(
            store
                .purge_deleted(&ws, DeletedKind::Run, &run.run_id, false)
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist,
        "an active run cannot be purged"
    );
    store.delete_run(&ws, &run.run_id).await.unwrap();
    store
        .purge_deleted(&ws, DeletedKind::Run, &run.run_id, false)
        .await
        .unwrap();
    assert_eq!(
        kind(store.get_run(&ws, &run.run_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert!(store
        .list_artifact_entries(&ws, &run_root)
        .await
        .unwrap()
        .is_empty());
    let queued: Vec<String> = store
        .gc_pending()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.prefix)
        .collect();
    assert_eq!(
        queued,
        vec![format!("workspaces/{}/artifacts/{run_root}/", ws.workspace_id)]
    );
    // An upload that passed the owner check before the purge cannot be
    // journaled after it.
    assert_eq!(
        kind(
            store
                .record_artifact(&ws, &format!("{run_root}/late.bin"), 1, "x")
                .await
                .unwrap_err()
        ),
        ErrorKind::PermissionDenied
    );

    // Logged model: delete, recover, delete, purge keeping artifacts.
    store.delete_logged_model(&ws, &logged.model_id).await.unwrap();
    assert_eq!(
        ids(&store.list_deleted(&ws).await.unwrap()),
        vec![(DeletedKind::LoggedModel, logged.model_id.clone())]
    );
    store
        .recover_deleted(&ws, DeletedKind::LoggedModel, &logged.model_id)
        .await
        .unwrap();
    store.get_logged_model(&ws, &logged.model_id).await.unwrap();
    store.delete_logged_model(&ws, &logged.model_id).await.unwrap();
    store
        .purge_deleted(&ws, DeletedKind::LoggedModel, &logged.model_id, true)
        .await
        .unwrap();
    assert_eq!(
        kind(store.get_logged_model(&ws, &logged.model_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        store.gc_pending().await.unwrap().len(),
        1,
        "kept artifacts are not collected"
    );

    // Experiment: its runs go and come back with it; purging it purges them.
    store.delete_experiment(&ws, &experiment).await.unwrap();
    assert_eq!(
        ids(&store.list_deleted(&ws).await.unwrap()),
        vec![(DeletedKind::Experiment, experiment.clone())]
    );
    store
        .recover_deleted(&ws, DeletedKind::Experiment, &experiment)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_run(&ws, &kept.run_id)
            .await
            .unwrap()
            .info
            .lifecycle_stage,
        LifecycleStage::Active
    );
    store.delete_experiment(&ws, &experiment).await.unwrap();
    store
        .purge_deleted(&ws, DeletedKind::Experiment, &experiment, false)
        .await
        .unwrap();
    assert_eq!(
        kind(store.get_experiment(&ws, &experiment).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        kind(store.get_run(&ws, &kept.run_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(store.gc_pending().await.unwrap().len(), 2);
    // The experiment's name is free again.
    store.create_experiment(&ws, "e", None, vec![]).await.unwrap();
    // The default experiment is never purged.
    store.delete_experiment(&ws, "0").await.unwrap_err();
    assert_eq!(
        kind(
            store
                .purge_deleted(&ws, DeletedKind::Experiment, "0", false)
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    harness.finish().await;
}

async fn workspace_retention_reservation_and_protection(backend: Backend) {
    let Some((harness, clock)) = open(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    for days in [0, 91, -3] {
        let settings = WorkspaceSettings {
            retention_days: Some(days),
            ..Default::default()
        };
        assert_eq!(
            kind(
                store
                    .create_workspace_with("bad", "", settings)
                    .await
                    .unwrap_err()
            ),
            ErrorKind::InvalidParameterValue,
            "{days}"
        );
    }
    assert_eq!(
        kind(store.find_workspace("bad").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist,
        "a refused creation changes nothing"
    );
    let created = store
        .create_workspace_with(
            "team",
            "",
            WorkspaceSettings {
                retention_days: Some(30),
                purge_protection: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((created.retention_days, created.purge_protection), (30, false));
    let plain = store.create_workspace("plain", "").await.unwrap();
    assert_eq!(plain.retention_days, DEFAULT_RETENTION_DAYS);

    let update = |days: Option<i64>, protection: Option<bool>| WorkspaceUpdate {
        description: None,
        retention_days: days,
        purge_protection: protection,
        storage_quota: None,
    };
    assert_eq!(
        kind(
            store
                .update_workspace("team", update(Some(100), None))
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    let updated = store
        .update_workspace("team", update(Some(7), Some(true)))
        .await
        .unwrap();
    assert_eq!((updated.retention_days, updated.purge_protection), (7, true));
    assert_eq!(
        kind(
            store
                .update_workspace("team", update(None, Some(false)))
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidState,
        "purge protection cannot be turned off"
    );

    // Deleted: absent to every scoped call, with a message saying how to
    // recover it; the name stays reserved.
    let ws = store.resolve_workspace("team").await.unwrap();
    store
        .create_registered_model(&ws, "m", "", vec![], "")
        .await
        .unwrap();
    store.delete_registered_model(&ws, "m").await.unwrap();
    let deleted = store.delete_workspace("team").await.unwrap();
    assert_eq!(deleted.deletion_time, Some(NOW));
    assert_eq!(deleted.purge_after, Some(NOW + 7 * DAY_MILLIS));
    let error = store.resolve_workspace("team").await.unwrap_err();
    assert_eq!(kind_of(&error), ErrorKind::ResourceDoesNotExist);
    assert!(
        error.to_string().contains("was deleted") && error.to_string().contains("recover"),
        "{error}"
    );
    let error = store.create_workspace("team", "").await.unwrap_err();
    assert_eq!(kind_of(&error), ErrorKind::ResourceAlreadyExists);
    assert!(error.to_string().contains(&deleted.workspace_id), "{error}");
    assert_eq!(
        kind(
            store
                .update_workspace("team", update(Some(9), None))
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidState
    );
    let listed = store.list_workspaces(ViewType::DeletedOnly).await.unwrap();
    assert_eq!(
        listed.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        vec!["team"]
    );
    assert!(!store
        .list_workspaces(ViewType::ActiveOnly)
        .await
        .unwrap()
        .iter()
        .any(|w| w.name == "team"));

    // Purge protection: refused, naming the date, until retention ends.
    let error = store.purge_workspace("team", false).await.unwrap_err();
    assert_eq!(kind_of(&error), ErrorKind::InvalidState);
    assert!(
        error.to_string().contains(&format_utc(NOW + 7 * DAY_MILLIS)),
        "{error}"
    );
    // Recover by id; the deleted model inside stays deleted and protected.
    store.recover_workspace(&deleted.workspace_id).await.unwrap();
    let ws = store.resolve_workspace("team").await.unwrap();
    let error = store
        .purge_deleted(&ws, DeletedKind::RegisteredModel, "m", false)
        .await
        .unwrap_err();
    assert_eq!(kind_of(&error), ErrorKind::InvalidState, "{error}");
    clock.advance_days(8);
    store
        .purge_deleted(&ws, DeletedKind::RegisteredModel, "m", false)
        .await
        .unwrap();
    store.delete_workspace("team").await.unwrap();
    assert_eq!(
        kind(store.purge_workspace("team", false).await.unwrap_err()),
        ErrorKind::InvalidState,
        "retention counts from the workspace's own deletion"
    );
    clock.advance_days(7);
    store.purge_workspace("team", true).await.unwrap();
    assert_eq!(
        kind(store.find_workspace(&deleted.workspace_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert!(store.gc_pending().await.unwrap().is_empty(), "artifacts kept");
    store.create_workspace("team", "").await.unwrap();

    // Without protection a deleted workspace is purged at once on request,
    // and an active one is refused.
    assert_eq!(
        kind(store.purge_workspace("plain", false).await.unwrap_err()),
        ErrorKind::InvalidState
    );
    store.delete_workspace("plain").await.unwrap();
    store.purge_workspace("plain", false).await.unwrap();
    assert_eq!(
        store.gc_pending().await.unwrap()[0].prefix,
        format!("workspaces/{}/artifacts/", plain.workspace_id)
    );
    harness.finish().await;
}

fn kind_of(error: &StoreError) -> ErrorKind {
    error.kind()
}

/// Refuses every local write, as a secondary does.
struct Secondary;

impl RegionPolicy for Secondary {
    fn check_write(&self, _class: Option<AssetClass>) -> Result<(), tandem_core::Error> {
        Err(tandem_core::Error::new(ErrorKind::NotPrimary, "secondary"))
    }
}

async fn automatic_purge_after_retention(backend: Backend) {
    let Some((harness, clock)) = open(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    model_with_versions(store, &ws, "clf").await;
    store.delete_model_version(&ws, "clf", "1").await.unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: "0".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .info;
    store.delete_run(&ws, &run.run_id).await.unwrap();
    let doomed = store.create_workspace("doomed", "").await.unwrap();
    store.delete_workspace("doomed").await.unwrap();
    let protected = store
        .create_workspace_with(
            "guarded",
            "",
            WorkspaceSettings {
                retention_days: Some(30),
                purge_protection: Some(true),
            },
        )
        .await
        .unwrap();
    store.delete_workspace("guarded").await.unwrap();

    assert_eq!(store.purge_expired().await.unwrap(), PurgeReport::default());
    clock.advance_days(13);
    assert_eq!(store.purge_expired().await.unwrap(), PurgeReport::default());
    clock.advance_days(2);
    // A region that does not take local writes leaves purging to the primary.
    store.set_policy(Arc::new(Secondary));
    assert_eq!(store.purge_expired().await.unwrap(), PurgeReport::default());
    assert_eq!(store.list_deleted(&ws).await.unwrap().len(), 2);
    store.set_policy(Arc::new(Standalone));

    let report = store.purge_expired().await.unwrap();
    assert_eq!(
        report,
        PurgeReport {
            workspaces: 1,
            items: 2
        }
    );
    assert!(store.list_deleted(&ws).await.unwrap().is_empty());
    assert_eq!(
        kind(store.get_run(&ws, &run.run_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert_eq!(
        store
            .get_model_version_by_alias(&ws, "clf", "champion")
            .await
            .unwrap()
            .version,
        "2",
        "the live version is untouched"
    );
    assert_eq!(
        kind(store.find_workspace(&doomed.workspace_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    // Retention of 30 days: still there.
    store.find_workspace(&protected.workspace_id).await.unwrap();
    let queued: Vec<String> = store
        .gc_pending()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.prefix)
        .collect();
    assert!(
        queued.contains(&format!("workspaces/{}/artifacts/", doomed.workspace_id)),
        "{queued:?}"
    );
    clock.advance_days(16);
    assert_eq!(store.purge_expired().await.unwrap().workspaces, 1);
    assert_eq!(
        kind(store.find_workspace(&protected.workspace_id).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    harness.finish().await;
}

async fn gc_queue_retries_and_drains(backend: Backend) {
    let Some((harness, clock)) = open(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    for name in ["a", "b"] {
        store.create_workspace(name, "").await.unwrap();
        store.delete_workspace(name).await.unwrap();
        store.purge_workspace(name, false).await.unwrap();
    }
    let due = store.gc_due(10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(store.gc_due(1).await.unwrap().len(), 1, "the limit holds");
    store
        .gc_failed(&due[0].prefix, "storage down", 60_000)
        .await
        .unwrap();
    let due_now = store.gc_due(10).await.unwrap();
    assert_eq!(due_now.len(), 1, "a failed entry waits for its retry");
    assert_eq!(store.gc_pending().await.unwrap().len(), 2);
    clock.0.fetch_add(60_000, Ordering::SeqCst);
    let retried = store.gc_due(10).await.unwrap();
    assert_eq!(retried.len(), 2);
    assert_eq!(
        retried
            .iter()
            .find(|e| e.prefix == due[0].prefix)
            .unwrap()
            .attempts,
        1
    );
    for entry in retried {
        store.gc_done(&entry.prefix).await.unwrap();
        // Idempotent: done twice is fine.
        store.gc_done(&entry.prefix).await.unwrap();
    }
    assert!(store.gc_pending().await.unwrap().is_empty());
    harness.finish().await;
}

async fn replay_rebuilds_state_with_deleted_and_purged_items(backend: Backend) {
    let Some((harness, clock)) = open(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    model_with_versions(store, &ws, "kept").await;
    model_with_versions(store, &ws, "purged").await;
    model_with_versions(store, &ws, "deleted").await;
    store.delete_model_version(&ws, "kept", "2").await.unwrap();
    store.delete_registered_model(&ws, "deleted").await.unwrap();
    store.delete_registered_model(&ws, "purged").await.unwrap();
    store
        .purge_deleted(&ws, DeletedKind::RegisteredModel, "purged", false)
        .await
        .unwrap();
    let experiment = store.create_experiment(&ws, "x", None, vec![]).await.unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: experiment.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .info;
    store
        .log_batch(
            &ws,
            &run.run_id,
            vec![],
            vec![Param {
                key: "p".into(),
                value: "1".into(),
            }],
            vec![],
        )
        .await
        .unwrap();
    store.delete_experiment(&ws, &experiment).await.unwrap();
    store
        .purge_deleted(&ws, DeletedKind::Experiment, &experiment, false)
        .await
        .unwrap();
    let other = store
        .create_workspace_with(
            "other",
            "",
            WorkspaceSettings {
                retention_days: Some(3),
                purge_protection: Some(true),
            },
        )
        .await
        .unwrap();
    let other_ws = store.resolve_workspace(&other.name).await.unwrap();
    store
        .create_experiment(&other_ws, "there", None, vec![])
        .await
        .unwrap();
    store.delete_workspace("other").await.unwrap();
    store.create_workspace("gone", "").await.unwrap();
    store.delete_workspace("gone").await.unwrap();
    clock.advance_days(1);
    store.purge_workspace("gone", false).await.unwrap();

    let live = store.dump_state().await.unwrap();
    let records = store.journal_after(0, None, i64::MAX / 2).await.unwrap();
    for target_backend in [backend, Backend::Sqlite] {
        let Some(target) = support::Harness::empty(target_backend, "test-replica").await else {
            continue;
        };
        for record in &records {
            target.store.apply_record(record).await.unwrap();
        }
        assert_eq!(
            target.store.dump_state().await.unwrap(),
            live,
            "replay into {target_backend:?}"
        );
        // The replica queues its own collection of what the purges removed.
        assert_eq!(
            target.store.gc_pending().await.unwrap().len(),
            store.gc_pending().await.unwrap().len()
        );
        target.finish().await;
    }
    harness.finish().await;
}

/// A region of a deployment where every class is hot-hot.
struct HotHot(u64);

impl RegionPolicy for HotHot {
    fn check_write(&self, _class: Option<AssetClass>) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    fn multi_writer(&self, _class: AssetClass) -> bool {
        true
    }
    fn id_stripe(&self) -> Option<tandem_core::merge::IdStripe> {
        Some(tandem_core::merge::IdStripe {
            slot: self.0,
            stride: 2,
        })
    }
}

async fn deliver(from: &dyn MetadataStore, to: &dyn MetadataStore) {
    let source = from.journal_position().await.unwrap().region;
    let position = to.replication_position(&source).await.unwrap();
    for record in from.journal_after(position, None, i64::MAX / 2).await.unwrap() {
        to.apply_replicated(&source, &record, true).await.unwrap();
    }
}

async fn hot_hot_purges_converge_with_concurrent_writes(backend: Backend) {
    let Some((a_harness, _clock)) = open(backend).await else {
        return;
    };
    let Some(b_harness) = support::Harness::empty(backend, "region-b").await else {
        return;
    };
    let (a, b) = (a_harness.store.clone(), b_harness.store.clone());
    a.set_policy(Arc::new(HotHot(0)));
    b.set_policy(Arc::new(HotHot(1)));
    let ws = a.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let run = a
        .create_run(
            &ws,
            CreateRun {
                experiment_id: "0".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .info
        .run_id;
    a.create_registered_model(&ws, "clf", "", vec![], "")
        .await
        .unwrap();
    a.delete_run(&ws, &run).await.unwrap();
    deliver(a.as_ref(), b.as_ref()).await;

    // Concurrently: a purges the run and the model; b recovers the run and
    // writes to it (tags, params, metrics), and writes to the model.
    a.purge_deleted(&ws, DeletedKind::Run, &run, false).await.unwrap();
    a.delete_registered_model(&ws, "clf").await.unwrap();
    a.purge_deleted(&ws, DeletedKind::RegisteredModel, "clf", false)
        .await
        .unwrap();
    b.recover_deleted(&ws, DeletedKind::Run, &run).await.unwrap();
    let metric = Metric {
        key: "loss".into(),
        value: 0.5,
        timestamp: 1,
        step: 0,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    };
    b.log_batch(
        &ws,
        &run,
        vec![metric],
        vec![Param {
            key: "p".into(),
            value: "1".into(),
        }],
        vec![Tag::new("t", "v")],
    )
    .await
    .unwrap();
    b.set_registered_model_tag(&ws, "clf", Tag::new("late", "1"))
        .await
        .unwrap();

    deliver(a.as_ref(), b.as_ref()).await;
    deliver(b.as_ref(), a.as_ref()).await;
    assert_eq!(a.dump_state().await.unwrap(), b.dump_state().await.unwrap());
    for store in [&a, &b] {
        assert_eq!(
            kind(store.get_run(&ws, &run).await.unwrap_err()),
            ErrorKind::ResourceDoesNotExist,
            "the purge wins"
        );
        assert_eq!(
            kind(store.get_registered_model(&ws, "clf").await.unwrap_err()),
            ErrorKind::ResourceDoesNotExist
        );
    }
    let registers = |conflicts: Vec<tandem_core::merge::Conflict>| {
        let mut keys: Vec<String> = conflicts.into_iter().map(|c| c.register).collect();
        keys.sort();
        keys
    };
    let conflicts_a = registers(a.list_conflicts(None, 100).await.unwrap());
    assert_eq!(conflicts_a, registers(b.list_conflicts(None, 100).await.unwrap()));
    assert!(
        conflicts_a.contains(&format!("run/{run}/tag/t")),
        "{conflicts_a:?}"
    );
    b_harness.finish().await;
    a_harness.finish().await;
}
