//! Restore, end to end at the library level: a source store's journal and
//! artifacts archived into a repository (by `archive`, a test-only writer of
//! the repository format: the real writer lives in another part of the
//! crate), restored into SQLite and PostgreSQL targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use sqlx::any::AnyPoolOptions;
use tandem_artifacts::{workspace_artifact_key, ArtifactKey, ArtifactStore};
use tandem_backup::format::{
    self, ArchivedRecord, BackupKind, BackupManifest, ObjectRef, RepositoryInfo, SegmentInfo, WorkspaceEntry,
};
use tandem_backup::restore::{restore, Progress, RecordSelection, RestorePoint, RestoreRequest};
use tandem_core::journal::Change;
use tandem_core::model::{Metric, Param};
use tandem_store::{CreateRun, MetadataStore, SqlStore, StoreOptions, WorkspaceRef};

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn key(path: &str) -> ArtifactKey {
    ArtifactKey::parse(path).unwrap()
}

async fn put(repo: &ArtifactStore, path: &str, bytes: Vec<u8>) -> ObjectRef {
    let object = ObjectRef {
        key: path.to_string(),
        bytes: bytes.len() as i64,
        sha256: sha256(&bytes),
    };
    repo.put_bytes(&key(path), Bytes::from(bytes)).await.unwrap();
    object
}

fn ndjson(records: &[&tandem_core::journal::JournalRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        let archived = ArchivedRecord {
            record: (*record).clone(),
            voided: false,
        };
        out.extend_from_slice(&serde_json::to_vec(&archived).unwrap());
        out.push(b'\n');
    }
    out
}

