//! `backup create`: a consistent backup of a region's workspaces at one
//! journal position. Full backups hold a snapshot (the scope's records up to
//! the position); incremental ones hold the archived segments since their
//! full base. Both list every artifact that exists at the position, whose
//! bytes are in `blobs/` by digest: an unchanged artifact is never copied
//! twice.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tandem_artifacts::ArtifactStore;
use tandem_core::journal::{Change, ContentArea, JournalRecord, WrittenContent};
use tandem_core::model::ViewType;
use tandem_store::MetadataStore;

use crate::archive::{archive_sharing, copy_blob, repository_lock, Copied};
use crate::error::{BackupError, BackupResult};
use crate::format::{
    blob_key, manifest_key, segment_keys, snapshot_key, ArchivedRecord, BackupKind, BackupManifest,
    ContentEntry, ObjectRef, WorkspaceEntry, REPOSITORY_FORMAT,
};
use crate::repo::Repository;
use crate::{now_millis, Progress, ProgressFn};

/// Journal records read from the store per step.
const PAGE: i64 = 2_000;

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// A workspace's name or id; None: every workspace of the region.
    pub workspace: Option<String>,
    /// A full backup even when an incremental one could build on a full one.
    pub full: bool,
}

/// The state of one workspace the backup tracks while reading the journal.
#[derive(Default)]
struct Tracked {
    name: String,
    records: i64,
    artifacts: BTreeMap<String, ContentEntry>,
    files: BTreeMap<String, ContentEntry>,
}

impl Tracked {
    fn area(&mut self, area: ContentArea) -> &mut BTreeMap<String, ContentEntry> {
        match area {
            ContentArea::Artifacts => &mut self.artifacts,
            ContentArea::Files => &mut self.files,
        }
    }

    fn apply(&mut self, record: &JournalRecord) {
        self.records += 1;
        if let Change::WorkspaceCreated { name, .. } = &record.change {
            self.name = name.clone();
        } else if let Some(content) = record.change.written_content() {
            self.area(content.area).insert(
                content.path.to_string(),
                ContentEntry {
                    path: content.path.to_string(),
                    size: content.size,
                    sha256: content.sha256.to_string(),
                },
            );
        } else if let Some((area, path)) = record.change.deleted_content() {
            // A deleted path takes everything under it (as storage does).
            let below = format!("{path}/");
            self.area(area)
                .retain(|key, _| key != path && !key.starts_with(&below));
        }
    }
}

/// The records a backup keeps: of its workspaces, never voided ones, never
/// deployment records (epochs belong to the region, not to a workspace).
fn in_scope(record: &JournalRecord, voided: bool, scope: &Option<String>) -> bool {
    !voided
        && record.workspace_id != tandem_core::journal::DEPLOYMENT_RECORD
        && scope.as_ref().is_none_or(|id| &record.workspace_id == id)
}

/// Creates a backup of `region`'s workspaces (or one) into `repo`.
pub async fn create_backup(
    store: &dyn MetadataStore,
    storage: &ArtifactStore,
    region: &str,
    repo: &Repository,
    options: &CreateOptions,
    progress: ProgressFn<'_>,
) -> BackupResult<BackupManifest> {
    let timer = std::time::Instant::now();
    let made = create_backup_timed(store, storage, region, repo, options, progress).await;
    let (kind, outcome) = match &made {
        Ok(manifest) => (manifest.kind.label(), "created"),
        Err(_) => ("unknown", "failed"),
    };
    metrics::counter!("tandem_backups_total", "kind" => kind, "outcome" => outcome).increment(1);
    if made.is_ok() {
        metrics::histogram!("tandem_backup_duration_seconds", "kind" => kind)
            .record(timer.elapsed().as_secs_f64());
    }
    made
}

