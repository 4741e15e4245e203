//! Direct multipart uploads: the client sends an object's parts straight to
//! the bucket at presigned URLs, and the server only creates, completes or
//! aborts the upload (MLflow's `mpu/create|complete|abort`).
//!
//! * S3: a multipart upload (`CreateMultipartUpload`) and one SigV4
//!   query-presigned `UploadPart` URL per part, with `partNumber` and
//!   `uploadId` inside the signed query. object_store's own presigning
//!   (`Signer::signed_url`) signs a bare object URL and its query signer is
//!   crate-private, so the query is signed here (AWS's "authenticating
//!   requests: using query parameters", checked against AWS's published
//!   example in the tests). Completion sends the client's part ETags.
//! * Azure Blob: one service-SAS URL (object_store's `Signer`, permission
//!   `w`) per block with `comp=block&blockid=…` added; a service SAS signs
//!   only its own parameters, so the added ones do not invalidate it.
//!   Completion commits the block list. Block ids are
//!   `<upload id><part number>`, 32 characters, so concurrent uploads of
//!   one blob never mix blocks. Azure cannot drop uncommitted blocks: an
//!   abort leaves them to expire (Azure discards them after 7 days).
//! * GCS: an XML API multipart upload (S3's protocol, which object_store
//!   speaks for GCS too) and one V4 query-presigned (`GOOG4-RSA-SHA256`)
//!   part URL per part, signed with the service account's private key, as
//!   MLflow's GCS repository does. Without a private key (credentials from
//!   the metadata server or a user login) part URLs could only be signed
//!   by Google's IAM `signBlob`, one call per part: such regions offer no
//!   direct uploads and clients upload through the proxy.
//! * Other storage (local directory, memory) has no direct uploads:
//!   [`crate::ArtifactStore::direct_uploads`] is false.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::Method;
use object_store::aws::AmazonS3;
use object_store::azure::MicrosoftAzure;
use object_store::gcp::GoogleCloudStorage;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use sha2::{Digest, Sha256};

use crate::error::{classify, Op};
use crate::ArtifactError;

mod presign;

pub(crate) use presign::{gcs_object_url, GcsSigner};

/// The backends that take parts at presigned URLs.
#[derive(Debug, Clone)]
pub(crate) enum Direct {
    S3 {
        store: Arc<AmazonS3>,
        region: String,
    },
    Azure {
        store: Arc<MicrosoftAzure>,
    },
    Gcs {
        store: Arc<GoogleCloudStorage>,
        signer: Arc<GcsSigner>,
        /// The XML API's base URL (`https://storage.googleapis.com`, or the
        /// service account file's `gcs_base_url`).
        endpoint: String,
        bucket: String,
    },
}

/// An upload created in the bucket: its id and where each part goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectUpload {
    /// S3's UploadId; for Azure, the id that prefixes this upload's block ids.
    pub upload_id: String,
    pub parts: Vec<PartTarget>,
}

/// Where the client PUTs one part, and with which headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTarget {
    /// 1-based.
    pub part_number: u32,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A part the client says it uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub part_number: u32,
    /// The `ETag` the storage answered the part's PUT with (required on S3;
    /// Azure's Put Block answers none).
    pub etag: Option<String>,
}

/// The most parts one upload may have (S3's limit).
pub const MAX_DIRECT_PARTS: u32 = 10_000;

impl Direct {
    pub(crate) async fn create(
        &self,
        location: &Path,
        key: &str,
        num_parts: u32,
        expires_in: Duration,
    ) -> Result<DirectUpload, ArtifactError> {
        let write_err = |e| classify(e, key, Op::Write);
        let now = SystemTime::now();
        let part_targets = |sign: &dyn Fn(&str) -> Result<String, ArtifactError>| {
            (1..=num_parts)
                .map(|part_number| {
                    Ok(PartTarget {
                        part_number,
                        url: sign(&part_number.to_string())?,
                        headers: Vec::new(),
                    })
                })
                .collect::<Result<Vec<_>, ArtifactError>>()
        };
        match self {
            Direct::S3 { store, region } => {
                let upload_id = store.create_multipart(location).await.map_err(write_err)?;
                let credential = store.credentials().get_credential().await.map_err(write_err)?;
                // The object's URL as object_store addresses it (endpoint,
                // path or virtual-hosted style, key encoding): a presigned
                // URL without its query.
                let mut base = store
                    .signed_url(Method::PUT, location, Duration::from_secs(1))
                    .await
                    .map_err(write_err)?;
                base.set_query(None);
                let parts = part_targets(&|part| {
                    Ok(presign::presign_s3(
                        "PUT",
                        &base,
                        &[("partNumber", part), ("uploadId", &upload_id)],
                        &credential,
                        region,
                        now,
                        expires_in,
                    ))
                })?;
                Ok(DirectUpload { upload_id, parts })
            }
            Direct::Azure { store } => {
                let upload_id = azure_upload_id(key);
                let signed = store
                    .signed_url(Method::PUT, location, expires_in)
                    .await
                    .map_err(write_err)?;
                let parts = part_targets(&|part| {
                    let part_number: u32 = part.parse().expect("a part number");
                    let mut url = signed.clone();
                    let block_id = base64::engine::general_purpose::STANDARD
                        .encode(azure_block_id(&upload_id, part_number).as_bytes());
                    url.query_pairs_mut()
                        .append_pair("comp", "block")
                        .append_pair("blockid", &block_id);
                    Ok(url.to_string())
                })?;
                Ok(DirectUpload { upload_id, parts })
            }
            Direct::Gcs {
                store,
                signer,
                endpoint,
                bucket,
            } => {
                let base = gcs_object_url(endpoint, bucket, location.as_ref())
                    .map_err(|message| ArtifactError::invalid(key, message))?;
                let upload_id = store.create_multipart(location).await.map_err(write_err)?;
                let parts = part_targets(&|part| {
                    signer
                        .presign(
                            "PUT",
                            &base,
                            &[("partNumber", part), ("uploadId", &upload_id)],
                            now,
                            expires_in,
                        )
                        .map_err(|message| ArtifactError::Backend {
                            message: format!("cannot sign a part URL for {key}: {message}"),
                            source: None,
                        })
                })?;
                Ok(DirectUpload { upload_id, parts })
            }
        }
    }

