//! `backup prune`: the retention of a repository — keep the newest `keep`
//! backups of each series and every backup younger than `ttl`, delete the
//! rest with the archived journal and the blobs only they needed.
//!
//! A *series* is the backups of one region and one scope (the whole region,
//! or one workspace): a manual backup of one workspace is not pushed out by
//! the region's scheduled ones. The newest backup of a series is always
//! kept, and so is the full base of every kept incremental one.
//!
//! What goes with a pruned backup:
//! - its manifest first (from then on the backup does not exist), then its
//!   snapshot;
//! - the archived segments of a region that end at or before the oldest
//!   position a kept full backup of that region starts from — never the
//!   region's last segment (the archiver continues after it), never one a
//!   kept incremental lists; a region without a kept full backup keeps its
//!   whole archive. Description first, then data: a segment without its
//!   description is ignored by every reader;
//! - blobs no kept manifest and no remaining segment refers to. Blobs are
//!   listed before anything is read, so one written meanwhile is never a
//!   candidate.
//!
//! Concurrency: prune holds the repository alone against this process's
//! archivers and backups ([`repository_lock`]). An archiver of another
//! process (another region archiving into the same repository) may, in a
//! narrow window, reuse a blob that prune deletes; after deleting, prune
//! reads the segments archived meanwhile and copies back, from this
//! region's storage, any such blob, and reports those it could not as
//! `dangling` (`backup verify` names them too).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use tandem_artifacts::ArtifactStore;
use tandem_core::model::Millis;

use crate::archive::{copy_blob, repository_lock, Copied};
use crate::error::{BackupError, BackupResult};
use crate::format::{segment_keys, ArchivedRecord, BackupKind, BackupManifest, SegmentInfo};
use crate::repo::{segment_object, Repository};
use crate::{Progress, ProgressFn};

/// Which backups to keep. A backup is kept when either rule keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// The newest `keep` backups of each series.
    pub keep: Option<u32>,
    /// Every backup created less than `ttl` ago.
    pub ttl: Option<Duration>,
}

impl Retention {
    pub fn new(keep: Option<u32>, ttl: Option<Duration>) -> BackupResult<Retention> {
        if keep.is_none() && ttl.is_none() {
            return Err(BackupError::invalid(
                "say what to keep: keep (the newest N backups of each series) or ttl (backups younger than it), or both",
            ));
        }
        if keep == Some(0) {
            return Err(BackupError::invalid(
                "keep must be at least 1: the newest backup is always kept",
            ));
        }
        if ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(BackupError::invalid("ttl must be positive"));
        }
        Ok(Retention { keep, ttl })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PruneReport {
    pub repository: String,
    /// Nothing was deleted: the report says what would have been.
    pub dry_run: bool,
    /// Backup ids, oldest first.
    pub kept: Vec<String>,
    pub pruned: Vec<String>,
    pub segments_deleted: i64,
    pub blobs_deleted: i64,
    /// Bytes of the snapshots, segments and blobs deleted.
    pub bytes_freed: i64,
    /// Blobs deleted that a segment archived meanwhile by another process
    /// refers to and that could not be copied back (see the module doc).
    pub dangling: Vec<String>,
}

type SeriesKey = (String, Option<String>);

/// The backup ids `retention` keeps at `now`, with the bases they need.
fn kept_ids(manifests: &[BackupManifest], retention: Retention, now: Millis) -> BTreeSet<String> {
    let mut series: BTreeMap<SeriesKey, Vec<&BackupManifest>> = BTreeMap::new();
    for manifest in manifests {
        series
            .entry((manifest.region.clone(), manifest.workspace.clone()))
            .or_default()
            .push(manifest);
    }
    let horizon = retention
        .ttl
        .map(|ttl| now.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)));
    let mut kept = BTreeSet::new();
    for backups in series.values_mut() {
        // Newest first; ids sort by creation time, created_at breaks ties.
        backups.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        for (index, manifest) in backups.iter().enumerate() {
            let by_count = retention
                .keep
                .is_some_and(|keep| (index as u64) < u64::from(keep));
            let by_age = horizon.is_some_and(|horizon| manifest.created_at >= horizon);
            if index == 0 || by_count || by_age {
                kept.insert(manifest.id.clone());
            }
        }
    }
    let bases: Vec<String> = manifests
        .iter()
        .filter(|m| kept.contains(&m.id))
        .filter_map(|m| m.base.clone())
        .collect();
    kept.extend(bases);
    kept
}

