//! Backups as the crate writes them (create, verify, restore), an old
//! format's repository, workspace files, and pruning.

use super::*;

/// The real writer (`create_backup`, `verify`) and the restore together: a
/// full backup, a change, an incremental backup that copies only the new
/// artifact, a restore of the latest state equal to the source's, and a
/// corrupted blob found by verify.
#[tokio::test]
async fn backups_written_by_create_restore_and_verify() {
    use tandem_backup::create::CreateOptions;
    use tandem_backup::format::BackupKind;

    let source = source().await;
    let store = source.region.store.clone();
    let (repo_dir, repo_url, repo) = repository();
    let options = CreateOptions {
        workspace: Some("team".to_string()),
        full: false,
    };
    let full = back_up(&source.region, &repo, &options).await;
    assert_eq!(full.kind, BackupKind::Full);
    assert_eq!(full.position, source.second.0);
    assert_eq!(full.workspaces.len(), 1, "only the workspace asked for");
    assert_eq!(full.workspaces[0].artifacts.len(), 1);

    // A 1% change: one more metric and one more artifact.
    let extra = source.artifact.replace("model.txt", "extra.txt");
    write_artifact(&source.region, &source.ws, &extra, b"a new artifact").await;
    let incremental = back_up(&source.region, &repo, &options).await;
    assert_eq!(incremental.kind, BackupKind::Incremental);
    assert_eq!(incremental.base.as_deref(), Some(full.id.as_str()));
    assert_eq!(incremental.copied_blobs, 1, "only the new artifact is copied");
    assert_eq!(incremental.copied_bytes, b"a new artifact".len() as i64);
    assert!(incremental.snapshot.is_none() && !incremental.segments.is_empty());
    let expected = workspace_dump(store.as_ref(), &source.ws.workspace_id).await;

    let report = tandem_backup::verify::verify(&repo, None, &tandem_backup::no_progress)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.backups.len(), 2);

    let target = Target::open(Backend::Sqlite, "westus", false).await;
    let outcome = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Backup(incremental.id.clone())),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(outcome.artifacts, 2);
    let (_, dump) = restored(&target, "team").await;
    assert_eq!(dump, expected);
    target.finish().await;

    // Flip one byte of the new artifact's blob: verify names it.
    let blob = repo_dir.path().join(format::blob_key(&sha256(b"a new artifact")));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let report = tandem_backup::verify::verify(&repo, None, &tandem_backup::no_progress)
        .await
        .unwrap();
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.object == format::blob_key(&sha256(b"a new artifact"))),
        "{:?}",
        report.problems
    );
    source.region.finish().await;
}

/// A repository written by format 1 (`tests/fixtures/repository-v1`, one
/// full and one incremental backup of workspace "team" with its segments
/// and blobs) is still verified and restored by this build. Regenerate it
/// (only when the writer's format 1 output changes, never for a newer
/// format) with `TANDEM_REGENERATE_FIXTURE=1 cargo test -p tandem-backup fixture`.
#[tokio::test]
async fn fixture_of_format_1_still_verifies_and_restores() {
    use tandem_backup::create::CreateOptions;
    use tandem_backup::repo::Repository;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repository-v1");
    let url = format!("file://{}", dir.display());
    if std::env::var_os("TANDEM_REGENERATE_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        let source = source().await;
        let repo = Repository::open(&url).unwrap();
        let options = CreateOptions {
            workspace: Some("team".to_string()),
            full: false,
        };
        back_up(&source.region, &repo, &options).await;
        let extra = source.artifact.replace("model.txt", "extra.txt");
        write_artifact(&source.region, &source.ws, &extra, b"a new artifact").await;
        back_up(&source.region, &repo, &options).await;
        source.region.finish().await;
    }
    let repo = Repository::open(&url).unwrap();
    assert_eq!(repo.info().await.unwrap().format, 1);
    let report = tandem_backup::verify::verify(&repo, None, &tandem_backup::no_progress)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.backups.len(), 2);

    let target = Target::open(Backend::Sqlite, "westus", false).await;
    let outcome = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&url, RestorePoint::Latest),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(outcome.artifacts, 2);
    let workspace = target.store.get_workspace("team").await.unwrap();
    let stored = target.objects().await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored
        .iter()
        .all(|path| path.starts_with(&format!("workspaces/{}/", workspace.workspace_id))));
    target.finish().await;
}

