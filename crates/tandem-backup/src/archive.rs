//! Continuous archiving: a region's journal, in segments, and the bytes of
//! every artifact it records, by content, into a backup repository. What
//! point-in-time restore replays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tandem_artifacts::{workspace_content_key, ArtifactStore};
use tandem_core::journal::WrittenContent;
use tandem_store::MetadataStore;

use crate::error::{BackupError, BackupResult};
use crate::format::{blob_key, segment_keys, ArchivedRecord, SegmentInfo, REPOSITORY_FORMAT};
use crate::repo::Repository;
use crate::{now_millis, Progress, ProgressFn};

/// At most this many records per segment.
pub const SEGMENT_RECORDS: i64 = 10_000;
/// A segment is closed once it holds this many bytes.
pub const SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// What one call of [`archive_until`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ArchiveOutcome {
    pub segments: i64,
    pub records: i64,
    /// The last archived position of the region's journal.
    pub archived_to: i64,
    pub copied_blobs: i64,
    pub copied_bytes: i64,
    /// Artifacts whose recorded content the region's storage no longer held
    /// (overwritten or deleted before they were archived).
    pub missing: Vec<String>,
}

/// One archiver at a time per repository and region in this process: two
/// would cut the same journal range into different segments.
fn archive_lock(repository: &str, region: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: Mutex<Option<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = Mutex::new(None);
    let mut locks = LOCKS.lock().expect("archive locks poisoned");
    locks
        .get_or_insert_with(HashMap::new)
        .entry(format!("{repository}\n{region}"))
        .or_default()
        .clone()
}

/// Writers of a repository in this process share it; `prune` takes it
/// alone, so no archiver here can count on a blob (present when it looked)
/// that a prune is about to delete.
pub(crate) fn repository_lock(repository: &str) -> Arc<tokio::sync::RwLock<()>> {
    static LOCKS: Mutex<Option<HashMap<String, Arc<tokio::sync::RwLock<()>>>>> = Mutex::new(None);
    let mut locks = LOCKS.lock().expect("repository locks poisoned");
    locks
        .get_or_insert_with(HashMap::new)
        .entry(repository.to_string())
        .or_default()
        .clone()
}

/// Archives `region`'s journal up to `upto` (or as far as it goes) after
/// what the repository already holds, copying the bytes of every artifact
/// the new records wrote. Segments are written data first, then their
/// description, so a segment without its `.json` is ignored and rewritten.
pub async fn archive_until(
    store: &dyn MetadataStore,
    storage: &ArtifactStore,
    repo: &Repository,
    region: &str,
    upto: i64,
    progress: ProgressFn<'_>,
) -> BackupResult<ArchiveOutcome> {
    let shared = repository_lock(repo.url());
    let _shared = shared.read().await;
    archive_sharing(store, storage, repo, region, upto, progress).await
}

/// [`archive_until`] for a caller that holds [`repository_lock`] shared
/// already (a second `read()` could wait behind a queued prune forever).
pub(crate) async fn archive_sharing(
    store: &dyn MetadataStore,
    storage: &ArtifactStore,
    repo: &Repository,
    region: &str,
    upto: i64,
    progress: ProgressFn<'_>,
) -> BackupResult<ArchiveOutcome> {
    let outcome = archive_locked(store, storage, repo, region, upto, progress).await;
    if let Ok(archived) = &outcome {
        metrics::counter!("tandem_archive_records_total").increment(archived.records.max(0) as u64);
    }
    outcome
}

