//! Soft delete with retention over HTTP: workspace recover, purge and
//! settings; the deleted items of a workspace.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tandem_core::model::{Millis, Workspace};

use crate::{ClientResult, TandemClient};

/// One deleted item of a workspace, as `GET …/workspaces/{ws}/deleted`
/// lists it. A model version's id is `name/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedItem {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub deletion_time: Millis,
    pub purge_after: Millis,
}

/// Encodes one path segment (a model version id holds a `/`).
pub(crate) fn segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

impl TandemClient {
    /// Creates a workspace with its retention settings (None: the server's default).
    pub async fn create_workspace_with(
        &self,
        name: &str,
        description: &str,
        retention_days: Option<i64>,
        purge_protection: Option<bool>,
    ) -> ClientResult<Workspace> {
        let url = self.url("/api/tandem/v1/workspaces");
        let mut body = json!({ "name": name, "description": description });
        if let Some(days) = retention_days {
            body["retention_days"] = json!(days);
        }
        if let Some(protection) = purge_protection {
            body["purge_protection"] = json!(protection);
        }
        self.json(self.http.post(&url).json(&body), &url, "workspace")
            .await
    }

    /// Changes a workspace's description, retention or purge protection;
    /// None keeps the current value.
    pub async fn update_workspace(
        &self,
        name: &str,
        description: Option<&str>,
        retention_days: Option<i64>,
        purge_protection: Option<bool>,
        storage_quota: Option<Option<i64>>,
    ) -> ClientResult<Workspace> {
        let url = self.url(&format!("/api/tandem/v1/workspaces/{}", segment(name)));
        let mut body = Map::new();
        if let Some(description) = description {
            body.insert("description".into(), json!(description));
        }
        if let Some(days) = retention_days {
            body.insert("retention_days".into(), json!(days));
        }
        if let Some(protection) = purge_protection {
            body.insert("purge_protection".into(), json!(protection));
        }
        if let Some(quota) = storage_quota {
            body.insert("storage_quota".into(), json!(quota));
        }
        self.json(
            self.http.patch(&url).json(&Value::Object(body)),
            &url,
            "workspace",
        )
        .await
    }

    /// Every workspace, active and deleted.
    pub async fn list_all_workspaces(&self) -> ClientResult<Vec<Workspace>> {
        let url = self.url("/api/tandem/v1/workspaces");
        let request = self.http.get(&url).query(&[("all", true)]);
        self.json(request, &url, "workspaces").await
    }

    pub async fn recover_workspace(&self, name: &str) -> ClientResult<Workspace> {
        let url = self.url(&format!("/api/tandem/v1/workspaces/{}/recover", segment(name)));
        self.json(self.http.post(&url), &url, "workspace").await
    }

    /// Purges a deleted workspace for good; returns it as it was.
    pub async fn purge_workspace(&self, name: &str, keep_artifacts: bool) -> ClientResult<Workspace> {
        let url = self.url(&format!("/api/tandem/v1/workspaces/{}/purge", segment(name)));
        let request = self
            .http
            .post(&url)
            .json(&json!({ "keep_artifacts": keep_artifacts }));
        self.json(request, &url, "workspace").await
    }

    pub async fn list_deleted(&self, workspace: &str) -> ClientResult<Vec<DeletedItem>> {
        let url = self.url(&format!(
            "/api/tandem/v1/workspaces/{}/deleted",
            segment(workspace)
        ));
        self.json(self.http.get(&url), &url, "deleted").await
    }

    pub async fn recover_deleted(&self, workspace: &str, kind: &str, id: &str) -> ClientResult<()> {
        self.recover_deleted_as(workspace, kind, id, None).await
    }

    /// Recovers a deleted item; a registered model under `new_name` if given.
    pub async fn recover_deleted_as(
        &self,
        workspace: &str,
        kind: &str,
        id: &str,
        new_name: Option<&str>,
    ) -> ClientResult<()> {
        let url = self.url(&format!(
            "/api/tandem/v1/workspaces/{}/deleted/{}/{}/recover",
            segment(workspace),
            segment(kind),
            segment(id)
        ));
        let mut request = self.http.post(&url);
        if let Some(name) = new_name {
            request = request.json(&json!({ "name": name }));
        }
        self.send(request, &url).await.map(|_| ())
    }

    pub async fn purge_deleted(
        &self,
        workspace: &str,
        kind: &str,
        id: &str,
        keep_artifacts: bool,
    ) -> ClientResult<()> {
        let url = self.url(&format!(
            "/api/tandem/v1/workspaces/{}/deleted/{}/{}/purge",
            segment(workspace),
            segment(kind),
            segment(id)
        ));
        let request = self
            .http
            .post(&url)
            .json(&json!({ "keep_artifacts": keep_artifacts }));
        self.send(request, &url).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::segment("clf/2"), "clf%2F2");
        assert_eq!(super::segment("a b?"), "a%20b%3F");
        assert_eq!(super::segment("m-1_x.y"), "m-1_x.y");
    }
}