/// Archives `store`'s journal into `repo` in the repository format:
/// segments of `segment` records, a full backup at each of `backups`
/// (positions), and every artifact content ever written (`contents`: the
/// archiver copies each as its record appears) as a blob. Returns the
/// backups' ids.
async fn archive(
    store: &dyn MetadataStore,
    contents: &[Vec<u8>],
    repo: &ArtifactStore,
    region: &str,
    segment: usize,
    backups: &[i64],
) -> Vec<String> {
    let info = RepositoryInfo {
        format: format::REPOSITORY_FORMAT,
        created_at: 1,
    };
    put(
        repo,
        format::REPOSITORY_INFO_KEY,
        serde_json::to_vec(&info).unwrap(),
    )
    .await;
    let records = store.journal_after(0, None, 1_000_000).await.unwrap();
    for content in contents {
        put(repo, &format::blob_key(&sha256(content)), content.clone()).await;
    }
    for chunk in records.chunks(segment) {
        let (first, last) = (chunk[0].seq, chunk[chunk.len() - 1].seq);
        let (data, meta) = format::segment_keys(region, first, last);
        let object = put(repo, &data, ndjson(&chunk.iter().collect::<Vec<_>>())).await;
        let info = SegmentInfo {
            format: format::REPOSITORY_FORMAT,
            region: region.to_string(),
            first_seq: first,
            last_seq: last,
            records: chunk.len() as i64,
            bytes: object.bytes,
            sha256: object.sha256,
            first_recorded_at: chunk[0].recorded_at,
            last_recorded_at: chunk[chunk.len() - 1].recorded_at,
        };
        put(repo, &meta, serde_json::to_vec(&info).unwrap()).await;
    }
    let mut workspaces = BTreeMap::new();
    for record in &records {
        if let Change::WorkspaceCreated {
            workspace_id, name, ..
        } = &record.change
        {
            workspaces.insert(workspace_id.clone(), name.clone());
        }
    }
    let mut ids = Vec::new();
    for (index, position) in backups.iter().enumerate() {
        let id = format!("20261122T0000{index:02}Z-0000000{index}");
        let held: Vec<_> = records.iter().filter(|record| record.seq <= *position).collect();
        let snapshot = put(repo, &format::snapshot_key(&id), ndjson(&held)).await;
        let manifest = BackupManifest {
            format: format::REPOSITORY_FORMAT,
            id: id.clone(),
            kind: BackupKind::Full,
            base: None,
            region: region.to_string(),
            position: *position,
            position_recorded_at: held.last().unwrap().recorded_at,
            created_at: 1,
            workspace: None,
            workspaces: workspaces
                .iter()
                .map(|(workspace_id, name)| WorkspaceEntry {
                    workspace_id: workspace_id.clone(),
                    name: name.clone(),
                    records: 0,
                    artifacts: vec![],
                    files: vec![],
                })
                .collect(),
            snapshot: Some(snapshot),
            segments: vec![],
            copied_bytes: 0,
            copied_blobs: 0,
            access: None,
        };
        put(
            repo,
            &format::manifest_key(&id),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await;
        ids.push(id);
    }
    ids
}

/// The rows of one workspace in a store's state dump, with its identities
/// (workspace id and name, run and logged model ids) replaced by stable
/// names, so a restore (in place or as a copy) compares equal to its source.
async fn workspace_dump(store: &dyn MetadataStore, workspace_id: &str) -> Vec<(String, Vec<String>)> {
    let dump = store.dump_state().await.unwrap();
    let mut names: Vec<(String, String)> = vec![(workspace_id.to_string(), "WS".to_string())];
    let mut workspace_name = None;
    for (table, rows) in &dump {
        for row in rows {
            let cell = |index: usize| row[index].as_str().unwrap_or_default().to_string();
            match table.as_str() {
                "runs" if cell(1) == workspace_id => names.push((cell(0), format!("RUN:{}", cell(3)))),
                "logged_models" if cell(1) == workspace_id => {
                    names.push((cell(0), format!("MODEL:{}", cell(3))))
                }
                "workspaces" if cell(0) == workspace_id => workspace_name = Some(cell(1)),
                _ => {}
            }
        }
    }
    let workspace_name = workspace_name.expect("the workspace exists");
    dump.iter()
        .map(|(table, rows)| {
            let mut mine: Vec<String> = rows
                .iter()
                .map(|row| row.to_string())
                .filter(|row| names.iter().any(|(id, _)| row.contains(id.as_str())))
                .map(|mut row| {
                    for (id, name) in &names {
                        row = row.replace(id.as_str(), name);
                    }
                    if table == "workspaces" {
                        row = row.replace(&format!("\"{workspace_name}\""), "\"NAME\"");
                    }
                    row
                })
                .collect();
            mine.sort();
            (table.clone(), mine)
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Target {
    store: Arc<dyn MetadataStore>,
    storage: ArtifactStore,
    _dir: tempfile::TempDir,
    database: Option<String>,
}

fn admin_url() -> String {
    std::env::var("TANDEM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn admin(sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url())
        .await
        .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

impl Target {
    /// An empty region `region` (no default workspace: filled by restores).
    async fn open(backend: Backend, region: &str, bootstrap: bool) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let (url, database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("metadata.db").display()),
                None,
            ),
            Backend::Postgres => {
                static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let database = format!(
                    "tandem_restore_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                admin(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
                admin(&format!("CREATE DATABASE {database}")).await;
                let base = admin_url();
                let slash = base.rfind('/').unwrap();
                (format!("{}/{database}", &base[..slash]), Some(database))
            }
        };
        let mut options = StoreOptions::new(url, region);
        options.bootstrap_default_workspace = bootstrap;
        let store = SqlStore::open(options).await.unwrap();
        let storage = ArtifactStore::open(
            &format!("file://{}", dir.path().join("storage").display()),
            &Default::default(),
        )
        .unwrap();
        Target {
            store: Arc::new(store),
            storage,
            _dir: dir,
            database,
        }
    }

    async fn finish(self) {
        let Target { store, database, .. } = self;
        drop(store);
        if let Some(database) = database {
            admin(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
        }
    }

    async fn objects(&self) -> Vec<String> {
        match self.storage.list_recursive(None).await {
            Ok(listing) => listing
                .into_iter()
                .filter(|entry| !entry.is_dir)
                .map(|entry| entry.path)
                .collect(),
            Err(_) => vec![],
        }
    }
}

/// The source: workspace "team" with a run, params, metrics and an
/// artifact; `first` is the state (dump) after the first half of the writes
/// and its journal position, `second` the same at the end.
struct Source {
    region: Target,
    ws: WorkspaceRef,
    first: (i64, i64, Vec<(String, Vec<String>)>),
    second: (i64, i64, Vec<(String, Vec<String>)>),
    artifact: String,
    /// Every artifact content written, in order.
    contents: Vec<Vec<u8>>,
}

async fn write_artifact(source: &Target, ws: &WorkspaceRef, path: &str, bytes: &[u8]) {
    let target = workspace_artifact_key(&ws.workspace_id, Some(&key(path))).unwrap();
    source
        .storage
        .put_bytes(&target, Bytes::from(bytes.to_vec()))
        .await
        .unwrap();
    source
        .store
        .record_artifact(ws, path, bytes.len() as i64, &sha256(bytes))
        .await
        .unwrap();
}

/// An empty backup repository in a directory the test owns.
fn repository() -> (tempfile::TempDir, String, tandem_backup::repo::Repository) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let repo = tandem_backup::repo::Repository::open(&url).unwrap();
    (dir, url, repo)
}

/// A backup of region "eastus" (`source`) into `repo`.
async fn back_up(
    source: &Target,
    repo: &tandem_backup::repo::Repository,
    options: &tandem_backup::create::CreateOptions,
) -> BackupManifest {
    tandem_backup::create::create_backup(
        source.store.as_ref(),
        &source.storage,
        "eastus",
        repo,
        options,
        &tandem_backup::no_progress,
    )
    .await
    .unwrap()
}

async fn position(store: &dyn MetadataStore) -> (i64, i64) {
    let head = store.journal_position().await.unwrap().head;
    let last = store.journal_after(head - 1, None, 1).await.unwrap();
    (head, last[0].recorded_at)
}

async fn source() -> Source {
    let region = Target::open(Backend::Sqlite, "eastus", true).await;
    let store = region.store.clone();
    let created = store.create_workspace("team", "the team").await.unwrap();
    let ws = WorkspaceRef {
        workspace_id: created.workspace_id.clone(),
        name: created.name.clone(),
    };
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: "0".to_string(),
                user_id: "ada".to_string(),
                start_time: Some(1_000),
                run_name: Some("baseline".to_string()),
                tags: vec![],
            },
        )
        .await
        .unwrap();
    let run_id = run.info.run_id.clone();
    let metric = |value: f64, step: i64| Metric {
        key: "loss".to_string(),
        value,
        timestamp: 2_000 + step,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    };
    store
        .log_batch(
            &ws,
            &run_id,
            vec![metric(0.9, 0), metric(0.5, 1)],
            vec![Param {
                key: "lr".to_string(),
                value: "0.1".to_string(),
            }],
            vec![],
        )
        .await
        .unwrap();
    let artifact = format!("0/{run_id}/artifacts/model.txt");
    write_artifact(&region, &ws, &artifact, b"first model").await;
    let mut contents = vec![b"first model".to_vec()];
    let first_position = position(store.as_ref()).await;
    let first = (
        first_position.0,
        first_position.1,
        workspace_dump(store.as_ref(), &ws.workspace_id).await,
    );
    // Distinct recorded_at for the second half (the clock's resolution is 1 ms).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store
        .log_batch(&ws, &run_id, vec![metric(0.1, 2)], vec![], vec![])
        .await
        .unwrap();
    write_artifact(&region, &ws, &artifact, b"second, better model").await;
    contents.push(b"second, better model".to_vec());
    // Another workspace's records are in the same journal: never restored.
    store.create_workspace("other", "").await.unwrap();
    let second_position = position(store.as_ref()).await;
    let second = (
        second_position.0,
        second_position.1,
        workspace_dump(store.as_ref(), &ws.workspace_id).await,
    );
    assert_ne!(first.2, second.2);
    Source {
        region,
        ws,
        first,
        second,
        artifact,
        contents,
    }
}

fn request(repo: &str, point: RestorePoint) -> RestoreRequest {
    RestoreRequest {
        from: repo.to_string(),
        repository_options: Default::default(),
        workspace: Some("team".to_string()),
        point,
        region: None,
        as_name: None,
        overwrite: false,
    }
}

fn quiet(_: Progress) {}

async fn restored(target: &Target, name: &str) -> (String, Vec<(String, Vec<String>)>) {
    let workspace = target.store.get_workspace(name).await.unwrap();
    (
        workspace.workspace_id.clone(),
        workspace_dump(target.store.as_ref(), &workspace.workspace_id).await,
    )
}

async fn read(storage: &ArtifactStore, path: &ArtifactKey) -> Vec<u8> {
    let (_, mut stream) = storage.get_stream(path).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

async fn restores_a_full_backup_and_points_in_time(backend: Backend) {
    let source = source().await;
    let repo_dir = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}", repo_dir.path().display());
    let repo = ArtifactStore::open(&repo_url, &Default::default()).unwrap();
    let backups = archive(
        source.region.store.as_ref(),
        &source.contents,
        &repo,
        "eastus",
        3,
        &[source.first.0],
    )
    .await;

    // The backup itself, in place, into another region.
    let target = Target::open(backend, "westus", false).await;
    let outcome = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Backup(backups[0].clone())),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.workspace_id, source.ws.workspace_id,
        "in place keeps the id"
    );
    assert_eq!((outcome.position, outcome.artifacts), (source.first.0, 1));
    let (id, dump) = restored(&target, "team").await;
    assert_eq!(dump, source.first.2);
    let stored = workspace_artifact_key(&id, Some(&key(&source.artifact))).unwrap();
    assert_eq!(read(&target.storage, &stored).await, b"first model");
    // Restored changes are local changes of the target: journaled there.
    let journal = target.store.journal_after(0, None, 1000).await.unwrap();
    assert!(journal.iter().all(|record| record.origin_region == "westus"));
    assert_eq!(journal.len() as i64, outcome.records);
    target.finish().await;

    // The latest moment by position and by time, as new workspaces beside each other.
    let target = Target::open(backend, "westus", false).await;
    let mut by_seq = request(&repo_url, RestorePoint::Seq(source.second.0));
    by_seq.as_name = Some("team-by-seq".to_string());
    restore(target.store.as_ref(), &target.storage, &by_seq, &quiet)
        .await
        .unwrap();
    assert_eq!(restored(&target, "team-by-seq").await.1, source.second.2);
    let mut at_first = request(&repo_url, RestorePoint::At(source.first.1 + 5));
    at_first.as_name = Some("team-at-first".to_string());
    let outcome = restore(target.store.as_ref(), &target.storage, &at_first, &quiet)
        .await
        .unwrap();
    assert_eq!(
        outcome.position, source.first.0,
        "the last record before the time"
    );
    let (id, dump) = restored(&target, "team-at-first").await;
    assert_eq!(dump, source.first.2);
    let runs: Vec<_> = target
        .store
        .dump_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(table, _)| table == "runs")
        .unwrap()
        .1;
    assert_eq!(runs.len(), 2, "each copy has its own run: {runs:?}");
    let prefix = format!("workspaces/{id}/artifacts/");
    let copies: Vec<_> = target
        .objects()
        .await
        .into_iter()
        .filter(|path| path.starts_with(&prefix))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        !copies[0].contains(&source.artifact),
        "the copy's run has its own id: {copies:?}"
    );
    assert_eq!(read(&target.storage, &key(&copies[0])).await, b"first model");

    // No point given: the latest state the repository holds (the backup,
    // then every archived segment after it).
    let mut latest = request(&repo_url, RestorePoint::Latest);
    latest.as_name = Some("team-latest".to_string());
    let outcome = restore(target.store.as_ref(), &target.storage, &latest, &quiet)
        .await
        .unwrap();
    assert!(outcome.position >= source.second.0, "{outcome:?}");
    assert_eq!(restored(&target, "team-latest").await.1, source.second.2);
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn restores_into_sqlite() {
    restores_a_full_backup_and_points_in_time(Backend::Sqlite).await;
}

