//! Local-directory specifics (symlinks planted inside the root, names the local backend
//! reserves, file/directory conflicts) and `ArtifactStore::open`'s URL and option handling.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use tandem_artifacts::{ArtifactError, ArtifactKey, ArtifactStore};

fn key(s: &str) -> ArtifactKey {
    ArtifactKey::parse(s).unwrap()
}

fn open_dir(dir: &Path) -> ArtifactStore {
    let url = url::Url::from_directory_path(dir).unwrap();
    ArtifactStore::open(url.as_str(), &HashMap::new()).unwrap()
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, ArtifactError>, what: &str) {
    match result {
        Err(ArtifactError::InvalidPath { reason, .. }) => {
            assert!(reason.contains("symbolic link"), "{what}: {reason}")
        }
        other => panic!("{what}: expected InvalidPath, got {other:?}"),
    }
}

/// A symlink planted inside the root must not let any operation reach outside it: keys
/// that cross a link are refused, and listings neither show nor descend into links.
#[tokio::test]
async fn local_store_refuses_to_follow_symlinks_out_of_its_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();
    let store = open_dir(&root);
    store
        .put_bytes(&key("dir/ok.txt"), Bytes::from_static(b"fine"))
        .await
        .unwrap();

    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("dir").join("nested-escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("secret-link.txt")).unwrap();

    // Reads.
    assert_invalid(
        store.get_stream(&key("escape/secret.txt")).await.map(|(n, _)| n),
        "get via dir link",
    );
    assert_invalid(
        store.get_stream(&key("secret-link.txt")).await.map(|(n, _)| n),
        "get via file link",
    );
    assert_invalid(
        store.get_range(&key("secret-link.txt"), 0, 3).await,
        "range via file link",
    );
    assert_invalid(
        store.head(&key("dir/nested-escape/secret.txt")).await,
        "head via nested link",
    );
    assert_invalid(store.list(Some(&key("escape"))).await, "list via link");
    assert_invalid(
        store.list_recursive(Some(&key("dir/nested-escape"))).await,
        "list_recursive via link",
    );

    // Writes: nothing may appear outside.
    assert_invalid(
        store
            .put_bytes(&key("escape/planted.txt"), Bytes::from_static(b"x"))
            .await,
        "put via link",
    );
    assert_invalid(
        store
            .put_bytes(&key("secret-link.txt"), Bytes::from_static(b"overwrite"))
            .await,
        "overwrite through a file link",
    );
    assert_invalid(
        store.copy(&key("dir/ok.txt"), &key("escape/copied.txt")).await,
        "copy into link",
    );
    assert_invalid(
        store
            .copy(&key("escape/secret.txt"), &key("dir/stolen.txt"))
            .await,
        "copy out of link",
    );

    // Deletes: the outside file must survive everything.
    assert_invalid(store.delete(&key("escape/secret.txt")).await, "delete via link");
    assert_invalid(
        store.delete_prefix(&key("escape")).await,
        "delete_prefix of a link",
    );
    let removed = store.delete_prefix(&key("dir")).await.unwrap();
    assert_eq!(removed, 1, "only dir/ok.txt is an object under dir/");

    // Listings skip links entirely.
    let listed = store.list(None).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|l| !l.path.contains("escape") && !l.path.contains("secret")),
        "{listed:?}"
    );
    let all = store.list_recursive(None).await.unwrap();
    assert!(all.iter().all(|l| !l.path.contains("secret")), "{all:?}");

    assert_eq!(std::fs::read(outside.join("secret.txt")).unwrap(), b"top secret");
    let outside_entries: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside_entries,
        vec![std::ffi::OsString::from("secret.txt")],
        "nothing written outside"
    );
    assert_eq!(std::fs::read(outside.join("secret.txt")).unwrap(), b"top secret");
}

/// The root itself may be reached through a symlink (e.g. /data -> /mnt/disk1): only links
/// inside it are refused.
#[tokio::test]
async fn local_root_behind_a_symlink_works() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = open_dir(&link);
    let out = store
        .put_bytes(&key("a/b.txt"), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(out.size, 2);
    assert_eq!(std::fs::read(real.join("a/b.txt")).unwrap(), b"hi");
    let (size, mut stream) = store.get_stream(&key("a/b.txt")).await.unwrap();
    assert_eq!(size, 2);
    assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"hi"));
}

