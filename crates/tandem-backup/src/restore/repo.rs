//! Reading a backup repository for a restore: its documents, and its record
//! objects streamed line by line while their size and SHA-256 are checked.

use std::collections::HashMap;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tandem_artifacts::{ArtifactKey, ArtifactStore};

use super::RestoreError;
use crate::format::{self, ArchivedRecord, BackupManifest, ObjectRef, RepositoryInfo, SegmentInfo};

pub(crate) struct Repository {
    pub storage: ArtifactStore,
    url: String,
}

pub(crate) fn key(path: &str) -> Result<ArtifactKey, RestoreError> {
    ArtifactKey::parse(path)
        .map_err(|error| RestoreError::Corrupt(format!("bad repository key '{path}': {error}")))
}

impl Repository {
    pub async fn open(url: &str, options: &HashMap<String, String>) -> Result<Repository, RestoreError> {
        let storage = ArtifactStore::open(url, options).map_err(|error| {
            RestoreError::Invalid(format!("cannot open backup repository '{url}': {error}"))
        })?;
        let repository = Repository {
            storage,
            url: url.to_string(),
        };
        match repository.read_small(format::REPOSITORY_INFO_KEY).await? {
            Some(bytes) => {
                format::decode::<RepositoryInfo>(format::REPOSITORY_INFO_KEY, &bytes)?;
            }
            None => {
                return Err(RestoreError::NotFound(format!(
                    "'{url}' is not a backup repository (no {})",
                    format::REPOSITORY_INFO_KEY
                )))
            }
        }
        Ok(repository)
    }

    /// A small document, or `None` if absent.
    async fn read_small(&self, path: &str) -> Result<Option<Vec<u8>>, RestoreError> {
        let (_, mut stream) = match self.storage.get_stream(&key(path)?).await {
            Ok(found) => found,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(Some(bytes))
    }

    /// Every backup's manifest, oldest first (ids sort by creation time).
    pub async fn manifests(&self) -> Result<Vec<BackupManifest>, RestoreError> {
        let listing = self.list("backups").await?;
        let mut manifests = Vec::new();
        for path in listing
            .into_iter()
            .filter(|path| path.ends_with("/manifest.json"))
        {
            if let Some(bytes) = self.read_small(&path).await? {
                manifests.push(format::decode::<BackupManifest>(&path, &bytes)?);
            }
        }
        // Ids have second resolution: creation time orders them.
        manifests.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(manifests)
    }

    pub async fn manifest(&self, id: &str) -> Result<BackupManifest, RestoreError> {
        let path = format::manifest_key(id);
        let bytes = self
            .read_small(&path)
            .await?
            .ok_or_else(|| RestoreError::NotFound(format!("backup '{id}' does not exist in {}", self.url)))?;
        Ok(format::decode(&path, &bytes)?)
    }

    /// The archived segments of `region`'s journal, in journal order.
    pub async fn segments(&self, region: &str) -> Result<Vec<SegmentInfo>, RestoreError> {
        let prefix = format::segment_prefix(region);
        let listing = self.list(prefix.trim_end_matches('/')).await?;
        let mut segments = Vec::new();
        for path in listing.into_iter().filter(|path| path.ends_with(".json")) {
            if let Some(bytes) = self.read_small(&path).await? {
                segments.push(format::decode::<SegmentInfo>(&path, &bytes)?);
            }
        }
        segments.sort_by_key(|segment| segment.first_seq);
        Ok(segments)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, RestoreError> {
        match self.storage.list_recursive(Some(&key(prefix)?)).await {
            Ok(listing) => Ok(listing
                .into_iter()
                .filter(|entry| !entry.is_dir)
                .map(|entry| entry.path)
                .collect()),
            Err(error) if error.is_not_found() => Ok(Vec::new()),
            Err(error) => Err(error.into()),
        }
    }

    /// Streams the records of `object` to `each`, in order, checking the
    /// object's size and digest. A mismatch is reported only once the whole
    /// object was read, so a caller that must not act on a corrupt object
    /// reads it through once before acting (see `restore::restore`).
    pub async fn for_each_record(
        &self,
        object: &ObjectRef,
        mut each: impl FnMut(ArchivedRecord) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let mut reader = self.records(object).await?;
        while let Some(record) = reader.next().await? {
            each(record)?;
        }
        Ok(())
    }

    pub async fn records(&self, object: &ObjectRef) -> Result<RecordReader, RestoreError> {
        let (_, stream) = self
            .storage
            .get_stream(&key(&object.key)?)
            .await
            .map_err(|error| {
                if error.is_not_found() {
                    RestoreError::Incomplete(format!("{} is missing from the repository", object.key))
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
    pub async fn next(&mut self) -> Result<Option<ArchivedRecord>, RestoreError> {
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

    fn check(&mut self) -> Result<(), RestoreError> {
        let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if self.size != self.object.bytes || digest != self.object.sha256 {
            return Err(RestoreError::Corrupt(format!(
                "{} is corrupt: {} bytes with SHA-256 {digest}, the repository recorded {} bytes with SHA-256 {}",
                self.object.key, self.size, self.object.bytes, self.object.sha256
            )));
        }
        match self.broken.take() {
            Some(message) => Err(RestoreError::Corrupt(format!("undecodable record in {message}"))),
            None => Ok(()),
        }
    }
}

/// The [`ObjectRef`] of an archived segment.
pub(crate) fn segment_object(segment: &SegmentInfo) -> ObjectRef {
    ObjectRef {
        key: format::segment_keys(&segment.region, segment.first_seq, segment.last_seq).0,
        bytes: segment.bytes,
        sha256: segment.sha256.clone(),
    }
}
