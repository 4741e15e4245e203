//! The backup repository format, version [`REPOSITORY_FORMAT`].
//!
//! A repository is a prefix of any object store Tandem's storage can open
//! (`file://`, `memory://`, `s3://`, `az://`, `gs://`). Its layout:
//!
//! ```text
//! tandem-backup.json                               RepositoryInfo
//! journal/<region>/<first>-<last>.ndjson           a journal segment: ArchivedRecord per line
//! journal/<region>/<first>-<last>.json             SegmentInfo of that segment
//! blobs/sha256/<d[0..2]>/<d[2..4]>/<digest>         artifact and file bytes, by content
//! backups/<backup id>/snapshot.ndjson              full backups: ArchivedRecord per line
//! backups/<backup id>/manifest.json                BackupManifest (written last)
//! ```
//!
//! `<first>` and `<last>` are zero-padded to 20 digits so that listing order
//! is journal order. Every object is written once and never modified: a
//! segment or blob that exists is complete (object stores make a put visible
//! only when it is whole), and a backup exists once its manifest does.
//!
//! Versioning: every JSON document carries `format`. A reader accepts every
//! format up to its own and refuses newer ones with a clear error; a writer
//! always writes its own. `tests/fixtures/repository-v<N>/` holds a
//! repository written by format `N`, read by the tests of every later build.

use serde::{Deserialize, Serialize};
use tandem_core::journal::JournalRecord;
use tandem_core::model::Millis;

/// The format this build writes, and the newest it reads.
pub const REPOSITORY_FORMAT: u32 = 1;

/// `tandem-backup.json`: marks a prefix as a backup repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryInfo {
    pub format: u32,
    /// When the repository was first written to (ms since the epoch).
    pub created_at: Millis,
}

/// One journal record as archived: the record as the journal API serves it,
/// and whether the region had voided it (fenced, see the failover design)
/// when it was archived. A restore also re-derives fencing from the
/// `epoch_began` records it reads, because a record can be voided after it
/// was archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRecord {
    #[serde(flatten)]
    pub record: JournalRecord,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voided: bool,
}

/// `journal/<region>/<first>-<last>.json`: describes one segment, written
/// after the segment itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentInfo {
    pub format: u32,
    /// The region whose journal this is (sequence numbers are its own).
    pub region: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub records: i64,
    /// Size and SHA-256 of the `.ndjson` object.
    pub bytes: i64,
    pub sha256: String,
    /// `recorded_at` of the first and last record: lets a point-in-time
    /// restore find the segments around a moment without reading them.
    pub first_recorded_at: Millis,
    pub last_recorded_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// Holds a snapshot: the records of its workspaces up to `position`.
    Full,
    /// Holds no snapshot: its base's snapshot plus the archived segments
    /// after the base's position rebuild it.
    Incremental,
}

impl BackupKind {
    /// The kind's name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        }
    }
}

/// An object of the repository with its size and digest (checked by
/// `verify` and before every restore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub key: String,
    pub bytes: i64,
    pub sha256: String,
}

/// An artifact or file of a workspace at the backup's position; its bytes
/// are at [`blob_key`]`(sha256)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentEntry {
    /// Relative to the workspace's artifact root (or file share root).
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceEntry {
    pub workspace_id: String,
    pub name: String,
    /// Journal records of this workspace up to the backup's position.
    pub records: i64,
    pub artifacts: Vec<ContentEntry>,
    #[serde(default)]
    pub files: Vec<ContentEntry>,
}