/// Segments of one region that no kept backup and no restore inside the
/// retained window needs.
fn prunable_segments<'a>(
    region: &str,
    segments: &'a [SegmentInfo],
    kept: &[&BackupManifest],
) -> Vec<&'a SegmentInfo> {
    let Some(floor) = kept
        .iter()
        .filter(|m| m.region == region && m.kind == BackupKind::Full)
        .map(|m| m.position)
        .min()
    else {
        return Vec::new();
    };
    let listed: BTreeSet<&str> = kept
        .iter()
        .flat_map(|m| m.segments.iter().map(|s| s.key.as_str()))
        .collect();
    let last = segments.iter().map(|s| s.last_seq).max();
    segments
        .iter()
        .filter(|s| s.last_seq <= floor && Some(s.last_seq) != last)
        .filter(|s| !listed.contains(segment_keys(region, s.first_seq, s.last_seq).0.as_str()))
        .collect()
}

/// The records of a segment that write content, with their digests
/// (streamed; the segment checked against its description at the end).
async fn segment_digests(
    repo: &Repository,
    segment: &SegmentInfo,
) -> BackupResult<Vec<(String, ArchivedRecord)>> {
    let mut reader = repo.records(&segment_object(segment)).await?;
    let mut found = Vec::new();
    while let Some(archived) = reader.next().await? {
        if let Some(content) = archived.record.change.written_content() {
            found.push((content.sha256.to_string(), archived));
        }
    }
    Ok(found)
}

