//! The one error type of the crate, and the translation of `object_store` errors into it.
//!
//! Callers (the HTTP layer) map these variants to status codes, so the translation works
//! hard to put a failure in the variant that says what happened to the *client*: a missing
//! object is `NotFound` on every backend, a full disk is `StorageFull` rather than an opaque
//! backend error, and so on.

use std::io;

/// Everything that can go wrong while storing or reading artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The path is not an acceptable relative key (traversal, control characters, too long, ...),
    /// or the backend refused it (e.g. it crosses a symbolic link inside a local root).
    #[error("invalid artifact path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// Nothing is stored under this key.
    #[error("artifact not found: {path}")]
    NotFound { path: String },
    /// The upload body was larger than the caller's limit; nothing was written.
    #[error("upload exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The storage has no room (ENOSPC on local disks; quota errors elsewhere) — distinct so the API can say so.
    #[error("artifact storage is full: {message}")]
    StorageFull { message: String },
    /// The upload body failed mid-way (client went away): nothing was written.
    #[error("upload body interrupted: {message}")]
    BodyInterrupted { message: String },
    /// A direct upload this store did not create for this key, or one already
    /// completed, aborted or expired.
    #[error("no open multipart upload {upload_id:?} for {path}")]
    UnknownUpload { path: String, upload_id: String },
    /// The URL scheme, an option, or an operation is not supported by this store.
    #[error("unsupported: {message}")]
    Unsupported { message: String },
    /// Any other storage failure.
    #[error("artifact storage error: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<object_store::Error>,
    },
}

impl ArtifactError {
    /// True for [`ArtifactError::NotFound`]; lets callers branch without matching on fields.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ArtifactError::NotFound { .. })
    }

    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ArtifactError::InvalidPath {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn backend_msg(message: impl Into<String>) -> Self {
        ArtifactError::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// An I/O error from our own local-filesystem code (listing, symlink checks), classified
    /// the same way as the ones `object_store` returns.
    pub(crate) fn from_io(err: io::Error, path: &str) -> Self {
        if is_storage_full(&err) {
            return ArtifactError::StorageFull {
                message: err.to_string(),
            };
        }
        match err.kind() {
            io::ErrorKind::NotFound => ArtifactError::NotFound { path: path.into() },
            _ => ArtifactError::backend_msg(format!("{path}: {err}")),
        }
    }
}

/// What the failed call was doing: the same low-level error means different things for a
/// read (a file where a directory was expected just means "no such object") and a write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Read,
    Write,
    Delete,
}

/// Translates an `object_store` error for the operation `op` on the user-facing key `path`.
pub(crate) fn classify(err: object_store::Error, path: &str, op: Op) -> ArtifactError {
    use object_store::Error as E;

    // Inspect the io::Error at the bottom of the chain first: object_store wraps the local
    // filesystem's errors in `Generic`, so the variant alone does not say "disk full".
    if let Some(io_err) = find_io_error(&err) {
        if is_storage_full(io_err) {
            return ArtifactError::StorageFull {
                message: err.to_string(),
            };
        }
        match (op, io_err.kind()) {
            // Reading "a/b" where "a" is a file: on an object store that is simply a missing key.
            (Op::Read | Op::Delete, io::ErrorKind::NotADirectory) => {
                return ArtifactError::NotFound { path: path.into() }
            }
            (Op::Write, io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory) => {
                return ArtifactError::invalid(
                    path,
                    "conflicts with an existing file or directory in local storage",
                )
            }
            _ => {}
        }
    }

    if is_quota_message(&err.to_string()) {
        return ArtifactError::StorageFull {
            message: err.to_string(),
        };
    }

    match err {
        E::NotFound { .. } => ArtifactError::NotFound { path: path.into() },
        E::InvalidPath { .. } => ArtifactError::invalid(path, err.to_string()),
        E::NotSupported { .. } | E::NotImplemented => ArtifactError::Unsupported {
            message: err.to_string(),
        },
        other => ArtifactError::Backend {
            message: format!("{path}: {other}"),
            source: Some(other),
        },
    }
}

fn find_io_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io_err) = e.downcast_ref::<io::Error>() {
            return Some(io_err);
        }
        current = e.source();
    }
    None
}

fn is_storage_full(err: &io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122) on Linux; the ErrorKinds cover other platforms.
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28) | Some(122))
}

/// Cloud stores report a full account or container in the response text only.
fn is_quota_message(message: &str) -> bool {
    const MARKERS: [&str; 4] = [
        "InsufficientStorage",
        "Insufficient Storage",
        "QuotaExceeded",
        "AccountQuotaExceeded",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_err(kind_errno: i32) -> object_store::Error {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(io::Error::from_raw_os_error(kind_errno)),
        }
    }

    #[test]
    fn enospc_is_storage_full() {
        let e = classify(local_err(28), "a/b", Op::Write);
        assert!(matches!(e, ArtifactError::StorageFull { .. }), "{e:?}");
        let e = classify(local_err(122), "a/b", Op::Write);
        assert!(matches!(e, ArtifactError::StorageFull { .. }), "{e:?}");
    }

    #[test]
    fn not_found_and_not_a_directory_on_read() {
        let e = classify(
            object_store::Error::NotFound {
                path: "x".into(),
                source: "gone".into(),
            },
            "a/b",
            Op::Read,
        );
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "artifact not found: a/b");
        let e = classify(local_err(20), "a/b", Op::Read); // ENOTDIR
        assert!(e.is_not_found(), "{e:?}");
        let e = classify(local_err(20), "a/b", Op::Write);
        assert!(matches!(e, ArtifactError::InvalidPath { .. }), "{e:?}");
    }

    #[test]
    fn quota_text_is_storage_full() {
        let e = classify(
            object_store::Error::Generic {
                store: "MicrosoftAzure",
                source: "Server returned 507 Insufficient Storage".into(),
            },
            "k",
            Op::Write,
        );
        assert!(matches!(e, ArtifactError::StorageFull { .. }), "{e:?}");
    }

    #[test]
    fn other_errors_keep_their_source() {
        let e = classify(local_err(5), "k", Op::Read); // EIO
        match e {
            ArtifactError::Backend { source, message } => {
                assert!(source.is_some());
                assert!(message.starts_with("k: "), "{message}");
            }
            other => panic!("expected Backend, got {other:?}"),
        }
    }
}
