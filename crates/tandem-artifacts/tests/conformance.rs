//! One conformance suite, run against every backend: a local directory, memory, Azure Blob
//! (Azurite), S3 (moto) and GCS's XML API (moto). Each backend must behave identically through `ArtifactStore`;
//! the emulators are real servers speaking the real protocols, started by the test itself.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use support::*;
use tandem_artifacts::{ArtifactError, ArtifactKey, ArtifactStore, Listing, PART_SIZE};

const MIB: usize = 1024 * 1024;

fn key(s: &str) -> ArtifactKey {
    ArtifactKey::parse(s).unwrap()
}

fn file(path: &str, size: u64) -> Listing {
    Listing {
        path: path.into(),
        is_dir: false,
        size: Some(size),
    }
}

fn dir(path: &str) -> Listing {
    Listing {
        path: path.into(),
        is_dir: true,
        size: None,
    }
}

fn body(chunks: Vec<Bytes>) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Unpin {
    futures::stream::iter(chunks.into_iter().map(Ok))
}

/// Yields `chunks`, then fails the way a dropped client connection does.
fn failing_body(chunks: Vec<Bytes>) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Unpin {
    futures::stream::iter(chunks.into_iter().map(Ok).chain([Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client went away",
    ))]))
}

async fn read_all(store: &ArtifactStore, k: &ArtifactKey) -> Vec<u8> {
    let (size, mut stream) = store
        .get_stream(k)
        .await
        .unwrap_or_else(|e| panic!("[{}] get_stream({k}): {e}", store.url()));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        out.len() as u64,
        size,
        "[{}] {k}: streamed length vs reported size",
        store.url()
    );
    out
}

/// Asserts that nothing is visible at `k` in any way a client could observe.
async fn assert_absent(store: &ArtifactStore, k: &ArtifactKey) {
    let url = store.url();
    assert_eq!(
        store.head(k).await.unwrap(),
        None,
        "[{url}] head({k}) should be None"
    );
    match store.get_stream(k).await {
        Err(e) => assert!(e.is_not_found(), "[{url}] get({k}) should be NotFound, got {e:?}"),
        Ok(_) => panic!("[{url}] get({k}) should be NotFound, but an object is there"),
    }
    let all = store.list_recursive(None).await.unwrap();
    assert!(
        !all.iter().any(|l| l.path == k.as_str()),
        "[{url}] {k} must not be listed"
    );
}

/// The suite. `local_root` is the directory of a `file://` store, for checks on its files.
async fn conformance(store: &ArtifactStore, local_root: Option<&Path>) {
    conformance_but_copy(store, local_root).await;
    copy(store).await;
}

/// The suite without server-side copies, for a stand-in that cannot make them (moto serving
/// GCS's XML API does not know GCS's `x-goog-copy-source`).
async fn conformance_but_copy(store: &ArtifactStore, local_root: Option<&Path>) {
    small_roundtrip(store).await;
    empty_object(store).await;
    multipart_roundtrip(store).await;
    overwrite(store).await;
    head_and_missing(store).await;
    listing(store).await;
    delete_idempotent(store).await;
    delete_prefix(store).await;
    delete_path(store).await;
    ranges(store).await;
    too_large(store).await;
    body_interrupted(store).await;
    cancelled_upload(store, local_root).await;
    odd_names(store).await;
    if let Some(root) = local_root {
        no_stray_files(store, root).await;
    }
}