async fn create_backup_timed(
    store: &dyn MetadataStore,
    storage: &ArtifactStore,
    region: &str,
    repo: &Repository,
    options: &CreateOptions,
    progress: ProgressFn<'_>,
) -> BackupResult<BackupManifest> {
    let started = now_millis();
    let position = store.journal_position().await?.head;
    let scope = match &options.workspace {
        None => None,
        Some(wanted) => {
            let workspaces = store.list_workspaces(ViewType::All).await?;
            let found = workspaces
                .iter()
                .find(|w| &w.workspace_id == wanted)
                .or_else(|| workspaces.iter().find(|w| &w.name == wanted))
                .ok_or_else(|| {
                    BackupError::not_found(format!(
                        "Workspace '{wanted}' does not exist in region '{region}'"
                    ))
                })?;
            Some((found.workspace_id.clone(), found.name.clone()))
        }
    };
    let scope_id = scope.as_ref().map(|(id, _)| id.clone());
    let scope_name = scope.as_ref().map(|(_, name)| name.clone());

    // Shared with other writers for the whole backup: a blob found present
    // below must stay so until the manifest naming it is written.
    let shared = repository_lock(repo.url());
    let _shared = shared.read().await;
    let archived = archive_sharing(store, storage, repo, region, position, progress).await?;
    let base = if options.full {
        None
    } else {
        repo.manifests()
            .await?
            .into_iter()
            .filter(|m| {
                m.kind == BackupKind::Full
                    && m.region == region
                    && m.workspace == scope_name
                    && m.position <= position
            })
            .max_by_key(|m| m.position)
    };

    let id = backup_id(started);
    let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
    let mut position_recorded_at = 0;
    let (snapshot, segments, from) = match &base {
        None => {
            let snapshot =
                write_snapshot(store, repo, &id, position, &scope_id, &mut tracked, progress).await?;
            (Some(snapshot), Vec::new(), 0)
        }
        Some(base) => {
            for entry in &base.workspaces {
                tracked.insert(
                    entry.workspace_id.clone(),
                    Tracked {
                        name: entry.name.clone(),
                        records: entry.records,
                        artifacts: entry
                            .artifacts
                            .iter()
                            .map(|a| (a.path.clone(), a.clone()))
                            .collect(),
                        files: entry.files.iter().map(|f| (f.path.clone(), f.clone())).collect(),
                    },
                );
            }
            let segments = repo
                .segments(region)
                .await?
                .into_iter()
                .filter(|s| s.last_seq > base.position && s.first_seq <= position)
                .map(|s| ObjectRef {
                    key: segment_keys(region, s.first_seq, s.last_seq).0,
                    bytes: s.bytes,
                    sha256: s.sha256,
                })
                .collect();
            (None, segments, base.position)
        }
    };
    // Incremental: follow the journal from the base to the position (full:
    // the snapshot did). Either way the tracked state is at the position.
    let mut after = if base.is_some() { from } else { position };
    while after < position {
        let page = store
            .journal_entries_after(after, PAGE.min(position - after))
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = last.seq;
        for (record, voided) in &page {
            if in_scope(record, *voided, &scope_id) {
                tracked
                    .entry(record.workspace_id.clone())
                    .or_default()
                    .apply(record);
            }
        }
    }
    if position > 0 {
        if let Some((record, _)) = store.journal_entries_after(position - 1, 1).await?.first() {
            position_recorded_at = record.recorded_at;
        }
    }

    // Every artifact and file at the position must be in blobs/: the
    // archiver copied those it met; copy what it could not have (a backup
    // into a new place).
    let total: i64 = tracked
        .values()
        .map(|t| (t.artifacts.len() + t.files.len()) as i64)
        .sum();
    let (mut copied_blobs, mut copied_bytes) = (archived.copied_blobs, archived.copied_bytes);
    let mut done = 0;
    for (workspace_id, state) in &tracked {
        let contents = state
            .artifacts
            .values()
            .map(|entry| (ContentArea::Artifacts, entry))
            .chain(state.files.values().map(|entry| (ContentArea::Files, entry)));
        for (area, entry) in contents {
            done += 1;
            if repo.head(&blob_key(&entry.sha256)).await? == Some(entry.size as u64) {
                continue;
            }
            let content = WrittenContent {
                area,
                path: &entry.path,
                size: entry.size,
                sha256: &entry.sha256,
            };
            match copy_blob(storage, repo, workspace_id, content).await? {
                Copied::Already => {}
                Copied::Now(bytes) => {
                    copied_blobs += 1;
                    copied_bytes += bytes;
                }
                Copied::Missing => {
                    return Err(BackupError::conflict(format!(
                        "{} '{}' of workspace {workspace_id} changed after journal position {position} before its content was archived; create the backup again",
                        if area == ContentArea::Files { "file" } else { "artifact" },
                        entry.path
                    )))
                }
            }
            progress(Progress::new("copying artifacts and files", done, total, "files"));
        }
    }

    let manifest = BackupManifest {
        format: REPOSITORY_FORMAT,
        id: id.clone(),
        kind: if base.is_some() {
            BackupKind::Incremental
        } else {
            BackupKind::Full
        },
        base: base.as_ref().map(|b| b.id.clone()),
        region: region.to_string(),
        position,
        position_recorded_at,
        created_at: started,
        workspace: scope_name,
        workspaces: tracked
            .into_iter()
            .map(|(workspace_id, state)| WorkspaceEntry {
                workspace_id,
                name: state.name,
                records: state.records,
                artifacts: state.artifacts.into_values().collect(),
                files: state.files.into_values().collect(),
            })
            .collect(),
        snapshot,
        segments,
        copied_bytes,
        copied_blobs,
        access: Some(
            repo.put_json(
                &crate::format::access_key(&id),
                &crate::format::AccessDocument {
                    format: REPOSITORY_FORMAT,
                    access: store.access_snapshot().await?,
                },
            )
            .await?,
        ),
    };
    // Written last: a backup exists once its manifest does.
    repo.put_json(&manifest_key(&id), &manifest).await?;
    tracing::info!(repository = %repo.url(), backup = %id, kind = ?manifest.kind, position, copied_bytes, "backup created");
    Ok(manifest)
}

