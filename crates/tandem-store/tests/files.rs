//! Conformance scenarios of the workspace file share's index, run against
//! SQLite and PostgreSQL like `conformance.rs`: write, overwrite, list,
//! delete of files and directories, file/directory conflicts, refusal in a
//! deleted workspace, purge, and the journal replay proof.

#[allow(dead_code)]
#[macro_use]
mod support;

use support::Backend;
use tandem_core::journal::{AssetClass, Change};
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::*;

scenarios!(
    files_are_written_listed_and_deleted,
    file_and_directory_paths_never_collide,
    deleted_and_purged_workspaces_take_no_files,
    replay_rebuilds_the_file_share,
);

const A: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const B: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

fn paths(files: &[FileEntry]) -> Vec<&str> {
    files.iter().map(|file| file.path.as_str()).collect()
}

async fn files_are_written_listed_and_deleted(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let written = store.record_file(&ws, "nb/train.ipynb", 10, A).await.unwrap();
    assert_eq!((written.size, written.sha256.as_str()), (10, A));
    store.record_file(&ws, "nb/data/x.csv", 3, B).await.unwrap();
    store.record_file(&ws, "nbx.txt", 1, A).await.unwrap();
    store.record_file(&ws, "readme.md", 2, B).await.unwrap();

    let all = store.list_files(&ws, "").await.unwrap();
    assert_eq!(
        paths(&all),
        vec!["nb/data/x.csv", "nb/train.ipynb", "nbx.txt", "readme.md"]
    );
    // A prefix is a directory, not a string prefix: `nb` does not take `nbx.txt`.
    assert_eq!(
        paths(&store.list_files(&ws, "nb").await.unwrap()),
        vec!["nb/data/x.csv", "nb/train.ipynb"]
    );
    assert_eq!(
        paths(&store.list_files(&ws, "/nb/train.ipynb/").await.unwrap()),
        vec!["nb/train.ipynb"]
    );

    // Overwriting replaces size and digest in place.
    store.record_file(&ws, "nb/train.ipynb", 12, B).await.unwrap();
    let listed = store.list_files(&ws, "nb/train.ipynb").await.unwrap();
    assert_eq!((listed[0].size, listed[0].sha256.as_str()), (12, B));

    // A directory goes with everything under it, and nothing else.
    let removed = store.delete_file(&ws, "nb").await.unwrap();
    assert_eq!(paths(&removed), vec!["nb/data/x.csv", "nb/train.ipynb"]);
    assert_eq!(
        paths(&store.list_files(&ws, "").await.unwrap()),
        vec!["nbx.txt", "readme.md"]
    );
    let error = store.delete_file(&ws, "nb").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResourceDoesNotExist, "{error}");
    assert!(error.to_string().contains("'nb'"), "{error}");

    // Each write and delete is one journal record of the files class.
    let records = store.journal_after(0, None, 1000).await.unwrap();
    let kinds: Vec<&str> = records
        .iter()
        .filter(|record| record.change.asset_class() == Some(AssetClass::Files))
        .map(|record| record.change.kind())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "file_written",
            "file_written",
            "file_written",
            "file_written",
            "file_written",
            "file_deleted"
        ]
    );
    harness.finish().await;
}

async fn file_and_directory_paths_never_collide(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    store.record_file(&ws, "a/b/c.txt", 1, A).await.unwrap();
    for (path, names) in [("a", "'a' is a directory"), ("a/b", "'a/b' is a directory")] {
        let error = store.check_file_write(&ws, path).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ResourceAlreadyExists);
        assert!(error.to_string().contains(names), "{error}");
        let error = store.record_file(&ws, path, 1, A).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ResourceAlreadyExists);
    }
    let error = store.record_file(&ws, "a/b/c.txt/d", 1, A).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResourceAlreadyExists);
    assert!(error.to_string().contains("'a/b/c.txt' is a file"), "{error}");
    // Siblings and look-alike names are fine.
    store.check_file_write(&ws, "a/b/c.txt2").await.unwrap();
    store.record_file(&ws, "a/bb", 1, A).await.unwrap();
    assert_eq!(store.list_files(&ws, "").await.unwrap().len(), 2);
    // Nothing refused left a record.
    let files_records = store
        .journal_after(0, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|record| matches!(record.change, Change::FileWritten { .. }))
        .count();
    assert_eq!(files_records, 2);
    harness.finish().await;
}

async fn deleted_and_purged_workspaces_take_no_files(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    store.create_workspace("team", "").await.unwrap();
    let ws = store.resolve_workspace("team").await.unwrap();
    store.record_file(&ws, "nb/a.ipynb", 5, A).await.unwrap();
    store.delete_workspace("team").await.unwrap();
    // A handle taken before the delete (an upload in flight) is refused
    // under the writer lock.
    let error = store.record_file(&ws, "nb/b.ipynb", 5, A).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResourceDoesNotExist, "{error}");
    let error = store.check_file_write(&ws, "nb/b.ipynb").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ResourceDoesNotExist, "{error}");
    // Recovered, the share is as it was.
    store.recover_workspace("team").await.unwrap();
    assert_eq!(
        paths(&store.list_files(&ws, "").await.unwrap()),
        vec!["nb/a.ipynb"]
    );
    // Purged, its index is gone (the bytes are storage's, for salvage).
    store.delete_workspace("team").await.unwrap();
    store.purge_workspace("team", false).await.unwrap();
    assert!(store.list_files(&ws, "").await.unwrap().is_empty());
    // The purge queued the workspace's artifacts for collection, never its files.
    let queued: Vec<String> = store
        .gc_pending()
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.prefix)
        .collect();
    assert!(
        queued.iter().all(|prefix| !prefix.contains("/files")),
        "{queued:?}"
    );
    harness.finish().await;
}

async fn replay_rebuilds_the_file_share(backend: Backend) {
    let Some(harness) = support::Harness::new(backend).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    store.record_file(&ws, "keep/a.txt", 1, A).await.unwrap();
    store.record_file(&ws, "keep/b.txt", 2, B).await.unwrap();
    store.record_file(&ws, "drop/c.txt", 3, A).await.unwrap();
    store.record_file(&ws, "keep/a.txt", 4, B).await.unwrap();
    store.delete_file(&ws, "drop").await.unwrap();
    let live = store.dump_state().await.unwrap();
    let records = store.journal_after(0, None, 1000).await.unwrap();
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
        let files = target.store.list_files(&ws, "").await.unwrap();
        assert_eq!(
            files
                .iter()
                .map(|f| (f.path.as_str(), f.size))
                .collect::<Vec<_>>(),
            vec![("keep/a.txt", 4), ("keep/b.txt", 2)]
        );
        target.finish().await;
    }
    harness.finish().await;
}
