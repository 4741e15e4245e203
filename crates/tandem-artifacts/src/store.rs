//! [`ArtifactStore`]: the operations the server performs on a region's artifact storage.
//!
//! Keys are [`ArtifactKey`]s relative to the store's root; the root is a bucket or container
//! plus an optional key prefix (from the URL's path), or a local directory. Results speak in
//! the same relative keys, never in backend paths.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};

use crate::direct::Direct;
use crate::error::{classify, Op};
use crate::local::LocalRoot;
use crate::{open, upload, ArtifactError, ArtifactKey};
use crate::{DirectUpload, MemoryLedger, UploadLedger, UploadedPart};

/// Chunk size when streaming a local file back: object_store's own file stream reads 8 KiB
/// per blocking task, which is needlessly slow for multi-gigabyte model files.
const LOCAL_READ_CHUNK: usize = 256 * 1024;
/// Object-store listings in flight for `list_recursive_each`.
const LISTINGS_AT_ONCE: usize = 8;

/// A region's artifact storage, opened from a URL. Cheap to clone (the backend is shared).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tandem_artifacts::ArtifactError> {
/// use std::collections::HashMap;
/// use bytes::Bytes;
/// use tandem_artifacts::{ArtifactKey, ArtifactStore};
///
/// let store = ArtifactStore::open("memory://", &HashMap::new())?;
/// let key = ArtifactKey::parse("1/run/artifacts/notes.txt")?;
/// let outcome = store.put_bytes(&key, Bytes::from_static(b"hello")).await?;
/// assert_eq!(outcome.size, 5);
/// assert_eq!(
///     outcome.sha256,
///     "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
/// );
/// assert_eq!(store.head(&key).await?, Some(5));
/// let listing = store.list(Some(&ArtifactKey::parse("1/run/artifacts")?)).await?;
/// assert_eq!(listing[0].path, "1/run/artifacts/notes.txt");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket/container, without slashes at either end; "" for none.
    prefix: String,
    url: String,
    local: Option<LocalRoot>,
    direct: Option<Direct>,
    /// Direct uploads created and not yet completed or aborted (see
    /// [`crate::UploadLedger`]).
    pending: Arc<dyn UploadLedger>,
    /// How long a direct upload may stay open before
    /// [`abort_expired_direct_uploads`](Self::abort_expired_direct_uploads)
    /// aborts it; its part URLs expire no later.
    abandoned_after: Duration,
}

/// How long a direct upload may stay open by default: a day, long past
/// any upload whose client is still at work.
pub const DEFAULT_ABANDONED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// What a completed upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub size: u64,
    /// SHA-256 of the bytes written, lowercase hex.
    pub sha256: String,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The entry's full key relative to the store root, e.g. "dir/sub/file.txt" (no trailing '/').
    pub path: String,
    pub is_dir: bool,
    /// Size in bytes for files; None for directories.
    pub size: Option<u64>,
}

impl ArtifactStore {
    /// Opens storage from a URL: `file:///abs/dir` (created if missing), `memory://`, `s3://bucket/prefix`,
    /// `az://container/prefix` (also accept `azure://`), `gs://bucket/prefix`. Cloud credentials and endpoints come
    /// from `options` (object_store's config keys, e.g. "aws_endpoint", "aws_access_key_id", "azure_storage_account_name",
    /// "azure_storage_access_key", "azure_storage_use_emulator", "azure_endpoint", "allow_http") and, failing that,
    /// from the standard environment variables (use object_store's builders' from_env()).
    ///
    /// Unknown option keys for a cloud scheme are an error (`Unsupported`), so typos surface
    /// at startup; options given for `file://` or `memory://` are ignored with a warning.
    pub fn open(url: &str, options: &HashMap<String, String>) -> Result<ArtifactStore, ArtifactError> {
        let opened = open::open(url, options)?;
        Ok(ArtifactStore {
            store: opened.store,
            prefix: opened.prefix,
            url: url.to_string(),
            local: opened.local,
            direct: opened.direct,
            pending: Arc::new(MemoryLedger::default()),
            abandoned_after: DEFAULT_ABANDONED_AFTER,
        })
    }