/// Workspace files are backed up (manifest `files`, bytes in `blobs/`) and
/// restored to any point: a directory deleted after the point is whole
/// again there, and absent at the latest state, in the index and in storage.
#[tokio::test]
async fn workspace_files_are_backed_up_and_restored_to_a_point() {
    use tandem_backup::create::CreateOptions;

    let source = source().await;
    let store = source.region.store.clone();
    write_file(
        &source.region,
        &source.ws,
        "notebooks/eda.ipynb",
        b"{\"cells\": []}",
    )
    .await;
    write_file(&source.region, &source.ws, "notebooks/data/x.csv", b"a,b\n1,2\n").await;
    let (_repo_dir, repo_url, repo) = repository();
    let options = CreateOptions {
        workspace: Some("team".to_string()),
        full: false,
    };
    let full = back_up(&source.region, &repo, &options).await;
    let paths: Vec<&str> = full.workspaces[0].files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["notebooks/data/x.csv", "notebooks/eda.ipynb"]);
    let (with_notebooks, _) = position(store.as_ref()).await;

    let removed = store.delete_file(&source.ws, "notebooks").await.unwrap();
    assert_eq!(removed.len(), 2);
    write_file(&source.region, &source.ws, "README.md", b"# team").await;
    let incremental = back_up(&source.region, &repo, &options).await;
    assert_eq!(
        incremental.copied_blobs, 1,
        "only the new file's bytes are copied"
    );
    let paths: Vec<&str> = incremental.workspaces[0]
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(paths, ["README.md"]);
    let report = tandem_backup::verify::verify(&repo, None, &tandem_backup::no_progress)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    let stored_files = |target: &Target, workspace_id: String| {
        let storage = target.storage.clone();
        async move {
            let root = tandem_artifacts::workspace_file_key(&workspace_id, None).unwrap();
            let mut found = BTreeMap::new();
            if let Ok(listing) = storage.list_recursive(Some(&root)).await {
                for entry in listing.into_iter().filter(|entry| !entry.is_dir) {
                    let bytes = read(&storage, &key(&entry.path)).await;
                    found.insert(entry.path, bytes);
                }
            }
            found
        }
    };

    // At the point between the two backups: the notebooks, not the README.
    let target = Target::open(Backend::Sqlite, "westus", false).await;
    let outcome = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Seq(with_notebooks)),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(outcome.files, 2);
    let workspace = target.store.get_workspace("team").await.unwrap();
    let ws = WorkspaceRef {
        workspace_id: workspace.workspace_id.clone(),
        name: workspace.name.clone(),
    };
    let listed: Vec<String> = target
        .store
        .list_files(&ws, "")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(listed, ["notebooks/data/x.csv", "notebooks/eda.ipynb"]);
    let bytes = stored_files(&target, workspace.workspace_id.clone()).await;
    assert_eq!(bytes.len(), 2, "{bytes:?}");
    assert!(bytes.values().any(|b| b == b"{\"cells\": []}"));
    assert!(bytes.values().any(|b| b == b"a,b\n1,2\n"));
    target.finish().await;

    // The latest state: the directory is gone, the README is there.
    let target = Target::open(Backend::Sqlite, "westus", false).await;
    let outcome = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Latest),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(outcome.files, 1);
    let workspace = target.store.get_workspace("team").await.unwrap();
    let bytes = stored_files(&target, workspace.workspace_id.clone()).await;
    assert_eq!(bytes.into_values().collect::<Vec<_>>(), [b"# team".to_vec()]);
    target.finish().await;
    source.region.finish().await;
}

