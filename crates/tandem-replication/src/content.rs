//! Where the bytes of artifact and file-share changes live, and what the
//! state says they are: shared by the follower (copies), the protocol
//! (serves) and the quarantine (moves aside), so that the workspace file
//! share replicates exactly like artifacts do.

use tandem_artifacts::ArtifactKey;
use tandem_core::journal::ContentArea;
use tandem_store::{StoreResult, WorkspaceRef};

use crate::Region;

/// The storage key of `path` in `area` of a workspace.
pub(crate) fn storage_key(workspace_id: &str, area: ContentArea, path: &str) -> Result<ArtifactKey, String> {
    tandem_artifacts::workspace_content_key(workspace_id, area.as_str(), path)
        .map_err(|error| format!("{} path '{path}': {error}", noun(area)))
}

/// "artifact" or "file", for messages.
pub(crate) fn noun(area: ContentArea) -> &'static str {
    match area {
        ContentArea::Artifacts => "artifact",
        ContentArea::Files => "file",
    }
}

/// The size and digest the state records at exactly `path`, if any.
pub(crate) async fn recorded(
    region: &Region,
    workspace_id: &str,
    area: ContentArea,
    path: &str,
) -> StoreResult<Option<(i64, String)>> {
    let ws = WorkspaceRef {
        workspace_id: workspace_id.to_string(),
        name: String::new(),
    };
    Ok(match area {
        ContentArea::Artifacts => region
            .store
            .list_artifact_entries(&ws, path)
            .await?
            .into_iter()
            .find(|entry| entry.path == path)
            .map(|entry| (entry.size, entry.sha256)),
        ContentArea::Files => region
            .store
            .list_files(&ws, path)
            .await?
            .into_iter()
            .find(|entry| entry.path == path)
            .map(|entry| (entry.size, entry.sha256)),
    })
}