    pub(crate) async fn complete(
        &self,
        location: &Path,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), ArtifactError> {
        let write_err = |e| classify(e, key, Op::Write);
        let upload_id = upload_id.to_string();
        match self {
            Direct::S3 { store, .. } => store
                .complete_multipart(location, &upload_id, etags(key, parts)?)
                .await
                .map_err(write_err)?,
            Direct::Gcs { store, .. } => store
                .complete_multipart(location, &upload_id, etags(key, parts)?)
                .await
                .map_err(write_err)?,
            Direct::Azure { store } => {
                let ids = parts
                    .iter()
                    .map(|part| PartId {
                        content_id: azure_block_id(&upload_id, part.part_number),
                    })
                    .collect();
                store
                    .complete_multipart(location, &upload_id, ids)
                    .await
                    .map_err(write_err)?
            }
        };
        Ok(())
    }

    pub(crate) async fn abort(
        &self,
        location: &Path,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ArtifactError> {
        let upload_id = upload_id.to_string();
        let delete_err = |e| classify(e, key, Op::Delete);
        match self {
            Direct::S3 { store, .. } => store
                .abort_multipart(location, &upload_id)
                .await
                .map_err(delete_err),
            Direct::Gcs { store, .. } => store
                .abort_multipart(location, &upload_id)
                .await
                .map_err(delete_err),
            // Uncommitted blocks cannot be deleted; Azure discards them
            // after 7 days.
            Direct::Azure { .. } => Ok(()),
        }
    }
}

/// The parts' ETags as the storage answered each part's PUT (S3, GCS):
/// completion names each part by it.
fn etags(key: &str, parts: &[UploadedPart]) -> Result<Vec<PartId>, ArtifactError> {
    parts
        .iter()
        .map(|part| {
            part.etag
                .clone()
                .filter(|etag| !etag.is_empty())
                .map(|content_id| PartId { content_id })
                .ok_or_else(|| ArtifactError::invalid(key, format!("part {} has no ETag", part.part_number)))
        })
        .collect()
}

/// A fresh 16-hex-digit id for an Azure upload: unique per process and time
/// (it only keeps concurrent uploads of one blob apart; the SAS, not the
/// id, authorizes the blocks).
fn azure_upload_id(key: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(key.as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

/// An Azure block id before base64: every block of a blob must have an id
/// of the same length.
fn azure_block_id(upload_id: &str, part_number: u32) -> String {
    format!("{upload_id:.16}{part_number:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn storage_without_direct_uploads_says_so() {
        let store = crate::ArtifactStore::open("memory://", &Default::default()).unwrap();
        assert!(!store.direct_uploads());
        let key = crate::ArtifactKey::parse("a/b").unwrap();
        let refused = store.create_direct_upload(&key, 1, Duration::from_secs(60)).await;
        assert!(
            matches!(refused, Err(ArtifactError::Unsupported { .. })),
            "{refused:?}"
        );
        let refused = store.abort_direct_upload(&key, "x").await;
        assert!(
            matches!(refused, Err(ArtifactError::Unsupported { .. })),
            "{refused:?}"
        );
        let store = store.with_abandoned_uploads_after(Duration::ZERO);
        assert_eq!(store.abort_expired_direct_uploads().await, 0);
    }

    #[test]
    fn azure_block_ids_have_one_length() {
        let id = azure_upload_id("k");
        assert_eq!(id.len(), 16);
        assert_ne!(id, azure_upload_id("k"));
        assert_eq!(azure_block_id(&id, 1).len(), 32);
        assert_eq!(azure_block_id(&id, 10_000).len(), 32);
    }

    #[test]
    fn completion_needs_every_etag() {
        let parts = [
            UploadedPart {
                part_number: 1,
                etag: Some("\"a\"".into()),
            },
            UploadedPart {
                part_number: 2,
                etag: Some(String::new()),
            },
        ];
        let refused = etags("k", &parts).unwrap_err();
        assert!(refused.to_string().contains("part 2 has no ETag"), "{refused}");
        assert_eq!(etags("k", &parts[..1]).unwrap()[0].content_id, "\"a\"");
    }
}