/// Retention: `keep` prunes old backups, the archive behind the oldest kept
/// full backup and the blobs only they needed; a dry run deletes nothing;
/// what is kept still verifies and restores; a restore before the kept
/// window is refused clearly; a second prune finds nothing; archiving goes
/// on after the last segment.
#[tokio::test]
async fn prune_keeps_what_retention_says_and_what_it_needs() {
    use tandem_backup::create::CreateOptions;
    use tandem_backup::prune::{prune, Retention};

    let source = source().await;
    let store = source.region.store.clone();
    let (repo_dir, repo_url, repo) = repository();
    let choices = [false, true].map(|full| CreateOptions {
        workspace: None,
        full,
    });
    let backup = |full: bool| back_up(&source.region, &repo, &choices[usize::from(full)]);
    // Bytes only the first full backup's era knows: written, then deleted.
    let old = source.artifact.replace("model.txt", "old.txt");
    write_artifact(&source.region, &source.ws, &old, b"bytes of a bygone era").await;
    let f1 = backup(false).await;
    store.delete_artifact(&source.ws, &old).await.unwrap();
    let kept1 = source.artifact.replace("model.txt", "one.txt");
    write_artifact(&source.region, &source.ws, &kept1, b"still here one").await;
    let i1 = backup(false).await;
    let f2 = backup(true).await;
    let kept2 = source.artifact.replace("model.txt", "two.txt");
    write_artifact(&source.region, &source.ws, &kept2, b"still here two").await;
    let i2 = backup(false).await;
    assert_eq!(
        (f1.kind, i1.kind, f2.kind, i2.kind),
        (
            BackupKind::Full,
            BackupKind::Incremental,
            BackupKind::Full,
            BackupKind::Incremental
        )
    );
    assert_eq!(i2.base.as_deref(), Some(f2.id.as_str()));
    let expected = workspace_dump(store.as_ref(), &source.ws.workspace_id).await;
    let old_blob = repo_dir
        .path()
        .join(format::blob_key(&sha256(b"bytes of a bygone era")));
    assert!(old_blob.exists());
    let segments_before = repo.segments("eastus").await.unwrap();
    // One per backup that found new records (f2 found none after i1).
    assert_eq!(segments_before.len(), 3);

    let retention = Retention::new(Some(2), None).unwrap();
    let now = i2.created_at + 1;
    let dry = prune(&repo, None, retention, now, true, &tandem_backup::no_progress)
        .await
        .unwrap();
    assert_eq!(dry.pruned, [f1.id.clone(), i1.id.clone()]);
    assert_eq!(dry.kept, [f2.id.clone(), i2.id.clone()]);
    assert_eq!((dry.segments_deleted, dry.blobs_deleted), (2, 1), "{dry:?}");
    assert_eq!(
        repo.manifests().await.unwrap().len(),
        4,
        "a dry run deletes nothing"
    );
    assert!(old_blob.exists());

    let report = prune(
        &repo,
        Some(&source.region.storage),
        retention,
        now,
        false,
        &tandem_backup::no_progress,
    )
    .await
    .unwrap();
    assert_eq!(report.pruned, dry.pruned);
    assert_eq!((report.segments_deleted, report.blobs_deleted), (2, 1));
    assert!(report.bytes_freed > 0 && report.dangling.is_empty(), "{report:?}");
    let ids: Vec<String> = repo
        .manifests()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [f2.id.clone(), i2.id.clone()]);
    assert!(!old_blob.exists(), "the bygone bytes are gone");
    assert!(!repo_dir.path().join("backups").join(&f1.id).exists());
    let segments = repo.segments("eastus").await.unwrap();
    assert_eq!(
        segments,
        segments_before[2..].to_vec(),
        "only the last segment is left"
    );
    let verified = tandem_backup::verify::verify(&repo, None, &tandem_backup::no_progress)
        .await
        .unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);

    // The kept window restores exactly; before it, a clear refusal.
    let target = Target::open(Backend::Sqlite, "westus", false).await;
    restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Latest),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(restored(&target, "team").await.1, expected);
    let refused = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Seq(f1.position)),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("pruned by its retention"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains(&f2.id),
        "names the earliest backup: {refused}"
    );
    target.finish().await;

    let again = prune(
        &repo,
        Some(&source.region.storage),
        retention,
        now,
        false,
        &tandem_backup::no_progress,
    )
    .await
    .unwrap();
    assert!(
        again.pruned.is_empty() && again.segments_deleted == 0 && again.blobs_deleted == 0,
        "{again:?}"
    );

    // Archiving continues after the last segment, not from the beginning.
    write_artifact(
        &source.region,
        &source.ws,
        &kept2.replace("two", "three"),
        b"three",
    )
    .await;
    let i3 = backup(false).await;
    assert_eq!(i3.base.as_deref(), Some(f2.id.as_str()));
    let segments = repo.segments("eastus").await.unwrap();
    assert_eq!(segments.len(), 2);
    assert_eq!(segments[1].first_seq, segments[0].last_seq + 1);
    assert!(
        tandem_backup::verify::verify(&repo, None, &tandem_backup::no_progress)
            .await
            .unwrap()
            .ok()
    );
    source.region.finish().await;
}

/// The base of a workspace's restore is a full backup that holds it: a
/// newer full backup of another workspace is not.
#[tokio::test]
async fn a_full_backup_of_another_workspace_is_not_a_base() {
    use tandem_backup::create::CreateOptions;

    let source = source().await;
    let store = source.region.store.clone();
    // source() made workspace "other" beside "team".
    let (_repo_dir, repo_url, repo) = repository();
    let options = CreateOptions {
        workspace: Some("other".to_string()),
        full: true,
    };
    back_up(&source.region, &repo, &options).await;
    let expected = workspace_dump(store.as_ref(), &source.ws.workspace_id).await;
    let target = Target::open(Backend::Sqlite, "westus", false).await;
    restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Latest),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(restored(&target, "team").await.1, expected);
    target.finish().await;
    source.region.finish().await;
}
