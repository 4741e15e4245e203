//! Reading and writing a backup repository: any URL Tandem's storage opens,
//! through [`ArtifactStore`] (streaming puts that compute SHA-256, so every
//! object's digest is known as it is written).

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tandem_artifacts::{ArtifactError, ArtifactKey, ArtifactStore};
use tandem_core::model::Millis;

use crate::error::{BackupError, BackupResult};
use crate::format::{
    decode, manifest_key, segment_keys, segment_prefix, ArchivedRecord, BackupManifest, ObjectRef,
    RepositoryInfo, SegmentInfo, REPOSITORY_FORMAT, REPOSITORY_INFO_KEY,
};

#[derive(Debug, Clone)]
pub struct Repository {
    storage: ArtifactStore,
    url: String,
}

impl Repository {
    /// Opens the repository at `url`. Cloud credentials come from the
    /// standard environment variables of each store (object_store's).
    pub fn open(url: &str) -> BackupResult<Repository> {
        Repository::open_with(url, &HashMap::new())
    }

    /// [`Repository::open`] with the object store's options (credentials,
    /// endpoint; object_store's keys).
    pub fn open_with(url: &str, options: &HashMap<String, String>) -> BackupResult<Repository> {
        if url.trim().is_empty() {
            return Err(BackupError::invalid("the backup repository URL is empty"));
        }
        let storage = ArtifactStore::open(url, options).map_err(|error| {
            BackupError::invalid(format!("cannot open backup repository '{url}': {error}"))
        })?;
        Ok(Repository {
            storage,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn storage(&self) -> &ArtifactStore {
        &self.storage
    }

    pub fn key(&self, key: &str) -> BackupResult<ArtifactKey> {
        ArtifactKey::parse(key).map_err(|error| BackupError::repository(&self.url, error))
    }

    fn failed(&self, error: ArtifactError) -> BackupError {
        BackupError::repository(&self.url, error)
    }

    /// The repository's description; creates it when the prefix is empty.
    pub async fn init(&self, now: Millis) -> BackupResult<RepositoryInfo> {
        if let Some(info) = self.read_json::<RepositoryInfo>(REPOSITORY_INFO_KEY).await? {
            return Ok(info);
        }
        let info = RepositoryInfo {
            format: REPOSITORY_FORMAT,
            created_at: now,
        };
        self.put_json(REPOSITORY_INFO_KEY, &info).await?;
        Ok(info)
    }

    /// The repository's description; an error if `url` holds none.
    pub async fn info(&self) -> BackupResult<RepositoryInfo> {
        self.read_json::<RepositoryInfo>(REPOSITORY_INFO_KEY)
            .await?
            .ok_or_else(|| {
                BackupError::not_found(format!(
                    "'{}' is not a Tandem backup repository (no {REPOSITORY_INFO_KEY})",
                    self.url
                ))
            })
    }

    pub async fn head(&self, key: &str) -> BackupResult<Option<u64>> {
        self.storage
            .head(&self.key(key)?)
            .await
            .map_err(|error| self.failed(error))
    }

    /// The whole object, or None if it does not exist. For small documents.
    pub async fn read(&self, key: &str) -> BackupResult<Option<Vec<u8>>> {
        let key = self.key(key)?;
        let (_, mut stream) = match self.storage.get_stream(&key).await {
            Ok(found) => found,
            Err(ArtifactError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.failed(error)),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(|error| self.failed(error))?);
        }
        Ok(Some(bytes))
    }

    /// Reads an object and checks it against its reference (size and
    /// SHA-256): the repository's content is never trusted unverified.
    pub async fn read_verified(&self, object: &ObjectRef) -> BackupResult<Vec<u8>> {
        let bytes = self.read(&object.key).await?.ok_or_else(|| {
            BackupError::corrupt(format!("{} is missing from the backup repository", object.key))
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as i64 != object.bytes || digest != object.sha256 {
            return Err(BackupError::corrupt(format!(
                "{} is corrupt: {} bytes with SHA-256 {digest}, expected {} bytes with {}",
                object.key,
                bytes.len(),
                object.bytes,
                object.sha256
            )));
        }
        Ok(bytes)
    }

    pub async fn read_json<T: DeserializeOwned>(&self, key: &str) -> BackupResult<Option<T>> {
        match self.read(key).await? {
            Some(bytes) => decode(key, &bytes)
                .map(Some)
                .map_err(|error| BackupError::corrupt(error.0)),
            None => Ok(None),
        }
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> BackupResult<ObjectRef> {
        let outcome = self
            .storage
            .put_bytes(&self.key(key)?, bytes)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(ObjectRef {
            key: key.to_string(),
            bytes: outcome.size as i64,
            sha256: outcome.sha256,
        })
    }

    /// Streams `body` to `key`; its size and digest are computed on the way.
    pub async fn put_stream<S>(&self, key: &str, body: S) -> BackupResult<ObjectRef>
    where
        S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let outcome = self
            .storage
            .put_stream(&self.key(key)?, body, None)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(ObjectRef {
            key: key.to_string(),
            bytes: outcome.size as i64,
            sha256: outcome.sha256,
        })
    }

    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> BackupResult<ObjectRef> {
        let bytes = serde_json::to_vec_pretty(value).expect("repository documents always encode");
        self.put(key, Bytes::from(bytes)).await
    }

    pub async fn delete(&self, key: &str) -> BackupResult<()> {
        match self.storage.delete(&self.key(key)?).await {
            Ok(()) | Err(ArtifactError::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Size and SHA-256 of an object, computed by streaming it; None if absent.
    pub async fn hash(&self, key: &str) -> BackupResult<Option<(i64, String)>> {
        let (_, mut stream) = match self.storage.get_stream(&self.key(key)?).await {
            Ok(found) => found,
            Err(ArtifactError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.failed(error)),
        };
        let mut hasher = Sha256::new();
        let mut size = 0i64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.failed(error))?;
            size += chunk.len() as i64;
            hasher.update(&chunk);
        }
        Ok(Some((size, hex::encode(hasher.finalize()))))
    }

    /// The archived segments of `region`'s journal, in order.
    pub async fn segments(&self, region: &str) -> BackupResult<Vec<SegmentInfo>> {
        let prefix = segment_prefix(region);
        let listing = match self
            .storage
            .list(Some(&self.key(prefix.trim_end_matches('/'))?))
            .await
        {
            Ok(listing) => listing,
            Err(ArtifactError::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(self.failed(error)),
        };
        let mut segments = Vec::new();
        for entry in listing
            .into_iter()
            .filter(|entry| !entry.is_dir && entry.path.ends_with(".json"))
        {
            if let Some(info) = self.read_json::<SegmentInfo>(&entry.path).await? {
                segments.push(info);
            }
        }
        segments.sort_by_key(|segment| segment.first_seq);
        Ok(segments)
    }

    /// Regions whose journal the repository archives.
    pub async fn regions(&self) -> BackupResult<Vec<String>> {
        self.children("journal").await
    }

    /// Every complete backup (one whose manifest exists), oldest first.
    pub async fn manifests(&self) -> BackupResult<Vec<BackupManifest>> {
        let mut manifests = Vec::new();
        for id in self.children("backups").await? {
            if let Some(manifest) = self.read_json::<BackupManifest>(&manifest_key(&id)).await? {
                manifests.push(manifest);
            }
        }
        // Ids have second resolution: creation time orders them.
        manifests.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(manifests)
    }

    pub async fn manifest(&self, id: &str) -> BackupResult<BackupManifest> {
        if id.is_empty() || id.contains('/') {
            return Err(BackupError::invalid(format!("'{id}' is not a backup id")));
        }
        self.read_json::<BackupManifest>(&manifest_key(id))
            .await?
            .ok_or_else(|| BackupError::not_found(format!("no backup '{id}' in {}", self.url)))
    }

    /// Streams the records of `object` to `each`, in order, checking the
    /// object's size and digest. A mismatch is reported only once the whole
    /// object was read, so a caller that must not act on a corrupt object
    /// reads it through once before acting (see `restore::restore`).
    pub async fn for_each_record(
        &self,
        object: &ObjectRef,
        mut each: impl FnMut(ArchivedRecord) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let mut reader = self.records(object).await?;
        while let Some(record) = reader.next().await? {
            each(record)?;
        }
        Ok(())
    }

    pub async fn records(&self, object: &ObjectRef) -> Result<RecordReader, BackupError> {
        let (_, stream) = self
            .storage
            .get_stream(&self.key(&object.key)?)
            .await
            .map_err(|error| {
                if error.is_not_found() {
                    BackupError::incomplete(format!("{} is missing from the repository", object.key))
                } else {
                    error.into()
                }
            })?;
        Ok(RecordReader {
            object: object.clone(),
            stream,
            hasher: Sha256::new(),
            size: 0,
            pending: Vec::new(),
            start: 0,
            line_number: 0,
            broken: None,
            finished: false,
        })
    }

    /// Names of the "directories" directly under `prefix`.
    pub async fn children(&self, prefix: &str) -> BackupResult<Vec<String>> {
        let listing = match self.storage.list(Some(&self.key(prefix)?)).await {
            Ok(listing) => listing,
            Err(ArtifactError::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(self.failed(error)),
        };
        Ok(listing
            .into_iter()
            .filter(|entry| entry.is_dir)
            .filter_map(|entry| entry.path.rsplit('/').next().map(str::to_string))
            .collect())
    }
}

/// The records of one object, line by line, in bounded memory.
pub struct RecordReader {
    object: ObjectRef,
    stream: futures::stream::BoxStream<'static, Result<bytes::Bytes, tandem_artifacts::ArtifactError>>,
    hasher: Sha256,
    size: i64,
    pending: Vec<u8>,
    /// Where the unread part of `pending` begins.
    start: usize,
    line_number: usize,
    /// The first undecodable line: reported at the end, because a digest
    /// mismatch, if there is one, is the better explanation.
    broken: Option<String>,
    finished: bool,
}

impl RecordReader {
    /// The next record; at the end, checks the object's size and digest.
    pub async fn next(&mut self) -> Result<Option<ArchivedRecord>, BackupError> {
        loop {
            if let Some(end) = self.pending[self.start..].iter().position(|byte| *byte == b'\n') {
                let line = self.start..self.start + end;
                self.start += end + 1;
                if let Some(record) = self.decode(line) {
                    return Ok(Some(record));
                }
                continue;
            }
            if self.finished {
                if self.start < self.pending.len() {
                    let line = self.start..self.pending.len();
                    self.start = self.pending.len();
                    if let Some(record) = self.decode(line) {
                        return Ok(Some(record));
                    }
                }
                return self.check().map(|()| None);
            }
            self.pending.drain(..self.start);
            self.start = 0;
            match self.stream.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.hasher.update(&chunk);
                    self.size += chunk.len() as i64;
                    self.pending.extend_from_slice(&chunk);
                }
                None => self.finished = true,
            }
        }
    }

    fn decode(&mut self, line: std::ops::Range<usize>) -> Option<ArchivedRecord> {
        self.line_number += 1;
        let line = &self.pending[line];
        if self.broken.is_some() || line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match serde_json::from_slice::<ArchivedRecord>(line) {
            Ok(record) => Some(record),
            Err(error) => {
                self.broken = Some(format!("{} line {}: {error}", self.object.key, self.line_number));
                None
            }
        }
    }

    fn check(&mut self) -> Result<(), BackupError> {
        let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if self.size != self.object.bytes || digest != self.object.sha256 {
            return Err(BackupError::corrupt(format!(
                "{} is corrupt: {} bytes with SHA-256 {digest}, the repository recorded {} bytes with SHA-256 {}",
                self.object.key, self.size, self.object.bytes, self.object.sha256
            )));
        }
        match self.broken.take() {
            Some(message) => Err(BackupError::corrupt(format!("undecodable record in {message}"))),
            None => Ok(()),
        }
    }
}

/// The [`ObjectRef`] of an archived segment.
pub(crate) fn segment_object(segment: &SegmentInfo) -> ObjectRef {
    ObjectRef {
        key: segment_keys(&segment.region, segment.first_seq, segment.last_seq).0,
        bytes: segment.bytes,
        sha256: segment.sha256.clone(),
    }
}