/// Applies `retention` to the repository at `now` (ms since the epoch).
/// `storage` is the region's own, used only to copy back a blob another
/// process reused while it was being deleted.
pub async fn prune(
    repo: &Repository,
    storage: Option<&ArtifactStore>,
    retention: Retention,
    now: Millis,
    dry_run: bool,
    progress: ProgressFn<'_>,
) -> BackupResult<PruneReport> {
    repo.info().await?;
    let exclusive = repository_lock(repo.url());
    let _exclusive = exclusive.write().await;

    // Blobs first: whatever is written from now on is not a candidate.
    let blobs = match repo.storage().list_recursive(Some(&repo.key("blobs")?)).await {
        Ok(listing) => listing,
        Err(error) if error.is_not_found() => Vec::new(),
        Err(error) => return Err(BackupError::repository(repo.url(), error)),
    };
    let manifests = repo.manifests().await?;
    let kept_set = kept_ids(&manifests, retention, now);
    let (kept, pruned): (Vec<&BackupManifest>, Vec<&BackupManifest>) =
        manifests.iter().partition(|m| kept_set.contains(&m.id));

    let mut referenced: BTreeSet<String> = kept
        .iter()
        .flat_map(|m| m.workspaces.iter())
        .flat_map(|w| w.artifacts.iter().chain(w.files.iter()))
        .map(|entry| entry.sha256.clone())
        .collect();
    let mut doomed_segments: Vec<(String, SegmentInfo)> = Vec::new();
    let mut known_segments: BTreeSet<String> = BTreeSet::new();
    let regions = repo.regions().await?;
    let mut read = 0;
    for region in &regions {
        let segments = repo.segments(region).await?;
        let doomed: BTreeSet<i64> = prunable_segments(region, &segments, &kept)
            .into_iter()
            .map(|s| s.first_seq)
            .collect();
        for segment in segments {
            known_segments.insert(segment_keys(region, segment.first_seq, segment.last_seq).1);
            if doomed.contains(&segment.first_seq) {
                doomed_segments.push((region.clone(), segment));
            } else {
                for (digest, _) in segment_digests(repo, &segment).await? {
                    referenced.insert(digest);
                }
                read += 1;
                progress(Progress::new("reading the archive", read, 0, "segments"));
            }
        }
    }
    let doomed_blobs: Vec<(String, u64)> = blobs
        .into_iter()
        // Only objects this format wrote: a stranger's file under `blobs/`
        // is not ours to delete.
        .filter(|entry| !entry.is_dir && crate::format::is_blob_key(&entry.path))
        .filter_map(|entry| {
            let digest = entry.path.rsplit('/').next()?.to_string();
            (!referenced.contains(&digest)).then(|| (entry.path, entry.size.unwrap_or(0)))
        })
        .collect();

    let mut report = PruneReport {
        repository: repo.url().to_string(),
        dry_run,
        kept: kept.iter().map(|m| m.id.clone()).collect(),
        pruned: pruned.iter().map(|m| m.id.clone()).collect(),
        segments_deleted: doomed_segments.len() as i64,
        blobs_deleted: doomed_blobs.len() as i64,
        bytes_freed: pruned
            .iter()
            .filter_map(|m| m.snapshot.as_ref().map(|s| s.bytes))
            .chain(doomed_segments.iter().map(|(_, s)| s.bytes))
            .sum::<i64>()
            + doomed_blobs.iter().map(|(_, size)| *size as i64).sum::<i64>(),
        dangling: Vec::new(),
    };
    if dry_run {
        return Ok(report);
    }

    let total = (pruned.len() + doomed_segments.len() + doomed_blobs.len()) as i64;
    let mut done = 0;
    let step = |done: &mut i64| {
        *done += 1;
        progress(Progress::new("deleting", *done, total, "objects"));
    };
    for manifest in &pruned {
        // The manifest first: from here on the backup does not exist.
        repo.delete(&crate::format::manifest_key(&manifest.id)).await?;
        // Its snapshot, by the key this format gives it; nothing else under
        // `backups/<id>/` is assumed to be ours.
        repo.delete(&crate::format::snapshot_key(&manifest.id)).await?;
        repo.delete(&crate::format::access_key(&manifest.id)).await?;
        step(&mut done);
    }
    for (region, segment) in &doomed_segments {
        let (data, info) = segment_keys(region, segment.first_seq, segment.last_seq);
        repo.delete(&info).await?;
        repo.delete(&data).await?;
        step(&mut done);
    }
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    for (key, _) in &doomed_blobs {
        repo.delete(key).await?;
        if let Some(digest) = key.rsplit('/').next() {
            deleted.insert(digest.to_string());
        }
        step(&mut done);
    }

    // Segments another process archived meanwhile: put back what they need.
    if !deleted.is_empty() {
        for region in repo.regions().await? {
            for segment in repo.segments(&region).await? {
                let info = segment_keys(&region, segment.first_seq, segment.last_seq).1;
                if known_segments.contains(&info) {
                    continue;
                }
                for (digest, archived) in segment_digests(repo, &segment).await? {
                    if !deleted.contains(&digest) {
                        continue;
                    }
                    let content = archived
                        .record
                        .change
                        .written_content()
                        .expect("segment_digests keeps content records");
                    let restored = match storage {
                        Some(storage) => matches!(
                            copy_blob(storage, repo, &archived.record.workspace_id, content).await?,
                            Copied::Now(_) | Copied::Already
                        ),
                        None => false,
                    };
                    if !restored {
                        tracing::warn!(repository = %repo.url(), blob = %digest, segment = %info, "a blob pruned while another process archived a record naming it");
                        report.dangling.push(digest);
                    }
                }
            }
        }
    }
    tracing::info!(
        repository = %repo.url(),
        pruned = report.pruned.len(),
        kept = report.kept.len(),
        segments = report.segments_deleted,
        blobs = report.blobs_deleted,
        bytes = report.bytes_freed,
        "pruned backups"
    );
    Ok(report)
}