    /// This store with direct uploads open longer than `after` counted as
    /// abandoned (their client went away): part URLs expire by then, and
    /// [`abort_expired_direct_uploads`](Self::abort_expired_direct_uploads)
    /// aborts them. The default is [`DEFAULT_ABANDONED_AFTER`].
    /// Keeps the open direct uploads in `ledger` instead of this process's
    /// memory (the replicas of a region share one through their database).
    pub fn with_upload_ledger(mut self, ledger: Arc<dyn UploadLedger>) -> ArtifactStore {
        self.pending = ledger;
        self
    }

    pub fn with_abandoned_uploads_after(mut self, after: Duration) -> ArtifactStore {
        self.abandoned_after = after;
        self
    }

    /// See [`with_abandoned_uploads_after`](Self::with_abandoned_uploads_after).
    pub fn abandoned_uploads_after(&self) -> Duration {
        self.abandoned_after
    }

    /// This store without direct uploads: clients upload through the proxy
    /// even where the storage could take them directly (when clients cannot
    /// reach the bucket, or a policy wants every byte through the region).
    pub fn without_direct_uploads(mut self) -> ArtifactStore {
        self.direct = None;
        self
    }

    /// The URL this store was opened from, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Streams `body` to `key` in bounded memory (multipart upload with a fixed part size, e.g. 8 MiB, and a
    /// small bounded number of parts in flight), computing SHA-256 and size as it goes. Nothing is visible at `key`
    /// unless the whole body arrived: on a body error, on exceeding `max_size` (→ ArtifactError::TooLarge), or on a
    /// storage error, the multipart upload is aborted. Overwrites an existing object atomically.
    pub async fn put_stream<S>(
        &self,
        key: &ArtifactKey,
        body: S,
        max_size: Option<u64>,
    ) -> Result<PutOutcome, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        // Local stores check the key when they write it (see `upload`), in the same trip
        // to the blocking pool as the write itself.
        let location = self.location(key)?;
        upload::put_stream(&self.store, &location, key, body, max_size, self.local.as_ref()).await
    }

    /// Convenience for small payloads.
    pub async fn put_bytes(&self, key: &ArtifactKey, bytes: Bytes) -> Result<PutOutcome, ArtifactError> {
        self.put_stream(key, futures::stream::iter([Ok(bytes)]), None)
            .await
    }

    /// Streams an object back: its size and a stream of chunks (no full buffering).
    pub async fn get_stream(
        &self,
        key: &ArtifactKey,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, ArtifactError>>), ArtifactError> {
        self.check_local(key).await?;
        let location = self.location(key)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| classify(e, key.as_str(), Op::Read))?;
        let size = result.meta.size;
        let path = key.as_str().to_string();
        let stream = match result.payload {
            GetResultPayload::File(file, _) => {
                use tokio::io::AsyncReadExt;
                let file = tokio::fs::File::from_std(file).take(size);
                tokio_util::io::ReaderStream::with_capacity(file, LOCAL_READ_CHUNK)
                    .map_err(move |e| ArtifactError::from_io(e, &path))
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream.map_err(move |e| classify(e, &path, Op::Read)).boxed(),
        };
        Ok((size, stream))
    }

    /// Byte range [start, end) for HTTP Range support.
    ///
    /// `end` past the end of the object is clamped to it (as HTTP does). `start == end` gives
    /// an empty result; `start > end`, or `start` at or past the end of a non-empty range,
    /// is an error (the caller should have answered 416 from `head`).
    pub async fn get_range(&self, key: &ArtifactKey, start: u64, end: u64) -> Result<Bytes, ArtifactError> {
        if start > end {
            return Err(ArtifactError::backend_msg(format!(
                "{key}: invalid byte range {start}..{end}"
            )));
        }
        if start == end {
            // Still report a missing object as missing.
            return match self.head(key).await? {
                Some(_) => Ok(Bytes::new()),
                None => Err(ArtifactError::NotFound {
                    path: key.to_string(),
                }),
            };
        }
        self.check_local(key).await?;
        let location = self.location(key)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&location, options)
            .await
            .map_err(|e| classify(e, key.as_str(), Op::Read))?;
        result
            .bytes()
            .await
            .map_err(|e| classify(e, key.as_str(), Op::Read))
    }

    /// The object's size, or None when nothing is stored at `key` (a "directory" is not an object).
    pub async fn head(&self, key: &ArtifactKey) -> Result<Option<u64>, ArtifactError> {
        self.check_local(key).await?;
        let location = self.location(key)?;
        match self.store.head(&location).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) => match classify(e, key.as_str(), Op::Read) {
                ArtifactError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Lists one level under `prefix` (None = root): files with sizes and sub-directories, sorted by path.
    /// Returned paths are relative to the prefix's parent in the same way MLflow's list_artifacts returns them:
    /// give the entry's full relative key (e.g. "dir/sub/file.txt") and let callers strip.
    ///
    /// A prefix that does not exist, or that names a file, lists as empty.
    pub async fn list(&self, prefix: Option<&ArtifactKey>) -> Result<Vec<Listing>, ArtifactError> {
        let mut entries = match &self.local {
            Some(local) => local.list(prefix).await?,
            None => {
                let location = self.list_location(prefix)?;
                let result = self
                    .store
                    .list_with_delimiter(location.as_ref())
                    .await
                    .map_err(|e| classify(e, prefix_str(prefix), Op::Read))?;
                let dirs = result.common_prefixes.iter().filter_map(|p| {
                    self.relative(p, prefix).map(|path| Listing {
                        path,
                        is_dir: true,
                        size: None,
                    })
                });
                let files = result.objects.iter().filter_map(|meta| {
                    self.relative(&meta.location, prefix).map(|path| Listing {
                        path,
                        is_dir: false,
                        size: Some(meta.size),
                    })
                });
                dirs.chain(files).collect()
            }
        };
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Recursive listing of every object under prefix (for replication/backup/gc).
    ///
    /// Only files are returned (`is_dir` false), with full relative keys, sorted by path.
    /// An object stored at exactly `prefix` is not "under" it and is not included.
    pub async fn list_recursive(&self, prefix: Option<&ArtifactKey>) -> Result<Vec<Listing>, ArtifactError> {
        let mut entries = match &self.local {
            Some(local) => local.list_recursive(prefix).await?,
            None => {
                let location = self.list_location(prefix)?;
                let metas: Vec<_> = self
                    .store
                    .list(location.as_ref())
                    .try_collect()
                    .await
                    .map_err(|e| classify(e, prefix_str(prefix), Op::Read))?;
                metas
                    .iter()
                    .filter_map(|meta| {
                        self.relative(&meta.location, prefix).map(|path| Listing {
                            path,
                            is_dir: false,
                            size: Some(meta.size),
                        })
                    })
                    .collect()
            }
        };
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// `list_recursive` of each of `prefixes`, each its own result: on a
    /// local directory all in one blocking task, on an object store a few
    /// listings at a time.
    pub async fn list_recursive_each(
        &self,
        prefixes: &[ArtifactKey],
    ) -> Vec<Result<Vec<Listing>, ArtifactError>> {
        if let Some(local) = &self.local {
            return match local.list_recursive_each(prefixes).await {
                Ok(listings) => listings
                    .into_iter()
                    .map(|listing| {
                        listing.map(|mut entries| {
                            entries.sort_by(|a, b| a.path.cmp(&b.path));
                            entries
                        })
                    })
                    .collect(),
                // The blocking task itself failed: every listing did.
                Err(error) => prefixes
                    .iter()
                    .map(|_| Err(ArtifactError::backend_msg(error.to_string())))
                    .collect(),
            };
        }
        // Collected first: a stream over a borrowing closure is not `Send`
        // enough for callers behind `async_trait`.
        let listings: Vec<_> = prefixes
            .iter()
            .map(|prefix| self.list_recursive(Some(prefix)))
            .collect();
        futures::stream::iter(listings)
            .buffered(LISTINGS_AT_ONCE)
            .collect()
            .await
    }

    /// Deletes the object at `key`. Idempotent: a missing object (or a "directory") is Ok.
    pub async fn delete(&self, key: &ArtifactKey) -> Result<(), ArtifactError> {
        self.check_local(key).await?;
        let location = self.location(key)?;
        match self.store.delete(&location).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if self.local.is_some() && is_a_directory(&e) {
                    // Unlinking a directory fails with EISDIR; on an object store there is
                    // simply no object at that key.
                    return Ok(());
                }
                match classify(e, key.as_str(), Op::Delete) {
                    ArtifactError::NotFound { .. } => Ok(()),
                    other => Err(other),
                }
            }
        }
    }

    /// Deletes every object under prefix; idempotent; returns how many were removed.
    ///
    /// "Under" is directory-wise, as in [`list_recursive`](Self::list_recursive): objects
    /// whose keys start with `prefix/`.
    pub async fn delete_prefix(&self, prefix: &ArtifactKey) -> Result<u64, ArtifactError> {
        let entries = self.list_recursive(Some(prefix)).await?;
        let mut locations = Vec::with_capacity(entries.len());
        for entry in &entries {
            let key = ArtifactKey::parse(&entry.path)?;
            locations.push(self.location(&key)?);
        }
        // delete_stream lets S3 and Azure use their bulk-delete APIs.
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(locations.into_iter().map(Ok)).boxed());
        let mut deleted = 0u64;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                // Deleted concurrently by someone else: still gone, which is what was asked.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(classify(e, prefix.as_str(), Op::Delete)),
            }
        }
        Ok(deleted)
    }

    /// Deletes what a path names: the object at `key` (a file) and every
    /// object under it (a directory). Idempotent; returns how many objects
    /// went. The one way to carry out a journaled delete of an artifact or
    /// file-share path.
    pub async fn delete_path(&self, key: &ArtifactKey) -> Result<u64, ArtifactError> {
        let existed = self.head(key).await?.is_some();
        self.delete(key).await?;
        Ok(u64::from(existed) + self.delete_prefix(key).await?)
    }

    /// Server-side copy where the backend supports it.
    ///
    /// Overwrites `to`. On local disks the copy is a hard link, which is safe because objects
    /// are never modified in place (every write replaces the file).
    pub async fn copy(&self, from: &ArtifactKey, to: &ArtifactKey) -> Result<(), ArtifactError> {
        self.check_local(from).await?;
        self.check_local(to).await?;
        let src = self.location(from)?;
        let dst = self.location(to)?;
        self.store.copy(&src, &dst).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => ArtifactError::NotFound {
                path: from.to_string(),
            },
            other => classify(other, to.as_str(), Op::Write),
        })
    }

    /// Whether clients may send an object's parts straight to the storage
    /// (S3, Azure Blob, GCS with a service account key): see [`create_direct_upload`](Self::create_direct_upload).
    pub fn direct_uploads(&self) -> bool {
        self.direct.is_some()
    }

    /// Starts a multipart upload to `key` whose `num_parts` parts the client
    /// PUTs itself to the returned URLs, valid for `expires_in` (at most
    /// until the upload counts as abandoned). Nothing is
    /// visible at `key` until [`complete_direct_upload`](Self::complete_direct_upload).
    /// `Unsupported` on storage without direct uploads.
    pub async fn create_direct_upload(
        &self,
        key: &ArtifactKey,
        num_parts: u32,
        expires_in: Duration,
    ) -> Result<DirectUpload, ArtifactError> {
        let direct = self.direct()?;
        if num_parts == 0 || num_parts > crate::MAX_DIRECT_PARTS {
            return Err(ArtifactError::invalid(
                key.as_str(),
                format!(
                    "a direct upload has 1 to {} parts, not {num_parts}",
                    crate::MAX_DIRECT_PARTS
                ),
            ));
        }
        let location = self.location(key)?;
        let expires_in = expires_in.min(self.abandoned_after);
        let upload = direct
            .create(&location, key.as_str(), num_parts, expires_in)
            .await?;
        if let Err(message) = self
            .pending
            .open(key.as_str(), &upload.upload_id, num_parts)
            .await
        {
            // Unrecorded, it could never be completed: give it up now.
            let _ = direct.abort(&location, key.as_str(), &upload.upload_id).await;
            return Err(ArtifactError::backend_msg(format!(
                "cannot record the direct upload: {message}"
            )));
        }
        Ok(upload)
    }

    /// Completes a direct upload from the parts the client sent (in order),
    /// making the object visible at `key`, and returns its size and SHA-256
    /// (read back once: the bytes never passed through this process). An
    /// object larger than `max_size` is deleted again (`TooLarge`).
    ///
    /// `UnknownUpload` unless this store created `upload_id` for `key` and
    /// it is still open. Parts are numbered 1 to the number of parts the
    /// upload was created with, in increasing order.
    pub async fn complete_direct_upload(
        &self,
        key: &ArtifactKey,
        upload_id: &str,
        parts: &[UploadedPart],
        max_size: Option<u64>,
    ) -> Result<PutOutcome, ArtifactError> {
        let direct = self.direct()?;
        let location = self.location(key)?;
        // Taken, so that two completions of one upload cannot both proceed;
        // put back if the storage refuses the completion (the client then
        // aborts it).
        let num_parts = self.take_pending(key, upload_id).await?;
        let numbered = parts.iter().enumerate().all(|(i, part)| {
            part.part_number >= 1
                && part.part_number <= num_parts
                && (i == 0 || parts[i - 1].part_number < part.part_number)
        });
        if parts.is_empty() || !numbered {
            self.put_back(key, upload_id, num_parts).await;
            return Err(ArtifactError::invalid(
                key.as_str(),
                format!(
                    "the parts of a direct upload are numbered 1 to {num_parts} in increasing order, at least one"
                ),
            ));
        }
        if let Err(error) = direct.complete(&location, key.as_str(), upload_id, parts).await {
            self.put_back(key, upload_id, num_parts).await;
            return Err(error);
        }
        let outcome = self.digest(key).await?;
        if let Some(limit) = max_size {
            if outcome.size > limit {
                self.delete(key).await?;
                return Err(ArtifactError::TooLarge { limit });
            }
        }
        Ok(outcome)
    }

    /// Abandons a direct upload: S3 and GCS drop its parts; Azure cannot drop
    /// uncommitted blocks and discards them after 7 days.
    /// `UnknownUpload` unless this store created `upload_id` for `key` and
    /// it is still open.
    pub async fn abort_direct_upload(&self, key: &ArtifactKey, upload_id: &str) -> Result<(), ArtifactError> {
        let direct = self.direct()?;
        let location = self.location(key)?;
        let num_parts = self.take_pending(key, upload_id).await?;
        if let Err(error) = direct.abort(&location, key.as_str(), upload_id).await {
            self.put_back(key, upload_id, num_parts).await;
            return Err(error);
        }
        Ok(())
    }

    /// Takes an open upload from the ledger: `UnknownUpload` unless open.
    async fn take_pending(&self, key: &ArtifactKey, upload_id: &str) -> Result<u32, ArtifactError> {
        self.pending
            .take(key.as_str(), upload_id)
            .await
            .map_err(|message| {
                ArtifactError::backend_msg(format!("cannot read the direct uploads: {message}"))
            })?
            .ok_or_else(|| ArtifactError::UnknownUpload {
                path: key.to_string(),
                upload_id: upload_id.to_string(),
            })
    }

    /// Opens a taken upload again (its completion or abort failed: the
    /// client may try again).
    async fn put_back(&self, key: &ArtifactKey, upload_id: &str, num_parts: u32) {
        if let Err(message) = self.pending.open(key.as_str(), upload_id, num_parts).await {
            tracing::warn!(key = key.as_str(), upload_id, %message, "could not reopen a direct upload");
        }
    }

    /// Aborts the direct uploads opened longer than
    /// [`abandoned_uploads_after`](Self::abandoned_uploads_after) ago (their
    /// client went away): returns how many. A failed abort is kept for the
    /// next call.
    pub async fn abort_expired_direct_uploads(&self) -> usize {
        let max_age = self.abandoned_after;
        let expired = match self.pending.opened_before(max_age).await {
            Ok(expired) => expired,
            Err(message) => {
                tracing::warn!(%message, "cannot read the open direct uploads");
                return 0;
            }
        };
        let mut aborted = 0;
        for (key, upload_id) in expired {
            let Ok(key) = ArtifactKey::parse(&key) else {
                continue;
            };
            match self.abort_direct_upload(&key, &upload_id).await {
                Ok(()) => aborted += 1,
                Err(error) => {
                    tracing::warn!(key = key.as_str(), upload_id, %error, "could not abort an abandoned direct upload")
                }
            }
        }
        aborted
    }

    /// How many direct uploads are open.
    pub async fn open_direct_uploads(&self) -> usize {
        self.pending.count().await.unwrap_or(0)
    }

    /// The size and SHA-256 of the object at `key`, streamed.
    pub async fn digest(&self, key: &ArtifactKey) -> Result<PutOutcome, ArtifactError> {
        use sha2::{Digest, Sha256};
        let (_, mut stream) = self.get_stream(key).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(PutOutcome {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    fn direct(&self) -> Result<&Direct, ArtifactError> {
        self.direct.as_ref().ok_or_else(|| ArtifactError::Unsupported {
            message: format!(
                "direct uploads to {} storage",
                self.url.split(':').next().unwrap_or("this")
            ),
        })
    }

    async fn check_local(&self, key: &ArtifactKey) -> Result<(), ArtifactError> {
        match &self.local {
            Some(local) => local.check(key).await,
            None => Ok(()),
        }
    }

    /// The backend path of `key`. Path::parse keeps the key's characters as they are (no
    /// percent-encoding), so objects carry the same names other MLflow tools expect.
    fn location(&self, key: &ArtifactKey) -> Result<Path, ArtifactError> {
        let raw = if self.prefix.is_empty() {
            key.as_str().to_string()
        } else {
            format!("{}/{}", self.prefix, key.as_str())
        };
        Path::parse(&raw).map_err(|e| ArtifactError::invalid(key.as_str(), e.to_string()))
    }

    fn list_location(&self, prefix: Option<&ArtifactKey>) -> Result<Option<Path>, ArtifactError> {
        match prefix {
            Some(key) => self.location(key).map(Some),
            None if self.prefix.is_empty() => Ok(None),
            None => Path::parse(&self.prefix)
                .map(Some)
                .map_err(|e| ArtifactError::invalid(&self.prefix, e.to_string())),
        }
    }

    /// Maps a backend path back to a key relative to the root, keeping only entries strictly
    /// under `prefix` whose names are valid keys (others may exist if something besides
    /// this crate writes to the bucket; they could not be addressed, so they are not shown).
    fn relative(&self, location: &Path, prefix: Option<&ArtifactKey>) -> Option<String> {
        let raw: &str = location.as_ref();
        let rel = if self.prefix.is_empty() {
            raw
        } else {
            raw.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        let key = match ArtifactKey::parse(rel) {
            Ok(key) => key,
            Err(_) => {
                tracing::debug!(
                    path = raw,
                    "skipping an object whose name is not a valid artifact key"
                );
                return None;
            }
        };
        match prefix {
            Some(p) if key == *p || !key.starts_with(p) => None,
            _ => Some(key.as_str().to_string()),
        }
    }
}

fn prefix_str(prefix: Option<&ArtifactKey>) -> &str {
    prefix.map(ArtifactKey::as_str).unwrap_or("")
}

fn is_a_directory(err: &object_store::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io_err) = e.downcast_ref::<std::io::Error>() {
            return io_err.kind() == std::io::ErrorKind::IsADirectory;
        }
        current = e.source();
    }
    false
}