/// LocalFileSystem reserves "<name>#<digits>" for its staging files: such keys are refused
/// with InvalidPath (not a generic error), while '#' elsewhere in a name is fine.
#[tokio::test]
async fn local_store_reserved_and_conflicting_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_dir(tmp.path());
    let err = store
        .put_bytes(&key("run/model#1"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::InvalidPath { ref reason, .. } if reason.contains("reserves")),
        "{err:?}"
    );
    assert!(matches!(
        store.head(&key("run/model#1")).await,
        Err(ArtifactError::InvalidPath { .. })
    ));
    store
        .put_bytes(&key("run/model#v1"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    store
        .put_bytes(&key("run/#1.txt"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    // Only file names are reserved: a directory may be called "x#1".
    store
        .put_bytes(&key("run/x#1/file"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let listed = store.list(Some(&key("run/x#1"))).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].path, "run/x#1/file");

    // A file and a directory cannot share a name on disk (they can on object stores).
    store
        .put_bytes(&key("conflict"), Bytes::from_static(b"file"))
        .await
        .unwrap();
    let err = store
        .put_bytes(&key("conflict/child"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidPath { .. }), "{err:?}");
    store
        .put_bytes(&key("dir2/child"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let err = store
        .put_bytes(&key("dir2"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidPath { .. }), "{err:?}");
    assert_eq!(store.head(&key("dir2/child")).await.unwrap(), Some(1));
}

#[test]
fn open_rejects_bad_urls_and_options() {
    let none = HashMap::new();
    let cases = [
        ("not a url", "invalid"),
        ("ftp://host/x", "unsupported"),
        ("file://relative/dir", "invalid"),
        ("memory:///a//b", "invalid"),
        ("memory:///a/%00", "invalid"),
        ("s3://bucket/prefix?region=x", "invalid"),
    ];
    for (url, kind) in cases {
        match (ArtifactStore::open(url, &none), kind) {
            (Err(ArtifactError::InvalidPath { .. }), "invalid") => {}
            (Err(ArtifactError::Unsupported { .. }), "unsupported") => {}
            (other, _) => panic!("{url}: expected {kind}, got {other:?}"),
        }
    }
    let typo = HashMap::from([("aws_acess_key_id".to_string(), "x".to_string())]);
    match ArtifactStore::open("s3://bucket/prefix", &typo) {
        Err(ArtifactError::Unsupported { message }) => {
            assert!(message.contains("aws_acess_key_id"), "{message}")
        }
        other => panic!("a misspelt option must be refused, got {other:?}"),
    }
}

#[test]
fn open_accepts_every_cloud_scheme_without_network() {
    // Building a client talks to nobody; these only check URL and option plumbing.
    let s3 = HashMap::from([
        ("aws_endpoint".to_string(), "http://127.0.0.1:1".to_string()),
        ("aws_region".to_string(), "us-east-1".to_string()),
        ("allow_http".to_string(), "true".to_string()),
    ]);
    let store = ArtifactStore::open("s3://bucket/some/prefix", &s3).unwrap();
    assert_eq!(store.url(), "s3://bucket/some/prefix");
    let azure = HashMap::from([
        (
            "azure_storage_account_name".to_string(),
            "devstoreaccount1".to_string(),
        ),
        ("azure_storage_use_emulator".to_string(), "true".to_string()),
    ]);
    ArtifactStore::open("az://container/prefix", &azure).unwrap();
    ArtifactStore::open("azure://container", &azure).unwrap();
    let gcs = HashMap::from([("google_skip_signature".to_string(), "true".to_string())]);
    ArtifactStore::open("gs://bucket/prefix", &gcs).unwrap();
}

/// The server awaits these futures inside request handlers on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(store: &ArtifactStore, key: &ArtifactKey) {
    fn is_send<T: Send>(_: T) {}
    let body = futures::stream::empty::<std::io::Result<Bytes>>().boxed();
    is_send(store.put_stream(key, body, Some(1)));
    is_send(store.get_stream(key));
    is_send(store.list(None));
    is_send(store.delete_prefix(key));
    is_send(store.clone());
}
