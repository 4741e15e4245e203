//! Streaming uploads in bounded memory.
//!
//! A body is hashed and counted as it arrives. Bodies that end within the first part are
//! written with one plain `put` (atomic everywhere, and cheaper than a multipart upload for
//! the many small files MLflow logs). Longer bodies go through a multipart upload with
//! fixed-size parts, at most [`MAX_PARTS_IN_FLIGHT`] of them uploading at once, so an upload
//! holds at most about `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes whatever its length.
//!
//! `object_store::WriteMultipart` does nearly this, but when a part fails inside its
//! `finish()` it returns without aborting the upload, leaving parts behind on S3. Here every
//! failure path aborts, and dropping an unfinished upload (the request future was cancelled
//! because the client went away) aborts it in the background.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::{path::Path, MultipartUpload, ObjectStore, PutPayload, PutPayloadMut};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::error::{classify, Op};
use crate::local::LocalRoot;
use crate::{ArtifactError, ArtifactKey, PutOutcome};

/// Size of every multipart part but the last. S3 needs at least 5 MiB; fixed sizes keep
/// stores that require uniform parts (e.g. R2) happy and make memory use predictable.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading concurrently per upload: enough to overlap network round-trips with
/// reading the body, small enough that many concurrent uploads stay cheap.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Streams `body` to `location`, see [`crate::ArtifactStore::put_stream`].
///
/// `local` is set for local-directory stores: after a failed or cancelled upload, the
/// directories created for it are removed again if empty, so that they do not show up as
/// phantom "directories" in listings (object stores have no such leftovers).
pub(crate) async fn put_stream<S>(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    key: &ArtifactKey,
    body: S,
    max_size: Option<u64>,
    local: Option<&LocalRoot>,
) -> Result<PutOutcome, ArtifactError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
{
    let mut multipart: Option<PartWriter> = None;
    let result = stream_into(store, location, key, body, max_size, local, &mut multipart).await;
    if let Err(error) = &result {
        if let Some(writer) = multipart.take() {
            writer.abort().await;
        }
        // A refused key (a symlink on the way, a reserved or conflicting name) created
        // no directories, and walking up a path that crosses a symlink must not happen.
        let refused = matches!(error, ArtifactError::InvalidPath { .. });
        if let (Some(local), false) = (local, refused) {
            local.prune_empty_parents(key).await;
        }
    }
    result
}

async fn stream_into<S>(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    key: &ArtifactKey,
    mut body: S,
    max_size: Option<u64>,
    local: Option<&LocalRoot>,
    multipart: &mut Option<PartWriter>,
) -> Result<PutOutcome, ArtifactError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
{
    let write_err = |e| classify(e, key.as_str(), Op::Write);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    // Chunks received before we know whether the body fits in one part.
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len = 0usize;

    while let Some(item) = body.next().await {
        let chunk = item.map_err(|e| ArtifactError::BodyInterrupted {
            message: e.to_string(),
        })?;
        if chunk.is_empty() {
            continue;
        }
        size += chunk.len() as u64;
        if let Some(limit) = max_size {
            if size > limit {
                return Err(ArtifactError::TooLarge { limit });
            }
        }
        hasher.update(&chunk);

        match multipart.as_mut() {
            Some(writer) => writer.push(chunk).await.map_err(write_err)?,
            None => {
                head_len += chunk.len();
                head.push(chunk);
                if head_len > PART_SIZE {
                    if let Some(local) = local {
                        local.check(key).await?;
                    }
                    let upload = store.put_multipart(location).await.map_err(write_err)?;
                    let cleanup = local.map(|l| (l.clone(), key.clone()));
                    let writer = multipart.insert(PartWriter::new(upload, cleanup));
                    for chunk in head.drain(..) {
                        writer.push(chunk).await.map_err(write_err)?;
                    }
                }
            }
        }
    }

    match multipart.take() {
        // finish() aborts the upload itself if completing fails.
        Some(writer) => writer.finish().await.map_err(write_err)?,
        None => match local {
            Some(local) => local.put_complete(key, location, head).await?,
            None => {
                store
                    .put(location, PutPayload::from_iter(head))
                    .await
                    .map_err(write_err)?;
            }
        },
    }
    Ok(PutOutcome {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Cuts a byte stream into `PART_SIZE` parts and uploads them on spawned tasks, so parts
/// progress while the caller waits for more body.
struct PartWriter {
    /// `None` once completed or aborted; `Drop` aborts whatever is still here.
    upload: Option<Box<dyn MultipartUpload>>,
    tasks: JoinSet<object_store::Result<()>>,
    buffer: PutPayloadMut,
    /// Local root and key whose emptied parent directories a cancelled upload should remove.
    cleanup: Option<(LocalRoot, ArtifactKey)>,
}

impl PartWriter {
    fn new(upload: Box<dyn MultipartUpload>, cleanup: Option<(LocalRoot, ArtifactKey)>) -> Self {
        PartWriter {
            upload: Some(upload),
            tasks: JoinSet::new(),
            buffer: PutPayloadMut::new(),
            cleanup,
        }
    }

    /// Appends `bytes` without copying; starts a part each time the buffer reaches
    /// `PART_SIZE`, first waiting until fewer than `MAX_PARTS_IN_FLIGHT` are running.
    async fn push(&mut self, mut bytes: Bytes) -> object_store::Result<()> {
        while !bytes.is_empty() {
            let room = PART_SIZE - self.buffer.content_length();
            if bytes.len() < room {
                self.buffer.push(bytes);
                return Ok(());
            }
            self.buffer.push(bytes.split_to(room));
            self.wait_until_at_most(MAX_PARTS_IN_FLIGHT - 1).await?;
            self.start_part();
        }
        Ok(())
    }

    fn start_part(&mut self) {
        let part = std::mem::take(&mut self.buffer).freeze();
        let upload = self.upload.as_mut().expect("upload is live until finish/abort");
        // put_part assigns the part number synchronously, so parts stay in order even
        // though they complete in any order.
        self.tasks.spawn(upload.put_part(part));
    }

    async fn wait_until_at_most(&mut self, in_flight: usize) -> object_store::Result<()> {
        while self.tasks.len() > in_flight {
            match self.tasks.join_next().await {
                Some(Ok(result)) => result?,
                Some(Err(source)) => return Err(object_store::Error::JoinError { source }),
                None => break,
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> object_store::Result<()> {
        if self.buffer.content_length() > 0 {
            self.start_part();
        }
        let result = match self.wait_until_at_most(0).await {
            Ok(()) => {
                let upload = self.upload.as_mut().expect("upload is live");
                upload.complete().await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.upload = None;
                Ok(())
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self) {
        self.tasks.shutdown().await;
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                // The parts are invisible either way; a lifecycle rule on the bucket is the
                // backstop for uploads that could not be aborted.
                tracing::warn!(error = %e, "could not abort a multipart upload");
            }
        }
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        // Reached only when the put_stream future is dropped mid-upload. JoinSet's own Drop
        // cancels the part tasks; the upload itself must be aborted asynchronously.
        if let Some(mut upload) = self.upload.take() {
            let cleanup = self.cleanup.take();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(error = %e, "could not abort a cancelled multipart upload");
                    }
                    // Only after the abort has removed the staging file can its directory be empty.
                    if let Some((local, key)) = cleanup {
                        local.prune_empty_parents(&key).await;
                    }
                });
            }
        }
    }
}