/// `backups/<id>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub format: u32,
    /// Sorts by creation time: `YYYYMMDDTHHMMSSZ-<8 hex>`.
    pub id: String,
    pub kind: BackupKind,
    /// The full backup an incremental one builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The region whose journal `position` counts in.
    pub region: String,
    /// The backup holds every record of its workspaces with `seq <= position`.
    pub position: i64,
    /// `recorded_at` of the record at `position` (what `--at` compares with).
    pub position_recorded_at: Millis,
    pub created_at: Millis,
    /// `None` when the backup covers every workspace of the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub workspaces: Vec<WorkspaceEntry>,
    /// Full backups: `backups/<id>/snapshot.ndjson`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<ObjectRef>,
    /// Incremental backups: the segments covering `(base.position, position]`.
    #[serde(default)]
    pub segments: Vec<ObjectRef>,
    /// Bytes this backup copied into `blobs/` (the rest were there already).
    pub copied_bytes: i64,
    pub copied_blobs: i64,
    /// `backups/<id>/access.json`: principals, tokens and role assignments
    /// when the backup was made (hashes only, never secrets), for restores
    /// into a deployment that lacks them. An object of its own, so that
    /// listing backups never shows a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<ObjectRef>,
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// Reads a versioned JSON document, refusing formats newer than this build's.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, FormatError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| FormatError(format!("{what} is not valid JSON: {error}")))?;
    let format = value
        .get("format")
        .and_then(|format| format.as_u64())
        .ok_or_else(|| FormatError(format!("{what} has no 'format': not written by Tandem")))?;
    if format > u64::from(REPOSITORY_FORMAT) {
        return Err(FormatError(format!(
            "{what} has format {format}, newer than this build reads ({REPOSITORY_FORMAT}): upgrade tandem"
        )));
    }
    serde_json::from_value(value).map_err(|error| FormatError(format!("{what} is malformed: {error}")))
}

pub const REPOSITORY_INFO_KEY: &str = "tandem-backup.json";

/// `blobs/sha256/ab/cd/abcd…`: two levels of fan-out keep listings small.
pub fn blob_key(sha256: &str) -> String {
    format!("blobs/sha256/{}/{}/{sha256}", &sha256[..2], &sha256[2..4])
}

/// Whether `key` is a blob key this format writes (`blobs/sha256/ab/cd/`
/// and 64 lowercase hex digits starting `abcd`): what prune may delete
/// under `blobs/`, and nothing else that happens to lie there.
pub fn is_blob_key(key: &str) -> bool {
    let mut parts = key.split('/');
    let (Some("blobs"), Some("sha256"), Some(first), Some(second), Some(digest), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    digest.len() == 64
        && digest
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        && digest.get(..2) == Some(first)
        && digest.get(2..4) == Some(second)
}

pub fn segment_prefix(region: &str) -> String {
    format!("journal/{region}/")
}

/// `(data key, info key)` of the segment `first..=last` of `region`.
pub fn segment_keys(region: &str, first: i64, last: i64) -> (String, String) {
    let stem = format!("journal/{region}/{first:020}-{last:020}");
    (format!("{stem}.ndjson"), format!("{stem}.json"))
}

pub fn manifest_key(backup_id: &str) -> String {
    format!("backups/{backup_id}/manifest.json")
}

/// `backups/<id>/access.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDocument {
    pub format: u32,
    pub access: tandem_core::access::AccessSnapshot,
}

pub fn access_key(backup_id: &str) -> String {
    format!("backups/{backup_id}/access.json")
}

pub fn snapshot_key(backup_id: &str) -> String {
    format!("backups/{backup_id}/snapshot.ndjson")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_formats_blob_keys_are_blob_keys() {
        let digest = "ab".repeat(32);
        assert!(is_blob_key(&blob_key(&digest)));
        for stranger in [
            "blobs/registry/v2/important.db".to_string(),
            format!("blobs/sha256/ab/cd/{digest}"),
            format!("blobs/sha256/ab/ab/{}", "AB".repeat(32)),
            format!("blobs/sha256/ab/ab/{digest}/x"),
            format!("blobs/sha256/ab/ab/{digest}.tmp"),
            "blobs/sha256/ab/ab".to_string(),
        ] {
            assert!(!is_blob_key(&stranger), "{stranger}");
        }
    }

    #[test]
    fn keys_sort_in_journal_order() {
        let (a, _) = segment_keys("eastus", 9, 10);
        let (b, _) = segment_keys("eastus", 11, 200);
        assert!(a < b, "{a} should sort before {b}");
        assert_eq!(blob_key("abcdef"), "blobs/sha256/ab/cd/abcdef");
    }

    #[test]
    fn newer_formats_are_refused() {
        let error = decode::<RepositoryInfo>("tandem-backup.json", br#"{"format": 99, "created_at": 1}"#)
            .unwrap_err();
        assert!(error.0.contains("newer than this build"), "{error}");
        let info: RepositoryInfo =
            decode("tandem-backup.json", br#"{"format": 1, "created_at": 1}"#).unwrap();
        assert_eq!(info.created_at, 1);
        assert!(decode::<RepositoryInfo>("x", b"{}")
            .unwrap_err()
            .0
            .contains("no 'format'"));
    }
}