#[tokio::test]
async fn restores_into_postgres() {
    if std::env::var("TANDEM_SKIP_POSTGRES").is_ok_and(|value| value == "1") {
        return;
    }
    restores_a_full_backup_and_points_in_time(Backend::Postgres).await;
}

/// A repository of the source, and a fresh SQLite target region.
async fn setup() -> (
    Source,
    tempfile::TempDir,
    String,
    ArtifactStore,
    Vec<String>,
    Target,
) {
    let source = source().await;
    let repo_dir = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}", repo_dir.path().display());
    let repo = ArtifactStore::open(&repo_url, &Default::default()).unwrap();
    let backups = archive(
        source.region.store.as_ref(),
        &source.contents,
        &repo,
        "eastus",
        3,
        &[source.first.0],
    )
    .await;
    let target = Target::open(Backend::Sqlite, "westus", false).await;
    (source, repo_dir, repo_url, repo, backups, target)
}

#[tokio::test]
async fn the_record_selection_streams_the_journal_up_to_a_point() {
    let (source, _dir, repo_url, _repo, _, target) = setup().await;
    let journal = source.region.store.journal_after(0, None, 1000).await.unwrap();
    let ws_id = source.ws.workspace_id.clone();

    // One workspace, up to the first moment: its records, in journal order.
    let selection = RecordSelection::open(
        &repo_url,
        &Default::default(),
        RestorePoint::Seq(source.first.0),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (selection.region.as_str(), selection.position),
        ("eastus", source.first.0)
    );
    assert_eq!(selection.workspaces.get("team"), Some(&ws_id));
    let mut seqs = Vec::new();
    selection
        .for_each(Some(&ws_id), |record| {
            seqs.push(record.seq);
            Ok(())
        })
        .await
        .unwrap();
    let expected: Vec<i64> = journal
        .iter()
        .filter(|record| record.workspace_id == ws_id && record.seq <= source.first.0)
        .map(|record| record.seq)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(seqs, expected);

    // Every workspace, latest: the other workspace's creation too, no
    // deployment records.
    let selection = RecordSelection::open(&repo_url, &Default::default(), RestorePoint::Latest, None)
        .await
        .unwrap();
    assert_eq!(selection.position, source.second.0);
    let mut records = Vec::new();
    selection
        .for_each(None, |record| {
            records.push(record);
            Ok(())
        })
        .await
        .unwrap();
    let expected: Vec<i64> = journal
        .iter()
        .filter(|record| record.workspace_id != tandem_core::journal::DEPLOYMENT_RECORD)
        .map(|record| record.seq)
        .collect();
    assert_eq!(
        records.iter().map(|record| record.seq).collect::<Vec<_>>(),
        expected
    );
    assert!(records
        .iter()
        .any(|record| matches!(&record.change, Change::WorkspaceCreated { name, .. } if name == "other")));
    // The cursor pulls the same records, for one workspace or all.
    for workspace in [None, Some(ws_id.as_str())] {
        let mut pulled = Vec::new();
        let mut cursor = selection.cursor(workspace);
        while let Some(record) = cursor.next().await.unwrap() {
            pulled.push(record.seq);
        }
        let mut pushed = Vec::new();
        selection
            .for_each(workspace, |record| {
                pushed.push(record.seq);
                Ok(())
            })
            .await
            .unwrap();
        assert!(!pulled.is_empty());
        assert_eq!(pulled, pushed, "{workspace:?}");
    }
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn voided_and_fenced_records_are_not_selected() {
    let (source, _dir, repo_url, repo, _, target) = setup().await;
    let journal = source.region.store.journal_after(0, None, 1000).await.unwrap();
    let ws_id = source.ws.workspace_id.clone();
    let head = journal.last().unwrap().seq;
    let model = journal
        .iter()
        .rev()
        .find(|record| record.workspace_id == ws_id)
        .unwrap()
        .clone();
    let origin = journal.iter().map(|record| record.origin_seq).max().unwrap();
    let change = |seq: i64, epoch: i64| tandem_core::journal::JournalRecord {
        seq,
        origin_seq: origin + (seq - head),
        epoch,
        seen: None,
        principal: None,
        ..model.clone()
    };
    // A change of epoch E beyond the fork of epoch E+1 (fenced: it was
    // voided after it was archived), then E+1 begins, then a change voided
    // when archived, then one that stays.
    let fenced = change(head + 1, model.epoch);
    let mut began = change(head + 2, model.epoch + 1);
    began.workspace_id = tandem_core::journal::DEPLOYMENT_RECORD.to_string();
    began.change = Change::EpochBegan {
        epoch: model.epoch + 1,
        primary: model.origin_region.clone(),
        fork: BTreeMap::from([(model.origin_region.clone(), origin)]),
        time: model.recorded_at,
    };
    let voided = change(head + 3, model.epoch + 1);
    let kept = change(head + 4, model.epoch + 1);
    let mut bytes = Vec::new();
    for (record, voided) in [(&fenced, false), (&began, false), (&voided, true), (&kept, false)] {
        let archived = ArchivedRecord {
            record: record.clone(),
            voided,
        };
        bytes.extend_from_slice(&serde_json::to_vec(&archived).unwrap());
        bytes.push(b'\n');
    }
    let (data, meta) = format::segment_keys("eastus", head + 1, head + 4);
    let object = put(&repo, &data, bytes).await;
    let info = SegmentInfo {
        format: format::REPOSITORY_FORMAT,
        region: "eastus".to_string(),
        first_seq: head + 1,
        last_seq: head + 4,
        records: 4,
        bytes: object.bytes,
        sha256: object.sha256,
        first_recorded_at: model.recorded_at,
        last_recorded_at: model.recorded_at,
    };
    put(&repo, &meta, serde_json::to_vec(&info).unwrap()).await;

    let selection = RecordSelection::open(&repo_url, &Default::default(), RestorePoint::Latest, None)
        .await
        .unwrap();
    assert_eq!(selection.position, head + 4);
    let mut seqs = Vec::new();
    selection
        .for_each(Some(&ws_id), |record| {
            seqs.push(record.seq);
            Ok(())
        })
        .await
        .unwrap();
    let mut expected: Vec<i64> = journal
        .iter()
        .filter(|record| record.workspace_id == ws_id)
        .map(|record| record.seq)
        .collect();
    expected.push(head + 4);
    assert_eq!(seqs, expected, "neither the fenced nor the voided change");
    target.finish().await;
    source.region.finish().await;
}

/// Nothing was written: no workspace, no journal record, no stored object.
async fn untouched(target: &Target) {
    assert!(target
        .store
        .list_workspaces(tandem_core::model::ViewType::All)
        .await
        .unwrap()
        .is_empty());
    assert!(target.store.journal_after(0, None, 10).await.unwrap().is_empty());
    assert_eq!(target.objects().await, Vec::<String>::new());
}

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

async fn post_restore(target: &Target, body: serde_json::Value) -> (u16, Vec<serde_json::Value>) {
    // The repository the request names is the one allowed.
    let allowed = body["from"].as_str().unwrap_or_default().to_string();
    let policy = std::sync::Arc::new(tandem_backup::policy::RepositoryPolicy::new([allowed]));
    post_restore_with(target, body, policy).await
}

async fn post_restore_with(
    target: &Target,
    body: serde_json::Value,
    policy: std::sync::Arc<tandem_backup::policy::RepositoryPolicy>,
) -> (u16, Vec<serde_json::Value>) {
    use tower::ServiceExt;
    let app = tandem_backup::restore::http::routes(target.store.clone(), target.storage.clone(), policy);
    let response = app
        .oneshot(
            axum::http::Request::post("/api/tandem/v1/restores")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let lines = String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (status, lines)
}

#[tokio::test]
async fn the_route_streams_progress_then_the_result_or_the_error() {
    let (source, _dir, repo_url, _repo, backups, target) = setup().await;
    let (status, lines) = post_restore(
        &target,
        serde_json::json!({"from": repo_url, "workspace": "team", "backup": backups[0], "as": "restored"}),
    )
    .await;
    assert_eq!(status, 200);
    let (last, progress) = lines.split_last().unwrap();
    assert!(
        !progress.is_empty() && progress.iter().all(|line| line.get("progress").is_some()),
        "{lines:?}"
    );
    assert!(progress.iter().any(|line| line["progress"]["unit"] == "records"));
    assert_eq!(last["result"]["workspace"], "restored", "{lines:?}");
    assert_eq!(last["result"]["position"], source.first.0);
    assert_eq!(restored(&target, "restored").await.1, source.first.2);

    // Refused while running: the stream ends with the error.
    let (status, lines) = post_restore(
        &target,
        serde_json::json!({"from": repo_url, "workspace": "team", "backup": backups[0], "as": "restored"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines.last().unwrap()["error"]["error_code"],
        "RESOURCE_ALREADY_EXISTS",
        "{lines:?}"
    );
    // Refused before starting: a status code and one error object.
    let (status, lines) =
        post_restore(&target, serde_json::json!({"from": repo_url, "seq": 1, "at": 5})).await;
    assert_eq!(status, 400);
    assert_eq!(
        lines[0]["error_code"], "INVALID_PARAMETER_VALUE",
        "MLflow's error JSON"
    );
    // A repository the configuration does not allow, and options a request
    // may not bring: refused before anything is read.
    let elsewhere = std::sync::Arc::new(tandem_backup::policy::RepositoryPolicy::new([
        "file:///nowhere/allowed".to_string(),
    ]));
    let body = serde_json::json!({"from": repo_url, "workspace": "team", "backup": backups[0], "as": "copy"});
    let (status, lines) = post_restore_with(&target, body, elsewhere).await;
    assert_eq!(status, 403, "{lines:?}");
    assert!(
        lines[0]["message"].as_str().unwrap().contains("is not allowed"),
        "{lines:?}"
    );
    let (status, lines) = post_restore(
        &target,
        serde_json::json!({"from": repo_url, "backup": backups[0], "options": {"aws_endpoint": "http://169.254.169.254"}}),
    )
    .await;
    assert_eq!(status, 403, "{lines:?}");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("object-store options"),
        "{lines:?}"
    );
    assert!(restored_names(&target).await.iter().all(|name| name != "copy"));
    let (status, lines) =
        post_restore(&target, serde_json::json!({"from": repo_url, "backup": "nope"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        lines.last().unwrap()["error"]["error_code"],
        "RESOURCE_DOES_NOT_EXIST",
        "{lines:?}"
    );
    target.finish().await;
    source.region.finish().await;
}

async fn restored_names(target: &Target) -> Vec<String> {
    target
        .store
        .list_workspaces(tandem_core::model::ViewType::All)
        .await
        .unwrap()
        .into_iter()
        .map(|workspace| workspace.name)
        .collect()
}

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

async fn write_file(source: &Target, ws: &WorkspaceRef, path: &str, bytes: &[u8]) {
    let target = tandem_artifacts::workspace_file_key(&ws.workspace_id, Some(&key(path))).unwrap();
    source.store.check_file_write(ws, path).await.unwrap();
    source
        .storage
        .put_bytes(&target, Bytes::from(bytes.to_vec()))
        .await
        .unwrap();
    source
        .store
        .record_file(ws, path, bytes.len() as i64, &sha256(bytes))
        .await
        .unwrap();
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
