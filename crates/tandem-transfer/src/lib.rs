//! Copying what an MLflow tracking server holds into a Tandem workspace:
//! `tandem import --from <tracking URI> --into <workspace>`, and `tandem
//! sync` between two workspaces (a Tandem workspace URL is a tracking URI);
//! `tandem export --to <bundle URL>` and `tandem import --from <bundle URL>`
//! through a bundle on a file system or object store ([`bundle`]);
//! `tandem export --to <tracking URI>` into an `mlflow server`
//! ([`copy_to_tracking`], through MLflow's own REST API).
//!
//! The copy reads a [`Source`] (a tracking server through MLflow's REST
//! API, an `mlflow server`'s own database and artifact root
//! ([`MlflowStoreSource`]), or a bundle) and writes
//! each object *whole* through the target's import endpoint (see
//! `tandem_core::transfer`): experiments, then their runs (parents before
//! children, complete metric histories in chunks, dataset inputs, outputs,
//! artifacts byte for byte with their SHA-256 checked), logged models with
//! their artifacts, and registered models with every version under its own
//! number. Ids are kept where the target has none such; every reference
//! between objects is rewritten to the target's ids.
//!
//! The target remembers each object's origin with the digest of what was
//! copied, so a second copy skips what is unchanged (idempotent), a copy
//! killed midway finishes the next time (resumable: an object without a
//! complete origin is copied again, and what it already holds is not
//! written twice), and a copy of a source that changed copies only the
//! changes (incremental).
//!
//! Architecture invariant: no store of Tandem's. Tandem servers are reached
//! over HTTP only, like `tandem-client`; storage (through
//! `tandem-artifacts`) holds bundles, or is an MLflow server's artifact
//! root read as a source; the only database opened is an MLflow server's,
//! read-only.

pub mod bundle;
mod copy;
mod endpoint;
mod mlflow_store;
mod select;
mod source;
mod tracking_target;

pub use copy::{copy, CopyOptions, Failure, KindCounts, Progress, Report};
pub use endpoint::{Auth, Endpoint};
pub use mlflow_store::{is_store_url, MlflowStoreSource};
pub use source::{workspace_url, ByteStream, Listing, Source, TrackingSource};
pub use tracking_target::{copy_to_tracking, ORIGIN_TAG};

/// What stops a copy (a failure of one object is not an error: it is listed
/// in the report and the copy goes on).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// The options do not describe a copy.
    #[error("{0}")]
    Usage(String),
    /// A server answered with an error.
    #[error("{url}: {code} ({status}): {message}")]
    Api {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A server could not be reached, or the exchange broke.
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    /// An answer could not be understood.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// An artifact arrived at the target with other bytes than the source's,
    /// or a bundle's blob is damaged.
    #[error("{0}")]
    Integrity(String),
    /// A bundle cannot be read: no manifest, a newer format, a damaged record.
    #[error("{0}")]
    Bundle(String),
    /// A bundle's storage failed (no room, no access).
    #[error("{0}")]
    Storage(String),
    /// The destination holds what this would write (a bundle already there).
    #[error("{0}")]
    Exists(String),
}

impl TransferError {
    /// Whether the failure is the whole side's (unreachable, refused
    /// credentials), which no later object would escape either.
    pub fn is_fatal(&self) -> bool {
        match self {
            TransferError::Usage(_)
            | TransferError::Transport { .. }
            | TransferError::Bundle(_)
            | TransferError::Storage(_)
            | TransferError::Exists(_) => true,
            // Refused credentials, and a target whose storage is full: no
            // later object would fare better.
            TransferError::Api { status, .. } => matches!(status, 401 | 403 | 507),
            _ => false,
        }
    }

    /// The same failure, saying at which object the copy stopped: still
    /// the side's refusal or unreachability it was, for the exit code.
    pub fn stopped_at(&self, what: &str) -> TransferError {
        match self {
            TransferError::Api {
                url,
                status,
                code,
                message,
            } => TransferError::Api {
                url: url.clone(),
                status: *status,
                code: code.clone(),
                message: format!("{message} (stopped at {what})"),
            },
            TransferError::Transport { url, message } => TransferError::Transport {
                url: url.clone(),
                message: format!("{message} (stopped at {what})"),
            },
            TransferError::Bundle(message) => TransferError::Bundle(format!("{message} (stopped at {what})")),
            TransferError::Storage(message) => {
                TransferError::Storage(format!("{message} (stopped at {what})"))
            }
            TransferError::Exists(message) => TransferError::Exists(message.clone()),
            other => TransferError::Usage(format!("stopped at {what}: {other}")),
        }
    }
}
