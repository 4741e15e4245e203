//! Conformance scenarios of registered model names after deletion, run
//! against SQLite and PostgreSQL like `conformance.rs`: as in MLflow, a
//! deleted registered model frees its name at once, and stays recoverable
//! (by the key it is kept under) for the workspace's retention; recovering
//! it when its name was taken again needs a new name. A model deleted in
//! place (journal format <= 6, or while the registry is hot-hot) is set
//! aside when its name is taken. The journal replay rebuilds all of it.

#[allow(dead_code)]
#[macro_use]
mod support;

use std::sync::Arc;

use support::Backend;
use tandem_core::journal::AssetClass;
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::retention::*;
use tandem_store::*;

scenarios!(
    a_deleted_model_frees_its_name_and_recovers_under_a_new_one,
    a_model_deleted_in_place_is_set_aside_when_its_name_is_taken,
);

async fn model(store: &dyn MetadataStore, ws: &WorkspaceRef, name: &str, description: &str, versions: i64) {
    store
        .create_registered_model(ws, name, description, vec![Tag::new("team", description)], "")
        .await
        .unwrap();
    for n in 1..=versions {
        store
            .create_model_version(
                ws,
                CreateModelVersion {
                    name: name.into(),
                    source: format!("s3://bucket/{description}/{n}"),
                    tags: vec![Tag::new("n", n.to_string())],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
}

fn all() -> SearchQuery {
    SearchQuery {
        max_results: 100,
        ..Default::default()
    }
}

fn named(name: &str) -> SearchQuery {
    SearchQuery {
        filter: format!("name = '{name}'"),
        max_results: 100,
        ..Default::default()
    }
}

fn deleted_models(items: &[DeletedItem]) -> Vec<&DeletedItem> {
    items
        .iter()
        .filter(|item| item.kind == DeletedKind::RegisteredModel)
        .collect()
}

/// Replays the whole journal into empty stores (same backend and SQLite)
/// and compares the dumps with the live state.
async fn assert_replay_rebuilds(store: &dyn MetadataStore, backend: Backend) {
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
        target.finish().await;
    }
}

async fn a_deleted_model_frees_its_name_and_recovers_under_a_new_one(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    model(store, &ws, "clf", "old", 2).await;
    store
        .set_registered_model_alias(&ws, "clf", "prod", "2")
        .await
        .unwrap();
    store.delete_model_version(&ws, "clf", "1").await.unwrap();
    store.delete_registered_model(&ws, "clf").await.unwrap();

    // The name is free at once: the new model is the only one seen by it.
    model(store, &ws, "clf", "new", 1).await;
    let fresh = store.get_registered_model(&ws, "clf").await.unwrap();
    assert_eq!(fresh.description, "new");
    assert!(fresh.aliases.is_empty(), "{fresh:?}");
    let models = store.search_registered_models(&ws, all()).await.unwrap().items;
    assert_eq!(models.len(), 1, "{models:?}");
    assert_eq!(models[0].description, "new");
    let versions = store
        .search_model_versions(&ws, named("clf"))
        .await
        .unwrap()
        .items;
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0].source, "s3://bucket/new/1");
    assert_eq!(store.get_latest_versions(&ws, "clf", &[]).await.unwrap().len(), 1);
    assert_eq!(
        kind(store.get_model_version(&ws, "clf", "2").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist,
        "the old model's versions are not the new one's"
    );
    assert_eq!(
        kind(
            store
                .get_model_version_by_alias(&ws, "clf", "prod")
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );

    // The deleted model is still listed, under its own key, with its name.
    let items = store.list_deleted(&ws).await.unwrap();
    let deleted = deleted_models(&items);
    assert_eq!(deleted.len(), 1, "{items:?}");
    assert_eq!(deleted[0].name, "clf");
    let id = deleted[0].id.clone();
    assert!(id.starts_with("clf:") && id.len() > 4, "{id}");
    assert!(
        !items.iter().any(|item| item.kind == DeletedKind::ModelVersion),
        "a deleted model's versions go and come back with it: {items:?}"
    );

    // Its name is taken: recovery under it is refused, by id or by name.
    for by in [id.as_str(), "clf"] {
        let refused = store
            .recover_deleted(&ws, DeletedKind::RegisteredModel, by)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ResourceAlreadyExists);
        let text = refused.to_string();
        assert!(text.contains("new name") && text.contains("--as"), "{text}");
    }
    // A new name that is taken, or invalid, is refused too.
    assert_eq!(
        kind(
            store
                .recover_deleted_as(&ws, DeletedKind::RegisteredModel, &id, Some("clf"))
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceAlreadyExists
    );
    assert_eq!(
        kind(
            store
                .recover_deleted_as(&ws, DeletedKind::RegisteredModel, &id, Some("a/b"))
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(
        kind(
            store
                .recover_deleted_as(&ws, DeletedKind::ModelVersion, "clf/1", Some("x"))
                .await
                .unwrap_err()
        ),
        ErrorKind::ResourceDoesNotExist
    );

    // Recovered under a new name: versions, tags and aliases follow it; the
    // version deleted before the model stays deleted, listed under the new name.
    store
        .recover_deleted_as(&ws, DeletedKind::RegisteredModel, &id, Some("clf-old"))
        .await
        .unwrap();
    let old = store.get_registered_model(&ws, "clf-old").await.unwrap();
    assert_eq!(old.description, "old");
    assert_eq!(old.tags, vec![Tag::new("team", "old")]);
    assert_eq!(old.aliases.len(), 1, "{old:?}");
    let by_alias = store
        .get_model_version_by_alias(&ws, "clf-old", "prod")
        .await
        .unwrap();
    assert_eq!(
        (by_alias.name.as_str(), by_alias.version.as_str()),
        ("clf-old", "2")
    );
    assert_eq!(by_alias.tags, vec![Tag::new("n", "2")]);
    let old_versions = store
        .search_model_versions(&ws, named("clf-old"))
        .await
        .unwrap()
        .items;
    assert_eq!(old_versions.len(), 1, "{old_versions:?}");
    let items = store.list_deleted(&ws).await.unwrap();
    assert_eq!(
        items
            .iter()
            .map(|item| (item.kind, item.id.as_str()))
            .collect::<Vec<_>>(),
        vec![(DeletedKind::ModelVersion, "clf-old/1")]
    );
    store
        .recover_deleted(&ws, DeletedKind::ModelVersion, "clf-old/1")
        .await
        .unwrap();
    // The next version number continues the old model's.
    let next = store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "clf-old".into(),
                source: "s3://bucket/old/3".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next.version, "3");
    // The new model is untouched.
    assert_eq!(
        store.get_registered_model(&ws, "clf").await.unwrap().description,
        "new"
    );

    // Two deleted models of one name: the name is ambiguous, ids are not.
    store.delete_registered_model(&ws, "clf").await.unwrap();
    model(store, &ws, "clf", "third", 0).await;
    store.delete_registered_model(&ws, "clf").await.unwrap();
    let items = store.list_deleted(&ws).await.unwrap();
    let deleted = deleted_models(&items);
    assert_eq!(deleted.len(), 2, "{items:?}");
    assert_ne!(deleted[0].id, deleted[1].id);
    assert!(deleted.iter().all(|item| item.name == "clf"));
    let ambiguous = store
        .recover_deleted(&ws, DeletedKind::RegisteredModel, "clf")
        .await
        .unwrap_err();
    assert_eq!(ambiguous.kind(), ErrorKind::InvalidParameterValue);
    assert!(ambiguous.to_string().contains(&deleted[0].id), "{ambiguous}");
    // The name is free: the first one comes back under it.
    let (first, second) = (deleted[0].id.clone(), deleted[1].id.clone());
    store
        .recover_deleted(&ws, DeletedKind::RegisteredModel, &first)
        .await
        .unwrap();
    assert_eq!(
        store.get_registered_model(&ws, "clf").await.unwrap().description,
        "new"
    );
    // The other is purged by its id; nothing of it remains.
    store
        .purge_deleted(&ws, DeletedKind::RegisteredModel, &second, false)
        .await
        .unwrap();
    assert!(store.list_deleted(&ws).await.unwrap().is_empty());
    assert_eq!(
        store
            .search_registered_models(&ws, all())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    assert_replay_rebuilds(store, backend).await;
    harness.finish().await;
}

/// A region where the registry is hot-hot: deletions keep the name.
struct HotHotRegistry;

impl RegionPolicy for HotHotRegistry {
    fn check_write(&self, _class: Option<AssetClass>) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    fn multi_writer(&self, class: AssetClass) -> bool {
        class == AssetClass::Registry
    }
    fn id_stripe(&self) -> Option<tandem_core::merge::IdStripe> {
        None
    }
}

async fn a_model_deleted_in_place_is_set_aside_when_its_name_is_taken(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    model(store, &ws, "clf", "old", 1).await;
    model(store, &ws, "reg", "old", 1).await;

    // While the registry is hot-hot a deleted model keeps its name, as
    // journal format 6 deleted it.
    store.set_policy(Arc::new(HotHotRegistry));
    store.delete_registered_model(&ws, "clf").await.unwrap();
    store.delete_registered_model(&ws, "reg").await.unwrap();
    let items = store.list_deleted(&ws).await.unwrap();
    let mut ids: Vec<&str> = items.iter().map(|item| item.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["clf", "reg"]);
    let refused = store
        .create_registered_model(&ws, "clf", "", vec![], "")
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ResourceAlreadyExists);
    assert!(refused.to_string().contains("hot-hot"), "{refused}");
    let deleted_at = items[0].deletion_time;

    // Back to one writer: taking the name sets the deleted model aside,
    // keeping its deletion time (so its retention).
    store.set_policy(Arc::new(Standalone));
    model(store, &ws, "clf", "new", 1).await;
    assert_eq!(
        store.get_registered_model(&ws, "clf").await.unwrap().description,
        "new"
    );
    let items = store.list_deleted(&ws).await.unwrap();
    let aside = items.iter().find(|item| item.name == "clf").unwrap();
    assert!(aside.id.starts_with("clf:"), "{items:?}");
    assert_eq!(aside.deletion_time, deleted_at);
    // Renaming onto a name held in place sets that one aside too.
    store.rename_registered_model(&ws, "clf", "reg").await.unwrap();
    let items = store.list_deleted(&ws).await.unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|item| item.id.contains(':')), "{items:?}");
    // Recovered in place by its name, when it is free.
    store.delete_registered_model(&ws, "reg").await.unwrap();
    let reg = store
        .list_deleted(&ws)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| item.name == "reg")
        .collect::<Vec<_>>();
    assert_eq!(reg.len(), 2, "{reg:?}");
    store
        .recover_deleted_as(&ws, DeletedKind::RegisteredModel, &reg[0].id, Some("reg-a"))
        .await
        .unwrap();
    store
        .recover_deleted(&ws, DeletedKind::RegisteredModel, "reg")
        .await
        .unwrap();
    store
        .recover_deleted(&ws, DeletedKind::RegisteredModel, "clf")
        .await
        .unwrap();
    let mut names: Vec<String> = store
        .search_registered_models(&ws, all())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|model| model.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["clf", "reg", "reg-a"]);
    assert!(store.list_deleted(&ws).await.unwrap().is_empty());

    assert_replay_rebuilds(store, backend).await;
    harness.finish().await;
}

fn kind(error: StoreError) -> ErrorKind {
    error.kind()
}
