//! The workspace file share over HTTP (upload, list, download, delete) and
//! salvage: the files storage still holds for a workspace id, even after the
//! workspace was purged.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStream};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tandem_core::model::FileEntry;

use crate::retention::segment;
use crate::{with_causes, ClientError, ClientResult, TandemClient};

/// `GET …/workspaces/{ws}/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileListing {
    pub workspace: String,
    pub workspace_id: String,
    pub files: Vec<FileEntry>,
    pub bytes: i64,
}

/// A file storage holds for a workspace id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalvagedFile {
    pub path: String,
    pub size: u64,
}

/// `GET /api/tandem/v1/salvage/{workspace_id}/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalvageListing {
    pub workspace_id: String,
    /// `active`, `deleted`, or `gone` (purged, or never known to the region).
    pub workspace_state: String,
    /// The workspace's name while the region still knows it.
    pub workspace: Option<String>,
    pub files: Vec<SalvagedFile>,
    pub bytes: u64,
}

/// A download's size (when the server sent it) and its bytes as they arrive.
pub struct Download {
    pub size: Option<u64>,
    pub stream: BoxStream<'static, ClientResult<Bytes>>,
}

/// `a b/c` → `a%20b/c`: every segment encoded, the slashes kept.
fn encode_path(path: &str) -> String {
    path.trim_matches('/')
        .split('/')
        .map(segment)
        .collect::<Vec<_>>()
        .join("/")
}

impl TandemClient {
    fn files_url(&self, workspace: &str, path: Option<&str>) -> String {
        let base = format!("/api/tandem/v1/workspaces/{}/files", segment(workspace));
        match path {
            Some(path) => self.url(&format!("{base}/{}", encode_path(path))),
            None => self.url(&base),
        }
    }

    /// The files at or under `prefix` (every file for None).
    pub async fn list_files(&self, workspace: &str, prefix: Option<&str>) -> ClientResult<FileListing> {
        let url = self.files_url(workspace, None);
        let mut request = self.http.get(&url);
        if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
            request = request.query(&[("path", prefix)]);
        }
        let response = self.send(request, &url).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Uploads `body` to `path`, replacing what was there.
    pub async fn upload_file<S>(&self, workspace: &str, path: &str, body: S) -> ClientResult<FileEntry>
    where
        S: TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        let url = self.files_url(workspace, Some(path));
        let request = self.http.put(&url).body(reqwest::Body::wrap_stream(body));
        self.json(request, &url, "file").await
    }

    /// A file's bytes.
    pub async fn download_file(&self, workspace: &str, path: &str) -> ClientResult<Download> {
        let url = self.files_url(workspace, Some(path));
        self.download(&url).await
    }

    /// Deletes a file or a directory; returns the files removed.
    pub async fn delete_file(&self, workspace: &str, path: &str) -> ClientResult<Vec<FileEntry>> {
        let url = self.files_url(workspace, Some(path));
        self.json(self.http.delete(&url), &url, "deleted").await
    }

    /// What storage holds under `workspaces/<workspace_id>/files/`.
    pub async fn salvage_list(&self, workspace_id: &str) -> ClientResult<SalvageListing> {
        let url = self.url(&format!("/api/tandem/v1/salvage/{}/files", segment(workspace_id)));
        let response = self.send(self.http.get(&url), &url).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// One salvageable file's bytes.
    pub async fn salvage_download(&self, workspace_id: &str, path: &str) -> ClientResult<Download> {
        let url = self.url(&format!(
            "/api/tandem/v1/salvage/{}/files/{}",
            segment(workspace_id),
            encode_path(path)
        ));
        self.download(&url).await
    }

    /// Purges what storage still holds for a workspace that no longer
    /// exists; returns how many objects were removed.
    pub async fn purge_storage(&self, workspace_id: &str) -> ClientResult<u64> {
        let url = self.url(&format!("/api/tandem/v1/salvage/{}", segment(workspace_id)));
        let response = self.send(self.http.delete(&url), &url).await?;
        let body: Value = response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))?;
        body["removed_objects"]
            .as_u64()
            .ok_or_else(|| ClientError::Decode("removed_objects: missing".to_string()))
    }

    async fn download(&self, url: &str) -> ClientResult<Download> {
        let response = self.send(self.http.get(url), url).await?;
        let size = response.content_length();
        let url = url.to_string();
        let stream = response
            .bytes_stream()
            .map(move |chunk| {
                chunk.map_err(|error| ClientError::Transport {
                    url: url.clone(),
                    message: with_causes(&error),
                })
            })
            .boxed();
        Ok(Download { size, stream })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_encoded_segment_by_segment() {
        assert_eq!(
            super::encode_path("/nb/my file#1.ipynb"),
            "nb/my%20file%231.ipynb"
        );
    }
}