async fn small_roundtrip(store: &ArtifactStore) {
    let url = store.url();
    let data = b"hello, artifacts\n".to_vec();
    let k = key("basic/hello.txt");
    let out = store.put_bytes(&k, Bytes::from(data.clone())).await.unwrap();
    assert_eq!(out.size, data.len() as u64, "[{url}]");
    assert_eq!(out.sha256, sha256_hex(&data), "[{url}]");
    assert_eq!(read_all(store, &k).await, data, "[{url}]");
    assert_eq!(store.head(&k).await.unwrap(), Some(data.len() as u64), "[{url}]");

    // Same bytes through put_stream, in several chunks, with a generous limit.
    let k2 = key("basic/streamed.txt");
    let chunks = vec![
        Bytes::from_static(b"hello, "),
        Bytes::new(),
        Bytes::from_static(b"artifacts\n"),
    ];
    let out2 = store.put_stream(&k2, body(chunks), Some(1024)).await.unwrap();
    assert_eq!(out2, out, "[{url}] same bytes, same outcome");
    assert_eq!(read_all(store, &k2).await, data, "[{url}]");
}

async fn empty_object(store: &ArtifactStore) {
    let url = store.url();
    let k = key("basic/empty");
    let out = store.put_bytes(&k, Bytes::new()).await.unwrap();
    assert_eq!(out.size, 0, "[{url}]");
    assert_eq!(
        out.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "[{url}]"
    );
    assert_eq!(store.head(&k).await.unwrap(), Some(0), "[{url}]");
    assert!(read_all(store, &k).await.is_empty(), "[{url}]");
}

async fn multipart_roundtrip(store: &ArtifactStore) {
    let url = store.url();
    // 20 MiB plus an odd tail: three parts, the last one short, fed in odd-sized chunks.
    let data = pseudo_random(20 * MIB + 12_345, 1);
    let k = key("big/streamed.bin");
    let out = store.put_stream(&k, body(odd_chunks(&data)), None).await.unwrap();
    assert_eq!(out.size, data.len() as u64, "[{url}]");
    assert_eq!(out.sha256, sha256_hex(&data), "[{url}]");
    assert_eq!(store.head(&k).await.unwrap(), Some(data.len() as u64), "[{url}]");
    let back = read_all(store, &k).await;
    assert!(back == data, "[{url}] multipart object read back differs");

    // One Bytes larger than a part (put_bytes of a big buffer) is split, not sent whole.
    let data2 = pseudo_random(PART_SIZE * 2 + 1, 2);
    let k2 = key("big/one-chunk.bin");
    let out2 = store.put_bytes(&k2, Bytes::from(data2.clone())).await.unwrap();
    assert_eq!(out2.sha256, sha256_hex(&data2), "[{url}]");
    assert!(
        read_all(store, &k2).await == data2,
        "[{url}] one-chunk object differs"
    );
}

