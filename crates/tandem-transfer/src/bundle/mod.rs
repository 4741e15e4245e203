//! Bundles: a workspace's objects (or a selection) written to a file
//! system or object store by `tandem export --to file:///…|s3://…|az://…|gs://…`
//! and read back by `tandem import --from <bundle URL>`.
//!
//! A bundle is a directory (or prefix) of JSON records and content-addressed
//! blobs, described by `manifest.json`:
//!
//! ```text
//! manifest.json                 format, source, selection, counts, and the
//!                               size and SHA-256 of every record below
//! experiments/<id>.json         {experiment, runs: [ids, parents first], logged_models: [ids]}
//! runs/<id>.json                {run, artifacts: [{path, size, sha256}]}
//! histories/<id>.json           {metric key: [every point, in order]}
//! logged-models/<id>.json       {model, artifacts: [{path, size, sha256}]}
//! registered-models/<n>.json    {model, versions: [in number order]}
//! blobs/<sha[0..2]>/<sha256>    an artifact's bytes, named by their SHA-256
//! ```
//!
//! The manifest is written last, so a bundle without one is an export that
//! did not finish; every record is checked against the manifest and every
//! blob against its name when read, so a damaged bundle is named as such
//! and never imported as if it were whole. `format` grows when the layout
//! changes; a reader refuses a format newer than its own. Records hold the
//! objects exactly as the source's REST API showed them, with their
//! source's ids: importing a bundle gives what importing its source
//! directly would (the same origins too, so a later direct sync from that
//! source finds everything already copied).

mod format;
mod read;
mod write;

pub use format::{Manifest, BUNDLE_FORMAT};
pub use read::BundleSource;
pub use write::{export, ExportReport};

use tandem_artifacts::{ArtifactError, ArtifactStore};

use crate::TransferError;

/// Whether `location` names a bundle rather than a tracking server.
pub fn is_bundle_url(location: &str) -> bool {
    ["file://", "s3://", "az://", "azure://", "gs://"]
        .iter()
        .any(|scheme| location.starts_with(scheme))
}

/// The bundle's storage, with credentials and endpoints from the usual
/// environment variables (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*`).
fn open_storage(url: &str) -> Result<ArtifactStore, TransferError> {
    ArtifactStore::open(url, &Default::default())
        .map_err(|error| TransferError::Usage(format!("{url}: {error}")))
}

fn storage_error(url: &str, what: &str, error: ArtifactError) -> TransferError {
    match error {
        ArtifactError::StorageFull { message } => {
            TransferError::Storage(format!("{url}: no room for {what}: {message}"))
        }
        other => TransferError::Storage(format!("{url}: {what}: {other}")),
    }
}

#[cfg(test)]
mod tests;