/// Parses `--ttl`-style durations: `500ms`, `30s`, `15m`, `12h`, `30d`.
pub fn parse_ttl(value: &str) -> BackupResult<Duration> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| BackupError::invalid(format!("'{value}' is not a duration like 30d or 12h")))?;
    let millis = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(BackupError::invalid(format!(
                "unknown duration unit '{other}' in '{value}': use ms, s, m, h or d"
            )))
        }
    };
    Ok(Duration::from_millis(number.saturating_mul(millis)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ObjectRef, REPOSITORY_FORMAT};

    fn manifest(
        id: &str,
        kind: BackupKind,
        base: Option<&str>,
        created_at: Millis,
        position: i64,
    ) -> BackupManifest {
        BackupManifest {
            format: REPOSITORY_FORMAT,
            id: id.to_string(),
            kind,
            base: base.map(str::to_string),
            region: "eastus".to_string(),
            position,
            position_recorded_at: created_at,
            created_at,
            workspace: None,
            workspaces: Vec::new(),
            snapshot: (kind == BackupKind::Full).then(|| ObjectRef {
                key: format!("backups/{id}/snapshot.ndjson"),
                bytes: 1,
                sha256: String::new(),
            }),
            segments: Vec::new(),
            copied_bytes: 0,
            copied_blobs: 0,
            access: None,
        }
    }

    const DAY: Millis = 86_400_000;

    #[test]
    fn keeps_the_newest_the_young_and_the_bases_they_need() {
        use BackupKind::{Full, Incremental};
        let manifests = vec![
            manifest("a", Full, None, DAY, 10),
            manifest("b", Incremental, Some("a"), 2 * DAY, 20),
            manifest("c", Full, None, 3 * DAY, 30),
            manifest("d", Incremental, Some("c"), 4 * DAY, 40),
            manifest("e", Incremental, Some("c"), 5 * DAY, 50),
        ];
        let keep = |keep, ttl| {
            kept_ids(&manifests, Retention { keep, ttl }, 5 * DAY)
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keep(Some(1), None),
            ["c", "e"],
            "the base of a kept incremental stays"
        );
        assert_eq!(keep(Some(3), None), ["c", "d", "e"]);
        assert_eq!(keep(Some(4), None), ["a", "b", "c", "d", "e"]);
        let two_days = Some(Duration::from_millis(2 * DAY as u64));
        assert_eq!(keep(None, two_days), ["c", "d", "e"]);
        assert_eq!(
            keep(Some(4), two_days),
            ["a", "b", "c", "d", "e"],
            "either rule keeps"
        );
        // However old, the newest of a series stays.
        let old = kept_ids(
            &manifests,
            Retention {
                keep: None,
                ttl: two_days,
            },
            100 * DAY,
        );
        assert_eq!(old.into_iter().collect::<Vec<_>>(), ["c", "e"]);
    }

    #[test]
    fn series_are_kept_apart() {
        let mut one = manifest("w1", BackupKind::Full, None, DAY, 5);
        one.workspace = Some("team".to_string());
        let manifests = vec![
            one,
            manifest("r1", BackupKind::Full, None, 2 * DAY, 6),
            manifest("r2", BackupKind::Full, None, 3 * DAY, 7),
        ];
        let kept = kept_ids(
            &manifests,
            Retention {
                keep: Some(1),
                ttl: None,
            },
            3 * DAY,
        );
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), ["r2", "w1"]);
    }

    #[test]
    fn segments_go_behind_the_oldest_kept_full_never_the_last() {
        let segment = |first, last| SegmentInfo {
            format: REPOSITORY_FORMAT,
            region: "eastus".to_string(),
            first_seq: first,
            last_seq: last,
            records: last - first + 1,
            bytes: 1,
            sha256: String::new(),
            first_recorded_at: 0,
            last_recorded_at: 0,
        };
        let segments = vec![segment(1, 10), segment(11, 20), segment(21, 30), segment(31, 40)];
        let full = manifest("c", BackupKind::Full, None, DAY, 25);
        let firsts = |kept: &[&BackupManifest]| {
            prunable_segments("eastus", &segments, kept)
                .into_iter()
                .map(|s| s.first_seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(firsts(&[&full]), [1, 11], "21..30 holds records after 25");
        assert!(firsts(&[]).is_empty(), "no full backup: the whole archive stays");
        let at_end = manifest("z", BackupKind::Full, None, DAY, 40);
        assert_eq!(firsts(&[&at_end]), [1, 11, 21], "the last segment stays");
        let mut other = manifest("o", BackupKind::Full, None, DAY, 40);
        other.region = "westus".to_string();
        assert!(
            firsts(&[&other]).is_empty(),
            "another region's backups say nothing here"
        );
    }

    #[test]
    fn retention_needs_a_rule_and_ttls_parse() {
        assert!(Retention::new(None, None).is_err());
        assert!(Retention::new(Some(0), None).is_err());
        assert!(Retention::new(Some(2), None).is_ok());
        assert_eq!(parse_ttl("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_ttl("12h").unwrap(), Duration::from_secs(12 * 3_600));
        assert!(parse_ttl("3 weeks").is_err());
        assert!(parse_ttl("").is_err());
    }
}
