//! Registered models, versions, aliases, stages and tags.

use super::*;

pub async fn registry(harness: &support::Harness) {
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
