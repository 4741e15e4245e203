//! Restore, end to end at the library level: a source store's journal and
//! artifacts archived into a repository (by `archive`, a test-only writer of
//! the repository format: the real writer lives in another part of the
//! crate), restored into SQLite and PostgreSQL targets.

mod http;
mod points;
mod refusals;
mod repository;

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