async fn overwrite(store: &ArtifactStore) {
    let url = store.url();
    let k = key("overwrite/obj");
    let small_a = b"first version".to_vec();
    let small_b = b"v2".to_vec();
    let large = pseudo_random(PART_SIZE + 4321, 3);
    for data in [&small_a, &small_b, &large, &small_a] {
        let out = store.put_bytes(&k, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(out.sha256, sha256_hex(data), "[{url}]");
        assert_eq!(store.head(&k).await.unwrap(), Some(data.len() as u64), "[{url}]");
        assert!(
            read_all(store, &k).await == *data,
            "[{url}] overwrite left stale content"
        );
    }
    let listed = store.list(Some(&key("overwrite"))).await.unwrap();
    assert_eq!(
        listed,
        vec![file("overwrite/obj", small_a.len() as u64)],
        "[{url}]"
    );
}

async fn head_and_missing(store: &ArtifactStore) {
    let url = store.url();
    let missing = key("missing/nothing-here.txt");
    assert_eq!(store.head(&missing).await.unwrap(), None, "[{url}]");
    let err = store
        .get_stream(&missing)
        .await
        .err()
        .expect("get of missing key must fail");
    assert!(err.is_not_found(), "[{url}] {err:?}");
    assert!(
        matches!(&err, ArtifactError::NotFound { path } if path == "missing/nothing-here.txt"),
        "[{url}] NotFound should name the key: {err:?}"
    );
    let err = store.get_range(&missing, 0, 10).await.unwrap_err();
    assert!(err.is_not_found(), "[{url}] {err:?}");
    let err = store.get_range(&missing, 3, 3).await.unwrap_err();
    assert!(err.is_not_found(), "[{url}] {err:?}");
    // A "directory" is not an object.
    store
        .put_bytes(&key("headdir/child"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(store.head(&key("headdir")).await.unwrap(), None, "[{url}]");
    assert!(
        store
            .get_stream(&key("headdir"))
            .await
            .err()
            .unwrap()
            .is_not_found(),
        "[{url}]"
    );
    // Below a file is nothing either (on disks that is ENOTDIR, on object stores a plain miss).
    assert_eq!(
        store.head(&key("headdir/child/deeper")).await.unwrap(),
        None,
        "[{url}]"
    );
    assert!(
        store
            .get_stream(&key("headdir/child/deeper"))
            .await
            .err()
            .unwrap()
            .is_not_found(),
        "[{url}]"
    );
}

async fn listing(store: &ArtifactStore) {
    let url = store.url();
    let objects: &[(&str, usize)] = &[
        ("tree/a.txt", 3),
        ("tree/b/c.txt", 4),
        ("tree/b/d/e.txt", 5),
        ("tree/z.bin", 6),
        ("tree2/x", 7),
        ("treex", 8),
    ];
    for (path, len) in objects {
        store
            .put_bytes(&key(path), Bytes::from(vec![b'x'; *len]))
            .await
            .unwrap();
    }

    let expected = vec![file("tree/a.txt", 3), dir("tree/b"), file("tree/z.bin", 6)];
    assert_eq!(
        store.list(Some(&key("tree"))).await.unwrap(),
        expected,
        "[{url}] list(tree)"
    );
    assert_eq!(
        store.list(Some(&key("tree/"))).await.unwrap(),
        expected,
        "[{url}] list(tree/)"
    );
    assert_eq!(
        store.list(Some(&key("tree/b"))).await.unwrap(),
        vec![file("tree/b/c.txt", 4), dir("tree/b/d")],
        "[{url}] list(tree/b)"
    );
    assert_eq!(
        store.list(Some(&key("tree/b/d"))).await.unwrap(),
        vec![file("tree/b/d/e.txt", 5)],
        "[{url}]"
    );
    assert!(
        store.list(Some(&key("tree/nope"))).await.unwrap().is_empty(),
        "[{url}]"
    );
    assert!(
        store.list(Some(&key("tree/a.txt"))).await.unwrap().is_empty(),
        "[{url}] a file lists as empty"
    );
    assert!(
        store.list(Some(&key("tre"))).await.unwrap().is_empty(),
        "[{url}] prefixes are segment-wise"
    );

    let root = store.list(None).await.unwrap();
    for expected in [dir("tree"), dir("tree2"), file("treex", 8), dir("basic")] {
        assert!(
            root.contains(&expected),
            "[{url}] root listing {root:?} lacks {expected:?}"
        );
    }
    assert!(
        root.windows(2).all(|w| w[0].path < w[1].path),
        "[{url}] sorted, no duplicates: {root:?}"
    );
    assert!(
        root.iter().all(|l| !l.path.contains('/')),
        "[{url}] one level only: {root:?}"
    );
    assert!(
        root.iter().all(|l| l.is_dir == l.size.is_none()),
        "[{url}] {root:?}"
    );

    assert_eq!(
        store.list_recursive(Some(&key("tree"))).await.unwrap(),
        vec![
            file("tree/a.txt", 3),
            file("tree/b/c.txt", 4),
            file("tree/b/d/e.txt", 5),
            file("tree/z.bin", 6),
        ],
        "[{url}] list_recursive(tree)"
    );
    let all = store.list_recursive(None).await.unwrap();
    for (path, len) in objects {
        assert!(
            all.contains(&file(path, *len as u64)),
            "[{url}] recursive root listing lacks {path}"
        );
    }
    assert!(all.iter().all(|l| !l.is_dir), "[{url}]");
    assert!(all.windows(2).all(|w| w[0].path < w[1].path), "[{url}] sorted");
    assert!(
        store
            .list_recursive(Some(&key("nowhere")))
            .await
            .unwrap()
            .is_empty(),
        "[{url}]"
    );
    // Several trees at once: each as `list_recursive` gives it, in order.
    let prefixes = [key("tree/b"), key("nowhere"), key("tree")];
    let each = store.list_recursive_each(&prefixes).await;
    assert_eq!(each.len(), prefixes.len(), "[{url}]");
    for (prefix, listed) in prefixes.iter().zip(each) {
        assert_eq!(
            listed.unwrap(),
            store.list_recursive(Some(prefix)).await.unwrap(),
            "[{url}] list_recursive_each({prefix:?})"
        );
    }
}

async fn delete_idempotent(store: &ArtifactStore) {
    let url = store.url();
    let k = key("del/x");
    store.put_bytes(&k, Bytes::from_static(b"bye")).await.unwrap();
    store.delete(&k).await.unwrap();
    assert_absent(store, &k).await;
    store.delete(&k).await.expect("deleting twice is fine");
    store
        .delete(&key("del/never/existed"))
        .await
        .expect("deleting a missing key is fine");
    assert!(
        !store.list(None).await.unwrap().contains(&dir("del")),
        "[{url}] an emptied directory must not linger"
    );
    // A "directory" key is not an object: deleting it is a no-op that leaves its children.
    store.delete(&key("tree/b")).await.unwrap();
    assert_eq!(
        store.head(&key("tree/b/c.txt")).await.unwrap(),
        Some(4),
        "[{url}]"
    );
}

async fn delete_path(store: &ArtifactStore) {
    let url = store.url();
    for path in ["dpath/file", "dpath/dir/a", "dpath/dir/b/c", "dpath/dirx"] {
        store
            .put_bytes(&key(path), Bytes::from_static(b"data"))
            .await
            .unwrap();
    }
    assert_eq!(
        store.delete_path(&key("dpath/file")).await.unwrap(),
        1,
        "[{url}] a file"
    );
    assert_absent(store, &key("dpath/file")).await;
    assert_eq!(
        store.delete_path(&key("dpath/dir")).await.unwrap(),
        2,
        "[{url}] a directory"
    );
    assert_absent(store, &key("dpath/dir/b/c")).await;
    assert_eq!(
        store.head(&key("dpath/dirx")).await.unwrap(),
        Some(4),
        "[{url}] a sibling with the same leading characters is kept"
    );
    assert_eq!(
        store.delete_path(&key("dpath/dir")).await.unwrap(),
        0,
        "[{url}] idempotent"
    );
    store.delete_path(&key("dpath")).await.unwrap();
}

async fn delete_prefix(store: &ArtifactStore) {
    let url = store.url();
    for path in ["dp/a", "dp/b/c", "dp/b/d/e", "dpx/keep", "dp2"] {
        store
            .put_bytes(&key(path), Bytes::from_static(b"data"))
            .await
            .unwrap();
    }
    assert_eq!(store.delete_prefix(&key("dp")).await.unwrap(), 3, "[{url}]");
    assert!(
        store.list_recursive(Some(&key("dp"))).await.unwrap().is_empty(),
        "[{url}]"
    );
    assert_absent(store, &key("dp/b/d/e")).await;
    assert_eq!(
        store.head(&key("dpx/keep")).await.unwrap(),
        Some(4),
        "[{url}] sibling kept"
    );
    assert_eq!(
        store.head(&key("dp2")).await.unwrap(),
        Some(4),
        "[{url}] sibling kept"
    );
    assert_eq!(
        store.delete_prefix(&key("dp")).await.unwrap(),
        0,
        "[{url}] idempotent"
    );
    assert_eq!(
        store.delete_prefix(&key("no/such/prefix")).await.unwrap(),
        0,
        "[{url}]"
    );
    let root = store.list(None).await.unwrap();
    assert!(!root.contains(&dir("dp")), "[{url}] {root:?}");
}

async fn copy(store: &ArtifactStore) {
    let url = store.url();
    let src = key("cp/src.bin");
    let data = pseudo_random(100_000, 4);
    store.put_bytes(&src, Bytes::from(data.clone())).await.unwrap();

    let dst = key("cp/nested/dir/dst.bin");
    store.copy(&src, &dst).await.unwrap();
    assert!(read_all(store, &dst).await == data, "[{url}] copy differs");
    assert!(read_all(store, &src).await == data, "[{url}] source changed");

    // Copy overwrites, and the copies are independent objects afterwards.
    let other = key("cp/other");
    store.put_bytes(&other, Bytes::from_static(b"old")).await.unwrap();
    store.copy(&src, &other).await.unwrap();
    assert!(
        read_all(store, &other).await == data,
        "[{url}] copy did not overwrite"
    );
    store
        .put_bytes(&src, Bytes::from_static(b"changed"))
        .await
        .unwrap();
    assert!(
        read_all(store, &dst).await == data,
        "[{url}] copy must not alias its source"
    );
    assert!(
        read_all(store, &other).await == data,
        "[{url}] copy must not alias its source"
    );

    // A multipart-sized object copies too.
    let big = key("big/streamed.bin");
    let big_copy = key("cp/big-copy.bin");
    store.copy(&big, &big_copy).await.unwrap();
    assert_eq!(
        store.head(&big_copy).await.unwrap(),
        store.head(&big).await.unwrap(),
        "[{url}]"
    );

    let err = store.copy(&key("cp/missing"), &key("cp/to")).await.unwrap_err();
    assert!(err.is_not_found(), "[{url}] {err:?}");
    assert_eq!(store.head(&key("cp/to")).await.unwrap(), None, "[{url}]");
}

async fn ranges(store: &ArtifactStore) {
    let url = store.url();
    let data = pseudo_random(1000, 5);
    let k = key("range/obj");
    store.put_bytes(&k, Bytes::from(data.clone())).await.unwrap();
    assert_eq!(store.get_range(&k, 0, 10).await.unwrap(), &data[0..10], "[{url}]");
    assert_eq!(
        store.get_range(&k, 990, 1000).await.unwrap(),
        &data[990..],
        "[{url}]"
    );
    assert_eq!(store.get_range(&k, 0, 1000).await.unwrap(), &data[..], "[{url}]");
    assert_eq!(
        store.get_range(&k, 995, 5000).await.unwrap(),
        &data[995..],
        "[{url}] end is clamped"
    );
    assert!(store.get_range(&k, 500, 500).await.unwrap().is_empty(), "[{url}]");
    assert!(store.get_range(&k, 20, 10).await.is_err(), "[{url}] start > end");
    assert!(
        store.get_range(&k, 1000, 1010).await.is_err(),
        "[{url}] start past the end"
    );

    // Across the boundary between two multipart parts.
    let big = pseudo_random(20 * MIB + 12_345, 1); // what multipart_roundtrip stored
    let at = PART_SIZE as u64;
    let got = store
        .get_range(&key("big/streamed.bin"), at - 7, at + 9)
        .await
        .unwrap();
    assert_eq!(
        got,
        &big[PART_SIZE - 7..PART_SIZE + 9],
        "[{url}] range across parts"
    );
}

async fn too_large(store: &ArtifactStore) {
    let url = store.url();
    let k = key("limits/small");
    let err = store
        .put_stream(
            &k,
            body(vec![Bytes::from_static(b"12345"), Bytes::from_static(b"678901")]),
            Some(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::TooLarge { limit: 10 }),
        "[{url}] {err:?}"
    );
    assert_absent(store, &k).await;

    let exact = store
        .put_stream(&k, body(vec![Bytes::from_static(b"1234567890")]), Some(10))
        .await
        .expect("a body of exactly max_size is allowed");
    assert_eq!(exact.size, 10, "[{url}]");
    store.delete(&k).await.unwrap();

    // Over the limit only after several parts were uploaded: the multipart upload is aborted.
    let data = pseudo_random(20 * MIB, 6);
    let kb = key("limits/big/file.bin");
    let err = store
        .put_stream(&kb, body(odd_chunks(&data)), Some(10 * MIB as u64 + 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::TooLarge { limit } if limit == 10 * MIB as u64 + 1),
        "[{url}] {err:?}"
    );
    assert_absent(store, &kb).await;

    // A failed overwrite leaves the previous object intact.
    let keep = key("limits/keep");
    store
        .put_bytes(&keep, Bytes::from_static(b"previous"))
        .await
        .unwrap();
    let err = store
        .put_stream(&keep, body(odd_chunks(&data)), Some(12 * MIB as u64))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::TooLarge { .. }), "[{url}] {err:?}");
    assert_eq!(
        read_all(store, &keep).await,
        b"previous",
        "[{url}] failed overwrite clobbered the object"
    );
}

async fn body_interrupted(store: &ArtifactStore) {
    let url = store.url();
    // Fails after 12 MiB: one part uploaded, the second in the buffer.
    let data = pseudo_random(12 * MIB, 7);
    let k = key("interrupted/big.bin");
    let err = store
        .put_stream(&k, failing_body(odd_chunks(&data)), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::BodyInterrupted { .. }),
        "[{url}] {err:?}"
    );
    assert!(err.to_string().contains("client went away"), "[{url}] {err}");
    assert_absent(store, &k).await;

    // Fails before anything was sent.
    let k2 = key("interrupted/early.bin");
    let err = store
        .put_stream(&k2, failing_body(vec![]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::BodyInterrupted { .. }),
        "[{url}] {err:?}"
    );
    assert_absent(store, &k2).await;

    // Fails mid-way through overwriting: the old object survives.
    let keep = key("interrupted/keep");
    store
        .put_bytes(&keep, Bytes::from_static(b"survivor"))
        .await
        .unwrap();
    let err = store
        .put_stream(&keep, failing_body(odd_chunks(&data)), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::BodyInterrupted { .. }),
        "[{url}] {err:?}"
    );
    assert_eq!(read_all(store, &keep).await, b"survivor", "[{url}]");
    store.delete(&keep).await.unwrap();
    assert!(
        !store.list(None).await.unwrap().contains(&dir("interrupted")),
        "[{url}]"
    );
}