async fn archive_locked(
    store: &dyn MetadataStore,
    storage: &ArtifactStore,
    repo: &Repository,
    region: &str,
    upto: i64,
    progress: ProgressFn<'_>,
) -> BackupResult<ArchiveOutcome> {
    let lock = archive_lock(repo.url(), region);
    let _guard = lock.lock().await;
    repo.init(now_millis()).await?;
    let mut last = repo
        .segments(region)
        .await?
        .last()
        .map(|segment| segment.last_seq)
        .unwrap_or(0);
    let mut outcome = ArchiveOutcome {
        archived_to: last,
        ..ArchiveOutcome::default()
    };
    let total = (upto - last).max(0);
    while last < upto {
        let entries = store
            .journal_entries_after(last, SEGMENT_RECORDS.min(upto - last))
            .await?;
        if entries.is_empty() {
            break;
        }
        let mut lines = Vec::new();
        let mut records = Vec::new();
        for (record, voided) in entries {
            let archived = ArchivedRecord { record, voided };
            serde_json::to_writer(&mut lines, &archived).expect("records always encode");
            lines.push(b'\n');
            records.push(archived);
            if lines.len() >= SEGMENT_BYTES {
                break;
            }
        }
        for archived in records.iter().filter(|archived| !archived.voided) {
            // Artifacts and files of the workspace file share alike: their
            // bytes by digest.
            if let Some(content) = archived.record.change.written_content() {
                let workspace_id = &archived.record.workspace_id;
                match copy_blob(storage, repo, workspace_id, content).await? {
                    Copied::Already => {}
                    Copied::Now(bytes) => {
                        outcome.copied_blobs += 1;
                        outcome.copied_bytes += bytes;
                    }
                    Copied::Missing => outcome.missing.push(format!(
                        "{workspace_id}/{}/{}",
                        content.area.as_str(),
                        content.path
                    )),
                }
            }
        }
        let first = records.first().expect("non-empty").record.seq;
        let last_record = &records.last().expect("non-empty").record;
        let (data_key, info_key) = segment_keys(region, first, last_record.seq);
        let data = repo.put(&data_key, Bytes::from(lines)).await?;
        let info = SegmentInfo {
            format: REPOSITORY_FORMAT,
            region: region.to_string(),
            first_seq: first,
            last_seq: last_record.seq,
            records: records.len() as i64,
            bytes: data.bytes,
            sha256: data.sha256,
            first_recorded_at: records[0].record.recorded_at,
            last_recorded_at: last_record.recorded_at,
        };
        repo.put_json(&info_key, &info).await?;
        outcome.segments += 1;
        outcome.records += info.records;
        last = info.last_seq;
        outcome.archived_to = last;
        progress(Progress::new(
            "archiving journal",
            total - (upto - last).max(0),
            total,
            "records",
        ));
    }
    if !outcome.missing.is_empty() {
        tracing::warn!(repository = %repo.url(), missing = ?outcome.missing, "artifacts changed before they were archived");
    }
    Ok(outcome)
}

pub(crate) enum Copied {
    Already,
    Now(i64),
    Missing,
}

/// Copies an artifact's bytes into `blobs/` unless the repository has them,
/// checking on the way that they are the recorded content.
pub(crate) async fn copy_blob(
    storage: &ArtifactStore,
    repo: &Repository,
    workspace_id: &str,
    content: WrittenContent<'_>,
) -> BackupResult<Copied> {
    let (size, sha256) = (content.size, content.sha256);
    let key = blob_key(sha256);
    if repo.head(&key).await? == Some(size as u64) {
        return Ok(Copied::Already);
    }
    let source = workspace_content_key(workspace_id, content.area.as_str(), content.path)
        .map_err(|error| BackupError::corrupt(error.to_string()))?;
    let stream = match storage.get_stream(&source).await {
        Ok((_, stream)) => stream,
        Err(error) if error.is_not_found() => return Ok(Copied::Missing),
        Err(error) => return Err(BackupError::storage(error)),
    };
    let body = stream.map(|chunk| chunk.map_err(std::io::Error::other));
    let written = repo.put_stream(&key, Box::pin(body)).await?;
    if written.sha256 != sha256 || written.bytes != size {
        // The path holds other content now: not what this record wrote.
        repo.delete(&key).await?;
        return Ok(Copied::Missing);
    }
    Ok(Copied::Now(written.bytes))
}
