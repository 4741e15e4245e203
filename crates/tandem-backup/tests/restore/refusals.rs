//! What a restore refuses (corrupt blobs and segments, missing pieces,
//! other bytes in the way, a name or id not free) with nothing written.

use super::*;

#[tokio::test]
async fn a_corrupt_blob_is_refused_and_nothing_is_written() {
    let (source, _dir, repo_url, repo, _, target) = setup().await;
    // Same size, other bytes: found only while copying, after the object
    // was written at the target, which must be removed again.
    let blob = key(&format::blob_key(&sha256(&source.contents[1])));
    repo.put_bytes(&blob, Bytes::from_static(b"second, bitter model"))
        .await
        .unwrap();
    let error = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Seq(source.second.0)),
        &quiet,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), tandem_core::ErrorKind::InvalidState, "{error:?}");
    assert!(error.to_string().contains("corrupt"), "{error}");
    assert!(
        error.to_string().contains(blob.as_str()),
        "names the object: {error}"
    );
    untouched(&target).await;
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn a_corrupt_segment_is_refused_and_nothing_is_written() {
    let (source, _dir, repo_url, repo, _, target) = setup().await;
    let (data, _) = format::segment_keys("eastus", source.first.0 + 1, source.first.0 + 3);
    let mut listing = repo.list_recursive(Some(&key("journal/eastus"))).await.unwrap();
    listing.retain(|entry| entry.path.ends_with(".ndjson") && entry.path >= data);
    let segment = key(&listing[0].path);
    let mut bytes = read(&repo, &segment).await;
    let flip = bytes.iter().position(|byte| *byte == b'0').unwrap();
    bytes[flip] = b'1';
    repo.put_bytes(&segment, Bytes::from(bytes)).await.unwrap();
    let error = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Seq(source.second.0)),
        &quiet,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), tandem_core::ErrorKind::InvalidState, "{error:?}");
    assert!(error.to_string().contains("corrupt"), "{error}");
    assert!(
        error.to_string().contains(segment.as_str()),
        "names the segment: {error}"
    );
    untouched(&target).await;
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn a_missing_segment_or_a_short_archive_is_refused() {
    let (source, _dir, repo_url, repo, _, target) = setup().await;
    let mut listing = repo.list_recursive(Some(&key("journal/eastus"))).await.unwrap();
    listing.retain(|entry| !entry.is_dir);
    // Beyond the archive's end.
    let error = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Seq(source.second.0 + 10)),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("the archive of eastus ends at seq {}", source.second.0)),
        "{error}"
    );
    // A gap: the last segment but one (data and description) removed.
    let last_but_one = &listing[listing.len() - 4];
    let stem = last_but_one
        .path
        .trim_end_matches(".json")
        .trim_end_matches(".ndjson")
        .to_string();
    repo.delete(&key(&format!("{stem}.json"))).await.unwrap();
    repo.delete(&key(&format!("{stem}.ndjson"))).await.unwrap();
    let error = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Seq(source.second.0)),
        &quiet,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), tandem_core::ErrorKind::InvalidState, "{error:?}");
    assert!(error.to_string().contains("has a gap"), "{error}");
    untouched(&target).await;
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn existing_objects_with_other_bytes_are_kept_unless_overwrite() {
    let (source, _dir, repo_url, _repo, backups, target) = setup().await;
    let stored = workspace_artifact_key(&source.ws.workspace_id, Some(&key(&source.artifact))).unwrap();
    target
        .storage
        .put_bytes(&stored, Bytes::from_static(b"somebody else's"))
        .await
        .unwrap();
    let mut asked = request(&repo_url, RestorePoint::Backup(backups[0].clone()));
    let error = restore(target.store.as_ref(), &target.storage, &asked, &quiet)
        .await
        .unwrap_err();
    assert_eq!(error.kind().mlflow_code(), "RESOURCE_ALREADY_EXISTS", "{error}");
    assert!(
        error.to_string().contains(&source.artifact),
        "lists the paths: {error}"
    );
    assert_eq!(read(&target.storage, &stored).await, b"somebody else's");
    assert!(target
        .store
        .list_workspaces(tandem_core::model::ViewType::All)
        .await
        .unwrap()
        .is_empty());
    asked.overwrite = true;
    restore(target.store.as_ref(), &target.storage, &asked, &quiet)
        .await
        .unwrap();
    assert_eq!(read(&target.storage, &stored).await, b"first model");
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn in_place_needs_the_id_and_name_free_and_a_copy_goes_beside_the_original() {
    let (source, _dir, repo_url, _repo, backups, target) = setup().await;
    let store = source.region.store.clone();
    let asked = request(&repo_url, RestorePoint::Backup(backups[0].clone()));
    // The original still exists (active, then deleted): in place is refused.
    let error = restore(store.as_ref(), &source.region.storage, &asked, &quiet)
        .await
        .unwrap_err();
    assert_eq!(error.kind().mlflow_code(), "RESOURCE_ALREADY_EXISTS", "{error}");
    store.delete_workspace("team").await.unwrap();
    let error = restore(store.as_ref(), &source.region.storage, &asked, &quiet)
        .await
        .unwrap_err();
    assert_eq!(error.kind().mlflow_code(), "RESOURCE_ALREADY_EXISTS", "{error}");
    assert!(error.to_string().contains("recover it, purge it"), "{error}");
    // As a copy beside the (deleted) original, in the same region.
    let mut copy = asked.clone();
    copy.as_name = Some("team-copy".to_string());
    let outcome = restore(store.as_ref(), &source.region.storage, &copy, &quiet)
        .await
        .unwrap();
    assert_ne!(outcome.workspace_id, source.ws.workspace_id);
    assert_eq!(restored(&source.region, "team-copy").await.1, source.first.2);
    // The original is untouched by its copy.
    let workspaces = store
        .list_workspaces(tandem_core::model::ViewType::All)
        .await
        .unwrap();
    assert!(workspaces
        .iter()
        .any(|workspace| workspace.workspace_id == source.ws.workspace_id));
    target.finish().await;
    source.region.finish().await;
}