/// The request future is dropped mid-upload (the server cancels a handler whose client left).
async fn cancelled_upload(store: &ArtifactStore, local_root: Option<&Path>) {
    let url = store.url();
    let data = pseudo_random(12 * MIB, 8);
    let k = key("cancelled/big.bin");
    // Sends 12 MiB, then stalls forever.
    let stalled = body(odd_chunks(&data)).chain(futures::stream::pending());
    let result = tokio::time::timeout(Duration::from_millis(1500), store.put_stream(&k, stalled, None)).await;
    assert!(
        result.is_err(),
        "[{url}] the stalled upload must still be waiting"
    );
    assert_absent(store, &k).await;
    if let Some(root) = local_root {
        // The abort (and the removal of the staging file) runs in the background.
        let dir = root.join("cancelled");
        for _ in 0..50 {
            if !dir.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !dir.exists(),
            "[{url}] cancelled upload left {:?}",
            std::fs::read_dir(&dir).map(|d| d.count())
        );
    }
}

async fn odd_names(store: &ArtifactStore) {
    let url = store.url();
    let names = [
        "names/naïve file (1).txt",
        "names/a#b",
        "names/100%.txt",
        "names/x?y=z&w",
        "names/semi;colon+plus=eq,comma",
        "names/sp ace/inner",
        "names/日本語/ファイル.csv",
    ];
    for (i, name) in names.iter().enumerate() {
        let data = format!("content {i}");
        store
            .put_bytes(&key(name), Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(
            read_all(store, &key(name)).await,
            data.as_bytes(),
            "[{url}] {name}"
        );
    }
    let listed: BTreeSet<String> = store
        .list_recursive(Some(&key("names")))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.path)
        .collect();
    let expected: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        listed, expected,
        "[{url}] names must survive a round trip unchanged"
    );
    let level = store.list(Some(&key("names"))).await.unwrap();
    assert!(level.contains(&dir("names/sp ace")), "[{url}] {level:?}");
    assert!(level.contains(&dir("names/日本語")), "[{url}] {level:?}");
    // Keys built with join address the same objects.
    let joined = key("names").join("sp ace/inner").unwrap();
    assert_eq!(
        store.head(&joined).await.unwrap(),
        Some("content 5".len() as u64),
        "[{url}]"
    );
}

