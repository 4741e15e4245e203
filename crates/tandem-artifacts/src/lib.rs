//! `tandem-artifacts`: a region's default storage for artifacts and files, on top of the
//! [`object_store`] crate (local directories, memory, S3, Azure Blob, Google Cloud Storage).
//!
//! # Architecture invariant
//!
//! This crate knows nothing of HTTP handlers, JSON or the metadata database. It stores and
//! streams bytes under validated relative keys ([`ArtifactKey`]), and reports the size and
//! SHA-256 of what it wrote ([`PutOutcome`]). Deciding *which* key an artifact gets, who may
//! write it, and recording the outcome is the caller's business.
//!
//! # Guarantees
//!
//! * Every storage call takes an [`ArtifactKey`], and [`ArtifactKey::parse`] is the only way
//!   to make one: traversal (`..`, absolute, drive and UNC paths, encoded separators) cannot
//!   reach a backend. Local roots additionally refuse keys that cross a symlink.
//! * Uploads stream in bounded memory and are all-or-nothing: a failed, oversized or
//!   interrupted upload leaves nothing at its key (and an existing object there untouched).
//! * Errors say what happened in terms a client can be told ([`ArtifactError`]).
//!
//! # Backend differences callers may meet
//!
//! * Local directories cannot hold a file and a directory of the same name ("a" and "a/b");
//!   such a put fails with `InvalidPath`. They also reserve file names ending in `#<digits>`
//!   (`object_store` stages uploads under such names), and refuse keys that cross a symlink.
//! * Multipart parts are a fixed [`PART_SIZE`] (8 MiB): with S3's limit of 10,000 parts the
//!   largest object is about 78 GiB (Azure: 50,000 blocks, about 390 GiB). Set `max_size`
//!   below that.
//! * `copy` on S3 is a single CopyObject call, which S3 limits to objects of 5 GiB.
//! * Uploads that fail on S3 are aborted; if an abort itself fails (or the process dies
//!   mid-upload) the parts stay invisible but billable: keep a bucket lifecycle rule that
//!   removes incomplete multipart uploads.
//! * Direct uploads (parts sent by the client to presigned URLs, see
//!   [`ArtifactStore::create_direct_upload`]) exist on S3, Azure and GCS (with a service
//!   account key to sign part URLs).

mod direct;
mod error;
mod key;
mod ledger;
mod local;
mod open;
mod store;
mod upload;

pub use direct::{DirectUpload, PartTarget, UploadedPart, MAX_DIRECT_PARTS};
pub use error::ArtifactError;
pub use key::{ArtifactKey, MAX_KEY_BYTES, MAX_SEGMENT_BYTES};
pub use ledger::{MemoryLedger, UploadLedger};
pub use store::{ArtifactStore, Listing, PutOutcome, DEFAULT_ABANDONED_AFTER};
pub use upload::{MAX_PARTS_IN_FLIGHT, PART_SIZE};

/// The storage key of a workspace's MLflow artifact path:
/// `workspaces/<workspace_id>/artifacts/<path>`. Keyed by the workspace's
/// stable id (not its name) so storage survives renames and can be found,
/// and salvaged, after the workspace is gone. Every region uses the same
/// layout, so replication copies an artifact to the same key.
pub fn workspace_artifact_key(
    workspace_id: &str,
    path: Option<&ArtifactKey>,
) -> Result<ArtifactKey, ArtifactError> {
    workspace_area_key(workspace_id, "artifacts", path)
}

/// The storage key of a path of a workspace's file share:
/// `workspaces/<workspace_id>/files/<path>`. Purging the workspace leaves
/// this prefix in place (files are salvaged from it) until storage is purged
/// explicitly.
pub fn workspace_file_key(
    workspace_id: &str,
    path: Option<&ArtifactKey>,
) -> Result<ArtifactKey, ArtifactError> {
    workspace_area_key(workspace_id, "files", path)
}

/// [`workspace_area_key`] of a path as the journal records it (text,
/// checked here like any key: no `..`, no absolute path).
pub fn workspace_content_key(
    workspace_id: &str,
    area: &str,
    path: &str,
) -> Result<ArtifactKey, ArtifactError> {
    workspace_area_key(workspace_id, area, Some(&ArtifactKey::parse(path)?))
}

/// `workspaces/<workspace_id>/<area>/<path>`: `area` is `artifacts` or
/// `files` (see [`workspace_artifact_key`], [`workspace_file_key`]).
pub fn workspace_area_key(
    workspace_id: &str,
    area: &str,
    path: Option<&ArtifactKey>,
) -> Result<ArtifactKey, ArtifactError> {
    let root = ArtifactKey::parse(&format!("workspaces/{workspace_id}/{area}"))?;
    match path {
        Some(path) => root.join(path.as_str()),
        None => Ok(root),
    }
}
