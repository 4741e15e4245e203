//! The workspace file share's index: one row per file (`files`), written by
//! `file_written` / `file_deleted` records; the bytes live in the region's
//! storage at `workspaces/<workspace_id>/files/<path>`.
//!
//! A path is a file or a directory, never both: on a local file system (the
//! embedded default) `a` cannot be a file while `a/b` is one, so the index
//! refuses a write that would make it so, on every backend alike.

use sqlx::{AnyConnection, Row};
use tandem_core::journal::Change;
use tandem_core::model::FileEntry;
use tandem_core::Error;

use super::SqlStore;
use crate::error::StoreResult;
use crate::WorkspaceRef;

const FILE_COLUMNS: &str = "path, size, sha256, modified_at";

fn decode(row: &sqlx::any::AnyRow) -> StoreResult<FileEntry> {
    Ok(FileEntry {
        path: row.try_get("path")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        modified_at: row.try_get("modified_at")?,
    })
}

/// `a/b/c` → `["a", "a/b"]`.
fn ancestors(path: &str) -> Vec<&str> {
    path.match_indices('/').map(|(at, _)| &path[..at]).collect()
}

impl SqlStore {
    /// Refuses a write to `path` of a workspace that is no longer active, or
    /// one that would put a file where a directory is (or inside a file).
    pub(crate) async fn check_file_conflicts(
        &self,
        ws: &WorkspaceRef,
        path: &str,
        tx: Option<&mut AnyConnection>,
    ) -> StoreResult<()> {
        let ancestors = ancestors(path);
        let mut sql = String::from(
            "SELECT (SELECT lifecycle_stage FROM workspaces WHERE workspace_id = $1) AS stage, \
             (SELECT path FROM files WHERE workspace_id = $1 AND substr(path, 1, CAST($2 AS INTEGER)) = $3 LIMIT 1) AS below",
        );
        if !ancestors.is_empty() {
            let placeholders: Vec<String> = (0..ancestors.len()).map(|i| format!("${}", i + 4)).collect();
            sql.push_str(&format!(
                ", (SELECT path FROM files WHERE workspace_id = $1 AND path IN ({}) LIMIT 1) AS above",
                placeholders.join(", ")
            ));
        } else {
            sql.push_str(", CAST(NULL AS TEXT) AS above");
        }
        let below_prefix = format!("{path}/");
        let mut query = sqlx::query(&sql)
            .bind(&ws.workspace_id)
            .bind(below_prefix.len() as i64)
            .bind(&below_prefix);
        for ancestor in &ancestors {
            query = query.bind(*ancestor);
        }
        let row = match tx {
            Some(tx) => query.fetch_one(&mut *tx).await?,
            None => query.fetch_one(&self.pool).await?,
        };
        let stage: Option<String> = row.try_get("stage")?;
        if stage.as_deref() != Some("active") {
            return Err(Error::not_found(format!(
                "Workspace '{}' does not exist or was deleted; its file share takes no writes",
                ws.name
            ))
            .into());
        }
        if let Some(below) = row.try_get::<Option<String>, _>("below")? {
            return Err(Error::already_exists(format!(
                "'{path}' is a directory of the file share (it holds '{below}'); delete it first or choose another path"
            ))
            .into());
        }
        if let Some(above) = row.try_get::<Option<String>, _>("above")? {
            return Err(Error::already_exists(format!(
                "'{above}' is a file of the file share, so '{path}' cannot be created under it"
            ))
            .into());
        }
        Ok(())
    }

    pub(crate) async fn record_file_impl(
        &self,
        ws: &WorkspaceRef,
        path: &str,
        size: i64,
        sha256: &str,
    ) -> StoreResult<FileEntry> {
        // Checked again under the writer lock: the workspace may have been
        // deleted, or a conflicting file written, while the bytes streamed.
        let mut write = self.begin_write(&ws.workspace_id).await?;
        self.check_file_conflicts(ws, path, Some(&mut write.tx)).await?;
        super::retention_apply::check_quota(&mut write.tx, &ws.workspace_id, "files", path, size).await?;
        let time = write.now;
        self.record(
            &mut write,
            Change::FileWritten {
                path: path.to_string(),
                size,
                sha256: sha256.to_string(),
                time,
            },
        )
        .await?;
        Self::commit(write).await?;
        Ok(FileEntry {
            path: path.to_string(),
            size,
            sha256: sha256.to_string(),
            modified_at: time,
        })
    }

    /// Deletes a file or a whole directory; returns the files it removed.
    pub(crate) async fn delete_file_impl(
        &self,
        ws: &WorkspaceRef,
        path: &str,
    ) -> StoreResult<Vec<FileEntry>> {
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let removed = self.files_under(ws, path, Some(&mut write.tx)).await?;
        if removed.is_empty() {
            return Err(Error::not_found(format!(
                "No file or directory '{path}' in the file share of workspace '{}'",
                ws.name
            ))
            .into());
        }
        self.record(
            &mut write,
            Change::FileDeleted {
                path: path.to_string(),
            },
        )
        .await?;
        Self::commit(write).await?;
        Ok(removed)
    }

    /// The files at `prefix` or below it (every file for an empty prefix),
    /// in path order.
    pub(crate) async fn files_under(
        &self,
        ws: &WorkspaceRef,
        prefix: &str,
        tx: Option<&mut AnyConnection>,
    ) -> StoreResult<Vec<FileEntry>> {
        let prefix = prefix.trim_matches('/');
        let below = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE workspace_id = $1 AND (path = $2 OR substr(path, 1, CAST($3 AS INTEGER)) = $4) ORDER BY path"
        );
        let query = sqlx::query(&sql)
            .bind(&ws.workspace_id)
            .bind(prefix)
            .bind(below.len() as i64)
            .bind(&below);
        let rows = match tx {
            Some(tx) => query.fetch_all(&mut *tx).await?,
            None => query.fetch_all(&self.pool).await?,
        };
        rows.iter().map(decode).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ancestors_of_a_path() {
        assert_eq!(super::ancestors("a/b/c"), vec!["a", "a/b"]);
        assert!(super::ancestors("a").is_empty());
    }
}