/// Every file under a local root is a listed object: no staging files of failed or
/// cancelled uploads, and no empty directories left behind.
async fn no_stray_files(store: &ArtifactStore, root: &Path) {
    let listed: BTreeSet<String> = store
        .list_recursive(None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.path)
        .collect();
    let mut on_disk = BTreeSet::new();
    let mut empty_dirs = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(d) = pending.pop() {
        let mut entries = 0;
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            entries += 1;
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                on_disk.insert(rel);
            }
        }
        if entries == 0 && d != root {
            empty_dirs.push(d);
        }
    }
    assert_eq!(on_disk, listed, "files on disk vs objects listed");
    assert!(
        empty_dirs.is_empty(),
        "empty directories left behind: {empty_dirs:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Backends

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // Not there yet: open must create it.
    let dir = tmp.path().join("region").join("artifacts");
    let url = url::Url::from_directory_path(&dir).unwrap().to_string();
    let store = ArtifactStore::open(&url, &HashMap::new()).unwrap();
    assert_eq!(store.url(), url);
    assert!(dir.is_dir(), "open must create the directory");
    conformance(&store, Some(&std::fs::canonicalize(&dir).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory() {
    let store = ArtifactStore::open("memory://", &HashMap::new()).unwrap();
    conformance(&store, None).await;
    // And under a key prefix taken from the URL path.
    let store = ArtifactStore::open("memory:///some/prefix", &HashMap::new()).unwrap();
    conformance(&store, None).await;
}

fn azurite_options(port: u16) -> HashMap<String, String> {
    HashMap::from([
        (
            "azure_storage_account_name".to_string(),
            AZURITE_ACCOUNT.to_string(),
        ),
        ("azure_storage_access_key".to_string(), AZURITE_KEY.to_string()),
        // Path-style emulator endpoint: http://host:port/<account>/<container>/<blob>.
        (
            "azure_endpoint".to_string(),
            format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        ),
        ("allow_http".to_string(), "true".to_string()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_azure_blob_via_azurite() {
    let emulator = match start_azurite() {
        Ok(e) => e,
        Err(skip) => {
            eprintln!("{skip}");
            return;
        }
    };
    azurite_create_container(emulator.port, "artifacts").await;
    let options = azurite_options(emulator.port);
    let store = ArtifactStore::open("az://artifacts/region-a/root", &options).unwrap();
    conformance(&store, None).await;
    let root = ArtifactStore::open("azure://artifacts", &options).unwrap();
    prefix_placement(&store, &root, "region-a/root").await;
    drop(emulator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3_via_moto() {
    let emulator = match start_moto() {
        Ok(e) => e,
        Err(skip) => {
            eprintln!("{skip}");
            return;
        }
    };
    moto_create_bucket(emulator.port, "artifacts").await;
    let options = HashMap::from([
        (
            "aws_endpoint".to_string(),
            format!("http://127.0.0.1:{}", emulator.port),
        ),
        ("allow_http".to_string(), "true".to_string()),
        ("aws_access_key_id".to_string(), "testing".to_string()),
        ("aws_secret_access_key".to_string(), "testing".to_string()),
        ("aws_region".to_string(), "us-east-1".to_string()),
    ]);
    let store = ArtifactStore::open("s3://artifacts/region-b/root", &options).unwrap();
    conformance(&store, None).await;
    let root = ArtifactStore::open("s3://artifacts", &options).unwrap();
    prefix_placement(&store, &root, "region-b/root").await;
    no_uploads_left(emulator.port, "artifacts").await;
    drop(emulator);
}

/// Failed, oversized and cancelled uploads were aborted, not left as billable parts. The
/// cancelled one is aborted in the background, so allow it a moment.
async fn no_uploads_left(port: u16, bucket: &str) {
    let mut listing = String::new();
    for _ in 0..50 {
        let (status, text) = http_request(port, "GET", &format!("/{bucket}?uploads"), &[]).await;
        assert_eq!(status, 200, "{text}");
        listing = text;
        if !listing.contains("<Upload>") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        listing.contains("ListMultipartUploadsResult") && !listing.contains("<Upload>"),
        "multipart uploads left behind in {bucket}: {listing}"
    );
}

/// GCS through its XML API, served by moto: for what object_store's GCS client sends (objects,
/// listings, XML multipart uploads) GCS's XML API speaks S3's protocol, and no GCS emulator that
/// runs here implements its multipart uploads (see tests/e2e/test_multipart.py). This checks
/// Tandem's use of object_store's GCS client, not Google's servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_gcs_xml_api_via_moto() {
    let emulator = match start_moto() {
        Ok(e) => e,
        Err(skip) => {
            eprintln!("{skip}");
            return;
        }
    };
    moto_create_bucket(emulator.port, "gcs-artifacts").await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    let generated = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .output()
        .expect("openssl runs");
    assert!(generated.status.success(), "{generated:?}");
    // A service account whose bearer tokens the client signs itself (no
    // exchange with Google) and whose XML API endpoint is moto.
    let account = serde_json::json!({
        "type": "service_account",
        "client_email": "conformance@example.iam.gserviceaccount.com",
        "private_key_id": "conformance",
        "private_key": std::fs::read_to_string(&pem).unwrap(),
        "gcs_base_url": format!("http://127.0.0.1:{}", emulator.port),
    });
    let options = HashMap::from([("google_service_account_key".to_string(), account.to_string())]);
    let store = ArtifactStore::open("gs://gcs-artifacts/region-c/root", &options).unwrap();
    assert!(store.direct_uploads(), "a service account key signs part URLs");
    conformance_but_copy(&store, None).await;
    let root = ArtifactStore::open("gs://gcs-artifacts", &options).unwrap();
    prefix_placement(&store, &root, "region-c/root").await;
    no_uploads_left(emulator.port, "gcs-artifacts").await;
    drop(emulator);
}

/// A store opened at `bucket/prefix` keeps its objects under that prefix and sees nothing
/// outside it.
async fn prefix_placement(store: &ArtifactStore, root: &ArtifactStore, prefix: &str) {
    store
        .put_bytes(&key("placement/x"), Bytes::from_static(b"12345"))
        .await
        .unwrap();
    assert_eq!(
        root.head(&key(&format!("{prefix}/placement/x"))).await.unwrap(),
        Some(5)
    );
    root.put_bytes(&key("outside/y"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    let first = prefix.split('/').next().unwrap();
    let root_level = root.list(None).await.unwrap();
    let mut expected = vec![dir(first), dir("outside")];
    expected.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(root_level, expected);
    let inside = store.list_recursive(None).await.unwrap();
    assert!(
        inside.iter().all(|l| !l.path.starts_with("outside")),
        "{inside:?}"
    );
    assert!(
        inside.iter().all(|l| !l.path.starts_with(first)),
        "paths are relative to the prefix"
    );
    assert!(inside.contains(&file("placement/x", 5)));
    assert_eq!(store.head(&key("outside/y")).await.unwrap(), None);
}
