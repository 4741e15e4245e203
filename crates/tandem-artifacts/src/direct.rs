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
//! * Other storage (local directory, memory, GCS) has no direct uploads:
//!   [`crate::ArtifactStore::direct_uploads`] is false.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::Method;
use object_store::aws::{AmazonS3, AwsCredential};
use object_store::azure::MicrosoftAzure;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{classify, Op};
use crate::ArtifactError;

/// The backends that take parts at presigned URLs.
#[derive(Debug, Clone)]
pub(crate) enum Direct {
    S3 { store: Arc<AmazonS3>, region: String },
    Azure { store: Arc<MicrosoftAzure> },
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
                let now = SystemTime::now();
                let parts = (1..=num_parts)
                    .map(|part_number| {
                        let part = part_number.to_string();
                        let url = presign_s3(
                            "PUT",
                            &base,
                            &[("partNumber", &part), ("uploadId", &upload_id)],
                            &credential,
                            region,
                            now,
                            expires_in,
                        );
                        PartTarget {
                            part_number,
                            url,
                            headers: Vec::new(),
                        }
                    })
                    .collect();
                Ok(DirectUpload { upload_id, parts })
            }
            Direct::Azure { store } => {
                let upload_id = azure_upload_id(key);
                let signed = store
                    .signed_url(Method::PUT, location, expires_in)
                    .await
                    .map_err(write_err)?;
                let parts = (1..=num_parts)
                    .map(|part_number| {
                        let mut url = signed.clone();
                        let block_id = base64_encode(azure_block_id(&upload_id, part_number).as_bytes());
                        url.query_pairs_mut()
                            .append_pair("comp", "block")
                            .append_pair("blockid", &block_id);
                        PartTarget {
                            part_number,
                            url: url.to_string(),
                            headers: Vec::new(),
                        }
                    })
                    .collect();
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
        match self {
            Direct::S3 { store, .. } => {
                let mut ids = Vec::with_capacity(parts.len());
                for part in parts {
                    let etag = part.etag.clone().filter(|etag| !etag.is_empty()).ok_or_else(|| {
                        ArtifactError::invalid(key, format!("part {} has no ETag", part.part_number))
                    })?;
                    ids.push(PartId { content_id: etag });
                }
                store
                    .complete_multipart(location, &upload_id.to_string(), ids)
                    .await
                    .map_err(write_err)?;
            }
            Direct::Azure { store } => {
                let ids = parts
                    .iter()
                    .map(|part| PartId {
                        content_id: azure_block_id(upload_id, part.part_number),
                    })
                    .collect();
                store
                    .complete_multipart(location, &upload_id.to_string(), ids)
                    .await
                    .map_err(write_err)?;
            }
        }
        Ok(())
    }

    pub(crate) async fn abort(
        &self,
        location: &Path,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ArtifactError> {
        match self {
            Direct::S3 { store, .. } => store
                .abort_multipart(location, &upload_id.to_string())
                .await
                .map_err(|e| classify(e, key, Op::Delete)),
            // Uncommitted blocks cannot be deleted; Azure discards them
            // after 7 days.
            Direct::Azure { .. } => Ok(()),
        }
    }
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

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// AWS's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn aws_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` of a time (UTC).
fn amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3_600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A SigV4 query-presigned URL for `method` on `base` (an object URL without
/// query) with `extra` query parameters inside the signature; the payload is
/// unsigned, the only signed header is `host`.
fn presign_s3(
    method: &str,
    base: &Url,
    extra: &[(&str, &str)],
    credential: &AwsCredential,
    region: &str,
    now: SystemTime,
    expires_in: Duration,
) -> String {
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let mut params: Vec<(String, String)> = vec![
        ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
        (
            "X-Amz-Credential".into(),
            format!("{}/{scope}", credential.key_id),
        ),
        ("X-Amz-Date".into(), date_time.clone()),
        ("X-Amz-Expires".into(), expires_in.as_secs().to_string()),
        ("X-Amz-SignedHeaders".into(), "host".into()),
    ];
    if let Some(token) = &credential.token {
        params.push(("X-Amz-Security-Token".into(), token.clone()));
    }
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (aws_encode(k), aws_encode(v)))
        .collect();
    encoded.sort();
    let query = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let host = &base[url::Position::BeforeHost..url::Position::AfterPort];
    // object_store's URL path is already percent-encoded once, which is
    // S3's canonical URI.
    let canonical_request = format!(
        "{method}\n{}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
        base.path()
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", credential.secret_key).as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, "s3");
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex::encode(hmac(&k_signing, &string_to_sign));
    let mut url = base.clone();
    url.set_query(Some(&format!("{query}&X-Amz-Signature={signature}")));
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example of a presigned GET
    /// (docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html).
    #[test]
    fn presigns_as_aws_documents() {
        let credential = AwsCredential {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        };
        let base = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        // 2013-05-24T00:00:00Z
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let url = presign_s3(
            "GET",
            &base,
            &[],
            &credential,
            "us-east-1",
            now,
            Duration::from_secs(86_400),
        );
        assert!(
            url.ends_with("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Date=20130524T000000Z"), "{url}");
    }

    #[test]
    fn extra_parameters_are_signed_in_sorted_order() {
        let credential = AwsCredential {
            key_id: "k".into(),
            secret_key: "s".into(),
            token: Some("t/+=".into()),
        };
        let base = Url::parse("http://127.0.0.1:9000/bucket/a%20b/c").unwrap();
        let url = presign_s3(
            "PUT",
            &base,
            &[("partNumber", "3"), ("uploadId", "x+y/z")],
            &credential,
            "eu-west-1",
            UNIX_EPOCH,
            Duration::from_secs(60),
        );
        let parsed = Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/bucket/a%20b/c");
        let query = parsed.query().unwrap();
        assert!(query.contains("partNumber=3&uploadId=x%2By%2Fz"), "{query}");
        assert!(query.contains("X-Amz-Security-Token=t%2F%2B%3D"), "{query}");
        assert!(query.contains("X-Amz-Date=19700101T000000Z"), "{query}");
    }

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
        assert_eq!(store.abort_expired_direct_uploads(Duration::ZERO).await, 0);
    }

    #[test]
    fn dates_and_block_ids() {
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "20991231T235959Z"
        );
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_encode(b"hell"), "aGVsbA==");
        assert_eq!(base64_encode(b"hel"), "aGVs");
        let id = azure_upload_id("k");
        assert_eq!(id.len(), 16);
        assert_ne!(id, azure_upload_id("k"));
        assert_eq!(azure_block_id(&id, 1).len(), 32);
        assert_eq!(azure_block_id(&id, 10_000).len(), 32);
    }
}