/// Streams the scope's records up to `position` into the snapshot, tracking
/// each workspace's state on the way.
async fn write_snapshot(
    store: &dyn MetadataStore,
    repo: &Repository,
    id: &str,
    position: i64,
    scope: &Option<String>,
    tracked: &mut BTreeMap<String, Tracked>,
    progress: ProgressFn<'_>,
) -> BackupResult<ObjectRef> {
    let (mut sender, receiver) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let key = snapshot_key(id);
    let produce = async {
        let mut after = 0;
        while after < position {
            let page = store
                .journal_entries_after(after, PAGE.min(position - after))
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = last.seq;
            let mut lines = Vec::new();
            for (record, voided) in page {
                if in_scope(&record, voided, scope) {
                    tracked
                        .entry(record.workspace_id.clone())
                        .or_default()
                        .apply(&record);
                    let archived = ArchivedRecord {
                        record,
                        voided: false,
                    };
                    serde_json::to_writer(&mut lines, &archived).expect("records always encode");
                    lines.push(b'\n');
                }
            }
            if !lines.is_empty() && sender.send(Ok(Bytes::from(lines))).await.is_err() {
                break; // the upload failed; its error is reported below
            }
            progress(Progress::new("writing snapshot", after, position, "records"));
        }
        drop(sender);
        Ok::<(), BackupError>(())
    };
    let (produced, written) = futures::join!(produce, repo.put_stream(&key, receiver.boxed()));
    produced?;
    written
}

/// `YYYYMMDDTHHMMSSZ-<8 hex>`: sorts by creation time.
pub fn backup_id(now: i64) -> String {
    let seconds = now.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z-{:08x}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        rand::random::<u32>()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backup_ids_carry_the_utc_time() {
        // 2026-11-22T09:18:40Z
        let id = super::backup_id(1_795_339_120_000);
        assert!(id.starts_with("20261122T091840Z-"), "{id}");
        assert_eq!(id.len(), "20261122T091840Z-".len() + 8);
    }
}
